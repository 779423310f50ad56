import { describe, expect, it } from 'vitest';
import { REDACTED_KEYS, createLogger, redactSecrets } from '../../src/observability/logger.ts';

/** A logger writing into an array of parsed lines. */
function capture() {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger('info', {
    write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>),
  });
  return { log, lines };
}

describe('logger redaction', () => {
  it('redacts every listed key at the top level, nested, inside arrays and in headers', () => {
    const { log, lines } = capture();
    const secrets = Object.fromEntries([...REDACTED_KEYS].map((key) => [key, `secret-${key}`]));
    log.info(
      {
        ...secrets,
        nested: { ...secrets, keep: 1 },
        deeper: { req: { headers: { 'x-twilio-signature': 'sig', host: 'example.test' } } },
        slots: { callbackNumber: '+15551234567', name: 'Ana' },
        list: [{ token: 'tok', id: 7 }, 'plain'],
      },
      'message',
    );
    const text = JSON.stringify(lines[0]);
    expect(text).not.toContain('secret-');
    expect(text).not.toMatch(/sig"|tok"|\+1555/);
    expect(lines[0]).toMatchObject({
      ...Object.fromEntries([...REDACTED_KEYS].map((key) => [key, '[redacted]'])),
      nested: { keep: 1, token: '[redacted]' },
      deeper: { req: { headers: { 'x-twilio-signature': '[redacted]', host: 'example.test' } } },
      slots: { callbackNumber: '[redacted]', name: 'Ana' },
      list: [{ token: '[redacted]', id: 7 }, 'plain'],
      msg: 'message',
      service: 'switchboard',
    });
  });

  it("redacts a child's bindings, and a grandchild's", () => {
    const { log, lines } = capture();
    const child = log.child({ callId: 'c1', from: '+15551234567', meta: { caller: '+15557654321' } });
    child.child({ to: '+15550000000', turn: 2 }).info('hello');
    expect(JSON.stringify(lines[0])).not.toContain('+1555');
    expect(lines[0]).toMatchObject({
      callId: 'c1',
      from: '[redacted]',
      meta: { caller: '[redacted]' },
      to: '[redacted]',
      turn: 2,
    });
  });

  it("leaves the caller's objects untouched and returns them when nothing needs redacting", () => {
    const clean = { turn: 1, tier: 2, timings: { tier1Ms: 0.4 } };
    expect(redactSecrets(clean)).toBe(clean);
    const dirty = { a: { token: 't' }, b: { keep: true } };
    const out = redactSecrets(dirty);
    expect(out).toEqual({ a: { token: '[redacted]' }, b: { keep: true } });
    expect(dirty.a.token).toBe('t');
    // Unchanged branches are shared, not copied.
    expect(out.b).toBe(dirty.b);
  });

  it('redacts a Buffer or an Error by its key but does not walk into them', () => {
    const { log, lines } = capture();
    const audio = Buffer.from([1, 2, 3]);
    log.info({ payload: audio, err: { message: 'failed', code: 'E' } }, 'x');
    expect(lines[0]).toMatchObject({ payload: '[redacted]', err: { message: 'failed', code: 'E' } });
    expect(redactSecrets({ data: audio }).data).toBe(audio);
    // An Error is a class instance: passed on as it is (its serializer decides), even with a listed key.
    const error = Object.assign(new Error('failed'), { token: 'inside' });
    expect(redactSecrets({ err: error }).err).toBe(error);
    expect(redactSecrets({ token: error }).token).toBe('[redacted]');
  });

  it('stops at a bounded depth, so a cycle cannot loop', () => {
    const loop: Record<string, unknown> = { name: 'loop' };
    loop.self = loop;
    expect(() => redactSecrets(loop)).not.toThrow();
    const deep = { a: { b: { c: { d: { e: { f: { token: 'past the depth' } } } } } }, token: 't' };
    expect(redactSecrets(deep).token).toBe('[redacted]');
  });
});
