import { describe, expect, test } from 'vitest';
import { Resampler } from '../../src/audio/resampler.ts';
import { amplitudeAt, concat, db, seededRandom, toLittleEndianBytes, tone } from './signals.ts';

const IN_HZ = 24_000;
const OUT_HZ = 8_000;
const AMPLITUDE = 16_000;

/**
 * Passes 1.1 s of a tone through a fresh resampler and measures, over the last full second of output
 * (the filter's 1.3 ms start-up transient excluded), the amplitude where the tone lands after
 * decimation: at f itself when f < 4 kHz, otherwise at its alias |f − 8 kHz·k| folded into 0–4 kHz.
 */
function gainDb(frequencyHz: number): { landsAtHz: number; gainDb: number } {
  const out = new Resampler().processSamples(tone(frequencyHz, AMPLITUDE, IN_HZ * 1.1, IN_HZ));
  const lastSecond = out.subarray(out.length - OUT_HZ);
  let landsAtHz = frequencyHz % OUT_HZ;
  if (landsAtHz > OUT_HZ / 2) landsAtHz = OUT_HZ - landsAtHz;
  return { landsAtHz, gainDb: db(amplitudeAt(lastSecond, landsAtHz, OUT_HZ), AMPLITUDE) };
}

describe('Resampler (24 kHz → 8 kHz)', () => {
  test('1 s of input gives exactly 8000 samples', () => {
    expect(new Resampler().processSamples(new Int16Array(IN_HZ))).toHaveLength(OUT_HZ);
    expect(new Resampler().process(new Uint8Array(2 * IN_HZ))).toHaveLength(OUT_HZ);
  });

  test('the telephone band passes: 1 kHz within 0.1 dB, 3 kHz within 0.5 dB, 3.4 kHz within 3 dB', () => {
    expect(Math.abs(gainDb(1_000).gainDb)).toBeLessThan(0.1);
    expect(Math.abs(gainDb(300).gainDb)).toBeLessThan(0.1);
    expect(gainDb(3_000).gainDb).toBeGreaterThan(-0.5);
    expect(gainDb(3_400).gainDb).toBeGreaterThan(-3);
  });

  test('5, 6 and 10 kHz are at least 60 dB down where they alias to (3, 2 and 2 kHz)', () => {
    for (const f of [5_000, 6_000, 10_000]) {
      const { landsAtHz, gainDb: g } = gainDb(f);
      expect(landsAtHz).toBe(f === 5_000 ? 3_000 : 2_000);
      expect(g, `${f} Hz`).toBeLessThan(-60);
    }
  });

  test('everything from 4.4 kHz to 12 kHz is at least 60 dB down after folding', () => {
    const leaks: string[] = [];
    for (let f = 4_450; f < 12_000; f += 200) {
      const { gainDb: g } = gainDb(f);
      if (g > -60) leaks.push(`${f} Hz: ${g.toFixed(1)} dB`);
    }
    expect(leaks).toEqual([]);
  });

  test('without the low-pass the same check fails (keeping every third sample aliases 6 kHz at full level)', () => {
    // Guards the test above: the measurement does see aliasing when there is aliasing to see.
    const input = tone(6_000, AMPLITUDE, IN_HZ, IN_HZ);
    const naive = Int16Array.from({ length: OUT_HZ }, (_, k) => input[3 * k]!);
    expect(db(amplitudeAt(naive, 2_000, OUT_HZ), AMPLITUDE)).toBeGreaterThan(-1);
  });

  test('chunks of any size, odd byte splits included, give the one-shot result sample for sample', () => {
    const random = seededRandom(42);
    const input = new Int16Array(IN_HZ);
    for (let i = 0; i < input.length; i++) input[i] = Math.round((random() - 0.5) * 60_000);
    const bytes = toLittleEndianBytes(input);
    const oneShot = new Resampler().process(bytes).slice();

    for (const maxChunk of [1, 2, 3, 7, 161, 960, 5_000]) {
      const resampler = new Resampler();
      const parts: Int16Array[] = [];
      for (let at = 0; at < bytes.length;) {
        const size = Math.min(bytes.length - at, Math.floor(random() * (maxChunk + 1)));
        parts.push(resampler.process(bytes.subarray(at, at + size)).slice());
        at += size;
      }
      expect(concat(parts), `chunks up to ${maxChunk} bytes`).toEqual(oneShot);
    }
  });

  test('sample input and byte input give the same result', () => {
    const input = tone(1_234, 20_000, 5_000, IN_HZ);
    const fromSamples = new Resampler().processSamples(input).slice();
    const resampler = new Resampler();
    const fromBytes = concat([
      resampler.process(toLittleEndianBytes(input.subarray(0, 1_001))).slice(),
      resampler.processSamples(input.subarray(1_001)).slice(),
    ]);
    expect(fromBytes).toEqual(fromSamples);
  });

  test('DC passes unchanged once the filter is full, and silence stays exactly silent', () => {
    const dc = new Resampler().processSamples(new Int16Array(2_400).fill(-1_000));
    expect([...dc.subarray(21)].every((s) => s === -1_000)).toBe(true);
    const silence = new Resampler().process(new Uint8Array(4_800));
    expect(silence.every((s) => s === 0)).toBe(true);
  });

  test('full-scale square waves overshoot into saturation, never wrap to the opposite sign', () => {
    // 500 Hz square: 24 input samples high, 24 low, i.e. 8 output samples each.
    const square = Int16Array.from({ length: 4_800 }, (_, i) =>
      Math.floor(i / 24) % 2 === 0 ? 32767 : -32768,
    );
    const out = new Resampler().processSamples(square);
    const wrong: number[] = [];
    for (let k = 24; k < out.length; k++) {
      // Output k is centred on input 3k − 31 (the group delay); look only at the middle half of each
      // plateau, clear of the band-limited edges.
      const centre = 3 * k - 31;
      const position = centre % 24;
      if (position < 6 || position >= 18) continue;
      const high = Math.floor(centre / 24) % 2 === 0;
      if (high ? out[k]! < 16_000 : out[k]! > -16_000) wrong.push(k);
    }
    expect(wrong).toEqual([]);
    expect(Math.max(...out)).toBe(32767);
  });

  test('the output buffer is reused, and so is the view itself while chunks keep their size', () => {
    const resampler = new Resampler();
    const first = resampler.process(new Uint8Array(960));
    const second = resampler.process(new Uint8Array(960));
    expect(second).toBe(first);
    expect(second).toHaveLength(160);
    const shorter = resampler.process(new Uint8Array(480));
    expect(shorter).toHaveLength(80);
    expect(shorter.buffer).toBe(first.buffer);
  });

  test('flush drains the filter delay exactly as 31 trailing zeros would, then starts afresh', () => {
    const input = tone(440, 10_000, 1_000, IN_HZ);
    const flushed = new Resampler();
    const body = flushed.processSamples(input).slice();
    const tail = flushed.flush().slice();
    const padded = new Resampler().processSamples(concat([input, new Int16Array(31)]));
    expect(concat([body, tail])).toEqual(padded);
    expect(tail.some((s) => s !== 0)).toBe(true);
    expect(flushed.flush()).toHaveLength(0);
    expect(flushed.processSamples(input)).toEqual(body);
  });

  test('flush drops a stray odd byte, and reset forgets history, phase and the odd byte', () => {
    const input = toLittleEndianBytes(tone(700, 12_000, 999, IN_HZ));
    const fresh = new Resampler().process(input).slice();

    const resampler = new Resampler();
    resampler.process(new Uint8Array([1, 2, 3, 4, 5])); // two samples and an odd byte
    resampler.reset();
    expect(resampler.process(input)).toEqual(fresh);

    const flushed = new Resampler();
    flushed.process(new Uint8Array([9]));
    expect(flushed.flush()).toHaveLength(0);
    expect(flushed.process(input)).toEqual(fresh);
  });
});
