/**
 * What a call session needs from its transport (ConversationRelay or Media Streams). The transport
 * turns the wire into domain events for the actor and the actor's decisions into frames or audio.
 */
import type { TurnRecord } from '../../machines/types.ts';

export interface TurnTrace {
  readonly record: TurnRecord;
  /** From the caller's final words to the reply being handed to the transport. */
  readonly latencyMs: number;
  /** latencyMs minus provider time on the critical path. */
  readonly engineMs: number;
  readonly costUsd: number | null;
  readonly costEstimated: boolean;
}

export interface SpeakOptions {
  /** The turn the reply answers (0 for the greeting and lines spoken before the first turn). */
  readonly turn: number;
  readonly interruptible: boolean;
  /**
   * A fixed line (greeting, Tier 1/2 answer, fallback, reprompt, closing): its audio may be served
   * from and kept in the pre-synthesized cache. False for generated (LLM) text.
   */
  readonly cacheable: boolean;
  /** Called once playback has finished (not after the returned stop function was called). */
  readonly onDone: () => void;
}

/** What the caller heard of one reply, reported when its playback ends or is cut off. */
export interface HeardReport {
  readonly turn: number;
  /** The reply's text as far as the caller heard it (whole sentences whose audio played). */
  readonly heard: string;
  /** True when the caller cut it off (barge-in) before the end. */
  readonly interrupted: boolean;
}

export interface CallTransport {
  /**
   * Starts saying `text`. `onDone` is called once playback has finished; the returned function
   * stops playback early (barge-in) and is also called, harmlessly, after normal completion.
   */
  speak(text: string, options: SpeakOptions): () => void;
  /**
   * The committed LLM reply for `turn` as it streams in: the whole text so far, growing. A transport
   * that can start speaking before the answer is complete (Media Streams: sentence by sentence)
   * does so; `speak` with the final text follows and continues from what was already said (or,
   * when the answer failed and a fallback line replaced it, says that after what was said).
   */
  draft?(turn: number, textSoFar: string): void;
  /** The drafted reply for `turn` will not be the answer (the caller talked over the turn): stop it. */
  abandonDraft?(turn: number): void;
  /** Hands the caller to a person at `number`. */
  transfer(number: string | undefined, reason: string): void;
  hangup(reason: string): void;
  /** Debug detail for clients that asked for it (the test client). */
  trace(trace: TurnTrace): void;
  /** Closes the transport after the call has ended. */
  close(reason: string): void;
}
