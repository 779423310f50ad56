/**
 * The alerts that answered turns tell about: a fallback line used (FALLBACK_USED), a company whose
 * fallback share is too high (FALLBACK_RATE_HIGH), and a slow LLM (LLM_SLOW). Fed from the engine's
 * onTurn hook; everything here is in memory and O(1) per turn.
 */
import type { AnsweredBy, TurnRecord } from '../../machines/types.ts';
import type { Alerts } from './alerts.ts';

/** The reference's "LLM response slow": a Tier 3 request longer than three seconds. */
export const LLM_SLOW_THRESHOLD_MS = 3000;

/**
 * True when the turn's Tier 3 request took longer than `thresholdMs`. Measured on the LLM's own
 * duration (timings.tier3Ms), also for an adopted warmup whose head start hid part of it from the
 * caller: the alert is about the provider, not about this caller's wait.
 */
export function isLlmSlow(
  record: { readonly timings: Pick<TurnRecord['timings'], 'tier3Ms'> },
  thresholdMs: number = LLM_SLOW_THRESHOLD_MS,
): boolean {
  const ms = record.timings.tier3Ms;
  return ms !== null && ms > thresholdMs;
}

export interface FallbackRateWatchOptions {
  readonly alerts: Pick<Alerts, 'raise'>;
  /** Fallback turns / answered turns above this raises (0.15, the reference's 15 %). */
  readonly thresholdRatio?: number;
  /** Fewer answered turns than this in the window is not evidence yet (20). */
  readonly minTurns?: number;
  /** The sliding window (900 000 = fifteen minutes); resolution windowMs / 30. */
  readonly windowMs?: number;
  readonly now?: () => Date;
}

/** One company's share in the window. */
export interface FallbackRate {
  readonly turns: number;
  readonly fallbackTurns: number;
  /** Null before any turn. */
  readonly ratio: number | null;
}

export interface FallbackRateWatch {
  /** One answered turn of a company, by the tier that answered it. */
  observe(companyId: string, tier: AnsweredBy): void;
  rate(companyId: string): FallbackRate;
}

export const DEFAULT_FALLBACK_RATE_WINDOW_MS = 900_000;
/** Buckets per window: counting per bucket keeps memory fixed whatever the traffic. */
const BUCKETS = 30;

interface CompanyWindow {
  /** Bucket number held by each slot (slot = bucket % BUCKETS). */
  readonly stamp: number[];
  readonly turns: number[];
  readonly fallback: number[];
  /** When FALLBACK_RATE_HIGH was last raised for this company. */
  raisedAt: number | null;
}

/**
 * Raises FALLBACK_RATE_HIGH for a company when, over the sliding window, at least `minTurns` turns
 * were answered and the fallback share exceeds `thresholdRatio`. At most once per window per
 * company while it stays high, so the stored alert's count is the number of windows it was high,
 * not the number of turns.
 */
export function createFallbackRateWatch(options: FallbackRateWatchOptions): FallbackRateWatch {
  const thresholdRatio = options.thresholdRatio ?? 0.15;
  const minTurns = Math.max(1, options.minTurns ?? 20);
  const windowMs = options.windowMs ?? DEFAULT_FALLBACK_RATE_WINDOW_MS;
  const now = options.now ?? (() => new Date());
  const bucketMs = Math.max(1, Math.ceil(windowMs / BUCKETS));
  const companies = new Map<string, CompanyWindow>();

  function totals(w: CompanyWindow, bucket: number): { turns: number; fallbackTurns: number } {
    let turns = 0;
    let fallbackTurns = 0;
    for (let slot = 0; slot < BUCKETS; slot++) {
      const stamp = w.stamp[slot]!;
      if (stamp > bucket - BUCKETS && stamp <= bucket) {
        turns += w.turns[slot]!;
        fallbackTurns += w.fallback[slot]!;
      }
    }
    return { turns, fallbackTurns };
  }

  return {
    observe(companyId, tier) {
      const at = now().getTime();
      const bucket = Math.floor(at / bucketMs);
      let w = companies.get(companyId);
      if (w === undefined) {
        w = {
          stamp: new Array<number>(BUCKETS).fill(-Infinity),
          turns: new Array<number>(BUCKETS).fill(0),
          fallback: new Array<number>(BUCKETS).fill(0),
          raisedAt: null,
        };
        companies.set(companyId, w);
      }
      const slot = bucket % BUCKETS;
      if (w.stamp[slot] !== bucket) {
        w.stamp[slot] = bucket;
        w.turns[slot] = 0;
        w.fallback[slot] = 0;
      }
      w.turns[slot] = (w.turns[slot] ?? 0) + 1;
      if (tier === 'fallback') w.fallback[slot] = (w.fallback[slot] ?? 0) + 1;

      const { turns, fallbackTurns } = totals(w, bucket);
      if (turns < minTurns || fallbackTurns / turns <= thresholdRatio) return;
      if (w.raisedAt !== null && at - w.raisedAt < windowMs && at >= w.raisedAt) return;
      w.raisedAt = at;
      options.alerts.raise('FALLBACK_RATE_HIGH', {
        companyId,
        message: 'Fallback lines answer too many turns; review the templates and the tier thresholds',
        details: {
          turns,
          fallbackTurns,
          ratio: Math.round((fallbackTurns / turns) * 1000) / 1000,
          thresholdRatio,
          windowMs,
        },
      });
    },
    rate(companyId) {
      const w = companies.get(companyId);
      if (w === undefined) return { turns: 0, fallbackTurns: 0, ratio: null };
      const { turns, fallbackTurns } = totals(w, Math.floor(now().getTime() / bucketMs));
      return { turns, fallbackTurns, ratio: turns === 0 ? null : fallbackTurns / turns };
    },
  };
}

/** What the turn alerts read of an answered turn (the engine's TurnObservation fits). */
export interface ObservedTurn {
  readonly companyId: string;
  readonly record: Pick<TurnRecord, 'tier' | 'fallbackKind'> & {
    readonly timings: Pick<TurnRecord['timings'], 'tier3Ms'>;
  };
}

export interface TurnAlertsOptions {
  readonly alerts: Pick<Alerts, 'raise'>;
  readonly fallbackRate?: Omit<FallbackRateWatchOptions, 'alerts'>;
  readonly llmSlowMs?: number;
}

/**
 * One hook for the engine's onTurn: FALLBACK_USED for every fallback turn (the alerts service keeps
 * it to one log line and one notification per company per window; the stored count is the number of
 * fallback turns), FALLBACK_RATE_HIGH through the watch, LLM_SLOW per slow Tier 3 request.
 */
export function createTurnAlerts(options: TurnAlertsOptions): {
  observe(turn: ObservedTurn): void;
  readonly fallbackRate: FallbackRateWatch;
} {
  const { alerts } = options;
  const llmSlowMs = options.llmSlowMs ?? LLM_SLOW_THRESHOLD_MS;
  const fallbackRate = createFallbackRateWatch({ ...options.fallbackRate, alerts });
  return {
    fallbackRate,
    observe({ companyId, record }) {
      fallbackRate.observe(companyId, record.tier);
      if (record.tier === 'fallback') {
        alerts.raise('FALLBACK_USED', {
          companyId,
          message: 'A fallback line answered the caller',
          details: { fallbackKind: record.fallbackKind },
        });
      }
      if (isLlmSlow(record, llmSlowMs)) {
        alerts.raise('LLM_SLOW', {
          companyId,
          message: 'An LLM answer took longer than the slow threshold',
          details: { tier3Ms: Math.round(record.timings.tier3Ms ?? 0), thresholdMs: llmSlowMs },
        });
      }
    },
  };
}
