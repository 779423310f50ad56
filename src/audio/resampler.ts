/**
 * Streaming 24 kHz → 8 kHz decimation for OpenAI TTS `pcm` output (raw 24 kHz s16le mono, no header;
 * research/protocols.md §3.2) on its way to Twilio's 8 kHz μ-law (§1.5).
 *
 * Keeping every third sample without a filter folds 4–12 kHz into the telephone band and sounds harsh
 * (§6.2), so a windowed-sinc low-pass runs first, evaluated only at the output instants (one output per
 * three inputs). The filter: 63 taps, Kaiser window β = 6, cutoff (−6 dB) 3600 Hz at 24 kHz; computed
 * response: within 0.13 dB up to 3 kHz, −0.8 dB at 3.2 kHz, −2.6 dB at 3.4 kHz (the top of the PSTN
 * passband, §6.2), −21 dB at 4 kHz, and ≥ 63 dB of rejection from 4.4 kHz up (≥ 66 dB from 4.6 kHz).
 * After decimation a tone at f in 4–8 kHz lands at 8 kHz − f (in 8–12 kHz, at f − 8 kHz), so the
 * weakly filtered 4–4.4 kHz transition band lands at 3.6–4 kHz, above the 300–3400 Hz telephone
 * band; whatever lands in that band comes from 4.6 kHz or above and is at least 66 dB down. The
 * passband is wider than that of the 63-tap Hamming at 3400 Hz suggested in §6.2 (−6 dB at 3.4 kHz)
 * for the same cost. Group delay: 31 input samples (1.3 ms).
 *
 * Network chunks arrive in any size, odd byte counts included (§3.2), so the state carried across
 * calls is the last 62 input samples, the decimation phase and a leftover byte. Chunked input gives
 * exactly the samples one-shot input gives. Buffers are reused, and so is the returned view while the
 * output length stays the same: fixed-size chunks allocate nothing at all.
 *
 * The filter runs in WebAssembly SIMD (decimatorKernel.ts): 16 four-lane multiply-adds per output in
 * single precision, where JavaScript did 32 scalar ones in double. The 16-bit samples are exact in
 * f32; the sum's rounding error is far below one PCM16 step, so an output differs from the
 * double-precision result only where the exact sum lies at a rounding boundary, by one step (2 of
 * 16 000 random full-range windows in a check), nothing audible.
 */

import {
  KERNEL_OUT_SAMPLES,
  KERNEL_TAPS,
  KERNEL_WORK_SAMPLES,
  createDecimatorKernel,
} from './decimatorKernel.ts';

/** Input rate: OpenAI TTS `pcm` has no sample-rate parameter; it is always 24 kHz (§3.2). */
export const RESAMPLER_INPUT_RATE_HZ = 24_000;
/** Output rate: Twilio Media Streams is always 8 kHz (§1.2). */
export const RESAMPLER_OUTPUT_RATE_HZ = 8_000;

const FACTOR = 3;
const TAPS = 63;
const CUTOFF_HZ = 3_600;
const KAISER_BETA = 6;
/** Input samples of context each output needs besides the newest one. */
const HISTORY = TAPS - 1;
const CENTER = HISTORY / 2;
/**
 * Input samples converted per pass. Bounds the work buffer whatever the chunk size (a caller handing
 * over a whole utterance at once must not grow per-call memory); 960 samples = 40 ms at 24 kHz.
 */
const BLOCK = 960;

/** Zeroth-order modified Bessel function of the first kind, for the Kaiser window (series form). */
export function besselI0(x: number): number {
  let sum = 1;
  let term = 1;
  for (let k = 1; k < 64; k++) {
    term *= (x / (2 * k)) ** 2;
    sum += term;
    if (term < 1e-12 * sum) break;
  }
  return sum;
}

/**
 * The first half of the symmetric impulse response (taps 0…CENTER), normalised to unit DC gain so
 * that a constant input comes out unchanged. A linear-phase FIR is symmetric, so each product pairs
 * two input samples: 32 multiplications per output instead of 63.
 */
const HALF = (() => {
  const full = new Float64Array(TAPS);
  const fc = CUTOFF_HZ / RESAMPLER_INPUT_RATE_HZ;
  let sum = 0;
  for (let n = 0; n < TAPS; n++) {
    const m = n - CENTER;
    const sinc = m === 0 ? 2 * fc : Math.sin(2 * Math.PI * fc * m) / (Math.PI * m);
    const r = m / CENTER;
    const window = besselI0(KAISER_BETA * Math.sqrt(1 - r * r)) / besselI0(KAISER_BETA);
    full[n] = sinc * window;
    sum += full[n]!;
  }
  const half = new Float64Array(CENTER + 1);
  for (let n = 0; n <= CENTER; n++) half[n] = full[n]! / sum;
  return half;
})();

/**
 * The whole impulse response for the SIMD kernel, oldest sample's tap first (symmetric, so the same
 * either way), then a zero for the fourth lane of the last group of four.
 */
const KERNEL = (() => {
  // The kernel's memory must hold a whole window (plus the lane past its last tap) and a block's
  // outputs; a larger BLOCK would spill one region into the next.
  if (
    TAPS + 1 !== KERNEL_TAPS ||
    HISTORY + BLOCK + 1 > KERNEL_WORK_SAMPLES ||
    BLOCK / FACTOR > KERNEL_OUT_SAMPLES
  )
    throw new Error('resampler: BLOCK or TAPS no longer fit the decimator kernel');
  const kernel = createDecimatorKernel();
  for (let n = 0; n < TAPS; n++) kernel.taps[n] = HALF[Math.min(n, HISTORY - n)]!;
  kernel.taps[TAPS] = 0;
  return kernel;
})();

/**
 * One outbound audio stream's 24 kHz → 8 kHz decimator. Not shared between calls: it carries filter
 * history. Create one per call (or per TTS stream) and `reset()` it on barge-in.
 */
export class Resampler {
  /**
   * [HISTORY samples of context | up to BLOCK new samples], as the kernel reads them (16-bit
   * integers are exact in f32), so handing a window over is one copy.
   */
  readonly #work = new Float32Array(HISTORY + BLOCK);
  /** The filled part of #work last handed to the kernel. */
  #window = this.#work.subarray(0, 0);
  #out = new Int16Array(512);
  #outLength = 0;
  /** The view last returned; handed out again while the output length repeats (fixed-size chunks). */
  #view = this.#out.subarray(0, 0);
  /** New input samples to pass before the next output instant (0, 1 or 2). */
  #skip = 0;
  /** The low byte of a sample whose high byte has not arrived yet, or -1. */
  #pendingByte = -1;
  /** Whether any sample went in since the last reset (flush has nothing to drain otherwise). */
  #primed = false;

  /**
   * Feeds a chunk of 24 kHz PCM16 little-endian bytes, any length and any alignment (a trailing odd
   * byte is kept for the next chunk), and returns the 8 kHz samples it completes.
   *
   * The result is a view of a buffer this resampler reuses: consume it (encode, copy) before the next
   * call to any method.
   */
  process(chunk: Uint8Array): Int16Array {
    const n = chunk.length;
    this.#reserve((n + 1) >> 1);
    const work = this.#work;
    let fill = HISTORY;
    let i = 0;
    if (this.#pendingByte >= 0 && n > 0) {
      work[fill++] = ((this.#pendingByte | (chunk[0]! << 8)) << 16) >> 16;
      this.#pendingByte = -1;
      i = 1;
    }
    while (n - i >= 2) {
      const end = i + 2 * Math.min(work.length - fill, (n - i) >> 1);
      // Little-endian by definition of the format, whatever the host: assemble, then sign-extend.
      for (; i < end; i += 2) work[fill++] = ((chunk[i]! | (chunk[i + 1]! << 8)) << 16) >> 16;
      if (fill === work.length) fill = this.#filter(fill);
    }
    if (i < n) this.#pendingByte = chunk[i]!;
    this.#filter(fill);
    return this.#result();
  }

  /**
   * Feeds 24 kHz samples (for callers that already hold PCM16 as samples) and returns the 8 kHz
   * samples they complete; same contract as `process`, and the two may be mixed on one stream only at
   * even byte boundaries.
   */
  processSamples(samples: Int16Array): Int16Array {
    const n = samples.length;
    this.#reserve(n);
    const work = this.#work;
    let fill = HISTORY;
    let i = 0;
    while (i < n) {
      const end = i + Math.min(work.length - fill, n - i);
      for (; i < end; i++) work[fill++] = samples[i]!;
      if (fill === work.length) fill = this.#filter(fill);
    }
    this.#filter(fill);
    return this.#result();
  }

  /**
   * Ends the stream: pushes the last input samples through the filter's delay (feeding 31 zeros, the
   * group delay) so the final 1.3 ms is not lost, returns those output samples, and resets. A stray
   * odd byte is dropped: half a sample is not audio.
   */
  flush(): Int16Array {
    this.#pendingByte = -1;
    this.#reserve(CENTER);
    if (!this.#primed) return this.#result();
    this.#work.fill(0, HISTORY, HISTORY + CENTER);
    this.#filter(HISTORY + CENTER);
    const tail = this.#result();
    this.#work.fill(0, 0, HISTORY);
    this.#skip = 0;
    this.#primed = false;
    return tail;
  }

  /** Forgets all history (barge-in, a new utterance that must not start with the old one's tail). */
  reset(): void {
    this.#work.fill(0, 0, HISTORY);
    this.#skip = 0;
    this.#primed = false;
    this.#pendingByte = -1;
    this.#outLength = 0;
  }

  /** Makes room for the outputs of `inputSamples` more input samples and empties the output. */
  #reserve(inputSamples: number): void {
    this.#outLength = 0;
    const needed = Math.ceil(inputSamples / FACTOR);
    // Grows only when a chunk is larger than any seen before on this stream, so steady state reuses it.
    if (needed > this.#out.length) {
      this.#out = new Int16Array(Math.max(needed, 2 * this.#out.length));
      this.#view = this.#out.subarray(0, 0);
    }
  }

  /**
   * The first #outLength samples of #out. A new view only when the length changes: 20 ms chunks (or
   * any fixed size) then cost no allocation at all; chunks of varying size, one small view each.
   */
  #result(): Int16Array {
    if (this.#view.length !== this.#outLength) this.#view = this.#out.subarray(0, this.#outLength);
    return this.#view;
  }

  /**
   * Computes every output whose newest input sample lies in work[HISTORY, fill), then slides the last
   * HISTORY samples to the front. Returns the next fill position (always HISTORY).
   */
  #filter(fill: number): number {
    if (fill > HISTORY) this.#primed = true;
    const work = this.#work;
    const first = HISTORY + this.#skip;
    if (first < fill) {
      // One copy through a view of the filled part, kept while its length repeats (as #result's).
      if (this.#window.length !== fill) this.#window = work.subarray(0, fill);
      KERNEL.work.set(this.#window);
      const count = KERNEL.filter(first, fill);
      const from = KERNEL.out;
      const out = this.#out;
      let at = this.#outLength;
      for (let i = 0; i < count; i++) out[at++] = from[i]!;
      this.#outLength = at;
      this.#skip = first + FACTOR * count - fill;
    } else {
      this.#skip = first - fill;
    }
    work.copyWithin(0, fill - HISTORY, fill);
    return HISTORY;
  }
}
