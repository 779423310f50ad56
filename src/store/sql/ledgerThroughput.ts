/**
 * How many cost events per second the ledger writer sustains into a database, batching as in
 * production: events arrive in chunks as fast as the writer stores them (at most two batches
 * waiting), and the clock stops when the last one is stored. Callable from the benchmark, or on its own:
 *
 *   node src/store/sql/ledgerThroughput.ts [--events 20000] [--batch 500]
 *
 * With DATABASE_URL it measures PostgreSQL (in a scratch schema, dropped afterwards); without, an
 * in-memory PGlite.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { isMain, parseCli } from '../../cli/args.ts';
import { loadEnv } from '../../config/env.ts';
import type { CostEvent } from '../../cost/costEvent.ts';
import { newCostEvent } from '../../cost/costEvent.ts';
import { createLedgerWriter } from '../../cost/ledgerWriter.ts';
import { AppError } from '../../errors.ts';
import { createLogger } from '../../observability/logger.ts';
import type { Logger } from '../../observability/logger.ts';
import type { Db } from './db.ts';
import { migrate } from './migrate.ts';
import { createPgDb } from './pgDb.ts';
import { createPgliteDb } from './pgliteDb.ts';

/** What to measure with. */
export interface LedgerThroughputOptions {
  /** A migrated database; the events are added to its cost_events. */
  readonly db: Db;
  readonly log: Logger;
  readonly events?: number;
  readonly batchSize?: number;
  /** Events recorded between two turns of the event loop (arrival burstiness). */
  readonly chunk?: number;
}

/** One measurement. */
export interface LedgerThroughput {
  readonly backend: Db['kind'];
  readonly events: number;
  readonly batchSize: number;
  readonly seconds: number;
  /** Events stored per second, from the first record() to the last row committed. */
  readonly eventsPerSecond: number;
  readonly inserts: number;
  /** Mean time spent in record() per event: the cost on the caller's path. */
  readonly recordMicros: number;
}

/** Records `events` through a fresh writer into `db` and times them until stored. */
export async function measureLedgerThroughput(options: LedgerThroughputOptions): Promise<LedgerThroughput> {
  const total = options.events ?? 20_000;
  const batchSize = options.batchSize ?? 500;
  const chunk = options.chunk ?? 250;
  let inserts = 0;
  const counted: Db = {
    ...options.db,
    query: (sql, params) => {
      if (sql.includes('INSERT INTO cost_events')) inserts += 1;
      return options.db.query(sql, params);
    },
  };
  const events: CostEvent[] = Array.from({ length: total }, (_, i) =>
    newCostEvent({
      companyId: `bench-${i % 10}`,
      callId: `bench-call-${i % 500}`,
      turn: i % 20,
      purpose: i % 3 === 0 ? 'warmup' : 'tier3',
      tier: 3,
      action: 'completed',
      provider: 'openai',
      model: 'gpt-4o-mini',
      inputTokens: 400,
      outputTokens: 60,
      durationMs: 700,
      costUsd: 0.000096,
    }),
  );
  const spoolDir = await mkdtemp(path.join(tmpdir(), 'switchboard-ledger-bench-'));
  try {
    // The interval is long so that batches form by size, as they do under load.
    const writer = createLedgerWriter({
      db: counted,
      spoolDir,
      log: options.log,
      batchSize,
      flushIntervalMs: 1000,
    });
    let inRecord = 0;
    const started = performance.now();
    for (let i = 0; i < total; i += chunk) {
      const t0 = performance.now();
      for (const e of events.slice(i, i + chunk)) writer.record(e);
      inRecord += performance.now() - t0;
      // Arrive no faster than the writer stores (sustained rate, not the spill to the spool).
      do await yieldToLoop();
      while (writer.stats().queued > 2 * batchSize);
    }
    await writer.close();
    const seconds = (performance.now() - started) / 1000;
    const stats = writer.stats();
    if (stats.inserted + stats.duplicates !== total || stats.spooled > 0) {
      throw new AppError('ERR_BENCH_FAILED', `ledger throughput: ${JSON.stringify(stats)}`);
    }
    return {
      backend: options.db.kind,
      events: total,
      batchSize,
      seconds: Number(seconds.toFixed(3)),
      eventsPerSecond: Math.round(total / seconds),
      inserts,
      recordMicros: Number(((inRecord * 1000) / total).toFixed(2)),
    };
  } finally {
    await rm(spoolDir, { recursive: true, force: true });
  }
}

async function main(argv: string[]): Promise<void> {
  const { values } = parseCli(argv, { events: { type: 'string' }, batch: { type: 'string' } });
  const env = loadEnv();
  const log = createLogger('warn');
  const schema = `ledger_bench_${randomBytes(4).toString('hex')}`;
  let admin: Db | undefined;
  let db: Db;
  if (env.databaseUrl === undefined) {
    db = await createPgliteDb();
  } else {
    admin = createPgDb({ url: env.databaseUrl, log, maxConnections: 1 });
    await admin.exec(`CREATE SCHEMA ${schema}`);
    db = createPgDb({ url: env.databaseUrl, log, schema });
  }
  try {
    await migrate(db, { log });
    const result = await measureLedgerThroughput({
      db,
      log,
      ...(values.events === undefined ? {} : { events: Number(values.events) }),
      ...(values.batch === undefined ? {} : { batchSize: Number(values.batch) }),
    });
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    await db.close();
    if (admin !== undefined) {
      await admin.exec(`DROP SCHEMA ${schema} CASCADE`);
      await admin.close();
    }
  }
}

if (isMain(import.meta.url)) await main(process.argv.slice(2));
