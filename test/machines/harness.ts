/**
 * A test harness for the call machine: deterministic fake actors with controllable timing, a
 * recorder for emitted events and spoken lines, and helpers to drive a call.
 */
import { createActor, fromCallback, fromPromise, SimulatedClock } from 'xstate';
import type { Actor, AnyStateNode, AnyTransitionDefinition } from 'xstate';
import { callMachine } from '../../machines/callMachine.ts';
import type {
  CallEmitted,
  CallPolicy,
  DetectInput,
  FallbackInput,
  LlmInput,
  SpeakerInput,
  Tier2Input,
  TurnInput,
  WarmupGateInput,
} from '../../machines/callMachine.ts';
import type {
  CaptureResult,
  FallbackLine,
  LlmAnswer,
  Situation,
  TierResult,
  WarmupDecision,
} from '../../machines/types.ts';

export const policy: CallPolicy = {
  tier1Threshold: 0.7,
  tier2Threshold: 0.6,
  detectConfidenceThreshold: 0.6,
  criticalSlots: ['equipment', 'urgency'],
  understandInOrder: false,
  llmEnabled: true,
  warmupEnabled: true,
  canTransfer: true,
  escalateAfterFallbacks: 2,
  silenceTimeoutMs: 8000,
  maxReprompts: 2,
  maxCallDurationMs: 600_000,
  startTimeoutMs: 5000,
  turnTimeoutMs: 15_000,
  greeting: 'Hello, how can I help?',
  repromptLine: 'Are you still there?',
  closingLine: 'Goodbye for now.',
  emergencyLine: 'I am having technical difficulties, transferring you.',
  transferLine: 'Let me transfer you now.',
  dtmfActions: { '0': 'transfer', '9': 'hangup' },
};

export function situation(
  category: string | null,
  confidence: number,
  flags: Partial<Situation['flags']> = {},
): Situation {
  return {
    category,
    confidence,
    flags: { emergency: false, wantsHuman: false, outOfScope: false, goodbye: false, ...flags },
    source: 'fake',
    providerMs: 0,
    durationMs: 1,
  };
}

export function tier(
  confidence: number,
  scenarioId: string | null,
  extra: Partial<TierResult> = {},
): TierResult {
  return {
    confidence,
    scenarioId,
    category: scenarioId === null ? null : 'cat',
    reply: scenarioId === null ? null : `reply:${scenarioId}`,
    endsCall: false,
    action: null,
    candidates: scenarioId === null ? [] : [{ scenarioId, category: 'cat', score: confidence }],
    providerMs: 0,
    durationMs: 1,
    ...extra,
  };
}

/** A promise the test resolves or rejects when it wants; records the abort signal. */
export class Deferred<T> {
  promise: Promise<T>;
  resolve!: (value: T) => void;
  reject!: (err: unknown) => void;
  signal: AbortSignal | null = null;
  constructor() {
    this.promise = new Promise<T>((res, rej) => {
      this.resolve = res;
      this.reject = rej;
    });
  }
}

export interface Script {
  capture?: (input: TurnInput, signal: AbortSignal) => CaptureResult | Promise<CaptureResult>;
  detect?: (input: DetectInput, signal: AbortSignal) => Situation | Promise<Situation>;
  tier1?: (input: TurnInput, signal: AbortSignal) => TierResult | Promise<TierResult>;
  tier2?: (input: Tier2Input, signal: AbortSignal) => TierResult | Promise<TierResult>;
  warmupGate?: (input: WarmupGateInput, signal: AbortSignal) => WarmupDecision | Promise<WarmupDecision>;
  llm?: (input: LlmInput, signal: AbortSignal) => LlmAnswer | Promise<LlmAnswer>;
  fallbackLine?: (input: FallbackInput, signal: AbortSignal) => FallbackLine | Promise<FallbackLine>;
  /** Called when a speaker starts; throwing makes that speaker fail to start. */
  speak?: (input: SpeakerInput) => void;
  /** Auto-finish playback (default true): sends playback.done right after speaking starts. */
  autoPlaybackDone?: boolean;
}

export interface CallOptions {
  /** The clock for every timer of the call (default: a fresh SimulatedClock). */
  clock?: SimulatedClock;
}

/** Send this to a running speaker child to make it fail mid-playback (a TTS socket dropping). */
export const SPEAKER_FAILED = { type: 'test.speakerFailed' } as const;

/** A stable name for one transition of the machine: `<source id> <event>#<index among that event's transitions>`. */
export function transitionKey(t: AnyTransitionDefinition): string {
  const source: AnyStateNode = t.source;
  const eventType = t.eventType as string;
  const siblings = eventType === '' ? (source.always ?? []) : (source.transitions.get(eventType) ?? []);
  return `${source.id} ${eventType === '' ? 'always' : eventType}#${siblings.indexOf(t)}`;
}

export function answer(text: string, durationMs = 400): LlmAnswer {
  return { text, provider: 'fake', model: 'fake', firstTokenMs: 100, durationMs, costUsd: 0.0001 };
}

export function startCall(
  script: Script = {},
  overrides: Partial<CallPolicy> = {},
  options: CallOptions = {},
) {
  const spoken: SpeakerInput[] = [];
  const stopped: SpeakerInput[] = [];
  /** Every speaker whose cleanup ran, whether its playback finished or not. */
  const disposed: SpeakerInput[] = [];
  const emitted: CallEmitted[] = [];
  const calls: Record<string, unknown[]> = {};
  const signals: Record<string, AbortSignal[]> = {};
  /** Ids of every state node the machine was in after any microstep (transient states included). */
  const visited = new Set<string>();
  /** `transitionKey`s of every transition the machine took. */
  const taken = new Set<string>();
  const note = (name: string, input: unknown, signal: AbortSignal) => {
    (calls[name] ??= []).push(input);
    (signals[name] ??= []).push(signal);
  };
  const autoDone = script.autoPlaybackDone ?? true;
  /** Finishers of the speakers currently playing (at most one). */
  const playing: (() => void)[] = [];
  /** With autoPlaybackDone false: the current speaker finishes its line (sends playback.done). */
  const finishPlayback = () => {
    const finish = playing.at(-1);
    if (!finish) throw new Error('nothing is playing');
    finish();
  };
  const speaker = fromCallback<{ type: 'noop' }, SpeakerInput>(({ input, sendBack }) => {
    spoken.push(input);
    script.speak?.(input);
    let done = false;
    const finish = () => {
      done = true;
      sendBack({ type: 'playback.done' });
    };
    playing.push(finish);
    if (autoDone) queueMicrotask(finish);
    return () => {
      playing.splice(playing.indexOf(finish), 1);
      disposed.push(input);
      if (!done) stopped.push(input);
    };
  });
  // On SPEAKER_FAILED the speaker stops playing and fails: the call gets xstate.error.actor.<id>.
  const failableSpeaker: typeof speaker = Object.assign(Object.create(null) as typeof speaker, speaker, {
    transition: (...[state, event, scope]: Parameters<typeof speaker.transition>) => {
      const type: string = event.type;
      if (type !== SPEAKER_FAILED.type) return speaker.transition(state, event, scope);
      speaker.transition(state, { type: 'xstate.stop' } as unknown as typeof event, scope); // cleanup
      return { ...state, status: 'error' as const, error: new Error('speaker failed') };
    },
  });
  const machine = callMachine.provide({
    actors: {
      capture: fromPromise(async ({ input, signal }: { input: TurnInput; signal: AbortSignal }) => {
        note('capture', input, signal);
        return script.capture
          ? script.capture(input, signal)
          : { slots: input.slots, changed: [], source: 'fake', providerMs: 0, durationMs: 1 };
      }),
      detect: fromPromise(async ({ input, signal }: { input: DetectInput; signal: AbortSignal }) => {
        note('detect', input, signal);
        return script.detect ? script.detect(input, signal) : situation('cat', 0.9);
      }),
      tier1: fromPromise(async ({ input, signal }: { input: TurnInput; signal: AbortSignal }) => {
        note('tier1', input, signal);
        return script.tier1 ? script.tier1(input, signal) : tier(0.9, 'scn-1');
      }),
      tier2: fromPromise(async ({ input, signal }: { input: Tier2Input; signal: AbortSignal }) => {
        note('tier2', input, signal);
        return script.tier2 ? script.tier2(input, signal) : tier(0.2, null);
      }),
      warmupGate: fromPromise(async ({ input, signal }: { input: WarmupGateInput; signal: AbortSignal }) => {
        note('warmupGate', input, signal);
        return script.warmupGate
          ? script.warmupGate(input, signal)
          : { warm: true, reason: 'confidence-below-threshold', durationMs: 0 };
      }),
      llm: fromPromise(async ({ input, signal }: { input: LlmInput; signal: AbortSignal }) => {
        note('llm', input, signal);
        return script.llm ? script.llm(input, signal) : answer(`llm:${input.utterance}`);
      }),
      fallbackLine: fromPromise(async ({ input, signal }: { input: FallbackInput; signal: AbortSignal }) => {
        note('fallbackLine', input, signal);
        return script.fallbackLine
          ? script.fallbackLine(input, signal)
          : { kind: input.kind, text: `fallback:${input.kind}`, durationMs: 1 };
      }),
      speaker: failableSpeaker,
    },
  });
  const clock = options.clock ?? new SimulatedClock();
  const actor = createActor(machine, {
    input: { callId: 'call-1', companyId: 'acme', policy: { ...policy, ...overrides } },
    clock,
    inspect: (ev) => {
      if (ev.type !== '@xstate.microstep') return;
      const snapshot = ev.snapshot as unknown as { _nodes: readonly AnyStateNode[] };
      for (const node of snapshot._nodes) visited.add(node.id);
      for (const t of ev._transitions) taken.add(transitionKey(t));
    },
  });
  const errors: unknown[] = [];
  actor.subscribe({ error: (err) => errors.push(err) });
  actor.on('*', (e) => emitted.push(e));
  actor.start();
  for (const node of actor.getSnapshot()._nodes) visited.add(node.id);
  return {
    actor,
    clock,
    spoken,
    stopped,
    disposed,
    emitted,
    calls,
    signals,
    errors,
    visited,
    taken,
    finishPlayback,
  };
}

export type CallHarness = ReturnType<typeof startCall>;

/** Lets promise actors and queued microtasks settle. */
export async function settle(rounds = 10): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((r) => setImmediate(r));
}

export function stateOf(actor: Actor<typeof callMachine>): string {
  return JSON.stringify(actor.getSnapshot().value);
}

export function turns(h: CallHarness) {
  return h.emitted.flatMap((e) => (e.type === 'turn.completed' ? [e.record] : []));
}
