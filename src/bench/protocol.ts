/**
 * What the benchmark's processes say to each other over Node's IPC channel: the orchestrator
 * (src/cli/bench.ts, which is also the load generator) asks, the engine and fake-provider children
 * answer. Every request carries an id that its answer repeats.
 */
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import type { AnsweredBy, FallbackKind, WarmupOutcome } from '../../machines/types.ts';

/** One answered turn as the engine's onTurn hook saw it (stage timings in ms, null = not run). */
export interface TurnSample {
  readonly latencyMs: number;
  readonly engineMs: number;
  readonly providerMs: number;
  readonly captureMs: number | null;
  readonly detectMs: number | null;
  readonly redetectMs: number | null;
  readonly tier1Ms: number | null;
  readonly warmupGateMs: number | null;
  readonly tier2Ms: number | null;
  readonly tier3Ms: number | null;
  readonly fallbackMs: number | null;
  readonly tier: AnsweredBy;
  readonly warmup: WarmupOutcome;
  readonly warmupReason: string | null;
  readonly reconciled: boolean;
  readonly fallbackKind: FallbackKind | null;
}

/** A child process's own CPU and event-loop figures over one measurement window (`processMeter`). */
export interface ProcessWindow {
  readonly durationMs: number;
  /** CPU time of the process (user + system) as a share of one core, percent. */
  readonly cpuCorePct: number;
  /** The part of `cpuCorePct` spent in the kernel (system time): socket writes and reads, mostly. */
  readonly systemCorePct: number;
  /** Event-loop utilisation (0..1) over the window. */
  readonly eventLoopUtilization: number;
  /** Event-loop delay in ms: how late a 10 ms sampling timer fired (the interval itself removed). */
  readonly loopDelayMs: { readonly p50: number; readonly p99: number; readonly max: number };
}

/** Engine-process figures over one measurement window. */
export interface EngineWindow extends ProcessWindow {
  readonly turns: readonly TurnSample[];
  /** Why re-detects ran (counted in the needsRedetect guard), all companies but the sequential one. */
  readonly reconcileReasons: {
    readonly newCriticalSlot: number;
    readonly unsureDetect: number;
    readonly both: number;
  };
  /** engine.liveCalls sampled every 100 ms. */
  readonly liveCalls: { readonly min: number; readonly mean: number; readonly max: number };
}

export interface MemorySample {
  readonly liveCalls: number;
  readonly heapUsed: number;
  readonly heapTotal: number;
  readonly rss: number;
  readonly external: number;
  readonly arrayBuffers: number;
}

/** What the orchestrator asks a server under test (the text bench's engine, the audio bench's servers). */
export type ProbeRequest =
  | { readonly id: number; readonly type: 'phase' }
  | { readonly id: number; readonly type: 'collect' }
  | { readonly id: number; readonly type: 'status' }
  | { readonly id: number; readonly type: 'memory' }
  | { readonly id: number; readonly type: 'stop' };

export type EngineRequest = ProbeRequest;

export type EngineAnswer =
  | { readonly id: number; readonly type: 'phase' }
  | { readonly id: number; readonly type: 'collect'; readonly window: EngineWindow }
  | { readonly id: number; readonly type: 'status'; readonly liveCalls: number }
  | { readonly id: number; readonly type: 'memory'; readonly memory: MemorySample }
  | { readonly id: number; readonly type: 'stop' };

export type FakeChildRequest =
  { readonly id: number; readonly type: 'stats' } | { readonly id: number; readonly type: 'stop' };

export type FakeChildAnswer =
  | {
      readonly id: number;
      readonly type: 'stats';
      readonly requests: number;
      readonly cpuCorePct: number;
      readonly windowMs: number;
    }
  | { readonly id: number; readonly type: 'stop' };

/** The first message a child sends once it is listening. */
export interface ReadyMessage {
  readonly type: 'ready';
  readonly url: string;
  readonly pid: number;
  /** The engine's startup warmup, ms (null when it was off); absent for the fake. */
  readonly startupWarmupMs?: number | null;
}

/** Configuration handed to the engine child (JSON in BENCH_ENGINE_CONFIG). */
export interface EngineChildConfig {
  readonly dataDir: string;
  readonly openaiBaseURL: string;
  readonly embeddingMs: number;
  readonly logLevel: string;
  readonly playbackMsPerChar: number;
  /** Run the startup warmup before reporting ready (default true, as in production). */
  readonly startupWarmup?: boolean;
  /**
   * The stores. Absent: in process, no database (as the reference figures were measured). Given:
   * PostgreSQL at `databaseUrl` (else PGlite in dataDir) and Redis at `redisUrl` (else in process).
   */
  readonly stores?: {
    readonly databaseUrl?: string;
    readonly redisUrl?: string;
    readonly redisKeyPrefix?: string;
  };
}

/** Configuration handed to the fake-provider child (JSON in BENCH_FAKE_CONFIG). */
export interface FakeChildConfig {
  /** A company and template to answer capture and detect for (with the engine's own rules). */
  readonly companyFile: string;
  readonly templateFile: string;
  readonly understandingMs: number;
  readonly firstTokenMs: number;
  readonly tokenIntervalMs: number;
}

/** A child process started with an IPC channel, optionally pinned to CPUs with taskset. */
export class Child<Req extends { id: number; type: string }, Ans extends { id: number; type: string }> {
  readonly name: string;
  readonly process: ChildProcess;
  readonly ready: Promise<ReadyMessage>;
  #nextId = 1;
  readonly #pending = new Map<number, (answer: Ans) => void>();

  constructor(
    name: string,
    script: string,
    options: { execArgv?: readonly string[]; env?: Record<string, string>; cpus?: string | null },
  ) {
    this.name = name;
    const nodeArgs = [...(options.execArgv ?? []), script];
    const [command, args] =
      options.cpus === null || options.cpus === undefined
        ? [process.execPath, nodeArgs]
        : ['taskset', ['-c', options.cpus, process.execPath, ...nodeArgs]];
    this.process = spawn(command, args, {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: { ...process.env, ...options.env },
    });
    this.ready = new Promise<ReadyMessage>((resolve, reject) => {
      const onExit = (code: number | null) => reject(new Error(`${name} exited early (code ${code})`));
      this.process.once('exit', onExit);
      this.process.on('message', (raw) => {
        const message = raw as ReadyMessage | Ans;
        if (message.type === 'ready') {
          this.process.off('exit', onExit);
          resolve(message as ReadyMessage);
          return;
        }
        const answer = message as Ans;
        const waiter = this.#pending.get(answer.id);
        this.#pending.delete(answer.id);
        waiter?.(answer);
      });
    });
  }

  /** Sends a request and waits for the answer with the same id and type. */
  request<T extends Req['type']>(type: T): Promise<Extract<Ans, { type: T }>> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`${this.name}: no answer to ${type} within 60 s`));
      }, 60_000);
      this.#pending.set(id, (answer) => {
        clearTimeout(timer);
        resolve(answer as Extract<Ans, { type: T }>);
      });
      this.process.send({ id, type });
    });
  }

  /** Asks the child to stop, then kills it if it has not exited within `graceMs`. */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.process.exitCode !== null || this.process.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.process.once('exit', () => resolve()));
    await Promise.race([this.request('stop').catch(() => undefined), exited]);
    const timer = setTimeout(() => this.process.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }
}

/** Answers requests in a child: `handle` returns the answer without the id. */
export function serveParent<Req extends { id: number; type: string }>(
  handle: (request: Req) => Promise<Record<string, unknown> & { type: string }>,
): void {
  // The orchestrator went away (Ctrl-C, crash): do not outlive it.
  process.on('disconnect', () => process.exit(0));
  process.on('message', (raw) => {
    const request = raw as Req;
    handle(request).then(
      (answer) => process.send?.({ ...answer, id: request.id }),
      (err: unknown) => {
        process.stderr.write(`bench child: ${request.type} failed: ${String(err)}\n`);
        process.exit(1);
      },
    );
  });
}

const LOOP_DELAY_RESOLUTION_MS = 10;

/**
 * Measures this process over windows: `start` opens one (CPU time, event-loop utilisation and a
 * loop-delay histogram sampled every 10 ms), `collect` closes it. The child measures itself, so
 * the callers and fakes cannot inflate its figures.
 */
export function processMeter(): { start(): void; collect(): ProcessWindow } {
  let startedAt = performance.now();
  let cpuStart = process.cpuUsage();
  let eluStart = performance.eventLoopUtilization();
  const loopDelay = monitorEventLoopDelay({ resolution: LOOP_DELAY_RESOLUTION_MS });
  // The histogram counts the sampling interval itself; what is left is the lateness.
  const lateness = (ns: number) => Math.max(0, ns / 1e6 - LOOP_DELAY_RESOLUTION_MS);
  return {
    start() {
      startedAt = performance.now();
      cpuStart = process.cpuUsage();
      eluStart = performance.eventLoopUtilization();
      loopDelay.reset();
      loopDelay.enable();
    },
    collect() {
      const durationMs = performance.now() - startedAt;
      const cpu = process.cpuUsage(cpuStart);
      loopDelay.disable();
      return {
        durationMs,
        cpuCorePct: ((cpu.user + cpu.system) / 1000 / durationMs) * 100,
        systemCorePct: (cpu.system / 1000 / durationMs) * 100,
        eventLoopUtilization: performance.eventLoopUtilization(eluStart).utilization,
        loopDelayMs: {
          p50: lateness(loopDelay.percentile(50)),
          p99: lateness(loopDelay.percentile(99)),
          max: lateness(loopDelay.max),
        },
      };
    },
  };
}

/** Memory after a full collection (four `gc()` rounds); the process must run with --expose-gc. */
export async function sampleMemory(liveCalls: number): Promise<MemorySample> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('run this process with --expose-gc');
  for (let i = 0; i < 4; i++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const m = process.memoryUsage();
  return {
    liveCalls,
    heapUsed: m.heapUsed,
    heapTotal: m.heapTotal,
    rss: m.rss,
    external: m.external,
    arrayBuffers: m.arrayBuffers,
  };
}

/** A fake-providers child: where it listens, how many requests it served since asked last, and how to stop. */
export interface FakeChildServer {
  readonly url: string;
  takeCount(): number;
  close(): Promise<void>;
}

/**
 * Runs this process as a fake-providers child: answers `stats` (requests served and CPU used since
 * the previous `stats`) and `stop`, then tells the orchestrator it is ready.
 */
export function serveFakeChild(fakes: FakeChildServer): void {
  const meter = processMeter();
  meter.start();
  serveParent<FakeChildRequest>(async (request) => {
    switch (request.type) {
      case 'stats': {
        const window = meter.collect();
        meter.start();
        return {
          type: 'stats',
          requests: fakes.takeCount(),
          cpuCorePct: window.cpuCorePct,
          windowMs: window.durationMs,
        };
      }
      case 'stop':
        await fakes.close();
        setImmediate(() => process.exit(0));
        return { type: 'stop' };
    }
  });
  process.send?.({ type: 'ready', url: fakes.url, pid: process.pid });
}
