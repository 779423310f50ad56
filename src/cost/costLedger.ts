/**
 * Where cost events go. The embedded default keeps them in memory (bounded) and tells listeners;
 * the Postgres writer (batched, idempotent, spooled) implements the same CostSink.
 */
import type { CostEvent, CostSink } from './costEvent.ts';

export interface CostLedger extends CostSink {
  /** Listeners see every event as it is recorded (per-call summaries, metrics). */
  onEvent(listener: (event: CostEvent) => void): () => void;
  recent(): readonly CostEvent[];
  flush(): Promise<void>;
}

export function createMemoryLedger(capacity = 10_000): CostLedger {
  const events: CostEvent[] = [];
  const ids = new Set<string>();
  const listeners = new Set<(event: CostEvent) => void>();
  return {
    record(event) {
      if (ids.has(event.id)) return;
      ids.add(event.id);
      events.push(event);
      if (events.length > capacity) ids.delete(events.shift()!.id);
      for (const l of listeners) l(event);
    },
    onEvent(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    recent: () => events,
    flush: () => Promise.resolve(),
  };
}
