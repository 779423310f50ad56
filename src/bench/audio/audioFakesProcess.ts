/**
 * The audio bench's fake providers, in their own process so their work is not counted in the
 * server's (pinned with the callers). Two modes, from BENCH_AUDIO_FAKES_CONFIG:
 *
 * - `relay`: the bare relay's speech-to-speech upstream (fakeVoiceUpstream.ts); ready URL = its
 *   WebSocket URL.
 * - `engine`: the test fakes of OpenAI realtime transcription (energy VAD, scripted transcripts)
 *   and of `/v1/audio/speech` (voice-like PCM after a fixed first-byte latency), and the bench's
 *   fake LLM (another process, `llmBaseURL`), all behind one base URL (providerRouter.ts); ready
 *   URL = that base URL. The test fakes record every message for assertions; here the records are
 *   emptied every second so that their memory stays flat. Importing test fakes is acceptable in the
 *   bench, a dev tool, and nowhere else.
 *
 * With `tls` (PEM files), what the server under test connects to is served over TLS: the relay's
 * upstream, or the engine's provider router (which talks plain HTTP to the fakes behind it).
 */
import { readFileSync } from 'node:fs';
import { startFakeAudioServer } from '../../../test/fakes/fakeAudioServer.ts';
import type { FakeSpeechReply } from '../../../test/fakes/fakeAudioServer.ts';
import { startFakeRealtimeServer } from '../../../test/fakes/fakeRealtimeServer.ts';
import { serveFakeChild } from '../protocol.ts';
import { startFakeVoiceUpstream } from './fakeVoiceUpstream.ts';
import type { BenchTls } from './benchTls.ts';
import { startProviderRouter } from './providerRouter.ts';
import { voiceSamples } from './syntheticVoice.ts';

/** Configuration handed to the fakes child. */
export type AudioFakesConfig =
  | {
      readonly mode: 'relay';
      readonly tls: BenchTls | null;
      readonly silenceMsToStop: number;
      readonly replyDelayMs: number;
      readonly replyMs: number;
    }
  | {
      readonly mode: 'engine';
      readonly tls: BenchTls | null;
      readonly llmBaseURL: string;
      readonly silenceMsToStop: number;
      /** What the fake transcription hears, utterance after utterance across calls (cycled). */
      readonly transcripts: readonly string[];
      readonly ttsFirstByteMs: number;
      readonly ttsChunkBytes: number;
      /** Audio per character of the text to speak. */
      readonly ttsMsPerChar: number;
      readonly ttsSpeed: number;
    };

interface Fakes {
  readonly url: string;
  /** Work items since the last call: appends received (and speech requests). */
  takeCount(): number;
  close(): Promise<void>;
}

function readTls(tls: BenchTls | null): { tls: { cert: string; key: string } } | Record<string, never> {
  return tls === null
    ? {}
    : { tls: { cert: readFileSync(tls.certFile, 'utf8'), key: readFileSync(tls.keyFile, 'utf8') } };
}

async function relayFakes(config: Extract<AudioFakesConfig, { mode: 'relay' }>): Promise<Fakes> {
  const upstream = await startFakeVoiceUpstream({
    silenceMsToStop: config.silenceMsToStop,
    replyDelayMs: config.replyDelayMs,
    replyMs: config.replyMs,
    ...readTls(config.tls),
  });
  let counted = 0;
  return {
    url: upstream.url,
    takeCount: () => {
      const n = upstream.appends - counted;
      counted = upstream.appends;
      return n;
    },
    close: () => upstream.close(),
  };
}

async function engineFakes(config: Extract<AudioFakesConfig, { mode: 'engine' }>): Promise<Fakes> {
  const realtime = await startFakeRealtimeServer({
    defaultTranscript: config.transcripts[0] ?? 'hello there',
    silenceMsToStop: config.silenceMsToStop,
  });
  // The fake takes transcripts from one queue shared by every connection: enough for any run.
  const batch = Array.from({ length: 1000 }, (_, i) => config.transcripts[i % config.transcripts.length]!);
  for (let i = 0; i < 100; i++) realtime.script(...batch);
  // Audio in proportion to the text, so a reply spoken sentence by sentence carries as much audio as
  // one spoken whole. Samples are made once per length (to 20 ms) and shared.
  const samplesByMs = new Map<number, Int16Array>();
  const speechFor = (body: Readonly<Record<string, unknown>>): FakeSpeechReply => {
    const text = typeof body['input'] === 'string' ? body['input'] : '';
    const ms = Math.max(20, Math.round((text.length * config.ttsMsPerChar) / 20) * 20);
    let samples = samplesByMs.get(ms);
    if (samples === undefined) {
      samples = voiceSamples(ms, 24_000, 3);
      samplesByMs.set(ms, samples);
    }
    return {
      type: 'pcm',
      samples,
      firstByteDelayMs: config.ttsFirstByteMs,
      chunkSizes: [config.ttsChunkBytes],
      // 24 kHz PCM16: 48 bytes per millisecond of audio.
      chunkIntervalMs: config.ttsChunkBytes / 48 / config.ttsSpeed,
    };
  };
  const audio = await startFakeAudioServer({ defaultSpeech: speechFor });
  const router = await startProviderRouter({
    realtime: realtime.baseURL,
    audio: audio.baseURL,
    other: config.llmBaseURL,
    ...readTls(config.tls),
  });
  let count = 0;
  const trim = () => {
    const connections = realtime.connections as unknown as {
      appends: string[];
      messages: unknown[];
      closed: unknown;
    }[];
    for (const c of connections) {
      count += c.appends.length;
      c.appends.length = 0;
      c.messages.length = 0;
    }
    for (let i = connections.length - 1; i >= 0; i--)
      if (connections[i]!.closed !== null) connections.splice(i, 1);
    const speech = audio.speechRequests as unknown[];
    count += speech.length;
    speech.length = 0;
  };
  const timer = setInterval(trim, 1000);
  timer.unref();
  return {
    url: router.baseURL,
    takeCount: () => {
      trim();
      const n = count;
      count = 0;
      return n;
    },
    close: async () => {
      clearInterval(timer);
      await router.close();
      await realtime.close();
      await audio.close();
    },
  };
}

const config = JSON.parse(process.env['BENCH_AUDIO_FAKES_CONFIG'] ?? '{}') as AudioFakesConfig;
const fakes = config.mode === 'engine' ? await engineFakes(config) : await relayFakes(config);

serveFakeChild(fakes);
