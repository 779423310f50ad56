/**
 * A cheap local voice-activity detector on inbound μ-law frames, for barge-in: it says "the caller
 * started talking" about 60–80 ms after they do, without waiting for the STT provider's first partial
 * (hundreds of ms later). It only decides when to `clear` Twilio's buffer and stop our speech; what
 * the caller said, and when their turn ends, still come from STT.
 *
 * Energy-based, per frame:
 * - level = mean |sample| of the frame, decoded through a 256-entry magnitude table (no PCM buffer);
 * - noise floor = the lowest frame level of roughly the last 2 s (minimum statistics, after R. Martin,
 *   "Noise power spectral density estimation based on optimal smoothing and minimum statistics", IEEE
 *   Trans. Speech Audio Proc. 2001, reduced to one band): it follows a quieter line at once but rises
 *   only when a louder sound has lasted the whole window, which speech, with its gaps between syllables
 *   and words, rarely does. A loud but constant noise (a fan, a car) becomes the floor within ~2 s;
 * - speech starts when the level stays `thresholdDb` above the floor (and above `minSpeechLevel`) for
 *   `startMs` in a row, so one-frame clicks and pops never start it; it stops after `hangoverMs` in
 *   a row below the threshold less `hysteresisDb`, so pauses between words do not end it.
 *
 * It costs one table lookup and add per byte plus a few comparisons per frame, allocates nothing and
 * creates no promise or timer (ARCHITECTURE "Performance rules"; agents-js #2053): time is the audio's
 * own, counted from the bytes pushed (8 per ms). Events go to one synchronous listener.
 *
 * Limits: energy cannot tell speech from other sounds as loud (a door, a TV, babble), and a caller on
 * speakerphone who hears our own voice back can trigger it (pipecat #1771). A step up in steady noise
 * reads as speech until the floor catches up (up to the window length), then stops.
 */
import { mulawToLinear } from './mulaw.ts';

export type VadEvent = 'speechStarted' | 'speechStopped';

/**
 * Receives speech boundaries. `atMs` is audio time since the detector started (or was reset), counted
 * from the bytes pushed: for `speechStarted` the start of the loud run that confirmed speech (its
 * onset, `startMs` or more before the decision), for `speechStopped` the end of the last loud frame.
 * The decision itself happens at the end of the frame being pushed (`elapsedMs`).
 */
export type VadListener = (event: VadEvent, atMs: number) => void;

export interface VadOptions {
  /** How far above the noise floor a frame must be to count as speech, in dB. Default 10. */
  readonly thresholdDb?: number;
  /** Once speaking, how far below that threshold a frame must fall to count as silence, in dB. Default 5. */
  readonly hysteresisDb?: number;
  /**
   * The quietest frame that can be speech, as mean |PCM16 sample|, whatever the floor. Default 150
   * (about −47 dB below full scale); quiet but real telephone speech is several times louder. Keeps
   * a near-silent line (floor ≈ 0) from calling its faintest noise speech.
   */
  readonly minSpeechLevel?: number;
  /** Loud audio needed, uninterrupted, before speech starts. Default 60 (three 20 ms frames). */
  readonly startMs?: number;
  /** Quiet audio needed, uninterrupted, before speech stops. Default 400. */
  readonly hangoverMs?: number;
  /** How much audio the noise floor looks back over. Default 2000. */
  readonly floorWindowMs?: number;
}

/** μ-law samples per millisecond (8 kHz). */
const SAMPLES_PER_MS = 8;
/** The floor window is kept as this many block minima, so sliding it costs nothing per frame. */
const FLOOR_BLOCKS = 8;

/** |decoded sample| for each μ-law byte: the level needs magnitudes only, not a PCM copy. */
const MAGNITUDE = Uint16Array.from({ length: 256 }, (_, code) => Math.abs(mulawToLinear(code)));

function dbToRatio(db: number): number {
  return 10 ** (db / 20);
}

/** The voice-activity detector of one inbound stream (one per call: it tracks that line's noise). */
export class Vad {
  readonly #listener: VadListener;
  readonly #startRatio: number;
  /** Stop threshold ÷ start threshold (below 1: the hysteresis). */
  readonly #stopFactor: number;
  readonly #minSpeechLevel: number;
  readonly #startMs: number;
  readonly #hangoverMs: number;
  readonly #blockMs: number;

  /** Minimum level of each of the last FLOOR_BLOCKS completed blocks (Infinity: not seen yet). */
  readonly #blockMinima = new Float64Array(FLOOR_BLOCKS);
  #blockIndex = 0;
  #blockElapsedMs = 0;
  #currentBlockMin = Infinity;
  #completedMin = Infinity;

  #elapsedMs = 0;
  #level = 0;
  #loud = false;
  #speaking = false;
  /** Not speaking: length of the current run of loud frames. Speaking: of quiet frames. */
  #runMs = 0;
  /** While speaking: where the current run of quiet frames began. */
  #silenceStartMs = 0;

  constructor(listener: VadListener, options: VadOptions = {}) {
    const thresholdDb = options.thresholdDb ?? 10;
    const hysteresisDb = options.hysteresisDb ?? 5;
    const minSpeechLevel = options.minSpeechLevel ?? 150;
    const startMs = options.startMs ?? 60;
    const hangoverMs = options.hangoverMs ?? 400;
    const floorWindowMs = options.floorWindowMs ?? 2_000;
    for (const [name, value] of [
      ['thresholdDb', thresholdDb],
      ['hysteresisDb', hysteresisDb],
      ['minSpeechLevel', minSpeechLevel],
      ['startMs', startMs],
      ['hangoverMs', hangoverMs],
      ['floorWindowMs', floorWindowMs],
    ] as const) {
      if (!Number.isFinite(value) || value < 0)
        throw new RangeError(`Vad: ${name} must be ≥ 0, got ${value}`);
    }
    if (floorWindowMs === 0) throw new RangeError('Vad: floorWindowMs must be > 0');
    this.#listener = listener;
    this.#startRatio = dbToRatio(thresholdDb);
    this.#stopFactor = dbToRatio(-hysteresisDb);
    this.#minSpeechLevel = minSpeechLevel;
    this.#startMs = startMs;
    this.#hangoverMs = hangoverMs;
    this.#blockMs = floorWindowMs / FLOOR_BLOCKS;
    this.#blockMinima.fill(Infinity);
  }

  /** Whether the caller is speaking, as of the last frame. */
  get speaking(): boolean {
    return this.#speaking;
  }

  /**
   * Whether the last frame was above the start threshold (the floor plus `thresholdDb`, and
   * `minSpeechLevel`): clearly voiced, not merely above the lower bar that keeps speech going.
   */
  get loud(): boolean {
    return this.#loud;
  }

  /** Mean |sample| of the last frame (PCM16 scale, 0–32124). */
  get level(): number {
    return this.#level;
  }

  /** Current noise floor estimate (PCM16 scale); Infinity before the first frame. */
  get noiseFloor(): number {
    return Math.min(this.#completedMin, this.#currentBlockMin);
  }

  /** Audio time pushed since creation or the last reset, in ms. */
  get elapsedMs(): number {
    return this.#elapsedMs;
  }

  /**
   * Feeds one inbound frame of μ-law bytes (Twilio sends 160 = 20 ms). Other sizes work, timed by
   * their length, but each push is judged as one frame: push frames as they arrive.
   */
  push(frame: Uint8Array): void {
    const n = frame.length;
    if (n === 0) return;
    let sum = 0;
    for (let i = 0; i < n; i++) sum += MAGNITUDE[frame[i]!]!;
    const level = sum / n;
    const frameMs = n / SAMPLES_PER_MS;
    this.#level = level;

    // Judge the frame against the floor as it stood before it (Infinity for the very first frame,
    // so audio that is already loud when the call starts becomes the floor instead of speech).
    const floor = this.noiseFloor;
    const frameStartMs = this.#elapsedMs;
    this.#elapsedMs += frameMs;
    this.#trackFloor(level, frameMs);

    // Loud means strictly above the threshold, so digital silence is never loud, even with
    // minSpeechLevel 0 on a floor of 0.
    const startLevel = Math.max(floor * this.#startRatio, this.#minSpeechLevel);
    this.#loud = level > startLevel;
    if (!this.#speaking) {
      if (level <= startLevel) {
        this.#runMs = 0;
        return;
      }
      this.#runMs += frameMs;
      if (this.#runMs >= this.#startMs) {
        this.#speaking = true;
        const onsetMs = this.#elapsedMs - this.#runMs;
        this.#runMs = 0;
        this.#listener('speechStarted', onsetMs);
      }
      return;
    }
    // The stop threshold is the start threshold less the hysteresis, the absolute minimum included.
    if (level > startLevel * this.#stopFactor) {
      this.#runMs = 0;
      return;
    }
    if (this.#runMs === 0) this.#silenceStartMs = frameStartMs;
    this.#runMs += frameMs;
    if (this.#runMs >= this.#hangoverMs) {
      this.#speaking = false;
      this.#runMs = 0;
      this.#listener('speechStopped', this.#silenceStartMs);
    }
  }

  /** Forgets the noise floor, the clock and any speech in progress (without emitting `speechStopped`). */
  reset(): void {
    this.#blockMinima.fill(Infinity);
    this.#blockIndex = 0;
    this.#blockElapsedMs = 0;
    this.#currentBlockMin = Infinity;
    this.#completedMin = Infinity;
    this.#elapsedMs = 0;
    this.#level = 0;
    this.#loud = false;
    this.#speaking = false;
    this.#runMs = 0;
    this.#silenceStartMs = 0;
  }

  /** Sliding-window minimum in blocks: per frame one comparison; per block (250 ms) eight. */
  #trackFloor(level: number, frameMs: number): void {
    if (level < this.#currentBlockMin) this.#currentBlockMin = level;
    this.#blockElapsedMs += frameMs;
    if (this.#blockElapsedMs < this.#blockMs) return;
    this.#blockElapsedMs -= this.#blockMs;
    const minima = this.#blockMinima;
    minima[this.#blockIndex] = this.#currentBlockMin;
    this.#blockIndex = (this.#blockIndex + 1) % FLOOR_BLOCKS;
    this.#currentBlockMin = Infinity;
    let min = Infinity;
    for (let i = 0; i < FLOOR_BLOCKS; i++) if (minima[i]! < min) min = minima[i]!;
    this.#completedMin = min;
  }
}
