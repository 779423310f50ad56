/**
 * Call records: one row per call, one per answered turn, written behind the call, and the reads the
 * admin API needs (a company's calls, a call with its turns, cost events by period).
 *
 * The recorder only queues on the caller's path; a background loop writes the queue in batches
 * (one transaction per batch, every statement idempotent, so a batch retried after a broken
 * connection is harmless). While the database is unreachable the queue is kept in memory and
 * retried with a back-off; past `maxQueue` the oldest records are DROPPED and counted, with one
 * warning per outage. Unlike cost events they are not spooled to disk, on purpose: they are
 * analytics, not money, and turns carry what callers said (transcripts, captured names and numbers),
 * which should not pile up in a local plain-text file with no retention of its own.
 */
import type { TurnRecord } from '../../machines/types.ts';
import type { CostEvent, CostAction, CostPurpose } from '../cost/costEvent.ts';
import type { Logger } from '../observability/logger.ts';
import type { Db, Queryable } from './sql/db.ts';
import { dbErrorForLog, toDbError } from './sql/db.ts';

/** Anything Date understands: a Date, an ISO string or epoch milliseconds. */
export type Instant = Date | string | number;

/** A call the engine opened. */
export interface CallStarted {
  /** The engine's call id (CallSession.id), the one cost events carry. */
  readonly callId: string;
  readonly companyId: string;
  /** Usually null at this point: Twilio's CallSid arrives with the stream's start. */
  readonly callSid: string | null;
  readonly startedAt: Instant;
}

/** A call that ended, and why. */
export interface CallEnded extends CallStarted {
  readonly endedAt: Instant;
  readonly endReason: string;
}

/** An answered turn (the engine's onTurn observation plus the call id). */
export interface TurnWritten {
  readonly callId: string;
  readonly companyId: string;
  readonly record: TurnRecord;
  /** From the caller's last word to the reply being decided. */
  readonly latencyMs: number;
  /** The engine's own share of it (latency minus provider time on the critical path). */
  readonly engineMs?: number;
  /** When the turn was answered (default: when recorded). */
  readonly at?: Instant;
}

/** What the caller heard of a turn's reply (Media Streams calls; a barge-in cuts it short). */
export interface TurnHeard {
  readonly callId: string;
  readonly turn: number;
  readonly heard: string;
  readonly interrupted: boolean;
}

/** Counters since the recorder started (metrics, health). */
export interface CallRecorderStats {
  /** Records written (calls started, turns, calls ended). */
  readonly written: number;
  /** Records dropped: queue over its cap during an outage, or values the database refused. */
  readonly dropped: number;
  readonly failedBatches: number;
  readonly queued: number;
  readonly databaseAvailable: boolean;
}

/** Records calls and turns behind the call. */
export interface CallRecorder {
  recordCallStarted(call: CallStarted): void;
  recordTurn(turn: TurnWritten): void;
  /** Completes a recorded turn with what the caller heard (ignored for turns never recorded). */
  recordHeard(heard: TurnHeard): void;
  /** Creates the call row too if its start was never written. */
  recordCallEnded(call: CallEnded): void;
  /** Writes what is queued (tries the database even during a back-off). */
  flush(): Promise<void>;
  stats(): CallRecorderStats;
  /** Flushes, then stops the timers (shutdown). The database is not closed. */
  close(): Promise<void>;
}

/** Where and how often the recorder writes. */
export interface CallRecorderOptions {
  readonly db: Db;
  readonly log: Logger;
  /** Records per transaction, and the queue length that triggers a write before the interval (200). */
  readonly batchSize?: number;
  /** Longest a record waits before it is written (500 ms). */
  readonly flushIntervalMs?: number;
  /** Records kept in memory while the database is down; older ones are dropped beyond it (5 000). */
  readonly maxQueue?: number;
  readonly retryMinMs?: number;
  readonly retryMaxMs?: number;
}

type Op =
  | { readonly kind: 'started'; readonly call: CallStarted }
  | { readonly kind: 'turn'; readonly turn: TurnWritten; readonly at: string }
  | { readonly kind: 'heard'; readonly heard: TurnHeard }
  | { readonly kind: 'ended'; readonly call: CallEnded };

const iso = (t: Instant): string => new Date(t).toISOString();

const UPSERT_STARTED = `
INSERT INTO calls (id, company_id, call_sid, started_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
ON CONFLICT (id) DO UPDATE SET call_sid = coalesce(calls.call_sid, EXCLUDED.call_sid)`;

const UPSERT_ENDED = `
INSERT INTO calls (id, company_id, call_sid, started_at, ended_at, end_reason)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::text[])
ON CONFLICT (id) DO UPDATE SET
  call_sid = coalesce(EXCLUDED.call_sid, calls.call_sid),
  ended_at = EXCLUDED.ended_at,
  end_reason = EXCLUDED.end_reason`;

const INSERT_TURNS = `
INSERT INTO turns (
  call_id, turn, company_id, transcript, slots, category, scenario_id, tier, confidence,
  tier1_confidence, tier2_confidence, detect_confidence, warmup, warmup_reason, reconcile_reason,
  fallback_kind, next_action, timings, reply, latency_ms, engine_ms, created_at
)
SELECT * FROM unnest(
  $1::text[], $2::integer[], $3::text[], $4::text[], $5::jsonb[], $6::text[], $7::text[], $8::text[],
  $9::double precision[], $10::double precision[], $11::double precision[], $12::double precision[],
  $13::text[], $14::text[], $15::text[], $16::text[], $17::text[], $18::jsonb[], $19::text[],
  $20::double precision[], $21::double precision[], $22::timestamptz[]
)
ON CONFLICT (call_id, turn) DO NOTHING`;

const UPDATE_HEARD = `
UPDATE turns t SET heard = h.heard, interrupted = h.interrupted
FROM unnest($1::text[], $2::integer[], $3::text[], $4::boolean[]) AS h(call_id, turn, heard, interrupted)
WHERE t.call_id = h.call_id AND t.turn = h.turn`;

/** Keeps calls.turns right whatever order starts, turns and ends arrive in. */
const RECOUNT_TURNS = `
UPDATE calls SET turns = (SELECT count(*) FROM turns WHERE turns.call_id = calls.id)
WHERE calls.id = ANY($1::text[])`;

/** Transposes rows into one array per column (the shape `unnest` takes). */
function columnsOf(rows: readonly unknown[][], width: number): unknown[][] {
  const columns: unknown[][] = Array.from({ length: width }, () => new Array<unknown>(rows.length));
  rows.forEach((row, r) => row.forEach((v, c) => (columns[c]![r] = v)));
  return columns;
}

/** Writes one batch of records; every statement is idempotent. */
async function writeOps(tx: Queryable, ops: readonly Op[]): Promise<void> {
  // One row per call per statement: ON CONFLICT DO UPDATE may not touch a row twice.
  const started = new Map<string, CallStarted>();
  const ended = new Map<string, CallEnded>();
  const turns: Array<Extract<Op, { kind: 'turn' }>> = [];
  // One row per turn: the last report wins.
  const heard = new Map<string, TurnHeard>();
  for (const op of ops) {
    if (op.kind === 'started') started.set(op.call.callId, op.call);
    else if (op.kind === 'ended') ended.set(op.call.callId, op.call);
    else if (op.kind === 'heard') heard.set(`${op.heard.callId}\u0000${op.heard.turn}`, op.heard);
    else turns.push(op);
  }
  if (started.size > 0) {
    const rows = [...started.values()].map((c) => [c.callId, c.companyId, c.callSid, iso(c.startedAt)]);
    await tx.query(UPSERT_STARTED, columnsOf(rows, 4));
  }
  if (turns.length > 0) {
    const rows = turns.map(({ turn: t, at }) => {
      const r = t.record;
      return [
        t.callId,
        r.turn,
        t.companyId,
        r.utterance,
        JSON.stringify(r.slots),
        r.category,
        r.scenarioId,
        String(r.tier),
        r.confidence,
        r.tier1Confidence,
        r.tier2Confidence,
        r.situation?.confidence ?? null,
        r.warmup,
        r.warmupReason,
        r.reconcileReason,
        r.fallbackKind,
        r.next,
        JSON.stringify(r.timings),
        r.reply,
        t.latencyMs,
        t.engineMs ?? null,
        at,
      ];
    });
    await tx.query(INSERT_TURNS, columnsOf(rows, 22));
  }
  // After the turns: a reply's playback ends after its turn was recorded, often in the same batch.
  if (heard.size > 0) {
    const rows = [...heard.values()].map((h) => [h.callId, h.turn, h.heard, h.interrupted]);
    await tx.query(UPDATE_HEARD, columnsOf(rows, 4));
  }
  if (ended.size > 0) {
    const rows = [...ended.values()].map((c) => [
      c.callId,
      c.companyId,
      c.callSid,
      iso(c.startedAt),
      iso(c.endedAt),
      c.endReason,
    ]);
    await tx.query(UPSERT_ENDED, columnsOf(rows, 6));
  }
  const touched = new Set([...started.keys(), ...ended.keys(), ...turns.map((t) => t.turn.callId)]);
  await tx.query(RECOUNT_TURNS, [[...touched]]);
}

/** Starts a recorder writing behind into calls and turns. */
export function createCallRecorder(options: CallRecorderOptions): CallRecorder {
  const { db, log } = options;
  const batchSize = options.batchSize ?? 200;
  const flushIntervalMs = options.flushIntervalMs ?? 500;
  const maxQueue = Math.max(options.maxQueue ?? 5000, batchSize);
  const retryMinMs = options.retryMinMs ?? 500;
  const retryMaxMs = options.retryMaxMs ?? 30_000;

  let queue: Op[] = [];
  let written = 0;
  let dropped = 0;
  let failedBatches = 0;
  let down = false;
  let backoffMs = 0;
  let nextAttemptAt = 0;
  let droppedThisOutage = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let immediate = false;
  let forceNext = false;

  function markDown(err: unknown): void {
    failedBatches += 1;
    if (!down) log.warn({ err: dbErrorForLog(err) }, 'call records: database write failed; retrying later');
    down = true;
    backoffMs = Math.min(retryMaxMs, backoffMs === 0 ? retryMinMs : backoffMs * 2);
    nextAttemptAt = Date.now() + backoffMs;
  }

  function markUp(): void {
    if (down) log.info({ dropped }, 'call records: database writes resumed');
    down = false;
    backoffMs = 0;
    droppedThisOutage = false;
  }

  function drop(count: number, why: 'queue-full' | 'refused'): void {
    dropped += count;
    if (why === 'refused') {
      log.error({ count }, 'call records: the database refused a record; dropped');
    } else if (!droppedThisOutage) {
      droppedThisOutage = true;
      log.warn({ maxQueue }, 'call records: queue full while the database is down; dropping the oldest');
    }
  }

  /** A batch the database refused: write record by record so only the bad ones are dropped. */
  async function writeOneByOne(ops: readonly Op[]): Promise<void> {
    for (const [i, op] of ops.entries()) {
      try {
        await db.transaction((tx) => writeOps(tx, [op]));
        written += 1;
      } catch (err) {
        if (toDbError(err).code !== 'ERR_DB_REJECTED') {
          queue = [...ops.slice(i), ...queue];
          throw err;
        }
        drop(1, 'refused');
      }
    }
  }

  async function drainOnce(force: boolean): Promise<void> {
    while (queue.length > 0) {
      if (down && !force && Date.now() < nextAttemptAt) return;
      force = false;
      const batch = queue.splice(0, batchSize);
      try {
        try {
          await db.transaction((tx) => writeOps(tx, batch));
          written += batch.length;
        } catch (err) {
          if (toDbError(err).code !== 'ERR_DB_REJECTED') {
            queue = [...batch, ...queue];
            throw err;
          }
          await writeOneByOne(batch);
        }
        markUp();
      } catch (err) {
        markDown(err);
        if (queue.length > maxQueue) {
          const excess = queue.length - maxQueue;
          queue.splice(0, excess);
          drop(excess, 'queue-full');
        }
        return;
      }
    }
  }

  function schedule(): void {
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    if (queue.length === 0) return;
    const delay = down ? Math.max(flushIntervalMs, nextAttemptAt - Date.now()) : flushIntervalMs;
    timer = setTimeout(() => void kick(), delay);
    timer.unref();
  }

  function kick(): Promise<void> {
    if (running !== undefined) return running;
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    const force = forceNext;
    forceNext = false;
    running = drainOnce(force)
      .catch((err: unknown) => log.error({ err }, 'call records: drain failed'))
      .finally(() => {
        running = undefined;
        schedule();
      });
    return running;
  }

  function soon(): void {
    if (immediate) return;
    immediate = true;
    setImmediate(() => {
      immediate = false;
      void kick();
    });
  }

  function enqueue(op: Op): void {
    queue.push(op);
    if (queue.length > maxQueue) {
      // Only while writes fail (or lag far behind): drop the oldest, counted.
      queue.shift();
      drop(1, 'queue-full');
    }
    if (running !== undefined) return;
    if (queue.length >= batchSize && !down) soon();
    else if (timer === undefined) schedule();
  }

  async function flush(): Promise<void> {
    while (running !== undefined) await running;
    forceNext = true;
    await kick();
  }

  return {
    recordCallStarted: (call) => enqueue({ kind: 'started', call }),
    recordTurn: (turn) => enqueue({ kind: 'turn', turn, at: iso(turn.at ?? Date.now()) }),
    recordHeard: (heard) => enqueue({ kind: 'heard', heard }),
    recordCallEnded: (call) => enqueue({ kind: 'ended', call }),
    flush,
    stats: () => ({ written, dropped, failedBatches, queued: queue.length, databaseAvailable: !down }),
    async close() {
      await flush();
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Reads for the admin API.

/** A call as the admin API lists it. */
export interface CallSummary {
  readonly id: string;
  readonly callSid: string | null;
  readonly companyId: string;
  readonly startedAt: string;
  readonly endedAt: string | null;
  readonly endReason: string | null;
  readonly turns: number;
  /** Sum of the call's priced cost events. */
  readonly costUsd: number;
  /** False when some of its cost events had no price (the sum is then a lower bound). */
  readonly costComplete: boolean;
}

/** A stored turn. */
export interface TurnRow {
  readonly turn: number;
  readonly transcript: string;
  readonly slots: Readonly<Record<string, string>>;
  readonly category: string | null;
  readonly scenarioId: string | null;
  readonly tier: string;
  readonly confidence: number;
  readonly tier1Confidence: number | null;
  readonly tier2Confidence: number | null;
  readonly detectConfidence: number | null;
  readonly warmup: string;
  readonly warmupReason: string | null;
  readonly reconcileReason: string | null;
  readonly fallbackKind: string | null;
  readonly next: string;
  readonly timings: Readonly<Record<string, number | null>>;
  readonly reply: string;
  readonly latencyMs: number;
  readonly engineMs: number | null;
  readonly createdAt: string;
  /** What the caller heard of the reply (Media Streams calls); null when not reported. */
  readonly heard: string | null;
  readonly interrupted: boolean | null;
}

interface CallRow {
  id: string;
  call_sid: string | null;
  company_id: string;
  started_at: Date | string;
  ended_at: Date | string | null;
  end_reason: string | null;
  turns: number;
  cost_usd: number;
  cost_complete: boolean;
}

const CALL_COLUMNS = `
  c.id, c.call_sid, c.company_id, c.started_at, c.ended_at, c.end_reason, c.turns,
  coalesce((SELECT sum(e.cost_usd) FROM cost_events e WHERE e.call_id = c.id), 0)::float8 AS cost_usd,
  NOT EXISTS (SELECT 1 FROM cost_events e WHERE e.call_id = c.id AND e.cost_usd IS NULL) AS cost_complete`;

const isoOrNull = (t: Date | string | null): string | null => (t === null ? null : iso(t));

function toCallSummary(r: CallRow): CallSummary {
  return {
    id: r.id,
    callSid: r.call_sid,
    companyId: r.company_id,
    startedAt: iso(r.started_at),
    endedAt: isoOrNull(r.ended_at),
    endReason: r.end_reason,
    turns: r.turns,
    costUsd: r.cost_usd,
    costComplete: r.cost_complete,
  };
}

/** A company's calls, newest first; `before` (a startedAt) pages back. */
export async function listCalls(
  db: Queryable,
  query: { companyId: string; limit?: number; before?: Instant; from?: Instant; to?: Instant },
): Promise<CallSummary[]> {
  const rows = await db.query<CallRow>(
    `SELECT ${CALL_COLUMNS}
       FROM calls c
      WHERE c.company_id = $1
        AND ($2::timestamptz IS NULL OR c.started_at < $2)
        AND ($3::timestamptz IS NULL OR c.started_at >= $3)
        AND ($4::timestamptz IS NULL OR c.started_at < $4)
      ORDER BY c.started_at DESC, c.id DESC
      LIMIT $5`,
    [
      query.companyId,
      query.before === undefined ? null : iso(query.before),
      query.from === undefined ? null : iso(query.from),
      query.to === undefined ? null : iso(query.to),
      Math.min(Math.max(query.limit ?? 50, 1), 1000),
    ],
  );
  return rows.map(toCallSummary);
}

/** One call with its turns in order, or null. */
export async function getCall(
  db: Queryable,
  callId: string,
): Promise<{ call: CallSummary; turns: TurnRow[] } | null> {
  const calls = await db.query<CallRow>(`SELECT ${CALL_COLUMNS} FROM calls c WHERE c.id = $1`, [callId]);
  const call = calls[0];
  if (call === undefined) return null;
  const turns = await db.query<{
    turn: number;
    transcript: string;
    slots: Record<string, string>;
    category: string | null;
    scenario_id: string | null;
    tier: string;
    confidence: number;
    tier1_confidence: number | null;
    tier2_confidence: number | null;
    detect_confidence: number | null;
    warmup: string;
    warmup_reason: string | null;
    reconcile_reason: string | null;
    fallback_kind: string | null;
    next_action: string;
    timings: Record<string, number | null>;
    reply: string;
    latency_ms: number;
    engine_ms: number | null;
    created_at: Date | string;
    heard: string | null;
    interrupted: boolean | null;
  }>(
    `SELECT turn, transcript, slots, category, scenario_id, tier, confidence, tier1_confidence,
            tier2_confidence, detect_confidence, warmup, warmup_reason, reconcile_reason,
            fallback_kind, next_action, timings, reply, latency_ms, engine_ms, created_at, heard,
            interrupted
       FROM turns WHERE call_id = $1 ORDER BY turn`,
    [callId],
  );
  return {
    call: toCallSummary(call),
    turns: turns.map((t) => ({
      turn: t.turn,
      transcript: t.transcript,
      slots: t.slots,
      category: t.category,
      scenarioId: t.scenario_id,
      tier: t.tier,
      confidence: t.confidence,
      tier1Confidence: t.tier1_confidence,
      tier2Confidence: t.tier2_confidence,
      detectConfidence: t.detect_confidence,
      warmup: t.warmup,
      warmupReason: t.warmup_reason,
      reconcileReason: t.reconcile_reason,
      fallbackKind: t.fallback_kind,
      next: t.next_action,
      timings: t.timings,
      reply: t.reply,
      latencyMs: t.latency_ms,
      engineMs: t.engine_ms,
      createdAt: iso(t.created_at),
      heard: t.heard,
      interrupted: t.interrupted,
    })),
  };
}

interface CostEventRow {
  id: string;
  at: Date | string;
  company_id: string;
  call_id: string | null;
  call_sid: string | null;
  turn: number | null;
  purpose: string;
  tier: number | null;
  action: string;
  provider: string;
  model: string;
  input_tokens: number;
  output_tokens: number;
  duration_ms: number;
  cost_usd: number | null;
  estimated: boolean;
  price_version: string;
  time_saved_ms: number | null;
  audio_ms: number | null;
}

/**
 * A company's cost events in [from, to), oldest first. Page with `after`: the last event of the
 * previous page.
 */
export async function listCostEvents(
  db: Queryable,
  query: {
    companyId: string;
    from: Instant;
    to: Instant;
    limit?: number;
    after?: { readonly at: string; readonly id: string };
  },
): Promise<CostEvent[]> {
  const rows = await db.query<CostEventRow>(
    `SELECT id::text AS id, at, company_id, call_id, call_sid, turn, purpose, tier::integer AS tier,
            action, provider, model, input_tokens, output_tokens, duration_ms,
            cost_usd::float8 AS cost_usd, estimated, price_version, time_saved_ms,
            audio_ms
       FROM cost_events
      WHERE company_id = $1 AND at >= $2 AND at < $3
        AND ($4::timestamptz IS NULL OR (at, id) > ($4::timestamptz, $5::uuid))
      ORDER BY at, id
      LIMIT $6`,
    [
      query.companyId,
      iso(query.from),
      iso(query.to),
      query.after?.at ?? null,
      query.after?.id ?? null,
      Math.min(Math.max(query.limit ?? 1000, 1), 10_000),
    ],
  );
  return rows.map((r) => ({
    id: r.id,
    at: iso(r.at),
    companyId: r.company_id,
    callId: r.call_id,
    callSid: r.call_sid,
    turn: r.turn,
    purpose: r.purpose as CostPurpose,
    tier: r.tier === 2 || r.tier === 3 ? r.tier : null,
    action: r.action as CostAction,
    provider: r.provider,
    model: r.model,
    inputTokens: r.input_tokens,
    outputTokens: r.output_tokens,
    durationMs: r.duration_ms,
    costUsd: r.cost_usd,
    estimated: r.estimated,
    priceVersion: r.price_version,
    timeSavedMs: r.time_saved_ms,
    audioMs: r.audio_ms,
  }));
}
