/**
 * THE budget guarantee, across real processes: two engine processes sharing one Redis, each with
 * hundreds of concurrent reserve → settle cycles on the same company key, never jointly overspend
 * by more than one reservation, and they really do exhaust the budget. The same harness run on a
 * naive read-then-INCRBY store must fail, which shows the test can catch a race.
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createRedisBudgetStore } from '../../src/cost/redisBudgets.ts';
import { NO_REDIS, adminClient, deleteByPrefix, redisUrl, testPrefix } from '../store/redisTestEnv.ts';
import type { HammerArgs, HammerResult } from './budgetsHammer.ts';

const HAMMER = fileURLToPath(new URL('./budgetsHammer.ts', import.meta.url));
const AMOUNT = 1000; // micro-dollars per reservation
const LIMIT = 400 * AMOUNT; // with actual spend averaging half a reservation: ~800 cycles in all
const LANES = 200; // concurrent reservations per process

function start(args: HammerArgs): { child: ChildProcess; ready: Promise<void>; done: Promise<HammerResult> } {
  const child = fork(HAMMER, [JSON.stringify(args)], {
    execArgv: [],
    env: { ...process.env, REDIS_URL: redisUrl },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let onReady: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  const done = new Promise<HammerResult>((resolve, reject) => {
    child.on('message', (m: { type: string; result?: HammerResult }) => {
      if (m.type === 'ready') onReady();
      if (m.type === 'done' && m.result) resolve(m.result);
    });
    child.on('exit', (code) => reject(new Error(`hammer process exited with ${code} before reporting`)));
    child.on('error', reject);
  });
  return { child, ready, done };
}

async function runTwoProcesses(store: HammerArgs['store'], prefix: string, key: string) {
  const args: HammerArgs = { prefix, key, limit: LIMIT, amount: AMOUNT, lanes: LANES, store };
  const processes = [start(args), start(args)];
  try {
    await Promise.all(processes.map((p) => p.ready));
    for (const p of processes) p.child.send({ type: 'go' });
    return await Promise.all(processes.map((p) => p.done));
  } finally {
    for (const p of processes) if (p.child.exitCode === null) p.child.kill();
  }
}

describe.skipIf(redisUrl === undefined)(
  `two engine processes, one Redis budget (${redisUrl ? 'real Redis' : NO_REDIS})`,
  () => {
    const prefix = testPrefix();
    let redis: Redis;
    beforeAll(() => {
      redis = adminClient();
    });
    afterAll(async () => {
      await deleteByPrefix(redis, prefix);
      redis.disconnect();
    });

    test(
      'never overspend by more than one reservation, and exhaust the budget',
      { timeout: 60_000 },
      async () => {
        const key = 'budget:tier3:hammered:2026-11';
        const results = await runTwoProcesses('lua', prefix, key);
        const [a, b] = results as [HammerResult, HammerResult];
        const settled = a.settledMicros + b.settledMicros;

        // Two real processes, each doing hundreds of cycles, overlapping in time.
        expect(a.pid).not.toBe(b.pid);
        expect(a.granted).toBeGreaterThan(100);
        expect(b.granted).toBeGreaterThan(100);
        expect(Math.min(a.lastReserveAt, b.lastReserveAt)).toBeGreaterThan(
          Math.max(a.firstReserveAt, b.firstReserveAt),
        );

        // The guarantee.
        expect(settled).toBeLessThanOrEqual(LIMIT + AMOUNT);
        // Exhausted: no room was left for one more reservation.
        expect(settled).toBeGreaterThan(LIMIT - AMOUNT);
        expect(a.denied + b.denied).toBeGreaterThan(0);
        // Redis agrees with what the processes settled, and holds nothing open.
        const snapshot = await createRedisBudgetStore({ redis, keyPrefix: prefix }).snapshot(key);
        expect(snapshot).toEqual({ spent: settled, reserved: 0, reservations: 0 });
      },
    );

    test('the same harness catches a racy read-then-INCRBY store', { timeout: 60_000 }, async () => {
      const results = await runTwoProcesses('naive', prefix, 'budget:tier3:naive:2026-11');
      const settled = results.reduce((sum, r) => sum + r.settledMicros, 0);
      // The guarantee above does not hold for it: it overspends by many reservations.
      expect(settled).toBeGreaterThan(LIMIT + AMOUNT);
    });
  },
);
