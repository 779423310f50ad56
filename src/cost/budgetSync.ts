/**
 * Budget counters brought up to the source of truth, the cost ledger in the database: at start
 * (seed) and then periodically (reconcile), each company's counters are raised to the sum of its
 * cost events for the period, never lowered (other instances may have settled spend the ledger has
 * not stored yet). That is what repairs a Redis that lost its data (restart without persistence,
 * failover) and what carries the embedded default's budgets across restarts.
 *
 * The sums use the same rounding as settling a reservation (tier3Llm.ts: toMicros per request, i.e.
 * ceil(cost × 10⁶) per event), over the same events: terminal events with a price (cost_usd not
 * null). Monthly Tier 3 key: purposes tier3 and warmup in the current UTC month; daily warmup key:
 * purpose warmup on the current UTC day.
 */
import type { Logger } from '../observability/logger.ts';
import type { Queryable } from '../store/sql/db.ts';
import { dbErrorForLog } from '../store/sql/db.ts';
import { dailyWarmupKey, monthlyKey } from './budgets.ts';
import type { SyncableBudgetStore } from './budgetsLocal.ts';

/** How often the counters are reconciled with the ledger by default. */
export const DEFAULT_RECONCILE_INTERVAL_MS = 5 * 60_000;

/** One company's spend in the current periods, from the ledger, in micro-dollars. */
export interface LedgerSpend {
  readonly companyId: string;
  readonly tier3MonthMicros: number;
  readonly warmupDayMicros: number;
}

const SPEND_SQL = `
SELECT company_id,
       coalesce(sum(ceil(cost_usd * 1000000)), 0)::text AS tier3_month,
       coalesce(sum(ceil(cost_usd * 1000000)) FILTER (WHERE purpose = 'warmup' AND at >= $3 AND at < $4), 0)::text
         AS warmup_day
  FROM cost_events
 WHERE at >= $1 AND at < $2
   AND cost_usd IS NOT NULL
   AND purpose IN ('tier3', 'warmup')
 GROUP BY company_id`;

/** Each company's Tier 3 spend this UTC month and warmup spend this UTC day, from cost_events. */
export async function spendFromLedger(db: Queryable, now: Date): Promise<LedgerSpend[]> {
  const y = now.getUTCFullYear();
  const m = now.getUTCMonth();
  const d = now.getUTCDate();
  const rows = await db.query<{ company_id: string; tier3_month: string; warmup_day: string }>(SPEND_SQL, [
    new Date(Date.UTC(y, m, 1)).toISOString(),
    new Date(Date.UTC(y, m + 1, 1)).toISOString(),
    new Date(Date.UTC(y, m, d)).toISOString(),
    new Date(Date.UTC(y, m, d + 1)).toISOString(),
  ]);
  return rows.map((r) => ({
    companyId: r.company_id,
    tier3MonthMicros: Number(r.tier3_month),
    warmupDayMicros: Number(r.warmup_day),
  }));
}

/** A counter found behind the ledger (and raised): lost Redis writes, a failover. */
export interface BudgetDrift {
  readonly key: string;
  readonly beforeMicros: number;
  readonly afterMicros: number;
}

/** Raises every company's counters for the current periods to the ledger's sums; resolves to the keys touched. */
export async function seedBudgets(
  budgets: SyncableBudgetStore,
  db: Queryable,
  now = new Date(),
): Promise<number> {
  const spend = await spendFromLedger(db, now);
  for (const s of spend) {
    await budgets.seed(monthlyKey(s.companyId, now), s.tier3MonthMicros);
    if (s.warmupDayMicros > 0) await budgets.seed(dailyWarmupKey(s.companyId, now), s.warmupDayMicros);
  }
  return spend.length;
}

/** Reconciles once; resolves to the counters that had fallen behind. */
export async function reconcileBudgets(
  budgets: SyncableBudgetStore,
  db: Queryable,
  now = new Date(),
): Promise<BudgetDrift[]> {
  const drift: BudgetDrift[] = [];
  for (const s of await spendFromLedger(db, now)) {
    const pairs: Array<[string, number]> = [[monthlyKey(s.companyId, now), s.tier3MonthMicros]];
    if (s.warmupDayMicros > 0) pairs.push([dailyWarmupKey(s.companyId, now), s.warmupDayMicros]);
    for (const [key, micros] of pairs) {
      const r = await budgets.reconcile(key, micros);
      // A counter that did not exist (null) is a new period or a fresh Redis: seeding, not drift.
      if (r.before !== null && r.after > r.before)
        drift.push({ key, beforeMicros: r.before, afterMicros: r.after });
    }
  }
  return drift;
}

export interface BudgetReconcilerOptions {
  readonly budgets: SyncableBudgetStore;
  readonly db: Queryable;
  readonly log: Logger;
  readonly intervalMs?: number;
  /** Counters found behind the ledger. */
  readonly onDrift?: (drift: readonly BudgetDrift[]) => void;
  /** A reconcile that could not read the ledger (the database is down); the next one tries again. */
  readonly onError?: (err: unknown) => void;
}

/** Reconciles every `intervalMs` in the background until stopped. */
export function startBudgetReconciler(options: BudgetReconcilerOptions): {
  runOnce(): Promise<void>;
  stop(): Promise<void>;
} {
  const { budgets, db, log } = options;
  let running: Promise<void> | undefined;
  const runOnce = (): Promise<void> => {
    running ??= reconcileBudgets(budgets, db)
      .then((drift) => {
        if (drift.length === 0) return;
        log.warn({ counters: drift.length }, 'budget counters were behind the cost ledger; raised');
        options.onDrift?.(drift);
      })
      .catch((err: unknown) => {
        log.warn({ err: dbErrorForLog(err) }, 'budget reconcile failed; will retry');
        options.onError?.(err);
      })
      .finally(() => {
        running = undefined;
      });
    return running;
  };
  const timer = setInterval(() => void runOnce(), options.intervalMs ?? DEFAULT_RECONCILE_INTERVAL_MS);
  timer.unref();
  return {
    runOnce,
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
