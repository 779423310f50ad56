/**
 * The warmup decision, taken after Tier 1 misses: should the LLM start speculatively while Tier 2
 * decides? Every "no" carries its reason, and is logged.
 */
import type { WarmupDecision } from '../../machines/types.ts';
import type { CompanyConfig } from '../config/companyConfig.ts';
import type { BudgetStore } from '../cost/budgets.ts';
import { dailyWarmupKey, toMicros } from '../cost/budgets.ts';
import type { WarmupStats } from './warmupStats.ts';

/** Below this many triggers in the window, a hit rate is not yet evidence. */
export const MIN_SAMPLES_COMPANY = 20;
export const MIN_SAMPLES_CATEGORY = 10;
export const HIT_RATE_WINDOW_DAYS = 7;

export interface WarmupGateDeps {
  /** Only read (spent); gateReads.ts puts a memory layer in front of remote stores. */
  readonly budgets: Pick<BudgetStore, 'spent'>;
  readonly stats: Pick<WarmupStats, 'hitRate'>;
  readonly now?: () => Date;
}

export interface WarmupQuery {
  readonly company: CompanyConfig;
  readonly tier1Confidence: number;
  readonly category: string | null;
}

export function createWarmupGate(deps: WarmupGateDeps) {
  const now = deps.now ?? (() => new Date());
  return async function decideWarmup(q: WarmupQuery): Promise<Omit<WarmupDecision, 'durationMs'>> {
    const w = q.company.warmup;
    if (!w.enabled) return { warm: false, reason: 'warmup-disabled' };
    if (q.category !== null && w.neverWarmupCategories.includes(q.category)) {
      return { warm: false, reason: 'never-warmup-category' };
    }
    const always = q.category !== null && w.alwaysWarmupCategories.includes(q.category);
    if (!always && q.tier1Confidence >= w.confidenceThreshold) {
      return { warm: false, reason: 'tier1-confidence-above-threshold' };
    }
    const today = now();
    // The three reads are independent: issued together they cost one round trip to a shared store
    // instead of three in a row (this is on the turn's critical path).
    const learn = w.enablePatternLearning && !always;
    const [spent, overall, mine] = await Promise.all([
      deps.budgets.spent(dailyWarmupKey(q.company.id, today)),
      deps.stats.hitRate(q.company.id, HIT_RATE_WINDOW_DAYS, today),
      learn ? deps.stats.hitRate(q.company.id, HIT_RATE_WINDOW_DAYS, today, q.category) : null,
    ]);
    if (spent >= toMicros(w.dailyBudgetUsd)) return { warm: false, reason: 'daily-budget-exhausted' };
    if (overall.triggered >= MIN_SAMPLES_COMPANY && overall.used / overall.triggered < w.minimumHitRate) {
      return { warm: false, reason: 'auto-disabled-low-hit-rate' };
    }
    if (
      mine !== null &&
      mine.triggered >= MIN_SAMPLES_CATEGORY &&
      mine.used / mine.triggered < w.minimumHitRate
    ) {
      return { warm: false, reason: 'category-low-hit-rate' };
    }
    return { warm: true, reason: always ? 'always-warmup-category' : 'tier1-confidence-below-threshold' };
  };
}

export type WarmupGate = ReturnType<typeof createWarmupGate>;
