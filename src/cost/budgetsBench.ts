/**
 * Budget reservation figures against a real Redis: `inFlight` concurrent reserve → settle loops on
 * one hot key (every call of a busy company hitting the same counters, the worst case), reporting
 * latency percentiles per operation and throughput. Callable from the bench, or run directly:
 *
 *   REDIS_URL=redis://127.0.0.1:6379 node src/cost/budgetsBench.ts [--in-flight 100] [--duration-ms 5000]
 */
import { randomBytes } from 'node:crypto';
import { argv } from 'node:process';
import { fileURLToPath } from 'node:url';
import type { Redis } from 'ioredis';
import { loadEnv } from '../config/env.ts';
import { AppError } from '../errors.ts';
import { closeRedis, createRedisClient, waitForRedis } from '../store/redisClient.ts';
import { createRedisBudgetStore } from './redisBudgets.ts';

export interface BudgetBenchOptions {
  readonly redis: Redis;
  readonly inFlight?: number;
  readonly durationMs?: number;
  /** Untimed lead-in (script load, connection warm-up). */
  readonly warmupMs?: number;
  /** Keys are created under this prefix and deleted afterwards. */
  readonly keyPrefix?: string;
}

export interface BudgetBenchResult {
  readonly inFlight: number;
  readonly durationMs: number;
  readonly reserves: number;
  readonly reservesPerSec: number;
  /** reserve + settle pairs per second (each pair is one LLM request's budget traffic). */
  readonly cyclesPerSec: number;
  readonly reserveMs: { readonly p50: number; readonly p99: number; readonly max: number };
  readonly settleMs: { readonly p50: number; readonly p99: number; readonly max: number };
}

function percentiles(samples: number[]) {
  samples.sort((a, b) => a - b);
  const at = (q: number) => samples[Math.min(samples.length - 1, Math.floor(q * samples.length))] ?? 0;
  const round = (n: number) => Math.round(n * 1000) / 1000;
  return { p50: round(at(0.5)), p99: round(at(0.99)), max: round(samples.at(-1) ?? 0) };
}

export async function benchBudgetReservations(options: BudgetBenchOptions): Promise<BudgetBenchResult> {
  const inFlight = options.inFlight ?? 100;
  const durationMs = options.durationMs ?? 5000;
  const warmupMs = options.warmupMs ?? 500;
  const keyPrefix = options.keyPrefix ?? `bench:${randomBytes(4).toString('hex')}:`;
  const store = createRedisBudgetStore({ redis: options.redis, keyPrefix });
  const key = 'budget:tier3:bench:2026-11';
  const limit = 1e15; // never denied: this measures the grant path
  const reserveMs: number[] = [];
  const settleMs: number[] = [];

  const loop = async (until: number, record: boolean) => {
    while (performance.now() < until) {
      const t0 = performance.now();
      const r = await store.reserve(key, 1000, limit);
      const t1 = performance.now();
      if (r === null) throw new AppError('ERR_BENCH', 'unexpected budget denial');
      await store.settle(r, 700);
      if (record) {
        reserveMs.push(t1 - t0);
        settleMs.push(performance.now() - t1);
      }
    }
  };
  try {
    const warm = performance.now() + warmupMs;
    await Promise.all(Array.from({ length: inFlight }, () => loop(warm, false)));
    const start = performance.now();
    await Promise.all(Array.from({ length: inFlight }, () => loop(start + durationMs, true)));
    const elapsed = performance.now() - start;
    return {
      inFlight,
      durationMs: Math.round(elapsed),
      reserves: reserveMs.length,
      reservesPerSec: Math.round((reserveMs.length / elapsed) * 1000),
      cyclesPerSec: Math.round((settleMs.length / elapsed) * 1000),
      reserveMs: percentiles(reserveMs),
      settleMs: percentiles(settleMs),
    };
  } finally {
    await options.redis.unlink(`${keyPrefix}{${key}}`, `${keyPrefix}{${key}}:resv`);
  }
}

function flag(name: string, fallback: number): number {
  const i = argv.indexOf(name);
  const value = i < 0 ? undefined : Number(argv[i + 1]);
  return value !== undefined && Number.isFinite(value) && value > 0 ? value : fallback;
}

if (argv[1] === fileURLToPath(import.meta.url)) {
  const url = loadEnv().redisUrl;
  if (url === undefined) throw new AppError('ERR_CONFIG_INVALID', 'set REDIS_URL to run the budget bench');
  const redis = createRedisClient(url, { name: 'budget-bench', commandTimeoutMs: 5000 });
  if (!(await waitForRedis(redis, 5000)))
    throw new AppError('ERR_REDIS_UNAVAILABLE', 'redis is not reachable');
  try {
    const result = await benchBudgetReservations({
      redis,
      inFlight: flag('--in-flight', 100),
      durationMs: flag('--duration-ms', 5000),
    });
    console.log(JSON.stringify(result, null, 2));
  } finally {
    closeRedis(redis);
  }
}
