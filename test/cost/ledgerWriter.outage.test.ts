/**
 * The ledger's promise: cut the database in the middle of a stream of calls, bring it back, and
 * every cost event arrives exactly once. On PostgreSQL (DATABASE_URL set) the writer's connections
 * go through a TCP proxy that really severs them; on PGlite a wrapper fails statements the same way.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { newCostEvent } from '../../src/cost/costEvent.ts';
import type { CostSink } from '../../src/cost/costEvent.ts';
import { createLedgerWriter } from '../../src/cost/ledgerWriter.ts';
import type { LedgerWriterOptions } from '../../src/cost/ledgerWriter.ts';
import { BACKEND, countCostEvents, openTestDb, silentLog } from '../store/dbForTest.ts';
import type { TestDb } from '../store/dbForTest.ts';
import { openOutageDb } from '../store/outageDb.ts';
import type { OutageDb } from '../store/outageDb.ts';

const CALLS = 20;
const EVENTS_PER_CALL = 50;
const GAP_MS = 20;

let t: TestDb;
let outage: OutageDb;
let spoolDir: string;

beforeEach(async () => {
  t = await openTestDb();
  outage = await openOutageDb(t);
  spoolDir = await mkdtemp(path.join(tmpdir(), 'switchboard-spool-'));
});

afterEach(async () => {
  await outage.dispose();
  await t.dispose();
  await rm(spoolDir, { recursive: true, force: true });
});

const writerOptions = (): LedgerWriterOptions => ({
  db: outage.db,
  spoolDir,
  log: silentLog,
  batchSize: 50,
  flushIntervalMs: 25,
  retryMinMs: 100,
  retryMaxMs: 400,
});

/**
 * Simulated calls, all at once, each paying for `events` requests a few milliseconds apart (the
 * event ids are the history the check compares against). `sink()` is asked for every event, so a
 * test can swap the writer mid-stream.
 */
async function streamOfCalls(
  sink: () => CostSink,
  ids: Set<string>,
  range: { from: number; to: number },
): Promise<void> {
  await Promise.all(
    Array.from({ length: CALLS }, async (_, call) => {
      for (let turn = range.from; turn < range.to; turn += 1) {
        const event = newCostEvent({
          companyId: `company-${call % 3}`,
          callId: `call-${call}`,
          callSid: `CA${String(call).padStart(32, '0')}`,
          turn,
          purpose: turn % 2 === 0 ? 'tier3' : 'warmup',
          tier: 3,
          action: 'completed',
          provider: 'openai',
          model: 'gpt-4o-mini',
          inputTokens: 100 + turn,
          outputTokens: 20,
          costUsd: 0.00001 * (turn + 1),
        });
        ids.add(event.id);
        sink().record(event);
        await sleep(GAP_MS);
      }
    }),
  );
}

async function expectExactlyOnce(ids: Set<string>): Promise<void> {
  const stored = await countCostEvents(t.db);
  expect(stored.rows).toBe(ids.size);
  expect(stored.distinct).toBe(ids.size);
  expect(stored.ids).toEqual(ids);
}

describe(`cost ledger through a database outage (${BACKEND})`, () => {
  it('cuts the connection mid-stream, restores it, and every event arrives exactly once', async () => {
    const writer = createLedgerWriter(writerOptions());
    const ids = new Set<string>();
    const stream = streamOfCalls(() => writer, ids, { from: 0, to: EVENTS_PER_CALL });

    await sleep(250);
    const beforeCut = writer.stats().inserted;
    outage.cut();
    await sleep(500);
    outage.restore();
    await stream;
    await writer.flush();

    expect(ids.size).toBe(CALLS * EVENTS_PER_CALL);
    await expectExactlyOnce(ids);
    const stats = writer.stats();
    // The outage really happened in the middle: writes before it, spooled events during it.
    expect(beforeCut).toBeGreaterThan(0);
    expect(stats.failedBatches).toBeGreaterThan(0);
    expect(stats.spooled).toBeGreaterThan(0);
    expect(stats.replayed).toBeGreaterThanOrEqual(stats.spooled);
    // A batch whose commit reached the database but whose answer did not is spooled, replayed and
    // found already there: counted as a duplicate, stored once.
    expect(stats.inserted).toBeLessThanOrEqual(ids.size);
    expect(stats.inserted + stats.duplicates).toBeGreaterThanOrEqual(ids.size);
    expect(stats.queued).toBe(0);
    expect(await writer.spoolBytes()).toBe(0);
    await writer.close();
  }, 30_000);

  it('restarts during the outage: a new writer replays the spool the first one left', async () => {
    const ids = new Set<string>();
    const first = createLedgerWriter(writerOptions());
    let current = first;
    const half = EVENTS_PER_CALL / 2;
    const firstHalf = streamOfCalls(() => current, ids, { from: 0, to: half });
    await sleep(150);
    outage.cut();
    await firstHalf;
    // Shutdown while the database is away: the queue goes to the spool.
    await first.close();
    expect(first.stats().spooled).toBeGreaterThan(0);
    expect(first.stats().queued).toBe(0);

    // The new process starts while the database is still away, then it comes back.
    const second = createLedgerWriter(writerOptions());
    current = second;
    const secondHalf = streamOfCalls(() => current, ids, { from: half, to: EVENTS_PER_CALL });
    await sleep(200);
    outage.restore();
    await secondHalf;
    await second.flush();

    expect(ids.size).toBe(CALLS * EVENTS_PER_CALL);
    await expectExactlyOnce(ids);
    expect(second.stats().replayed).toBeGreaterThanOrEqual(first.stats().spooled);
    expect(await second.spoolBytes()).toBe(0);
    await second.close();
  }, 30_000);
});
