/**
 * Child process for the two-process budget test: one "engine instance" hammering one budget key with
 * `lanes` concurrent reserve → (simulated LLM call) → settle(actual ≤ reserved) cycles until the
 * budget is exhausted. Started with fork(); waits for "go" so both processes start together, and
 * reports what it settled.
 */
import { randomInt } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadEnv } from '../../src/config/env.ts';
import type { BudgetStore } from '../../src/cost/budgets.ts';
import { createRedisBudgetStore } from '../../src/cost/redisBudgets.ts';
import { closeRedis, createRedisClient, waitForRedis } from '../../src/store/redisClient.ts';
import { createNaiveBudgetStore } from './budgetsNaive.ts';

export interface HammerArgs {
  readonly prefix: string;
  readonly key: string;
  readonly limit: number;
  readonly amount: number;
  readonly lanes: number;
  readonly store: 'lua' | 'naive';
}

export interface HammerResult {
  readonly pid: number;
  readonly granted: number;
  readonly denied: number;
  readonly settledMicros: number;
  readonly firstReserveAt: number;
  readonly lastReserveAt: number;
}

const args = JSON.parse(process.argv[2] ?? '{}') as HammerArgs;
const redisUrl = loadEnv().redisUrl;
if (redisUrl === undefined) throw new Error('REDIS_URL is not set');
// A generous timeout: two processes and hundreds of lanes share two cores with other work.
const redis = createRedisClient(redisUrl, { name: 'budget-hammer', commandTimeoutMs: 10_000 });
if (!(await waitForRedis(redis, 5000))) throw new Error('redis not ready');
const store: BudgetStore =
  args.store === 'lua'
    ? createRedisBudgetStore({ redis, keyPrefix: args.prefix })
    : createNaiveBudgetStore(redis, args.prefix);

let granted = 0;
let denied = 0;
let settledMicros = 0;
let firstReserveAt = Infinity;
let lastReserveAt = 0;

async function lane(): Promise<void> {
  for (;;) {
    const r = await store.reserve(args.key, args.amount, args.limit);
    const at = Date.now();
    firstReserveAt = Math.min(firstReserveAt, at);
    lastReserveAt = Math.max(lastReserveAt, at);
    if (r === null) {
      denied++;
      // Denied while others hold reservations is not exhaustion: stop only when settled spend
      // itself leaves no room for one more reservation.
      if ((await store.spent(args.key)) + args.amount > args.limit) return;
      await sleep(randomInt(1, 4));
      continue;
    }
    granted++;
    await sleep(randomInt(0, 6)); // the LLM request
    const actual = randomInt(0, args.amount + 1);
    await store.settle(r, actual);
    settledMicros += actual;
  }
}

process.send?.({ type: 'ready' });
process.once('message', (message: { type: string }) => {
  if (message.type !== 'go') return;
  void Promise.all(Array.from({ length: args.lanes }, lane)).then(() => {
    const result: HammerResult = {
      pid: process.pid,
      granted,
      denied,
      settledMicros,
      firstReserveAt,
      lastReserveAt,
    };
    process.send?.({ type: 'done', result }, () => {
      closeRedis(redis);
      process.disconnect();
    });
  });
});
