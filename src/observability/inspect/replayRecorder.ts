/**
 * Keeps what a replay of a call needs, for the live calls and a bounded number of recently ended
 * ones, without inspection: one `actor.subscribe` per call that notes each change of state value or
 * context (a JSON string of the state value and a reference to the context, which the machine never
 * mutates), and the turn records the actor emits. Events are not known at this level; the replay
 * infers them from the machine (see replay.ts). Until the persistence layer stores recordings with
 * the call, `onEnded` is the seam where it will take them.
 */
import { performance } from 'node:perf_hooks';
import type { Actor, Subscription } from 'xstate';
import type { CallContext, CallMachine } from '../../../machines/callMachine.ts';
import type { TurnRecord } from '../../../machines/types.ts';

/** One macrostep that changed the state value or the context. */
export interface RecordedStep {
  /** Epoch milliseconds, sub-millisecond precision. */
  readonly t: number;
  /** `JSON.stringify` of the state value. */
  readonly value: string;
  readonly context: CallContext;
}

export interface TurnEntry {
  readonly turn: number;
  /** When the turn's reply was decided (epoch ms). */
  readonly t: number;
  /** From the macrostep that began the turn to the reply being decided, as the recorder saw it. */
  readonly latencyMs: number | null;
  /** Capture then detect (sequential understanding) rather than side by side. */
  readonly inOrder: boolean;
  readonly record: TurnRecord;
}

export interface CallRecording {
  readonly id: string;
  readonly companyId: string;
  readonly startedAt: number;
  callSid: string | null;
  endedAt: number | null;
  endReason: string | null;
  readonly steps: RecordedStep[];
  readonly turns: TurnEntry[];
  /** Oldest steps dropped to stay within the limit. */
  droppedSteps: number;
}

/** What the recorder needs of a call session. */
export interface RecordableCall {
  readonly id: string;
  readonly companyId: string;
  readonly startedAt: number;
  readonly callSid: string | null;
  readonly actor: Actor<CallMachine>;
}

export interface RecordingListener {
  turn?(entry: TurnEntry): void;
  ended?(recording: CallRecording): void;
}

export interface RecorderLimits {
  /** Ended calls kept for replay (default 25). */
  readonly recentCalls?: number;
  /** Steps kept per call, the latest (default 2000). */
  readonly stepsPerCall?: number;
  /** Turns kept per call, the latest (default 500). */
  readonly turnsPerCall?: number;
}

const now = (): number => performance.timeOrigin + performance.now();

export class ReplayRecorder {
  readonly #live = new Map<string, CallRecording>();
  /** Ended calls, oldest first. */
  readonly #recent: CallRecording[] = [];
  readonly #listeners = new Map<string, Set<RecordingListener>>();
  readonly #endedListeners = new Set<(recording: CallRecording) => void>();
  readonly #recentCalls: number;
  readonly #stepsPerCall: number;
  readonly #turnsPerCall: number;
  readonly #stopListening: () => void;

  constructor(
    engine: {
      onSession(listener: { opened?(s: RecordableCall): void; ended?(s: RecordableCall): void }): () => void;
    },
    limits: RecorderLimits = {},
  ) {
    this.#recentCalls = limits.recentCalls ?? 25;
    this.#stepsPerCall = limits.stepsPerCall ?? 2000;
    this.#turnsPerCall = limits.turnsPerCall ?? 500;
    this.#stopListening = engine.onSession({
      opened: (session) => this.#record(session),
      ended: (session) => this.#ended(session),
    });
  }

  /** The recording of a live or recently ended call. */
  get(callId: string): CallRecording | undefined {
    return this.#live.get(callId) ?? this.#recent.find((r) => r.id === callId);
  }

  /** Live calls' recordings. */
  live(): CallRecording[] {
    return [...this.#live.values()];
  }

  /** Recently ended calls, most recent first. */
  recent(): CallRecording[] {
    return [...this.#recent].reverse();
  }

  /** Hears of one call's turns and end. */
  listen(callId: string, listener: RecordingListener): () => void {
    let set = this.#listeners.get(callId);
    if (set === undefined) this.#listeners.set(callId, (set = new Set()));
    set.add(listener);
    const listeners = set;
    return () => {
      listeners.delete(listener);
      if (listeners.size === 0 && this.#listeners.get(callId) === listeners) this.#listeners.delete(callId);
    };
  }

  /** Hears of every recording as its call ends (where a persistent store will take it). */
  onEnded(listener: (recording: CallRecording) => void): () => void {
    this.#endedListeners.add(listener);
    return () => this.#endedListeners.delete(listener);
  }

  close(): void {
    this.#stopListening();
  }

  #record(session: RecordableCall): void {
    const recording: CallRecording = {
      id: session.id,
      companyId: session.companyId,
      startedAt: session.startedAt,
      callSid: session.callSid,
      endedAt: null,
      endReason: null,
      steps: [],
      turns: [],
      droppedSteps: 0,
    };
    this.#live.set(session.id, recording);
    let lastValue = '';
    let lastContext: CallContext | null = null;
    let lastTurn = 0;
    let turnStartedAt: number | null = null;
    const subscriptions: Subscription[] = [];
    const stop = () => subscriptions.forEach((s) => s.unsubscribe());
    subscriptions.push(
      session.actor.subscribe({
        next: (snapshot) => {
          const context = snapshot.context;
          const value = JSON.stringify(snapshot.value);
          if (value === lastValue && context === lastContext) return;
          const t = now();
          if (context.turn !== lastTurn) {
            lastTurn = context.turn;
            turnStartedAt = t;
          }
          lastValue = value;
          lastContext = context;
          recording.callSid = context.callSid;
          recording.steps.push({ t, value, context });
          const over = recording.steps.length - this.#stepsPerCall;
          // Trim in batches so a long call does not shift the array on every step.
          if (over > this.#stepsPerCall / 4) {
            recording.steps.splice(0, over);
            recording.droppedSteps += over;
          }
        },
        // The session logs actor errors; this observer must not turn one into an unhandled error.
        error: stop,
        complete: stop,
      }),
      session.actor.on('turn.completed', ({ record }) => {
        const t = now();
        const entry: TurnEntry = {
          turn: record.turn,
          t,
          latencyMs: turnStartedAt === null ? null : t - turnStartedAt,
          inOrder: session.actor.getSnapshot().context.policy.understandInOrder,
          record,
        };
        recording.turns.push(entry);
        if (recording.turns.length > this.#turnsPerCall) recording.turns.shift();
        this.#notify(recording.id, (l) => l.turn?.(entry));
      }),
    );
  }

  #ended(session: RecordableCall): void {
    const recording = this.#live.get(session.id);
    if (recording === undefined) return;
    this.#live.delete(session.id);
    recording.endedAt = Date.now();
    recording.endReason = session.actor.getSnapshot().context.endReason ?? 'ended';
    recording.callSid = session.callSid;
    this.#recent.push(recording);
    if (this.#recent.length > this.#recentCalls) this.#recent.shift();
    this.#notify(recording.id, (l) => l.ended?.(recording));
    this.#listeners.delete(recording.id);
    for (const listener of this.#endedListeners) listener(recording);
  }

  #notify(callId: string, call: (listener: RecordingListener) => void): void {
    const listeners = this.#listeners.get(callId);
    if (listeners === undefined) return;
    for (const listener of [...listeners]) call(listener);
  }
}
