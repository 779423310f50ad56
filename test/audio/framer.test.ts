import { Buffer } from 'node:buffer';
import { describe, expect, test } from 'vitest';
import { Framer, MULAW_FRAME_BYTES, frameToBase64 } from '../../src/audio/framer.ts';
import { MULAW_SILENCE, encodeMulaw } from '../../src/audio/mulaw.ts';
import { seededRandom, tone } from './signals.ts';

/** A framer whose frames are copied out as they come, plus the identity of each emitted buffer. */
function recording(frameBytes?: number) {
  const frames: Uint8Array[] = [];
  const buffers = new Set<Uint8Array>();
  const framer = new Framer(
    (frame) => {
      frames.push(Uint8Array.from(frame));
      buffers.add(frame);
    },
    frameBytes === undefined ? {} : { frameBytes },
  );
  return { framer, frames, buffers };
}

function bytes(length: number, seed: number): Uint8Array {
  const random = seededRandom(seed);
  return Uint8Array.from({ length }, () => Math.floor(random() * 256));
}

describe('Framer', () => {
  test('chunks of any size come out as exact 160-byte frames, in order, remainder carried', () => {
    const random = seededRandom(7);
    const stream = bytes(10_007, 1);
    for (const maxChunk of [1, 159, 160, 161, 479, 4_000]) {
      const { framer, frames } = recording();
      for (let at = 0; at < stream.length;) {
        const size = Math.min(stream.length - at, Math.floor(random() * (maxChunk + 1)));
        framer.push(stream.subarray(at, at + size));
        at += size;
      }
      expect(frames).toHaveLength(62);
      expect(frames.every((f) => f.length === MULAW_FRAME_BYTES)).toBe(true);
      expect(Buffer.concat(frames)).toEqual(Buffer.from(stream.subarray(0, 62 * 160)));
      expect(framer.pendingBytes).toBe(10_007 - 62 * 160);
    }
  });

  test('flush pads the final partial frame with μ-law silence (0xFF), and only when there is one', () => {
    const { framer, frames } = recording();
    const stream = bytes(200, 2);
    framer.push(stream);
    expect(frames).toHaveLength(1);
    expect(framer.flush()).toBe(true);
    expect(frames).toHaveLength(2);
    expect(frames[1]!.subarray(0, 40)).toEqual(stream.subarray(160));
    expect(frames[1]!.subarray(40).every((b) => b === MULAW_SILENCE)).toBe(true);
    expect(framer.pendingBytes).toBe(0);
    expect(framer.flush()).toBe(false);
    expect(frames).toHaveLength(2);
  });

  test('every frame is delivered in the same reused buffer', () => {
    const { framer, frames, buffers } = recording();
    framer.push(new Uint8Array(1_600));
    framer.push(new Uint8Array(100));
    framer.flush();
    expect(frames).toHaveLength(11);
    expect(buffers.size).toBe(1);
  });

  test('PCM input is encoded straight into frames, identical to encoding first', () => {
    const pcm = tone(440, 9_000, 1_234, 8_000);
    const encoded = new Uint8Array(pcm.length);
    encodeMulaw(pcm, encoded);

    const viaBytes = recording();
    viaBytes.framer.push(encoded);
    viaBytes.framer.flush();

    const viaPcm = recording();
    for (let at = 0; at < pcm.length; at += 97) viaPcm.framer.pushPcm(pcm.subarray(at, at + 97));
    viaPcm.framer.flush();

    expect(viaPcm.frames).toEqual(viaBytes.frames);
    expect(viaPcm.frames).toHaveLength(8);
  });

  test('reset drops the partial frame, and a reset from inside the listener stops the rest of the push', () => {
    const { framer, frames } = recording();
    framer.push(new Uint8Array(100).fill(1));
    framer.reset();
    expect(framer.pendingBytes).toBe(0);
    framer.push(new Uint8Array(160).fill(2));
    expect(frames).toEqual([new Uint8Array(160).fill(2)]);

    // Barge-in detected while frames are being emitted: nothing of the old utterance may follow.
    let emitted = 0;
    const interrupted = new Framer(() => {
      emitted++;
      interrupted.reset();
    });
    interrupted.push(new Uint8Array(800));
    expect(emitted).toBe(1);
    expect(interrupted.pendingBytes).toBe(0);
    interrupted.pushPcm(new Int16Array(800));
    expect(emitted).toBe(2);
  });

  test('larger frames are whole multiples of 20 ms; anything else is refused', () => {
    const { framer, frames } = recording(320);
    framer.push(new Uint8Array(1_000));
    expect(frames.map((f) => f.length)).toEqual([320, 320, 320]);
    expect(framer.pendingBytes).toBe(40);
    // 400 bytes (50 ms) is not a whole number of 20 ms frames.
    for (const frameBytes of [0, -160, 100, 400, 170.5, Number.NaN]) {
      expect(() => new Framer(() => {}, { frameBytes })).toThrow(RangeError);
    }
  });
});

describe('frameToBase64', () => {
  test('a 160-byte frame is 216 base64 characters that decode back to the frame', () => {
    const frame = bytes(160, 3);
    let payload = '';
    new Framer((f) => (payload = frameToBase64(f))).push(frame);
    expect(payload).toHaveLength(216);
    expect(Buffer.from(payload, 'base64')).toEqual(Buffer.from(frame));
  });

  test('a plain Uint8Array view (not a Buffer) at an offset encodes just its own bytes', () => {
    const backing = bytes(500, 4);
    const view = backing.subarray(17, 177);
    expect(frameToBase64(view)).toBe(Buffer.from(backing.subarray(17, 177)).toString('base64'));
  });
});
