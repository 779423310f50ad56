/**
 * The resampler's inner loop as WebAssembly SIMD: one output of the 63-tap low-pass per call of the
 * loop, as a dot product of the taps with the window, four lanes at a time (f32x4). The source is
 * `decimatorKernel.wat` beside this file; the bytes below are its compilation (wabt's wat2wasm, SIMD
 * on), and `test/audio/decimatorKernel.test.ts` fails when the two drift apart, printing the new
 * compilation's base64 to paste below after an edit of the .wat.
 *
 * One instance serves every resampler in the process: a call copies its window in, runs, and copies
 * the outputs out, synchronously, so no two resamplers ever share the memory at once.
 */
import { Buffer } from 'node:buffer';

/** The slice of the WebAssembly API used here (the project's TypeScript libs carry no DOM types). */
declare const WebAssembly: {
  readonly Module: new (bytes: Uint8Array) => object;
  readonly Instance: new (module: object, imports: object) => { readonly exports: Record<string, unknown> };
};

const WASM_BASE64 =
  'AGFzbQEAAAABBwFgAn9/AX8DAgEABQMBAAEHEwIGbWVtb3J5AgAGZmlsdGVyAAAKywEByAEEA38BewF9AX8CQANAIAAgAU8NAUGAAiAAQT5rQQJ0aiED/QwAAAAAAAAAAAAAAAAAAAAAIQVBACEEA0AgBSAE/QAEACADIARq/QAEAP3mAf3kASEFIARBEGohBCAEQYACSQ0ACyAF/R8AIAX9HwGSIAX9HwIgBf0fA5KSIQYgBpD8ACEHIAdB//8BSgRAQf//ASEHCyAHQYCAfkgEQEGAgH4hBwtBgCIgAkEBdGogBzsBACACQQFqIQIgAEEDaiEADAALCyACCw==';

/** Byte offsets in the module's memory (see the .wat). */
const TAPS_AT = 0;
const WORK_AT = 256;
const OUT_AT = 4352;
/** Lanes the kernel reads for taps: 63 and a zero. */
export const KERNEL_TAPS = 64;
/** Room for the window: history plus one block of new samples, plus the lane past the last tap. */
export const KERNEL_WORK_SAMPLES = 1024;
export const KERNEL_OUT_SAMPLES = 512;

export interface DecimatorKernel {
  /** The 63 taps (then 0), oldest sample's first; set once. */
  readonly taps: Float32Array;
  /** The window: work[0] is the oldest sample of the first output's window. */
  readonly work: Float32Array;
  /** Where `filter` writes its outputs. */
  readonly out: Int16Array;
  /**
   * Computes the outputs whose newest sample is at p, p + 3, … while below `fill` (p ≥ 62), rounded
   * and clamped to PCM16 into `out`; returns how many.
   */
  filter(p: number, fill: number): number;
}

export function createDecimatorKernel(): DecimatorKernel {
  const module = new WebAssembly.Module(decimatorKernelBytes());
  const instance = new WebAssembly.Instance(module, {});
  const memory = instance.exports['memory'] as { readonly buffer: ArrayBuffer };
  const filter = instance.exports['filter'] as (p: number, fill: number) => number;
  return {
    taps: new Float32Array(memory.buffer, TAPS_AT, KERNEL_TAPS),
    work: new Float32Array(memory.buffer, WORK_AT, KERNEL_WORK_SAMPLES),
    out: new Int16Array(memory.buffer, OUT_AT, KERNEL_OUT_SAMPLES),
    filter,
  };
}

/** The compiled module's bytes (the test checks them against the source). */
export function decimatorKernelBytes(): Buffer {
  return Buffer.from(WASM_BASE64, 'base64');
}
