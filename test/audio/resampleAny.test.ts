import { describe, expect, test } from 'vitest';
import { resample } from '../../src/audio/resampleAny.ts';
import { amplitudeAt, db, tone } from './signals.ts';

const RATES = [11_025, 16_000, 22_050, 44_100, 48_000];

describe('resample', () => {
  test('keeps telephone-band tones at their level from every common rate to 8 kHz', () => {
    for (const rate of RATES) {
      for (const hz of [300, 1000, 3000]) {
        const out = resample(tone(hz, 10_000, rate, rate), rate, 8000);
        expect(out).toHaveLength(8000);
        // Skip the edges (zero padding) and measure a whole number of periods.
        const middle = out.subarray(2000, 6000);
        expect(Math.abs(db(amplitudeAt(middle, hz, 8000), 10_000))).toBeLessThan(0.1);
      }
    }
  });

  test('removes what would alias: 4.5–7 kHz tones are at least 70 dB down after 8 kHz sampling', () => {
    for (const rate of RATES) {
      for (const hz of [4500, 5000, 7000]) {
        if (hz >= rate / 2) continue;
        const out = resample(tone(hz, 10_000, rate, rate), rate, 8000);
        const alias = 8000 - hz;
        // Whatever is left anywhere (the alias, or leakage) must be tiny.
        const peak = out.subarray(1000, 7000).reduce((m, s) => Math.max(m, Math.abs(s)), 0);
        expect(db(amplitudeAt(out, alias, 8000), 10_000)).toBeLessThan(-70);
        expect(peak).toBeLessThanOrEqual(3);
      }
    }
  });

  test('passes DC exactly, up to the first and last sample', () => {
    const out = resample(new Int16Array(4410).fill(1234), 44_100, 8000);
    expect(out).toHaveLength(800);
    // Away from the edges every output is the input; at the edges the zero padding shows.
    expect(out.subarray(200, 600).every((s) => s === 1234)).toBe(true);
  });

  test('upsamples without imaging (6 kHz → 8 kHz)', () => {
    const out = resample(tone(1000, 10_000, 6000, 6000), 6000, 8000);
    expect(out).toHaveLength(8000);
    expect(Math.abs(db(amplitudeAt(out.subarray(2000, 6000), 1000, 8000), 10_000))).toBeLessThan(0.1);
    // The image of 1 kHz about the old Nyquist frequency (3 kHz) would be at 5 kHz → aliased to 3 kHz.
    expect(db(amplitudeAt(out.subarray(2000, 6000), 3000, 8000), 10_000)).toBeLessThan(-70);
  });

  test('equal rates copy; bad rates throw', () => {
    const input = Int16Array.from([1, 2, 3]);
    const out = resample(input, 8000, 8000);
    expect([...out]).toEqual([1, 2, 3]);
    expect(out).not.toBe(input);
    expect(() => resample(input, 0, 8000)).toThrow(RangeError);
    expect(() => resample(input, 8000, Number.NaN)).toThrow(RangeError);
  });
});
