import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startTricklingServer } from '../support/rawServer.ts';
import { llmErrorOf } from '../support/llmErrorOf.ts';
import { waitFor } from '../support/waitFor.ts';
import { createOpenAiLlm } from '../../src/providers/llm/openaiLlm.ts';
import type { LlmClient, LlmRequest } from '../../src/providers/llm/llmClient.ts';
import { fakeTokens, startFakeOpenAiServer, type FakeOpenAiServer } from '../fakes/fakeOpenAiServer.ts';

const ANSWER = 'The technician can come on Tuesday morning between nine and eleven.';

let server: FakeOpenAiServer;
let llm: LlmClient;

beforeEach(async () => {
  server = await startFakeOpenAiServer();
  llm = createOpenAiLlm({ apiKey: 'test-key', baseURL: server.baseURL });
});

afterEach(async () => {
  await server.close();
});

function request(overrides: Partial<LlmRequest> = {}): LlmRequest {
  return {
    model: 'gpt-4o-mini',
    system: 'You are a terse receptionist.',
    messages: [{ role: 'user', content: 'When can someone come?' }],
    maxOutputTokens: 200,
    timeoutMs: 5000,
    ...overrides,
  };
}

describe('createOpenAiLlm', () => {
  it('streams the answer: text, usage from the final chunk, onToken in order, timings', async () => {
    server.script({ type: 'text', text: ANSWER, firstTokenDelayMs: 60, tokenIntervalMs: 5 });
    const tokens: string[] = [];

    const result = await llm.complete(request({ onToken: (t) => tokens.push(t) }));

    expect(result.text).toBe(ANSWER);
    expect(tokens).toEqual(fakeTokens(ANSWER));
    expect(result.provider).toBe('openai');
    expect(result.model).toBe('gpt-4o-mini');
    const sent = await server.settled(0);
    expect(result.usage).toEqual(sent.usageSent);
    expect(result.usage?.outputTokens).toBe(tokens.length);
    expect(result.firstTokenMs).toBeGreaterThanOrEqual(50);
    expect(result.durationMs).toBeGreaterThan(result.firstTokenMs!);
    expect(sent.clientWentAway).toBe('no');
    expect(sent.tokensSent).toBe(tokens.length);
  });

  it('sends a streaming request with usage, the token cap, system and user messages', async () => {
    await llm.complete(request({ temperature: 0.2 }));

    const [sent] = server.requests;
    expect(sent?.path).toBe('/v1/chat/completions');
    expect(sent?.headers.authorization).toBe('Bearer test-key');
    expect(sent?.headers['content-type']).toBe('application/json');
    expect(sent?.headers.accept).toBe('text/event-stream');
    expect(sent?.headers['user-agent']).toMatch(/^switchboard/);
    expect(sent?.body).toMatchObject({
      model: 'gpt-4o-mini',
      stream: true,
      stream_options: { include_usage: true },
      max_completion_tokens: 200,
      temperature: 0.2,
      messages: [
        { role: 'system', content: 'You are a terse receptionist.' },
        { role: 'user', content: 'When can someone come?' },
      ],
    });
    expect(sent?.body).not.toHaveProperty('response_format');
  });

  it('JSON mode asks for json_object and returns the JSON text', async () => {
    server.script((req) =>
      req.body['response_format'] === undefined
        ? { type: 'text', text: 'not json' }
        : { type: 'text', text: '{"intent": "book", "confidence": 0.9}' },
    );

    const result = await llm.complete(request({ json: true, system: 'Classify. Answer in JSON.' }));

    expect(JSON.parse(result.text)).toEqual({ intent: 'book', confidence: 0.9 });
    expect(server.requests[0]?.body['response_format']).toEqual({ type: 'json_object' });
    expect(server.requests[0]?.body['messages']).toContainEqual({
      role: 'system',
      content: 'Classify. Answer in JSON.',
    });
  });

  it('JSON mode mentions JSON when the prompt does not (the API rejects json_object otherwise)', async () => {
    const result = await llm.complete(request({ json: true, system: 'Classify the caller.' }));

    expect(result.text).toBe('Hello from the fake.');
    const messages = server.requests[0]?.body['messages'] as { role: string; content: string }[];
    expect(messages[0]?.content).toMatch(/^Classify the caller\.\n\n.*JSON/);
  });

  it('reports usage null when the stream has no usage chunk', async () => {
    server.script({ type: 'text', text: ANSWER, omitUsage: true });

    const result = await llm.complete(request());

    expect(result.text).toBe(ANSWER);
    expect(result.usage).toBeNull();
  });

  it('reuses one connection across requests (keep-alive)', async () => {
    await llm.complete(request());
    // The adapter resolves at the body's end, once its socket is back in the pool: no pause needed.
    await llm.complete(request());

    expect(server.requests).toHaveLength(2);
    expect(server.requests[1]?.clientPort).toBe(server.requests[0]?.clientPort);
  });

  it('parses the stream however the network splits it: byte by byte, CRLF, multi-byte text', async () => {
    const words = ['Grüße', ' aus', ' 東京', ' 🎉'];
    const events = [
      ': a comment the server sends to keep the stream alive',
      ...words.map((w) => `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: w } }] })}`),
      `data: ${JSON.stringify({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}`,
      `data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: 9, completion_tokens: 4 } })}`,
      'data: [DONE]',
    ];
    // An OpenAI-style base URL ends in /v1.
    const raw = await startTricklingServer(events.map((e) => `${e}\r\n\r\n`).join(''), '/v1');
    const tokens: string[] = [];

    const result = await createOpenAiLlm({ apiKey: 'k', baseURL: raw.baseURL }).complete(
      request({ onToken: (t) => tokens.push(t) }),
    );
    await raw.close();

    expect(result.text).toBe(words.join(''));
    expect(tokens).toEqual(words);
    expect(result.usage).toEqual({ inputTokens: 9, outputTokens: 4 });
  });

  describe('abort', () => {
    it('before the first token: ERR_LLM_ABORTED, and the fake sees the hang-up before any token', async () => {
      server.script({ type: 'text', text: ANSWER, firstTokenDelayMs: 5000 });
      const controller = new AbortController();

      const pending = llm.complete(request({ signal: controller.signal }));
      await waitFor(() => server.requests.length === 1, 2000);
      controller.abort();
      const err = await llmErrorOf(pending);

      expect(err.code).toBe('ERR_LLM_ABORTED');
      expect(err.retryable).toBe(false);
      expect(err.partial).toMatchObject({ text: '', usage: null, firstTokenMs: null });
      const sent = await server.settled(0);
      expect(sent.clientWentAway).toBe('before-first-token');
      expect(sent.tokensSent).toBe(0);
    });

    it('before the response headers arrive (server hangs)', async () => {
      server.script({ type: 'hang' });
      const controller = new AbortController();

      const pending = llm.complete(request({ signal: controller.signal }));
      await waitFor(() => server.requests.length === 1, 2000);
      controller.abort();

      expect((await llmErrorOf(pending)).code).toBe('ERR_LLM_ABORTED');
      expect((await server.settled(0)).clientWentAway).toBe('before-first-token');
    });

    it('with an already-aborted signal: no request is made', async () => {
      const err = await llmErrorOf(llm.complete(request({ signal: AbortSignal.abort() })));

      expect(err.code).toBe('ERR_LLM_ABORTED');
      await new Promise((r) => setTimeout(r, 50));
      expect(server.requests).toHaveLength(0);
    });

    it('mid-stream: keeps the partial text, and the fake sees the hang-up before the last token', async () => {
      server.script({ type: 'text', text: ANSWER, tokenIntervalMs: 20 });
      const controller = new AbortController();
      const tokens: string[] = [];

      const err = await llmErrorOf(
        llm.complete(
          request({
            signal: controller.signal,
            onToken: (t) => {
              tokens.push(t);
              if (tokens.length === 3) controller.abort();
            },
          }),
        ),
      );

      expect(err.code).toBe('ERR_LLM_ABORTED');
      expect(err.partial.text).toBe(fakeTokens(ANSWER).slice(0, 3).join(''));
      expect(err.partial.firstTokenMs).not.toBeNull();
      expect(err.partial.usage).toBeNull();
      const sent = await server.settled(0);
      expect(sent.clientWentAway).toBe('before-last-token');
      expect(sent.tokensSent).toBeLessThan(fakeTokens(ANSWER).length);
    });
  });

  describe('timeout', () => {
    it('before the first token: ERR_LLM_TIMEOUT and the connection is closed on the wire', async () => {
      server.script({ type: 'text', text: ANSWER, firstTokenDelayMs: 5000 });

      const err = await llmErrorOf(llm.complete(request({ timeoutMs: 150 })));

      expect(err.code).toBe('ERR_LLM_TIMEOUT');
      expect(err.retryable).toBe(true);
      expect(err.partial.durationMs).toBeGreaterThanOrEqual(140);
      expect(err.partial.durationMs).toBeLessThan(1000);
      const sent = await server.settled(0);
      expect(sent.clientWentAway).toBe('before-first-token');
      expect(sent.settledAtMs! - sent.receivedAtMs).toBeLessThan(1000);
    });

    it('while the server sends no headers at all', async () => {
      server.script({ type: 'hang' });

      const err = await llmErrorOf(llm.complete(request({ timeoutMs: 100 })));

      expect(err.code).toBe('ERR_LLM_TIMEOUT');
      expect((await server.settled(0)).clientWentAway).toBe('before-first-token');
    });

    it('mid-stream: keeps the partial text and closes the stream', async () => {
      server.script({ type: 'text', text: ANSWER, tokenIntervalMs: 60 });

      const err = await llmErrorOf(llm.complete(request({ timeoutMs: 200 })));

      expect(err.code).toBe('ERR_LLM_TIMEOUT');
      expect(err.partial.text.length).toBeGreaterThan(0);
      expect(ANSWER.startsWith(err.partial.text)).toBe(true);
      expect((await server.settled(0)).clientWentAway).toBe('before-last-token');
    });
  });

  describe('failures', () => {
    it.each([
      [500, true],
      [429, true],
      [400, false],
    ])('HTTP %i: ERR_LLM_HTTP (retryable %s) after exactly one request', async (status, retryable) => {
      server.script({ type: 'error', status, message: 'Nope.' });

      const err = await llmErrorOf(llm.complete(request()));

      expect(err.code).toBe('ERR_LLM_HTTP');
      expect(err.status).toBe(status);
      expect(err.retryable).toBe(retryable);
      expect(err.message).toContain('Nope.');
      // The fake asks for a retry after 10 ms; a retrying client would have come back by now.
      await new Promise((r) => setTimeout(r, 150));
      expect(server.requests).toHaveLength(1);
    });

    it("the provider's message comes from the error body; the key never appears; the socket is reused", async () => {
      server.script({ type: 'error', status: 400, message: 'Nope.' });

      const err = await llmErrorOf(llm.complete(request()));
      await llm.complete(request());

      expect(err.message).toBe('openai answered HTTP 400: Nope.');
      expect(err.message).not.toContain('test-key');
      expect(err.partial).toMatchObject({ text: '', usage: null, firstTokenMs: null });
      // The error body was read to its end, so its connection went back to the pool.
      expect(server.requests[1]?.clientPort).toBe(server.requests[0]?.clientPort);
    });

    it('an error object inside a 200 stream: ERR_LLM_HTTP, retryable, with the partial text', async () => {
      server.script({
        type: 'garbage',
        body:
          'data: {"choices":[{"index":0,"delta":{"content":"Let me"}}]}\n\n' +
          'data: {"error":{"message":"The server had an error while processing your request."}}\n\n',
      });

      const err = await llmErrorOf(llm.complete(request()));

      expect(err.code).toBe('ERR_LLM_HTTP');
      expect(err.retryable).toBe(true);
      expect(err.status).toBeNull();
      expect(err.message).toContain('The server had an error while processing your request.');
      expect(err.partial.text).toBe('Let me');
    });

    it('the server drops the connection mid-stream: ERR_LLM_CONNECTION with the partial text', async () => {
      server.script({ type: 'text', text: ANSWER, dropAfterTokens: 2, tokenIntervalMs: 5 });

      const err = await llmErrorOf(llm.complete(request()));

      expect(err.code).toBe('ERR_LLM_CONNECTION');
      expect(err.retryable).toBe(true);
      expect(err.partial.text).toBe(fakeTokens(ANSWER).slice(0, 2).join(''));
    });

    it('nothing listening: ERR_LLM_CONNECTION', async () => {
      await server.close();

      const err = await llmErrorOf(llm.complete(request()));

      expect(err.code).toBe('ERR_LLM_CONNECTION');
    });

    it("rethrows the caller's onToken error unchanged and closes the stream", async () => {
      server.script({ type: 'text', text: ANSWER, tokenIntervalMs: 20 });
      const boom = new Error('boom');

      await expect(
        llm.complete(
          request({
            onToken: () => {
              throw boom;
            },
          }),
        ),
      ).rejects.toBe(boom);
      expect((await server.settled(0)).clientWentAway).toBe('before-last-token');
    });
  });
});

describe('preconnect', () => {
  it('lists models (free), then a completion reuses that connection', async () => {
    await llm.preconnect!({ timeoutMs: 5000 });
    await llm.complete(request());

    expect(server.requests.map((r) => `${r.method} ${r.path}`)).toEqual([
      'GET /v1/models',
      'POST /v1/chat/completions',
    ]);
    expect(server.requests[1]!.clientPort).toBe(server.requests[0]!.clientPort);
  });

  it('fails as an LlmError with the HTTP status', async () => {
    server.script({ type: 'error', status: 503 });

    const err = await llmErrorOf(llm.preconnect!({ timeoutMs: 5000 }));

    expect(err).toMatchObject({ code: 'ERR_LLM_HTTP', status: 503 });
  });

  it('gives up at its timeout, closing the connection', async () => {
    server.script({ type: 'hang' });

    const err = await llmErrorOf(llm.preconnect!({ timeoutMs: 50 }));

    expect(err.code).toBe('ERR_LLM_TIMEOUT');
    expect((await server.settled(0)).clientWentAway).toBe('before-first-token');
  });

  it('with an already-aborted signal: ERR_LLM_ABORTED and no request', async () => {
    const err = await llmErrorOf(llm.preconnect!({ signal: AbortSignal.abort(), timeoutMs: 5000 }));

    expect(err.code).toBe('ERR_LLM_ABORTED');
    await new Promise((r) => setTimeout(r, 50));
    expect(server.requests).toHaveLength(0);
  });
});
