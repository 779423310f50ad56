/**
 * The cold-start phase of `npm run bench`: first-turn latency with and without the startup warmup,
 * side by side. Each run starts two fresh engine processes one after the other — startup warmup on,
 * then off (the order alternates from run to run) — places one call to each and says two Tier 3
 * utterances, so the first turn of a cold process can be compared with its second turn and with the
 * first turn of a warmed one. A first, discarded run pays for the page cache and the fake's own
 * first requests, so neither arm inherits them. The engines serve the main company alone, so each
 * starts in about a second rather than compiling every bench company.
 */
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { ClientTurn } from '../cli/call.ts';
import { TestCall } from '../cli/call.ts';
import type { EngineAnswer, EngineChildConfig, EngineRequest } from './protocol.ts';
import { Child } from './protocol.ts';
import { COMPANIES, TIER3_UTTERANCES } from './scenario.ts';
import type { Summary } from './stats.ts';
import { countBy, ratio, summarize } from './stats.ts';

/** What the two turns of each call say: both off-script, so the LLM answers both. */
export const COLD_START_UTTERANCES = [TIER3_UTTERANCES[0], TIER3_UTTERANCES[8]] as const;

export interface ColdStartArm {
  readonly name: string;
  readonly startupWarmup: boolean;
  readonly runs: number;
  readonly failed: number;
  /** Process spawn to the engine's ready message (Node start, imports, compiling, the warmup). */
  readonly readyMs: Summary;
  /** The warmup's own duration as the engine reports it. */
  readonly startupWarmupMs: Summary;
  /** The caller's clock: webhook posted → greeting received (the process's first HTTP and WebSocket). */
  readonly connectMs: Summary;
  /** Engine turn latency (onTurn's latencyMs, from the trace frame) of the call's first and second turn. */
  readonly turn1Ms: Summary;
  readonly turn2Ms: Summary;
  /** The same minus the fakes' nominal latencies on each turn's path (see the load levels). */
  readonly turn1OverNominalMs: Summary;
  readonly turn2OverNominalMs: Summary;
  /** Engine overhead: turn latency minus provider time on the critical path. */
  readonly turn1EngineMs: Summary;
  readonly turn2EngineMs: Summary;
  /** Who answered each turn and what its warmup did, e.g. "3/used → 3/used". */
  readonly paths: Record<string, number>;
}

export interface ColdStartResult {
  readonly runsPerArm: number;
  readonly company: string;
  readonly on: ColdStartArm;
  readonly off: ColdStartArm;
  /** on/off of the first turn's p50 (latency, and latency over nominal). */
  readonly turn1Ratio: { readonly latencyP50: number | null; readonly overNominalP50: number | null };
}

export interface ColdStartOptions {
  readonly runs: number;
  readonly engineScript: string;
  /** The engines' configuration; its data folder is replaced by one holding the main company only. */
  readonly engineConfig: EngineChildConfig;
  /** The main company's and the template's documents (from createDataDir). */
  readonly companyFile: string;
  readonly templateFile: string;
  readonly cpus: string | null;
  /** The fakes' configured latency on a turn's path; null when it cannot be said (fallbacks). */
  readonly nominalMs: (turn: ClientTurn) => number | null;
  readonly progress: (message: string) => void;
}

interface RunSample {
  readonly readyMs: number;
  readonly startupWarmupMs: number | null;
  readonly connectMs: number;
  readonly turns: readonly ClientTurn[];
}

async function oneRun(options: ColdStartOptions, startupWarmup: boolean): Promise<RunSample> {
  const started = performance.now();
  const engine = new Child<EngineRequest, EngineAnswer>(
    `engine (startup warmup ${startupWarmup ? 'on' : 'off'})`,
    options.engineScript,
    {
      env: { BENCH_ENGINE_CONFIG: JSON.stringify({ ...options.engineConfig, startupWarmup }) },
      cpus: options.cpus,
    },
  );
  try {
    const ready = await engine.ready;
    const readyMs = performance.now() - started;
    const call = new TestCall({
      url: ready.url,
      to: COMPANIES.main.number,
      from: '+15555550199',
      replyTimeoutMs: 15_000,
    });
    const connecting = performance.now();
    await call.connect();
    const connectMs = performance.now() - connecting;
    const turns: ClientTurn[] = [];
    for (const utterance of COLD_START_UTTERANCES) turns.push(await call.say(utterance));
    await call.close();
    return { readyMs, startupWarmupMs: ready.startupWarmupMs ?? null, connectMs, turns };
  } finally {
    await engine.stop().catch(() => undefined);
  }
}

function arm(
  name: string,
  startupWarmup: boolean,
  samples: RunSample[],
  failed: number,
  o: ColdStartOptions,
) {
  const turn = (i: number) => samples.map((s) => s.turns[i]).filter((t) => t !== undefined);
  const over = (i: number) =>
    turn(i).map((t) => {
      const nominal = o.nominalMs(t);
      return nominal === null ? null : t.latencyMs - nominal;
    });
  const path = (t: ClientTurn | undefined) => (t === undefined ? '-' : `${t.tier}/${t.warmup}`);
  return {
    name,
    startupWarmup,
    runs: samples.length,
    failed,
    readyMs: summarize(samples.map((s) => s.readyMs)),
    startupWarmupMs: summarize(samples.map((s) => s.startupWarmupMs)),
    connectMs: summarize(samples.map((s) => s.connectMs)),
    turn1Ms: summarize(turn(0).map((t) => t.latencyMs)),
    turn2Ms: summarize(turn(1).map((t) => t.latencyMs)),
    turn1OverNominalMs: summarize(over(0)),
    turn2OverNominalMs: summarize(over(1)),
    turn1EngineMs: summarize(turn(0).map((t) => t.engineMs)),
    turn2EngineMs: summarize(turn(1).map((t) => t.engineMs)),
    paths: countBy(samples, (s) => `${path(s.turns[0])} → ${path(s.turns[1])}`),
  } satisfies ColdStartArm;
}

/** A data folder with just the main company and its template. */
async function mainCompanyOnly(o: ColdStartOptions): Promise<string> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'switchboard-bench-cold-'));
  for (const [kind, file] of [
    ['companies', o.companyFile],
    ['templates', o.templateFile],
  ] as const) {
    await mkdir(path.join(dataDir, 'config', kind), { recursive: true });
    await copyFile(file, path.join(dataDir, 'config', kind, path.basename(file)));
  }
  return dataDir;
}

export async function runColdStart(given: ColdStartOptions): Promise<ColdStartResult> {
  const dataDir = await mainCompanyOnly(given);
  try {
    return await measure({ ...given, engineConfig: { ...given.engineConfig, dataDir } });
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
}

async function measure(options: ColdStartOptions): Promise<ColdStartResult> {
  const { progress } = options;
  progress(`cold start: ${options.runs} runs × 2 fresh engines (startup warmup on / off), one call each`);
  // Discarded: the first spawn reads Node and the modules from disk, and the fake answers its first requests.
  await oneRun(options, true).catch(() => undefined);
  const samples = { on: [] as RunSample[], off: [] as RunSample[] };
  const failed = { on: 0, off: 0 };
  for (let run = 0; run < options.runs; run++) {
    const order = run % 2 === 0 ? (['on', 'off'] as const) : (['off', 'on'] as const);
    for (const which of order) {
      try {
        samples[which].push(await oneRun(options, which === 'on'));
      } catch (err) {
        failed[which] += 1;
        progress(`  run ${run + 1} (${which}) failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    const last = (which: 'on' | 'off') => samples[which].at(-1)?.turns[0]?.latencyMs.toFixed(0) ?? '-';
    progress(`  run ${run + 1}: first turn ${last('on')} ms warmed, ${last('off')} ms cold`);
  }
  const on = arm('startup warmup on', true, samples.on, failed.on, options);
  const off = arm('startup warmup off', false, samples.off, failed.off, options);
  return {
    runsPerArm: options.runs,
    company: COMPANIES.main.id,
    on,
    off,
    turn1Ratio: {
      latencyP50: ratio(on.turn1Ms.p50, off.turn1Ms.p50),
      overNominalP50: ratio(on.turn1OverNominalMs.p50, off.turn1OverNominalMs.p50),
    },
  };
}
