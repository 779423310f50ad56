/**
 * Inspection attached vs not: what the inspector costs the engine. Drives N concurrent calls'
 * turns through the real engine in this process (no sockets, no provider latency: local embedder,
 * rule-based understanding, replies "played" at once), so each call turns as fast as the CPU
 * allows, and compares turns per second and CPU per turn across:
 *
 *   off        nothing attached (the engine without ADMIN_TOKEN)
 *   recorder   the replay recorder on every call (what ADMIN_TOKEN costs when nobody watches)
 *   inspected  XState inspection attached to every call through the hub, with a no-op viewer
 *   viewed     the same plus what an open page costs per call: each event turned into the page's
 *              message and serialized (not written to a socket)
 *
 * Modes alternate round by round so drift in the machine's load hits all of them alike.
 *
 *   node src/bench/inspectCost.ts [--calls 50] [--seconds 2] [--rounds 5] [--json]   # about 50 s
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { startApp } from '../app.ts';
import type { App } from '../app.ts';
import type { CallSession } from '../calls/callSession.ts';
import type { CallTransport } from '../calls/callTransport.ts';
import { isMain, parseCli } from '../cli/args.ts';
import { loadEnv } from '../config/env.ts';
import { InspectHub } from '../observability/inspect/inspectHub.ts';
import { liveFeed } from '../observability/inspect/liveFeed.ts';
import { ReplayRecorder } from '../observability/inspect/replayRecorder.ts';
import { cpuShares, readCpuTimes } from './machineCpu.ts';
import { TIER1_UTTERANCES, TIER2_UTTERANCES, TIER3_UTTERANCES } from './scenario.ts';

export const MODES = ['off', 'recorder', 'inspected', 'viewed'] as const;
export type Mode = (typeof MODES)[number];

export interface ModeResult {
  readonly mode: Mode;
  /** Median over rounds. */
  readonly turnsPerSecond: number;
  /** Median over rounds: process CPU (user + system) per answered turn. */
  readonly cpuUsPerTurn: number;
  /** Inspection events XState delivered per answered turn (inspected modes). */
  readonly inspectionEventsPerTurn: number;
  readonly rounds: readonly Sample[];
}

interface Sample {
  readonly turnsPerSecond: number;
  readonly cpuUsPerTurn: number;
  readonly inspectionEventsPerTurn: number;
  /** CPUs' worth of work other processes did during the window (null without /proc/stat). */
  readonly otherCpus: number | null;
}

/** Tier 1, Tier 2 and unanswered (fallback) turns in turn, so no call escalates to a transfer. */
const UTTERANCES = TIER1_UTTERANCES.flatMap((t1, i) => [t1, TIER2_UTTERANCES[i]!, TIER3_UTTERANCES[i]!]);

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

/** Keeps `calls` calls talking: each reply is "played" at once and followed by the next utterance. */
function drive(app: App, calls: number, onTurn: () => void): () => void {
  const company = [...app.engine.companies()][0]!.config.id;
  let stopped = false;
  const sessions = new Set<CallSession>();
  const open = (offset: number) => {
    let said = offset;
    let session: CallSession | null = null;
    const next = () => {
      if (!stopped && session !== null && !session.ended) {
        session.send({ type: 'caller.transcriptFinal', text: UTTERANCES[said++ % UTTERANCES.length]! });
      }
    };
    const transport: CallTransport = {
      speak(_text, { onDone }) {
        let playing = true;
        setImmediate(() => {
          if (!playing || stopped) return;
          playing = false;
          onDone();
          setImmediate(next);
        });
        return () => {
          playing = false;
        };
      },
      transfer() {},
      hangup() {},
      trace: () => onTurn(),
      close() {
        if (session !== null) sessions.delete(session);
        // A call that ended on its own is replaced, so `calls` stay live.
        if (!stopped) setImmediate(() => open(said));
      },
    };
    session = app.engine.openCall(company, transport);
    sessions.add(session);
    session.send({ type: 'twilio.start', callSid: `CA${session.id.replaceAll('-', '')}` });
  };
  for (let i = 0; i < calls; i++) open(i * 7);
  return () => {
    stopped = true;
    for (const s of [...sessions]) s.stop('bench-done');
  };
}

/**
 * Attaches what the mode measures to every call opened from now on; returns the detach.
 * `counter.events` counts the inspection events delivered.
 */
function attach(app: App, mode: Mode, counter: { events: number }): () => void {
  if (mode === 'off') return () => {};
  if (mode === 'recorder') {
    const recorder = new ReplayRecorder(app.engine);
    return () => recorder.close();
  }
  const hub = new InspectHub(app.engine, app.log);
  const stop = app.engine.onSession({
    opened: (session) => {
      const feed = liveFeed(session.actor, app.engine.machine, (message) => void JSON.stringify(message));
      hub.watch(session.id, {
        next: (event) => {
          counter.events++;
          if (mode === 'viewed') feed.next(event);
        },
      });
    },
  });
  return () => {
    stop();
    hub.close();
  };
}

async function measure(app: App, mode: Mode, calls: number, seconds: number): Promise<Sample> {
  const counter = { events: 0 };
  const detach = attach(app, mode, counter);
  let turns = 0;
  let counting = false;
  const stop = drive(app, calls, () => {
    if (counting) turns++;
  });
  // Let the calls get past their greeting and the JIT settle before counting.
  await new Promise((resolve) => setTimeout(resolve, 300));
  counting = true;
  const events0 = counter.events;
  const machine0 = readCpuTimes();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  const cpu = process.cpuUsage(cpu0);
  const elapsed = (performance.now() - t0) / 1000;
  const machine1 = readCpuTimes();
  counting = false;
  const events = counter.events - events0;
  stop();
  detach();
  await new Promise((resolve) => setTimeout(resolve, 100));
  // Busy CPUs on the whole machine minus this process: what others took from the same cores.
  const busyCpus =
    machine0 === null || machine1 === null
      ? null
      : cpuShares(machine0, machine1).busyPct.reduce((sum, pct) => sum + pct / 100, 0);
  return {
    turnsPerSecond: turns / elapsed,
    cpuUsPerTurn: (cpu.user + cpu.system) / Math.max(1, turns),
    inspectionEventsPerTurn: events / Math.max(1, turns),
    otherCpus: busyCpus === null ? null : Math.max(0, busyCpus - (cpu.user + cpu.system) / 1e6 / elapsed),
  };
}

export async function runInspectCost(options: {
  calls: number;
  seconds: number;
  rounds: number;
  progress?: (line: string) => void;
}): Promise<ModeResult[]> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'switchboard-inspect-bench-'));
  const log = pino({ level: 'silent' });
  const app = await startApp(
    loadEnv({ PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'silent' }),
    {
      log,
      startupWarmup: false,
      // As measured before the persistence layer: no database, in-process shared state.
      db: null,
    },
  );
  try {
    const samples = new Map<Mode, Sample[]>(MODES.map((m) => [m, []]));
    // Warm-up, not counted: every mode once, so the JIT has seen all of the code.
    for (const mode of MODES) await measure(app, mode, options.calls, 0.75);
    for (let round = 1; round <= options.rounds; round++) {
      for (const mode of MODES) {
        const sample = await measure(app, mode, options.calls, options.seconds);
        samples.get(mode)!.push(sample);
        options.progress?.(
          `round ${round} ${mode}: ${sample.turnsPerSecond.toFixed(0)} turns/s, ${sample.cpuUsPerTurn.toFixed(0)} µs CPU/turn, other processes ${sample.otherCpus?.toFixed(2) ?? '?'} CPUs`,
        );
      }
    }
    return MODES.map((mode) => {
      const rounds = samples.get(mode)!;
      return {
        mode,
        turnsPerSecond: median(rounds.map((r) => r.turnsPerSecond)),
        cpuUsPerTurn: median(rounds.map((r) => r.cpuUsPerTurn)),
        inspectionEventsPerTurn: median(rounds.map((r) => r.inspectionEventsPerTurn)),
        rounds,
      };
    });
  } finally {
    await app.close();
    await rm(dataDir, { recursive: true, force: true });
  }
}

export function formatInspectCost(results: readonly ModeResult[], calls: number): string {
  const base = results.find((r) => r.mode === 'off')!;
  const lines = [
    `${calls} concurrent calls, median of ${base.rounds.length} rounds; ${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} CPUs, Node ${process.version}`,
    '',
    '| mode | turns/s | vs off | CPU per turn | vs off | inspection events per turn |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
    ...results.map(
      (r) =>
        `| ${r.mode} | ${r.turnsPerSecond.toFixed(0)} | ${(r.turnsPerSecond / base.turnsPerSecond).toFixed(2)}× | ${r.cpuUsPerTurn.toFixed(0)} µs | ${(r.cpuUsPerTurn / base.cpuUsPerTurn).toFixed(2)}× | ${r.inspectionEventsPerTurn.toFixed(0)} |`,
    ),
  ];
  const others = results.flatMap((r) => r.rounds.map((s) => s.otherCpus)).filter((v) => v !== null);
  if (others.length > 0) {
    lines.push(
      '',
      `Other processes during the windows: median ${median(others).toFixed(2)} CPUs, at most ${Math.max(...others).toFixed(2)}.`,
    );
  }
  return lines.join('\n');
}

if (isMain(import.meta.url)) {
  const { values } = parseCli(process.argv.slice(2), {
    calls: { type: 'string', default: '50' },
    seconds: { type: 'string', default: '2' },
    rounds: { type: 'string', default: '5' },
    json: { type: 'boolean', default: false },
  });
  const calls = Number(values.calls);
  const results = await runInspectCost({
    calls,
    seconds: Number(values.seconds),
    rounds: Number(values.rounds),
    progress: (line) => process.stderr.write(`${line}\n`),
  });
  process.stdout.write(
    values.json
      ? `${JSON.stringify({ calls, date: new Date().toISOString(), node: process.version, results }, null, 2)}\n`
      : `${formatInspectCost(results, calls)}\n`,
  );
}
