/**
 * The Media Streams audio bench (`npm run bench -- audio`): N simulated Twilio callers streaming in
 * real time against a server, level after level, for two servers in turn — the bare relay baseline
 * and the engine — each in its own child process, with the fake providers in another.
 *
 * Per level: the callers connect (spread over a ramp), talk through a warm-up, the server's memory
 * is sampled with the calls live, then a measurement window records the server's CPU, event-loop
 * delay and utilisation (measured in its own process), the callers' late frames, reply latency and
 * outbound frame spacing, and the machine's per-core load; then every caller hangs up. An arm stops
 * climbing at the first level it does not sustain (unless told to keep going).
 *
 * Pinning (2+ CPUs): the server on CPU 0; this process (the callers) and the fakes on CPU 1.
 */
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import type { CpuTimes } from '../machineCpu.ts';
import { cpuShares, describeMachine, readCpuTimes } from '../machineCpu.ts';
import type { FakeChildAnswer, FakeChildConfig, FakeChildRequest } from '../protocol.ts';
import { Child } from '../protocol.ts';
import { median } from '../stats.ts';
import {
  COMPANIES,
  TIER1_UTTERANCES,
  TIER2_UTTERANCES,
  TIER3_ANSWER,
  TIER3_UTTERANCES,
  createDataDir,
} from '../scenario.ts';
import { readFile } from 'node:fs/promises';
import { parseCompany, parseTemplate } from '../../config/companyConfig.ts';
import { createCompanyRouter, decideWithoutLlm } from '../../routing/companyRouter.ts';
import { createLocalEmbedder } from '../../routing/localEmbedder.ts';
import type { AudioFakesConfig } from './audioFakesProcess.ts';
import type { BenchTls } from './benchTls.ts';
import { createBenchCertificate } from './benchTls.ts';
import type {
  ArmName,
  AudioArmResult,
  AudioBenchResult,
  AudioComparison,
  AudioLevelResult,
} from './audioReport.ts';
import { SUSTAINED_LOOP_DELAY_P99_MS } from './audioReport.ts';
import type { CallerAudio } from './mediaCallers.ts';
import { MediaCallers, parseStreamTwiml } from './mediaCallers.ts';
import type { MediaEngineConfig } from './mediaEngineProcess.ts';
import type { ServerAnswer, ServerRequest } from './serverProbe.ts';
import { SILENCE_FRAME, voiceFrames } from './syntheticVoice.ts';

export interface AudioBenchSettings {
  readonly arms: readonly ArmName[];
  /** Concurrent calls per level, in order. */
  readonly levels: readonly number[];
  /** Once every listed level is sustained, add `climbStep` calls per level up to `maxCalls`. */
  readonly climb: boolean;
  readonly climbStep: number;
  readonly maxCalls: number;
  /** Go on after a level that is not sustained. */
  readonly keepGoing: boolean;
  /**
   * Runs of the arms, alternating (relay, engine, relay, engine, …). Above 1 every round runs every
   * listed level (no climbing, no stopping early) and the comparison takes each arm's median per
   * level: single windows of this bench vary by 10–15 % from run to run on a shared machine.
   */
  readonly rounds: number;
  /**
   * Share of frames that may be late in a sustained level. 0 is strict. The default, 0.01, lets a
   * level through a few scheduling hiccups caused by other processes on a shared machine (one 35 ms
   * stall at 100 calls makes 0.15 % of a 20 s window's frames late), while a generator that cannot
   * keep up is late on far more.
   */
  readonly lateFrameTolerance: number;
  readonly durationS: number;
  readonly warmupS: number;
  /** Longest ramp; a level ramps over min(rampMaxMs, calls × 5 ms). */
  readonly rampMaxMs: number;
  /** Reply audio per turn, both arms. */
  readonly replyMs: number;
  /** The relay upstream's latency from utterance end to first audio. */
  readonly replyDelayMs: number;
  /** The engine arm's fake speech: first byte after this. */
  readonly ttsFirstByteMs: number;
  /**
   * The engine arm's fake speech: bytes per network chunk (24 kHz PCM16, so 4800 = 100 ms of audio).
   * What a TLS client reads off a streaming speech response is records of a few KiB; the test
   * fakes' default of odd 1–2048-byte pieces exists to test reassembly, not to cost like the wire.
   */
  readonly ttsChunkBytes: number;
  /** The engine arm's fake speech: audio delivered this many times faster than real time. */
  readonly ttsSpeed: number;
  /** Silence that ends an utterance in both fakes' VADs. */
  readonly silenceMsToStop: number;
  /** The engine arm's fake LLM latencies (as `npm run bench`). */
  readonly understandingMs: number;
  readonly firstTokenMs: number;
  readonly tokenMs: number;
  readonly pauseMs: readonly [number, number];
  readonly firstSpeechMs: readonly [number, number];
  /**
   * Callers never speak: they stream silence and listen (to the engine's greeting). What is left is
   * the per-frame path, the figure to hold against a relay that only forwards inbound audio.
   */
  readonly listenOnly: boolean;
  /**
   * The engine arm's company: `main` (LLM-backed capture and detect, warmup on: the production-like
   * one) or `cold` (rule capture and detect, no warmup: per turn only Tier 3 calls an LLM).
   */
  readonly company: 'main' | 'cold';
  readonly logLevel: string;
  readonly pin: boolean;
  /** Write a V8 CPU profile of the server process (relay or engine) into this folder. */
  readonly cpuProfDir: string | null;
  /** Extra Node/V8 flags for the server process (both arms), e.g. `--max-semi-space-size=16`. */
  readonly serverNodeFlags: readonly string[];
  /**
   * The server's upstream leg over TLS, as to a real provider: the relay's realtime socket, the
   * engine's STT socket and HTTP requests. The callers' leg stays plain: Twilio's TLS ends at a
   * terminator in front of the balancer and the engines (infra/README.md).
   */
  readonly tls: boolean;
}

export const DEFAULT_AUDIO_SETTINGS: AudioBenchSettings = {
  arms: ['relay', 'engine'],
  levels: [150, 300, 450, 600, 750],
  climb: true,
  climbStep: 150,
  maxCalls: 1500,
  keepGoing: false,
  rounds: 1,
  lateFrameTolerance: 0.01,
  durationS: 20,
  warmupS: 4,
  rampMaxMs: 4000,
  replyMs: 2000,
  replyDelayMs: 300,
  ttsFirstByteMs: 150,
  ttsChunkBytes: 4800,
  ttsSpeed: 4,
  silenceMsToStop: 200,
  understandingMs: 150,
  firstTokenMs: 400,
  tokenMs: 15,
  pauseMs: [800, 1600],
  firstSpeechMs: [300, 1500],
  listenOnly: false,
  company: 'main',
  logLevel: 'info',
  pin: os.availableParallelism() >= 2,
  cpuProfDir: null,
  serverNodeFlags: [],
  tls: false,
};

function serverArgs(s: AudioBenchSettings): string[] {
  return [
    '--expose-gc',
    ...s.serverNodeFlags,
    ...(s.cpuProfDir === null ? [] : ['--cpu-prof', `--cpu-prof-dir=${s.cpuProfDir}`]),
  ];
}

type Server = Child<ServerRequest, ServerAnswer>;
type Fake = Child<FakeChildRequest, FakeChildAnswer>;

const script = (name: string) => fileURLToPath(new URL(name, import.meta.url));
const RELAY_SCRIPT = script('./relayProcess.ts');
const ENGINE_SCRIPT = script('./mediaEngineProcess.ts');
const FAKES_SCRIPT = script('./audioFakesProcess.ts');
const LLM_FAKE_SCRIPT = script('../fakeProviders.ts');

/** What every caller says: three utterances of different lengths, built once. */
function callerAudio(): CallerAudio {
  return { silence: SILENCE_FRAME, utterances: [1200, 1600, 2000].map((ms, i) => voiceFrames(ms, i)) };
}

/**
 * What the engine arm's callers are heard to say, in turn: the text bench's pools mixed 40/30/30
 * (Tier 1 answers come from pre-synthesized audio, Tier 2 and Tier 3 from the speech fake), never
 * a goodbye, so every call lasts the whole level.
 */
const TRANSCRIPTS: readonly string[] = Array.from({ length: 10 }, (_, i) => [
  TIER1_UTTERANCES[i]!,
  TIER2_UTTERANCES[i]!,
  TIER3_UTTERANCES[i]!,
  TIER1_UTTERANCES[(i + 5) % TIER1_UTTERANCES.length]!,
  TIER2_UTTERANCES[(i + 5) % TIER2_UTTERANCES.length]!,
  TIER3_UTTERANCES[(i + 5) % TIER3_UTTERANCES.length]!,
  TIER1_UTTERANCES[(i + 3) % TIER1_UTTERANCES.length]!,
  TIER1_UTTERANCES[(i + 7) % TIER1_UTTERANCES.length]!,
  TIER2_UTTERANCES[(i + 3) % TIER2_UTTERANCES.length]!,
  TIER3_UTTERANCES[(i + 3) % TIER3_UTTERANCES.length]!,
]).flat();

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
/** The engine arm's callers that ask for trace frames: one in this many. */
export const TRACE_EVERY = 4;

async function waitForNoCalls(server: Server, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { liveCalls } = await server.request('status');
    if (liveCalls === 0) return;
    if (Date.now() > deadline) throw new Error(`${liveCalls} calls still live after ${timeoutMs} ms`);
    await sleep(100);
  }
}

/** Whether the engine answers the voice webhook with a Media Stream; null if so, else why not. */
async function mediaStreamsMissing(url: string, number: string): Promise<string | null> {
  const response = await fetch(new URL('/twilio/voice', url), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      AccountSid: `AC${'0'.repeat(32)}`,
      CallSid: `CA${'0'.repeat(32)}`,
      From: '+15550000000',
      To: number,
    }),
  });
  const twiml = await response.text();
  if (!response.ok) return `the webhook answered HTTP ${response.status}`;
  if (parseStreamTwiml(twiml) === null)
    return /<ConversationRelay/.test(twiml)
      ? 'the webhook answered ConversationRelay TwiML, not <Stream> (no Media Streams in this build)'
      : 'the webhook answered no <Stream>';
  return null;
}

interface ArmProcesses {
  readonly server: Server;
  readonly url: string;
  /** What the server's upstream answers on, as the fakes reported it. */
  readonly upstreamUrl: string;
  readonly fakes: readonly Fake[];
  readonly number: string;
  /** MediaCallersOptions.traceEvery. */
  readonly traceEvery: number;
  stop(): Promise<void>;
}

/**
 * Lowers a fake provider's scheduling priority. The callers stand for Twilio, whose frames arrive
 * on time whatever our load; where the fakes share a core with them, the callers get it first, and
 * a fake that waits shows as reply latency (measured) rather than as late inbound frames.
 */
function yieldToCallers(pid: number): void {
  try {
    execFileSync('renice', ['-n', '10', '-p', String(pid)], { stdio: 'ignore' });
  } catch {
    // No renice here: the fakes compete on equal terms.
  }
}

/** Starts a fake-provider child, waits until it listens and lets the callers come first on its core. */
async function startFake(
  started: { stop(): Promise<void> }[],
  name: string,
  script: string,
  env: Record<string, string>,
  cpus: string | null,
): Promise<{ fake: Fake; url: string }> {
  const fake: Fake = new Child(name, script, { env, cpus });
  started.push(fake);
  const { url, pid } = await fake.ready;
  yieldToCallers(pid);
  return { fake, url };
}

async function stopAll(children: readonly { stop(): Promise<void> }[]): Promise<void> {
  await Promise.all(children.map((c) => c.stop().catch(() => undefined)));
}

/** The server's environment for an upstream served with `tls`: it trusts the fakes' certificate. */
function trustEnv(tls: BenchTls | null): Record<string, string> {
  return tls === null ? {} : { NODE_EXTRA_CA_CERTS: tls.certFile };
}

async function startRelayArm(
  s: AudioBenchSettings,
  cpus: CpuPlan,
  tls: BenchTls | null,
): Promise<ArmProcesses> {
  const fakesConfig: AudioFakesConfig = {
    mode: 'relay',
    tls,
    silenceMsToStop: s.silenceMsToStop,
    replyDelayMs: s.replyDelayMs,
    replyMs: s.replyMs,
  };
  const started: { stop(): Promise<void> }[] = [];
  try {
    const { fake, url: upstreamUrl } = await startFake(
      started,
      'relay upstream fake',
      FAKES_SCRIPT,
      { BENCH_AUDIO_FAKES_CONFIG: JSON.stringify(fakesConfig) },
      cpus.others,
    );
    const server: Server = new Child('bare relay', RELAY_SCRIPT, {
      execArgv: serverArgs(s),
      env: { BENCH_RELAY_UPSTREAM: upstreamUrl, ...trustEnv(tls) },
      cpus: cpus.server,
    });
    started.push(server);
    const { url } = await server.ready;
    return {
      server,
      url,
      upstreamUrl,
      fakes: [fake],
      number: '+15550000000',
      traceEvery: 0,
      stop: () => stopAll([server, fake]),
    };
  } catch (err) {
    await stopAll(started);
    throw err;
  }
}

/**
 * The mean length in characters of the engine's replies over the callers' transcripts, each answered
 * as the company's Tier 1 and Tier 2 answer it (the fixed Tier 3 answer otherwise). The speech fake
 * gives every text `replyMs / mean` ms of audio per character, so that the engine's replies carry
 * `replyMs` of audio on average, as the relay's do, however a reply is split into sentences.
 */
async function meanReplyCharacters(companyFile: string, templateFile: string): Promise<number> {
  const company = parseCompany(JSON.parse(await readFile(companyFile, 'utf8')), companyFile);
  const template = parseTemplate(JSON.parse(await readFile(templateFile, 'utf8')), templateFile);
  const router = await createCompanyRouter({
    company,
    templates: [template],
    embedder: createLocalEmbedder(),
  });
  let total = 0;
  for (const utterance of TRANSCRIPTS) {
    const tier1 = router.tier1(utterance);
    const decided = decideWithoutLlm(tier1, await router.tier2(utterance, null), company.gatekeeper);
    total += (decided.result?.reply ?? TIER3_ANSWER).length;
  }
  return total / TRANSCRIPTS.length;
}

async function startEngineArm(
  s: AudioBenchSettings,
  cpus: CpuPlan,
  tls: BenchTls | null,
): Promise<ArmProcesses> {
  const { dataDir, companyFile, templateFile } = await createDataDir();
  // Ctrl-C: the children exit when their IPC channel closes; the data folder is ours to remove.
  const onInterrupt = () => {
    rmSync(dataDir, { recursive: true, force: true });
    process.exit(130);
  };
  process.once('SIGINT', onInterrupt);
  const removeDataDir = async () => {
    process.off('SIGINT', onInterrupt);
    await rm(dataDir, { recursive: true, force: true });
  };
  const started: { stop(): Promise<void> }[] = [];
  try {
    const llmConfig: FakeChildConfig = {
      companyFile,
      templateFile,
      understandingMs: s.understandingMs,
      firstTokenMs: s.firstTokenMs,
      tokenIntervalMs: s.tokenMs,
    };
    const { fake: llm, url: llmBaseURL } = await startFake(
      started,
      'fake LLM',
      LLM_FAKE_SCRIPT,
      { BENCH_FAKE_CONFIG: JSON.stringify(llmConfig) },
      cpus.others,
    );
    const fakesConfig: AudioFakesConfig = {
      mode: 'engine',
      tls,
      ttsMsPerChar: s.replyMs / (await meanReplyCharacters(companyFile, templateFile)),
      llmBaseURL,
      silenceMsToStop: s.silenceMsToStop,
      transcripts: TRANSCRIPTS,
      ttsFirstByteMs: s.ttsFirstByteMs,
      ttsChunkBytes: s.ttsChunkBytes,
      ttsSpeed: s.ttsSpeed,
    };
    const { fake: audio, url: openaiBaseURL } = await startFake(
      started,
      'fake audio providers',
      FAKES_SCRIPT,
      { BENCH_AUDIO_FAKES_CONFIG: JSON.stringify(fakesConfig) },
      cpus.others,
    );
    const engineConfig: MediaEngineConfig = { dataDir, openaiBaseURL, logLevel: s.logLevel };
    const server: Server = new Child('engine', ENGINE_SCRIPT, {
      execArgv: serverArgs(s),
      env: { BENCH_AUDIO_ENGINE_CONFIG: JSON.stringify(engineConfig), ...trustEnv(tls) },
      cpus: cpus.server,
    });
    started.push(server);
    const { url } = await server.ready;
    return {
      server,
      url,
      upstreamUrl: openaiBaseURL,
      fakes: [llm, audio],
      number: COMPANIES[s.company].number,
      // One caller in four: enough turns for the per-stage figures, without charging every call
      // for trace frames no real Twilio call asks for.
      traceEvery: TRACE_EVERY,
      stop: async () => {
        await stopAll([server, audio, llm]);
        await removeDataDir();
      },
    };
  } catch (err) {
    await stopAll(started);
    await removeDataDir();
    throw err;
  }
}

interface CpuPlan {
  readonly server: string | null;
  readonly others: string | null;
}

async function runLevel(
  arm: ArmProcesses,
  s: AudioBenchSettings,
  calls: number,
  audio: CallerAudio,
  progress: (message: string) => void,
): Promise<AudioLevelResult> {
  const rampMs = Math.min(s.rampMaxMs, calls * 5);
  progress(`  ${calls} calls: ramp ${rampMs} ms, warm-up ${s.warmupS} s, window ${s.durationS} s`);
  await waitForNoCalls(arm.server);
  const { memory: idle } = await arm.server.request('memory');
  const callers = new MediaCallers({
    url: arm.url,
    to: arm.number,
    callers: calls,
    rampMs,
    audio,
    firstSpeechMs: s.firstSpeechMs,
    speak: !s.listenOnly,
    pauseMs: s.pauseMs,
    replyTimeoutMs: 10_000,
    traceEvery: arm.traceEvery,
  });
  try {
    await callers.connected;
    await sleep(s.warmupS * 1000);
    const { memory: loaded } = await arm.server.request('memory');
    // Let the forced collections' pause pass before the window opens.
    await sleep(500);
    await arm.server.request('phase');
    await Promise.all(arm.fakes.map((f) => f.request('stats')));
    callers.reset();
    const cpuBefore: CpuTimes | null = readCpuTimes();
    const ownBefore = process.cpuUsage();
    const startedAt = performance.now();
    await sleep(s.durationS * 1000);
    const { window: server } = await arm.server.request('collect');
    const fakeStats = await Promise.all(arm.fakes.map((f) => f.request('stats')));
    const cpuAfter = readCpuTimes();
    const own = process.cpuUsage(ownBefore);
    const elapsedMs = performance.now() - startedAt;
    const window = callers.snapshot();
    const machine = cpuBefore === null || cpuAfter === null ? null : cpuShares(cpuBefore, cpuAfter);
    const n = Math.max(1, loaded.liveCalls);
    const reasons: string[] = [];
    if (server.loopDelayMs.p99 >= SUSTAINED_LOOP_DELAY_P99_MS)
      reasons.push(`server loop delay p99 ${server.loopDelayMs.p99.toFixed(1)} ms`);
    if (window.lateFrames > s.lateFrameTolerance * window.framesSent)
      reasons.push(`${window.lateFrames} late frames of ${window.framesSent}`);
    if (window.live < calls) reasons.push(`${window.live} of ${calls} calls live`);
    const generatorCpuCorePct = ((own.user + own.system) / 1000 / elapsedMs) * 100;
    const fakesCpuCorePct = fakeStats.reduce((sum, f) => sum + f.cpuCorePct, 0);
    const result: AudioLevelResult = {
      calls,
      server,
      cpuPerCallPct: server.cpuCorePct / Math.max(1, window.live),
      machinePerCallPct:
        machine === null ? null : machine.busyPct.reduce((sum, b) => sum + b, 0) / Math.max(1, window.live),
      machine,
      otherCorePct:
        machine === null
          ? null
          : Math.max(
              0,
              machine.busyPct.reduce((sum, b) => sum + b, 0) -
                server.cpuCorePct -
                generatorCpuCorePct -
                fakesCpuCorePct,
            ),
      memory: {
        idle,
        loaded,
        rssPerCallBytes: (loaded.rss - idle.rss) / n,
        heapPerCallBytes: (loaded.heapUsed - idle.heapUsed) / n,
      },
      callers: window,
      generatorCpuCorePct,
      fakesCpuCorePct,
      sustained: reasons.length === 0,
      reasons,
    };
    const l = window.speechEndToFirstAudioMs;
    progress(
      `    server ${server.cpuCorePct.toFixed(1)} % CPU (${server.systemCorePct.toFixed(1)} kernel; ${result.cpuPerCallPct.toFixed(3)} %/call), loop p99 ` +
        `${server.loopDelayMs.p99.toFixed(1)} ms, late frames ${window.lateFrames}/${window.framesSent}, ` +
        `speech end→audio p50/p99 ${l.p50?.toFixed(0) ?? '-'}/${l.p99?.toFixed(0) ?? '-'} ms, ` +
        `audio out ${((window.outboundFrames * 20) / Math.max(1, window.utterances - window.noReply)).toFixed(0)} ms/reply, ` +
        `callers ${generatorCpuCorePct.toFixed(0)} % CPU, others ${result.otherCorePct?.toFixed(0) ?? '-'} % → ${result.sustained ? 'sustained' : `not sustained (${reasons.join('; ')})`}`,
    );
    return result;
  } finally {
    await callers.stop();
  }
}

async function runArm(
  name: ArmName,
  round: number,
  s: AudioBenchSettings,
  cpus: CpuPlan,
  tls: BenchTls | null,
  audio: CallerAudio,
  progress: (message: string) => void,
): Promise<AudioArmResult> {
  progress(`${name}: starting${s.rounds > 1 ? ` (round ${round} of ${s.rounds})` : ''}`);
  let arm: ArmProcesses;
  try {
    arm = name === 'relay' ? await startRelayArm(s, cpus, tls) : await startEngineArm(s, cpus, tls);
  } catch (err) {
    if (name === 'relay') throw err;
    const note = `the engine did not start: ${err instanceof Error ? err.message : String(err)}`;
    progress(`engine: not run: ${note}`);
    return { arm: name, round, ran: false, note, levels: [], sustainedCalls: null, upstreamTls: false };
  }
  try {
    if (name === 'engine') {
      const missing = await mediaStreamsMissing(arm.url, arm.number);
      if (missing !== null) {
        progress(`engine: not run: ${missing}`);
        return {
          arm: name,
          round,
          ran: false,
          note: missing,
          levels: [],
          sustainedCalls: null,
          upstreamTls: false,
        };
      }
    }
    const levels: AudioLevelResult[] = [];
    const queue = [...s.levels];
    let note: string | null = null;
    while (queue.length > 0) {
      const calls = queue.shift()!;
      let level: AudioLevelResult;
      try {
        level = await runLevel(arm, s, calls, audio, progress);
      } catch (err) {
        // Overwhelmed past answering its IPC channel: the arm ends here, the server with it.
        note = `${calls} calls: ${err instanceof Error ? err.message : String(err)}; no higher level was run`;
        progress(`${name}: ${note}`);
        arm.server.process.kill('SIGKILL');
        break;
      }
      levels.push(level);
      if (!level.sustained && !s.keepGoing) break;
      if (queue.length === 0 && s.climb && level.sustained && calls + s.climbStep <= s.maxCalls)
        queue.push(calls + s.climbStep);
    }
    const sustained = levels.filter((l) => l.sustained).map((l) => l.calls);
    return {
      arm: name,
      round,
      ran: true,
      note,
      levels,
      sustainedCalls: sustained.length === 0 ? null : Math.max(...sustained),
      upstreamTls: /^(https|wss):/.test(arm.upstreamUrl),
    };
  } finally {
    await arm.stop();
  }
}

/**
 * Engine against relay per level both ran: each arm's median CPU per call over its rounds, their
 * ratio, and the spread of the ratios of the rounds (round i's engine over round i's relay). An
 * arm's calls sustained are the largest level that every one of its rounds sustained.
 */
export function compare(arms: readonly AudioArmResult[]): AudioComparison | null {
  const engines = arms.filter((a) => a.arm === 'engine' && a.ran);
  const relays = arms.filter((a) => a.arm === 'relay' && a.ran);
  if (engines.length === 0 || relays.length === 0) return null;
  const levels = [...new Set(engines.flatMap((a) => a.levels.map((l) => l.calls)))].sort((a, b) => a - b);
  const perCall = (runs: readonly AudioArmResult[], calls: number) =>
    runs.flatMap((a) => a.levels.filter((l) => l.calls === calls).map((l) => l.cpuPerCallPct));
  // A level counts only if every round sustained it: with noisy rounds the levels a round sustains
  // need not be the ones below its best (150 failed, 200 held), so per-round maxima would overstate.
  const everyRound = (runs: readonly AudioArmResult[]) => {
    const held = runs
      .flatMap((a) => a.levels.map((l) => l.calls))
      .filter((calls) => runs.every((a) => a.levels.some((l) => l.calls === calls && l.sustained)));
    return held.length === 0 ? null : Math.max(...held);
  };
  return {
    cpuPerCallRatio: levels.flatMap((calls) => {
      const engine = perCall(engines, calls);
      const relay = perCall(relays, calls);
      if (relay.length === 0) return [];
      const paired = engines.flatMap((e) => {
        const r = relays.find((a) => a.round === e.round)?.levels.find((l) => l.calls === calls);
        const l = e.levels.find((x) => x.calls === calls);
        return r === undefined || l === undefined || r.cpuPerCallPct <= 0
          ? []
          : [l.cpuPerCallPct / r.cpuPerCallPct];
      });
      const relayMedian = median(relay);
      const engineMedian = median(engine);
      return [
        {
          calls,
          ratio: relayMedian > 0 ? engineMedian / relayMedian : null,
          rounds: Math.min(engine.length, relay.length),
          engineCpuPerCallPct: engineMedian,
          relayCpuPerCallPct: relayMedian,
          roundRatios: paired,
        },
      ];
    }),
    sustained: { engine: everyRound(engines), relay: everyRound(relays) },
  };
}

/** Runs the arms in turn; progress lines go to `progress`. */
export async function runAudioBench(
  s: AudioBenchSettings,
  progress: (message: string) => void = () => undefined,
): Promise<AudioBenchResult> {
  const startedAt = performance.now();
  const before = readCpuTimes();
  await sleep(1000);
  const after = readCpuTimes();
  const background = before === null || after === null ? null : [...cpuShares(before, after).busyPct];
  if (background !== null && background.reduce((sum, b) => sum + b, 0) > 25)
    progress(
      `warning: the machine is already busy (${background.map((b) => `${b.toFixed(0)}%`).join(' / ')} per core); figures will be noisy`,
    );
  const cpus: CpuPlan = s.pin ? { server: '0', others: '1' } : { server: null, others: null };
  if (s.pin) execFileSync('taskset', ['-a', '-cp', '1', String(process.pid)], { stdio: 'ignore' });
  const audio = callerAudio();
  const arms: AudioArmResult[] = [];
  const certificate = s.tls ? await createBenchCertificate() : null;
  try {
    for (let round = 1; round <= s.rounds; round++)
      for (const name of s.arms) arms.push(await runArm(name, round, s, cpus, certificate, audio, progress));
  } finally {
    await certificate?.remove();
  }
  return {
    machine: describeMachine(background),
    config: {
      levels: s.levels,
      climb: s.climb,
      rounds: s.rounds,
      durationS: s.durationS,
      warmupS: s.warmupS,
      replyMs: s.replyMs,
      replyDelayMs: s.replyDelayMs,
      ttsFirstByteMs: s.ttsFirstByteMs,
      ttsChunkBytes: s.ttsChunkBytes,
      ttsSpeed: s.ttsSpeed,
      serverNodeFlags: s.serverNodeFlags,
      silenceMsToStop: s.silenceMsToStop,
      pauseMs: s.pauseMs,
      listenOnly: s.listenOnly,
      lateFrameTolerance: s.lateFrameTolerance,
      pinned: s.pin,
      logLevel: s.logLevel,
      tls: s.tls,
    },
    arms,
    comparison: compare(arms),
    durationS: (performance.now() - startedAt) / 1000,
  };
}
