import { readFileSync } from 'node:fs';
import wabtInit from 'wabt';
import { describe, expect, test } from 'vitest';
import { KERNEL_TAPS, createDecimatorKernel, decimatorKernelBytes } from '../../src/audio/decimatorKernel.ts';
import { seededRandom } from './signals.ts';

const HISTORY = 62;

/** The same dot product in double precision, rounded as the kernel rounds (ties to even). */
function reference(taps: Float32Array, work: Float32Array, p: number): number {
  let sum = 0;
  for (let n = 0; n < KERNEL_TAPS; n++) sum += taps[n]! * work[p - HISTORY + n]!;
  const floor = Math.floor(sum);
  const diff = sum - floor;
  const rounded = diff > 0.5 || (diff === 0.5 && floor % 2 !== 0) ? floor + 1 : floor;
  return Math.max(-32768, Math.min(32767, rounded));
}

describe('decimator kernel (WebAssembly SIMD)', () => {
  test('the committed bytes are the compilation of decimatorKernel.wat', async () => {
    const wabt = await wabtInit();
    const source = readFileSync(new URL('../../src/audio/decimatorKernel.wat', import.meta.url), 'utf8');
    const module = wabt.parseWat('decimatorKernel.wat', source, { simd: true });
    const { buffer } = module.toBinary({});
    module.destroy();
    // On a mismatch the message carries the new bytes, for WASM_BASE64 in decimatorKernel.ts.
    expect(Buffer.from(buffer).toString('base64')).toBe(decimatorKernelBytes().toString('base64'));
  });

  test('every third output is the taps · window dot product, within one PCM16 step of double precision', () => {
    const kernel = createDecimatorKernel();
    const random = seededRandom(11);
    for (let n = 0; n < KERNEL_TAPS; n++) kernel.taps[n] = n < 63 ? (random() - 0.5) / 8 : 0;
    const fill = 1022;
    for (let i = 0; i <= fill; i++) kernel.work[i] = Math.round((random() - 0.5) * 60_000);
    const count = kernel.filter(HISTORY + 1, fill);
    expect(count).toBe(Math.ceil((fill - HISTORY - 1) / 3));
    let exact = 0;
    for (let i = 0; i < count; i++) {
      const expected = reference(kernel.taps, kernel.work, HISTORY + 1 + 3 * i);
      expect(Math.abs(kernel.out[i]! - expected)).toBeLessThanOrEqual(1);
      if (kernel.out[i] === expected) exact += 1;
    }
    expect(exact / count).toBeGreaterThan(0.95);
  });

  test('clamps to PCM16 and computes nothing when no output is due', () => {
    const kernel = createDecimatorKernel();
    kernel.taps.fill(0);
    kernel.taps[0] = 2;
    kernel.work.fill(30_000);
    expect(kernel.filter(HISTORY, HISTORY + 3)).toBe(1);
    expect(kernel.out[0]).toBe(32767);
    kernel.work.fill(-30_000);
    expect(kernel.filter(HISTORY, HISTORY + 1)).toBe(1);
    expect(kernel.out[0]).toBe(-32768);
    expect(kernel.filter(HISTORY + 2, HISTORY + 2)).toBe(0);
  });
});
