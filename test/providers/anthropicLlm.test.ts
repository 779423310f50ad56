import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startTricklingServer } from '../support/rawServer.ts';
import { llmErrorOf } from '../support/llmErrorOf.ts';
import { waitFor } from '../support/waitFor.ts';
import { ANTHROPIC_VERSION, createAnthropicLlm } from '../../src/providers/llm/anthropicLlm.ts';
import type { LlmClient, LlmRequest } from '../../src/providers/llm/llmClient.ts';
import { startFakeAnthropicServer, type FakeAnthropicServer } from '../fakes/fakeAnthropicServer.ts';
import { fakeTokens } from '../fakes/fakeOpenAiServer.ts';

const ANSWER = 'The technician can come on Tuesday morning between nine and eleven.';
const API_KEY = 'sk-ant-test-secret-key';

let server: FakeAnthropicServer;
let llm: LlmClient;

beforeEach(async () => {
  server = await startFakeAnthropicServer();
  llm = createAnthropicLlm({ apiKey: API_KEY, baseURL: server.baseURL });
});

afterEach(async () => {
  await server.close();
});

function request(overrides: Partial<LlmRequest> = {}): LlmRequest {
  return {
    model: 'claude-haiku-4-5',
    system: 'You are a terse receptionist.',
    messages: [{ role: 'user', content: 'When can someone come?' }],
    maxOutputTokens: 200,
    timeoutMs: 5000,
    ...overrides,
  };
}

describe('createAnthropicLlm', () => {
  it('streams the answer: text, usage from message_start and message_delta, onToken in order', async () => {
    server.script({ type: 'text', text: ANSWER, firstTokenDelayMs: 60, tokenIntervalMs: 5 });
    const tokens: string[] = [];

    const result = await llm.complete(request({ onToken: (t) => tokens.push(t) }));

    expect(result.text).toBe(ANSWER);
    expect(tokens).toEqual(fakeTokens(ANSWER));
    expect(result.provider).toBe('anthropic');
    expect(result.model).toBe('claude-haiku-4-5');
    const sent = await server.settled(0);
    expect(result.usage).toEqual(sent.usageSent);
    expect(result.usage?.inputTokens).toBeGreaterThan(0);
    expect(result.usage?.outputTokens).toBe(tokens.length);
    expect(result.firstTokenMs).toBeGreaterThanOrEqual(50);
    expect(result.durationMs).toBeGreaterThan(result.firstTokenMs!);
    expect(sent.clientWentAway).toBe('no');
    expect(sent.tokensSent).toBe(tokens.length);
  });

  it('sends a streaming Messages request to /v1/messages with the system prompt and token cap', async () => {
    await llm.complete(request({ temperature: 0.2 }));

    const [sent] = server.requests;
    expect(sent?.method).toBe('POST');
    expect(sent?.path).toBe('/v1/messages');
    // As SDK 1.x sends them: the key as a bearer token (0.x used X-Api-Key), API version 2026-10-21.
    expect(sent?.headers.authorization).toBe(`Bearer ${API_KEY}`);
    expect(sent?.headers['x-api-key']).toBeUndefined();
    expect(sent?.headers['anthropic-version']).toBe('2026-10-21');
    expect(ANTHROPIC_VERSION).toBe('2026-10-21');
    expect(sent?.headers['content-type']).toBe('application/json');
    expect(sent?.headers.accept).toBe('text/event-stream');
    expect(sent?.headers['user-agent']).toMatch(/^switchboard/);
    expect(sent?.body).toEqual({
      model: 'claude-haiku-4-5',
      max_tokens: 200,
      stream: true,
      system: 'You are a terse receptionist.',
      temperature: 0.2,
      messages: [{ role: 'user', content: 'When can someone come?' }],
    });
  });

  it('JSON mode adds a JSON-only instruction to the system prompt (no prefill)', async () => {
    server.script({ type: 'text', text: '{"intent": "book"}' });

    const result = await llm.complete(request({ json: true, system: 'Classify the caller.' }));

    expect(JSON.parse(result.text)).toEqual({ intent: 'book' });
    const body = server.requests[0]?.body;
    expect(body?.['system']).toMatch(/^Classify the caller\.\n\n.*single JSON object/);
    expect(body?.['messages']).toEqual([{ role: 'user', content: 'When can someone come?' }]);
  });

  it('leaves out an empty system prompt', async () => {
    await llm.complete(request({ system: '' }));

    expect(server.requests[0]?.body).not.toHaveProperty('system');
  });

  it('JSON mode with no system prompt sends the instruction alone', async () => {
    await llm.complete(request({ json: true, system: '' }));

    expect(server.requests[0]?.body['system']).toMatch(/^Respond with a single JSON object/);
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
    const event = (type: string, data: Record<string, unknown>) =>
      `event: ${type}\r\ndata: ${JSON.stringify({ type, ...data })}\r\n\r\n`;
    const body =
      ': a comment\r\n\r\n' +
      event('message_start', { message: { id: 'm', usage: { input_tokens: 9, output_tokens: 1 } } }) +
      event('content_block_start', { index: 0, content_block: { type: 'thinking', thinking: '' } }) +
      // Deltas that are not text (thinking, tool input) are not part of the answer.
      event('content_block_delta', { index: 0, delta: { type: 'thinking_delta', thinking: 'Hmm.' } }) +
      event('content_block_stop', { index: 0 }) +
      event('content_block_start', { index: 1, content_block: { type: 'text', text: '' } }) +
      event('ping', {}) +
      words
        .map((w) => event('content_block_delta', { index: 1, delta: { type: 'text_delta', text: w } }))
        .join('') +
      event('content_block_stop', { index: 1 }) +
      event('message_delta', { delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 4 } }) +
      event('message_stop', {});
    const raw = await startTricklingServer(body);
    const tokens: string[] = [];

    const result = await createAnthropicLlm({ apiKey: 'k', baseURL: raw.baseURL }).complete(
      request({ onToken: (t) => tokens.push(t) }),
    );
    await raw.close();

    expect(result.text).toBe(words.join(''));
    expect(tokens).toEqual(words);
    expect(result.usage).toEqual({ inputTokens: 9, outputTokens: 4 });
  });

  it('a base URL with a path keeps it before /v1 (a proxy in front of the API)', async () => {
    const proxied = createAnthropicLlm({ apiKey: API_KEY, baseURL: `${server.baseURL}/anthropic/` });

    await llmErrorOf(proxied.complete(request()));

    // The fake has no route there (404), which shows where the request went.
    expect(server.requests[0]?.path).toBe('/anthropic/v1/messages');
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
      expect(err.partial).toMatchObject({ text: '', firstTokenMs: null });
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

    it('mid-stream: keeps the partial text, usage unknown; the fake sees the hang-up', async () => {
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
      // Only message_start had arrived: its output count is not final, so no usage is claimed.
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
      [529, true],
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
      server.script({ type: 'error', status: 401, message: `invalid bearer token: ${API_KEY}` });

      const err = await llmErrorOf(llm.complete(request()));
      await llm.complete(request());

      expect(err.message).toBe('anthropic answered HTTP 401: invalid bearer token: [api key]');
      expect(err.partial).toMatchObject({ text: '', usage: null, firstTokenMs: null });
      // The error body was read to its end, so its connection went back to the pool.
      expect(server.requests[1]?.clientPort).toBe(server.requests[0]?.clientPort);
    });

    it('an error event inside the stream: ERR_LLM_HTTP without a status, retryable when overloaded', async () => {
      server.script({
        type: 'garbage',
        body:
          'event: message_start\ndata: {"type":"message_start","message":{"id":"m","type":"message","role":"assistant","model":"x","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":7,"output_tokens":1}}}\n\n' +
          'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n',
      });

      const err = await llmErrorOf(llm.complete(request()));

      expect(err.code).toBe('ERR_LLM_HTTP');
      expect(err.status).toBeNull();
      expect(err.retryable).toBe(true);
      expect(err.message).toBe('anthropic reported an error mid-stream: Overloaded');
      expect(err.partial.usage).toBeNull();
    });

    it('an error event after some text keeps the partial text; a request error is not retryable', async () => {
      server.script({
        type: 'garbage',
        body:
          'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":7,"output_tokens":1}}}\n\n' +
          'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Let me"}}\n\n' +
          'event: error\ndata: {"type":"error","error":{"type":"invalid_request_error","message":"Bad."}}\n\n',
      });

      const err = await llmErrorOf(llm.complete(request()));

      expect(err.code).toBe('ERR_LLM_HTTP');
      expect(err.retryable).toBe(false);
      expect(err.message).toContain('Bad.');
      expect(err.partial.text).toBe('Let me');
    });

    it('an error event whose data is not JSON: ERR_LLM_HTTP with that text (key masked), not retryable', async () => {
      server.script({ type: 'garbage', body: `event: error\ndata: upstream went away (key ${API_KEY})\n\n` });

      const err = await llmErrorOf(llm.complete(request()));

      expect(err.code).toBe('ERR_LLM_HTTP');
      expect(err.retryable).toBe(false);
      expect(err.message).toBe('anthropic reported an error mid-stream: upstream went away (key [api key])');
    });

    it('an event whose data is not JSON: ERR_LLM_BAD_RESPONSE with the partial text, not retryable', async () => {
      server.script({
        type: 'garbage',
        body:
          'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"So"}}\n\n' +
          'event: content_block_delta\ndata: {"type":"content_block_delta",\n\n',
      });

      const err = await llmErrorOf(llm.complete(request()));

      expect(err.code).toBe('ERR_LLM_BAD_RESPONSE');
      expect(err.message).toBe('anthropic sent a malformed stream: an event is not JSON');
      expect(err.retryable).toBe(false);
      expect(err.partial.text).toBe('So');
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
      expect(err.retryable).toBe(true);
      expect(err.message).toMatch(/^anthropic connection failed: .*ECONNREFUSED/);
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
      'POST /v1/messages',
    ]);
    expect(server.requests[0]!.headers['anthropic-version']).toBe(ANTHROPIC_VERSION);
    expect(server.requests[1]!.clientPort).toBe(server.requests[0]!.clientPort);
  });

  it('fails as an LlmError with the HTTP status', async () => {
    server.script({ type: 'error', status: 529 });

    const err = await llmErrorOf(llm.preconnect!({ timeoutMs: 5000 }));

    expect(err).toMatchObject({ code: 'ERR_LLM_HTTP', status: 529 });
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
