import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { waitFor } from '../support/waitFor.ts';
import {
  createHttpTranscriptionStt,
  type HttpTranscriptionSttOptions,
  type SttVad,
} from '../../src/providers/stt/httpTranscriptionStt.ts';
import { mulawToWav } from '../../src/providers/stt/mulawWav.ts';
import type { SttCallbacks, SttError, SttSession, SttUsage } from '../../src/providers/stt/sttSession.ts';
import { sttCostUsd } from '../../src/providers/stt/sttPrices.ts';
import { parseWav, startFakeAudioServer, type FakeAudioServer } from '../fakes/fakeAudioServer.ts';

const FRAME = 160;

// An independent G.711 μ-law decoder (the DEC_BASE formulation), to check the adapter's WAV.
const DEC_BASE = [0, 132, 396, 924, 1980, 4092, 8316, 16764];
function decodeMulaw(byte: number): number {
  const u = ~byte & 0xff;
  const e = (u >> 4) & 7;
  const s = DEC_BASE[e]! + ((u & 0x0f) << (e + 3));
  return u & 0x80 ? -s || 0 : s;
}

/** A loud frame whose bytes vary, so sample-by-sample checks mean something. */
function loudFrame(seed: number): Uint8Array {
  return new Uint8Array(FRAME).map((_, i) => 0x10 + ((seed * 7 + i) % 0x20));
}
const silence = () => new Uint8Array(FRAME).fill(0xff);

/** A test VAD: starts on a loud frame, stops after `hangover` quiet frames. */
function energyVad(hangover = 5): SttVad {
  let speaking = false;
  let quiet = 0;
  return {
    push(frame) {
      const isLoud = frame.some((b) => ((~b >> 4) & 7) >= 3);
      if (!speaking && isLoud) {
        speaking = true;
        quiet = 0;
        return 'speech-start';
      }
      if (speaking) {
        quiet = isLoud ? 0 : quiet + 1;
        if (quiet >= hangover) {
          speaking = false;
          return 'speech-stop';
        }
      }
      return null;
    },
  };
}

function recorder(): { callbacks: SttCallbacks; log: string[]; errors: SttError[] } {
  const log: string[] = [];
  const errors: SttError[] = [];
  return {
    log,
    errors,
    callbacks: {
      onSpeechStarted: () => log.push('started'),
      onSpeechStopped: (reason) => log.push(`stopped:${reason}`),
      onPartial: (text) => log.push(`partial:${text}`),
      onFinal: (text) => log.push(`final:${text}`),
      onError: (err) => {
        log.push(`error:${err.code}`);
        errors.push(err);
      },
    },
  };
}

/** Sends `before` quiet frames, `speech` loud frames, then `after` quiet frames; returns every frame sent. */
function utter(session: SttSession, speech: number, before = 3, after = 6, asBase64 = false): Uint8Array[] {
  const frames = [
    ...Array.from({ length: before }, silence),
    ...Array.from({ length: speech }, (_, i) => loudFrame(i)),
    ...Array.from({ length: after }, silence),
  ];
  for (const f of frames) session.sendMulaw(asBase64 ? Buffer.from(f).toString('base64') : f);
  return frames;
}

let server: FakeAudioServer;
let session: SttSession | null = null;
const usage: SttUsage[] = [];

function open(callbacks: SttCallbacks, overrides: Partial<HttpTranscriptionSttOptions> = {}): SttSession {
  const stt = createHttpTranscriptionStt({
    apiKey: 'test-key',
    baseURL: server.baseURL,
    language: 'en',
    createVad: () => energyVad(),
    prerollFrames: 2,
    onUsage: (u) => usage.push(u),
    ...overrides,
  });
  session = stt.openSttSession(callbacks);
  return session;
}

beforeEach(async () => {
  usage.length = 0;
  server = await startFakeAudioServer();
});

afterEach(async () => {
  await session?.close();
  session = null;
  await server.close();
});

describe('mulawToWav', () => {
  it('writes a valid 8 kHz mono PCM16 WAV with every code decoded', () => {
    const all = new Uint8Array(256).map((_, i) => i);
    const wav = parseWav(mulawToWav(all));
    expect(wav).toMatchObject({ formatCode: 1, channels: 1, sampleRate: 8000, bitsPerSample: 16 });
    expect(Array.from(wav!.samples)).toEqual(Array.from(all, decodeMulaw));
    expect(wav!.samples[0xff]).toBe(0);
    expect(wav!.samples[0x80]).toBe(32124);
    expect(wav!.samples[0x00]).toBe(-32124);
  });
});

describe('createHttpTranscriptionStt', () => {
  it('segments by the VAD, uploads a valid WAV of the utterance (with preroll) and emits the final text', async () => {
    server.scriptTranscriptions({ type: 'text', text: ' My sink is leaking. ' });
    const { callbacks, log } = recorder();
    const s = open(callbacks);

    const frames = utter(s, 20, 3, 6, true);
    await waitFor(() => log.some((l) => l.startsWith('final:')));

    expect(log).toEqual(['started', 'stopped:vad', 'final:My sink is leaking.']);
    const sent = await server.transcriptionSettled(0);
    expect(server.transcriptionRequests).toHaveLength(1);
    expect(sent.headers.authorization).toBe('Bearer test-key');
    expect(sent.fields).toMatchObject({
      model: 'gpt-4o-mini-transcribe',
      language: 'en',
      response_format: 'json',
    });
    expect(sent.file?.name).toBe('utterance-1.wav');
    expect(sent.file?.type).toBe('audio/wav');
    expect(sent.wav).toMatchObject({ formatCode: 1, channels: 1, sampleRate: 8000, bitsPerSample: 16 });

    // Two preroll frames (the quiet ones just before the start edge), the speech, and the quiet
    // frames up to and including the one on which the VAD said stop (the 5th).
    const expected = frames.slice(1, 3 + 20 + 5);
    const expectedSamples = expected.flatMap((f) => Array.from(f, decodeMulaw));
    expect(Array.from(sent.wav!.samples)).toEqual(expectedSamples);

    const seconds = (expected.length * FRAME) / 8000;
    expect(usage).toHaveLength(1);
    expect(usage[0]).toMatchObject({ model: 'gpt-4o-mini-transcribe', reported: { type: 'duration' } });
    expect(usage[0]?.audioSeconds).toBeCloseTo(seconds);
    expect(usage[0]?.costUsd).toBeCloseTo(sttCostUsd('gpt-4o-mini-transcribe', seconds)!);
    expect(s.stats()).toMatchObject({
      framesSent: expected.length,
      bytesSent: expected.length * FRAME,
      finals: 1,
    });
  });

  it('copies raw frames, so a caller that reuses one buffer for every frame uploads the right audio', async () => {
    server.scriptTranscriptions({ type: 'text', text: 'reused' });
    const { callbacks, log } = recorder();
    const s = open(callbacks);
    const frames = [
      ...Array.from({ length: 3 }, silence),
      ...Array.from({ length: 20 }, (_, i) => loudFrame(i)),
      ...Array.from({ length: 6 }, silence),
    ];
    // As the media connection does: one decode buffer, overwritten frame after frame.
    const reused = new Uint8Array(FRAME);
    for (const f of frames) {
      reused.set(f);
      s.sendMulaw(reused);
    }
    await waitFor(() => log.some((l) => l.startsWith('final:')));
    const sent = await server.transcriptionSettled(0);
    const expectedSamples = frames.slice(1, 3 + 20 + 5).flatMap((f) => Array.from(f, decodeMulaw));
    expect(Array.from(sent.wav!.samples)).toEqual(expectedSamples);
  });

  it('delivers finals in utterance order even when a later upload answers first', async () => {
    server.scriptTranscriptions(
      { type: 'text', text: 'first', delayMs: 150 },
      { type: 'text', text: 'second' },
    );
    const { callbacks, log } = recorder();
    const s = open(callbacks);
    utter(s, 15);
    utter(s, 15);
    await waitFor(() => log.filter((l) => l.startsWith('final:')).length === 2);
    expect(log.filter((l) => l.startsWith('final:'))).toEqual(['final:first', 'final:second']);
    expect(server.transcriptionRequests.map((r) => r.file?.name)).toEqual([
      'utterance-1.wav',
      'utterance-2.wav',
    ]);
  });

  it('does not upload speech shorter than minUtteranceMs and emits an empty final', async () => {
    const { callbacks, log } = recorder();
    const s = open(callbacks, { minUtteranceMs: 500 });
    // 2 loud + 5 quiet frames = 140 ms of "speech".
    utter(s, 2);
    await waitFor(() => log.includes('final:'));
    expect(server.transcriptionRequests).toHaveLength(0);
    expect(usage).toHaveLength(0);
  });

  it('uploads long speech in pieces and joins their texts into one final', async () => {
    server.scriptTranscriptions({ type: 'text', text: 'part one' }, { type: 'text', text: 'part two' });
    const { callbacks, log } = recorder();
    const s = open(callbacks, { maxUtteranceSeconds: 0.4 });
    utter(s, 25); // 2 preroll + 25 + 5 = 32 frames = 640 ms: one 400 ms piece and the rest.
    await waitFor(() => log.some((l) => l.startsWith('final:')));
    expect(log).toEqual(['started', 'stopped:vad', 'final:part one part two']);
    expect(server.transcriptionRequests.map((r) => r.wav?.samples.length)).toEqual([20 * FRAME, 12 * FRAME]);
  });

  it('reports an HTTP error as a non-fatal SttError and carries on with the next utterance', async () => {
    server.scriptTranscriptions(
      { type: 'error', status: 500, message: 'overloaded' },
      { type: 'text', text: 'ok now' },
    );
    const { callbacks, log, errors } = recorder();
    const s = open(callbacks);
    utter(s, 10);
    await waitFor(() => errors.length === 1);
    expect(errors[0]).toMatchObject({ code: 'ERR_STT_HTTP', status: 500, fatal: false, retryable: true });
    utter(s, 10);
    await waitFor(() => log.includes('final:ok now'));
    expect(server.transcriptionRequests).toHaveLength(2);
  });

  it('sends a prompt with quotes, line breaks and non-ASCII text intact', async () => {
    const prompt = 'Riverside "Plumbing" & Drain\r\nZürich, Straße — São Paulo';
    const { callbacks, log } = recorder();
    const s = open(callbacks, { prompt });
    utter(s, 10);
    await waitFor(() => log.some((l) => l.startsWith('final:')));
    expect((await server.transcriptionSettled(0)).fields.prompt).toBe(prompt);
  });

  it("quotes the provider's message with the API key masked", async () => {
    server.scriptTranscriptions({
      type: 'error',
      status: 401,
      message: 'Incorrect API key provided: test-key',
    });
    const { callbacks, errors } = recorder();
    const s = open(callbacks);
    utter(s, 10);
    await waitFor(() => errors.length === 1);
    expect(errors[0]).toMatchObject({ code: 'ERR_STT_HTTP', status: 401, retryable: false });
    expect(errors[0]!.message).toContain('Incorrect API key provided');
    expect(errors[0]!.message).not.toContain('test-key');
  });

  it('an answer that is not JSON is a non-fatal ERR_STT_BAD_RESPONSE', async () => {
    server.scriptTranscriptions({ type: 'raw', body: '<html>502 Bad Gateway</html>' });
    const { callbacks, errors } = recorder();
    const s = open(callbacks);
    utter(s, 10);
    await waitFor(() => errors.length === 1);
    expect(errors[0]).toMatchObject({ code: 'ERR_STT_BAD_RESPONSE', fatal: false });
  });

  it('a refused connection is a non-fatal, retryable ERR_STT_CONNECTION', async () => {
    const baseURL = server.baseURL;
    await server.close();
    const { callbacks, errors } = recorder();
    const s = open(callbacks, { baseURL });
    utter(s, 10);
    await waitFor(() => errors.length === 1);
    expect(errors[0]).toMatchObject({ code: 'ERR_STT_CONNECTION', fatal: false, retryable: true });
  });

  it('times out an upload that never answers', async () => {
    server.scriptTranscriptions({ type: 'hang' });
    const { callbacks, errors } = recorder();
    const s = open(callbacks, { timeoutMs: 100 });
    utter(s, 10);
    await waitFor(() => errors.length === 1);
    expect(errors[0]).toMatchObject({ code: 'ERR_STT_TIMEOUT', fatal: false, retryable: true });
    expect((await server.transcriptionSettled(0)).clientWentAway).toBe(true);
  });

  it('close aborts an upload in flight on the wire and emits nothing after', async () => {
    server.scriptTranscriptions({ type: 'hang' });
    const { callbacks, log } = recorder();
    const s = open(callbacks);
    utter(s, 10);
    await waitFor(() => server.transcriptionRequests.length === 1);
    await s.close();
    const sent = await server.transcriptionSettled(0);
    expect(sent.clientWentAway).toBe(true);
    expect(log).toEqual(['started', 'stopped:vad']);
    s.sendMulaw(silence());
    expect(s.stats()).toMatchObject({ state: 'closed', framesDropped: 1 });
  });

  it('uses an injected WAV encoder', async () => {
    const { callbacks, log } = recorder();
    const seen: number[] = [];
    const s = open(callbacks, {
      encodeWav: (mulaw) => {
        seen.push(mulaw.length);
        return mulawToWav(mulaw);
      },
    });
    utter(s, 10);
    await waitFor(() => log.some((l) => l.startsWith('final:')));
    expect(seen).toEqual([(2 + 10 + 5) * FRAME]);
  });
});
