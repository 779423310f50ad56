/**
 * The embedded-default embedder: no model, no download, no network. A text becomes a bag of hashed
 * features — word stems, word-stem bigrams and character n-grams of each word — weighted by
 * sublinear term frequency and (once fitted on a corpus) inverse document frequency, folded into a
 * fixed number of dimensions with signed hashing, and scaled to unit length.
 *
 * Character n-grams make it forgiving of spelling and morphology ("replacing" ~ "replacement");
 * word features carry the meaning; idf learned from a template's own examples keeps words that
 * occur everywhere ("do you", "my") from dominating.
 */
import type { Embedder } from '../providers/embeddings/embedder.ts';
import { stem, tokenize } from './normalize.ts';

/** Relative weight of each feature family in the final vector. */
export interface LocalEmbedderWeights {
  readonly words: number;
  readonly bigrams: number;
  readonly chars: number;
}

export interface LocalEmbedderOptions {
  /** Vector size; rounded up to a power of two. Default 1024. */
  readonly dimensions?: number;
  /** Smallest and largest character n-gram. Default [3, 5]. */
  readonly charNgrams?: readonly [number, number];
  readonly weights?: Partial<LocalEmbedderWeights>;
  /** Texts to learn inverse document frequencies from. Without it every feature weighs the same. */
  readonly corpus?: readonly string[];
}

/** The local embedder: an {@link Embedder} that can also be re-fitted to a corpus and used synchronously. */
export interface LocalEmbedder extends Embedder {
  /** A new embedder with the same options whose idf is learned from `corpus` (this one is unchanged). */
  fit(corpus: readonly string[]): LocalEmbedder;
  /** The same vector `embed` gives, without the promise. */
  embedSync(text: string): Float32Array;
}

export const LOCAL_EMBEDDER_ID = 'local:hash-ngram-v1';

// Word stems carry most of the meaning, bigrams keep "not heating" apart from "heating", character
// n-grams catch spelling and morphology; the split was chosen on held-out caller phrasings.
const DEFAULT_WEIGHTS: LocalEmbedderWeights = { words: 0.5, bigrams: 0.3, chars: 0.2 };

// Seeds keep the three feature families apart in hash space.
const SEED_WORD = 0x811c9dc5;
const SEED_BIGRAM = 0x01000193;
const SEED_CHAR = 0x5bd1e995;

/** FNV-1a over a string's UTF-16 units, continued from `seed`. */
function fnv(seed: number, text: string, start = 0, end = text.length): number {
  let h = seed >>> 0;
  for (let i = start; i < end; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Murmur3's finaliser: spreads FNV's weak low bits so bucket and sign are independent. */
function mix(h: number): number {
  let x = h >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

/** Feature hash → term frequency, one map per family. */
interface FeatureCounts {
  readonly words: Map<number, number>;
  readonly bigrams: Map<number, number>;
  readonly chars: Map<number, number>;
}

function bump(map: Map<number, number>, key: number): void {
  map.set(key, (map.get(key) ?? 0) + 1);
}

function countFeatures(text: string, minN: number, maxN: number): FeatureCounts {
  const counts: FeatureCounts = { words: new Map(), bigrams: new Map(), chars: new Map() };
  const words = tokenize(typeof text === 'string' ? text : '');
  let previous: string | null = null;
  for (const word of words) {
    const s = stem(word);
    bump(counts.words, fnv(SEED_WORD, s));
    if (previous !== null) bump(counts.bigrams, fnv(fnv(SEED_BIGRAM, previous), ` ${s}`));
    previous = s;
    const marked = `<${word}>`;
    for (let n = minN; n <= maxN; n++) {
      if (marked.length < n) break;
      for (let i = 0; i + n <= marked.length; i++) bump(counts.chars, fnv(SEED_CHAR + n, marked, i, i + n));
    }
  }
  return counts;
}

/** Document frequencies of every feature hash in a corpus. */
interface Idf {
  readonly df: ReadonlyMap<number, number>;
  readonly documents: number;
}

function learnIdf(corpus: readonly string[], minN: number, maxN: number): Idf {
  const df = new Map<number, number>();
  for (const text of corpus) {
    const c = countFeatures(text, minN, maxN);
    for (const map of [c.words, c.bigrams, c.chars]) for (const key of map.keys()) bump(df, key);
  }
  return { df, documents: corpus.length };
}

function idfWeight(idf: Idf | null, key: number): number {
  if (idf === null) return 1;
  // Smoothed idf; a feature the corpus never saw weighs like one seen once, so that an unknown
  // word counts as informative without swamping the words the corpus does know.
  const df = Math.max(1, idf.df.get(key) ?? 0);
  return Math.log((1 + idf.documents) / (1 + df)) + 1;
}

function addFamily(
  vector: Float32Array,
  counts: ReadonlyMap<number, number>,
  weight: number,
  idf: Idf | null,
  mask: number,
): void {
  if (counts.size === 0 || weight <= 0) return;
  const keys: number[] = [];
  const values: number[] = [];
  let norm = 0;
  for (const [key, tf] of counts) {
    const v = (1 + Math.log(tf)) * idfWeight(idf, key);
    keys.push(key);
    values.push(v);
    norm += v * v;
  }
  const scale = weight / Math.sqrt(norm);
  for (let i = 0; i < keys.length; i++) {
    const h = mix(keys[i] ?? 0);
    const sign = h & 0x80000000 ? -1 : 1;
    const index = h & mask;
    vector[index] = (vector[index] ?? 0) + sign * (values[i] ?? 0) * scale;
  }
}

function powerOfTwo(n: number): number {
  let p = 64;
  while (p < n && p < 1 << 16) p <<= 1;
  return p;
}

/**
 * Creates the local hashed n-gram embedder (`local:hash-ngram-v1`). Pass `corpus` (or call
 * `fit`) to weigh features by inverse document frequency; Tier 2 fits it on each template's own
 * examples automatically.
 */
export function createLocalEmbedder(options: LocalEmbedderOptions = {}): LocalEmbedder {
  const dimensions = powerOfTwo(options.dimensions ?? 1024);
  const mask = dimensions - 1;
  const [minN, maxN] = options.charNgrams ?? [3, 5];
  const weights: LocalEmbedderWeights = { ...DEFAULT_WEIGHTS, ...options.weights };
  const idf = options.corpus === undefined ? null : learnIdf(options.corpus, minN, maxN);

  const embedSync = (text: string): Float32Array => {
    const vector = new Float32Array(dimensions);
    const counts = countFeatures(text, minN, maxN);
    addFamily(vector, counts.words, weights.words, idf, mask);
    addFamily(vector, counts.bigrams, weights.bigrams, idf, mask);
    addFamily(vector, counts.chars, weights.chars, idf, mask);
    let norm = 0;
    for (let i = 0; i < dimensions; i++) norm += vector[i]! * vector[i]!;
    if (norm > 0) {
      const inv = 1 / Math.sqrt(norm);
      for (let i = 0; i < dimensions; i++) vector[i] = (vector[i] ?? 0) * inv;
    }
    return vector;
  };

  return {
    id: LOCAL_EMBEDDER_ID,
    dimensions,
    embedSync,
    embed(texts, signal) {
      if (signal?.aborted)
        return Promise.reject(signal.reason instanceof Error ? signal.reason : abortError());
      return Promise.resolve(texts.map(embedSync));
    },
    fit(corpus) {
      return createLocalEmbedder({ ...options, corpus });
    },
  };
}

function abortError(): Error {
  const err = new Error('The embedding request was aborted');
  err.name = 'AbortError';
  return err;
}

/** True for an embedder that can learn idf from a corpus (the local one). */
export function isFittableEmbedder(embedder: Embedder): embedder is Embedder & Pick<LocalEmbedder, 'fit'> {
  return typeof (embedder as Partial<LocalEmbedder>).fit === 'function';
}

/** Cosine similarity of two unit vectors (their dot product). */
export function dot(a: Float32Array, b: Float32Array): number {
  const n = Math.min(a.length, b.length);
  let sum = 0;
  for (let i = 0; i < n; i++) sum += (a[i] ?? 0) * (b[i] ?? 0);
  return sum;
}

/**
 * `rows.map((row) => dot(q, row))`, visiting only the dimensions where `q` is not zero. The sums are
 * the same to the bit (the skipped terms are exact zeros, added in the same order), at a fraction of
 * the work for this embedder's query vectors: a short utterance sets a few dozen of 1024 dimensions.
 */
export function dotAll(q: Float32Array, rows: readonly Float32Array[]): number[] {
  const used: number[] = [];
  for (let i = 0; i < q.length; i++) if (q[i] !== 0) used.push(i);
  const values = used.map((i) => q[i]!);
  return rows.map((row) => {
    let sum = 0;
    for (let k = 0; k < used.length; k++) {
      const i = used[k]!;
      if (i >= row.length) break;
      sum += values[k]! * row[i]!;
    }
    return sum;
  });
}
