/**
 * Gathers a call's inbound μ-law frames so that the speech-to-text provider gets one append per
 * `every` frames instead of one per 20 ms frame. Every append is a WebSocket message (JSON build,
 * framing, masking) and, on loopback or a fast link, a `writev` of its own: the largest single cost
 * of a listening call, ahead of reading Twilio's frames. Two frames per append halve it for at most
 * 20 ms of added delay on every other frame (10 ms on average); the μ-law bytes themselves are
 * forwarded untouched, in order.
 *
 * A process-wide sweeper hands on any batch held longer than its batcher's hold limit (default
 * `MAX_HOLD_MS`; the caller's audio stalled or ended), so audio never waits long for a partner frame.
 * One interval timer serves every call while any batcher is open; each batcher stays in its set from
 * creation to `close`, with the time of its oldest held frame in a field, so the hot path adds and
 * removes nothing (adding and deleting a Map entry per batch made V8 rebuild the table over and
 * over: garbage, and GC pauses).
 *
 * `setEvery` changes the batch size and hold limit at any time: larger batches while nothing waits
 * on the audio, small ones again the moment an utterance may be ending (what is held goes out at
 * once).
 */
import { performance } from 'node:perf_hooks';

/** The default hold limit. */
const MAX_HOLD_MS = 30;
const SWEEP_MS = 10;
/** Room for 4 Twilio frames; grown when a caller pushes more at once. */
const INITIAL_BYTES = 640;

/** Open batchers. */
const open = new Set<FrameBatcher>();
let sweeper: NodeJS.Timeout | null = null;

function sweep(): void {
  const now = performance.now();
  for (const batcher of open) batcher.flushIfDue(now);
}

/** Receives one batch: its audio as base64, and how many frames and bytes it holds. */
export type BatchSink = (b64: string, frames: number, bytes: number) => void;

export class FrameBatcher {
  #every: number;
  #maxHoldMs = MAX_HOLD_MS;
  readonly #sink: BatchSink;
  #buffer = Buffer.allocUnsafe(INITIAL_BYTES);
  #bytes = 0;
  #frames = 0;
  /** performance.now() of the oldest held frame. */
  #since = 0;
  #closed = false;

  /**
   * `every` ≤ 1 hands each frame on at once. A batcher made that way stays so: it never joins the
   * sweeper, and `setEvery` cannot make it batch.
   */
  constructor(every: number, sink: BatchSink) {
    this.#every = Math.max(1, Math.floor(every));
    this.#sink = sink;
    if (this.#every > 1) {
      open.add(this);
      sweeper ??= setInterval(sweep, SWEEP_MS).unref();
    }
  }

  /**
   * From now on, batches of `every` frames, each handed on at most `maxHoldMs` after its oldest
   * frame (checked every 10 ms). What is held already goes out at once when it reaches the new size.
   */
  setEvery(every: number, maxHoldMs: number = MAX_HOLD_MS): void {
    if (!open.has(this)) return;
    this.#every = Math.max(1, Math.floor(every));
    this.#maxHoldMs = maxHoldMs;
    if (this.#frames >= this.#every) this.flush();
  }

  /** Frames held now. */
  get frames(): number {
    return this.#frames;
  }

  /** Adds one frame (copied: the caller may reuse its buffer at once). After `close`, hands it on alone. */
  push(frame: Uint8Array): void {
    if (frame.length === 0) return;
    if (this.#bytes + frame.length > this.#buffer.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.#buffer.length * 2, this.#bytes + frame.length));
      this.#buffer.copy(grown, 0, 0, this.#bytes);
      this.#buffer = grown;
    }
    this.#buffer.set(frame, this.#bytes);
    this.#bytes += frame.length;
    if (this.#frames === 0) this.#since = performance.now();
    this.#frames += 1;
    if (this.#frames >= this.#every || this.#closed) this.flush();
  }

  /** Hands on what is held now, if anything. */
  flush(): void {
    if (this.#frames === 0) return;
    const b64 = this.#buffer.toString('base64', 0, this.#bytes);
    const frames = this.#frames;
    const bytes = this.#bytes;
    this.#frames = 0;
    this.#bytes = 0;
    this.#sink(b64, frames, bytes);
  }

  /** The sweeper's check: flushes when the oldest held frame has waited its hold limit by `now`. */
  flushIfDue(now: number): void {
    if (this.#frames > 0 && now - this.#since >= this.#maxHoldMs) this.flush();
  }

  /** Forgets what is held without handing it on; returns how many frames that was. */
  discard(): number {
    const frames = this.#frames;
    this.#frames = 0;
    this.#bytes = 0;
    return frames;
  }

  /** Hands on what is held and leaves the sweeper (frames pushed later go out one by one). */
  close(): void {
    this.flush();
    this.#closed = true;
    open.delete(this);
    if (open.size === 0 && sweeper !== null) {
      clearInterval(sweeper);
      sweeper = null;
    }
  }
}

/** Batchers holding frames right now (tests: nothing may stay held after a call). */
export function heldBatches(): number {
  let held = 0;
  for (const batcher of open) if (batcher.frames > 0) held += 1;
  return held;
}

/** Batchers not yet closed (tests: every session must close its batcher). */
export function openBatchers(): number {
  return open.size;
}
