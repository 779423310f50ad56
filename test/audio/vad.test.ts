import { afterEach, describe, expect, test, vi } from 'vitest';
import { encodeMulaw } from '../../src/audio/mulaw.ts';
import { Vad } from '../../src/audio/vad.ts';
import type { VadEvent, VadOptions } from '../../src/audio/vad.ts';
import { concat, mix, noise, speechLike } from './signals.ts';

interface Seen {
  readonly event: VadEvent;
  /** What the detector reports: the onset of speech, or the end of it. */
  readonly atMs: number;
  /** When it decided: audio time at the end of the frame that triggered the event. */
  readonly decidedMs: number;
}

/** Feeds 8 kHz PCM to a fresh detector as Twilio would: μ-law, in frames of `frameBytes`. */
function detect(pcm: Int16Array, options: VadOptions = {}, frameBytes = 160): Seen[] {
  const seen: Seen[] = [];
  const vad: Vad = new Vad((event, atMs) => seen.push({ event, atMs, decidedMs: vad.elapsedMs }), options);
  const mulaw = new Uint8Array(pcm.length);
  encodeMulaw(pcm, mulaw);
  for (let at = 0; at < mulaw.length; at += frameBytes) vad.push(mulaw.subarray(at, at + frameBytes));
  return seen;
}

const QUIET_LINE = 30; // mean |sample| of a typical quiet phone line's hiss
const SPEECH = 2_000; // peak mean |sample| of ordinary telephone speech

describe('Vad', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  test('digital silence and line noise never trigger', () => {
    expect(detect(new Int16Array(10 * 8_000))).toEqual([]);
    expect(detect(noise(QUIET_LINE, 10_000, 1))).toEqual([]);
    // Noise close to the absolute minimum, where only the floor protects.
    expect(detect(noise(100, 10_000, 2))).toEqual([]);
  });

  test('speech is detected within 100 ms of its onset, and its end after the hangover', () => {
    const line = noise(QUIET_LINE, 5_000, 3);
    const seen = detect(mix(line, concat([new Int16Array(2_000 * 8), speechLike(SPEECH, 1_000)])));
    expect(seen.map((s) => s.event)).toEqual(['speechStarted', 'speechStopped']);
    const [started, stopped] = seen as [Seen, Seen];
    expect(started.atMs).toBe(2_000);
    expect(started.decidedMs - 2_000).toBeLessThanOrEqual(100);
    expect(started.decidedMs - 2_000).toBeGreaterThanOrEqual(60);
    expect(stopped.atMs).toBe(3_000);
    expect(stopped.decidedMs).toBe(3_400);
  });

  test('an onset in the middle of a frame is still detected within 100 ms', () => {
    for (const onsetMs of [2_005, 2_010, 2_015]) {
      const speech = concat([new Int16Array(onsetMs * 8), speechLike(SPEECH, 500)]);
      const [started] = detect(mix(noise(QUIET_LINE, 4_000, 4), speech));
      expect(started?.event).toBe('speechStarted');
      expect(started!.decidedMs - onsetMs, `onset at ${onsetMs} ms`).toBeLessThanOrEqual(100);
    }
  });

  test('frames of other sizes are timed by their length', () => {
    const pcm = mix(
      noise(QUIET_LINE, 4_000, 5),
      concat([new Int16Array(2_000 * 8), speechLike(SPEECH, 600)]),
    );
    for (const frameBytes of [80, 320]) {
      const [started, stopped] = detect(pcm, {}, frameBytes);
      expect(started!.decidedMs - 2_000).toBeLessThanOrEqual(100);
      expect(stopped!.decidedMs - stopped!.atMs).toBeGreaterThanOrEqual(400);
      expect(stopped!.decidedMs - stopped!.atMs).toBeLessThan(400 + frameBytes / 8);
    }
  });

  test('clicks of one or two frames do not start speech, whatever their alignment', () => {
    const pcm = noise(QUIET_LINE, 10_000, 6);
    // A full-scale 20 ms pop every 370 ms: it lands across frame boundaries at varying offsets.
    for (let at = 1_000 * 8; at + 160 < pcm.length; at += 370 * 8) {
      for (let i = 0; i < 160; i++) pcm[at + i] = i % 2 === 0 ? 30_000 : -30_000;
    }
    expect(detect(pcm)).toEqual([]);
  });

  test('a click that lasts three frames is speech as far as energy can tell (the test above can fail)', () => {
    const pcm = noise(QUIET_LINE, 3_000, 7);
    for (let i = 0; i < 480; i++) pcm[8_000 + i] = i % 2 === 0 ? 30_000 : -30_000;
    expect(detect(pcm).map((s) => s.event)).toEqual(['speechStarted', 'speechStopped']);
  });

  test('pauses between words shorter than the hangover do not end speech; longer ones do', () => {
    const gap = (ms: number) => new Int16Array(ms * 8);
    const word = speechLike(SPEECH, 400);
    const talk = concat([gap(1_000), word, gap(200), word, gap(300), word, gap(700), word, gap(1_000)]);
    const seen = detect(mix(noise(QUIET_LINE, 5_000, 8), talk));
    expect(seen.map((s) => `${s.event}@${s.atMs}`)).toEqual([
      'speechStarted@1000',
      'speechStopped@2700',
      'speechStarted@3400',
      'speechStopped@3800',
    ]);
  });

  test('a loud but constant noise from the start becomes the floor; speech above it is still heard', () => {
    const loud = 1_000;
    expect(detect(noise(loud, 10_000, 9))).toEqual([]);

    // Speech peaking 15 dB above that noise, starting 5 s in.
    const speech = concat([new Int16Array(5_000 * 8), speechLike(loud * 10 ** (15 / 20), 1_500)]);
    const seen = detect(mix(noise(loud, 8_000, 10), speech));
    expect(seen.map((s) => s.event)).toEqual(['speechStarted', 'speechStopped']);
    expect(seen[0]!.decidedMs - 5_000).toBeLessThanOrEqual(100);
  });

  test('a step up to a loud steady noise reads as speech only until the floor adapts', () => {
    const quiet = noise(QUIET_LINE, 3_000, 11);
    const loud = noise(1_000, 12_000, 12);
    const speech = concat([new Int16Array(10_000 * 8), speechLike(1_000 * 10 ** (15 / 20), 1_000)]);
    const seen = detect(concat([quiet, mix(loud, speech)]));
    expect(seen.map((s) => s.event)).toEqual([
      'speechStarted',
      'speechStopped',
      'speechStarted',
      'speechStopped',
    ]);
    expect(seen[0]!.atMs).toBe(3_000);
    // The floor looks back 2 s (in 250 ms blocks), then the hangover runs.
    expect(seen[1]!.decidedMs).toBeLessThanOrEqual(3_000 + 2_250 + 400 + 20);
    expect(seen[2]!.atMs).toBeGreaterThanOrEqual(13_000);
    expect(seen[2]!.decidedMs - 13_000).toBeLessThanOrEqual(100);
  });

  test('reset forgets the floor and any speech in progress, silently', () => {
    const events: VadEvent[] = [];
    const vad = new Vad((event) => events.push(event));
    const loudFrame = new Uint8Array(160).fill(0x90); // |x| = 15996 throughout
    for (let i = 0; i < 5; i++) vad.push(loudFrame);
    expect(vad.speaking).toBe(false); // the first frame of a call sets the floor, it is not judged
    expect(vad.level).toBe(15996);
    expect(vad.noiseFloor).toBe(15996);

    vad.reset();
    expect(vad.noiseFloor).toBe(Infinity);
    expect(vad.elapsedMs).toBe(0);
    const quietFrame = new Uint8Array(160).fill(0xff);
    for (let i = 0; i < 10; i++) vad.push(quietFrame);
    for (let i = 0; i < 3; i++) vad.push(loudFrame);
    expect(vad.speaking).toBe(true);
    vad.reset();
    expect(vad.speaking).toBe(false);
    expect(events).toEqual(['speechStarted']);
  });

  test('loud: a frame above the start threshold, not one in the hysteresis band that keeps speech going', () => {
    const vad = new Vad(() => {});
    const pushPcm = (pcm: Int16Array) => {
      const mulaw = new Uint8Array(pcm.length);
      encodeMulaw(pcm, mulaw);
      for (let at = 0; at < mulaw.length; at += 160) vad.push(mulaw.subarray(at, at + 160));
    };
    pushPcm(noise(QUIET_LINE, 1000, 7)); // the floor: ~30
    expect(vad.loud).toBe(false);
    pushPcm(noise(600, 200, 8)); // 10 dB above 30 is ~95: speech
    expect(vad.speaking).toBe(true);
    expect(vad.loud).toBe(true);
    // Between the stop bar (5 dB above the floor, still the 150 minimum) and the start bar: speech
    // goes on, but the frame is not loud. The start bar is max(floor × 3.16, 150) ≈ 150; 120 sits
    // above 150 × 0.56 ≈ 84.
    pushPcm(noise(120, 100, 9));
    expect(vad.speaking).toBe(true);
    expect(vad.loud).toBe(false);
    vad.reset();
    expect(vad.loud).toBe(false);
  });

  test('per frame it schedules no timers: time is the audio’s own', () => {
    vi.useFakeTimers();
    const vad = new Vad(() => {});
    const frame = new Uint8Array(160);
    for (let i = 0; i < 1_000; i++) vad.push(frame.fill(i % 50 < 25 ? 0xff : 0x90));
    expect(vi.getTimerCount()).toBe(0);
  });

  test('options are checked', () => {
    for (const bad of [
      { startMs: -1 },
      { thresholdDb: Number.NaN },
      { floorWindowMs: 0 },
      { hangoverMs: Infinity },
    ]) {
      expect(() => new Vad(() => {}, bad)).toThrow(RangeError);
    }
  });
});
