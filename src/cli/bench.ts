/**
 * `npm run bench`: concurrent simulated callers over the ConversationRelay protocol, on loopback,
 * against the real server, with fake providers of fixed, production-like latency.
 *
 * Three processes: this one (orchestrator and load generator), the engine (src/bench/engineProcess.ts,
 * startApp on port 0 with a temporary data folder, run with --expose-gc) and the fake LLM provider
 * (src/bench/fakeProviders.ts). On a machine with two or more CPUs the engine is pinned to CPU 0 and
 * the other two to CPU 1 (taskset), so callers and fakes do not steal the engine's core.
 *
 * Phases: cold start (fresh engines with and without the startup warmup, first-turn latency) →
 * warm-up → memory per live call → load levels (engine overhead, per-stage latency, calls
 * sustained) → side-by-side arms (warmup on/off, parallel/sequential understanding).
 *
 *   npm run bench                       # ≈ 3 minutes: cold start, then 50, 200, 500 calls
 *   npm run bench -- --quick            # ≈ 70 s, smaller
 *   npm run -s bench -- --calls 500 --duration 30 --json
 *
 * See docs/BENCHMARKS.md for how to read the figures.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { runColdStart } from '../bench/coldStart.ts';
import type { ColdStartResult } from '../bench/coldStart.ts';
import type { ClientSample, ArmStats } from '../bench/loadGenerator.ts';
import { Load, connectIdle } from '../bench/loadGenerator.ts';
import type {
  EngineAnswer,
  EngineChildConfig,
  EngineRequest,
  EngineWindow,
  FakeChildAnswer,
  FakeChildConfig,
  FakeChildRequest,
  TurnSample,
} from '../bench/protocol.ts';
import { Child } from '../bench/protocol.ts';
import type { AbResult, ArmResult, BenchResult, LevelResult, MemoryResult, Stage } from '../bench/report.ts';
import { STAGES, formatReport } from '../bench/report.ts';
import type { CpuShares } from '../bench/machineCpu.ts';
import { cpuShares, describeMachine, readCpuTimes } from '../bench/machineCpu.ts';
import {
  COMPANIES,
  MAIN_MIX,
  TIER1_UTTERANCES,
  TIER3_ANSWER_TOKENS,
  TIER3_ONLY,
  TIER3_UTTERANCES,
  createDataDir,
} from '../bench/scenario.ts';
import { countBy, ratio, summarize } from '../bench/stats.ts';
import type { AnsweredBy, StageTimings } from '../../machines/types.ts';
import { loadEnv } from '../config/env.ts';
import { closeRedis, createRedisClient, waitForRedis } from '../store/redisClient.ts';
import { createPgDb } from '../store/sql/pgDb.ts';
import { isMain, numberFlag, parseCli, runCli, usageError, userPath } from './args.ts';

const USAGE = `usage: npm run bench -- [options]

  --calls 50,200,500     concurrent calls per load level (one number or a list)
  --duration 25          measurement window per level, seconds (after ramp-up)
  --think 1000-3000      caller think time between a reply and the next utterance, ms
  --memory-calls N       idle calls for the memory figure (default: the largest level)
  --ab-callers 10        callers per arm in the side-by-side phase (4 arms run at once)
  --ab-duration 20       side-by-side window, seconds
  --cold-runs 5          cold-start runs (each starts two fresh engines: startup warmup on, off)
  --embedding-ms 100     fake embeddings latency
  --first-token-ms 400   fake LLM first-token latency (Tier 3, warmup)
  --token-ms 15          fake LLM interval between streamed tokens
  --understanding-ms 150 fake LLM latency of capture/detect (JSON answers)
  --log-level info       engine log level (written to /dev/null)
  --stores memory        memory: no database, in-process shared state (the reference runs);
                         env: DATABASE_URL (a scratch schema, dropped after) or PGlite, and
                         REDIS_URL (a scratch key prefix, deleted after) when set
  --skip memory,ab       leave phases out (coldstart, warmup, memory, load, ab)
  --no-pin               do not pin processes to CPUs
  --cpu-prof DIR         write a V8 CPU profile of the engine process into DIR
  --quick                small and short (levels 10,50; 5 s windows)
  --json                 print the result as JSON instead of tables

npm run bench -- audio --help: the Media Streams audio bench (src/cli/benchAudio.ts)
`;

const ENGINE_SCRIPT = fileURLToPath(new URL('../bench/engineProcess.ts', import.meta.url));
const FAKE_SCRIPT = fileURLToPath(new URL('../bench/fakeProviders.ts', import.meta.url));

type Engine = Child<EngineRequest, EngineAnswer>;
type Fake = Child<FakeChildRequest, FakeChildAnswer>;

function progress(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function waitForNoCalls(engine: Engine, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { liveCalls } = await engine.request('status');
    if (liveCalls === 0) return;
    if (Date.now() > deadline) throw new Error(`${liveCalls} calls still live after ${timeoutMs} ms`);
    await sleep(100);
  }
}

function stageValue(t: TurnSample, stage: Stage): number | null {
  switch (stage) {
    case 'capture':
      return t.captureMs;
    case 'detect':
      return t.detectMs;
    case 'redetect':
      return t.redetectMs;
    case 'tier1':
      return t.tier1Ms;
    case 'warmupGate':
      return t.warmupGateMs;
    case 'tier2':
      return t.tier2Ms;
    case 'tier3':
      return t.tier3Ms;
    case 'fallback':
      return t.fallbackMs;
    case 'provider':
      return t.providerMs;
    case 'turn':
      return t.latencyMs;
  }
}

/**
 * Wall time of the understanding step: in parallel, the slower of capture and detect plus the
 * re-detect; in sequence (`understanding.order: "sequential"`), capture then detect.
 */
function understandingMs(
  t: Pick<StageTimings, 'captureMs' | 'detectMs' | 'redetectMs'>,
  sequential = false,
): number | null {
  if (t.captureMs === null && t.detectMs === null) return null;
  if (sequential) return (t.captureMs ?? 0) + (t.detectMs ?? 0);
  return Math.max(t.captureMs ?? 0, t.detectMs ?? 0) + (t.redetectMs ?? 0);
}

function tierName(tier: AnsweredBy): string {
  return tier === 'fallback' ? 'fallback' : `tier${tier}`;
}

function reconcileRate(flags: readonly boolean[]): number | null {
  return flags.length === 0 ? null : flags.filter(Boolean).length / flags.length;
}

/** The fakes' configured latencies, as the turn's path would add them up with no other cost. */
interface Nominal {
  readonly understandingMs: number;
  readonly embeddingMs: number;
  readonly tier3Ms: number;
}

/**
 * The provider time a turn of the main company (parallel LLM understanding) would take if nothing
 * but the fakes cost time: capture ∥ detect, the re-detect, Tier 2's embedding, the LLM stream
 * (an adopted warmup started with Tier 2, so Tier 2 is off its path). Null for fallbacks.
 */
function nominalMs(
  t: Pick<TurnSample, 'tier' | 'redetectMs'> & { readonly warmup: string },
  n: Nominal,
): number | null {
  const understanding = n.understandingMs * (t.redetectMs === null ? 1 : 2);
  switch (t.tier) {
    case 1:
      return understanding;
    case 2:
      return understanding + n.embeddingMs;
    case 3:
      return understanding + (t.warmup === 'used' ? 0 : n.embeddingMs) + n.tier3Ms;
    default:
      return null;
  }
}

interface WindowExtras {
  readonly loadGeneratorCpuCorePct: number;
  readonly machine: CpuShares | null;
}

function levelResult(
  calls: number,
  window: EngineWindow,
  client: ArmStats,
  fake: Extract<FakeChildAnswer, { type: 'stats' }>,
  extras: WindowExtras,
  nominal: Nominal,
): LevelResult {
  const turns = window.turns;
  const fakeCpu = fake.cpuCorePct;
  const machine = extras.machine;
  const stages = Object.fromEntries(
    STAGES.map((s) => [s, summarize(turns.map((t) => stageValue(t, s)))]),
  ) as Record<Stage, ReturnType<typeof summarize>>;
  return {
    calls,
    windowS: window.durationMs / 1000,
    turns: turns.length,
    turnsPerSec: turns.length / (window.durationMs / 1000),
    liveCalls: window.liveCalls,
    callsPlaced: client.callsStarted,
    callsCompleted: client.callsCompleted,
    errors: client.errors,
    technicalFallbacks: turns.filter((t) => t.fallbackKind === 'technicalIssue').length,
    tiers: countBy(turns, (t) => tierName(t.tier)),
    warmup: countBy(turns, (t) => t.warmup),
    warmupSkipReasons: countBy(
      turns.filter((t) => t.warmup === 'skipped'),
      (t) => t.warmupReason ?? 'unknown',
    ),
    reconcileRate: reconcileRate(turns.map((t) => t.reconciled)),
    reconcileReasons: { ...window.reconcileReasons },
    stages,
    excessOverNominalMs: summarize(
      turns.map((t) => {
        const expected = nominalMs(t, nominal);
        return expected === null ? null : t.latencyMs - expected;
      }),
    ),
    engineOverheadMs: summarize(turns.map((t) => t.engineMs)),
    engineOverheadByTierMs: Object.fromEntries(
      (['tier1', 'tier2', 'tier3', 'fallback'] as const).map((name) => [
        name,
        summarize(turns.filter((t) => tierName(t.tier) === name).map((t) => t.engineMs)),
      ]),
    ),
    clientRoundTripMs: summarize(client.turns.map((s) => s.clientMs)),
    engineCpuCorePct: window.cpuCorePct,
    engineEventLoopUtilization: window.eventLoopUtilization,
    engineLoopDelayMs: window.loopDelayMs,
    fake: { requestsPerSec: fake.requests / (fake.windowMs / 1000), cpuCorePct: fakeCpu },
    loadGeneratorCpuCorePct: extras.loadGeneratorCpuCorePct,
    machineCpu:
      machine === null
        ? null
        : {
            busyPct: machine.busyPct,
            stealPct: machine.stealPct,
            otherCorePct: Math.max(
              0,
              machine.busyPct.reduce((sum, b) => sum + b, 0) -
                window.cpuCorePct -
                fakeCpu -
                extras.loadGeneratorCpuCorePct,
            ),
          },
    clientTurns: client.turns.length,
  };
}

function armResult(
  name: string,
  stats: ArmStats | undefined,
  only?: (s: ClientSample) => boolean,
): ArmResult {
  const samples = (stats?.turns ?? []).filter((s) => only?.(s) ?? true);
  return {
    name,
    turns: samples.length,
    tiers: countBy(samples, (s) => tierName(s.turn.tier)),
    warmup: countBy(samples, (s) => s.turn.warmup),
    reconcileRate: reconcileRate(samples.map((s) => s.turn.reconciled)),
    latencyMs: summarize(samples.map((s) => s.turn.latencyMs)),
    understandingMs: summarize(samples.map((s) => understandingMs(s.turn.timings, name === 'sequential'))),
    errors: stats?.errors ?? {},
  };
}

interface Settings {
  readonly levels: readonly number[];
  readonly durationS: number;
  readonly thinkMs: readonly [number, number];
  readonly memoryCalls: number;
  readonly abCallers: number;
  readonly abDurationS: number;
  readonly coldRuns: number;
  readonly warmupS: number;
  readonly embeddingMs: number;
  readonly firstTokenMs: number;
  readonly tokenMs: number;
  readonly understandingMs: number;
  readonly logLevel: string;
  readonly stores: 'memory' | 'env';
  readonly skip: ReadonlySet<string>;
  readonly pin: boolean;
  readonly cpuProfDir: string | null;
  readonly json: boolean;
  readonly quick: boolean;
}

function badStores(value: string): never {
  throw usageError(`--stores: expected memory or env, got ${value}`);
}

/**
 * The engine's stores for `--stores env`: a scratch schema of DATABASE_URL and a scratch key prefix
 * on REDIS_URL (each removed by `dispose`), so a bench never mixes with other data.
 */
async function scratchStores(): Promise<{
  stores: NonNullable<EngineChildConfig['stores']>;
  describe: string;
  dispose(): Promise<void>;
}> {
  const env = loadEnv();
  const tag = randomBytes(4).toString('hex');
  const log = pino({ level: 'silent' });
  const schema = `bench_${tag}`;
  const admin =
    env.databaseUrl === undefined ? null : createPgDb({ url: env.databaseUrl, log, maxConnections: 1 });
  let databaseUrl: string | undefined;
  if (admin !== null && env.databaseUrl !== undefined) {
    await admin.exec(`CREATE SCHEMA ${schema}`);
    const u = new URL(env.databaseUrl);
    u.searchParams.set('options', `-c search_path=${schema}`);
    databaseUrl = u.toString();
  }
  const redisKeyPrefix = `bench:${tag}:`;
  return {
    stores: {
      ...(databaseUrl === undefined ? {} : { databaseUrl }),
      ...(env.redisUrl === undefined ? {} : { redisUrl: env.redisUrl, redisKeyPrefix }),
    },
    describe: `${databaseUrl === undefined ? 'PGlite' : `PostgreSQL (schema ${schema})`}, ${env.redisUrl === undefined ? 'in-process shared state' : `Redis (prefix ${redisKeyPrefix})`}`,
    async dispose() {
      if (admin !== null) {
        await admin.exec(`DROP SCHEMA ${schema} CASCADE`);
        await admin.close();
      }
      if (env.redisUrl !== undefined) {
        const redis = createRedisClient(env.redisUrl, { commandTimeoutMs: 5000 });
        try {
          // The client fails commands until connected (no offline queue).
          if (!(await waitForRedis(redis, 5000))) throw new Error('redis is not reachable');
          let cursor = '0';
          do {
            const [next, keys] = await redis.scan(cursor, 'MATCH', `${redisKeyPrefix}*`, 'COUNT', 500);
            cursor = next;
            if (keys.length > 0) await redis.unlink(...keys);
          } while (cursor !== '0');
        } finally {
          closeRedis(redis);
        }
      }
    },
  };
}

function settingsFrom(argv: string[]): Settings | null {
  const { values, positionals } = parseCli(argv, {
    calls: { type: 'string' },
    duration: { type: 'string' },
    think: { type: 'string' },
    'memory-calls': { type: 'string' },
    'ab-callers': { type: 'string' },
    'ab-duration': { type: 'string' },
    'cold-runs': { type: 'string' },
    'embedding-ms': { type: 'string' },
    'first-token-ms': { type: 'string' },
    'token-ms': { type: 'string' },
    'understanding-ms': { type: 'string' },
    'log-level': { type: 'string', default: 'info' },
    stores: { type: 'string', default: 'memory' },
    skip: { type: 'string', default: '' },
    'no-pin': { type: 'boolean', default: false },
    'cpu-prof': { type: 'string' },
    quick: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  });
  if (values.help) return null;
  if (positionals.length > 0) {
    throw usageError(`unexpected argument ${positionals[0]} (the audio bench is npm run bench -- audio)`);
  }
  const quick = values.quick;
  const levels = (values.calls ?? (quick ? '10,50' : '50,200,500'))
    .split(',')
    .map((s) => numberFlag(s.trim(), 0, 'calls'))
    .filter((n) => n > 0);
  const [thinkMin, thinkMax] = (values.think ?? '1000-3000').split('-').map((s) => numberFlag(s, 0, 'think'));
  return {
    levels,
    durationS: numberFlag(values.duration, quick ? 5 : 25, 'duration'),
    thinkMs: [thinkMin ?? 1000, thinkMax ?? thinkMin ?? 3000],
    memoryCalls: numberFlag(values['memory-calls'], Math.max(0, ...levels), 'memory-calls'),
    abCallers: numberFlag(values['ab-callers'], quick ? 4 : 10, 'ab-callers'),
    abDurationS: numberFlag(values['ab-duration'], quick ? 6 : 20, 'ab-duration'),
    coldRuns: numberFlag(values['cold-runs'], quick ? 3 : 5, 'cold-runs'),
    warmupS: quick ? 3 : 5,
    embeddingMs: numberFlag(values['embedding-ms'], 100, 'embedding-ms'),
    firstTokenMs: numberFlag(values['first-token-ms'], 400, 'first-token-ms'),
    tokenMs: numberFlag(values['token-ms'], 15, 'token-ms'),
    understandingMs: numberFlag(values['understanding-ms'], 150, 'understanding-ms'),
    logLevel: values['log-level'],
    stores:
      values.stores === 'env' ? 'env' : values.stores === 'memory' ? 'memory' : badStores(values.stores),
    skip: new Set(
      values.skip
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== ''),
    ),
    pin: !values['no-pin'] && os.availableParallelism() >= 2,
    cpuProfDir: values['cpu-prof'] === undefined ? null : userPath(values['cpu-prof']),
    json: values.json,
    quick,
  };
}

async function runLevel(
  url: string,
  engine: Engine,
  fake: Fake,
  s: Settings,
  calls: number,
): Promise<LevelResult> {
  const rampMs = Math.min(s.quick ? 2000 : 5000, calls * 10);
  progress(`load: ${calls} calls (ramp ${rampMs} ms, window ${s.durationS} s)`);
  const load = new Load({
    url,
    arms: [{ name: 'main', number: COMPANIES.main.number, callers: calls, mix: MAIN_MIX }],
    rampMs,
    thinkMs: s.thinkMs,
    replyTimeoutMs: 15_000,
  });
  await load.rampedUp;
  await engine.request('phase');
  await fake.request('stats');
  load.reset();
  const cpuBefore = readCpuTimes();
  const ownBefore = process.cpuUsage();
  const startedAt = performance.now();
  await sleep(s.durationS * 1000);
  const { window } = await engine.request('collect');
  const fakeStats = await fake.request('stats');
  const cpuAfter = readCpuTimes();
  const own = process.cpuUsage(ownBefore);
  const elapsedMs = performance.now() - startedAt;
  const client = load.snapshot().get('main')!;
  await load.stop();
  await waitForNoCalls(engine);
  const result = levelResult(
    calls,
    window,
    client,
    fakeStats,
    {
      loadGeneratorCpuCorePct: ((own.user + own.system) / 1000 / elapsedMs) * 100,
      machine: cpuBefore === null || cpuAfter === null ? null : cpuShares(cpuBefore, cpuAfter),
    },
    {
      understandingMs: s.understandingMs,
      embeddingMs: s.embeddingMs,
      tier3Ms: s.firstTokenMs + Math.max(0, TIER3_ANSWER_TOKENS - 1) * s.tokenMs,
    },
  );
  progress(
    `  ${result.turns} turns, ${result.turnsPerSec.toFixed(1)}/s, engine overhead p50/p95/p99 ` +
      `${result.engineOverheadMs.p50?.toFixed(2)}/${result.engineOverheadMs.p95?.toFixed(2)}/${result.engineOverheadMs.p99?.toFixed(2)} ms, ` +
      `over nominal p50/p99 ${result.excessOverNominalMs.p50?.toFixed(1)}/${result.excessOverNominalMs.p99?.toFixed(1)} ms`,
  );
  return result;
}

async function runMemory(url: string, engine: Engine, count: number): Promise<MemoryResult> {
  progress(`memory: ${count} idle calls, then two turns each`);
  await waitForNoCalls(engine);
  const { memory: before } = await engine.request('memory');
  const half = Math.floor(count / 2);
  const first = await connectIdle(url, COMPANIES.main.number, half);
  // Let every greeting's playback timer run out, so each call sits in `listening`.
  await sleep(1500);
  const { memory: halfway } = await engine.request('memory');
  const second = await connectIdle(url, COMPANIES.main.number, count - half);
  await sleep(1500);
  const { memory: idle } = await engine.request('memory');
  const calls = [...first.calls, ...second.calls];
  // Two turns per call, all calls at once: slots, history and turn bookkeeping now exist.
  const talked = await Promise.all(
    calls.map(async (c) => {
      try {
        await c.say(TIER1_UTTERANCES[0]);
        await c.say(TIER3_UTTERANCES[0]);
        return true;
      } catch {
        return false;
      }
    }),
  );
  await sleep(500);
  const { memory: afterTurns } = await engine.request('memory');
  await Promise.all(calls.map((c) => c.close()));
  await waitForNoCalls(engine);
  await sleep(500);
  const { memory: after } = await engine.request('memory');
  const n = Math.max(1, idle.liveCalls - before.liveCalls);
  const secondHalf = Math.max(1, idle.liveCalls - halfway.liveCalls);
  const result: MemoryResult = {
    calls: count,
    connected: calls.length,
    failed: first.failed + second.failed,
    turnsFailed: talked.filter((ok) => !ok).length,
    before,
    halfway,
    idle,
    afterTurns,
    after,
    perCallBytes: {
      heapUsed: (idle.heapUsed - before.heapUsed) / n,
      rss: (idle.rss - before.rss) / n,
      external: (idle.external - before.external) / n,
    },
    perCallSecondHalfBytes: { heapUsed: (idle.heapUsed - halfway.heapUsed) / secondHalf },
    perCallAfterTurnsBytes: { heapUsed: (afterTurns.heapUsed - before.heapUsed) / n },
    leftAfterHangupPerCallBytes: { heapUsed: (after.heapUsed - before.heapUsed) / n },
  };
  progress(
    `  ${idle.liveCalls} live: heap ${(result.perCallBytes.heapUsed / 1024).toFixed(1)} KiB/call idle, ` +
      `${(result.perCallAfterTurnsBytes.heapUsed / 1024).toFixed(1)} KiB/call after two turns, ` +
      `RSS ${(result.perCallBytes.rss / 1024).toFixed(1)} KiB/call idle`,
  );
  return result;
}

async function runAb(url: string, engine: Engine, s: Settings): Promise<AbResult> {
  progress(`side by side: 4 arms × ${s.abCallers} callers, window ${s.abDurationS} s`);
  const arm = (name: string, number: string, mix: typeof MAIN_MIX) => ({
    name,
    number,
    callers: s.abCallers,
    mix,
  });
  const load = new Load({
    url,
    arms: [
      arm('warmup on', COMPANIES.warm.number, TIER3_ONLY),
      arm('warmup off', COMPANIES.cold.number, TIER3_ONLY),
      arm('parallel', COMPANIES.parallel.number, MAIN_MIX),
      arm('sequential', COMPANIES.sequential.number, MAIN_MIX),
    ],
    rampMs: 1000,
    thinkMs: s.thinkMs,
    replyTimeoutMs: 15_000,
  });
  await load.rampedUp;
  await engine.request('phase');
  load.reset();
  await sleep(s.abDurationS * 1000);
  const { window } = await engine.request('collect');
  const stats = load.snapshot();
  await load.stop();
  await waitForNoCalls(engine);
  const tier3 = (x: ClientSample) => x.turn.tier === 3;
  const warmupOn = armResult('warmup on', stats.get('warmup on'), tier3);
  const warmupOff = armResult('warmup off', stats.get('warmup off'), tier3);
  const parallel = armResult('parallel', stats.get('parallel'));
  const sequential = armResult('sequential', stats.get('sequential'));
  return {
    windowS: window.durationMs / 1000,
    callersPerArm: s.abCallers,
    engineTurns: window.turns.length,
    clientTurns: [...stats.values()].reduce((n, a) => n + a.turns.length, 0),
    engineCpuCorePct: window.cpuCorePct,
    warmupOn,
    warmupOff,
    warmupRatio: {
      p50: ratio(warmupOn.latencyMs.p50, warmupOff.latencyMs.p50),
      p95: ratio(warmupOn.latencyMs.p95, warmupOff.latencyMs.p95),
    },
    parallel,
    sequential,
    parallelRatio: {
      turnP50: ratio(parallel.latencyMs.p50, sequential.latencyMs.p50),
      turnP95: ratio(parallel.latencyMs.p95, sequential.latencyMs.p95),
      understandingP50: ratio(parallel.understandingMs.p50, sequential.understandingMs.p50),
      understandingP95: ratio(parallel.understandingMs.p95, sequential.understandingMs.p95),
      understandingMean: ratio(parallel.understandingMs.mean, sequential.understandingMs.mean),
    },
  };
}

/** Per-core busy share over `ms` before anything of ours runs (other processes on the machine). */
async function measureBackground(ms: number): Promise<number[] | null> {
  const before = readCpuTimes();
  await sleep(ms);
  const after = readCpuTimes();
  return before === null || after === null ? null : [...cpuShares(before, after).busyPct];
}

async function main(): Promise<number> {
  const s = settingsFrom(process.argv.slice(2));
  if (s === null) {
    process.stdout.write(USAGE);
    return 0;
  }
  const startedAt = performance.now();
  const background = await measureBackground(2000);
  if (background !== null && background.reduce((sum, b) => sum + b, 0) > 25) {
    progress(
      `warning: the machine is already busy before the bench starts (${background.map((b) => `${b.toFixed(0)}%`).join(' / ')} per core); figures will be noisy`,
    );
  }
  const { dataDir, companyFile, templateFile } = await createDataDir();
  // Ctrl-C: the children exit when their IPC channel closes; the data folder is ours to remove.
  process.once('SIGINT', () => {
    rmSync(dataDir, { recursive: true, force: true });
    process.exit(130);
  });
  const cpus = s.pin ? { engine: '0', others: '1' } : { engine: null, others: null };
  if (s.pin)
    execFileSync('taskset', ['-a', '-cp', cpus.others ?? '1', String(process.pid)], { stdio: 'ignore' });

  const fakeConfig: FakeChildConfig = {
    companyFile,
    templateFile,
    understandingMs: s.understandingMs,
    firstTokenMs: s.firstTokenMs,
    tokenIntervalMs: s.tokenMs,
  };
  const fake: Fake = new Child('fake providers', FAKE_SCRIPT, {
    env: { BENCH_FAKE_CONFIG: JSON.stringify(fakeConfig) },
    cpus: cpus.others,
  });
  let engine: Engine | null = null;
  let scratch: Awaited<ReturnType<typeof scratchStores>> | null = null;
  try {
    const fakeReady = await fake.ready;
    if (s.stores === 'env') {
      scratch = await scratchStores();
      progress(`stores: ${scratch.describe}`);
    }
    const engineConfig: EngineChildConfig = {
      dataDir,
      openaiBaseURL: fakeReady.url,
      embeddingMs: s.embeddingMs,
      logLevel: s.logLevel,
      playbackMsPerChar: 5,
      ...(scratch === null ? {} : { stores: scratch.stores }),
    };
    // First, before any long-lived engine exists: fresh processes, one call each.
    const coldStart: ColdStartResult | null =
      s.skip.has('coldstart') || s.coldRuns === 0
        ? null
        : await runColdStart({
            runs: s.coldRuns,
            engineScript: ENGINE_SCRIPT,
            engineConfig,
            companyFile,
            templateFile,
            cpus: cpus.engine,
            nominalMs: (t) =>
              nominalMs(
                { tier: t.tier, warmup: t.warmup, redetectMs: t.timings.redetectMs },
                {
                  understandingMs: s.understandingMs,
                  embeddingMs: s.embeddingMs,
                  tier3Ms: s.firstTokenMs + Math.max(0, TIER3_ANSWER_TOKENS - 1) * s.tokenMs,
                },
              ),
            progress,
          });
    engine = new Child('engine', ENGINE_SCRIPT, {
      execArgv: [
        '--expose-gc',
        ...(s.cpuProfDir === null ? [] : ['--cpu-prof', `--cpu-prof-dir=${s.cpuProfDir}`]),
      ],
      env: { BENCH_ENGINE_CONFIG: JSON.stringify(engineConfig) },
      cpus: cpus.engine,
    });
    const { url } = await engine.ready;
    progress(
      `engine ${url}, fake provider ${fakeReady.url}${s.pin ? ', engine on CPU 0, rest on CPU 1' : ''}`,
    );

    if (!s.skip.has('warmup')) {
      progress(`warm-up: 10 calls for ${s.warmupS} s (not reported)`);
      const load = new Load({
        url,
        arms: [{ name: 'main', number: COMPANIES.main.number, callers: 10, mix: MAIN_MIX }],
        rampMs: 500,
        thinkMs: [100, 300],
        replyTimeoutMs: 15_000,
      });
      await sleep(s.warmupS * 1000);
      await load.stop();
      await waitForNoCalls(engine);
    }

    const memory =
      s.skip.has('memory') || s.memoryCalls === 0 ? null : await runMemory(url, engine, s.memoryCalls);
    const levels: LevelResult[] = [];
    if (!s.skip.has('load'))
      for (const calls of s.levels) levels.push(await runLevel(url, engine, fake, s, calls));
    const ab = s.skip.has('ab') || s.abCallers === 0 ? null : await runAb(url, engine, s);

    const result: BenchResult = {
      machine: describeMachine(background),
      config: {
        levels: s.levels,
        durationS: s.durationS,
        thinkMs: s.thinkMs,
        embeddingMs: s.embeddingMs,
        firstTokenMs: s.firstTokenMs,
        tokenMs: s.tokenMs,
        understandingMs: s.understandingMs,
        logLevel: s.logLevel,
        stores: scratch?.describe ?? 'memory (no database, in-process shared state)',
        pinned: s.pin,
        abCallersPerArm: s.abCallers,
        memoryCalls: s.memoryCalls,
        coldRuns: s.coldRuns,
      },
      levels,
      memory,
      ab,
      coldStart,
      durationS: (performance.now() - startedAt) / 1000,
    };
    process.stdout.write(s.json ? `${JSON.stringify(result, null, 2)}\n` : `${formatReport(result)}\n`);
    return 0;
  } finally {
    await engine?.stop().catch(() => undefined);
    await fake.stop().catch(() => undefined);
    await scratch?.dispose().catch((err: unknown) => {
      progress(`could not remove the scratch stores: ${(err as Error).message}`);
    });
    await rm(dataDir, { recursive: true, force: true });
  }
}

/** `npm run bench -- audio …` (or `--audio`): the Media Streams audio bench, src/cli/benchAudio.ts. */
function audioArgs(argv: readonly string[]): string[] | null {
  if (argv[0] !== 'audio' && !argv.includes('--audio')) return null;
  return argv.filter((a, i) => a !== '--audio' && !(i === 0 && a === 'audio'));
}

if (isMain(import.meta.url)) {
  const audio = audioArgs(process.argv.slice(2));
  runCli(
    'bench failed',
    audio === null ? main() : import('./benchAudio.ts').then((m) => m.benchAudio(audio)),
  );
}
