/**
 * A small HTTP/1.1 client for the LLM and speech APIs (OpenAI-compatible ones and Anthropic's), on
 * `node:http` / `node:https` (chosen by the base URL's protocol) with one keep-alive Agent per client,
 * so requests reuse connections and TLS sessions. It does what the chat, speech, embeddings and
 * transcription adapters need and no more: a JSON (or, for uploads, raw) request with the bearer key
 * and any fixed headers the API asks for (e.g. `anthropic-version`), the status and headers, the
 * body as the IncomingMessage to stream or read (bounded), and abort.
 *
 * Sockets: a response read to its end returns its socket to the pool; a destroyed response (abort,
 * a consumer that leaves early) closes it. An aborted signal closes the request on the wire at any
 * stage: before the connection, before the headers, or mid-body. Errors are Node's own (connection
 * failures, `aborted` mid-body) or an HttpAbortError; the adapters map them onto their AppErrors.
 * The API key goes into the `authorization` header only, never into an error message.
 */
import http, { type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import https from 'node:https';
import { urlToHttpOptions } from 'node:url';
import { readBody } from '../../readBody.ts';

export interface HttpClientOptions {
  /** Origin and base path, e.g. `https://api.openai.com/v1`; request paths are appended to it. */
  readonly baseURL: string;
  /** Sent as `authorization: Bearer <key>`. */
  readonly apiKey: string;
  /**
   * Sent with every request, e.g. `{'anthropic-version': '...'}`; names in lower case. They cannot
   * replace the headers the client sets itself (accept, authorization, user-agent, content-type,
   * content-length). Not for secrets: only the API key is masked in error messages.
   */
  readonly headers?: Readonly<Record<string, string>>;
  /**
   * How long an idle pooled connection is kept. Default 4000 ms (undici's default, which the SDK
   * used); a shorter `Keep-Alive: timeout=` hint from the server wins.
   */
  readonly idleSocketTimeoutMs?: number;
}

export interface HttpRequest {
  readonly method: 'GET' | 'POST';
  /** Appended to the base URL's path, e.g. `/chat/completions`. */
  readonly path: string;
  /** Sent as the JSON body (`content-type: application/json`). Not with `body`. */
  readonly json?: unknown;
  /** Sent as the body as it is, with its content type (e.g. a multipart upload). Not with `json`. */
  readonly body?: { readonly contentType: string; readonly data: Uint8Array };
  /** The `accept` header. Default `application/json`. */
  readonly accept?: string;
  /** Aborting it closes the request on the wire at any stage; already aborted => no request at all. */
  readonly signal: AbortSignal;
}

export interface HttpResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  /**
   * The body, to stream with `'data'` events or async iteration. Read it to its end (the socket
   * then returns to the pool) or destroy it (the socket is closed). An `'error'` listener is already
   * attached, so a failure never goes unhandled; a reader sees it through its own listener.
   */
  readonly body: IncomingMessage;
}

export interface HttpClient {
  /** Resolves once the response headers arrive, whatever the status. */
  request(request: HttpRequest): Promise<HttpResponse>;
  /**
   * The provider's message from an error response: `{error: {message}}`, `{message}` or the text
   * itself, read up to `maxBytes` (default MAX_ERROR_BODY_BYTES; a longer body is cut off and its
   * connection closed). Any occurrence of the API key is masked. Never rejects.
   */
  errorMessage(response: HttpResponse, maxBytes?: number): Promise<string>;
  /**
   * `text` with any occurrence of the API key masked (as `errorMessage` does), for other provider
   * text quoted in an error, e.g. an error event inside a stream.
   */
  redact(text: string): string;
  /** Closes every pooled connection (requests in flight are left alone). */
  close(): void;
}

/** OpenAI's own API: the base URL when none is configured. */
export const OPENAI_API_BASE_URL = 'https://api.openai.com/v1';

/** The most of an error body that is read; the message is in its first bytes. */
export const MAX_ERROR_BODY_BYTES = 64 * 1024;
/** Error messages quoted from a provider are cut to this length. */
const MAX_MESSAGE_CHARS = 1000;
const DEFAULT_IDLE_SOCKET_TIMEOUT_MS = 4000;
const USER_AGENT = `switchboard (node ${process.version})`;

/** The request was aborted by its signal. `isAbortError` (src/errors.ts) recognises it. */
export class HttpAbortError extends Error {
  constructor() {
    super('the request was aborted');
    this.name = 'AbortError';
  }
}

/** True for a 2xx status. */
export function isSuccessStatus(status: number): boolean {
  return status >= 200 && status < 300;
}

export function createHttpClient(options: HttpClientOptions): HttpClient {
  const url = new URL(options.baseURL);
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new Error(`baseURL must be http: or https:, not ${url.protocol}`);
  }
  const transport = url.protocol === 'https:' ? https : http;
  const agent = new transport.Agent({
    keepAlive: true,
    // On an idle pooled socket only: the agent closes it; a request in flight is not affected.
    timeout: options.idleSocketTimeoutMs ?? DEFAULT_IDLE_SOCKET_TIMEOUT_MS,
  });
  const { protocol, hostname, port, auth } = urlToHttpOptions(url);
  const basePath = url.pathname.replace(/\/+$/, '');
  // Built once; each request copies it and adds its own.
  const fixedHeaders: Readonly<Record<string, string>> = {
    ...options.headers,
    authorization: `Bearer ${options.apiKey}`,
    'user-agent': USER_AGENT,
  };
  const mask = (text: string) =>
    options.apiKey.length >= 8 ? text.replaceAll(options.apiKey, '[api key]') : text;

  return {
    request(request) {
      return new Promise<HttpResponse>((resolve, reject) => {
        const { signal } = request;
        if (signal.aborted) {
          reject(new HttpAbortError());
          return;
        }
        if (request.json !== undefined && request.body !== undefined) {
          reject(new TypeError('an HTTP request takes json or body, not both'));
          return;
        }
        const headers: Record<string, string> = {
          ...fixedHeaders,
          accept: request.accept ?? 'application/json',
        };
        let payload: string | Uint8Array | undefined;
        if (request.json !== undefined) {
          payload = JSON.stringify(request.json);
          headers['content-type'] = 'application/json';
          headers['content-length'] = String(Buffer.byteLength(payload));
        } else if (request.body !== undefined) {
          payload = request.body.data;
          headers['content-type'] = request.body.contentType;
          headers['content-length'] = String(payload.byteLength);
        }
        const req = transport.request({
          protocol,
          hostname,
          port,
          ...(auth === undefined ? {} : { auth }),
          method: request.method,
          path: basePath + request.path,
          headers,
          agent,
        });
        let response: IncomingMessage | null = null;
        let listening = true;
        const stopListening = () => {
          if (!listening) return;
          listening = false;
          signal.removeEventListener('abort', onAbort);
        };
        const onAbort = () => {
          stopListening();
          const err = new HttpAbortError();
          // Destroying an unfinished response destroys its socket; before the response, the request's.
          if (response !== null) {
            if (!response.complete) response.destroy(err);
          } else {
            req.destroy(err);
          }
        };
        signal.addEventListener('abort', onAbort, { once: true });
        // Stays attached for the request's life: after the response, socket errors are reported on
        // the request too, and have nobody else to hear them.
        req.on('error', (err) => {
          if (response !== null) return;
          stopListening();
          reject(signal.aborted ? new HttpAbortError() : err);
        });
        req.on('response', (res) => {
          response = res;
          res.on('error', () => undefined);
          res.on('close', stopListening);
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: res });
        });
        req.end(payload);
      });
    },

    async errorMessage(response, maxBytes = MAX_ERROR_BODY_BYTES) {
      let text: string;
      try {
        text = await readBodyText(response.body, maxBytes);
      } catch {
        return `(the error body could not be read)`;
      }
      return mask(providerMessage(text));
    },

    redact: mask,

    close() {
      agent.destroy();
    },
  };
}

/**
 * Reads `body` as UTF-8 text, at most `maxBytes` of it: a longer body is cut there and destroyed
 * (its connection closed). Read to its end, the socket returns to the pool.
 */
export async function readBodyText(body: IncomingMessage, maxBytes: number): Promise<string> {
  return (await readBody(body, maxBytes)).body.toString('utf8');
}

/** An answer that is longer than its reader allows, or not JSON (readJsonBody). */
export class HttpAnswerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HttpAnswerError';
  }
}

/**
 * Reads `body` as one JSON value, at most `maxBytes` of it. Rejects with HttpAnswerError when it is
 * longer (then cut off and its connection closed) or not JSON; a body that fails or is aborted
 * rejects with that error, as readBody does.
 */
export async function readJsonBody(body: IncomingMessage, maxBytes: number): Promise<unknown> {
  const read = await readBody(body, maxBytes);
  if (read.truncated) throw new HttpAnswerError(`the answer is larger than ${maxBytes} bytes`);
  try {
    return JSON.parse(read.body.toString('utf8')) as unknown;
  } catch {
    throw new HttpAnswerError('the answer is not JSON');
  }
}

/**
 * Reads `body` to its end and discards it, so its socket returns to the pool. Rejects when the body
 * fails or closes early.
 */
export function drainBody(body: IncomingMessage): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (body.readableEnded) {
      resolve();
      return;
    }
    const onEnd = () => {
      body.off('error', onError).off('close', onClose);
      resolve();
    };
    const onError = (err: Error) => {
      body.off('end', onEnd).off('close', onClose);
      reject(err);
    };
    const onClose = () => {
      body.off('end', onEnd).off('error', onError);
      reject(new Error('the response closed before its end'));
    };
    body.once('end', onEnd).once('error', onError).once('close', onClose);
    body.resume();
  });
}

/**
 * The provider's message in an error body: `{error: {message}}` (OpenAI's, and Anthropic's
 * `{type: "error", error: {type, message}}`), `{error: "..."}`, or the `{message}` some compatible
 * servers send; otherwise the text itself (or a note that it was empty). Cut to MAX_MESSAGE_CHARS.
 */
export function providerMessage(text: string): string {
  let message = text.trim();
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed === 'object' && parsed !== null) {
      const { error, message: topMessage } = parsed as { error?: unknown; message?: unknown };
      if (typeof error === 'object' && error !== null) {
        const inner = (error as { message?: unknown }).message;
        message = typeof inner === 'string' ? inner : JSON.stringify(inner ?? error);
      } else if (typeof error === 'string') {
        message = error;
      } else if (typeof topMessage === 'string') {
        message = topMessage;
      }
    }
  } catch {
    // Not JSON: the text is the message.
  }
  if (message === '') return '(no body)';
  return message.length > MAX_MESSAGE_CHARS ? `${message.slice(0, MAX_MESSAGE_CHARS)}…` : message;
}
