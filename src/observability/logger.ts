/**
 * pino, with every value that could carry a secret, a signature, audio or a caller's number replaced
 * by "[redacted]" before the line is written. Static messages; data goes in the object.
 *
 * Redaction is by key name, at any depth up to REDACT_DEPTH, in the line's object and in a child
 * logger's bindings: one pass over the keys that copies only the objects on the way to a
 * redacted value and leaves the caller's objects untouched. pino's own `redact` option parses each
 * of its path patterns again for every line (pino 10: about 10 µs a line with our patterns, against
 * under 1 µs without), and a key-name rule covers what those patterns did (`key` and `*.key`) and
 * more, whatever the nesting. Only plain objects and arrays are walked: an Error, a Buffer or a
 * class instance is written as pino writes it (its own serializer, if any), unless its key is one
 * of the redacted names.
 */
import { pino } from 'pino';
import type { Logger } from 'pino';

export type { Logger };

/** Keys whose values never reach a log line. */
export const REDACTED_KEYS: ReadonlySet<string> = new Set([
  'authorization',
  'x-twilio-signature',
  'apiKey',
  'authToken',
  'token',
  'payload',
  'from',
  'to',
  'caller',
  'callbackNumber',
]);

const CENSOR = '[redacted]';
/** Objects nested deeper than this are written as they are (log objects are shallow). */
const REDACT_DEPTH = 6;

function isWalkable(value: unknown): value is Record<string, unknown> | unknown[] {
  if (value === null || typeof value !== 'object') return false;
  if (Array.isArray(value)) return true;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

/**
 * `value` with every property named in REDACTED_KEYS replaced by "[redacted]", at any depth up to
 * REDACT_DEPTH. Returns `value` itself when nothing needed redacting; never mutates it.
 */
export function redactSecrets<T>(value: T, depth = 0): T {
  if (depth >= REDACT_DEPTH || !isWalkable(value)) return value;
  if (Array.isArray(value)) {
    let copy: unknown[] | null = null;
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      const next = redactSecrets(item, depth + 1);
      if (next !== item) {
        copy ??= value.slice();
        copy[i] = next;
      }
    }
    return (copy ?? value) as T;
  }
  let copy: Record<string, unknown> | null = null;
  for (const key of Object.keys(value)) {
    const item = value[key];
    const next = REDACTED_KEYS.has(key) ? CENSOR : redactSecrets(item, depth + 1);
    if (next !== item) {
      copy ??= { ...value };
      copy[key] = next;
    }
  }
  return (copy ?? value) as T;
}

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  const root = pino(
    { level, base: { service: 'switchboard' }, formatters: { log: redactSecrets } },
    destination,
  );
  // pino applies `formatters.bindings` to the root's base only, never to a child's bindings, so
  // `child` redacts them itself. Children inherit it from the root (pino makes each child with
  // Object.create from its parent), grandchildren included. Bindings are written once per child.
  // eslint-disable-next-line @typescript-eslint/unbound-method -- called below with each logger as `this`
  const child = root.child;
  root.child = function (this: Logger, bindings, options) {
    return child.call(this, redactSecrets(bindings), options);
  } as typeof child;
  return root;
}

/** Masks a phone number for logs: +1555•••4567 → "+1•••67". */
export function maskNumber(number: string | undefined | null): string {
  if (!number) return '';
  return `${number.slice(0, 2)}•••${number.slice(-2)}`;
}
