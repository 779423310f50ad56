/**
 * What the two LLM adapters share, tested once for both: the HTTP client, the SSE reader and the
 * streamed completion (src/providers/llm/streamedCompletion.ts) decide connection reuse, reassembly
 * of a stream however the network splits it, abort, timeout, broken streams, dropped connections and
 * the free preconnect. Each adapter only brings its wire format, so each case runs on both fake
 * servers with that adapter's bodies; what is its own (request shape, usage, error events, HTTP
 * statuses) stays in its own test file.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createAnthropicLlm } from '../../src/providers/llm/anthropicLlm.ts';
import type { LlmClient, LlmRequest } from '../../src/providers/llm/llmClient.ts';
import { createOpenAiLlm } from '../../src/providers/llm/openaiLlm.ts';
import { startFakeAnthropicServer } from '../fakes/fakeAnthropicServer.ts';
import { fakeTokens, startFakeOpenAiServer, type FakeServer } from '../fakes/fakeOpenAiServer.ts';
import { llmErrorOf } from '../support/errorOf.ts';
import { startTricklingServer } from '../support/rawServer.ts';
import { waitFor } from '../support/waitFor.ts';
import { llmRequest } from '../support/llmRequest.ts';

/** The text of the byte-by-byte stream: multi-byte UTF-8 (2, 3 and 4 bytes) across the splits. */
const TRICKLED_WORDS = ['Grüße', ' aus', ' 東京', ' 🎉'];
const ANSWER = 'The technician can come on Tuesday morning between nine and eleven.';

interface Adapter {
  readonly provider: 'openai' | 'anthropic';
  startFake(): Promise<FakeServer>;
  create(baseURL: string): LlmClient;
  /**
   * TRICKLED_WORDS as a whole stream in this protocol, CRLF line ends, with usage 9 in and 4 out,
   * and what else a real stream carries between the words (keep-alive comments, pings, thinking).
   */
  readonly trickled: string;
  /** The path prefix the raw server answers under (OpenAI base URLs end in /v1). */
  readonly trickledBasePath: string;
  /** An event stream that carries `text` and then ends without the protocol's end marker. */
  readonly unfinished: (text: string) => string;
  readonly endMarker: string;
  /** What comes before an event's data on the wire. */
  readonly dataPrefix: string;
}

const openaiChunk = (chunk: Record<string, unknown>) => `data: ${JSON.stringify(chunk)}\r\n\r\n`;
const anthropicEvent = (type: string, data: Record<string, unknown>) =>
  `event: ${type}\r\ndata: ${JSON.stringify({ type, ...data })}\r\n\r\n`;

const ADAPTERS: readonly Adapter[] = [
  {
    provider: 'openai',
    startFake: () => startFakeOpenAiServer(),
    create: (baseURL) => createOpenAiLlm({ apiKey: 'test-key', baseURL }),
    trickled:
      ': a comment the server sends to keep the stream alive\r\n\r\n' +
      TRICKLED_WORDS.map((w) => openaiChunk({ choices: [{ index: 0, delta: { content: w } }] })).join('') +
      openaiChunk({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] }) +
      openaiChunk({ choices: [], usage: { prompt_tokens: 9, completion_tokens: 4 } }) +
      'data: [DONE]\r\n\r\n',
    trickledBasePath: '/v1',
    unfinished: (text) => `data: {"choices":[{"index":0,"delta":{"content":"${text}"}}]}\n\ndata: [DONE]\n\n`,
    endMarker: 'a finish_reason',
    dataPrefix: 'data: ',
  },
  {
    provider: 'anthropic',
    startFake: () => startFakeAnthropicServer(),
    create: (baseURL) => createAnthropicLlm({ apiKey: 'sk-ant-test', baseURL }),
    trickled:
      ': a comment\r\n\r\n' +
      anthropicEvent('message_start', {
        message: { id: 'm', usage: { input_tokens: 9, output_tokens: 1 } },
      }) +
      anthropicEvent('content_block_start', { index: 0, content_block: { type: 'thinking', thinking: '' } }) +
      // Deltas that are not text (thinking, tool input) are not part of the answer.
      anthropicEvent('content_block_delta', {
        index: 0,
        delta: { type: 'thinking_delta', thinking: 'Hmm.' },
      }) +
      anthropicEvent('content_block_stop', { index: 0 }) +
      anthropicEvent('content_block_start', { index: 1, content_block: { type: 'text', text: '' } }) +
      anthropicEvent('ping', {}) +
      TRICKLED_WORDS.map((w) =>
        anthropicEvent('content_block_delta', { index: 1, delta: { type: 'text_delta', text: w } }),
      ).join('') +
      anthropicEvent('content_block_stop', { index: 1 }) +
      anthropicEvent('message_delta', { delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 4 } }) +
      anthropicEvent('message_stop', {}),
    trickledBasePath: '',
    unfinished: (text) =>
      `event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"${text}"}}\n\n`,
    endMarker: 'message_stop',
    dataPrefix: 'event: content_block_delta\ndata: ',
  },
];

const request = (overrides: Partial<LlmRequest> = {}) => llmRequest('test-model', overrides);

describe.each(ADAPTERS)('$provider', (adapter) => {
  let server: FakeServer;
  let llm: LlmClient;
  beforeEach(async () => {
    server = await adapter.startFake();
    llm = adapter.create(server.baseURL);
  });
  afterEach(async () => {
    await server.close();
  });

  it('reuses one connection across requests (keep-alive)', async () => {
    await llm.complete(request());
    // The adapter resolves at the body's end, once its socket is back in the pool: no pause needed.
    await llm.complete(request());

    expect(server.requests).toHaveLength(2);
    expect(server.requests[1]?.clientPort).toBe(server.requests[0]?.clientPort);
  });

  it('parses the stream however the network splits it: byte by byte, CRLF, multi-byte text', async () => {
    const raw = await startTricklingServer(adapter.trickled, adapter.trickledBasePath);
    const tokens: string[] = [];

    const result = await adapter.create(raw.baseURL).complete(request({ onToken: (t) => tokens.push(t) }));
    await raw.close();

    expect(result.text).toBe(TRICKLED_WORDS.join(''));
    expect(tokens).toEqual(TRICKLED_WORDS);
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

    it('mid-stream: keeps the partial text, usage unknown; the fake sees the hang-up before the last token', async () => {
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
      // Usage comes at the end (OpenAI's last chunk; Anthropic's message_start count is not final).
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

  describe('a broken event stream', () => {
    async function failWith(body?: string) {
      server.script(body === undefined ? { type: 'garbage' } : { type: 'garbage', body });
      return llmErrorOf(llm.complete(request()));
    }

    it('that ends without its end marker: ERR_LLM_BAD_RESPONSE with the partial text', async () => {
      const err = await failWith(adapter.unfinished('Half'));

      expect(err.code).toBe('ERR_LLM_BAD_RESPONSE');
      expect(err.message).toBe(`${adapter.provider} stream ended without ${adapter.endMarker}`);
      expect(err.partial.text).toBe('Half');
    });

    it('with a line that never breaks is cut off: ERR_LLM_BAD_RESPONSE', async () => {
      const err = await failWith(`${adapter.dataPrefix}${'x'.repeat(2 * 1024 * 1024)}`);

      expect(err.code).toBe('ERR_LLM_BAD_RESPONSE');
    });

    it('with an event that is not JSON: ERR_LLM_BAD_RESPONSE, not retryable', async () => {
      const err = await failWith();

      expect(err.code).toBe('ERR_LLM_BAD_RESPONSE');
      expect(err.message).toBe(`${adapter.provider} sent a malformed stream: an event is not JSON`);
      expect(err.retryable).toBe(false);
    });

    it('that is not an event stream at all (no events): ERR_LLM_BAD_RESPONSE', async () => {
      const err = await failWith('<html><body>502 Bad Gateway</body></html>');

      expect(err.code).toBe('ERR_LLM_BAD_RESPONSE');
    });
  });

  describe('the connection', () => {
    it('dropped by the server mid-stream: ERR_LLM_CONNECTION with the partial text', async () => {
      server.script({ type: 'text', text: ANSWER, dropAfterTokens: 2, tokenIntervalMs: 5 });

      const err = await llmErrorOf(llm.complete(request()));

      expect(err.code).toBe('ERR_LLM_CONNECTION');
      expect(err.retryable).toBe(true);
      expect(err.partial.text).toBe(fakeTokens(ANSWER).slice(0, 2).join(''));
    });

    it('with nothing listening: ERR_LLM_CONNECTION, retryable', async () => {
      await server.close();

      const err = await llmErrorOf(llm.complete(request()));

      expect(err.code).toBe('ERR_LLM_CONNECTION');
      expect(err.retryable).toBe(true);
      expect(err.message).toMatch(new RegExp(`^${adapter.provider} connection failed: .*ECONNREFUSED`));
    });

    it("is closed when the caller's onToken throws, and that error is rethrown unchanged", async () => {
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

  describe('preconnect', () => {
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
});
