/**
 * An incremental parser for server-sent events (the `text/event-stream` format of streamed chat
 * completions), and a reader that feeds it from a response body with `'data'` events.
 *
 * The parser takes decoded text in chunks of any size: a chunk may end anywhere, inside a field
 * name, between the CR and LF of a line break, or mid-event. Lines end with LF, CRLF or CR; an
 * empty line dispatches the event; `:` lines are comments; `data` lines accumulate (joined by LF)
 * and `event` names the event; other fields (`id`, `retry`) are ignored. Like the `openai` SDK, an
 * event left without its closing blank line at the end of the stream is still dispatched.
 */
import type { Readable } from 'node:stream';

export interface SseEvent {
  /** The `event:` field; null when the event had none (the usual case for chat completions). */
  readonly event: string | null;
  /** The `data:` lines joined by LF. */
  readonly data: string;
}

export interface SseParser {
  /** Parses a chunk of text, calling `onEvent` for every event it completes. */
  push(text: string): void;
  /** The stream ended: dispatches an event that was still open. */
  end(): void;
}

/** An event (or a line) longer than the parser's limit: the body is not a sane event stream. */
export class SseLimitError extends Error {
  constructor(maxEventChars: number) {
    super(`an event exceeded ${maxEventChars} characters`);
    this.name = 'SseLimitError';
  }
}

/** Default bound on one event's text, so a body that never breaks a line cannot grow without end. */
export const DEFAULT_MAX_EVENT_CHARS = 1 << 20;

/**
 * Creates a parser calling `onEvent` synchronously for each complete event with data (events with
 * no `data:` line are dropped, as the SSE specification says). An error thrown by `onEvent`
 * propagates out of `push`/`end`; stop feeding the parser after that.
 */
export function createSseParser(
  onEvent: (event: SseEvent) => void,
  maxEventChars: number = DEFAULT_MAX_EVENT_CHARS,
): SseParser {
  // The unfinished last line of the text so far.
  let pending = '';
  // The previous chunk ended with CR: an LF opening the next one belongs to the same line break.
  let skipLf = false;
  let data = '';
  let hasData = false;
  let eventName: string | null = null;

  const dispatch = () => {
    if (!hasData) {
      eventName = null;
      return;
    }
    const event: SseEvent = { event: eventName, data };
    data = '';
    hasData = false;
    eventName = null;
    onEvent(event);
  };

  const line = (text: string) => {
    if (text === '') return dispatch();
    const colon = text.indexOf(':');
    if (colon === 0) return; // a comment
    const field = colon === -1 ? text : text.slice(0, colon);
    let value = colon === -1 ? '' : text.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    if (field === 'data') {
      data = hasData ? `${data}\n${value}` : value;
      hasData = true;
      if (data.length > maxEventChars) throw new SseLimitError(maxEventChars);
    } else if (field === 'event') {
      eventName = value;
    }
  };

  return {
    push(chunk) {
      let text = chunk;
      if (skipLf) {
        skipLf = false;
        if (text.charCodeAt(0) === 10) text = text.slice(1);
      }
      if (text === '') return;
      if (text.includes('\r')) {
        // Rare (servers send LF): make every line break an LF, remembering a CR that ends the chunk.
        skipLf = text.charCodeAt(text.length - 1) === 13;
        text = text.replace(/\r\n?/g, '\n');
      }
      if (pending !== '') {
        text = pending + text;
        pending = '';
      }
      let start = 0;
      for (;;) {
        const end = text.indexOf('\n', start);
        if (end === -1) break;
        line(text.slice(start, end));
        start = end + 1;
      }
      if (start < text.length) {
        pending = start === 0 ? text : text.slice(start);
        if (pending.length > maxEventChars) throw new SseLimitError(maxEventChars);
      }
    },
    end() {
      if (pending !== '') {
        const last = pending;
        pending = '';
        line(last);
      }
      dispatch();
    },
  };
}

/**
 * After `'stop'`, how long the reader waits for the body's end (the chunked terminator usually comes
 * with the last event or right after it) before resolving anyway. Resolving at the end means the
 * socket is back in the pool for the caller's next request.
 */
export const SSE_END_GRACE_MS = 100;

/**
 * Reads `body` as UTF-8 event-stream text (with `'data'` events) until it ends or `onEvent` returns
 * `'stop'` (e.g. at `data: [DONE]`); later events are not parsed. Resolves at the body's end; after
 * a stop, also when the body fails or SSE_END_GRACE_MS pass without an end (it is then left to drain).
 * Rejects when the body fails or closes before its end, or when `onEvent` or the parser throws; the
 * body is then destroyed (closing the connection), and the error is the one thrown.
 */
export function readSseEvents(
  body: Readable,
  onEvent: (event: SseEvent) => 'stop' | undefined,
  maxEventChars: number = DEFAULT_MAX_EVENT_CHARS,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let settled = false;
    let stopped = false;
    let graceTimer: NodeJS.Timeout | null = null;
    const parser = createSseParser((event) => {
      // Destroyed by an abort from inside onEvent: the chunk's remaining events are not delivered.
      if (!stopped && !body.destroyed && onEvent(event) === 'stop') stopped = true;
    }, maxEventChars);
    const detach = () => {
      settled = true;
      if (graceTimer !== null) clearTimeout(graceTimer);
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', onError);
      body.off('close', onClose);
    };
    const succeed = () => {
      if (settled) return;
      detach();
      resolve();
    };
    const fail = (err: unknown) => {
      if (settled) return;
      detach();
      body.destroy();
      reject(err instanceof Error ? err : new Error(String(err)));
    };
    const onData = (chunk: string) => {
      try {
        parser.push(chunk);
      } catch (err) {
        fail(err);
        return;
      }
      if (stopped) {
        // The rest of the body is read and dropped, so the socket can be reused.
        body.off('data', onData);
        body.resume();
        graceTimer = setTimeout(succeed, SSE_END_GRACE_MS);
      }
    };
    const onEnd = () => {
      if (!stopped) {
        try {
          parser.end();
        } catch (err) {
          fail(err);
          return;
        }
      }
      succeed();
    };
    const onError = (err: Error) => (stopped ? succeed() : fail(err));
    const onClose = () => (stopped ? succeed() : fail(new Error('the response closed before its end')));
    body.setEncoding('utf8');
    body.on('data', onData);
    body.on('end', onEnd);
    body.on('error', onError);
    body.on('close', onClose);
  });
}
