/**
 * What the audio path costs per 20 ms frame, against the budget ARCHITECTURE.md sets: the per-frame
 * path must cost no more than a bare relay that parses each Twilio frame and forwards it, measured at
 * ~0.135 % of a core per call (≈ 27 µs of CPU per frame at 50 frames/s).
 *
 *   node src/audio/audioBench.ts [--json] [--rounds N] [--round-ms MS]
 *
 * Inbound, every frame of every call: reading the `media` message (the scan a connection uses for
 * the documented layout, and the full parse any other text takes, each with the payload's decode), the VAD
 * alone (it reads μ-law through its own magnitude table), and decode to PCM16 + VAD for when a
 * component also needs linear audio. Outbound, per 20 ms of
 * speech while we talk: 24 kHz PCM → 8 kHz (resampler), μ-law encode + 160-byte frames (framer),
 * base64 for the `media` message, and all of it together fed TTS-like chunks of random size.
 *
 * Each case runs in rounds of about `--round-ms`, cases interleaved so that load from other processes
 * spreads over all of them; the report gives the median (and range) of wall time and of this process's
 * CPU time per frame, and the number of garbage collections during the case (the heap is collected
 * before each window, so each case is charged only for its own garbage): a path that allocates nothing
 * per frame shows none. Machine load (/proc/stat) is sampled around the run and reported, since
 * the figures are only comparable on a quiet machine.
 */
import { Buffer } from 'node:buffer';
import { cpus, loadavg, totalmem } from 'node:os';
import { PerformanceObserver, performance } from 'node:perf_hooks';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { cpuShares, readCpuTimes } from '../bench/machineCpu.ts';
import { median } from '../bench/stats.ts';
import { mediaFrame } from '../cli/twilioStreamSimulator.ts';
import { PayloadDecoder, parseMediaFrame, scanMediaFrame } from '../twilio/mediaProtocol.ts';
import type { MediaFrame } from '../twilio/mediaProtocol.ts';
import { Framer, frameToBase64 } from './framer.ts';
import { decodeMulaw, encodeMulaw } from './mulaw.ts';
import { Resampler } from './resampler.ts';
import { Vad } from './vad.ts';

// A full collection before each timed window, so that garbage left by one case is not collected (and
// counted) in the next one's window. Exposes gc() without a command-line flag, so the bench runs as
// plain `node src/audio/audioBench.ts`.
setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;

/** Twilio's inbound rate and our outbound frame rate (research/protocols.md §1.5). */
const FRAMES_PER_SECOND = 50;
/** ARCHITECTURE.md "Performance rules": the bare relay's measured cost per call. */
const BARE_RELAY_CORE_PCT = 0.135;

interface Case {
  readonly name: string;
  /** What one unit of work is: a 20 ms frame in or out. */
  readonly unitsPerRun: number;
  /** Does `unitsPerRun` units of work; returns something derived from it, so nothing is optimised away. */
  readonly run: () => number;
}

interface CaseResult {
  readonly name: string;
  readonly wallNsPerFrame: { readonly median: number; readonly min: number; readonly max: number };
  readonly cpuNsPerFrame: { readonly median: number; readonly min: number; readonly max: number };
  /** Share of one core per call at 50 frames/s, from the median CPU time. */
  readonly corePctPerCall: number;
  readonly frames: number;
  readonly gcCount: number;
}

function parseArgs(argv: readonly string[]) {
  const options = { json: false, rounds: 7, roundMs: 400 };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--json') options.json = true;
    else if (arg === '--rounds') options.rounds = Number(argv[++i]);
    else if (arg === '--round-ms') options.roundMs = Number(argv[++i]);
    else
      throw new Error(
        `unknown argument ${arg}; usage: node src/audio/audioBench.ts [--json] [--rounds N] [--round-ms MS]`,
      );
  }
  if (!(options.rounds >= 1 && options.roundMs >= 10)) throw new Error('--rounds ≥ 1 and --round-ms ≥ 10');
  return options;
}

/** Deterministic noise (mulberry32), so every run measures the same audio. */
function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** 10 s of speech-like audio at `rateHz`: a voice with harmonics, syllabic envelope, pauses, hiss. */
function speechLike(rateHz: number, seconds: number): Int16Array {
  const random = seededRandom(rateHz);
  const out = new Int16Array(rateHz * seconds);
  for (let i = 0; i < out.length; i++) {
    const t = i / rateHz;
    const talking = t % 3 < 2; // 2 s of speech, 1 s of pause
    const envelope = talking ? 0.3 + 0.7 * Math.abs(Math.sin(Math.PI * 4 * t)) : 0;
    let voice = 0;
    for (const h of [1, 2, 3, 5, 8, 13]) voice += Math.sin(2 * Math.PI * 140 * h * t) / h;
    out[i] = Math.round(4_000 * envelope * voice + (random() - 0.5) * 200);
  }
  return out;
}

function toLittleEndianBytes(samples: Int16Array): Uint8Array {
  const bytes = new Uint8Array(samples.length * 2);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < samples.length; i++) view.setInt16(2 * i, samples[i]!, true);
  return bytes;
}

function buildCases(): Case[] {
  // Inbound: 10 s of caller audio as Twilio sends it, 500 μ-law frames of 160 bytes.
  const inboundPcm = speechLike(8_000, 10);
  const inboundMulaw = new Uint8Array(inboundPcm.length);
  encodeMulaw(inboundPcm, inboundMulaw);
  const inboundFrames = Array.from({ length: inboundMulaw.length / 160 }, (_, i) =>
    inboundMulaw.subarray(160 * i, 160 * (i + 1)),
  );
  let speechEvents = 0;
  const vad = new Vad(() => speechEvents++);
  const decoded = new Int16Array(160);
  // The same frames as the test client sends them (`media` messages in the documented layout), read
  // as a connection reads them and decoded; each case returns the bytes decoded.
  const mediaTexts = inboundFrames.map((frame, i) =>
    mediaFrame(
      i + 2,
      i + 1,
      i * 20,
      Buffer.from(frame).toString('base64'),
      'MZ18ad3ab5a668481ce02b83e7395059f0',
    ),
  );
  const payloads = new PayloadDecoder();
  const readMessages = (read: (text: string) => MediaFrame | undefined) => () => {
    let bytes = 0;
    for (const text of mediaTexts) {
      const frame = read(text);
      if (frame !== undefined) bytes += payloads.decode(frame.media.payload)?.length ?? 0;
    }
    return bytes;
  };

  // Outbound: 10 s of TTS audio at 24 kHz as bytes, once in 20 ms chunks and once in network-like
  // chunks of random size (1–8192 bytes, odd sizes included), all cut before timing starts.
  const ttsBytes = toLittleEndianBytes(speechLike(24_000, 10));
  const ttsFrames = Array.from({ length: ttsBytes.length / 960 }, (_, i) =>
    ttsBytes.subarray(960 * i, 960 * (i + 1)),
  );
  const random = seededRandom(7);
  const ttsChunks: Uint8Array[] = [];
  for (let at = 0; at < ttsBytes.length;) {
    const size = Math.min(ttsBytes.length - at, 1 + Math.floor(random() * 8192));
    ttsChunks.push(ttsBytes.subarray(at, at + size));
    at += size;
  }
  const outboundFrames = ttsBytes.length / 960;
  const pcm8k = speechLike(8_000, 10);
  const pcm8kFrames = Array.from({ length: pcm8k.length / 160 }, (_, i) =>
    pcm8k.subarray(160 * i, 160 * (i + 1)),
  );
  const mulawFrame = Buffer.from(inboundFrames[100]!);

  const resampler = new Resampler();
  let payloadChars = 0;
  const framerNoSend = new Framer((frame) => (payloadChars += frame[0]!));
  const framerToBase64 = new Framer((frame) => (payloadChars += frameToBase64(frame).length));

  return [
    {
      name: 'inbound: VAD (level via μ-law magnitude table)',
      unitsPerRun: inboundFrames.length,
      run: () => {
        for (const frame of inboundFrames) vad.push(frame);
        return speechEvents;
      },
    },
    {
      name: 'inbound: decode to PCM16 + VAD',
      unitsPerRun: inboundFrames.length,
      run: () => {
        for (const frame of inboundFrames) {
          decodeMulaw(frame, decoded);
          vad.push(frame);
        }
        return speechEvents + decoded[7]!;
      },
    },
    {
      name: 'inbound: media message, scan + decode',
      unitsPerRun: mediaTexts.length,
      run: readMessages(scanMediaFrame),
    },
    {
      name: 'inbound: media message, JSON.parse path',
      unitsPerRun: mediaTexts.length,
      run: readMessages((text) => {
        const parsed = parseMediaFrame(text);
        return parsed.ok && parsed.frame.event === 'media' ? parsed.frame : undefined;
      }),
    },
    {
      name: 'outbound: resample 960 B (24 kHz) → 160 samples',
      unitsPerRun: ttsFrames.length,
      run: () => {
        let n = 0;
        for (const chunk of ttsFrames) n += resampler.process(chunk).length;
        return n;
      },
    },
    {
      name: 'outbound: μ-law encode + frame (160 samples)',
      unitsPerRun: pcm8kFrames.length,
      run: () => {
        for (const samples of pcm8kFrames) framerNoSend.pushPcm(samples);
        return payloadChars;
      },
    },
    {
      name: 'outbound: base64 of one frame',
      unitsPerRun: 500,
      run: () => {
        let n = 0;
        for (let i = 0; i < 500; i++) n += frameToBase64(mulawFrame).length;
        return n;
      },
    },
    {
      name: 'outbound: all three, TTS chunks of random size',
      unitsPerRun: outboundFrames,
      run: () => {
        for (const chunk of ttsChunks) framerToBase64.pushPcm(resampler.process(chunk));
        return payloadChars;
      },
    },
  ];
}

async function main(): Promise<void> {
  const options = parseArgs(process.argv.slice(2));
  const cases = buildCases();
  const gcTimes: number[] = [];
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) gcTimes.push(entry.startTime);
  });
  observer.observe({ entryTypes: ['gc'] });

  let sink = 0;
  // Warm-up: let V8 optimise every case before anything is timed.
  for (const c of cases) {
    const until = performance.now() + 300;
    while (performance.now() < until) sink += c.run();
  }
  // Runs per round for each case, from a short calibration.
  const runsPerRound = cases.map((c) => {
    const start = performance.now();
    let runs = 0;
    while (performance.now() - start < 50) {
      sink += c.run();
      runs++;
    }
    return Math.max(1, Math.round((runs * options.roundMs) / 50));
  });

  const loadBefore = loadavg();
  const machineBefore = readCpuTimes();
  const ownBefore = process.cpuUsage();
  const startedAt = new Date();
  const wall: number[][] = cases.map(() => []);
  const cpu: number[][] = cases.map(() => []);
  const windows: [number, number][][] = cases.map(() => []);
  for (let round = 0; round < options.rounds; round++) {
    for (const [i, c] of cases.entries()) {
      collectGarbage();
      await yieldToLoop(); // lets the GC observer record what happened so far
      const runs = runsPerRound[i]!;
      const t0 = performance.now();
      const cpu0 = process.cpuUsage();
      for (let r = 0; r < runs; r++) sink += c.run();
      const cpuUsed = process.cpuUsage(cpu0);
      const t1 = performance.now();
      const frames = runs * c.unitsPerRun;
      wall[i]!.push(((t1 - t0) * 1e6) / frames);
      cpu[i]!.push(((cpuUsed.user + cpuUsed.system) * 1e3) / frames);
      windows[i]!.push([t0, t1]);
    }
  }
  const elapsedS = (Date.now() - startedAt.getTime()) / 1000;
  const ownCpu = process.cpuUsage(ownBefore);
  const machineAfter = readCpuTimes();
  const loadAfter = loadavg();
  await yieldToLoop();
  await new Promise((resolve) => setTimeout(resolve, 50));
  observer.disconnect();

  const results: CaseResult[] = cases.map((c, i) => {
    const cpuMedian = median(cpu[i]!);
    return {
      name: c.name,
      wallNsPerFrame: { median: median(wall[i]!), min: Math.min(...wall[i]!), max: Math.max(...wall[i]!) },
      cpuNsPerFrame: { median: cpuMedian, min: Math.min(...cpu[i]!), max: Math.max(...cpu[i]!) },
      corePctPerCall: ((cpuMedian * FRAMES_PER_SECOND) / 1e9) * 100,
      frames: options.rounds * runsPerRound[i]! * c.unitsPerRun,
      gcCount: gcTimes.filter((t) => windows[i]!.some(([a, b]) => t >= a && t <= b)).length,
    };
  });

  const shares = machineBefore && machineAfter ? cpuShares(machineBefore, machineAfter) : null;
  const ownPctOfOneCore = ((ownCpu.user + ownCpu.system) / 1e6 / elapsedS) * 100;
  const machineBusyPct = shares ? shares.busyPct.reduce((a, b) => a + b, 0) : null;
  const machine = {
    cpus: cpus().length,
    model: cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    date: startedAt.toISOString(),
    durationS: Math.round(elapsedS * 10) / 10,
    loadAverage1mBefore: loadBefore[0]!,
    loadAverage1mAfter: loadAfter[0]!,
    busyPctPerCore: shares?.busyPct.map((p) => Math.round(p)) ?? null,
    ownPctOfOneCore: Math.round(ownPctOfOneCore),
    otherProcessesPctOfOneCore: machineBusyPct === null ? null : Math.round(machineBusyPct - ownPctOfOneCore),
  };

  const inbound = results[0]!;
  const outbound = results[5]!;
  const summary = {
    bareRelayCorePctPerCall: BARE_RELAY_CORE_PCT,
    bareRelayNsPerFrame: ((BARE_RELAY_CORE_PCT / 100) * 1e9) / FRAMES_PER_SECOND,
    inboundCorePctPerCall: inbound.corePctPerCall,
    outboundCorePctPerCallWhileSpeaking: outbound.corePctPerCall,
    inboundShareOfBareRelay: inbound.corePctPerCall / BARE_RELAY_CORE_PCT,
    bothShareOfBareRelay: (inbound.corePctPerCall + outbound.corePctPerCall) / BARE_RELAY_CORE_PCT,
  };

  if (options.json) {
    process.stdout.write(`${JSON.stringify({ machine, results, summary }, null, 2)}\n`);
    return;
  }
  const ns = (x: number) => (x >= 1000 ? `${(x / 1000).toFixed(2)} µs` : `${x.toFixed(0)} ns`);
  const lines = [
    `Audio path per 20 ms frame — ${machine.date}`,
    `machine: ${machine.cpus} CPUs (${machine.model}), ${machine.memoryGiB} GiB, Node ${machine.node}`,
    `load average (1 min) ${machine.loadAverage1mBefore.toFixed(2)} → ${machine.loadAverage1mAfter.toFixed(2)}; ` +
      `during the run: cores busy ${machine.busyPctPerCore?.join(' % / ') ?? '?'} %, this process ${machine.ownPctOfOneCore} % of a core, ` +
      `other processes ${machine.otherProcessesPctOfOneCore ?? '?'} % of a core`,
    `${options.rounds} rounds of ~${options.roundMs} ms per case, interleaved; medians (min–max over rounds)`,
    '',
    'case                                                 wall/frame            CPU/frame  core/call    frames  GCs',
    ...results.map(
      (r) =>
        `${r.name.padEnd(50)} ${ns(r.wallNsPerFrame.median).padStart(9)} (${ns(r.wallNsPerFrame.min)}–${ns(r.wallNsPerFrame.max)})`.padEnd(
          82,
        ) +
        `${ns(r.cpuNsPerFrame.median).padStart(9)}  ${r.corePctPerCall.toFixed(4).padStart(7)} %` +
        `${String(r.frames).padStart(10)} ${String(r.gcCount).padStart(4)}`,
    ),
    '',
    `bare relay reference: ${BARE_RELAY_CORE_PCT} % of a core per call = ${ns(summary.bareRelayNsPerFrame)} per frame`,
    `inbound (VAD) per call: ${summary.inboundCorePctPerCall.toFixed(4)} % of a core = ${(summary.inboundShareOfBareRelay * 100).toFixed(1)} % of the bare relay`,
    `outbound while speaking: ${summary.outboundCorePctPerCallWhileSpeaking.toFixed(4)} % of a core; inbound + outbound = ${(summary.bothShareOfBareRelay * 100).toFixed(1)} % of the bare relay`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  if (sink === -1) process.stdout.write('\n'); // keeps `sink` observable
}

await main();
