/**
 * The domain vocabulary the call machine speaks. Adapters in src/ produce these shapes; the machine
 * never sees vendor types, sockets or audio.
 */

/** Captured slot values by slot name (callerName, callbackNumber, serviceAddress, …). */
export type Slots = Readonly<Record<string, string>>;

export interface SituationFlags {
  readonly emergency: boolean;
  readonly wantsHuman: boolean;
  readonly outOfScope: boolean;
  readonly goodbye: boolean;
}

/** What detect concluded about the caller's situation. */
export interface Situation {
  /** A template category name, or null when none fits. */
  readonly category: string | null;
  /** In [0, 1]. */
  readonly confidence: number;
  readonly flags: SituationFlags;
  /** 'rules' or 'llm'. */
  readonly source: string;
  /** Provider time spent, 0 for rule-based. */
  readonly providerMs: number;
  readonly durationMs: number;
}

export interface CaptureResult {
  /** Every slot known after this utterance (previous values merged with new ones). */
  readonly slots: Slots;
  /** Names of slots this utterance added or changed. */
  readonly changed: readonly string[];
  readonly source: string;
  readonly providerMs: number;
  readonly durationMs: number;
}

export interface ScenarioCandidate {
  readonly scenarioId: string;
  readonly category: string;
  readonly score: number;
}

/** A Tier 1 or Tier 2 verdict. A scenario is only answered when confidence reaches the tier's threshold. */
export interface TierResult {
  readonly confidence: number;
  readonly scenarioId: string | null;
  readonly category: string | null;
  readonly reply: string | null;
  readonly endsCall: boolean;
  readonly action: 'transfer' | 'hangup' | 'message' | null;
  /** Best candidates, most likely first (given to the LLM as hints). */
  readonly candidates: readonly ScenarioCandidate[];
  readonly providerMs: number;
  readonly durationMs: number;
}

export interface WarmupDecision {
  readonly warm: boolean;
  /** Why it was started or skipped, e.g. 'confidence-below-threshold', 'daily-budget-exhausted'. */
  readonly reason: string;
  readonly durationMs: number;
}

/** The result of one LLM answer (Tier 3 or an adopted warmup). */
export interface LlmAnswer {
  readonly text: string;
  readonly provider: string;
  readonly model: string;
  readonly firstTokenMs: number | null;
  readonly durationMs: number;
  readonly costUsd: number | null;
}

export type FallbackKind = 'clarificationNeeded' | 'noMatchFound' | 'technicalIssue' | 'outOfScope';

export interface FallbackLine {
  readonly kind: FallbackKind;
  readonly text: string;
  readonly durationMs: number;
}

export type ChatTurn = { readonly role: 'caller' | 'agent'; readonly text: string };

export type AnsweredBy = 1 | 2 | 3 | 'fallback';

/**
 * What became of the turn's warmup: none (not considered), skipped (the gate said no), cancelled
 * (Tier 2 answered while it ran), unused (it finished but Tier 2 answered), used, failed.
 */
export type WarmupOutcome = 'none' | 'skipped' | 'cancelled' | 'unused' | 'used' | 'failed';

/** Per-stage latency of one turn, in milliseconds (null = stage not run). */
export interface StageTimings {
  captureMs: number | null;
  detectMs: number | null;
  redetectMs: number | null;
  tier1Ms: number | null;
  warmupGateMs: number | null;
  tier2Ms: number | null;
  tier3Ms: number | null;
  tier3FirstTokenMs: number | null;
  fallbackMs: number | null;
  /** Provider time on the critical path (what the engine waited on vendors). */
  providerMs: number;
}

/** The record of one caller turn, emitted by the machine when the reply is decided. */
export interface TurnRecord {
  readonly turn: number;
  readonly utterance: string;
  readonly slots: Slots;
  readonly situation: Situation | null;
  readonly reconciled: boolean;
  /**
   * Why detect ran again: a new critical slot, a first detection too unsure to trust (failed, or
   * below the threshold while capture changed some slot), or both.
   */
  readonly reconcileReason: 'new-critical-slot' | 'unsure-detect' | 'both' | null;
  readonly tier: AnsweredBy;
  readonly confidence: number;
  readonly tier1Confidence: number | null;
  readonly tier2Confidence: number | null;
  readonly category: string | null;
  readonly scenarioId: string | null;
  readonly warmup: WarmupOutcome;
  readonly warmupReason: string | null;
  readonly fallbackKind: FallbackKind | null;
  readonly reply: string;
  /** What follows the reply: keep listening, transfer the caller, or hang up. */
  readonly next: 'listen' | 'transfer' | 'hangup';
  readonly timings: StageTimings;
}
