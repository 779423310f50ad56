/**
 * Gathers a call's inbound μ-law frames so that the speech-to-text provider gets one append per
 * `every` frames instead of one per 20 ms frame. Every append is a WebSocket message (JSON build,
 * framing, masking) and, on loopback or a fast link, a `writev` of its own: the largest single cost
 * of a listening call, ahead of reading Twilio's frames. Two frames per append halve it for at most
 * 20 ms of added delay on every other frame (10 ms on average); the μ-law bytes themselves are
 * forwarded untouched, in order.
 *
 * A process-wide sweeper hands on any batch held longer than `MAX_HOLD_MS` (the caller's audio
 * stalled or ended), so audio never waits long for a partner frame; one interval timer serves every
 * call, and it runs only while some batch is held.
 */
import { performance } from 'node:perf_hooks';

const MAX_HOLD_MS = 30;
const SWEEP_MS = 10;
/** Room for 4 Twilio frames; grown when a caller pushes more at once. */
const INITIAL_BYTES = 640;

/** Batchers holding frames, with when their first frame arrived. */
const holding = new Map<FrameBatcher, number>();
let sweeper: NodeJS.Timeout | null = null;

function sweep(): void {
  const now = performance.now();
  for (const [batcher, since] of holding) if (now - since >= MAX_HOLD_MS) batcher.flush();
  if (holding.size === 0 && sweeper !== null) {
    clearInterval(sweeper);
    sweeper = null;
  }
}

/** Receives one batch: its audio as base64, and how many frames and bytes it holds. */
export type BatchSink = (b64: string, frames: number, bytes: number) => void;

export class FrameBatcher {
  readonly #every: number;
  readonly #sink: BatchSink;
  #buffer = Buffer.allocUnsafe(INITIAL_BYTES);
  #bytes = 0;
  #frames = 0;

  /** `every` ≤ 1 hands each frame on at once. */
  constructor(every: number, sink: BatchSink) {
    this.#every = Math.max(1, Math.floor(every));
    this.#sink = sink;
  }

  /** Frames held now. */
  get frames(): number {
    return this.#frames;
  }

  /** Adds one frame (copied: the caller may reuse its buffer at once). */
  push(frame: Uint8Array): void {
    if (frame.length === 0) return;
    if (this.#bytes + frame.length > this.#buffer.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.#buffer.length * 2, this.#bytes + frame.length));
      this.#buffer.copy(grown, 0, 0, this.#bytes);
      this.#buffer = grown;
    }
    this.#buffer.set(frame, this.#bytes);
    this.#bytes += frame.length;
    this.#frames += 1;
    if (this.#frames >= this.#every) {
      this.flush();
      return;
    }
    if (this.#frames === 1) {
      holding.set(this, performance.now());
      sweeper ??= setInterval(sweep, SWEEP_MS).unref();
    }
  }

  /** Hands on what is held now, if anything. */
  flush(): void {
    if (this.#frames === 0) return;
    holding.delete(this);
    const b64 = this.#buffer.toString('base64', 0, this.#bytes);
    const frames = this.#frames;
    const bytes = this.#bytes;
    this.#frames = 0;
    this.#bytes = 0;
    this.#sink(b64, frames, bytes);
  }

  /** Forgets what is held without handing it on; returns how many frames that was. */
  discard(): number {
    const frames = this.#frames;
    holding.delete(this);
    this.#frames = 0;
    this.#bytes = 0;
    return frames;
  }
}

/** Batchers holding frames right now (tests: nothing may stay held after a call). */
export function heldBatches(): number {
  return holding.size;
}
