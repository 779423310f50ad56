/**
 * Cuts outbound μ-law audio into whole frames for Twilio `media` messages.
 *
 * Twilio documents no required outbound frame size, but odd-sized chunks cause audible jitter
 * (openai-agents-python #1906, PR #1926, and a user report on openai-agents-js PR #1184), so we send
 * whole multiples of 20 ms / 160 bytes, as Twilio's own inbound frames are (research/protocols.md
 * §1.5). Small frames also keep `clear` and marks fine-grained (§1.4). The remainder of a chunk waits
 * for the next one; at the end of an utterance `flush` pads it with μ-law silence.
 *
 * Frames are handed to a synchronous callback in one buffer the framer reuses, so framing allocates
 * nothing per frame; the only per-frame allocation on the way out is the base64 string itself.
 */
import { Buffer } from 'node:buffer';
import { MULAW_SILENCE, linearToMulaw } from './mulaw.ts';

/** 20 ms of 8 kHz μ-law: 160 samples, one byte each (§1.5). */
export const MULAW_FRAME_BYTES = 160;

export interface FramerOptions {
  /**
   * Bytes per frame: a positive multiple of 160 (20 ms), so frames stay aligned with Twilio's own.
   * Default 160. A larger frame (e.g. 320 = 40 ms; PR #1926 chose 50 ms) means fewer messages per
   * second at the price of coarser `clear` and marks.
   */
  readonly frameBytes?: number;
}

/**
 * Receives each complete frame. `frame` is the framer's own buffer, overwritten by the next frame:
 * encode or copy it before returning (`frameToBase64` does). It is a Buffer so base64 needs no view.
 */
export type FrameListener = (frame: Buffer) => void;

/** Frames one outbound stream (one per call). Not safe to share: it holds a partial frame. */
export class Framer {
  readonly #frame: Buffer;
  readonly #onFrame: FrameListener;
  /** Bytes of the current frame already filled. */
  #fill = 0;
  /** Bumped by reset(), so a listener that resets mid-push stops the rest of that push. */
  #epoch = 0;

  constructor(onFrame: FrameListener, options: FramerOptions = {}) {
    const frameBytes = options.frameBytes ?? MULAW_FRAME_BYTES;
    if (!Number.isInteger(frameBytes) || frameBytes <= 0 || frameBytes % MULAW_FRAME_BYTES !== 0) {
      throw new RangeError(`Framer: frameBytes must be a positive multiple of 160, got ${frameBytes}`);
    }
    // allocUnsafeSlow: a buffer of our own, not a slice of Node's shared pool, since it lives as long
    // as the call; every byte is written before it is read.
    this.#frame = Buffer.allocUnsafeSlow(frameBytes);
    this.#onFrame = onFrame;
  }

  /** Bytes waiting for the rest of their frame. */
  get pendingBytes(): number {
    return this.#fill;
  }

  /** Adds μ-law bytes (any length); emits every frame they complete. */
  push(mulaw: Uint8Array): void {
    const frame = this.#frame;
    const size = frame.length;
    const epoch = this.#epoch;
    const n = mulaw.length;
    let fill = this.#fill;
    for (let i = 0; i < n;) {
      const end = i + Math.min(size - fill, n - i);
      // A plain loop rather than frame.set(mulaw.subarray(…)): subarray would allocate a view per frame.
      while (i < end) frame[fill++] = mulaw[i++]!;
      if (fill < size) break;
      this.#fill = 0;
      this.#onFrame(frame);
      if (this.#epoch !== epoch) return;
      fill = 0;
    }
    this.#fill = fill;
  }

  /**
   * Adds 8 kHz PCM16 samples, μ-law encoding them straight into the frame (the resampler's output
   * needs no intermediate buffer); emits every frame they complete.
   */
  pushPcm(samples: Int16Array): void {
    const frame = this.#frame;
    const size = frame.length;
    const epoch = this.#epoch;
    const n = samples.length;
    let fill = this.#fill;
    for (let i = 0; i < n;) {
      const end = i + Math.min(size - fill, n - i);
      while (i < end) frame[fill++] = linearToMulaw(samples[i++]!);
      if (fill < size) break;
      this.#fill = 0;
      this.#onFrame(frame);
      if (this.#epoch !== epoch) return;
      fill = 0;
    }
    this.#fill = fill;
  }

  /**
   * Ends an utterance: pads a partial frame with μ-law silence (0xFF, which decodes to 0) and emits it.
   * Padding rather than sending a short frame keeps every message a whole 20 ms, so Twilio's playout
   * and the mark that follows stay on frame boundaries; the cost is under 20 ms of silence at the end
   * of the utterance. Padding with 0x00 instead would be a full-scale negative sample: a click.
   * Returns whether a frame was emitted.
   */
  flush(): boolean {
    if (this.#fill === 0) return false;
    this.#frame.fill(MULAW_SILENCE, this.#fill);
    this.#fill = 0;
    this.#onFrame(this.#frame);
    return true;
  }

  /** Drops a partial frame (barge-in: the rest of the utterance will never be sent). */
  reset(): void {
    this.#fill = 0;
    this.#epoch++;
  }
}

/**
 * Base64 of one frame, the `media.payload` of an outbound Twilio message (§1.3). 160 bytes give 216
 * characters. A Buffer (what `Framer` emits) is encoded directly; any other Uint8Array costs one
 * Buffer view first.
 */
export function frameToBase64(frame: Uint8Array): string {
  return (
    Buffer.isBuffer(frame) ? frame : Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength)
  ).toString('base64');
}
