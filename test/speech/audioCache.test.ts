import { describe, expect, it } from 'vitest';
import {
  CACHED_CHUNK_BYTES,
  audioCacheKey,
  createAudioCache,
  normalizeCacheText,
  type AudioCacheRead,
} from '../../src/speech/audioCache.ts';

const frames = (count: number, fill = 1) => new Uint8Array(160 * count).fill(fill);

async function drain(read: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for await (const chunk of read) out.push(chunk);
  return out;
}

/** A producer the test drives by hand: `emit` a chunk, `finish` or `fail`; records its signal. */
function manualProducer() {
  const queue: (Uint8Array | Error | null)[] = [];
  let wake: (() => void) | null = null;
  const state = { calls: 0, signal: null as AbortSignal | null };
  const push = (item: Uint8Array | Error | null) => {
    queue.push(item);
    wake?.();
  };
  async function* produce(signal: AbortSignal): AsyncGenerator<Uint8Array> {
    state.calls++;
    state.signal = signal;
    signal.addEventListener('abort', () => wake?.());
    for (;;) {
      while (queue.length === 0 && !signal.aborted) await new Promise<void>((r) => (wake = r));
      if (signal.aborted) return;
      const item = queue.shift()!;
      if (item === null) return;
      if (item instanceof Error) throw item;
      yield item;
    }
  }
  return { state, produce, emit: push, finish: () => push(null), fail: (err: Error) => push(err) };
}

const tick = () => new Promise((r) => setTimeout(r, 5));

describe('audioCacheKey', () => {
  it('ignores whitespace differences and separates voice, model and provider', () => {
    const base = { provider: 'openai', model: 'gpt-4o-mini-tts', voice: 'marin', text: 'Hello,  world.' };
    expect(audioCacheKey(base)).toBe(audioCacheKey({ ...base, text: ' Hello, world.\n' }));
    expect(audioCacheKey(base)).not.toBe(audioCacheKey({ ...base, text: 'Hello, world!' }));
    expect(audioCacheKey(base)).not.toBe(audioCacheKey({ ...base, voice: 'cedar' }));
    expect(audioCacheKey(base)).not.toBe(audioCacheKey({ ...base, model: 'tts-1' }));
    expect(audioCacheKey(base)).toMatch(/^[0-9a-f]{64}$/);
    expect(normalizeCacheText('  a \t b\n\nc ')).toBe('a b c');
  });
});

describe('createAudioCache', () => {
  it('evicts the least recently used entries by bytes, and get refreshes recency', () => {
    const cache = createAudioCache({ maxBytes: 160 * 10 });
    cache.set('a', frames(4, 1));
    cache.set('b', frames(4, 2));
    expect(cache.get('a')?.[0]).toBe(1); // 'a' is now the most recent
    cache.set('c', frames(4, 3)); // 12 frames > 10: the least recent ('b') goes
    expect(cache.has('a')).toBe(true);
    expect(cache.has('b')).toBe(false);
    expect(cache.has('c')).toBe(true);
    expect(cache.stats()).toEqual({ entries: 2, bytes: 160 * 8, hits: 1, misses: 0 });
    cache.set('d', frames(9, 4)); // needs both others gone
    expect(cache.stats()).toMatchObject({ entries: 1, bytes: 160 * 9 });
    expect(cache.get('a')).toBeUndefined();
    expect(cache.stats()).toMatchObject({ hits: 1, misses: 1 });
  });

  it('replaces an entry without counting it twice, refuses audio larger than the cap, and clears', () => {
    const cache = createAudioCache({ maxBytes: 160 * 10 });
    cache.set('a', frames(4));
    cache.set('a', frames(2));
    expect(cache.stats()).toMatchObject({ entries: 1, bytes: 320 });
    expect(cache.set('huge', frames(11))).toBe(false);
    expect(cache.has('huge')).toBe(false);
    expect(cache.stats().bytes).toBe(320);
    cache.clear();
    expect(cache.stats()).toMatchObject({ entries: 0, bytes: 0 });
  });

  it('refuses audio that is not whole frames, and a nonsensical cap', () => {
    const cache = createAudioCache();
    expect(() => cache.set('a', new Uint8Array(161))).toThrow(RangeError);
    expect(() => createAudioCache({ maxBytes: -1 })).toThrow(RangeError);
    expect(cache.maxBytes).toBe(64 * 1024 * 1024);
  });

  it('serves stored audio in whole-frame chunks, as views, without producing', async () => {
    const cache = createAudioCache();
    const audio = frames(60);
    cache.set('k', audio);
    const producer = manualProducer();
    const read: AudioCacheRead = cache.getOrCreate('k', producer.produce);
    expect(read.source).toBe('cache');
    const chunks = await drain(read);
    expect(chunks.map((c) => c.length)).toEqual([CACHED_CHUNK_BYTES, CACHED_CHUNK_BYTES, 9600 - 8000]);
    expect(chunks.every((c) => c.buffer === audio.buffer)).toBe(true);
    expect(producer.state.calls).toBe(0);
    expect(cache.stats()).toMatchObject({ hits: 1, misses: 0 });
  });

  it('shares one production between concurrent reads, streaming to both, and stores the result', async () => {
    const cache = createAudioCache();
    const producer = manualProducer();
    const first = cache.getOrCreate('k', producer.produce);
    const firstChunks = drain(first);
    producer.emit(frames(1, 1));
    await tick();
    const second = cache.getOrCreate('k', producer.produce); // joins mid-way
    expect(second.source).toBe('live');
    const secondChunks = drain(second);
    producer.emit(frames(2, 2));
    await tick();
    expect(cache.has('k')).toBe(false); // not until complete
    producer.finish();
    const [a, b] = await Promise.all([firstChunks, secondChunks]);
    expect(producer.state.calls).toBe(1);
    expect(a.map((c) => c.length)).toEqual([160, 320]);
    expect(b.map((c) => c.length)).toEqual([160, 320]); // from the first chunk
    const stored = cache.get('k')!;
    expect(stored.length).toBe(480);
    expect([stored[0], stored[479]]).toEqual([1, 2]);
    expect(cache.stats()).toMatchObject({ hits: 1, misses: 2 });
  });

  it('rejects every listener with the producer error and stores nothing; the next read starts afresh', async () => {
    const cache = createAudioCache();
    const producer = manualProducer();
    const reads = [
      drain(cache.getOrCreate('k', producer.produce)),
      drain(cache.getOrCreate('k', producer.produce)),
    ];
    producer.emit(frames(1));
    producer.fail(new Error('boom'));
    for (const read of reads) await expect(read).rejects.toThrow('boom');
    expect(cache.has('k')).toBe(false);
    const retry = manualProducer();
    const again = drain(cache.getOrCreate('k', retry.produce));
    retry.emit(frames(1));
    retry.finish();
    expect((await again).length).toBe(1);
    expect(retry.state.calls).toBe(1);
    expect(cache.has('k')).toBe(true);
  });

  it('a listener whose signal aborts ends quietly while the production goes on for the others', async () => {
    const cache = createAudioCache();
    const producer = manualProducer();
    const controller = new AbortController();
    const leaving = drain(cache.getOrCreate('k', producer.produce, { signal: controller.signal }));
    const staying = drain(cache.getOrCreate('k', producer.produce));
    producer.emit(frames(1));
    await tick();
    controller.abort();
    expect((await leaving).length).toBe(1);
    expect(producer.state.signal?.aborted).toBe(false);
    producer.emit(frames(1));
    producer.finish();
    expect((await staying).length).toBe(2);
    expect(cache.get('k')?.length).toBe(320);
  });

  it('aborts the production when its last listener leaves, stores nothing, and starts afresh next time', async () => {
    const cache = createAudioCache();
    const producer = manualProducer();
    const controller = new AbortController();
    const read = drain(cache.getOrCreate('k', producer.produce, { signal: controller.signal }));
    producer.emit(frames(1));
    await tick();
    controller.abort();
    expect((await read).length).toBe(1);
    expect(producer.state.signal?.aborted).toBe(true);
    await tick();
    expect(cache.has('k')).toBe(false);

    const retry = manualProducer();
    const again = drain(cache.getOrCreate('k', retry.produce));
    retry.emit(frames(3));
    retry.finish();
    expect((await again).map((c) => c.length)).toEqual([480]);
    expect(cache.get('k')?.length).toBe(480);
  });

  it('leaving the loop early counts as leaving', async () => {
    const cache = createAudioCache();
    const producer = manualProducer();
    const read = cache.getOrCreate('k', producer.produce);
    producer.emit(frames(1));
    for await (const chunk of read) {
      expect(chunk.length).toBe(160);
      break;
    }
    expect(producer.state.signal?.aborted).toBe(true);
  });

  it('fails a production that yields partial frames', async () => {
    const cache = createAudioCache();
    const producer = manualProducer();
    const read = drain(cache.getOrCreate('k', producer.produce));
    producer.emit(new Uint8Array(100));
    await expect(read).rejects.toThrow(/not whole frames/);
    expect(cache.has('k')).toBe(false);
  });
});
