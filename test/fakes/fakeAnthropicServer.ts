/**
 * A fake Anthropic Messages server for tests that drive our Anthropic client on the wire (and the real
 * `@anthropic-ai/sdk`, which `fakeServers.test.ts` uses to check the fake speaks the protocol): the real SSE
 * event sequence (with `event:` lines), non-streaming answers, the vendor's error shape, and the
 * same scripting, latency and recording as the OpenAI fake (whose core it reuses).
 */
import {
  fakeTokenCount,
  fakeTokens,
  startFakeHttpServer,
  type FakeRoute,
  type FakeScript,
  type FakeServer,
} from './fakeOpenAiServer.ts';

export interface FakeAnthropicOptions {
  /** Delay between `message_start` and the first text delta (or before a non-streaming answer). Default 0. */
  readonly firstTokenDelayMs?: number;
  /** Delay between text deltas. Default 0. */
  readonly tokenIntervalMs?: number;
  /** Used once the script queue is empty. Default: the text "Hello from the fake." */
  readonly defaultReply?: FakeScript;
  /** Port on 127.0.0.1. Default 0: one the system picks. */
  readonly port?: number;
}

/** `baseURL` does not end in /v1: the SDK appends `/v1/messages` itself. */
export type FakeAnthropicServer = FakeServer;

const errorTypes: Readonly<Record<number, string>> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  403: 'permission_error',
  404: 'not_found_error',
  413: 'request_too_large',
  429: 'rate_limit_error',
  500: 'api_error',
  529: 'overloaded_error',
};

function anthropicError(status: number, message: string): unknown {
  const type = errorTypes[status] ?? (status >= 500 ? 'api_error' : 'invalid_request_error');
  return { type: 'error', error: { type, message }, request_id: 'req_fake' };
}

function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content
    .map((block: unknown) =>
      typeof block === 'object' && block !== null && 'text' in block && typeof block.text === 'string'
        ? block.text
        : '',
    )
    .join('');
}

/** Starts the fake Anthropic server. */
export function startFakeAnthropicServer(options: FakeAnthropicOptions = {}): Promise<FakeAnthropicServer> {
  const messages: FakeRoute = async (ex, reply) => {
    const { body, headers } = ex.request;
    if (headers['anthropic-version'] === undefined) {
      ex.sendJson(400, anthropicError(400, 'anthropic-version: header is required'));
      return;
    }
    if (typeof body['max_tokens'] !== 'number') {
      ex.sendJson(400, anthropicError(400, 'max_tokens: Field required'));
      return;
    }
    const model = typeof body['model'] === 'string' ? body['model'] : 'unknown';
    const history = Array.isArray(body['messages']) ? (body['messages'] as unknown[]) : [];
    const inputTokens = [
      textOf(body['system']),
      ...history.map((m) => (typeof m === 'object' && m !== null && 'content' in m ? textOf(m.content) : '')),
    ].reduce((sum, text) => sum + fakeTokenCount(text), 0);
    const all = fakeTokens(reply.text);
    const tokens = all.slice(0, body['max_tokens']);
    const stopReason = tokens.length < all.length ? 'max_tokens' : 'end_turn';
    // The real API never reports 0 output tokens, even for an empty answer.
    const outputTokens = Math.max(1, tokens.length);
    ex.setUsage({ inputTokens, outputTokens });
    const usage = (output: number) => ({
      input_tokens: inputTokens,
      cache_creation_input_tokens: 0,
      cache_read_input_tokens: 0,
      output_tokens: output,
      service_tier: 'standard',
    });
    const message = {
      id: `msg_fake_${ex.request.index}`,
      type: 'message',
      role: 'assistant',
      model,
      content: [] as unknown[],
      stop_reason: null as string | null,
      stop_sequence: null,
      usage: usage(1),
    };
    const firstDelayMs = reply.firstTokenDelayMs ?? options.firstTokenDelayMs ?? 0;
    const intervalMs = reply.tokenIntervalMs ?? options.tokenIntervalMs ?? 0;

    if (body['stream'] !== true) {
      await ex.sleep(firstDelayMs + intervalMs * Math.max(0, tokens.length - 1));
      if (ex.gone) return;
      ex.countToken(tokens.length);
      ex.sendJson(200, {
        ...message,
        content: [{ type: 'text', text: tokens.join('') }],
        stop_reason: stopReason,
        usage: usage(outputTokens),
      });
      return;
    }

    const event = (type: string, data: Record<string, unknown>) =>
      ex.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);

    ex.startEvents();
    event('message_start', { message });
    event('content_block_start', { index: 0, content_block: { type: 'text', text: '' } });
    event('ping', {});
    await ex.sleep(firstDelayMs);
    for (const [i, token] of tokens.entries()) {
      if (i > 0) await ex.sleep(intervalMs);
      if (ex.gone) return;
      if (reply.dropAfterTokens === i) return ex.drop();
      event('content_block_delta', { index: 0, delta: { type: 'text_delta', text: token } });
      ex.countToken();
    }
    if (ex.gone) return;
    if (reply.dropAfterTokens !== undefined && reply.dropAfterTokens >= tokens.length) return ex.drop();
    event('content_block_stop', { index: 0 });
    event('message_delta', {
      delta: { stop_reason: stopReason, stop_sequence: null },
      usage: { output_tokens: outputTokens },
    });
    event('message_stop', {});
    ex.end();
  };

  // What the engine's startup warmup asks for: free, and it leaves a connection open.
  const models: FakeRoute = (ex) => {
    ex.sendJson(200, {
      data: [
        {
          type: 'model',
          id: 'claude-haiku-4-5',
          display_name: 'Claude Haiku 4.5',
          created_at: '2025-10-01T00:00:00Z',
        },
      ],
      first_id: 'claude-haiku-4-5',
      last_id: 'claude-haiku-4-5',
      has_more: false,
    });
    return Promise.resolve();
  };

  return startFakeHttpServer({
    basePath: '',
    routes: { 'POST /v1/messages': messages, 'GET /v1/models': models },
    defaultReply: options.defaultReply ?? { type: 'text', text: 'Hello from the fake.' },
    errorBody: anthropicError,
    garbageBody: 'event: message_start\ndata: {"type":"message_start","message":{\n\n',
    port: options.port,
  });
}
