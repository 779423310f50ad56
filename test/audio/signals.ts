/** Synthetic test signals and measurements shared by the audio tests. */

/** A sine of `frequencyHz` sampled at `rateHz`, rounded to PCM16. */
export function tone(frequencyHz: number, amplitude: number, samples: number, rateHz: number): Int16Array {
  const out = new Int16Array(samples);
  for (let i = 0; i < samples; i++)
    out[i] = Math.round(amplitude * Math.sin((2 * Math.PI * frequencyHz * i) / rateHz));
  return out;
}

/**
 * Amplitude of the `frequencyHz` component of `samples` (projection onto sine and cosine). Exact for a
 * whole number of periods in the window, which the tests arrange (1 s windows, integer frequencies).
 */
export function amplitudeAt(samples: Int16Array, frequencyHz: number, rateHz: number): number {
  let re = 0;
  let im = 0;
  for (let i = 0; i < samples.length; i++) {
    const phase = (2 * Math.PI * frequencyHz * i) / rateHz;
    re += samples[i]! * Math.cos(phase);
    im += samples[i]! * Math.sin(phase);
  }
  const scale = frequencyHz === 0 ? 1 : 2;
  return (scale * Math.hypot(re, im)) / samples.length;
}

/** 20·log10(a / b). */
export function db(a: number, b: number): number {
  return 20 * Math.log10(a / b);
}

/** PCM16 little-endian bytes, the wire format of OpenAI TTS `pcm`. */
export function toLittleEndianBytes(samples: Int16Array): Uint8Array {
  const bytes = new Uint8Array(samples.length * 2);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < samples.length; i++) view.setInt16(2 * i, samples[i]!, true);
  return bytes;
}

/** Deterministic pseudo-random numbers in [0, 1) (mulberry32), so failures reproduce. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Concatenates Int16Arrays (copies, so callers may pass reused views). */
export function concat(parts: readonly Int16Array[]): Int16Array {
  const out = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

/** Gaussian white noise at 8 kHz whose mean |sample| is about `meanAbs`. */
export function noise(meanAbs: number, ms: number, seed: number): Int16Array {
  const random = seededRandom(seed);
  const sigma = meanAbs / Math.sqrt(2 / Math.PI);
  const out = new Int16Array(ms * 8);
  for (let i = 0; i < out.length; i++) {
    const gaussian = Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
    out[i] = clamp16(sigma * gaussian);
  }
  return out;
}

/**
 * Something with the shape of speech at 8 kHz: a 140 Hz voice with harmonics up to 3 kHz, its loudness
 * swinging between 30 % and 100 % of `peakMeanAbs` at about 4 syllables a second.
 */
export function speechLike(peakMeanAbs: number, ms: number): Int16Array {
  const out = new Int16Array(ms * 8);
  const harmonics = [1, 2, 3, 5, 8, 13, 21];
  // Mean |x| of this harmonic sum at unit gain, measured once so peakMeanAbs means what it says.
  const voice = (t: number) =>
    harmonics.reduce((sum, h, k) => sum + Math.sin(2 * Math.PI * 140 * h * t + k) / (k + 1), 0);
  let meanAbs = 0;
  for (let i = 0; i < 8000; i++) meanAbs += Math.abs(voice(i / 8000)) / 8000;
  for (let i = 0; i < out.length; i++) {
    const t = i / 8000;
    const envelope = 0.3 + 0.7 * Math.abs(Math.sin(Math.PI * 4 * t));
    out[i] = clamp16((peakMeanAbs / meanAbs) * envelope * voice(t));
  }
  return out;
}

/** Sample-wise sum, saturated to 16 bits; the result is as long as the longer input. */
export function mix(a: Int16Array, b: Int16Array): Int16Array {
  const out = new Int16Array(Math.max(a.length, b.length));
  for (let i = 0; i < out.length; i++) out[i] = clamp16((a[i] ?? 0) + (b[i] ?? 0));
  return out;
}

function clamp16(x: number): number {
  return Math.max(-32768, Math.min(32767, Math.round(x)));
}
