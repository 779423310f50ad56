import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { waitFor } from '../support/waitFor.ts';
import {
  createOpenAiRealtimeStt,
  realtimeTranscriptionUrl,
  type OpenAiRealtimeSttOptions,
} from '../../src/providers/stt/openaiRealtimeStt.ts';
import type { SttCallbacks, SttError, SttSession, SttUsage } from '../../src/providers/stt/sttSession.ts';
import { sttCostUsd } from '../../src/providers/stt/sttPrices.ts';
import { heldBatches, openBatchers } from '../../src/providers/stt/frameBatcher.ts';
import { startFakeRealtimeServer, type FakeRealtimeServer } from '../fakes/fakeRealtimeServer.ts';

// 20 ms of 8 kHz μ-law, as Twilio sends it. 0xFF is silence; 0x10 decodes to about -5000 (loud).
const FRAME = 160;
const silence = () => new Uint8Array(FRAME).fill(0xff);
const loud = () => new Uint8Array(FRAME).fill(0x10);
const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64');

interface Recorded {
  readonly log: string[];
  readonly errors: SttError[];
  readonly usage: SttUsage[];
  readonly finals: { text: string; utteranceId: string; latencyMs: number | null }[];
}

function recorder(): { callbacks: SttCallbacks; seen: Recorded } {
  const seen: Recorded = { log: [], errors: [], usage: [], finals: [] };
  return {
    seen,
    callbacks: {
      onSpeechStarted: () => seen.log.push('started'),
      onSpeechStopped: (reason) => seen.log.push(`stopped:${reason}`),
      onPartial: (text) => seen.log.push(`partial:${text}`),
      onFinal: (text, info) => {
        seen.log.push(`final:${text}`);
        seen.finals.push({ text, ...info });
      },
      onError: (err) => {
        seen.log.push(`error:${err.code}${err.fatal ? ':fatal' : ''}`);
        seen.errors.push(err);
      },
    },
  };
}

/** An utterance: `speechMs` of loud audio then 300 ms of silence (the fake ends speech after 200). */
function speak(session: SttSession, speechMs = 300): void {
  for (let i = 0; i < speechMs / 20; i++) session.sendMulaw(b64(loud()));
  for (let i = 0; i < 15; i++) session.sendMulaw(b64(silence()));
}

let server: FakeRealtimeServer;
let session: SttSession | null = null;
const usage: SttUsage[] = [];

function open(callbacks: SttCallbacks, overrides: Partial<OpenAiRealtimeSttOptions> = {}): SttSession {
  const stt = createOpenAiRealtimeStt({
    apiKey: 'test-key',
    baseURL: server.baseURL,
    language: 'en',
    // One append per frame, so the tests below can follow each frame; batching has its own tests.
    framesPerAppend: 1,
    reconnect: { initialDelayMs: 20, maxDelayMs: 50, maxAttempts: 3 },
    onUsage: (u) => usage.push(u),
    ...overrides,
  });
  session = stt.openSttSession(callbacks);
  return session;
}

beforeEach(async () => {
  usage.length = 0;
  server = await startFakeRealtimeServer({ apiKey: 'test-key' });
});

afterEach(async () => {
  await session?.close();
  session = null;
  await server.close();
});

describe('realtimeTranscriptionUrl', () => {
  it('builds the GA transcription URL from an OpenAI base URL', () => {
    expect(realtimeTranscriptionUrl('https://api.openai.com/v1').href).toBe(
      'wss://api.openai.com/v1/realtime?intent=transcription',
    );
    expect(realtimeTranscriptionUrl('http://127.0.0.1:9000/v1/').href).toBe(
      'ws://127.0.0.1:9000/v1/realtime?intent=transcription',
    );
  });
});

describe('createOpenAiRealtimeStt', () => {
  it('opens a GA transcription session: intent URL, bearer auth, no beta header, session.update first', async () => {
    const { callbacks } = recorder();
    open(callbacks, { prompt: 'Riverside Plumbing', vad: { silenceDurationMs: 400 } });
    const connection = await server.connection(0);
    await waitFor(() => connection.messages.length >= 1);

    expect(connection.url).toBe('/v1/realtime?intent=transcription');
    expect(connection.headers.authorization).toBe('Bearer test-key');
    expect(connection.headers['openai-beta']).toBeUndefined();
    expect(connection.messages[0]).toEqual({
      type: 'session.update',
      session: {
        type: 'transcription',
        audio: {
          input: {
            format: { type: 'audio/pcmu' },
            noise_reduction: { type: 'near_field' },
            transcription: { model: 'gpt-4o-transcribe', language: 'en', prompt: 'Riverside Plumbing' },
            turn_detection: {
              type: 'server_vad',
              threshold: 0.5,
              prefix_padding_ms: 300,
              silence_duration_ms: 400,
            },
          },
        },
      },
    });
    await waitFor(() => session!.stats().state === 'open');
  });

  it('sends masked frames with a zero key, so the payload crosses the wire as written', async () => {
    // A ws server whose socket is also read raw: the bytes as they crossed the wire, before ws
    // unmasks them (the client sends nothing before the upgrade's answer, so no byte is missed).
    const received: Buffer[] = [];
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: false });
    wss.on('connection', (_ws, req) => req.socket.on('data', (chunk: Buffer) => received.push(chunk)));
    await new Promise<void>((resolve) => wss.once('listening', resolve));
    try {
      const { port } = wss.address() as AddressInfo;
      const { callbacks } = recorder();
      open(callbacks, { baseURL: `http://127.0.0.1:${port}/v1` });
      await waitFor(() => Buffer.concat(received).length >= 8);
      const bytes = Buffer.concat(received);
      expect(bytes[0]).toBe(0x81); // FIN, text
      expect(bytes[1]! & 0x80).toBe(0x80); // masked, as a client must
      expect(bytes[1]! & 0x7f).toBe(126); // 16-bit length follows
      const length = bytes.readUInt16BE(2);
      expect([...bytes.subarray(4, 8)]).toEqual([0, 0, 0, 0]);
      await waitFor(() => Buffer.concat(received).length >= 8 + length);
      const payload = Buffer.concat(received)
        .subarray(8, 8 + length)
        .toString();
      expect(JSON.parse(payload)).toMatchObject({
        type: 'session.update',
        session: { type: 'transcription' },
      });
    } finally {
      await session?.close();
      session = null;
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    }
  });

  it('forwards Twilio payloads untouched and in order, buffering those sent before the socket opened', async () => {
    const { callbacks, seen } = recorder();
    const s = open(callbacks);
    // Sent at once: the socket is still connecting, so these wait in the buffer.
    const payloads = Array.from({ length: 5 }, (_, i) =>
      b64(new Uint8Array(FRAME).map((_, j) => (i * 31 + j) & 0xff)),
    );
    for (const p of payloads.slice(0, 3)) s.sendMulaw(p);
    const connection = await server.connection(0);
    await waitFor(() => s.stats().state === 'open');
    for (const p of payloads.slice(3)) s.sendMulaw(p);
    // Raw bytes are base64-encoded by the adapter.
    const raw = new Uint8Array([1, 2, 3, 250]);
    s.sendMulaw(raw);

    await waitFor(() => connection.appends.length === 6);
    expect(connection.appends).toEqual([...payloads, b64(raw)]);
    expect(connection.messages[0]?.type).toBe('session.update');
    expect(connection.messages.slice(1).every((m) => m.type === 'input_audio_buffer.append')).toBe(true);
    expect(s.stats()).toMatchObject({
      framesSent: 6,
      framesDropped: 0,
      bytesSent: 5 * FRAME + 4,
      reconnects: 0,
    });
    expect(s.stats().audioSecondsSent).toBeCloseTo((5 * FRAME + 4) / 8000);
    expect(seen.errors).toEqual([]);
  });

  it('maps speech, partial and completed events to callbacks and reports usage per final', async () => {
    server.script('I need a plumber tomorrow.');
    const { callbacks, seen } = recorder();
    const s = open(callbacks);
    await waitFor(() => s.stats().state === 'open');

    speak(s, 400);
    await waitFor(() => seen.finals.length === 1);

    expect(seen.log).toEqual([
      'started',
      'stopped:vad',
      'partial:I',
      'partial:I need',
      'partial:I need a',
      'partial:I need a plumber',
      'partial:I need a plumber tomorrow.',
      'final:I need a plumber tomorrow.',
    ]);
    expect(seen.finals[0]?.utteranceId).toMatch(/^item_/);
    expect(seen.finals[0]?.latencyMs).toBeGreaterThanOrEqual(0);
    expect(s.stats().finals).toBe(1);

    const seconds = (20 * FRAME + 15 * FRAME) / 8000;
    expect(usage).toHaveLength(1);
    expect(usage[0]).toMatchObject({
      provider: 'openai',
      model: 'gpt-4o-transcribe',
      reported: { type: 'duration' },
    });
    expect(usage[0]?.audioSeconds).toBeCloseTo(seconds);
    expect(usage[0]?.costUsd).toBeCloseTo(sttCostUsd('gpt-4o-transcribe', seconds)!);
  });

  it('reports a failed transcription and provider error events without ending the session', async () => {
    server.script({ fail: 'could not hear' }, 'second try');
    const { callbacks, seen } = recorder();
    const s = open(callbacks);
    const connection = await server.connection(0);
    await waitFor(() => s.stats().state === 'open');

    speak(s);
    await waitFor(() => seen.errors.length === 1);
    expect(seen.errors[0]).toMatchObject({ code: 'ERR_STT_TRANSCRIPTION_FAILED', fatal: false });
    expect(seen.errors[0]?.message).toContain('audio_unintelligible');

    connection.send({
      type: 'error',
      error: { type: 'invalid_request_error', code: 'bad_thing', message: 'no' },
    });
    await waitFor(() => seen.errors.length === 2);
    expect(seen.errors[1]).toMatchObject({ code: 'ERR_STT_PROVIDER', fatal: false });

    speak(s);
    await waitFor(() => seen.finals.length === 1);
    expect(seen.finals[0]?.text).toBe('second try');
    expect(s.stats().state).toBe('open');
  });

  it('reconnects after a drop: ends the utterance in flight, buffers a bounded gap, configures the new socket first', async () => {
    const { callbacks, seen } = recorder();
    const s = open(callbacks, { maxBufferedFrames: 4 });
    const first = await server.connection(0);
    await waitFor(() => s.stats().state === 'open');

    for (let i = 0; i < 5; i++) s.sendMulaw(b64(loud()));
    await waitFor(() => seen.log.includes('started'));
    first.drop();
    await waitFor(() => s.stats().state === 'reconnecting');
    expect(seen.log).toContain('stopped:disconnected');
    expect(seen.errors[0]).toMatchObject({ code: 'ERR_STT_CONNECTION', fatal: false, retryable: true });

    // Six frames during the gap: the oldest two overflow the four-frame buffer.
    const gap = Array.from({ length: 6 }, (_, i) => b64(new Uint8Array(FRAME).fill(0xf0 + i)));
    for (const p of gap) s.sendMulaw(p);
    const second = await server.connection(1);
    await waitFor(() => s.stats().state === 'open' && second.appends.length === 4);

    expect(second.messages[0]?.type).toBe('session.update');
    expect(second.appends).toEqual(gap.slice(2));
    expect(s.stats()).toMatchObject({ reconnects: 1, framesDropped: 2, framesSent: 5 + 4 });
    expect(first.closed?.by).toBe('server');

    // The call goes on over the new socket.
    server.script('still here');
    speak(s);
    await waitFor(() => seen.finals.length === 1);
    expect(seen.finals[0]?.text).toBe('still here');
  });

  it('gives up with a fatal error when the upgrade is refused with 401', async () => {
    server.refuseUpgrades(401, 10);
    const { callbacks, seen } = recorder();
    const s = open(callbacks);
    await waitFor(() => s.stats().state === 'failed');
    expect(seen.errors).toHaveLength(1);
    expect(seen.errors[0]).toMatchObject({ code: 'ERR_STT_HTTP', status: 401, fatal: true });
    expect(server.upgradeAttempts).toBe(1);
    s.sendMulaw(b64(loud()));
    expect(s.stats().framesDropped).toBe(1);
  });

  it('retries a refused upgrade (503) with backoff, then fails for good after maxAttempts', async () => {
    server.refuseUpgrades(503, 100);
    const { callbacks, seen } = recorder();
    const s = open(callbacks);
    await waitFor(() => s.stats().state === 'failed');
    // The first attempt plus three retries.
    expect(server.upgradeAttempts).toBe(4);
    expect(seen.errors.filter((e) => !e.fatal)).toHaveLength(3);
    expect(seen.errors.at(-1)).toMatchObject({ code: 'ERR_STT_CONNECTION', fatal: true });
  });

  it('recovers when a refused upgrade is followed by a good one', async () => {
    server.refuseUpgrades(503, 2);
    const { callbacks, seen } = recorder();
    const s = open(callbacks);
    await waitFor(() => s.stats().state === 'open');
    expect(server.upgradeAttempts).toBe(3);
    expect(seen.errors.map((e) => e.code)).toEqual(['ERR_STT_CONNECTION', 'ERR_STT_CONNECTION']);
    // Any successful open after a failed attempt counts.
    expect(s.stats().reconnects).toBe(1);
  });

  it('closes cleanly: close frame 1000, remaining usage reported, later frames dropped, idempotent', async () => {
    const { callbacks, seen } = recorder();
    const s = open(callbacks);
    const connection = await server.connection(0);
    await waitFor(() => s.stats().state === 'open');
    for (let i = 0; i < 10; i++) s.sendMulaw(b64(silence()));
    await waitFor(() => connection.appends.length === 10);

    await s.close();
    await s.close();
    await waitFor(() => connection.closed !== null);
    expect(connection.closed).toEqual({ by: 'client', code: 1000 });
    expect(s.stats().state).toBe('closed');
    expect(usage).toHaveLength(1);
    expect(usage[0]?.audioSeconds).toBeCloseTo((10 * FRAME) / 8000);
    expect(usage[0]?.reported).toBeNull();

    s.sendMulaw(b64(silence()));
    expect(s.stats().framesDropped).toBe(1);
    expect(seen.errors).toEqual([]);
    expect(server.connections).toHaveLength(1);
  });

  it('survives a callback that throws, reporting it through onError', async () => {
    const { callbacks, seen } = recorder();
    const s = open({
      ...callbacks,
      onSpeechStarted: () => {
        throw new Error('boom');
      },
    });
    await waitFor(() => s.stats().state === 'open');
    speak(s);
    await waitFor(() => seen.finals.length === 1);
    expect(seen.errors[0]).toMatchObject({ code: 'ERR_STT_CALLBACK_FAILED', fatal: false });
  });

  it('drops a string that is not base64 instead of sending broken JSON', async () => {
    const { callbacks } = recorder();
    const s = open(callbacks);
    await waitFor(() => s.stats().state === 'open');
    s.sendMulaw('abc"}');
    expect(s.stats()).toMatchObject({ framesDropped: 1, framesSent: 0 });
  });
});

describe('batching frames into appends', () => {
  const unb64 = (s: string) => new Uint8Array(Buffer.from(s, 'base64'));
  const joined = (parts: Uint8Array[]) => new Uint8Array(Buffer.concat(parts));

  it('sends two frames per append by default, bytes untouched and in order, and releases a lone frame soon', async () => {
    const { callbacks } = recorder();
    const s = open(callbacks, { framesPerAppend: 2 }); // the default
    const conn = await server.connection(0);
    await waitFor(() => s.stats().state === 'open');
    const frames = [1, 2, 3, 4, 5].map((n) => new Uint8Array(FRAME).map((_, j) => (n * 37 + j) & 0xff));
    // Raw bytes and base64 strings mix; the adapter copies bytes, so reusing the buffer is safe.
    const reused = new Uint8Array(FRAME);
    reused.set(frames[0]!);
    s.sendMulaw(reused);
    reused.fill(0);
    s.sendMulaw(b64(frames[1]!));
    s.sendMulaw(frames[2]!);
    s.sendMulaw(frames[3]!);
    await waitFor(() => conn.appends.length === 2);
    expect(conn.appends.map(unb64)).toEqual([joined(frames.slice(0, 2)), joined(frames.slice(2, 4))]);
    // A fifth frame with nothing after it: held at most ~30 ms, then sent alone.
    s.sendMulaw(frames[4]!);
    const sentAt = performance.now();
    await waitFor(() => conn.appends.length === 3, 1000);
    expect(performance.now() - sentAt).toBeLessThan(200);
    expect(unb64(conn.appends[2]!)).toEqual(frames[4]);
    expect(heldBatches()).toBe(0);
    expect(s.stats()).toMatchObject({ framesSent: 5, bytesSent: 5 * FRAME, framesDropped: 0 });
  });

  it('sends 25 frames per append while relaxed, and what it holds at once when an utterance may be ending', async () => {
    const { callbacks } = recorder();
    const s = open(callbacks, { framesPerAppend: 2 }); // relaxedFramesPerAppend: 25, the default
    const conn = await server.connection(0);
    await waitFor(() => s.stats().state === 'open');
    const frames = Array.from({ length: 33 }, (_, i) => new Uint8Array(FRAME).fill(0x20 + i));
    s.setRelaxed!(true);
    for (const f of frames.slice(0, 28)) s.sendMulaw(f);
    await waitFor(() => conn.appends.length === 1);
    expect(unb64(conn.appends[0]!)).toEqual(joined(frames.slice(0, 25)));
    // Three held; no longer relaxed, they go at once, without waiting for the hold limit.
    expect(s.stats().framesSent).toBe(25);
    s.setRelaxed!(false);
    expect(s.stats().framesSent).toBe(28);
    for (const f of frames.slice(28, 32)) s.sendMulaw(f);
    await waitFor(() => conn.appends.length === 4);
    expect(conn.appends.slice(1).map(unb64)).toEqual([
      joined(frames.slice(25, 28)),
      joined(frames.slice(28, 30)),
      joined(frames.slice(30, 32)),
    ]);
    // Relaxed again: a lone frame is held longer than a full batch takes to fill, but not much.
    s.setRelaxed!(true);
    s.sendMulaw(frames[32]!);
    const sentAt = performance.now();
    await waitFor(() => conn.appends.length === 5, 2000);
    const heldMs = performance.now() - sentAt;
    expect(heldMs).toBeGreaterThanOrEqual(500);
    expect(heldMs).toBeLessThan(900);
    expect(unb64(conn.appends[4]!)).toEqual(frames[32]);
    expect(s.stats()).toMatchObject({ framesSent: 33, framesDropped: 0 });
  });

  it('still transcribes speech sent in batches', async () => {
    server.script('batched words');
    const { callbacks, seen } = recorder();
    const s = open(callbacks, { framesPerAppend: 3 });
    await waitFor(() => s.stats().state === 'open');
    speak(s);
    await waitFor(() => seen.finals.length === 1);
    expect(seen.finals[0]?.text).toBe('batched words');
  });

  it('holds batches made while connecting and counts dropped frames, not appends', async () => {
    const { callbacks } = recorder();
    const s = open(callbacks, { framesPerAppend: 2, maxBufferedFrames: 4 });
    // Eight frames before the socket opens: four appends of two; the buffer keeps the last two appends.
    const frames = Array.from({ length: 8 }, (_, i) => new Uint8Array(FRAME).fill(0x20 + i));
    for (const f of frames) s.sendMulaw(f);
    const conn = await server.connection(0);
    await waitFor(() => s.stats().state === 'open' && conn.appends.length === 2);
    expect(conn.appends.map(unb64)).toEqual([joined(frames.slice(4, 6)), joined(frames.slice(6, 8))]);
    expect(s.stats()).toMatchObject({ framesSent: 4, framesDropped: 4 });
  });

  it('sends a held frame before closing', async () => {
    const { callbacks } = recorder();
    const s = open(callbacks, { framesPerAppend: 4 });
    const conn = await server.connection(0);
    await waitFor(() => s.stats().state === 'open');
    s.sendMulaw(loud());
    await s.close();
    await waitFor(() => conn.closed !== null);
    expect(conn.appends.map(unb64)).toEqual([loud()]);
    expect(heldBatches()).toBe(0);
    expect(openBatchers()).toBe(0);
    // A frame after the close is dropped at once, not held.
    s.sendMulaw(loud());
    expect(s.stats()).toMatchObject({ framesSent: 1, framesDropped: 1 });
    expect(heldBatches()).toBe(0);
  });

  it('drops a held frame when the session fails for good', async () => {
    server.refuseUpgrades(401, 10);
    const { callbacks } = recorder();
    const s = open(callbacks, { framesPerAppend: 2 });
    s.sendMulaw(loud());
    await waitFor(() => s.stats().state === 'failed');
    expect(heldBatches()).toBe(0);
    expect(openBatchers()).toBe(0);
    expect(s.stats()).toMatchObject({ framesSent: 0, framesDropped: 1 });
  });
});
