import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import {
  SSE_END_GRACE_MS,
  SseLimitError,
  createSseParser,
  readSseEvents,
  type SseEvent,
} from '../../src/providers/http/sse.ts';

function parseAll(chunks: readonly string[], maxEventChars?: number): SseEvent[] {
  const events: SseEvent[] = [];
  const parser = createSseParser((e) => events.push(e), maxEventChars);
  for (const chunk of chunks) parser.push(chunk);
  parser.end();
  return events;
}

/** A chat-completions-like stream with comments, a named event, multi-line data and multi-byte text. */
const STREAM =
  ': keep-alive\n\n' +
  'data: {"choices":[{"delta":{"content":"Grüße"}}]}\n\n' +
  'event: note\ndata: first line\ndata: second line\n\n' +
  'id: 7\nretry: 100\ndata:no space\n\n' +
  'event: lonely\n\n' +
  'data: {"choices":[{"delta":{"content":" 東京 🎉"}}]}\n\n' +
  'data: [DONE]\n\n';

const EXPECTED: SseEvent[] = [
  { event: null, data: '{"choices":[{"delta":{"content":"Grüße"}}]}' },
  { event: 'note', data: 'first line\nsecond line' },
  { event: null, data: 'no space' },
  { event: null, data: '{"choices":[{"delta":{"content":" 東京 🎉"}}]}' },
  { event: null, data: '[DONE]' },
];

describe('createSseParser', () => {
  it('parses events, comments, named events and multi-line data; drops events without data', () => {
    expect(parseAll([STREAM])).toEqual(EXPECTED);
  });

  it('gives the same events however the text is split (every two-way split, and char by char)', () => {
    for (let at = 0; at <= STREAM.length; at++) {
      expect(parseAll([STREAM.slice(0, at), STREAM.slice(at)])).toEqual(EXPECTED);
    }
    expect(parseAll([...STREAM])).toEqual(EXPECTED);
  });

  it('accepts CRLF and CR line breaks, including a CRLF split between two chunks', () => {
    for (const eol of ['\r\n', '\r']) {
      const text = STREAM.replaceAll('\n', eol);
      expect(parseAll([text])).toEqual(EXPECTED);
      for (let at = 0; at <= text.length; at++) {
        expect(parseAll([text.slice(0, at), text.slice(at)])).toEqual(EXPECTED);
      }
    }
  });

  it('does not take an LF after a chunk-ending CR for an empty line', () => {
    const events = parseAll(['data: a\r', '\ndata: b\r\n\r\n']);
    expect(events).toEqual([{ event: null, data: 'a\nb' }]);
  });

  it('dispatches an event left open at the end of the stream, and nothing for a trailing comment', () => {
    expect(parseAll(['data: {"x":1}'])).toEqual([{ event: null, data: '{"x":1}' }]);
    expect(parseAll(['data: {"x":1}\n'])).toEqual([{ event: null, data: '{"x":1}' }]);
    expect(parseAll(['data: a\n\n: bye'])).toEqual([{ event: null, data: 'a' }]);
  });

  it('finds no events in a body that is not an event stream', () => {
    expect(parseAll(['<html><body>502 Bad Gateway</body></html>'])).toEqual([]);
  });

  it('refuses a line or an event longer than its limit', () => {
    expect(() => parseAll(['x'.repeat(101)], 100)).toThrow(SseLimitError);
    expect(() => parseAll(['data: ' + 'x'.repeat(60) + '\n', 'data: ' + 'y'.repeat(60) + '\n'], 100)).toThrow(
      SseLimitError,
    );
    expect(parseAll(['data: ' + 'x'.repeat(90) + '\n\n'], 100)).toHaveLength(1);
  });

  it("lets onEvent's error through", () => {
    const parser = createSseParser(() => {
      throw new Error('bad event');
    });
    expect(() => parser.push('data: 1\n\n')).toThrow('bad event');
  });
});

describe('readSseEvents', () => {
  it('decodes UTF-8 split inside a character and resolves at the end', async () => {
    const body = new PassThrough();
    const events: SseEvent[] = [];
    const done = readSseEvents(body, (e) => void events.push(e));
    const bytes = Buffer.from(STREAM, 'utf8');
    for (let i = 0; i < bytes.length; i += 3) body.write(bytes.subarray(i, i + 3));
    body.end();
    await done;
    expect(events).toEqual(EXPECTED);
  });

  it("after 'stop', drains the rest and resolves at the end without parsing more", async () => {
    const body = new PassThrough();
    const seen: string[] = [];
    const done = readSseEvents(body, (e) => {
      seen.push(e.data);
      return e.data === '[DONE]' ? 'stop' : undefined;
    });
    body.write('data: a\n\ndata: [DONE]\n\ndata: after\n\n');
    body.write('x'.repeat(10_000)); // not parsed, so no limit applies
    body.end();
    await done;
    expect(seen).toEqual(['a', '[DONE]']);
    expect(body.readableEnded).toBe(true);
  });

  it("after 'stop', resolves within the grace period when the body never ends", async () => {
    const body = new PassThrough();
    const started = performance.now();
    const done = readSseEvents(body, () => 'stop');
    body.write('data: [DONE]\n\n');
    await done;
    expect(performance.now() - started).toBeGreaterThanOrEqual(SSE_END_GRACE_MS - 5);
    expect(body.destroyed).toBe(false);
    body.destroy();
  });

  it('rejects with the error onEvent throws, and destroys the body', async () => {
    const body = new PassThrough();
    const boom = new Error('boom');
    const done = readSseEvents(body, () => {
      throw boom;
    });
    body.write('data: 1\n\n');
    await expect(done).rejects.toBe(boom);
    expect(body.destroyed).toBe(true);
  });

  it('delivers no more events once onEvent has destroyed the body (an abort)', async () => {
    const body = new PassThrough();
    const seen: string[] = [];
    const done = readSseEvents(body, (e) => {
      seen.push(e.data);
      body.destroy(new Error('aborted'));
      return undefined;
    });
    body.write('data: 1\n\ndata: 2\n\ndata: 3\n\n');
    await expect(done).rejects.toThrow('aborted');
    expect(seen).toEqual(['1']);
  });

  it('rejects when the body fails or closes before its end', async () => {
    const failing = new PassThrough();
    const failed = readSseEvents(failing, () => undefined);
    failing.write('data: 1\n\n');
    failing.destroy(new Error('socket hang up'));
    await expect(failed).rejects.toThrow('socket hang up');

    const closing = new PassThrough();
    const closed = readSseEvents(closing, () => undefined);
    closing.destroy();
    await expect(closed).rejects.toThrow(/closed before its end/);
  });

  it('rejects an oversized event with SseLimitError', async () => {
    const body = new PassThrough();
    const done = readSseEvents(body, () => undefined, 1000);
    body.write('data: ' + 'x'.repeat(2000));
    await expect(done).rejects.toBeInstanceOf(SseLimitError);
    expect(body.destroyed).toBe(true);
  });
});
