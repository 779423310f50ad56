import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isAbortError } from '../../src/errors.ts';
import {
  createOpenAiTts,
  createPcm16Decoder,
  type OpenAiTtsOptions,
} from '../../src/providers/tts/openaiTts.ts';
import {
  TtsError,
  type TtsClient,
  type TtsStream,
  type TtsUsage,
} from '../../src/providers/tts/ttsClient.ts';
import { ttsCostUsd } from '../../src/providers/tts/ttsPrices.ts';
import {
  pcm16Bytes,
  startFakeAudioServer,
  toneSamples,
  type FakeAudioServer,
} from '../fakes/fakeAudioServer.ts';
import { errorOf } from '../support/errorOf.ts';

const TEXT = 'Thanks for calling Riverside Plumbing.';

let server: FakeAudioServer;
let tts: TtsClient;
const usage: TtsUsage[] = [];

function client(overrides: Partial<OpenAiTtsOptions> = {}): TtsClient {
  return createOpenAiTts({
    apiKey: 'test-key',
    baseURL: server.baseURL,
    onUsage: (u) => usage.push(u),
    ...overrides,
  });
}

beforeEach(async () => {
  usage.length = 0;
  server = await startFakeAudioServer();
  tts = client();
});

afterEach(async () => {
  await server.close();
});

async function collect(stream: TtsStream): Promise<{ chunks: Int16Array[]; samples: Int16Array }> {
  const chunks: Int16Array[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  const samples = new Int16Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const c of chunks) {
    samples.set(c, offset);
    offset += c.length;
  }
  return { chunks, samples };
}

const ttsErrorOf = (promise: Promise<unknown>) => errorOf(promise, TtsError);

describe('createPcm16Decoder', () => {
  it('reassembles samples split across any chunk boundaries, signed little-endian', () => {
    const samples = Int16Array.from([0, 1, -1, 32767, -32768, 256, -257, 12345]);
    const bytes = pcm16Bytes(samples);
    for (const sizes of [[1], [3, 1, 5], [2], [7, 9], [1, 1, 1, 13]]) {
      const decoder = createPcm16Decoder();
      const out: number[] = [];
      let offset = 0;
      let turn = 0;
      while (offset < bytes.length) {
        const size = sizes[turn++ % sizes.length]!;
        out.push(...decoder.push(bytes.subarray(offset, offset + size)));
        offset += size;
      }
      expect(out).toEqual(Array.from(samples));
      expect(decoder.leftover).toBe(false);
    }
    const decoder = createPcm16Decoder();
    expect(decoder.push(new Uint8Array([1, 2, 3])).length).toBe(1);
    expect(decoder.leftover).toBe(true);
  });

  it('decodes the same on either host byte order (byte copy or sample by sample)', () => {
    const samples = Int16Array.from([0, 1, -1, 32767, -32768, 256, -257, 12345, -4321]);
    const bytes = pcm16Bytes(samples);
    for (const littleEndianHost of [true, false]) {
      for (const sizes of [[1], [3, 1, 5], [2], [7, 9]]) {
        const decoder = createPcm16Decoder(littleEndianHost);
        const out: number[] = [];
        let offset = 0;
        let turn = 0;
        while (offset < bytes.length) {
          const size = sizes[turn++ % sizes.length]!;
          // A view into a larger buffer, at an odd offset, as network chunks are.
          const padded = new Uint8Array(size + 3);
          padded.set(bytes.subarray(offset, offset + size), 1);
          out.push(...decoder.push(padded.subarray(1, 1 + Math.min(size, bytes.length - offset))));
          offset += size;
        }
        expect(out).toEqual(Array.from(samples));
        expect(decoder.leftover).toBe(false);
      }
    }
  });
});

describe('createOpenAiTts', () => {
  it('streams every sample in order across odd chunk boundaries and sends the pcm request', async () => {
    const tone = toneSamples(250);
    server.scriptSpeech({ type: 'pcm', samples: tone, chunkSizes: [1, 333, 2048, 7, 1001, 2, 513] });

    const stream = tts.synthesize(TEXT, { voice: 'marin', instructions: 'Warm and brief.' });
    expect(stream.sampleRate).toBe(24_000);
    const { chunks, samples } = await collect(stream);

    expect(Array.from(samples)).toEqual(Array.from(tone));
    expect(chunks.length).toBeGreaterThan(3);
    const sent = await server.speechSettled(0);
    expect(sent.headers.authorization).toBe('Bearer test-key');
    expect(sent.headers['content-type']).toBe('application/json');
    expect(sent.headers['user-agent']).toMatch(/^switchboard/);
    expect(sent.body).toEqual({
      model: 'gpt-4o-mini-tts',
      voice: 'marin',
      input: TEXT,
      response_format: 'pcm',
      instructions: 'Warm and brief.',
    });
    expect(sent.clientWentAway).toBe('no');
    expect(stream.stats).toMatchObject({ outcome: 'complete', samples: tone.length });
    expect(stream.stats.audioSeconds).toBeCloseTo(0.25);

    expect(usage).toHaveLength(1);
    expect(usage[0]).toMatchObject({
      provider: 'openai',
      model: 'gpt-4o-mini-tts',
      voice: 'marin',
      characters: TEXT.length,
      outcome: 'complete',
      estimated: true, // gpt-4o-mini-tts is priced per minute: an estimate
    });
    expect(usage[0]?.costUsd).toBeCloseTo(
      ttsCostUsd('gpt-4o-mini-tts', { characters: TEXT.length, audioSeconds: 0.25 })!.costUsd,
    );
  });

  it('prices tts-1 per character, exactly', async () => {
    const stream = client({ model: 'tts-1' }).synthesize(TEXT);
    await collect(stream);
    expect(usage[0]).toMatchObject({ model: 'tts-1', estimated: false, voice: 'alloy' });
    expect(usage[0]?.costUsd).toBeCloseTo((TEXT.length * 15) / 1e6);
  });

  it('reports first-byte time', async () => {
    server.scriptSpeech({ type: 'pcm', firstByteDelayMs: 120 });
    const reported: number[] = [];
    const stream = tts.synthesize(TEXT, { onFirstByte: (ms) => reported.push(ms) });
    await collect(stream);
    expect(reported).toHaveLength(1);
    expect(reported[0]).toBeGreaterThanOrEqual(100);
    expect(stream.stats.firstByteMs).toBe(reported[0]);
    expect(stream.stats.durationMs).toBeGreaterThan(reported[0]!);
  });

  it('aborting mid-stream closes the HTTP stream on the wire and throws ERR_TTS_ABORTED', async () => {
    server.scriptSpeech({ type: 'pcm', durationMs: 3000, chunkSizes: [481], chunkIntervalMs: 5 });
    const controller = new AbortController();
    const stream = tts.synthesize(TEXT, { signal: controller.signal });
    let received = 0;
    const err = await ttsErrorOf(
      (async () => {
        for await (const chunk of stream) {
          received += chunk.length;
          if (received > 2000) controller.abort();
        }
      })(),
    );
    expect(err.code).toBe('ERR_TTS_ABORTED');
    const sent = await server.speechSettled(0);
    expect(sent.clientWentAway).toBe('before-last-byte');
    expect(sent.bytesSent).toBeLessThan(sent.bytesPlanned);
    expect(stream.stats.outcome).toBe('aborted');
    expect(usage[0]).toMatchObject({ outcome: 'aborted', estimated: true });
  });

  it('leaving the loop early also closes the stream on the wire', async () => {
    server.scriptSpeech({ type: 'pcm', durationMs: 3000, chunkSizes: [480], chunkIntervalMs: 5 });
    const stream = tts.synthesize(TEXT);
    for await (const chunk of stream) {
      expect(chunk.length).toBeGreaterThan(0);
      break;
    }
    const sent = await server.speechSettled(0);
    expect(sent.clientWentAway).toBe('before-last-byte');
    expect(stream.stats.outcome).toBe('aborted');
  });

  it('an already-aborted signal fails at once with ERR_TTS_ABORTED, and no request is made', async () => {
    const controller = new AbortController();
    controller.abort();
    const err = await ttsErrorOf(collect(tts.synthesize(TEXT, { signal: controller.signal })));
    expect(err.code).toBe('ERR_TTS_ABORTED');
    expect(err.retryable).toBe(false);
    await new Promise((r) => setTimeout(r, 50));
    expect(server.speechRequests).toHaveLength(0);
  });

  it('aborting before the response headers closes the request on the wire', async () => {
    server.scriptSpeech({ type: 'hang' });
    const controller = new AbortController();
    const pending = ttsErrorOf(collect(tts.synthesize(TEXT, { signal: controller.signal })));
    while (server.speechRequests.length === 0) await new Promise((r) => setTimeout(r, 2));
    controller.abort();
    expect((await pending).code).toBe('ERR_TTS_ABORTED');
    expect((await server.speechSettled(0)).clientWentAway).toBe('before-first-byte');
  });

  it('times out a body that runs past the total deadline, closing it mid-stream', async () => {
    server.scriptSpeech({ type: 'pcm', durationMs: 3000, chunkSizes: [480], chunkIntervalMs: 5 });
    const stream = client({ timeoutMs: 150 }).synthesize(TEXT);
    const err = await ttsErrorOf(collect(stream));
    expect(err).toMatchObject({ code: 'ERR_TTS_TIMEOUT', retryable: true });
    expect((await server.speechSettled(0)).clientWentAway).toBe('before-last-byte');
    expect(stream.stats.outcome).toBe('failed');
    expect(stream.stats.samples).toBeGreaterThan(0);
  });

  it('times out a first byte that is too slow, closing the request', async () => {
    server.scriptSpeech({ type: 'pcm', firstByteDelayMs: 1000 });
    const err = await ttsErrorOf(collect(client({ firstByteTimeoutMs: 100 }).synthesize(TEXT)));
    expect(err).toMatchObject({ code: 'ERR_TTS_TIMEOUT', retryable: true });
    expect((await server.speechSettled(0)).clientWentAway).toBe('before-first-byte');
  });

  it('maps HTTP errors to ERR_TTS_HTTP with the status and retryability', async () => {
    server.scriptSpeech({ type: 'error', status: 500 }, { type: 'error', status: 400, message: 'bad voice' });
    const first = await ttsErrorOf(collect(tts.synthesize(TEXT)));
    expect(first).toMatchObject({ code: 'ERR_TTS_HTTP', status: 500, retryable: true });
    const second = await ttsErrorOf(collect(tts.synthesize(TEXT)));
    expect(second).toMatchObject({ code: 'ERR_TTS_HTTP', status: 400, retryable: false });
    expect(second.message).toContain('bad voice');
    expect(server.speechRequests).toHaveLength(2); // no SDK retries
  });

  it('rejects a 200 JSON or text answer as ERR_TTS_BAD_RESPONSE', async () => {
    server.scriptSpeech(
      { type: 'json', body: { text: 'not audio' } },
      { type: 'pcm', contentType: 'text/plain; charset=utf-8' },
    );
    expect((await ttsErrorOf(collect(tts.synthesize(TEXT)))).code).toBe('ERR_TTS_BAD_RESPONSE');
    const err = await ttsErrorOf(collect(tts.synthesize(TEXT)));
    expect(err.code).toBe('ERR_TTS_BAD_RESPONSE');
    expect(err.message).toContain('text/plain');
  });

  it('nothing listening: ERR_TTS_CONNECTION, retryable', async () => {
    await server.close();
    const err = await ttsErrorOf(collect(tts.synthesize(TEXT)));
    expect(err).toMatchObject({ code: 'ERR_TTS_CONNECTION', retryable: true });
    expect(err.message).not.toContain('test-key');
  });

  it('reuses one connection across syntheses, including after an HTTP error', async () => {
    const ports: number[] = [];
    let connections = 0;
    let answered = 0;
    const raw = createServer((req, res) => {
      ports.push(req.socket.remotePort ?? 0);
      req.resume();
      req.on('end', () => {
        if (answered++ === 1) {
          res.writeHead(429, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: { message: 'Slow down.' } }));
          return;
        }
        res.writeHead(200, { 'content-type': 'audio/pcm' });
        res.end(Buffer.alloc(4801));
      });
    });
    raw.on('connection', () => connections++);
    await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
    const local = createOpenAiTts({
      apiKey: 'k',
      baseURL: `http://127.0.0.1:${(raw.address() as AddressInfo).port}/v1`,
    });

    expect((await collect(local.synthesize(TEXT))).samples.length).toBe(2400);
    const err = await ttsErrorOf(collect(local.synthesize(TEXT)));
    expect(err).toMatchObject({ code: 'ERR_TTS_HTTP', status: 429, retryable: true });
    expect(err.message).toBe('TTS answered HTTP 429: Slow down.');
    expect((await collect(local.synthesize(TEXT))).samples.length).toBe(2400);
    raw.closeAllConnections();
    await new Promise<void>((resolve) => raw.close(() => resolve()));

    expect(ports).toHaveLength(3);
    expect(new Set(ports).size).toBe(1);
    expect(connections).toBe(1);
  });

  it('maps a server drop mid-stream to ERR_TTS_CONNECTION after yielding what arrived', async () => {
    server.scriptSpeech({ type: 'pcm', durationMs: 500, chunkSizes: [1001], dropAfterBytes: 3003 });
    const stream = tts.synthesize(TEXT);
    let received = 0;
    const err = await ttsErrorOf(
      (async () => {
        for await (const chunk of stream) received += chunk.length;
      })(),
    );
    expect(err).toMatchObject({ code: 'ERR_TTS_CONNECTION', retryable: true });
    expect(received).toBe(1501);
    expect(stream.stats.outcome).toBe('failed');
  });

  it('refuses input over 4096 characters without a request, and skips empty text', async () => {
    const err = await ttsErrorOf(collect(tts.synthesize('a'.repeat(4097))));
    expect(err.code).toBe('ERR_TTS_INPUT');
    const { samples } = await collect(tts.synthesize('   '));
    expect(samples.length).toBe(0);
    expect(server.speechRequests).toHaveLength(0);
    expect(usage).toHaveLength(0);
  });

  it('reports usage to the request as well, once per stream however it ends', async () => {
    server.scriptSpeech(
      { type: 'pcm', durationMs: 200 },
      { type: 'error', status: 503 },
      { type: 'pcm', durationMs: 3000, chunkSizes: [480], chunkIntervalMs: 5 },
      { type: 'pcm', durationMs: 3000, chunkSizes: [480], chunkIntervalMs: 5 },
    );
    const perRequest: TtsUsage[][] = [[], [], [], []];
    const onUsage = (i: number) => (u: TtsUsage) => perRequest[i]!.push(u);

    await collect(tts.synthesize(TEXT, { onUsage: onUsage(0) }));
    await ttsErrorOf(collect(tts.synthesize(TEXT, { onUsage: onUsage(1) })));
    const controller = new AbortController();
    await ttsErrorOf(
      (async () => {
        for await (const chunk of tts.synthesize(TEXT, { signal: controller.signal, onUsage: onUsage(2) })) {
          if (chunk.length > 0) controller.abort();
        }
      })(),
    );
    for await (const chunk of tts.synthesize(TEXT, { onUsage: onUsage(3) })) {
      if (chunk.length > 0) break;
    }

    expect(perRequest.map((list) => list.map((u) => u.outcome))).toEqual([
      ['complete'],
      ['failed'],
      ['aborted'],
      ['aborted'],
    ]);
    expect(perRequest[0]![0]!.audioSeconds).toBeCloseTo(0.2);
    // The client-level sink heard the same four, and the same objects.
    expect(usage).toEqual(perRequest.flat());
  });

  it('a throwing per-request sink neither breaks the audio nor silences the client-level sink', async () => {
    const { samples } = await collect(
      tts.synthesize(TEXT, {
        onUsage: () => {
          throw new Error('sink down');
        },
      }),
    );
    expect(samples.length).toBeGreaterThan(0);
    expect(usage).toHaveLength(1);
  });

  it('isAbortError tells a caller abort of a synthesis from a failure', async () => {
    const controller = new AbortController();
    controller.abort();
    const aborted = await ttsErrorOf(collect(tts.synthesize(TEXT, { signal: controller.signal })));
    expect(aborted.code).toBe('ERR_TTS_ABORTED');
    expect(isAbortError(aborted)).toBe(true);
    server.scriptSpeech({ type: 'error', status: 500 });
    expect(isAbortError(await ttsErrorOf(collect(tts.synthesize(TEXT))))).toBe(false);
    expect(isAbortError(new Error('ERR_TTS_ABORTED'))).toBe(false);
  });
});
