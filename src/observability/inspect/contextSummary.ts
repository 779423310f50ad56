/**
 * The part of a call's context worth showing while debugging it: what was said and captured, what
 * detect concluded, what each tier decided, what became of the warmup, and the reply. The policy,
 * the history and the per-turn scratch space stay out, so each update the page receives is small.
 */
import type { CallContext } from '../../../machines/callMachine.ts';
import type { SituationFlags, TierResult } from '../../../machines/types.ts';

export interface TierSummary {
  readonly confidence: number;
  readonly threshold: number;
  readonly scenarioId: string | null;
  readonly category: string | null;
  readonly durationMs: number;
}

export interface ContextSummary {
  readonly turn: number;
  readonly callSid: string | null;
  readonly utterance: string;
  readonly heldUtterance: string;
  readonly slots: Readonly<Record<string, string>>;
  readonly situation: {
    readonly category: string | null;
    readonly confidence: number;
    readonly flags: SituationFlags;
    readonly source: string;
  } | null;
  readonly tier1: TierSummary | null;
  readonly tier2: TierSummary | null;
  readonly warmup: {
    readonly gate: { readonly warm: boolean; readonly reason: string } | null;
    readonly status: string;
    readonly outcome: string;
  };
  readonly tier3: {
    readonly provider: string;
    readonly model: string;
    readonly firstTokenMs: number | null;
    readonly durationMs: number;
  } | null;
  readonly fallbackKind: string | null;
  readonly failure: string | null;
  readonly answeredBy: 1 | 2 | 3 | 'fallback' | null;
  readonly reply: { readonly text: string; readonly then: string; readonly interruptible: boolean } | null;
  readonly reprompts: number;
  readonly consecutiveFallbacks: number;
  readonly endReason: string | null;
}

function tier(result: TierResult | null, threshold: number): TierSummary | null {
  if (result === null) return null;
  return {
    confidence: result.confidence,
    threshold,
    scenarioId: result.scenarioId,
    category: result.category,
    durationMs: result.durationMs,
  };
}

/** A JSON-safe summary of the call's context. */
export function summarizeContext(context: CallContext): ContextSummary {
  const w = context.work;
  const s = context.situation;
  return {
    turn: context.turn,
    callSid: context.callSid,
    utterance: context.utterance,
    heldUtterance: context.heldUtterance,
    slots: context.slots,
    situation:
      s === null
        ? null
        : { category: s.category, confidence: s.confidence, flags: s.flags, source: s.source },
    tier1: tier(w.tier1, context.policy.tier1Threshold),
    tier2: tier(w.tier2, context.policy.tier2Threshold),
    warmup: {
      gate: w.gate === null ? null : { warm: w.gate.warm, reason: w.gate.reason },
      status: w.warmup.status,
      outcome: w.warmupOutcome,
    },
    tier3:
      w.tier3 === null
        ? null
        : {
            provider: w.tier3.provider,
            model: w.tier3.model,
            firstTokenMs: w.tier3.firstTokenMs,
            durationMs: w.tier3.durationMs,
          },
    fallbackKind: w.fallback?.kind ?? null,
    failure: w.failure,
    answeredBy: w.answeredBy,
    reply: context.reply,
    reprompts: context.reprompts,
    consecutiveFallbacks: context.consecutiveFallbacks,
    endReason: context.endReason,
  };
}
