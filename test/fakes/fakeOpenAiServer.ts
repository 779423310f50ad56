/**
 * A fake OpenAI-compatible HTTP server for tests that drive our OpenAI clients (and the real `openai`
 * SDK, which the embedder and speech-to-text use) on the wire: streaming and
 * non-streaming chat completions, embeddings (base64 and float), the model list, scripted answers, latency,
 * failures, and a record of every request including whether the client hung up early.
 *
 * The scripting/recording core is exported too: the Anthropic fake reuses it.
 */
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import { listenLocal } from './listen.ts';

/** Whether the client hung up before the fake finished its answer. */
export type ClientWentAway = 'before-first-token' | 'before-last-token' | 'no';

export interface FakeRequest {
  /** 0-based, in arrival order. */
  readonly index: number;
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  /** The client's TCP port: equal ports on two requests mean the connection was kept alive. */
  readonly clientPort: number | null;
  /** The parsed JSON body ({} when there was none). */
  readonly body: Readonly<Record<string, unknown>>;
  /** performance.now() once the request body was read. */
  readonly receivedAtMs: number;
  /** Answer tokens written so far: stream deltas, or the whole answer when not streaming. */
  readonly tokensSent: number;
  /**
   * 'before-first-token': the connection closed before any token was written; 'before-last-token':
   * after at least one token but before the answer was complete; 'no': the answer was complete (or
   * the fake itself dropped the connection).
   */
  readonly clientWentAway: ClientWentAway;
  /** The usage the fake reported (or would have reported), null when none applies. */
  readonly usageSent: { readonly inputTokens: number; readonly outputTokens: number } | null;
  /** performance.now() when the exchange ended; null while it is still running. */
  readonly settledAtMs: number | null;
}

/** A normal answer. Latency fields override the server's defaults for this reply. */
export interface FakeTextReply {
  readonly type: 'text';
  readonly text: string;
  readonly firstTokenDelayMs?: number;
  readonly tokenIntervalMs?: number;
  /** The fake destroys the socket after writing this many tokens (a server-side drop). */
  readonly dropAfterTokens?: number;
  /** OpenAI only: leave out the final usage chunk even when the client asked for it. */
  readonly omitUsage?: boolean;
}

/** An HTTP error status with the vendor's error body. */
export interface FakeErrorReply {
  readonly type: 'error';
  readonly status: number;
  readonly message?: string;
}

/** A 200 `text/event-stream` answer with this raw body (a default malformed event if omitted). */
export interface FakeGarbageReply {
  readonly type: 'garbage';
  readonly body?: string;
}

/** Never answer, not even headers, until the client goes away or the server closes. */
export interface FakeHangReply {
  readonly type: 'hang';
}

/** Failure replies apply to any endpoint; a text reply is the chat answer (embeddings ignore its text). */
export type FakeReply = FakeTextReply | FakeErrorReply | FakeGarbageReply | FakeHangReply;

/** A reply, or a function of the request that picks one (e.g. to answer JSON for JSON requests). */
export type FakeScript = FakeReply | ((request: FakeRequest) => FakeReply);

/** What every fake server exposes. */
export interface FakeServer {
  /** Pass this to the SDK as `baseURL`. */
  readonly baseURL: string;
  /** Every request so far, live (fields update as exchanges progress). */
  readonly requests: readonly FakeRequest[];
  /** Queue replies for the next requests; once the queue is empty the default reply is used. */
  script(...replies: FakeScript[]): void;
  /** Resolves once request `index` (0-based) has arrived and its exchange has ended on the wire. */
  settled(index: number): Promise<FakeRequest>;
  /** Closes every connection, including hanging ones, and stops listening. Safe to call twice. */
  close(): Promise<void>;
}

/** Splits a text into the fake's "tokens": words with their leading whitespace. Joined, they give the text back. */
export function fakeTokens(text: string): string[] {
  return text.match(/\s*\S+|\s+$/g) ?? [];
}

/** The fake's token count for prompt text: about 4 characters per token. */
export function fakeTokenCount(text: string): number {
  return Math.ceil(text.length / 4);
}

/** One exchange as a route handler sees it. */
export interface FakeExchange {
  readonly request: FakeRequest;
  /** True once the connection has closed (client hang-up or drop). */
  readonly gone: boolean;
  /** Waits `ms`, ending early if the connection closes. */
  sleep(ms: number): Promise<void>;
  sendJson(status: number, body: unknown, headers?: Readonly<Record<string, string>>): void;
  /** Sends 200 `text/event-stream` headers right away. */
  startEvents(): void;
  /** Writes raw text; ignored once the connection is gone. */
  write(text: string): void;
  /** Counts one answer token as sent. */
  countToken(count?: number): void;
  setUsage(usage: { inputTokens: number; outputTokens: number }): void;
  /** Destroys the socket: the server going away, not the client. */
  drop(): void;
  end(): void;
}

export type FakeRoute = (exchange: FakeExchange, reply: FakeTextReply) => Promise<void>;

type MutableRequest = { -readonly [K in keyof FakeRequest]: FakeRequest[K] };

function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/**
 * Starts a scripted fake server on 127.0.0.1 (random port) serving `routes` ("POST /v1/...").
 * Shared by the vendor fakes: they supply routes, the default reply and their error body shape.
 */
export async function startFakeHttpServer(options: {
  readonly routes: Readonly<Record<string, FakeRoute>>;
  readonly defaultReply: FakeScript;
  readonly errorBody: (status: number, message: string) => unknown;
  readonly garbageBody: string;
  /** Appended to the origin to form baseURL (e.g. "/v1" for OpenAI, "" for Anthropic). */
  readonly basePath: string;
  /** Port on 127.0.0.1. Default 0: one the system picks. */
  readonly port?: number | undefined;
}): Promise<FakeServer> {
  const requests: MutableRequest[] = [];
  const queue: FakeScript[] = [];
  const settledWaiters = new Map<number, ReturnType<typeof deferred<FakeRequest>>>();
  const waiterFor = (index: number) => {
    let waiter = settledWaiters.get(index);
    if (waiter === undefined) {
      waiter = deferred<FakeRequest>();
      settledWaiters.set(index, waiter);
    }
    return waiter;
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      let body: Record<string, unknown> = {};
      let parseFailed = false;
      try {
        const parsed: unknown = raw === '' ? {} : JSON.parse(raw);
        if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) {
          body = parsed as Record<string, unknown>;
        } else {
          parseFailed = true;
        }
      } catch {
        parseFailed = true;
      }
      const record: MutableRequest = {
        index: requests.length,
        method: req.method ?? 'GET',
        path: (req.url ?? '/').split('?')[0] ?? '/',
        headers: req.headers,
        clientPort: req.socket.remotePort ?? null,
        body,
        receivedAtMs: performance.now(),
        tokensSent: 0,
        clientWentAway: 'no',
        usageSent: null,
        settledAtMs: null,
      };
      requests.push(record);
      const exchange = createExchange(record, res, () => waiterFor(record.index).resolve(record));

      const route = options.routes[`${record.method} ${record.path}`];
      if (parseFailed) {
        exchange.sendJson(400, options.errorBody(400, 'The request body is not valid JSON.'));
        return;
      }
      if (route === undefined) {
        exchange.sendJson(404, options.errorBody(404, `No route for ${record.method} ${record.path}.`));
        return;
      }
      const next = queue.shift() ?? options.defaultReply;
      const reply = typeof next === 'function' ? next(record) : next;
      switch (reply.type) {
        case 'error':
          // retry-after-ms: a client that retries (it should not) would do so at once, so tests see it.
          exchange.sendJson(reply.status, options.errorBody(reply.status, reply.message ?? 'Fake failure.'), {
            'retry-after-ms': '10',
          });
          return;
        case 'garbage':
          exchange.startEvents();
          exchange.write(reply.body ?? options.garbageBody);
          exchange.end();
          return;
        case 'hang':
          return;
        case 'text':
          route(exchange, reply).catch((err: unknown) => {
            console.error('fake server route failed', err);
            exchange.drop();
          });
      }
    });
  });

  const port = await listenLocal(server, options.port);

  return {
    baseURL: `http://127.0.0.1:${port}${options.basePath}`,
    requests,
    script(...replies) {
      queue.push(...replies);
    },
    settled(index) {
      return waiterFor(index).promise;
    },
    async close() {
      if (!server.listening) return;
      server.closeAllConnections();
      await new Promise<void>((resolve, reject) => server.close((err) => (err ? reject(err) : resolve())));
    },
  };
}

function createExchange(record: MutableRequest, res: ServerResponse, onSettled: () => void): FakeExchange {
  let gone = false;
  let dropped = false;
  const onClose = new Set<() => void>();

  res.on('close', () => {
    gone = true;
    // writableEnded: the fake had written its whole answer, so nobody went away early.
    if (!res.writableEnded && !dropped) {
      record.clientWentAway = record.tokensSent === 0 ? 'before-first-token' : 'before-last-token';
    }
    record.settledAtMs = performance.now();
    for (const callback of onClose) callback();
    onSettled();
  });

  return {
    request: record,
    get gone() {
      return gone;
    },
    sleep(ms) {
      if (gone || ms <= 0) return Promise.resolve();
      return new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          onClose.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, ms);
        onClose.add(wake);
      });
    },
    sendJson(status, body, headers = {}) {
      if (gone) return;
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify(body));
    },
    startEvents() {
      if (gone) return;
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.flushHeaders();
    },
    write(text) {
      if (!gone) res.write(text);
    },
    countToken(count = 1) {
      record.tokensSent += count;
    },
    setUsage(usage) {
      record.usageSent = usage;
    },
    drop() {
      dropped = true;
      res.socket?.destroy();
    },
    end() {
      if (!gone) res.end();
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// OpenAI

export interface FakeOpenAiOptions {
  /** Delay before the first token (or, when not streaming, before the answer). Default 0. */
  readonly firstTokenDelayMs?: number;
  /** Delay between tokens. Default 0. */
  readonly tokenIntervalMs?: number;
  /** Delay before an embeddings answer. Default 0. */
  readonly embeddingDelayMs?: number;
  /**
   * 'requested' (default) answers in the `encoding_format` the client asked for; 'float' always
   * answers float arrays, like some OpenAI-compatible servers do.
   */
  readonly embeddingEncoding?: 'requested' | 'float';
  /** Always answer vectors of this size, ignoring `dimensions` (a misbehaving server). */
  readonly embeddingDimensions?: number;
  /** Used once the script queue is empty. Default: the text "Hello from the fake." */
  readonly defaultReply?: FakeScript;
}

export type FakeOpenAiServer = FakeServer;

/** The deterministic, not normalised, vector the fake answers for `text`. */
export function fakeEmbeddingOf(text: string, dimensions: number): Float32Array {
  // FNV-1a seeds a mulberry32 generator: cheap, deterministic, and different for every text.
  let seed = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) seed = Math.imul(seed ^ text.charCodeAt(i), 0x01000193);
  const vector = new Float32Array(dimensions);
  for (let i = 0; i < dimensions; i++) {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    vector[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  }
  return vector;
}

/** Little-endian float32, base64: the wire format of `encoding_format: 'base64'`. */
function toBase64Float32(vector: Float32Array): string {
  const bytes = Buffer.alloc(vector.length * 4);
  vector.forEach((value, i) => bytes.writeFloatLE(value, i * 4));
  return bytes.toString('base64');
}

function openAiError(status: number, message: string): unknown {
  const [type, code] =
    status === 429
      ? ['requests', 'rate_limit_exceeded']
      : status >= 500
        ? ['server_error', null]
        : status === 401
          ? ['invalid_request_error', 'invalid_api_key']
          : ['invalid_request_error', null];
  return { error: { message, type, param: null, code } };
}

function messageText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((part: unknown) =>
        typeof part === 'object' && part !== null && 'text' in part && typeof part.text === 'string'
          ? part.text
          : '',
      )
      .join('');
  }
  return '';
}

function promptTexts(body: Readonly<Record<string, unknown>>): string[] {
  const messages = Array.isArray(body['messages']) ? (body['messages'] as unknown[]) : [];
  return messages.map((m) =>
    typeof m === 'object' && m !== null && 'content' in m ? messageText(m.content) : '',
  );
}

function maxTokensOf(body: Readonly<Record<string, unknown>>, ...keys: string[]): number {
  for (const key of keys) {
    const value = body[key];
    if (typeof value === 'number') return value;
  }
  return Number.POSITIVE_INFINITY;
}

/** Starts the fake OpenAI server; `baseURL` ends with `/v1`. */
export function startFakeOpenAiServer(options: FakeOpenAiOptions = {}): Promise<FakeOpenAiServer> {
  const firstTokenDelayMs = options.firstTokenDelayMs ?? 0;
  const tokenIntervalMs = options.tokenIntervalMs ?? 0;

  const chat: FakeRoute = async (ex, reply) => {
    const { body } = ex.request;
    const model = typeof body['model'] === 'string' ? body['model'] : 'unknown';
    const prompts = promptTexts(body);
    const format = body['response_format'];
    const wantsJson =
      typeof format === 'object' && format !== null && 'type' in format && format.type === 'json_object';
    if (wantsJson && !prompts.some((p) => /json/i.test(p))) {
      // The real API's rule for JSON mode.
      ex.sendJson(
        400,
        openAiError(
          400,
          "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.",
        ),
      );
      return;
    }

    const all = fakeTokens(reply.text);
    const limit = maxTokensOf(body, 'max_completion_tokens', 'max_tokens');
    const tokens = all.slice(0, limit);
    const finishReason = tokens.length < all.length ? 'length' : 'stop';
    const usage = {
      prompt_tokens: prompts.reduce((sum, p) => sum + fakeTokenCount(p), 0),
      completion_tokens: tokens.length,
      total_tokens: 0,
      prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
      completion_tokens_details: {
        reasoning_tokens: 0,
        audio_tokens: 0,
        accepted_prediction_tokens: 0,
        rejected_prediction_tokens: 0,
      },
    };
    usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;
    ex.setUsage({ inputTokens: usage.prompt_tokens, outputTokens: usage.completion_tokens });
    const id = `chatcmpl-fake-${ex.request.index}`;
    const created = Math.floor(Date.now() / 1000);
    const firstDelayMs = reply.firstTokenDelayMs ?? firstTokenDelayMs;
    const intervalMs = reply.tokenIntervalMs ?? tokenIntervalMs;

    if (body['stream'] !== true) {
      await ex.sleep(firstDelayMs + intervalMs * Math.max(0, tokens.length - 1));
      if (ex.gone) return;
      ex.countToken(tokens.length);
      ex.sendJson(200, {
        id,
        object: 'chat.completion',
        created,
        model,
        choices: [
          {
            index: 0,
            message: { role: 'assistant', content: tokens.join(''), refusal: null, annotations: [] },
            logprobs: null,
            finish_reason: finishReason,
          },
        ],
        usage,
        service_tier: 'default',
        system_fingerprint: 'fp_fake',
      });
      return;
    }

    const streamOptions = body['stream_options'];
    const includeUsage =
      typeof streamOptions === 'object' &&
      streamOptions !== null &&
      'include_usage' in streamOptions &&
      streamOptions.include_usage === true;
    const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
      `data: ${JSON.stringify({
        id,
        object: 'chat.completion.chunk',
        created,
        model,
        service_tier: 'default',
        system_fingerprint: 'fp_fake',
        choices,
        ...(includeUsage ? { usage: null } : {}),
        ...extra,
      })}\n\n`;
    const choice = (delta: Record<string, unknown>, finish: string | null = null) => ({
      index: 0,
      delta,
      logprobs: null,
      finish_reason: finish,
    });

    ex.startEvents();
    await ex.sleep(firstDelayMs);
    if (ex.gone) return;
    ex.write(chunk([choice({ role: 'assistant', content: '', refusal: null })]));
    for (const [i, token] of tokens.entries()) {
      if (i > 0) await ex.sleep(intervalMs);
      if (ex.gone) return;
      if (reply.dropAfterTokens === i) return ex.drop();
      ex.write(chunk([choice({ content: token })]));
      ex.countToken();
    }
    if (reply.dropAfterTokens !== undefined && reply.dropAfterTokens >= tokens.length) return ex.drop();
    ex.write(chunk([choice({}, finishReason)]));
    if (includeUsage && reply.omitUsage !== true) ex.write(chunk([], { usage }));
    ex.write('data: [DONE]\n\n');
    ex.end();
  };

  const embeddings: FakeRoute = async (ex) => {
    const { body } = ex.request;
    const input = body['input'];
    const texts = typeof input === 'string' ? [input] : Array.isArray(input) ? (input as unknown[]) : [];
    if (texts.length === 0 || !texts.every((t): t is string => typeof t === 'string' && t !== '')) {
      ex.sendJson(400, openAiError(400, "'$.input' is invalid. Please check the API reference."));
      return;
    }
    const model = typeof body['model'] === 'string' ? body['model'] : 'unknown';
    const dimensions =
      options.embeddingDimensions ??
      (typeof body['dimensions'] === 'number' ? body['dimensions'] : model.endsWith('-large') ? 3072 : 1536);
    const base64 = options.embeddingEncoding !== 'float' && body['encoding_format'] === 'base64';
    const promptTokens = texts.reduce((sum, t) => sum + fakeTokenCount(t), 0);
    ex.setUsage({ inputTokens: promptTokens, outputTokens: 0 });
    await ex.sleep(options.embeddingDelayMs ?? 0);
    ex.sendJson(200, {
      object: 'list',
      data: texts.map((text, index) => {
        const vector = fakeEmbeddingOf(text, dimensions);
        return {
          object: 'embedding',
          index,
          embedding: base64 ? toBase64Float32(vector) : Array.from(vector),
        };
      }),
      model,
      usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
    });
  };

  // What the engine's startup warmup asks for: free, and it leaves a connection open.
  const models: FakeRoute = (ex) => {
    ex.sendJson(200, {
      object: 'list',
      data: [{ id: 'gpt-4o-mini', object: 'model', created: 1_721_172_741, owned_by: 'system' }],
    });
    return Promise.resolve();
  };

  return startFakeHttpServer({
    basePath: '/v1',
    routes: {
      'POST /v1/chat/completions': chat,
      'POST /v1/embeddings': embeddings,
      'GET /v1/models': models,
    },
    defaultReply: options.defaultReply ?? { type: 'text', text: 'Hello from the fake.' },
    errorBody: openAiError,
    garbageBody: 'data: {"id":"chatcmpl-garbage","choices":[{"delta":\n\n',
  });
}
