/**
 * A test harness for the call machine: deterministic fake actors with controllable timing, a
 * recorder for emitted events and spoken lines, and helpers to drive a call.
 */
import { createActor, fromCallback, fromPromise, SimulatedClock } from 'xstate';
import type { Actor } from 'xstate';
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
  capture?: (input: TurnInput) => CaptureResult | Promise<CaptureResult>;
  detect?: (input: DetectInput) => Situation | Promise<Situation>;
  tier1?: (input: TurnInput) => TierResult | Promise<TierResult>;
  tier2?: (input: Tier2Input, signal: AbortSignal) => TierResult | Promise<TierResult>;
  warmupGate?: (input: WarmupGateInput) => WarmupDecision | Promise<WarmupDecision>;
  llm?: (input: LlmInput, signal: AbortSignal) => LlmAnswer | Promise<LlmAnswer>;
  fallbackLine?: (input: FallbackInput) => FallbackLine | Promise<FallbackLine>;
  /** Auto-finish playback (default true): sends playback.done right after speaking starts. */
  autoPlaybackDone?: boolean;
}

export function answer(text: string, durationMs = 400): LlmAnswer {
  return { text, provider: 'fake', model: 'fake', firstTokenMs: 100, durationMs, costUsd: 0.0001 };
}

export function startCall(script: Script = {}, overrides: Partial<CallPolicy> = {}) {
  const spoken: SpeakerInput[] = [];
  const stopped: SpeakerInput[] = [];
  const emitted: CallEmitted[] = [];
  const calls: Record<string, unknown[]> = {};
  const signals: Record<string, AbortSignal[]> = {};
  const note = (name: string, input: unknown, signal?: AbortSignal) => {
    (calls[name] ??= []).push(input);
    if (signal) (signals[name] ??= []).push(signal);
  };
  const autoDone = script.autoPlaybackDone ?? true;
  const machine = callMachine.provide({
    actors: {
      capture: fromPromise(async ({ input }: { input: TurnInput }) => {
        note('capture', input);
        return script.capture
          ? script.capture(input)
          : { slots: input.slots, changed: [], source: 'fake', providerMs: 0, durationMs: 1 };
      }),
      detect: fromPromise(async ({ input }: { input: DetectInput }) => {
        note('detect', input);
        return script.detect ? script.detect(input) : situation('cat', 0.9);
      }),
      tier1: fromPromise(async ({ input }: { input: TurnInput }) => {
        note('tier1', input);
        return script.tier1 ? script.tier1(input) : tier(0.9, 'scn-1');
      }),
      tier2: fromPromise(async ({ input, signal }: { input: Tier2Input; signal: AbortSignal }) => {
        note('tier2', input, signal);
        return script.tier2 ? script.tier2(input, signal) : tier(0.2, null);
      }),
      warmupGate: fromPromise(async ({ input }: { input: WarmupGateInput }) => {
        note('warmupGate', input);
        return script.warmupGate
          ? script.warmupGate(input)
          : { warm: true, reason: 'confidence-below-threshold', durationMs: 0 };
      }),
      llm: fromPromise(async ({ input, signal }: { input: LlmInput; signal: AbortSignal }) => {
        note('llm', input, signal);
        return script.llm ? script.llm(input, signal) : answer(`llm:${input.utterance}`);
      }),
      fallbackLine: fromPromise(async ({ input }: { input: FallbackInput }) => {
        note('fallbackLine', input);
        return script.fallbackLine
          ? script.fallbackLine(input)
          : { kind: input.kind, text: `fallback:${input.kind}`, durationMs: 1 };
      }),
      speaker: fromCallback(
        ({ input, sendBack }: { input: SpeakerInput; sendBack: (e: { type: 'playback.done' }) => void }) => {
          spoken.push(input);
          let done = false;
          if (autoDone) {
            queueMicrotask(() => {
              done = true;
              sendBack({ type: 'playback.done' });
            });
          }
          return () => {
            if (!done) stopped.push(input);
          };
        },
      ),
    },
  });
  const clock = new SimulatedClock();
  const actor = createActor(machine, {
    input: { callId: 'call-1', companyId: 'acme', policy: { ...policy, ...overrides } },
    clock,
  });
  const errors: unknown[] = [];
  actor.subscribe({ error: (err) => errors.push(err) });
  actor.on('*', (e) => emitted.push(e));
  actor.start();
  return { actor, clock, spoken, stopped, emitted, calls, signals, errors };
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
