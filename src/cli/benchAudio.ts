/**
 * `npm run bench -- audio`: simulated Twilio callers on bidirectional Media Streams, streaming μ-law
 * in real time (50 frames/s each), against the bare relay baseline and then the engine, level after
 * level until a server no longer keeps up. See src/bench/audio/runAudioBench.ts for how, and the
 * "Media Streams audio" section of docs/BENCHMARKS.md for how to read the figures.
 *
 *   npm run bench -- audio                      # ≈ 3–4 minutes: 150, 300, 450 … calls per arm
 *   npm run bench -- audio --quick              # under a minute: 20 and 100 calls, 5 s windows
 *   npm run -s bench -- audio --arms relay --calls 200,400,600 --json
 *   npm run bench -- audio --calls 150,300,450 --rounds 3   # medians of three alternating rounds
 */
import os from 'node:os';
import type { ArmName } from '../bench/audio/audioReport.ts';
import { formatAudioReport } from '../bench/audio/audioReport.ts';
import type { AudioBenchSettings } from '../bench/audio/runAudioBench.ts';
import { DEFAULT_AUDIO_SETTINGS, runAudioBench } from '../bench/audio/runAudioBench.ts';
import { isMain, numberFlag, parseCli, runCli, usageError, userPath } from './args.ts';

const USAGE = `usage: npm run bench -- audio [options]

  --arms relay,engine    which servers, in this order (default both)
  --calls 150,300,450    concurrent calls per level (default 150,300,450,600,750, then +150 per
                         level; each arm stops after its first level not sustained)
  --keep-going           go on after a level that is not sustained
  --rounds 1             run the arms this many times, alternating; above 1 every round runs every
                         level listed (no climbing) and the comparison uses each arm's median
  --late-tolerance 0.01  share of frames that may be late in a sustained level (0 = none)
  --duration 20          measurement window per level, seconds
  --warmup 4             seconds of conversation before each window
  --reply-ms 2000        audio per reply (both arms)
  --reply-delay-ms 300   the bare relay upstream's latency, utterance end → first audio
  --tts-first-byte-ms 150  the engine's fake speech latency
  --tts-chunk-bytes 4800 the engine's fake speech: bytes per network chunk (4800 = 100 ms of audio)
  --tts-speed 4          the engine's fake speech: audio sent this many times faster than real time
  --silence-ms 200       silence that ends an utterance in the fakes' VADs
  --pause 800-1600       caller pause between a reply's end and the next utterance, ms
  --listen-only          callers never speak (silence, 50 frames/s): the per-frame path alone
  --company main         the engine's company: main (LLM capture/detect, warmup on) or cold (rule
                         capture/detect, no warmup: only Tier 3 turns call an LLM)
  --tls                  the server's upstream over TLS, as to a real provider (needs openssl);
                         the callers' leg stays plain, as behind a TLS terminator
  --log-level info       engine log level (written to /dev/null)
  --no-pin               do not pin processes to CPUs
  --cpu-prof DIR         write a V8 CPU profile of the server process (relay or engine) into DIR
  --node-flags=FLAGS     extra Node/V8 flags for the server process (with "=", space-separated),
                         e.g. --node-flags=--trace-gc or --node-flags="--max-semi-space-size=16 --trace-gc"
  --quick                20 and 100 calls, 5 s windows, 2 s warm-ups
  --json                 print the result as JSON instead of tables
`;

function rangeFlag(value: string | undefined, fallback: readonly [number, number], name: string) {
  if (value === undefined) return fallback;
  const [min, max] = value.split('-').map((s) => numberFlag(s, 0, name));
  return [min ?? fallback[0], max ?? min ?? fallback[1]] as const;
}

function armsFlag(value: string | undefined): readonly ArmName[] {
  if (value === undefined) return DEFAULT_AUDIO_SETTINGS.arms;
  return value.split(',').map((a) => {
    const arm = a.trim();
    if (arm !== 'relay' && arm !== 'engine') throw usageError(`--arms: expected relay or engine, got ${arm}`);
    return arm;
  });
}

function companyFlag(value: string): 'main' | 'cold' {
  if (value === 'main' || value === 'cold') return value;
  throw usageError(`--company: expected main or cold, got ${value}`);
}

/** Settings from the command line; null when help was asked for. */
export function audioSettingsFrom(argv: string[]): { settings: AudioBenchSettings; json: boolean } | null {
  const { values, positionals } = parseCli(argv, {
    arms: { type: 'string' },
    calls: { type: 'string' },
    'keep-going': { type: 'boolean', default: false },
    rounds: { type: 'string' },
    'late-tolerance': { type: 'string' },
    duration: { type: 'string' },
    warmup: { type: 'string' },
    'reply-ms': { type: 'string' },
    'reply-delay-ms': { type: 'string' },
    'tts-first-byte-ms': { type: 'string' },
    'tts-chunk-bytes': { type: 'string' },
    'tts-speed': { type: 'string' },
    'silence-ms': { type: 'string' },
    pause: { type: 'string' },
    'listen-only': { type: 'boolean', default: false },
    company: { type: 'string', default: 'main' },
    'log-level': { type: 'string', default: 'info' },
    'no-pin': { type: 'boolean', default: false },
    'cpu-prof': { type: 'string' },
    'node-flags': { type: 'string' },
    tls: { type: 'boolean', default: false },
    quick: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  });
  if (values.help) return null;
  if (positionals.length > 0) throw usageError(`unexpected argument ${positionals[0]}`);
  const d = DEFAULT_AUDIO_SETTINGS;
  const quick = values.quick;
  const listed =
    values.calls
      ?.split(',')
      .map((s) => numberFlag(s.trim(), 0, 'calls'))
      .filter((n) => n > 0) ?? null;
  const rounds = Math.max(1, Math.round(numberFlag(values.rounds, d.rounds, 'rounds')));
  const settings: AudioBenchSettings = {
    ...d,
    arms: armsFlag(values.arms),
    levels: listed ?? (quick ? [20, 100] : d.levels),
    climb: listed === null && !quick && rounds === 1,
    keepGoing: values['keep-going'] || rounds > 1,
    rounds,
    lateFrameTolerance: numberFlag(values['late-tolerance'], d.lateFrameTolerance, 'late-tolerance'),
    durationS: numberFlag(values.duration, quick ? 5 : d.durationS, 'duration'),
    warmupS: numberFlag(values.warmup, quick ? 2 : d.warmupS, 'warmup'),
    rampMaxMs: quick ? 1000 : d.rampMaxMs,
    replyMs: numberFlag(values['reply-ms'], d.replyMs, 'reply-ms'),
    replyDelayMs: numberFlag(values['reply-delay-ms'], d.replyDelayMs, 'reply-delay-ms'),
    ttsFirstByteMs: numberFlag(values['tts-first-byte-ms'], d.ttsFirstByteMs, 'tts-first-byte-ms'),
    ttsChunkBytes: Math.max(1, numberFlag(values['tts-chunk-bytes'], d.ttsChunkBytes, 'tts-chunk-bytes')),
    ttsSpeed: Math.max(0.1, numberFlag(values['tts-speed'], d.ttsSpeed, 'tts-speed')),
    silenceMsToStop: numberFlag(values['silence-ms'], d.silenceMsToStop, 'silence-ms'),
    pauseMs: rangeFlag(values.pause, d.pauseMs, 'pause'),
    listenOnly: values['listen-only'],
    company: companyFlag(values.company),
    logLevel: values['log-level'],
    pin: !values['no-pin'] && os.availableParallelism() >= 2,
    cpuProfDir: values['cpu-prof'] === undefined ? null : userPath(values['cpu-prof']),
    serverNodeFlags: values['node-flags']?.split(/\s+/).filter(Boolean) ?? [],
    tls: values.tls,
  };
  return { settings, json: values.json };
}

/** The CLI: returns the exit code. */
export async function benchAudio(argv: string[]): Promise<number> {
  const parsed = audioSettingsFrom(argv);
  if (parsed === null) {
    process.stdout.write(USAGE);
    return 0;
  }
  const { settings, json } = parsed;
  const result = await runAudioBench(settings, (m) => process.stderr.write(`[bench audio] ${m}\n`));
  process.stdout.write(json ? `${JSON.stringify(result, null, 2)}\n` : `${formatAudioReport(result)}\n`);
  return 0;
}

if (isMain(import.meta.url)) {
  runCli('bench audio failed', benchAudio(process.argv.slice(2)));
}
