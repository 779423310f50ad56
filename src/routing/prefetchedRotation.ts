/**
 * Fallback rotation without a Redis round trip on the caller's path: each key keeps the next index
 * already fetched from the shared store, and a pick takes it and fetches another behind the turn.
 * Every index still comes from the shared INCR, so engines still take turns through the lines; an
 * engine just holds its next index one pick ahead. Only the first pick of a key on an engine waits.
 */
import type { RotationStore } from './fallbackPicker.ts';

/** Wraps a (remote) rotation store so picks are served from an index fetched ahead. */
export function prefetchedRotation(store: RotationStore, maxKeys = 10_000): RotationStore {
  const ahead = new Map<string, Promise<number>>();

  function fetchAhead(key: string): void {
    const next = store.next(key);
    // A failed prefetch is dropped: the next pick fetches in line.
    next.catch(() => ahead.delete(key));
    if (ahead.size >= maxKeys && !ahead.has(key)) ahead.clear();
    ahead.set(key, next);
  }

  return {
    async next(key) {
      const ready = ahead.get(key);
      ahead.delete(key);
      const index = await (ready ?? store.next(key));
      // After this pick has its line: the fetch costs the turn nothing.
      setImmediate(() => {
        if (!ahead.has(key)) fetchAhead(key);
      });
      return index;
    },
  };
}
