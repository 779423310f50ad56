import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { llmErrorOf } from '../support/errorOf.ts';
import { createOpenAiLlm } from '../../src/providers/llm/openaiLlm.ts';
import type { LlmClient, LlmRequest } from '../../src/providers/llm/llmClient.ts';
import { fakeTokens, startFakeOpenAiServer, type FakeOpenAiServer } from '../fakes/fakeOpenAiServer.ts';
import { llmRequest } from '../support/llmRequest.ts';

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

const request = (overrides: Partial<LlmRequest> = {}) => llmRequest('gpt-4o-mini', overrides);

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
});
