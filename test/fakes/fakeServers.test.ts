/**
 * The fakes against the real SDKs directly, so adapter tests can trust them: shapes the SDKs accept,
 * scripting, non-streaming answers and the record of each exchange.
 */
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterEach, describe, expect, it } from 'vitest';
import { startFakeAnthropicServer } from './fakeAnthropicServer.ts';
import { fakeEmbeddingOf, fakeTokens, startFakeOpenAiServer, type FakeServer } from './fakeOpenAiServer.ts';

let server: FakeServer | undefined;

afterEach(async () => {
  await server?.close();
  server = undefined;
});

describe('fake OpenAI server', () => {
  async function setUp() {
    server = await startFakeOpenAiServer();
    return {
      server,
      client: new OpenAI({ apiKey: 'test-key', baseURL: server.baseURL, maxRetries: 0 }),
    };
  }

  it('has a baseURL ending in /v1', async () => {
    const { server } = await setUp();
    expect(server.baseURL).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1$/);
  });

  it('answers non-streaming chat completions with usage, honouring the token cap', async () => {
    const { server, client } = await setUp();
    server.script({ type: 'text', text: 'one two three four' });

    const completion = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'count' }],
      max_completion_tokens: 2,
    });

    expect(completion.choices[0]?.message.content).toBe('one two');
    expect(completion.choices[0]?.finish_reason).toBe('length');
    expect(completion.usage).toMatchObject({ prompt_tokens: 2, completion_tokens: 2, total_tokens: 4 });
    expect(server.requests[0]?.tokensSent).toBe(2);
  });

  it('streams without a usage chunk unless asked for one', async () => {
    const { client } = await setUp();

    const stream = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);

    expect(chunks.every((c) => c.usage === undefined)).toBe(true);
    expect(chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')).toBe('Hello from the fake.');
    expect(chunks.at(-1)?.choices[0]?.finish_reason).toBe('stop');
  });

  it('ends a usage stream with a usage chunk that has no choices', async () => {
    const { client } = await setUp();

    const stream = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);

    expect(chunks.at(-1)?.choices).toEqual([]);
    expect(chunks.at(-1)?.usage?.completion_tokens).toBe(fakeTokens('Hello from the fake.').length);
    expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true);
  });

  it('rejects JSON mode when no message mentions JSON, like the real API', async () => {
    const { client } = await setUp();

    await expect(
      client.chat.completions.create({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'hi' }],
        response_format: { type: 'json_object' },
      }),
    ).rejects.toMatchObject({ status: 400 });
  });

  it('plays the script in order, then the default reply; scripts may be functions of the request', async () => {
    const { server, client } = await setUp();
    server.script({ type: 'text', text: 'first' }, (req) => ({
      type: 'text',
      text: `you sent ${String(req.body['model'])}`,
    }));
    const ask = async () =>
      (await client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] }))
        .choices[0]?.message.content;

    expect([await ask(), await ask(), await ask()]).toEqual([
      'first',
      'you sent gpt-4o',
      'Hello from the fake.',
    ]);
  });

  it('answers embeddings in the requested encoding', async () => {
    const { client } = await setUp();

    const float = await client.embeddings.create({
      model: 'text-embedding-3-small',
      input: ['hi'],
      encoding_format: 'float',
      dimensions: 8,
    });
    const base64 = await client.embeddings.create({
      model: 'text-embedding-3-small',
      input: 'hi',
      encoding_format: 'base64',
      dimensions: 8,
    });

    expect(float.data[0]?.embedding).toEqual(Array.from(fakeEmbeddingOf('hi', 8)));
    const bytes = Buffer.from(base64.data[0]!.embedding, 'base64');
    expect(Array.from({ length: 8 }, (_, i) => bytes.readFloatLE(i * 4))).toEqual(
      Array.from(fakeEmbeddingOf('hi', 8)),
    );
    expect(float.usage).toEqual({ prompt_tokens: 1, total_tokens: 1 });
  });

  it('answers 404 with an OpenAI error body for unknown paths', async () => {
    const { client } = await setUp();

    await expect(client.files.list()).rejects.toMatchObject({ status: 404 });
  });

  it('lists models (what the startup warmup asks for) and records the request', async () => {
    const { server, client } = await setUp();

    const page = await client.models.list();

    expect(page.data.map((m) => m.id)).toEqual(['gpt-4o-mini']);
    expect(server.requests[0]).toMatchObject({ method: 'GET', path: '/v1/models' });
  });

  it('records a request that settles normally as "no"', async () => {
    const { server, client } = await setUp();

    await client.embeddings.create({ model: 'text-embedding-3-small', input: 'hi' });
    const record = await server.settled(0);

    expect(record).toMatchObject({ path: '/v1/embeddings', clientWentAway: 'no' });
    expect(record.settledAtMs).toBeGreaterThanOrEqual(record.receivedAtMs);
  });
});

describe('fake Anthropic server', () => {
  async function setUp() {
    server = await startFakeAnthropicServer();
    return {
      server,
      client: new Anthropic({ apiKey: 'test-key', baseURL: server.baseURL, maxRetries: 0 }),
    };
  }

  it('has a baseURL without /v1', async () => {
    const { server } = await setUp();
    expect(server.baseURL).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  });

  it('streams the real event sequence', async () => {
    const { client } = await setUp();
    server!.script({ type: 'text', text: 'a b c' });

    const stream = await client.messages.create({
      model: 'claude-haiku-4-5',
      max_tokens: 100,
      messages: [{ role: 'user', content: 'hi there' }],
      stream: true,
    });
    const events = [];
    for await (const event of stream) events.push(event);

    expect(events.map((e) => e.type)).toEqual([
      'message_start',
      'content_block_start',
      'content_block_delta',
      'content_block_delta',
      'content_block_delta',
      'content_block_stop',
      'message_delta',
      'message_stop',
    ]);
    const start = events[0];
    expect(start?.type === 'message_start' && start.message.usage.input_tokens).toBe(2);
    const delta = events[6];
    expect(delta?.type === 'message_delta' && delta.usage.output_tokens).toBe(3);
    expect(delta?.type === 'message_delta' && delta.delta.stop_reason).toBe('end_turn');
  });

  it('answers non-streaming messages, honouring max_tokens', async () => {
    const { client } = await setUp();
    server!.script({ type: 'text', text: 'one two three' });

    const message = await client.messages.create({
      model: 'claude-haiku-4-5',
      max_tokens: 2,
      system: 'Be brief.',
      messages: [{ role: 'user', content: 'count' }],
    });

    expect(message.content).toEqual([{ type: 'text', text: 'one two' }]);
    expect(message.stop_reason).toBe('max_tokens');
    expect(message.usage).toMatchObject({ input_tokens: 5, output_tokens: 2 });
  });

  it('answers errors in the Anthropic shape', async () => {
    const { client } = await setUp();
    server!.script({ type: 'error', status: 529, message: 'Overloaded' });

    await expect(
      client.messages.create({ model: 'x', max_tokens: 1, messages: [{ role: 'user', content: 'x' }] }),
    ).rejects.toMatchObject({ status: 529, type: 'overloaded_error' });
  });
});
