/**
 * What the shared-state store adds to a turn's critical path, measured on the engine's own code and
 * wiring: the warmup gate (the daily budget's spent and the hit-rate reads, through
 * createWarmupGate, with the memory layer the app puts in front of Redis: gateReads.ts), the Tier 3
 * budget reservation made before an LLM request (its settle follows the answer without being waited
 * for, as in tier3Llm) and a fallback rotation INCR (createFallbackPicker, with the index fetched
 * one pick ahead as the app does: prefetchedRotation.ts), each timed as the turn sees it.
 *
 * The same loop runs against the in-process stores and against Redis through the resilient wrappers
 * the app uses (createRedisServices), for `calls` concurrent calls on distinct companies, each
 * taking a turn every `thinkMs` or so (200 calls, one turn a second ≈ the turn rate `npm run bench`
 * sustains); the difference at p99 is what Redis adds. (Configuration reads are in-process cache
 * hits, and call records and cost events are written behind the call, so nothing else of the store
 * is on the path.) `--think-ms 0` turns it into a saturation test.
 *
 *   REDIS_URL=redis://127.0.0.1:6379 node src/bench/storeLatency.ts [--calls 200] [--think-ms 1000]
 *     [--duration-ms 10000]
 */
import { randomBytes } from 'node:crypto';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { readFileSync } from 'node:fs';
import { isMain, parseCli } from '../cli/args.ts';
import { parseCompany } from '../config/companyConfig.ts';
import type { CompanyConfig } from '../config/companyConfig.ts';
import { loadEnv } from '../config/env.ts';
import { monthlyKey, toMicros } from '../cost/budgets.ts';
import { AppError } from '../errors.ts';
import { createFallbackPicker } from '../routing/fallbackPicker.ts';
import { prefetchedRotation } from '../routing/prefetchedRotation.ts';
import { DEMO_FILES } from '../store/configStore.ts';
import { createRedisServices } from '../store/redisServices.ts';
import type { RedisServices } from '../store/redisServices.ts';
import { cachedGateReads } from '../warmup/gateReads.ts';
import { createWarmupGate } from '../warmup/warmupGate.ts';
import { summarize } from './stats.ts';
import type { Summary } from './stats.ts';

export interface StoreLatencyOptions {
  /** Concurrent calls, one company each (200). */
  readonly calls?: number;
  /** Mean pause between a call's turns, ms (1000; uniform from half to one and a half times it). */
  readonly thinkMs?: number;
  readonly durationMs?: number;
  readonly warmupMs?: number;
}

/** Per-operation latency (ms) for one kind of store. */
export interface StoreLatencyArm {
  readonly store: 'in-process' | 'redis';
  readonly turns: number;
  readonly warmupGateMs: Summary;
  /** The reservation before an LLM request. */
  readonly reserveMs: Summary;
  readonly rotationMs: Summary;
  /** The three together, as one turn that runs all of them pays. */
  readonly turnStoreMs: Summary;
  /** This process's own event-loop delay during the window (ms): the part of a tail that is not the store. */
  readonly eventLoopDelayMs: { readonly p50: number; readonly p99: number; readonly max: number };
}

const round = (s: Summary): Summary => {
  const r = (v: number | null) => (v === null ? null : Math.round(v * 1000) / 1000);
  return { n: s.n, p50: r(s.p50), p95: r(s.p95), p99: r(s.p99), max: r(s.max), mean: r(s.mean) };
};

/** Runs the store work of `inFlight` concurrent turns for `durationMs` against `services`. */
export async function measureStoreLatency(
  services: RedisServices,
  options: StoreLatencyOptions = {},
): Promise<StoreLatencyArm> {
  const inFlight = options.calls ?? 200;
  const thinkMs = options.thinkMs ?? 1000;
  const durationMs = options.durationMs ?? 10_000;
  const warmupMs = options.warmupMs ?? 500;
  const base = parseCompany(JSON.parse(readFileSync(DEMO_FILES[0]!, 'utf8')), 'demo');
  // One company per concurrent turn (distinct keys, as distinct companies' calls have), budgets
  // that never refuse, a warmup gate that always reads both stores.
  const companies: CompanyConfig[] = Array.from({ length: inFlight }, (_, i) => ({
    ...base,
    id: `bench-${i}`,
    gatekeeper: { ...base.gatekeeper, monthlyBudgetUsd: 1e9 },
    warmup: {
      ...base.warmup,
      enabled: true,
      dailyBudgetUsd: 1e9,
      confidenceThreshold: 1,
      enablePatternLearning: true,
    },
  }));
  const gate = createWarmupGate(
    services.mode === 'redis'
      ? cachedGateReads(services.budgets, services.stats)
      : { budgets: services.budgets, stats: services.stats },
  );
  const pick = createFallbackPicker(
    services.mode === 'redis' ? prefetchedRotation(services.rotation) : services.rotation,
  );
  const samples = {
    gate: [] as number[],
    budget: [] as number[],
    rotation: [] as number[],
    turn: [] as number[],
  };

  // One phase: each call starts at a random moment (no synchronised burst) and keeps taking turns;
  // only turns that start inside the measured window are counted.
  const begin = performance.now();
  const measureFrom = begin + Math.max(warmupMs, thinkMs * 1.5);
  const measureUntil = measureFrom + durationMs;
  const loop = async (company: CompanyConfig) => {
    if (thinkMs > 0) await sleep(Math.random() * thinkMs * 1.5);
    while (performance.now() < measureUntil) {
      const t0 = performance.now();
      await gate({ company, tier1Confidence: 0.2, category: 'billing' });
      const t1 = performance.now();
      const key = monthlyKey(company.id, new Date());
      const reservation = await services.budgets.reserve(
        key,
        1500,
        toMicros(company.gatekeeper.monthlyBudgetUsd),
      );
      if (reservation === null) throw new AppError('ERR_BENCH_FAILED', 'unexpected budget refusal');
      const t2 = performance.now();
      // After the LLM answered; the turn does not wait for it.
      void services.budgets.settle(reservation, 1200);
      await pick(company, 'noMatchFound', false);
      const t3 = performance.now();
      if (t0 >= measureFrom) {
        samples.gate.push(t1 - t0);
        samples.budget.push(t2 - t1);
        samples.rotation.push(t3 - t2);
        samples.turn.push(t3 - t0);
      }
      if (thinkMs > 0) await sleep(thinkMs * (0.5 + Math.random()));
    }
  };
  const delay = monitorEventLoopDelay({ resolution: 5 });
  const startDelay = setTimeout(() => delay.enable(), measureFrom - performance.now());
  await Promise.all(companies.map((c) => loop(c)));
  clearTimeout(startDelay);
  delay.disable();
  const delayMs = (ns: number) => Math.round(ns / 1000) / 1000;
  return {
    store: services.mode === 'redis' ? 'redis' : 'in-process',
    turns: samples.turn.length,
    warmupGateMs: round(summarize(samples.gate)),
    reserveMs: round(summarize(samples.budget)),
    rotationMs: round(summarize(samples.rotation)),
    turnStoreMs: round(summarize(samples.turn)),
    eventLoopDelayMs: {
      p50: delayMs(delay.percentile(50)),
      p99: delayMs(delay.percentile(99)),
      max: delayMs(delay.max),
    },
  };
}

async function main(argv: string[]): Promise<void> {
  const { values } = parseCli(argv, {
    calls: { type: 'string' },
    'think-ms': { type: 'string' },
    'duration-ms': { type: 'string' },
  });
  const env = loadEnv();
  if (env.redisUrl === undefined)
    throw new AppError('ERR_CONFIG_INVALID', 'set REDIS_URL to compare with Redis');
  const options = {
    calls: Number(values.calls ?? 200),
    thinkMs: Number(values['think-ms'] ?? 1000),
    durationMs: Number(values['duration-ms'] ?? 10_000),
  };
  const local = await createRedisServices({ redisUrl: undefined });
  const inProcess = await measureStoreLatency(local, options);
  await local.close();
  const keyPrefix = `bench:${randomBytes(4).toString('hex')}:`;
  const shared = await createRedisServices({ redisUrl: env.redisUrl, keyPrefix });
  if (shared.health?.degraded) throw new AppError('ERR_REDIS_UNAVAILABLE', 'redis is not reachable');
  try {
    const redis = await measureStoreLatency(shared, options);
    if (shared.health?.degraded) throw new AppError('ERR_BENCH_FAILED', 'redis degraded during the run');
    const added = (a: Summary, b: Summary) => Math.round(((b.p99 ?? 0) - (a.p99 ?? 0)) * 1000) / 1000;
    process.stdout.write(
      `${JSON.stringify(
        {
          ...options,
          arms: [inProcess, redis],
          addedP99Ms: {
            warmupGate: added(inProcess.warmupGateMs, redis.warmupGateMs),
            reserve: added(inProcess.reserveMs, redis.reserveMs),
            rotation: added(inProcess.rotationMs, redis.rotationMs),
            turnStore: added(inProcess.turnStoreMs, redis.turnStoreMs),
          },
        },
        null,
        2,
      )}\n`,
    );
  } finally {
    // Budget keys expire after their period; rotation and statistics keys of the run go now.
    const redis = shared.redis;
    if (redis !== null) {
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${keyPrefix}*`, 'COUNT', 500);
        cursor = next;
        if (keys.length > 0) await redis.unlink(...keys);
      } while (cursor !== '0');
    }
    await shared.close();
  }
}

if (isMain(import.meta.url)) await main(process.argv.slice(2));
