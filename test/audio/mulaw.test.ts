import { describe, expect, test } from 'vitest';
import {
  MULAW_SILENCE,
  decodeMulaw,
  encodeMulaw,
  linearToMulaw,
  mulawToLinear,
} from '../../src/audio/mulaw.ts';

/**
 * The classic G.711 μ-law expansion table for codes 0x00–0x7F (the negative half), as published with
 * the Reese/Campbell codec and copied into SoX, SDL and countless telephony projects. Codes 0x80–0xFF
 * are the same magnitudes, positive. Typed in here, not computed, so it checks the implementation
 * against the published values rather than against itself.
 */
const CLASSIC_NEGATIVE_HALF = [
  -32124, -31100, -30076, -29052, -28028, -27004, -25980, -24956, -23932, -22908, -21884, -20860, -19836,
  -18812, -17788, -16764, -15996, -15484, -14972, -14460, -13948, -13436, -12924, -12412, -11900, -11388,
  -10876, -10364, -9852, -9340, -8828, -8316, -7932, -7676, -7420, -7164, -6908, -6652, -6396, -6140, -5884,
  -5628, -5372, -5116, -4860, -4604, -4348, -4092, -3900, -3772, -3644, -3516, -3388, -3260, -3132, -3004,
  -2876, -2748, -2620, -2492, -2364, -2236, -2108, -1980, -1884, -1820, -1756, -1692, -1628, -1564, -1500,
  -1436, -1372, -1308, -1244, -1180, -1116, -1052, -988, -924, -876, -844, -812, -780, -748, -716, -684, -652,
  -620, -588, -556, -524, -492, -460, -428, -396, -372, -356, -340, -324, -308, -292, -276, -260, -244, -228,
  -212, -196, -180, -164, -148, -132, -120, -112, -104, -96, -88, -80, -72, -64, -56, -48, -40, -32, -24, -16,
  -8, 0,
];

const ALL_SAMPLES = Int16Array.from({ length: 65536 }, (_, i) => i - 32768);

describe('μ-law', () => {
  test('silence is 0xFF, and both zero codes decode to a plain 0', () => {
    expect(MULAW_SILENCE).toBe(0xff);
    expect(linearToMulaw(0)).toBe(0xff);
    expect(Object.is(mulawToLinear(0xff), 0)).toBe(true);
    // 0x7F is "negative zero"; a -0 leaking out would be harmless in arithmetic but not in equality.
    expect(Object.is(mulawToLinear(0x7f), 0)).toBe(true);
  });

  test('the extremes: ±32124 decode from 0x80/0x00, and full scale clips to them', () => {
    expect(mulawToLinear(0x80)).toBe(32124);
    expect(mulawToLinear(0x00)).toBe(-32124);
    expect(linearToMulaw(32767)).toBe(0x80);
    expect(linearToMulaw(32635)).toBe(0x80);
    expect(linearToMulaw(-32768)).toBe(0x00);
    expect(linearToMulaw(-32767)).toBe(0x00);
  });

  test('all 256 codes decode to the classic table', () => {
    for (let code = 0; code < 128; code++) {
      expect(mulawToLinear(code), `code 0x${code.toString(16)}`).toBe(CLASSIC_NEGATIVE_HALF[code]);
      expect(mulawToLinear(code + 128), `code 0x${(code + 128).toString(16)}`).toBe(
        -CLASSIC_NEGATIVE_HALF[code]! || 0,
      );
    }
  });

  test('every code survives decode → encode, except negative zero which becomes 0xFF', () => {
    for (let code = 0; code < 256; code++) {
      expect(linearToMulaw(mulawToLinear(code)), `code 0x${code.toString(16)}`).toBe(
        code === 0x7f ? 0xff : code,
      );
    }
  });

  test('round trip error is at most half a quantisation step: 4 << segment, 512 in the top one', () => {
    let maxUnclipped = 0;
    let maxClipped = 0;
    const violations: number[] = [];
    for (const s of ALL_SAMPLES) {
      const error = Math.abs(mulawToLinear(linearToMulaw(s)) - s);
      const magnitude = Math.abs(s);
      if (magnitude > 32635) {
        maxClipped = Math.max(maxClipped, error);
        continue;
      }
      // G.711 segment of the biased magnitude: step 8 << segment, decoded at the step's middle.
      const segment = 31 - Math.clz32((magnitude + 0x84) >> 7);
      if (error > 4 << segment) violations.push(s);
      maxUnclipped = Math.max(maxUnclipped, error);
    }
    expect(violations).toEqual([]);
    expect(maxUnclipped).toBe(512);
    // Beyond the clip level every codec saturates at ±32124.
    expect(maxClipped).toBe(32768 - 32124);
  });

  test('encoding is monotonic: a louder sample never decodes quieter', () => {
    const reversals: number[] = [];
    let previous = -Infinity;
    for (const s of ALL_SAMPLES) {
      const decoded = mulawToLinear(linearToMulaw(s));
      if (decoded < previous) reversals.push(s);
      previous = decoded;
    }
    expect(reversals).toEqual([]);
  });

  test('values beyond 16 bits saturate instead of wrapping to the opposite sign', () => {
    expect(linearToMulaw(40_000)).toBe(0x80);
    expect(linearToMulaw(-40_000)).toBe(0x00);
    expect(linearToMulaw(32768)).toBe(0x80);
  });

  test('the buffer versions agree with the single-sample ones on every input', () => {
    const codes = Uint8Array.from({ length: 256 }, (_, i) => i);
    const decoded = new Int16Array(256);
    decodeMulaw(codes, decoded);
    for (let code = 0; code < 256; code++) expect(decoded[code]).toBe(mulawToLinear(code));

    const encoded = new Uint8Array(ALL_SAMPLES.length);
    encodeMulaw(ALL_SAMPLES, encoded);
    for (let i = 0; i < ALL_SAMPLES.length; i++) {
      if (encoded[i] !== linearToMulaw(ALL_SAMPLES[i]!)) expect.fail(`sample ${ALL_SAMPLES[i]}`);
    }
  });

  test('the buffer versions write only the first src.length entries and refuse a short dst', () => {
    const dst = new Int16Array(4).fill(7);
    decodeMulaw(new Uint8Array([0x80, 0x00]), dst);
    expect([...dst]).toEqual([32124, -32124, 7, 7]);
    expect(() => decodeMulaw(new Uint8Array(161), new Int16Array(160))).toThrow(RangeError);
    expect(() => encodeMulaw(new Int16Array(161), new Uint8Array(160))).toThrow(RangeError);
  });

  test('a Twilio frame of μ-law silence decodes to 160 zero samples', () => {
    const pcm = new Int16Array(160).fill(123);
    decodeMulaw(new Uint8Array(160).fill(MULAW_SILENCE), pcm);
    expect(pcm.every((s) => s === 0)).toBe(true);
  });
});
