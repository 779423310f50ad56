import { describe, expect, it } from 'vitest';
import {
  createLocalEmbedder,
  dot,
  dotAll,
  isFittableEmbedder,
  LOCAL_EMBEDDER_ID,
} from '../../src/routing/localEmbedder.ts';

function norm(v: Float32Array): number {
  return Math.sqrt(dot(v, v));
}

describe('createLocalEmbedder', () => {
  it('names itself and rounds the dimension up to a power of two', () => {
    expect(createLocalEmbedder().id).toBe(LOCAL_EMBEDDER_ID);
    expect(createLocalEmbedder().dimensions).toBe(1024);
    expect(createLocalEmbedder({ dimensions: 600 }).dimensions).toBe(1024);
    expect(createLocalEmbedder({ dimensions: 512 }).dimensions).toBe(512);
  });

  it('returns one unit vector per text, in order, deterministically', async () => {
    const e = createLocalEmbedder();
    const [a, b, c] = await e.embed(['my sink is clogged', 'what are your hours', 'my sink is clogged']);
    expect(a).toBeInstanceOf(Float32Array);
    expect(a!.length).toBe(e.dimensions);
    expect(norm(a!)).toBeCloseTo(1, 5);
    expect(norm(b!)).toBeCloseTo(1, 5);
    expect(Array.from(a!)).toEqual(Array.from(c!));
  });

  it('gives an empty text the zero vector instead of NaNs', () => {
    const v = createLocalEmbedder().embedSync('  ');
    expect(v.every((x) => x === 0)).toBe(true);
  });

  it('puts paraphrases closer than unrelated sentences', () => {
    const e = createLocalEmbedder();
    const q = e.embedSync('the kitchen sink is clogged');
    expect(dot(q, e.embedSync('my kitchen sink will not drain, it is clogged'))).toBeGreaterThan(
      dot(q, e.embedSync('what time do you open on saturday')) + 0.2,
    );
  });

  it('sees shared word parts through character n-grams', () => {
    const e = createLocalEmbedder({ weights: { words: 0, bigrams: 0, chars: 1 } });
    expect(dot(e.embedSync('replacement'), e.embedSync('replacing'))).toBeGreaterThan(0.3);
  });

  it('learns idf from a corpus: words found everywhere count for less', () => {
    const corpus = ['do you fix sinks', 'do you install toilets', 'do you clean drains', 'do you open early'];
    const plain = createLocalEmbedder();
    const fitted = plain.fit(corpus);
    const similarity = (e: typeof plain) =>
      dot(e.embedSync('do you fix sinks'), e.embedSync('do you open early'));
    expect(similarity(fitted)).toBeLessThan(similarity(plain));
    // fit returns a new embedder; the original keeps its weights.
    expect(similarity(plain)).toBeCloseTo(similarity(createLocalEmbedder()), 10);
    expect(isFittableEmbedder(fitted)).toBe(true);
  });

  it('rejects when the signal is already aborted', async () => {
    const controller = new AbortController();
    controller.abort();
    await expect(createLocalEmbedder().embed(['hello'], controller.signal)).rejects.toThrow();
  });

  it('embeds a sentence in well under a millisecond', () => {
    const e = createLocalEmbedder().fit(['my furnace is blowing cold air', 'what are your hours']);
    const text =
      'hi, my furnace is making a loud banging noise every time it kicks on, can someone come today';
    for (let i = 0; i < 50; i++) e.embedSync(text);
    const started = performance.now();
    for (let i = 0; i < 200; i++) e.embedSync(text);
    expect((performance.now() - started) / 200).toBeLessThan(1);
  });
});

describe('dotAll', () => {
  it('gives exactly what dot gives, row by row, for sparse and dense queries and rows of other lengths', () => {
    const embedder = createLocalEmbedder();
    const texts = [
      'my kitchen sink is clogged',
      'how much do you charge to come out',
      'water heater making a banging noise',
      'do you work on weekends',
      '',
    ];
    const rows = texts.map((t) => embedder.embedSync(t));
    // A dense row, and a shorter one.
    rows.push(Float32Array.from({ length: 1024 }, (_, i) => Math.sin(i) / 16));
    rows.push(rows[0]!.subarray(0, 300));
    for (const q of [...rows, embedder.embedSync('the sink in my kitchen will not drain')]) {
      expect(dotAll(q, rows)).toEqual(rows.map((row) => dot(q, row)));
    }
    expect(dotAll(rows[0]!, [])).toEqual([]);
  });
});
