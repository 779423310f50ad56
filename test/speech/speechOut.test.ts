import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MULAW_SILENCE, encodeMulaw } from '../../src/audio/mulaw.ts';
import { Resampler } from '../../src/audio/resampler.ts';
import type { CostEvent } from '../../src/cost/costEvent.ts';
import { AppError } from '../../src/errors.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { createOpenAiTts } from '../../src/providers/tts/openaiTts.ts';
import { TtsError, type TtsClient } from '../../src/providers/tts/ttsClient.ts';
import { createSpeechOut, type SpeechOutOptions } from '../../src/speech/speechOut.ts';
import type { SpeechBilling, SpeechOut, SpeechRequest } from '../../src/speech/types.ts';
import { startFakeAudioServer, toneSamples, type FakeAudioServer } from '../fakes/fakeAudioServer.ts';

const GREETING = 'Thanks for calling Riverside Plumbing, how can I help?';
const BILLING: SpeechBilling = { companyId: 'riverside', callId: 'call-1', callSid: 'CA123', turn: 2 };

let server: FakeAudioServer;
let events: CostEvent[];
let logLines: string[];

function speechOut(overrides: Partial<SpeechOutOptions> = {}): SpeechOut {
  const tts: TtsClient = createOpenAiTts({ apiKey: 'test-key', baseURL: server.baseURL });
  return createSpeechOut({
    tts,
    ledger: { record: (event) => events.push(event) },
    log: createLogger('debug', { write: (line: string) => logLines.push(line) }),
    ...overrides,
  });
}

function request(overrides: Partial<SpeechRequest> = {}): SpeechRequest {
  return {
    voice: 'marin',
    cacheable: false,
    signal: new AbortController().signal,
    billing: BILLING,
    ...overrides,
  };
}

async function collect(
  audio: AsyncIterable<Uint8Array>,
): Promise<{ chunks: Uint8Array[]; bytes: Uint8Array }> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of audio) chunks.push(chunk);
  const bytes = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  return { chunks, bytes };
}

/** What the whole path must produce for `samples`: one-shot resample, encode, pad to a frame. */
function expectedMulaw(samples: Int16Array): Uint8Array {
  const resampler = new Resampler();
  const body = Array.from(resampler.processSamples(samples));
  const tail = Array.from(resampler.flush());
  const pcm = Int16Array.from([...body, ...tail]);
  const out = new Uint8Array(Math.ceil(pcm.length / 160) * 160).fill(MULAW_SILENCE);
  encodeMulaw(pcm, out);
  return out;
}

beforeEach(async () => {
  events = [];
  logLines = [];
  server = await startFakeAudioServer();
});

afterEach(async () => {
  await server.close();
});

describe('createSpeechOut: live synthesis', () => {
  it('turns 24 kHz PCM into whole 160-byte μ-law frames, exactly as a one-shot conversion would', async () => {
    const tone = toneSamples(300);
    server.scriptSpeech({ type: 'pcm', samples: tone });
    const { chunks, bytes } = await collect(speechOut().frames(GREETING, request()));

    for (const chunk of chunks) expect(chunk.length % 160).toBe(0);
    expect(chunks.length).toBeGreaterThan(1);
    // 300 ms at 8 kHz is 2400 bytes; the filter's tail and the padding add less than a frame.
    expect(bytes.length).toBe(2560);
    expect(bytes).toEqual(expectedMulaw(tone));
    expect(bytes[bytes.length - 1]).toBe(MULAW_SILENCE);
    const sent = await server.speechSettled(0);
    expect(sent.body).toMatchObject({ voice: 'marin', input: GREETING, response_format: 'pcm' });
  });

  it('yields audio while the provider is still streaming, at least every ~100 ms of audio', async () => {
    // 2 s of audio in 100 ms network chunks, 30 ms apart: the whole answer takes about 0.6 s.
    server.scriptSpeech({ type: 'pcm', durationMs: 2000, chunkSizes: [4800], chunkIntervalMs: 30 });
    const firstAudio: [number, string][] = [];
    let stateAtFirstChunk: { settled: boolean; bytesSent: number; bytesPlanned: number } | null = null;
    const chunks: Uint8Array[] = [];
    for await (const chunk of speechOut().frames(
      GREETING,
      request({ onFirstAudio: (ms, source) => firstAudio.push([ms, source]) }),
    )) {
      if (stateAtFirstChunk === null) {
        const wire = server.speechRequests[0]!;
        stateAtFirstChunk = {
          settled: wire.settledAtMs !== null,
          bytesSent: wire.bytesSent,
          bytesPlanned: wire.bytesPlanned,
        };
      }
      chunks.push(chunk);
    }
    expect(stateAtFirstChunk?.settled).toBe(false);
    expect(stateAtFirstChunk!.bytesSent).toBeLessThan(stateAtFirstChunk!.bytesPlanned);
    expect(chunks.length).toBeGreaterThanOrEqual(20);
    for (const chunk of chunks) expect(chunk.length).toBeLessThanOrEqual(960);
    expect(firstAudio).toHaveLength(1);
    expect(firstAudio[0]![1]).toBe('tts');
  });

  it('records one tts cost event per synthesis, billed to the request, with the audio length', async () => {
    server.scriptSpeech({ type: 'pcm', durationMs: 300 });
    await collect(speechOut().frames(GREETING, request()));
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({
      companyId: 'riverside',
      callId: 'call-1',
      callSid: 'CA123',
      turn: 2,
      purpose: 'tts',
      action: 'completed',
      provider: 'openai',
      model: 'gpt-4o-mini-tts',
      estimated: true,
      audioMs: 300,
      inputTokens: 0,
      outputTokens: 0,
    });
    expect(events[0]!.costUsd).toBeGreaterThan(0);
    expect(events[0]!.durationMs).toBeGreaterThanOrEqual(0);
  });

  it('an abort mid-stream closes the HTTP request on the wire and ends the iteration quietly', async () => {
    server.scriptSpeech({ type: 'pcm', durationMs: 3000, chunkSizes: [960], chunkIntervalMs: 5 });
    const controller = new AbortController();
    let received = 0;
    for await (const chunk of speechOut().frames(GREETING, request({ signal: controller.signal }))) {
      received += chunk.length;
      if (received >= 800) controller.abort();
    }
    const wire = await server.speechSettled(0);
    expect(wire.clientWentAway).toBe('before-last-byte');
    expect(wire.bytesSent).toBeLessThan(wire.bytesPlanned);
    expect(received).toBeLessThan(8000);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ action: 'cancelled', purpose: 'tts', estimated: true });
  });

  it('leaving the loop early also closes the request on the wire', async () => {
    server.scriptSpeech({ type: 'pcm', durationMs: 3000, chunkSizes: [960], chunkIntervalMs: 5 });
    for await (const chunk of speechOut().frames(GREETING, request())) {
      expect(chunk.length).toBeGreaterThan(0);
      break;
    }
    expect((await server.speechSettled(0)).clientWentAway).toBe('before-last-byte');
    expect(events[0]).toMatchObject({ action: 'cancelled' });
  });

  it('surfaces a TTS HTTP error as the AppError the client raised, and records it as failed', async () => {
    server.scriptSpeech({ type: 'error', status: 500 });
    const err: unknown = await collect(speechOut().frames(GREETING, request())).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(AppError);
    expect(err).toBeInstanceOf(TtsError);
    expect(err).toMatchObject({ code: 'ERR_TTS_HTTP', status: 500, retryable: true });
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ action: 'failed', audioMs: 0 });
  });

  it('sends nothing for empty text or an already-aborted request', async () => {
    const out = speechOut();
    expect((await collect(out.frames('  \n ', request()))).chunks).toEqual([]);
    const controller = new AbortController();
    controller.abort();
    expect((await collect(out.frames(GREETING, request({ signal: controller.signal })))).chunks).toEqual([]);
    expect(server.speechRequests).toHaveLength(0);
    expect(events).toHaveLength(0);
  });

  it('refuses a TTS client that does not deliver 24 kHz', () => {
    const tts = { ...createOpenAiTts({ apiKey: 'k', baseURL: server.baseURL }), sampleRate: 16_000 };
    expect(() => speechOut({ tts })).toThrow(/16000 Hz/);
  });
});

describe('createSpeechOut: cached lines', () => {
  it('serves a cached line from memory: no second request, no second cost event, the same audio', async () => {
    const out = speechOut();
    const first = await collect(out.frames(GREETING, request({ cacheable: true })));
    const sources: [number, string][] = [];
    const second = await collect(
      out.frames(
        ` ${GREETING}  `,
        request({ cacheable: true, onFirstAudio: (ms, source) => sources.push([ms, source]) }),
      ),
    );
    expect(server.speechRequests).toHaveLength(1);
    expect(events).toHaveLength(1);
    expect(second.bytes).toEqual(first.bytes);
    for (const chunk of second.chunks) expect(chunk.length % 160).toBe(0);
    expect(sources).toHaveLength(1);
    expect(sources[0]![1]).toBe('cache');
    expect(sources[0]![0]).toBeLessThan(50);
    expect(out.cacheStats()).toEqual({ entries: 1, bytes: first.bytes.length, hits: 1, misses: 1 });
  });

  it('does not cache non-cacheable text, nor another voice', async () => {
    const out = speechOut();
    await collect(out.frames(GREETING, request()));
    await collect(out.frames(GREETING, request({ cacheable: true })));
    await collect(out.frames(GREETING, request({ cacheable: true, voice: 'cedar' })));
    expect(server.speechRequests).toHaveLength(3);
    expect(out.cacheStats()).toMatchObject({ entries: 2, hits: 0 });
  });

  it('synthesizes once for concurrent identical cacheable requests, streaming to both', async () => {
    server.scriptSpeech({ type: 'pcm', durationMs: 1000, chunkSizes: [2400], chunkIntervalMs: 10 });
    const out = speechOut();
    const sources: string[] = [];
    const onFirstAudio = (_ms: number, source: string) => sources.push(source);
    const [a, b] = await Promise.all([
      collect(out.frames(GREETING, request({ cacheable: true, onFirstAudio }))),
      collect(out.frames(GREETING, request({ cacheable: true, onFirstAudio }))),
    ]);
    expect(server.speechRequests).toHaveLength(1);
    expect(a.bytes.length).toBeGreaterThanOrEqual(8000);
    expect(b.bytes).toEqual(a.bytes);
    expect(b.chunks.length).toBeGreaterThan(1);
    expect(sources).toEqual(['tts', 'tts']);
    expect(events).toHaveLength(1);
    expect(out.cacheStats()).toMatchObject({ entries: 1, bytes: a.bytes.length });
  });

  it('an aborted cacheable line closes the request and stores nothing; the next request synthesizes again', async () => {
    server.scriptSpeech({ type: 'pcm', durationMs: 3000, chunkSizes: [960], chunkIntervalMs: 5 });
    const out = speechOut();
    const controller = new AbortController();
    for await (const chunk of out.frames(GREETING, request({ cacheable: true, signal: controller.signal }))) {
      expect(chunk.length % 160).toBe(0);
      controller.abort();
    }
    expect((await server.speechSettled(0)).clientWentAway).toBe('before-last-byte');
    expect(out.cacheStats().entries).toBe(0);
    await collect(out.frames(GREETING, request({ cacheable: true })));
    expect(server.speechRequests).toHaveLength(2);
    expect(out.cacheStats().entries).toBe(1);
    expect(events.map((e) => e.action)).toEqual(['cancelled', 'completed']);
  });

  it('one listener leaving does not stop the synthesis another is still playing', async () => {
    server.scriptSpeech({ type: 'pcm', durationMs: 1000, chunkSizes: [960], chunkIntervalMs: 5 });
    const out = speechOut();
    const controller = new AbortController();
    const staying = collect(out.frames(GREETING, request({ cacheable: true })));
    for await (const chunk of out.frames(GREETING, request({ cacheable: true, signal: controller.signal }))) {
      expect(chunk.length).toBeGreaterThan(0);
      controller.abort();
    }
    const { bytes } = await staying;
    expect(bytes.length).toBeGreaterThanOrEqual(8000);
    expect((await server.speechSettled(0)).clientWentAway).toBe('no');
    expect(out.cacheStats().entries).toBe(1);
  });

  it('a failed cacheable synthesis rejects with the AppError and caches nothing', async () => {
    server.scriptSpeech({ type: 'error', status: 429 });
    const out = speechOut();
    await expect(collect(out.frames(GREETING, request({ cacheable: true })))).rejects.toMatchObject({
      code: 'ERR_TTS_HTTP',
      status: 429,
    });
    expect(out.cacheStats().entries).toBe(0);
  });

  it('evicts the least recently used line when the cache is over its byte cap', async () => {
    const out = speechOut({ maxCacheBytes: 4000 }); // each 300 ms line is 2560 bytes
    await collect(out.frames('Line one, please hold.', request({ cacheable: true })));
    await collect(out.frames('Line two, we are open.', request({ cacheable: true })));
    expect(out.cacheStats()).toMatchObject({ entries: 1, bytes: 2560 });
    await collect(out.frames('Line two, we are open.', request({ cacheable: true })));
    expect(server.speechRequests).toHaveLength(2);
    await collect(out.frames('Line one, please hold.', request({ cacheable: true })));
    expect(server.speechRequests).toHaveLength(3);
  });
});

describe('createSpeechOut: prefill', () => {
  it('synthesizes every line not cached, once each, counts failures, and never logs the text', async () => {
    const out = speechOut();
    const lines = ['Hello and welcome to Riverside.', 'We are closed on Sundays.', 'Goodbye now.'];
    server.scriptSpeech({ type: 'pcm' }, { type: 'error', status: 500 }, { type: 'pcm' });
    const billing = { companyId: 'riverside', callId: null, callSid: null, turn: null };
    const first = await out.prefill([...lines, lines[0]!, '   '], { voice: 'marin', billing });
    expect(first).toEqual({ cached: 0, synthesized: 2, failed: 1 });
    expect(server.speechRequests).toHaveLength(3);
    expect(out.cacheStats().entries).toBe(2);
    expect(events.map((e) => e.action).sort()).toEqual(['completed', 'completed', 'failed']);
    expect(events.every((e) => e.callId === null && e.purpose === 'tts')).toBe(true);

    const second = await out.prefill(lines, { voice: 'marin', billing });
    expect(second).toEqual({ cached: 2, synthesized: 1, failed: 0 });
    expect(server.speechRequests).toHaveLength(4);

    // A prefilled line is then served from memory.
    const sources: string[] = [];
    await collect(
      out.frames(lines[1]!, request({ cacheable: true, onFirstAudio: (_, s) => sources.push(s) })),
    );
    expect(sources).toEqual(['cache']);
    expect(server.speechRequests).toHaveLength(4);

    const logs = logLines.join('\n');
    expect(logs).toContain('prefill: line not synthesized');
    expect(logs).toContain('ERR_TTS_HTTP');
    for (const line of lines) expect(logs).not.toContain(line);
  });

  it('runs at most three syntheses at a time', async () => {
    const lines = Array.from({ length: 7 }, (_, i) => `Fixed line number ${i} for the caller.`);
    for (let i = 0; i < lines.length; i++) server.scriptSpeech({ type: 'pcm', firstByteDelayMs: 40 });
    const counts = await speechOut().prefill(lines, {
      voice: 'marin',
      billing: { companyId: 'riverside', callId: null, callSid: null, turn: null },
    });
    expect(counts).toEqual({ cached: 0, synthesized: 7, failed: 0 });
    const spans = server.speechRequests.map((r) => [r.receivedAtMs, r.settledAtMs!] as const);
    const overlap = (at: number) => spans.filter(([from, to]) => from <= at && at < to).length;
    const peak = Math.max(...spans.map(([from]) => overlap(from)));
    expect(peak).toBe(3);
  });

  it('a call asking for a line being prefilled listens to that synthesis instead of starting another', async () => {
    server.scriptSpeech({ type: 'pcm', durationMs: 1000, chunkSizes: [2400], chunkIntervalMs: 10 });
    const out = speechOut();
    const prefill = out.prefill([GREETING], {
      voice: 'marin',
      billing: { companyId: 'riverside', callId: null, callSid: null, turn: null },
    });
    await new Promise((r) => setTimeout(r, 30));
    const sources: string[] = [];
    const { bytes } = await collect(
      out.frames(GREETING, request({ cacheable: true, onFirstAudio: (_, source) => sources.push(source) })),
    );
    expect(sources).toEqual(['tts']); // joined the synthesis in progress, not served from memory
    expect(await prefill).toEqual({ cached: 0, synthesized: 1, failed: 0 });
    expect(bytes.length).toBeGreaterThanOrEqual(8000);
    expect(server.speechRequests).toHaveLength(1);
    expect(events).toHaveLength(1);
    expect(events[0]!.callId).toBeNull(); // billed to the prefill that started it
  });

  it('never rejects, even for lines that are not text', async () => {
    const out = speechOut();
    const counts = await out.prefill([42 as unknown as string, 'A fine line to say.'], {
      voice: 'marin',
      billing: { companyId: 'riverside', callId: null, callSid: null, turn: null },
    });
    expect(counts).toEqual({ cached: 0, synthesized: 1, failed: 1 });
  });
});
