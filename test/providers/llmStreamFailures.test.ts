/**
 * Broken event streams, the same for both LLM adapters: the SSE reader and the streamed completion
 * (src/providers/llm/streamedCompletion.ts) they share decide these outcomes; each adapter only
 * brings its wire format, so each case runs on both fake servers with that adapter's bodies.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createAnthropicLlm } from '../../src/providers/llm/anthropicLlm.ts';
import type { LlmClient, LlmRequest } from '../../src/providers/llm/llmClient.ts';
import { createOpenAiLlm } from '../../src/providers/llm/openaiLlm.ts';
import { startFakeAnthropicServer } from '../fakes/fakeAnthropicServer.ts';
import { startFakeOpenAiServer } from '../fakes/fakeOpenAiServer.ts';
import { llmErrorOf } from '../support/llmErrorOf.ts';

interface Adapter {
  readonly provider: 'openai' | 'anthropic';
  start(): Promise<{
    llm: LlmClient;
    script(reply: { type: 'garbage'; body?: string }): void;
    close(): Promise<void>;
  }>;
  /** An event stream that carries `text` and then ends without the protocol's end marker. */
  readonly unfinished: (text: string) => string;
  readonly endMarker: string;
  /** What comes before an event's data on the wire. */
  readonly dataPrefix: string;
}

const ADAPTERS: readonly Adapter[] = [
  {
    provider: 'openai',
    async start() {
      const server = await startFakeOpenAiServer();
      const llm = createOpenAiLlm({ apiKey: 'test-key', baseURL: server.baseURL });
      return { llm, script: (reply) => server.script(reply), close: () => server.close() };
    },
    unfinished: (text) => `data: {"choices":[{"index":0,"delta":{"content":"${text}"}}]}\n\ndata: [DONE]\n\n`,
    endMarker: 'a finish_reason',
    dataPrefix: 'data: ',
  },
  {
    provider: 'anthropic',
    async start() {
      const server = await startFakeAnthropicServer();
      const llm = createAnthropicLlm({ apiKey: 'sk-ant-test', baseURL: server.baseURL });
      return { llm, script: (reply) => server.script(reply), close: () => server.close() };
    },
    unfinished: (text) =>
      `event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"${text}"}}\n\n`,
    endMarker: 'message_stop',
    dataPrefix: 'event: content_block_delta\ndata: ',
  },
];

const request: LlmRequest = {
  model: 'test-model',
  system: 'You are a terse receptionist.',
  messages: [{ role: 'user', content: 'When can someone come?' }],
  maxOutputTokens: 200,
  timeoutMs: 5000,
};

describe.each(ADAPTERS)('$provider: a broken event stream', (adapter) => {
  let fake: Awaited<ReturnType<Adapter['start']>> | null = null;
  afterEach(async () => {
    await fake?.close();
    fake = null;
  });

  async function failWith(body?: string) {
    fake = await adapter.start();
    fake.script(body === undefined ? { type: 'garbage' } : { type: 'garbage', body });
    return llmErrorOf(fake.llm.complete(request));
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
