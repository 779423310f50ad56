/**
 * Warmup analytics for the admin dashboard (the reference's "Warmup Analytics" panel), computed
 * from the durable cost ledger and the turn records, plus the tier distribution of answered turns.
 *
 * Periods are whole UTC days: `days` days ending with the UTC day of `now`, today included, the same
 * buckets the warmup gate's hit-rate counters use. So `days: 7` here counts exactly what the gate
 * counts, and `autoDisabled` is the gate's own rule applied to the ledger.
 *
 * What the ledger says about a warmup (src/routing/tier3Llm.ts, src/calls/callSession.ts):
 * - `triggered` when the request starts (after the budgets were reserved, where the gate's counter
 *   is bumped too);
 * - then one terminal event carrying the money: `completed` (the LLM answered), `cancelled` (Tier 2
 *   answered first and the request was aborted: the prompt and any streamed tokens may still be
 *   billed, so its cost is usually not 0) or `failed`;
 * - and `used`, with `time_saved_ms`, when the turn adopted the warmup's answer. `used` carries no
 *   money: the answer's cost is on its `completed` event.
 */
import { AppError } from '../errors.ts';
import type { Queryable } from '../store/sql/db.ts';
import { HIT_RATE_WINDOW_DAYS, MIN_SAMPLES_CATEGORY, MIN_SAMPLES_COMPANY } from '../warmup/warmupGate.ts';

/**
 * What one second of caller waiting saved is worth, in USD: the reference's ROI calculator ("a
 * 1-second delay ≈ $0.10 loss in perceived value"). An assumption, not a measurement; pass your own.
 */
export const DEFAULT_VALUE_PER_SECOND_SAVED_USD = 0.1;

/** The schema's default for `warmup.minimumHitRate`, used when no company is given. */
export const DEFAULT_MINIMUM_HIT_RATE = 0.3;

/** Longest period an analytics query may cover. */
export const MAX_ANALYTICS_DAYS = 366;

/** The warmup gate's reason when the hit-rate rule switches warmup off (warmupGate.ts). */
export const AUTO_DISABLED_REASON = 'auto-disabled-low-hit-rate';

const DAY_MS = 86_400_000;

/** A period of whole UTC days. */
export interface UtcPeriod {
  readonly days: number;
  /** First instant of the period (00:00 UTC), inclusive. */
  readonly from: string;
  /** Midnight UTC after the day of `now`, exclusive. */
  readonly to: string;
}

export interface WarmupAnalyticsQuery {
  readonly companyId: string;
  /** 1–366 whole UTC days, today included. */
  readonly days: number;
  /** Ends the period (its UTC day is the last one); default: now. */
  readonly now?: Date;
  /** The company's warmup settings: `minimumHitRate` decides autoDisabled (default 0.3). */
  readonly company?: { readonly warmup: { readonly minimumHitRate: number } };
  /** Value of one second saved, USD (DEFAULT_VALUE_PER_SECOND_SAVED_USD). */
  readonly valuePerSecondSavedUsd?: number;
}

/** Warmups of one category, from the turn records. */
export interface WarmupCategoryStats {
  /** The turn's recorded category; null when none was known. */
  readonly category: string | null;
  /** Turns whose warmup ran: used + unused + cancelled + failed. */
  readonly triggered: number;
  readonly used: number;
  /** Finished, but Tier 2 had answered. */
  readonly unused: number;
  readonly cancelled: number;
  readonly failed: number;
  /** Turns where the gate said no. */
  readonly skipped: number;
  /** used / triggered; null without triggers. */
  readonly hitRate: number | null;
  /**
   * The gate's pattern-learning rule (at least MIN_SAMPLES_CATEGORY triggers and a hit rate below
   * minimumHitRate) applied to this period's turns. A hint, not the gate's verdict: see
   * `byCategory`.
   */
  readonly belowMinimumHitRate: boolean;
}

export interface WarmupAnalytics extends UtcPeriod {
  readonly companyId: string;
  readonly totalTriggered: number;
  readonly totalUsed: number;
  readonly totalCancelled: number;
  readonly totalFailed: number;
  readonly totalCompleted: number;
  /**
   * totalUsed / totalTriggered; null without triggers. A warmup is triggered and used within one
   * turn, so the two only straddle the period's start for a turn answered around midnight UTC.
   */
  readonly hitRate: number | null;
  /**
   * USD, the sum of the known costs of terminal warmup events (completed, cancelled, failed).
   * Unknown costs (a model missing from the price table) are NOT counted as 0: they are left out
   * and counted in `costUnknownEvents`, which makes totalCost a lower bound when that is above 0.
   */
  readonly totalCost: number;
  /** Terminal warmup events whose cost is unknown (cost_usd NULL). */
  readonly costUnknownEvents: number;
  /** Terminal warmup events whose tokens (and cost) are an estimate (e.g. cancelled mid-stream). */
  readonly costEstimatedEvents: number;
  /** Mean duration of completed warmup requests, ms; null without any. */
  readonly avgDuration: number | null;
  /** Mean time saved per used warmup, ms; null without any. */
  readonly avgTimeSaved: number | null;
  /** Σ time saved by used warmups, ms. */
  readonly totalTimeSavedMs: number;
  /** The value of one second saved this was computed with, USD. */
  readonly valuePerSecondSavedUsd: number;
  /** totalTimeSavedMs / 1000 × valuePerSecondSavedUsd, USD: a modelled value, not revenue. */
  readonly estimatedSavings: number;
  /**
   * Net return: (estimatedSavings − totalCost) / totalCost; 0.5 = 50 % more value than spend, −1 =
   * spend with no value. Null when totalCost is 0 or partly unknown (costUnknownEvents > 0).
   */
  readonly roi: number | null;
  /**
   * Per category, from the `turns` table: cost events carry no category. Approximate next to the
   * gate's own per-category counters: a turn records the category of the tier that answered it
   * (for a cancelled or unused warmup, Tier 2's scenario category), while the gate counts under the
   * situation's detected category; and turn records are analytics, written behind and droppable
   * during a long database outage. Most warmed turns first.
   */
  readonly byCategory: WarmupCategoryStats[];
  /** Turns where the gate said no, by its reason (e.g. 'auto-disabled-low-hit-rate'). */
  readonly skippedByReason: Record<string, number>;
  /**
   * The gate's company rule on the ledger: over the last HIT_RATE_WINDOW_DAYS UTC days ending with
   * `now`'s day (whatever `days` is), at least MIN_SAMPLES_COMPANY triggers and used / triggered
   * below minimumHitRate. Only this rule: a company with warmup switched off reads false here.
   */
  readonly autoDisabled: boolean;
  readonly autoDisabledReason: typeof AUTO_DISABLED_REASON | null;
  /** The counts the rule was applied to. */
  readonly gateWindow: {
    readonly days: number;
    readonly from: string;
    readonly triggered: number;
    readonly used: number;
    readonly hitRate: number | null;
    readonly minimumHitRate: number;
    readonly minSamples: number;
  };
}

/** The period of `days` whole UTC days ending with the UTC day of `now`. */
export function utcPeriod(days: number, now: Date = new Date()): UtcPeriod {
  if (!Number.isInteger(days) || days < 1 || days > MAX_ANALYTICS_DAYS) {
    throw new AppError('ERR_INVALID_ARGUMENT', `days must be a whole number from 1 to ${MAX_ANALYTICS_DAYS}`);
  }
  if (Number.isNaN(now.getTime())) throw new AppError('ERR_INVALID_ARGUMENT', 'now is not a valid date');
  const today = Math.floor(now.getTime() / DAY_MS) * DAY_MS;
  return {
    days,
    from: new Date(today - (days - 1) * DAY_MS).toISOString(),
    to: new Date(today + DAY_MS).toISOString(),
  };
}

function checkCompanyId(companyId: string): void {
  if (typeof companyId !== 'string' || companyId === '') {
    throw new AppError('ERR_INVALID_ARGUMENT', 'companyId is required');
  }
}

const ratio = (part: number, whole: number): number | null => (whole === 0 ? null : part / whole);
/** Money to the micro-dollar, the unit budgets are kept in: no 0.30000000000000004 on a dashboard. */
const usd = (value: number): number => Math.round(value * 1e6) / 1e6;

const LEDGER_SQL = `
SELECT
  count(*) FILTER (WHERE in_period AND action = 'triggered')::integer AS triggered,
  count(*) FILTER (WHERE in_period AND action = 'used')::integer AS used,
  count(*) FILTER (WHERE in_period AND action = 'cancelled')::integer AS cancelled,
  count(*) FILTER (WHERE in_period AND action = 'failed')::integer AS failed,
  count(*) FILTER (WHERE in_period AND action = 'completed')::integer AS completed,
  coalesce(sum(cost_usd) FILTER (WHERE in_period AND terminal), 0)::float8 AS known_cost,
  count(*) FILTER (WHERE in_period AND terminal AND cost_usd IS NULL)::integer AS cost_unknown,
  count(*) FILTER (WHERE in_period AND terminal AND estimated)::integer AS cost_estimated,
  avg(duration_ms) FILTER (WHERE in_period AND action = 'completed')::float8 AS avg_duration,
  avg(time_saved_ms) FILTER (WHERE in_period AND action = 'used')::float8 AS avg_time_saved,
  coalesce(sum(time_saved_ms) FILTER (WHERE in_period AND action = 'used'), 0)::float8 AS time_saved,
  count(*) FILTER (WHERE in_gate AND action = 'triggered')::integer AS gate_triggered,
  count(*) FILTER (WHERE in_gate AND action = 'used')::integer AS gate_used
FROM (
  SELECT action, cost_usd, estimated, duration_ms, time_saved_ms,
         at >= $2::timestamptz AS in_period,
         at >= $4::timestamptz AS in_gate,
         action IN ('completed', 'cancelled', 'failed') AS terminal
    FROM cost_events
   WHERE company_id = $1 AND purpose = 'warmup'
     AND at >= least($2::timestamptz, $4::timestamptz) AND at < $3::timestamptz
) e`;

const CATEGORY_SQL = `
SELECT category,
       count(*) FILTER (WHERE warmup IN ('used', 'unused', 'cancelled', 'failed'))::integer AS triggered,
       count(*) FILTER (WHERE warmup = 'used')::integer AS used,
       count(*) FILTER (WHERE warmup = 'unused')::integer AS unused,
       count(*) FILTER (WHERE warmup = 'cancelled')::integer AS cancelled,
       count(*) FILTER (WHERE warmup = 'failed')::integer AS failed,
       count(*) FILTER (WHERE warmup = 'skipped')::integer AS skipped
  FROM turns
 WHERE company_id = $1 AND created_at >= $2::timestamptz AND created_at < $3::timestamptz
   AND warmup <> 'none'
 GROUP BY category
 ORDER BY triggered DESC, skipped DESC, category NULLS LAST`;

const SKIPPED_SQL = `
SELECT coalesce(warmup_reason, '(none)') AS reason, count(*)::integer AS n
  FROM turns
 WHERE company_id = $1 AND created_at >= $2::timestamptz AND created_at < $3::timestamptz
   AND warmup = 'skipped'
 GROUP BY 1
 ORDER BY n DESC, reason`;

interface LedgerRow {
  triggered: number;
  used: number;
  cancelled: number;
  failed: number;
  completed: number;
  known_cost: number;
  cost_unknown: number;
  cost_estimated: number;
  avg_duration: number | null;
  avg_time_saved: number | null;
  time_saved: number;
  gate_triggered: number;
  gate_used: number;
}

type CategoryRow = Omit<WarmupCategoryStats, 'hitRate' | 'belowMinimumHitRate'>;

/** Warmup analytics of one company over `days` UTC days (see WarmupAnalytics for every field). */
export async function warmupAnalytics(db: Queryable, query: WarmupAnalyticsQuery): Promise<WarmupAnalytics> {
  checkCompanyId(query.companyId);
  const now = query.now ?? new Date();
  const period = utcPeriod(query.days, now);
  const gate = utcPeriod(HIT_RATE_WINDOW_DAYS, now);
  const valuePerSecondSavedUsd = query.valuePerSecondSavedUsd ?? DEFAULT_VALUE_PER_SECOND_SAVED_USD;
  if (!Number.isFinite(valuePerSecondSavedUsd) || valuePerSecondSavedUsd < 0) {
    throw new AppError('ERR_INVALID_ARGUMENT', 'valuePerSecondSavedUsd must be a number ≥ 0');
  }
  const minimumHitRate = query.company?.warmup.minimumHitRate ?? DEFAULT_MINIMUM_HIT_RATE;
  const range = [query.companyId, period.from, period.to] as const;

  const [ledgerRows, categoryRows, skippedRows] = await Promise.all([
    db.query<LedgerRow>(LEDGER_SQL, [...range, gate.from]),
    db.query<CategoryRow>(CATEGORY_SQL, range),
    db.query<{ reason: string; n: number }>(SKIPPED_SQL, range),
  ]);
  const l = ledgerRows[0]!;

  const totalCost = usd(l.known_cost);
  const estimatedSavings = usd((l.time_saved / 1000) * valuePerSecondSavedUsd);
  const roi = totalCost > 0 && l.cost_unknown === 0 ? (estimatedSavings - totalCost) / totalCost : null;
  const gateHitRate = ratio(l.gate_used, l.gate_triggered);
  const autoDisabled =
    l.gate_triggered >= MIN_SAMPLES_COMPANY && l.gate_used / l.gate_triggered < minimumHitRate;

  return {
    companyId: query.companyId,
    ...period,
    totalTriggered: l.triggered,
    totalUsed: l.used,
    totalCancelled: l.cancelled,
    totalFailed: l.failed,
    totalCompleted: l.completed,
    hitRate: ratio(l.used, l.triggered),
    totalCost,
    costUnknownEvents: l.cost_unknown,
    costEstimatedEvents: l.cost_estimated,
    avgDuration: l.avg_duration,
    avgTimeSaved: l.avg_time_saved,
    totalTimeSavedMs: l.time_saved,
    valuePerSecondSavedUsd,
    estimatedSavings,
    roi,
    byCategory: categoryRows.map((r) => ({
      category: r.category,
      triggered: r.triggered,
      used: r.used,
      unused: r.unused,
      cancelled: r.cancelled,
      failed: r.failed,
      skipped: r.skipped,
      hitRate: ratio(r.used, r.triggered),
      belowMinimumHitRate: r.triggered >= MIN_SAMPLES_CATEGORY && r.used / r.triggered < minimumHitRate,
    })),
    skippedByReason: Object.fromEntries(skippedRows.map((r) => [r.reason, r.n])),
    autoDisabled,
    autoDisabledReason: autoDisabled ? AUTO_DISABLED_REASON : null,
    gateWindow: {
      days: HIT_RATE_WINDOW_DAYS,
      from: gate.from,
      triggered: l.gate_triggered,
      used: l.gate_used,
      hitRate: gateHitRate,
      minimumHitRate,
      minSamples: MIN_SAMPLES_COMPANY,
    },
  };
}

/** How a company's answered turns were answered over a period. */
export interface TierDistribution extends UtcPeriod {
  readonly companyId: string;
  readonly turns: number;
  readonly tiers: { readonly 1: number; readonly 2: number; readonly 3: number; readonly fallback: number };
  /** Fallback turns / turns; null without turns. */
  readonly fallbackRate: number | null;
  /** Turns where detect ran a second time after capture (reconciliation). */
  readonly reconciled: number;
  /** reconciled / turns; null without turns. */
  readonly reconcileRate: number | null;
  /** Fallback turns by kind (clarificationNeeded, noMatchFound, technicalIssue, outOfScope). */
  readonly fallbackKinds: Record<string, number>;
  /** Reconciled turns by reason (new-critical-slot, unsure-detect, both). */
  readonly reconcileReasons: Record<string, number>;
}

const TIER_SQL = `
SELECT count(*)::integer AS turns,
       count(*) FILTER (WHERE tier = '1')::integer AS tier1,
       count(*) FILTER (WHERE tier = '2')::integer AS tier2,
       count(*) FILTER (WHERE tier = '3')::integer AS tier3,
       count(*) FILTER (WHERE tier = 'fallback')::integer AS fallback,
       count(*) FILTER (WHERE reconcile_reason IS NOT NULL
                           OR timings->>'redetectMs' IS NOT NULL)::integer AS reconciled
  FROM turns
 WHERE company_id = $1 AND created_at >= $2::timestamptz AND created_at < $3::timestamptz`;

const BREAKDOWN_SQL = `
SELECT 'fallback' AS dimension, fallback_kind AS key, count(*)::integer AS n
  FROM turns
 WHERE company_id = $1 AND created_at >= $2::timestamptz AND created_at < $3::timestamptz
   AND tier = 'fallback' AND fallback_kind IS NOT NULL
 GROUP BY fallback_kind
UNION ALL
SELECT 'reconcile', reconcile_reason, count(*)::integer
  FROM turns
 WHERE company_id = $1 AND created_at >= $2::timestamptz AND created_at < $3::timestamptz
   AND reconcile_reason IS NOT NULL
 GROUP BY reconcile_reason`;

/**
 * Turns per answering tier, fallback and reconcile rates, over `days` UTC days (as
 * warmupAnalytics). A turn counts as reconciled when detect ran again (its timings have
 * `redetectMs`); in sequential understanding that happens without a reason, so the reasons can add
 * up to less than `reconciled`.
 */
export async function tierDistribution(
  db: Queryable,
  query: { readonly companyId: string; readonly days: number; readonly now?: Date },
): Promise<TierDistribution> {
  checkCompanyId(query.companyId);
  const period = utcPeriod(query.days, query.now ?? new Date());
  const range = [query.companyId, period.from, period.to] as const;
  const [totals, breakdown] = await Promise.all([
    db.query<{
      turns: number;
      tier1: number;
      tier2: number;
      tier3: number;
      fallback: number;
      reconciled: number;
    }>(TIER_SQL, range),
    db.query<{ dimension: 'fallback' | 'reconcile'; key: string; n: number }>(BREAKDOWN_SQL, range),
  ]);
  const t = totals[0]!;
  const of = (dimension: 'fallback' | 'reconcile') =>
    Object.fromEntries(breakdown.filter((r) => r.dimension === dimension).map((r) => [r.key, r.n]));
  return {
    companyId: query.companyId,
    ...period,
    turns: t.turns,
    tiers: { 1: t.tier1, 2: t.tier2, 3: t.tier3, fallback: t.fallback },
    fallbackRate: ratio(t.fallback, t.turns),
    reconciled: t.reconciled,
    reconcileRate: ratio(t.reconciled, t.turns),
    fallbackKinds: of('fallback'),
    reconcileReasons: of('reconcile'),
  };
}
