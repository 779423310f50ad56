/**
 * The durable cost ledger: a CostLedger that writes behind the call into the `cost_events` table.
 *
 * `record()` only queues the event and tells listeners (exactly like the in-memory ledger); a
 * background loop inserts the queue in batches every `flushIntervalMs` or as soon as `batchSize`
 * events wait. Each batch is one idempotent multi-row INSERT, so a retried batch or a replayed spool
 * stores every event once: the event's client-generated id is the primary key.
 *
 * When the database cannot be reached, or a batch fails, the batch is appended to a local spool
 * (JSON lines, fsync'd per batch) and the loop backs off; while the database stays down every flush
 * goes to the spool, so memory stays bounded and events are on disk within one flush interval. The
 * first write after the back-off replays the spool, oldest first, before the queue. A queue that
 * outgrows `maxQueue` (a database answering too slowly) is spilled to the spool as well.
 *
 * What can still be lost: events recorded in the last flush interval before the process is killed
 * (they are only in memory). `flush()` at shutdown drains them to the database or the spool.
 */
import type { Logger } from '../observability/logger.ts';
import type { Queryable } from '../store/sql/db.ts';
import { dbErrorForLog, toDbError } from '../store/sql/db.ts';
import { insertCostEvents } from '../store/sql/insertCostEvents.ts';
import type { CostEvent } from './costEvent.ts';
import type { CostLedger } from './costLedger.ts';
import type { LedgerSpool } from './ledgerSpool.ts';
import { createLedgerSpool } from './ledgerSpool.ts';

/** Where the writer writes, and its batching and back-off settings. */
export interface LedgerWriterOptions {
  /** Where `cost_events` lives (migrated). The writer does not close it. */
  readonly db: Queryable;
  /** The spool folder, e.g. DATA_DIR/spool/cost-events. Must survive restarts (not tmpfs). */
  readonly spoolDir: string;
  readonly log: Logger;
  /** Events per INSERT, and the queue length that triggers a flush before the interval (500). */
  readonly batchSize?: number;
  /** Longest an event waits in memory before its batch is written (200 ms). */
  readonly flushIntervalMs?: number;
  /** Queue length beyond which events are spilled to the spool instead of waiting (10 000). */
  readonly maxQueue?: number;
  /** Back-off after a failed write: doubles from `retryMinMs` up to `retryMaxMs` (500 ms, 30 s). */
  readonly retryMinMs?: number;
  readonly retryMaxMs?: number;
  /** Events kept for `recent()` and for de-duplicating ids in memory (10 000). */
  readonly recentCapacity?: number;
}

/** Counters since the writer started (for metrics and the health endpoint). */
export interface LedgerWriterStats {
  /** Distinct events handed to record(). */
  readonly recorded: number;
  /** Rows the database accepted as new. */
  readonly inserted: number;
  /** Events the database already had (a retry or replay of a write that had committed). */
  readonly duplicates: number;
  /** Events appended to the spool. */
  readonly spooled: number;
  /** Events read back from the spool and written. */
  readonly replayed: number;
  /** Events the database refused as invalid, set aside in the spool's rejected.jsonl. */
  readonly rejected: number;
  /** Spool lines that could not be read back (partial writes). */
  readonly skippedSpoolLines: number;
  /** Batches that could not be written to the database. */
  readonly failedBatches: number;
  /** Appends to the spool that failed (disk full?): the events stay queued in memory. */
  readonly spoolFailures: number;
  /** Events waiting in memory. */
  readonly queued: number;
  /** False from a failed write until the next successful one. */
  readonly databaseAvailable: boolean;
}

/** The durable CostLedger, with counters for metrics. */
export interface LedgerWriter extends CostLedger {
  stats(): LedgerWriterStats;
  /** Bytes waiting in the spool (alert when it grows). */
  spoolBytes(): Promise<number>;
  /**
   * Flushes, then stops retrying the database for spooled events (shutdown: the next start replays
   * them). Events recorded later are still written or spooled.
   */
  close(): Promise<void>;
}

type Counters = { -readonly [K in keyof LedgerWriterStats]: LedgerWriterStats[K] };

/**
 * Starts the writer; a spool left in `spoolDir` by a previous run is replayed as soon as the
 * database answers.
 */
export function createLedgerWriter(options: LedgerWriterOptions): LedgerWriter {
  const { db, log } = options;
  const batchSize = options.batchSize ?? 500;
  const flushIntervalMs = options.flushIntervalMs ?? 200;
  const maxQueue = Math.max(options.maxQueue ?? 10_000, batchSize);
  const retryMinMs = options.retryMinMs ?? 500;
  const retryMaxMs = options.retryMaxMs ?? 30_000;
  const recentCapacity = options.recentCapacity ?? 10_000;
  const spool: LedgerSpool = createLedgerSpool({ dir: options.spoolDir, log });

  const c: Counters = {
    recorded: 0,
    inserted: 0,
    duplicates: 0,
    spooled: 0,
    replayed: 0,
    rejected: 0,
    skippedSpoolLines: 0,
    failedBatches: 0,
    spoolFailures: 0,
    queued: 0,
    databaseAvailable: true,
  };
  const recent: CostEvent[] = [];
  const recentIds = new Set<string>();
  const listeners = new Set<(event: CostEvent) => void>();
  let queue: CostEvent[] = [];

  let down = false;
  let backoffMs = 0;
  let nextAttemptAt = 0;
  let timer: NodeJS.Timeout | undefined;
  /** When the timer fires (a probe after a back-off can be far away; a flush must not wait for it). */
  let timerAt = 0;
  let running: Promise<void> | undefined;
  let rerun = false;
  let forceNext = false;
  let spilling: Promise<unknown> | undefined;
  let immediate = false;
  let closed = false;
  /** Whether the spool may hold events: unknown at start (a previous run may have left some). */
  let spoolMayHaveEvents = true;

  function markDown(err: unknown): void {
    c.failedBatches += 1;
    if (!down) log.warn({ err: dbErrorForLog(err) }, 'cost ledger: database write failed; spooling events');
    down = true;
    c.databaseAvailable = false;
    backoffMs = Math.min(retryMaxMs, backoffMs === 0 ? retryMinMs : backoffMs * 2);
    nextAttemptAt = Date.now() + backoffMs;
  }

  function markUp(): void {
    if (down) log.info({ spooled: c.spooled, replayed: c.replayed }, 'cost ledger: database writes resumed');
    down = false;
    c.databaseAvailable = true;
    backoffMs = 0;
  }

  /** Appends to the spool; on failure the events go back to the head of the queue. */
  async function toSpool(events: CostEvent[]): Promise<boolean> {
    try {
      await spool.append(events);
      c.spooled += events.length;
      spoolMayHaveEvents = true;
      return true;
    } catch (err) {
      c.spoolFailures += 1;
      log.error(
        { err: { code: (err as NodeJS.ErrnoException).code } },
        'cost ledger: spool append failed; events kept in memory',
      );
      queue = [...events, ...queue];
      c.queued = queue.length;
      return false;
    }
  }

  /** One INSERT; counts what was new. */
  async function insert(batch: readonly CostEvent[]): Promise<void> {
    const inserted = await insertCostEvents(db, batch);
    c.inserted += inserted;
    c.duplicates += batch.length - inserted;
  }

  /**
   * The database refused the batch's values: write the events one by one so only the bad ones are
   * set aside. Any other failure is rethrown (the caller spools or stops the replay).
   */
  async function isolate(batch: readonly CostEvent[]): Promise<void> {
    for (const event of batch) {
      try {
        await insert([event]);
      } catch (err) {
        const e = toDbError(err);
        if (e.code !== 'ERR_DB_REJECTED') throw e;
        await spool.reject([event]);
        c.rejected += 1;
        log.error(
          { eventId: event.id, err: dbErrorForLog(e) },
          'cost ledger: event refused by the database; set aside',
        );
      }
    }
  }

  /** Writes a batch, isolating refused events; throws when the database is unavailable. */
  async function write(batch: readonly CostEvent[]): Promise<void> {
    try {
      await insert(batch);
    } catch (err) {
      if (toDbError(err).code !== 'ERR_DB_REJECTED') throw err;
      await isolate(batch);
    }
  }

  async function replaySpool(): Promise<boolean> {
    try {
      const done = await spool.replay(async (batch) => {
        await write(batch);
        c.replayed += batch.length;
      }, batchSize);
      c.skippedSpoolLines += done.skipped;
      spoolMayHaveEvents = await spool.hasPending();
      markUp();
      return true;
    } catch (err) {
      markDown(err);
      return false;
    }
  }

  async function drainOnce(force: boolean): Promise<void> {
    for (;;) {
      const mayTry = !down || force || Date.now() >= nextAttemptAt;
      // The spool holds older events than the queue: replay it first.
      if (mayTry && (await spool.hasPending())) {
        if (!(await replaySpool())) force = false;
      }
      if (queue.length === 0) return;
      if (down && !force && Date.now() < nextAttemptAt) {
        const all = queue;
        queue = [];
        c.queued = 0;
        await toSpool(all);
        return;
      }
      const batch = queue.splice(0, batchSize);
      c.queued = queue.length;
      try {
        await write(batch);
        markUp();
      } catch (err) {
        markDown(err);
        force = false;
        if (!(await toSpool(batch))) return;
      }
    }
  }

  function schedule(): void {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    let delay: number | undefined;
    if (queue.length > 0) delay = flushIntervalMs;
    // Probe the database again after the back-off only when spooled events wait for it (and not
    // after close: the next start replays them).
    else if (down && spoolMayHaveEvents && !closed) delay = Math.max(0, nextAttemptAt - Date.now());
    if (delay === undefined) return;
    timerAt = Date.now() + delay;
    timer = setTimeout(() => void kick(), delay);
    // Shutdown calls flush(); a pending flush must not keep the process alive on its own.
    timer.unref();
  }

  function kick(): Promise<void> {
    if (running !== undefined) {
      rerun = true;
      return running;
    }
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    running = (async () => {
      do {
        rerun = false;
        const force = forceNext;
        forceNext = false;
        try {
          await drainOnce(force);
        } catch (err) {
          // drainOnce handles database and spool failures; this is a bug, and it must not stop the loop.
          log.error({ err }, 'cost ledger: drain failed');
        }
      } while (rerun);
    })().finally(() => {
      running = undefined;
      schedule();
    });
    return running;
  }

  /** The queue is over its cap while a write is slow: put the surplus on disk now. */
  function spill(): void {
    if (spilling !== undefined) return;
    const all = queue;
    queue = [];
    c.queued = 0;
    spilling = toSpool(all).finally(() => {
      spilling = undefined;
      // Records kept coming while the spool was busy.
      if (queue.length >= maxQueue) spill();
    });
  }

  /** Starts a drain on the next turn of the event loop, once however many records ask for it. */
  function soon(): void {
    if (immediate) return;
    immediate = true;
    setImmediate(() => {
      immediate = false;
      void kick();
    });
  }

  async function flush(): Promise<void> {
    // Wait out the drain and spill in progress, then run a drain that tries the database even
    // during a back-off.
    while (running !== undefined || spilling !== undefined) await (running ?? spilling);
    forceNext = true;
    await kick();
  }

  // A spool left by a previous run (crash, outage at shutdown) is replayed as soon as possible.
  void kick();

  return {
    record(event) {
      if (recentIds.has(event.id)) return;
      recentIds.add(event.id);
      recent.push(event);
      if (recent.length > recentCapacity) recentIds.delete(recent.shift()!.id);
      queue.push(event);
      c.recorded += 1;
      c.queued = queue.length;
      for (const listener of listeners) {
        try {
          listener(event);
        } catch (err) {
          log.error({ err }, 'cost ledger listener failed');
        }
      }
      if (queue.length >= maxQueue) spill();
      else if (running !== undefined)
        return; // the drain in progress picks it up, or schedules
      else if (queue.length >= batchSize) soon();
      else if (timer === undefined || timerAt > Date.now() + flushIntervalMs) schedule();
    },
    onEvent(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    recent: () => recent,
    flush,
    stats: () => ({ ...c }),
    spoolBytes: () => spool.bytes(),
    async close() {
      closed = true;
      await flush();
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
    },
  };
}
