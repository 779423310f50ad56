/**
 * What a call session needs from its transport (ConversationRelay now, Media Streams next). The
 * transport turns the wire into domain events for the actor and the actor's decisions into frames.
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

export interface CallTransport {
  /**
   * Starts saying `text`. `onDone` is called once playback has finished; the returned function
   * stops playback early (barge-in) and is also called, harmlessly, after normal completion.
   */
  speak(text: string, options: { interruptible: boolean; onDone: () => void }): () => void;
  /** Hands the caller to a person at `number`. */
  transfer(number: string | undefined, reason: string): void;
  hangup(reason: string): void;
  /** Debug detail for clients that asked for it (the test client). */
  trace(trace: TurnTrace): void;
  /** Closes the transport after the call has ended. */
  close(reason: string): void;
}
