/**
 * One actor per live call. The machine is the orchestrator: it decides what happens next and in
 * which order; everything that touches the world (providers, sockets, stores) is an actor or an
 * emitted event whose implementation is injected with `.provide()` by src/calls.
 *
 * Events are dot-namespaced by source (`caller.*`, `playback.*`, `twilio.*`); actors are nouns;
 * actions verbs; guards predicates; delays named after what they wait for.
 */
import { assign, emit, enqueueActions, fromCallback, fromPromise, setup, stateIn } from 'xstate';
import type {
  AnsweredBy,
  CaptureResult,
  ChatTurn,
  FallbackKind,
  FallbackLine,
  LlmAnswer,
  ScenarioCandidate,
  Situation,
  Slots,
  StageTimings,
  TierResult,
  TurnRecord,
  WarmupDecision,
  WarmupOutcome,
} from './types.ts';

/** Per-company behaviour, resolved once per call from the company's configuration. */
export interface CallPolicy {
  readonly tier1Threshold: number;
  readonly tier2Threshold: number;
  /** Detect runs again after capture when its first confidence is below this. */
  readonly detectConfidenceThreshold: number;
  readonly criticalSlots: readonly string[];
  /** Run detect after capture instead of beside it (then no reconcile is needed). */
  readonly understandInOrder: boolean;
  /** LLM fallback enabled for the company and a provider configured. */
  readonly llmEnabled: boolean;
  readonly warmupEnabled: boolean;
  readonly canTransfer: boolean;
  readonly escalateAfterFallbacks: number;
  readonly silenceTimeoutMs: number;
  readonly maxReprompts: number;
  readonly maxCallDurationMs: number;
  readonly startTimeoutMs: number;
  readonly turnTimeoutMs: number;
  readonly greeting: string;
  readonly repromptLine: string;
  readonly closingLine: string;
  readonly emergencyLine: string;
  readonly transferLine: string;
  /** Keypad digits that act without words: `transfer` asks for a person, `hangup` ends the call. */
  readonly dtmfActions: Readonly<Record<string, 'transfer' | 'hangup'>>;
}

export interface CallInput {
  /** Engine-side id of this call (known before Twilio's CallSid). */
  readonly callId: string;
  readonly companyId: string;
  readonly policy: CallPolicy;
}

export type CallEvent =
  | { type: 'twilio.start'; callSid: string }
  | { type: 'twilio.stop' }
  | { type: 'caller.speechStarted' }
  | { type: 'caller.speechStopped' }
  | { type: 'caller.transcriptPartial'; text: string }
  | { type: 'caller.transcriptFinal'; text: string }
  | { type: 'caller.dtmf'; digit: string }
  | { type: 'playback.done' };

export type CallEmitted =
  | { type: 'turn.completed'; record: TurnRecord }
  | {
      type: 'warmup.used';
      turn: number;
      timeSavedMs: number;
      provider: string;
      model: string;
      category: string | null;
    }
  | { type: 'reply.interrupted'; turn: number }
  /** The warmup's answer became the turn's reply: its text may be spoken as it streams. */
  | { type: 'llm.committed'; turn: number }
  | { type: 'call.transfer'; reason: string }
  | { type: 'call.hangup'; reason: string }
  | { type: 'call.ended'; reason: string }
  | { type: 'call.failed'; reason: string };

export type ReplyThen = 'listen' | 'transfer' | 'hangup';

export interface Reply {
  readonly text: string;
  readonly then: ReplyThen;
  readonly interruptible: boolean;
  /** Written by the LLM for this turn (not a fixed line whose audio can be cached). */
  readonly generated?: true;
}

interface TurnWork {
  capture: CaptureResult | null;
  preDetect: Situation | null;
  redetected: boolean;
  tier1: TierResult | null;
  gate: WarmupDecision | null;
  tier2: TierResult | null;
  warmup: { status: 'idle' | 'running' | 'done' | 'failed'; answer: LlmAnswer | null };
  tier3: LlmAnswer | null;
  failure: string | null;
  fallback: FallbackLine | null;
  answeredBy: AnsweredBy | null;
  warmupOutcome: WarmupOutcome;
  timings: StageTimings;
}

export interface CallContext {
  readonly callId: string;
  readonly companyId: string;
  readonly policy: CallPolicy;
  callSid: string | null;
  slots: Slots;
  situation: Situation | null;
  history: readonly ChatTurn[];
  turn: number;
  utterance: string;
  /** Words of a turn the caller talked over; they prefix the next utterance. */
  heldUtterance: string;
  reprompts: number;
  consecutiveFallbacks: number;
  work: TurnWork;
  reply: Reply | null;
  endReason: string | null;
}

/** What the turn actors get to work with. */
export interface TurnInput {
  readonly callId: string;
  readonly companyId: string;
  readonly turn: number;
  readonly utterance: string;
  readonly slots: Slots;
  readonly history: readonly ChatTurn[];
}
export interface DetectInput extends TurnInput {
  readonly pass: 'first' | 'reconcile';
}
export interface Tier2Input extends TurnInput {
  readonly situation: Situation | null;
}
export interface WarmupGateInput {
  readonly callId: string;
  readonly companyId: string;
  readonly tier1Confidence: number;
  readonly category: string | null;
}
export interface LlmInput extends TurnInput {
  readonly mode: 'warmup' | 'tier3';
  readonly situation: Situation | null;
  readonly candidates: readonly ScenarioCandidate[];
}
export interface FallbackInput {
  readonly callId: string;
  readonly companyId: string;
  readonly kind: FallbackKind;
  /** Offer transfer / message / callback in words. */
  readonly offerEscalation: boolean;
}
export interface SpeakerInput {
  readonly callId: string;
  readonly turn: number;
  readonly text: string;
  readonly interruptible: boolean;
  /** A fixed line (greeting, tier answer, fallback, …) rather than LLM text. */
  readonly cacheable: boolean;
}

const HISTORY_LIMIT = 12;

function notProvided(name: string): never {
  throw new Error(`call machine: the "${name}" actor was not provided`);
}

function emptyTimings(): StageTimings {
  return {
    captureMs: null,
    detectMs: null,
    redetectMs: null,
    tier1Ms: null,
    warmupGateMs: null,
    tier2Ms: null,
    tier3Ms: null,
    tier3FirstTokenMs: null,
    fallbackMs: null,
    providerMs: 0,
  };
}

function freshWork(): TurnWork {
  return {
    capture: null,
    preDetect: null,
    redetected: false,
    tier1: null,
    gate: null,
    tier2: null,
    warmup: { status: 'idle', answer: null },
    tier3: null,
    failure: null,
    fallback: null,
    answeredBy: null,
    warmupOutcome: 'none',
    timings: emptyTimings(),
  };
}

function turnInput(context: CallContext): TurnInput {
  return {
    callId: context.callId,
    companyId: context.companyId,
    turn: context.turn,
    utterance: context.utterance,
    slots: context.slots,
    history: context.history,
  };
}

function llmInput(context: CallContext, mode: 'warmup' | 'tier3'): LlmInput {
  const w = context.work;
  const candidates = (mode === 'tier3' ? w.tier2?.candidates : undefined) ?? w.tier1?.candidates ?? [];
  return { ...turnInput(context), mode, situation: context.situation, candidates };
}

function withTimings(work: TurnWork, patch: Partial<StageTimings>, providerMs = 0): TurnWork {
  return {
    ...work,
    timings: { ...work.timings, ...patch, providerMs: work.timings.providerMs + providerMs },
  };
}

/** The fallback line type that fits why nothing answered. */
function fallbackKindFor(context: CallContext): FallbackKind {
  if (context.work.failure !== null) return 'technicalIssue';
  const s = context.situation;
  if (s?.flags.outOfScope) return 'outOfScope';
  if (s === null || s.category === null || s.confidence < context.policy.detectConfidenceThreshold) {
    return 'clarificationNeeded';
  }
  return 'noMatchFound';
}

/**
 * Why detect must run again after capture, or null when its first answer stands. An unsure first
 * detection is asked again only if capture changed a slot: with none changed the second pass would
 * get the very input the first had (the utterance and the same slots), and with it the same answer,
 * one provider round trip later. A first detection that failed outright is always tried again.
 */
function reconcileReason(context: CallContext): TurnRecord['reconcileReason'] {
  if (context.policy.understandInOrder) return null;
  const { capture, preDetect } = context.work;
  const changed = capture?.changed ?? [];
  const newCritical = changed.some((name) => context.policy.criticalSlots.includes(name));
  const unsure =
    preDetect === null ||
    (preDetect.confidence < context.policy.detectConfidenceThreshold && changed.length > 0);
  return newCritical && unsure ? 'both' : newCritical ? 'new-critical-slot' : unsure ? 'unsure-detect' : null;
}

interface TierParams {
  readonly tier: 1 | 2;
  readonly result: TierResult;
}

function tier1Verdict(context: CallContext, result: TierResult) {
  return { result, threshold: context.policy.tier1Threshold };
}

function tier2Verdict(context: CallContext, result: TierResult) {
  return { result, threshold: context.policy.tier2Threshold };
}

/** Records a tier's verdict and its timing in the turn's work. */
function noteTier(work: TurnWork, { tier, result }: TierParams): TurnWork {
  return tier === 1
    ? withTimings({ ...work, tier1: result }, { tier1Ms: result.durationMs }, result.providerMs)
    : withTimings({ ...work, tier2: result }, { tier2Ms: result.durationMs }, result.providerMs);
}

/** What became of a warmup when the turn moves on without adopting it. */
function warmupOutcomeOnLeaving(work: TurnWork): WarmupOutcome {
  switch (work.warmup.status) {
    case 'running':
      return 'cancelled';
    case 'done':
      return 'unused';
    case 'failed':
      return 'failed';
    case 'idle':
      return work.warmupOutcome;
  }
}

function emergencyReply(context: CallContext): Reply {
  return {
    text: context.policy.emergencyLine,
    then: context.policy.canTransfer ? 'transfer' : 'listen',
    interruptible: false,
  };
}

function tierAnswer(result: TierResult): Reply {
  const then: ReplyThen =
    result.action === 'transfer'
      ? 'transfer'
      : result.endsCall || result.action === 'hangup'
        ? 'hangup'
        : 'listen';
  return { text: result.reply ?? '', then, interruptible: then === 'listen' };
}

export const callMachine = setup({
  types: {
    context: {} as CallContext,
    events: {} as CallEvent,
    input: {} as CallInput,
    emitted: {} as CallEmitted,
  },
  actors: {
    capture: fromPromise<CaptureResult, TurnInput>(() => notProvided('capture')),
    detect: fromPromise<Situation, DetectInput>(() => notProvided('detect')),
    tier1: fromPromise<TierResult, TurnInput>(() => notProvided('tier1')),
    tier2: fromPromise<TierResult, Tier2Input>(() => notProvided('tier2')),
    warmupGate: fromPromise<WarmupDecision, WarmupGateInput>(() => notProvided('warmupGate')),
    llm: fromPromise<LlmAnswer, LlmInput>(() => notProvided('llm')),
    fallbackLine: fromPromise<FallbackLine, FallbackInput>(() => notProvided('fallbackLine')),
    speaker: fromCallback<{ type: 'noop' }, SpeakerInput>(() => notProvided('speaker')),
  },
  delays: {
    startTimeout: ({ context }) => context.policy.startTimeoutMs,
    silenceTimeout: ({ context }) => context.policy.silenceTimeoutMs,
    maxCallDuration: ({ context }) => context.policy.maxCallDurationMs,
    turnTimeout: ({ context }) => context.policy.turnTimeoutMs,
  },
  guards: {
    /** A tier found a scenario with at least its threshold's confidence. */
    confident: (_, params: { result: TierResult; threshold: number }) =>
      params.result.scenarioId !== null && params.result.confidence >= params.threshold,
    repromptsExhausted: ({ context }) => context.reprompts >= context.policy.maxReprompts,
    understandsInOrder: ({ context }) => context.policy.understandInOrder,
    /** Reconcile: a new critical slot, or a first detection too unsure to trust (parallel only). */
    needsRedetect: ({ context }) => reconcileReason(context) !== null,
    warmupImpossible: ({ context }) => !context.policy.llmEnabled || !context.policy.warmupEnabled,
    warmupApproved: ({ context }) => context.work.gate?.warm === true,
    warmupAnswered: ({ context }) => context.work.warmup.status === 'done',
    warmupFailed: ({ context }) => context.work.warmup.status === 'failed',
    llmDisabled: ({ context }) => !context.policy.llmEnabled,
    callerNeedsPerson: ({ context }) =>
      context.policy.canTransfer &&
      (context.situation?.flags.wantsHuman === true || context.situation?.flags.emergency === true),
    replyThenTransfer: ({ context }) => context.reply?.then === 'transfer',
    replyThenHangup: ({ context }) => context.reply?.then === 'hangup',
    replyInterruptible: ({ context }) => context.reply?.interruptible !== false,
    asksForPerson: ({ context, event }) =>
      event.type === 'caller.dtmf' &&
      context.policy.dtmfActions[event.digit] === 'transfer' &&
      context.policy.canTransfer,
    asksToHangUp: ({ context, event }) =>
      event.type === 'caller.dtmf' && context.policy.dtmfActions[event.digit] === 'hangup',
  },
  actions: {
    /** Tier 1 or 2 answers; a warmup still running is thereby cancelled (leaving `warm` stops it). */
    answerFromTier: assign(({ context }, params: TierParams) => ({
      reply: tierAnswer(params.result),
      work: {
        ...noteTier(context.work, params),
        answeredBy: params.tier,
        warmupOutcome: warmupOutcomeOnLeaving(context.work),
      },
    })),
    noteTier: assign(({ context }, params: TierParams) => ({ work: noteTier(context.work, params) })),
    recordStart: assign(({ event }) => (event.type === 'twilio.start' ? { callSid: event.callSid } : {})),
    beginTurn: assign(({ context, event }) => {
      const said = event.type === 'caller.transcriptFinal' ? event.text.trim() : '';
      const utterance = [context.heldUtterance, said].filter((s) => s !== '').join(' ');
      return { turn: context.turn + 1, utterance, heldUtterance: '', reprompts: 0, work: freshWork() };
    }),
    /** The caller talked over an unfinished turn: keep their words for the next one. */
    holdUtterance: assign(({ context }) => ({ heldUtterance: context.utterance })),
    prepareReprompt: assign(({ context }) => ({
      reprompts: context.reprompts + 1,
      reply: { text: context.policy.repromptLine, then: 'listen', interruptible: true } satisfies Reply,
    })),
    prepareClosing: assign(({ context }) => ({
      reply: { text: context.policy.closingLine, then: 'hangup', interruptible: false } satisfies Reply,
    })),
    prepareTransfer: assign(({ context }) => ({
      reply: { text: context.policy.transferLine, then: 'transfer', interruptible: false } satisfies Reply,
    })),
    noteBargeIn: emit(({ context }) => ({ type: 'reply.interrupted' as const, turn: context.turn })),
    emitTransfer: emit(({ context }) => ({
      type: 'call.transfer' as const,
      reason: context.endReason ?? 'requested',
    })),
    emitHangup: emit(({ context }) => ({
      type: 'call.hangup' as const,
      reason: context.endReason ?? 'completed',
    })),
    emitEnded: emit(({ context }) => ({
      type: 'call.ended' as const,
      reason: context.endReason ?? 'stream-stopped',
    })),
    emitFailed: emit(({ context }) => ({
      type: 'call.failed' as const,
      reason: context.endReason ?? 'failed',
    })),
    /** Closes the books on a turn: the turn record for whoever listens, history, counters. */
    answerWithEmergencyLine: assign(({ context }) => ({
      reply: emergencyReply(context),
      work: { ...context.work, answeredBy: 'fallback' as const },
    })),
    completeTurn: enqueueActions(({ context, enqueue }) => {
      enqueue.emit({ type: 'turn.completed', record: turnRecord(context) });
      const history = [
        ...context.history,
        { role: 'caller', text: context.utterance } satisfies ChatTurn,
        { role: 'agent', text: context.reply?.text ?? '' } satisfies ChatTurn,
      ].slice(-HISTORY_LIMIT);
      const fellBack = context.work.answeredBy === 'fallback';
      enqueue.assign({ history, consecutiveFallbacks: fellBack ? context.consecutiveFallbacks + 1 : 0 });
    }),
    /** Words said while a reply could not be interrupted are kept for the next turn. */
    keepWords: assign(({ context, event }) =>
      event.type === 'caller.transcriptFinal'
        ? { heldUtterance: [context.heldUtterance, event.text.trim()].filter((s) => s !== '').join(' ') }
        : {},
    ),
  },
}).createMachine({
  id: 'call',
  context: ({ input }) => ({
    callId: input.callId,
    companyId: input.companyId,
    policy: input.policy,
    callSid: null,
    slots: {},
    situation: null,
    history: [],
    turn: 0,
    utterance: '',
    heldUtterance: '',
    reprompts: 0,
    consecutiveFallbacks: 0,
    work: freshWork(),
    reply: null,
    endReason: null,
  }),
  initial: 'awaitingStart',
  on: {
    'twilio.stop': { target: '.ended', actions: assign({ endReason: 'stream-stopped' }) },
  },
  states: {
    awaitingStart: {
      on: { 'twilio.start': { target: 'greeting', actions: 'recordStart' } },
      after: { startTimeout: { target: 'failed', actions: assign({ endReason: 'start-timeout' }) } },
    },

    greeting: {
      entry: assign(({ context }) => ({
        reply: { text: context.policy.greeting, then: 'listen', interruptible: true } satisfies Reply,
      })),
      invoke: {
        src: 'speaker',
        input: ({ context }) => speakerInput(context),
        onError: { target: 'failed', actions: assign({ endReason: 'speaker-failed' }) },
      },
      on: {
        'playback.done': 'conversation',
        'caller.speechStarted': 'conversation',
        'caller.dtmf': [
          { guard: 'asksForPerson', target: 'conversation.speaking', actions: 'prepareTransfer' },
          { guard: 'asksToHangUp', target: 'closing', actions: assign({ endReason: 'dtmf-hangup' }) },
        ],
        'caller.transcriptFinal': { target: 'conversation.thinking', actions: 'beginTurn' },
      },
    },

    conversation: {
      initial: 'listening',
      after: {
        maxCallDuration: [
          // Never hang up on a caller we are handing to a person.
          { guard: 'replyThenTransfer', target: 'transferring' },
          { target: 'closing', actions: assign({ endReason: 'max-call-duration' }) },
        ],
      },
      on: {
        'caller.dtmf': [
          { guard: 'asksForPerson', target: '.speaking', actions: 'prepareTransfer' },
          { guard: 'asksToHangUp', target: '#call.closing', actions: assign({ endReason: 'dtmf-hangup' }) },
        ],
      },
      states: {
        listening: {
          after: {
            silenceTimeout: [
              {
                guard: 'repromptsExhausted',
                target: '#call.closing',
                actions: assign({ endReason: 'caller-silent' }),
              },
              { target: 'speaking', actions: 'prepareReprompt' },
            ],
          },
          on: {
            'caller.transcriptFinal': { target: 'thinking', actions: 'beginTurn' },
            // The caller is talking: restart the silence clock.
            'caller.speechStarted': { target: 'listening', reenter: true },
          },
        },

        thinking: {
          initial: 'understanding',
          after: {
            turnTimeout: {
              target: '.fallingBack',
              actions: assign(({ context }) => ({
                work: {
                  ...context.work,
                  failure: 'turn-timeout',
                  warmupOutcome: warmupOutcomeOnLeaving(context.work),
                },
              })),
            },
          },
          on: {
            // Barge-in while thinking: abandon the turn (stopping its actors aborts their requests).
            'caller.speechStarted': { target: 'listening', actions: ['holdUtterance', 'noteBargeIn'] },
            'caller.transcriptFinal': {
              target: 'thinking',
              reenter: true,
              actions: ['holdUtterance', 'noteBargeIn', 'beginTurn'],
            },
          },
          states: {
            understanding: {
              type: 'parallel',
              states: {
                capture: {
                  initial: 'running',
                  states: {
                    running: {
                      invoke: {
                        src: 'capture',
                        input: ({ context }) => turnInput(context),
                        onDone: {
                          target: 'done',
                          actions: assign(({ context, event }) => ({
                            work: withTimings(
                              { ...context.work, capture: event.output },
                              { captureMs: event.output.durationMs },
                            ),
                          })),
                        },
                        onError: 'done',
                      },
                    },
                    done: { type: 'final' },
                  },
                },
                detect: {
                  initial: 'ordering',
                  states: {
                    ordering: {
                      always: [
                        { guard: 'understandsInOrder', target: 'awaitingCapture' },
                        { target: 'running' },
                      ],
                    },
                    // Sequential understanding (a baseline, or for providers that cannot take two requests).
                    awaitingCapture: {
                      always: {
                        guard: stateIn('#call.conversation.thinking.understanding.capture.done'),
                        target: 'running',
                      },
                    },
                    running: {
                      invoke: {
                        src: 'detect',
                        // In parallel, detect runs on the context as it was before this turn's capture.
                        input: ({ context }) => ({
                          ...turnInput(context),
                          slots: context.policy.understandInOrder
                            ? (context.work.capture?.slots ?? context.slots)
                            : context.slots,
                          pass: 'first' as const,
                        }),
                        onDone: {
                          target: 'done',
                          actions: assign(({ context, event }) => ({
                            work: withTimings(
                              { ...context.work, preDetect: event.output },
                              { detectMs: event.output.durationMs },
                            ),
                          })),
                        },
                        onError: 'done',
                      },
                    },
                    done: { type: 'final' },
                  },
                },
              },
              onDone: {
                target: 'reconciling',
                // Side by side, the critical path is the slower provider; in order, both.
                actions: assign(({ context }) => {
                  const w = context.work;
                  const capture = w.capture?.providerMs ?? 0;
                  const detect = w.preDetect?.providerMs ?? 0;
                  const providerMs = context.policy.understandInOrder
                    ? capture + detect
                    : Math.max(capture, detect);
                  return {
                    slots: w.capture?.slots ?? context.slots,
                    situation: w.preDetect ?? context.situation,
                    work: withTimings(w, {}, providerMs),
                  };
                }),
              },
            },

            reconciling: {
              always: [{ guard: 'needsRedetect', target: 'redetecting' }, { target: 'routing' }],
            },

            redetecting: {
              invoke: {
                src: 'detect',
                input: ({ context }) => ({ ...turnInput(context), pass: 'reconcile' as const }),
                onDone: {
                  target: 'routing',
                  actions: assign(({ context, event }) => ({
                    situation: event.output,
                    work: withTimings(
                      { ...context.work, redetected: true },
                      { redetectMs: event.output.durationMs },
                      event.output.providerMs,
                    ),
                  })),
                },
                onError: 'routing',
              },
            },

            routing: {
              initial: 'tier1',
              states: {
                tier1: {
                  invoke: {
                    src: 'tier1',
                    input: ({ context }) => turnInput(context),
                    onDone: [
                      {
                        guard: {
                          type: 'confident',
                          params: ({ context, event }) => tier1Verdict(context, event.output),
                        },
                        target: '#call.conversation.thinking.answered',
                        actions: {
                          type: 'answerFromTier',
                          params: ({ event }) => ({ tier: 1, result: event.output }),
                        },
                      },
                      {
                        target: 'gatingWarmup',
                        actions: {
                          type: 'noteTier',
                          params: ({ event }) => ({ tier: 1, result: event.output }),
                        },
                      },
                    ],
                    onError: 'gatingWarmup',
                  },
                },

                gatingWarmup: {
                  always: {
                    guard: 'warmupImpossible',
                    target: 'cold',
                    actions: assign(({ context }) => ({
                      work: {
                        ...context.work,
                        gate: {
                          warm: false,
                          reason: context.policy.llmEnabled ? 'warmup-disabled' : 'llm-disabled',
                          durationMs: 0,
                        },
                        warmupOutcome: 'skipped',
                      },
                    })),
                  },
                  invoke: {
                    src: 'warmupGate',
                    input: ({ context }) => ({
                      callId: context.callId,
                      companyId: context.companyId,
                      tier1Confidence: context.work.tier1?.confidence ?? 0,
                      category: context.situation?.category ?? null,
                    }),
                    onDone: {
                      target: 'deciding',
                      actions: assign(({ context, event }) => ({
                        work: withTimings(
                          {
                            ...context.work,
                            gate: event.output,
                            warmupOutcome: event.output.warm ? context.work.warmupOutcome : 'skipped',
                          },
                          { warmupGateMs: event.output.durationMs },
                        ),
                      })),
                    },
                    onError: {
                      target: 'cold',
                      actions: assign(({ context }) => ({
                        work: {
                          ...context.work,
                          gate: { warm: false, reason: 'gate-error', durationMs: 0 },
                          warmupOutcome: 'skipped',
                        },
                      })),
                    },
                  },
                },

                deciding: {
                  always: [{ guard: 'warmupApproved', target: 'warm' }, { target: 'cold' }],
                },

                // The warmup spans Tier 2 and its adoption: leaving `warm` stops it and aborts its request.
                warm: {
                  entry: assign(({ context }) => ({
                    work: { ...context.work, warmup: { status: 'running', answer: null } },
                  })),
                  invoke: {
                    id: 'warmup',
                    src: 'llm',
                    input: ({ context }) => llmInput(context, 'warmup'),
                    onDone: {
                      actions: assign(({ context, event }) => ({
                        work: { ...context.work, warmup: { status: 'done', answer: event.output } },
                      })),
                    },
                    onError: {
                      actions: assign(({ context }) => ({
                        work: { ...context.work, warmup: { status: 'failed', answer: null } },
                      })),
                    },
                  },
                  initial: 'tier2',
                  states: {
                    tier2: {
                      invoke: {
                        src: 'tier2',
                        input: ({ context }) => ({ ...turnInput(context), situation: context.situation }),
                        onDone: [
                          {
                            guard: {
                              type: 'confident',
                              params: ({ context, event }) => tier2Verdict(context, event.output),
                            },
                            target: '#call.conversation.thinking.answered',
                            actions: {
                              type: 'answerFromTier',
                              params: ({ event }) => ({ tier: 2, result: event.output }),
                            },
                          },
                          {
                            target: 'adoptingWarmup',
                            actions: {
                              type: 'noteTier',
                              params: ({ event }) => ({ tier: 2, result: event.output }),
                            },
                          },
                        ],
                        onError: 'adoptingWarmup',
                      },
                    },
                    // Tier 3 adopts the warmup: exactly one LLM request for this turn.
                    adoptingWarmup: {
                      entry: emit(({ context }) => ({ type: 'llm.committed' as const, turn: context.turn })),
                      always: [
                        {
                          guard: 'warmupAnswered',
                          target: '#call.conversation.thinking.answered',
                          actions: [
                            assign(({ context }) => {
                              const answer = context.work.warmup.answer!;
                              const headStartMs = context.work.timings.tier2Ms ?? 0;
                              return {
                                reply: {
                                  text: answer.text,
                                  then: 'listen',
                                  interruptible: true,
                                  generated: true,
                                } satisfies Reply,
                                work: withTimings(
                                  { ...context.work, tier3: answer, answeredBy: 3, warmupOutcome: 'used' },
                                  { tier3Ms: answer.durationMs, tier3FirstTokenMs: answer.firstTokenMs },
                                  Math.max(0, answer.durationMs - headStartMs),
                                ),
                              };
                            }),
                            emit(({ context }) => ({
                              type: 'warmup.used' as const,
                              turn: context.turn,
                              provider: context.work.tier3?.provider ?? '',
                              model: context.work.tier3?.model ?? '',
                              category: context.situation?.category ?? null,
                              timeSavedMs: Math.min(
                                context.work.timings.tier2Ms ?? 0,
                                context.work.tier3?.durationMs ?? 0,
                              ),
                            })),
                          ],
                        },
                        {
                          guard: 'warmupFailed',
                          target: '#call.conversation.thinking.fallingBack',
                          actions: assign(({ context }) => ({
                            work: { ...context.work, failure: 'llm-failed', warmupOutcome: 'failed' },
                          })),
                        },
                      ],
                    },
                  },
                },

                cold: {
                  initial: 'tier2',
                  states: {
                    tier2: {
                      invoke: {
                        src: 'tier2',
                        input: ({ context }) => ({ ...turnInput(context), situation: context.situation }),
                        onDone: [
                          {
                            guard: {
                              type: 'confident',
                              params: ({ context, event }) => tier2Verdict(context, event.output),
                            },
                            target: '#call.conversation.thinking.answered',
                            actions: {
                              type: 'answerFromTier',
                              params: ({ event }) => ({ tier: 2, result: event.output }),
                            },
                          },
                          {
                            target: 'tier3',
                            actions: {
                              type: 'noteTier',
                              params: ({ event }) => ({ tier: 2, result: event.output }),
                            },
                          },
                        ],
                        onError: 'tier3',
                      },
                    },
                    tier3: {
                      always: { guard: 'llmDisabled', target: '#call.conversation.thinking.fallingBack' },
                      invoke: {
                        src: 'llm',
                        input: ({ context }) => llmInput(context, 'tier3'),
                        onDone: {
                          target: '#call.conversation.thinking.answered',
                          actions: assign(({ context, event }) => ({
                            reply: {
                              text: event.output.text,
                              then: 'listen',
                              interruptible: true,
                              generated: true,
                            } satisfies Reply,
                            work: withTimings(
                              { ...context.work, tier3: event.output, answeredBy: 3 },
                              {
                                tier3Ms: event.output.durationMs,
                                tier3FirstTokenMs: event.output.firstTokenMs,
                              },
                              event.output.durationMs,
                            ),
                          })),
                        },
                        onError: {
                          target: '#call.conversation.thinking.fallingBack',
                          actions: assign(({ context }) => ({
                            work: { ...context.work, failure: 'llm-failed' },
                          })),
                        },
                      },
                    },
                  },
                },
              },
            },

            fallingBack: {
              always: {
                guard: 'callerNeedsPerson',
                target: 'answered',
                actions: assign(({ context }) => ({
                  reply: {
                    text: context.policy.transferLine,
                    then: 'transfer',
                    interruptible: false,
                  } satisfies Reply,
                  work: { ...context.work, answeredBy: 'fallback' },
                })),
              },
              invoke: {
                src: 'fallbackLine',
                input: ({ context }) => ({
                  callId: context.callId,
                  companyId: context.companyId,
                  kind: fallbackKindFor(context),
                  offerEscalation: context.consecutiveFallbacks + 1 >= context.policy.escalateAfterFallbacks,
                }),
                onDone: {
                  target: 'answered',
                  actions: assign(({ context, event }) => {
                    const escalate =
                      context.policy.canTransfer &&
                      context.consecutiveFallbacks + 1 >= context.policy.escalateAfterFallbacks;
                    return {
                      reply: {
                        text: event.output.text,
                        then: escalate ? 'transfer' : 'listen',
                        interruptible: !escalate,
                      } satisfies Reply,
                      work: withTimings(
                        { ...context.work, fallback: event.output, answeredBy: 'fallback' },
                        { fallbackMs: event.output.durationMs },
                      ),
                    };
                  }),
                },
                // Even the fallback failed: the emergency line, and a person if we can reach one.
                onError: { target: 'answered', actions: 'answerWithEmergencyLine' },
              },
              // A fallback line that never comes must not leave the caller in silence either.
              after: { turnTimeout: { target: 'answered', actions: 'answerWithEmergencyLine' } },
            },

            answered: { type: 'final' },
          },
          onDone: { target: 'speaking', actions: 'completeTurn' },
        },

        speaking: {
          invoke: {
            src: 'speaker',
            input: ({ context }) => speakerInput(context),
            onError: { target: '#call.failed', actions: assign({ endReason: 'speaker-failed' }) },
          },
          on: {
            'playback.done': [
              { guard: 'replyThenTransfer', target: '#call.transferring' },
              { guard: 'replyThenHangup', target: '#call.hangingUp' },
              { target: 'listening' },
            ],
            // Barge-in: leaving `speaking` stops the speaker, which clears what is queued.
            'caller.speechStarted': {
              guard: 'replyInterruptible',
              target: 'listening',
              actions: 'noteBargeIn',
            },
            'caller.transcriptFinal': [
              { guard: 'replyInterruptible', target: 'thinking', actions: ['noteBargeIn', 'beginTurn'] },
              { actions: 'keepWords' },
            ],
          },
        },
      },
    },

    closing: {
      entry: 'prepareClosing',
      invoke: {
        src: 'speaker',
        input: ({ context }) => speakerInput(context),
        onError: 'hangingUp',
      },
      on: { 'playback.done': 'hangingUp' },
    },

    transferring: {
      entry: [assign(({ context }) => ({ endReason: context.endReason ?? 'transfer' })), 'emitTransfer'],
      always: 'ended',
    },

    hangingUp: {
      entry: [assign(({ context }) => ({ endReason: context.endReason ?? 'completed' })), 'emitHangup'],
      always: 'ended',
    },

    failed: { type: 'final', entry: 'emitFailed' },
    ended: { type: 'final', entry: 'emitEnded' },
  },
});

function speakerInput(context: CallContext): SpeakerInput {
  return {
    callId: context.callId,
    turn: context.turn,
    text: context.reply?.text ?? '',
    interruptible: context.reply?.interruptible ?? true,
    cacheable: context.reply?.generated !== true,
  };
}

export function turnRecord(context: CallContext): TurnRecord {
  const w = context.work;
  const tier: AnsweredBy = w.answeredBy ?? 'fallback';
  const answering = tier === 1 ? w.tier1 : tier === 2 ? w.tier2 : null;
  return {
    turn: context.turn,
    utterance: context.utterance,
    slots: context.slots,
    situation: context.situation,
    reconciled: w.redetected,
    reconcileReason: w.redetected ? reconcileReason(context) : null,
    tier,
    confidence:
      answering?.confidence ??
      (tier === 3 ? 1 : Math.max(w.tier1?.confidence ?? 0, w.tier2?.confidence ?? 0)),
    tier1Confidence: w.tier1?.confidence ?? null,
    tier2Confidence: w.tier2?.confidence ?? null,
    category: answering?.category ?? context.situation?.category ?? null,
    scenarioId: answering?.scenarioId ?? null,
    warmup: w.warmupOutcome,
    warmupReason: w.gate?.reason ?? null,
    fallbackKind: w.fallback?.kind ?? null,
    reply: context.reply?.text ?? '',
    next: context.reply?.then ?? 'listen',
    timings: w.timings,
  };
}

export type CallMachine = typeof callMachine;
