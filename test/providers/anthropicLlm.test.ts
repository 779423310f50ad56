import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { llmErrorOf } from '../support/errorOf.ts';
import { ANTHROPIC_VERSION, createAnthropicLlm } from '../../src/providers/llm/anthropicLlm.ts';
import type { LlmClient, LlmRequest } from '../../src/providers/llm/llmClient.ts';
import { startFakeAnthropicServer, type FakeAnthropicServer } from '../fakes/fakeAnthropicServer.ts';
import { fakeTokens } from '../fakes/fakeOpenAiServer.ts';
import { llmRequest } from '../support/llmRequest.ts';

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

const request = (overrides: Partial<LlmRequest> = {}) => llmRequest('claude-haiku-4-5', overrides);

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

  it('a base URL with a path keeps it before /v1 (a proxy in front of the API)', async () => {
    const proxied = createAnthropicLlm({ apiKey: API_KEY, baseURL: `${server.baseURL}/anthropic/` });

    await llmErrorOf(proxied.complete(request()));

    // The fake has no route there (404), which shows where the request went.
    expect(server.requests[0]?.path).toBe('/anthropic/v1/messages');
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
});
