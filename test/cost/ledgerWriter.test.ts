import { spawn } from 'node:child_process';
import { appendFile, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CostEvent } from '../../src/cost/costEvent.ts';
import { newCostEvent } from '../../src/cost/costEvent.ts';
import { createLedgerWriter } from '../../src/cost/ledgerWriter.ts';
import type { LedgerWriterOptions } from '../../src/cost/ledgerWriter.ts';
import type { Db } from '../../src/store/sql/db.ts';
import { countCostEvents, openTestDb, silentLog } from '../store/dbForTest.ts';
import type { TestDb } from '../store/dbForTest.ts';
import { flakyDb } from '../store/outageDb.ts';

let t: TestDb;
const dirs: string[] = [];

beforeAll(async () => {
  t = await openTestDb();
});

afterAll(async () => {
  await t.dispose();
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function spoolDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'switchboard-spool-'));
  dirs.push(dir);
  return dir;
}

async function clean(): Promise<void> {
  await t.db.query('DELETE FROM cost_events');
}

function event(fields: Partial<CostEvent> = {}): CostEvent {
  return newCostEvent({
    companyId: 'acme',
    purpose: 'tier3',
    tier: 3,
    action: 'completed',
    provider: 'openai',
    model: 'gpt-4o-mini',
    inputTokens: 120,
    outputTokens: 30,
    durationMs: 420,
    costUsd: 0.000036,
    ...fields,
  });
}

/** Counts the INSERTs into cost_events that reach the database. */
function counting(db: Db): { db: Db; inserts: () => number } {
  let inserts = 0;
  return {
    db: {
      ...db,
      query: (sql, params) => {
        if (/INSERT INTO cost_events/.test(sql)) inserts += 1;
        return db.query(sql, params);
      },
    },
    inserts: () => inserts,
  };
}

async function writer(options: Partial<LedgerWriterOptions> = {}) {
  return createLedgerWriter({ db: t.db, spoolDir: await spoolDir(), log: silentLog, ...options });
}

describe('ledger writer', () => {
  it('writes N events in a few batched INSERTs, off the caller path', async () => {
    await clean();
    const counted = counting(t.db);
    const w = await writer({ db: counted.db, batchSize: 250, flushIntervalMs: 10_000 });
    const events = Array.from({ length: 1000 }, () => event());
    for (const e of events) w.record(e);
    // Nothing was written synchronously by record().
    expect(counted.inserts()).toBe(0);
    await w.flush();
    expect(counted.inserts()).toBe(4);
    const stored = await countCostEvents(t.db);
    expect(stored.rows).toBe(1000);
    expect(stored.distinct).toBe(1000);
    expect(w.stats()).toMatchObject({ recorded: 1000, inserted: 1000, duplicates: 0, spooled: 0, queued: 0 });
    await w.close();
  });

  it('flushes on its interval without being asked', async () => {
    await clean();
    const w = await writer({ flushIntervalMs: 20 });
    w.record(event());
    w.record(event());
    await expect.poll(async () => (await countCostEvents(t.db)).rows, { timeout: 5000 }).toBe(2);
    await w.close();
  });

  it('stores an event recorded twice (even by two writers) once', async () => {
    await clean();
    const e = event();
    const a = await writer();
    const b = await writer();
    a.record(e);
    a.record(e);
    b.record(e);
    await a.flush();
    await b.flush();
    const stored = await countCostEvents(t.db);
    expect(stored).toMatchObject({ rows: 1, distinct: 1 });
    expect(a.stats().recorded).toBe(1);
    expect(a.stats().inserted + b.stats().inserted).toBe(1);
    expect(a.stats().duplicates + b.stats().duplicates).toBe(1);
    await a.close();
    await b.close();
  });

  it('keeps the in-memory ledger semantics: listeners once per id, recent() bounded', async () => {
    await clean();
    const w = await writer({ recentCapacity: 3 });
    const seen: string[] = [];
    const off = w.onEvent((e) => seen.push(e.id));
    const events = Array.from({ length: 5 }, () => event());
    for (const e of events) w.record(e);
    w.record(events[4]!);
    expect(seen).toEqual(events.map((e) => e.id));
    expect(w.recent().map((e) => e.id)).toEqual(events.slice(2).map((e) => e.id));
    off();
    w.record(event());
    expect(seen).toHaveLength(5);
    await w.close();
  });

  it('stores costs exactly, and an unknown price as NULL', async () => {
    await clean();
    const w = await writer();
    const priced = event({ costUsd: 0.000123456789 });
    const unpriced = event({ costUsd: null, model: 'unknown-model' });
    w.record(priced);
    w.record(unpriced);
    await w.close();
    const rows = await t.db.query<{ id: string; cost: string | null }>(
      'SELECT id::text AS id, cost_usd::text AS cost FROM cost_events',
    );
    expect(Object.fromEntries(rows.map((r) => [r.id, r.cost]))).toEqual({
      [priced.id]: '0.000123456789',
      [unpriced.id]: null,
    });
  });

  it('sets aside an event the database refuses and writes the rest of its batch', async () => {
    await clean();
    const dir = await spoolDir();
    const w = createLedgerWriter({ db: t.db, spoolDir: dir, log: silentLog });
    const good = Array.from({ length: 9 }, () => event());
    const bad = { ...event(), id: 'not-a-uuid' };
    for (const e of [...good.slice(0, 4), bad, ...good.slice(4)]) w.record(e);
    await w.close();
    expect((await countCostEvents(t.db)).ids).toEqual(new Set(good.map((e) => e.id)));
    expect(w.stats()).toMatchObject({ inserted: 9, rejected: 1, spooled: 0 });
    const rejected = (await readFile(path.join(dir, 'rejected.jsonl'), 'utf8')).trim().split('\n');
    expect(rejected.map((l) => (JSON.parse(l) as CostEvent).id)).toEqual(['not-a-uuid']);
  });

  it('spills to the spool when the queue outgrows its cap behind a slow database', async () => {
    await clean();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const slow: Db = {
      ...t.db,
      query: async (sql, params) => {
        await gate;
        return t.db.query(sql, params);
      },
    };
    const w = await writer({ db: slow, batchSize: 10, maxQueue: 50, flushIntervalMs: 5 });
    const events = Array.from({ length: 200 }, () => event());
    for (const [i, e] of events.entries()) {
      w.record(e);
      if (i % 10 === 9) await new Promise((r) => setImmediate(r));
    }
    await expect.poll(() => w.stats().spooled, { timeout: 5000 }).toBeGreaterThan(0);
    await expect.poll(() => w.stats().queued, { timeout: 5000 }).toBeLessThan(50);
    expect(w.stats().inserted).toBe(0);
    release();
    await w.flush();
    const stored = await countCostEvents(t.db);
    expect(stored.rows).toBe(200);
    expect(stored.ids).toEqual(new Set(events.map((e) => e.id)));
    expect(await w.spoolBytes()).toBe(0);
    await w.close();
  });

  it('skips a corrupt trailing spool line with a warning and replays the rest', async () => {
    await clean();
    const dir = await spoolDir();
    let down = true;
    const warnings: string[] = [];
    const log = silentLog.child({});
    log.warn = ((_obj: unknown, msg: string) => void warnings.push(msg)) as typeof log.warn;
    const a = createLedgerWriter({ db: flakyDb(t.db, () => down), spoolDir: dir, log, retryMinMs: 60_000 });
    const events = Array.from({ length: 20 }, () => event());
    for (const e of events) a.record(e);
    await a.close();
    expect(a.stats().spooled).toBe(20);
    // A crash in the middle of an append leaves half a line.
    await appendFile(path.join(dir, 'current.jsonl'), JSON.stringify(event()).slice(0, 40));
    down = false;
    const b = createLedgerWriter({ db: t.db, spoolDir: dir, log });
    await b.flush();
    expect((await countCostEvents(t.db)).ids).toEqual(new Set(events.map((e) => e.id)));
    expect(b.stats()).toMatchObject({ replayed: 20, skippedSpoolLines: 1 });
    expect(warnings).toContain('cost spool: skipped unreadable lines (partial write?)');
    expect(await readdir(dir)).toEqual([]);
    await b.close();
  });

  it('replays, after a crash, what the crashed process had spooled', async () => {
    await clean();
    const dir = await spoolDir();
    const child = spawn(
      process.execPath,
      [fileURLToPath(new URL('../store/support/ledgerCrashChild.ts', import.meta.url)), dir, '300'],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const exited = new Promise((r) => child.on('exit', r));
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await expect.poll(() => out.includes('\n'), { timeout: 15_000 }).toBe(true);
    } finally {
      child.kill('SIGKILL');
      await exited;
    }
    const { ids } = JSON.parse(out) as { ids: string[] };
    // A torn append at the moment of the crash.
    await appendFile(path.join(dir, 'current.jsonl'), '{"id":"8a7c');

    const w = createLedgerWriter({ db: t.db, spoolDir: dir, log: silentLog });
    await w.flush();
    const stored = await countCostEvents(t.db);
    expect(stored.rows).toBe(300);
    expect(stored.ids).toEqual(new Set(ids));
    expect(w.stats()).toMatchObject({ replayed: 300, skippedSpoolLines: 1 });
    await w.close();
  }, 30_000);
});
