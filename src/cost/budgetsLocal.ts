/**
 * What every budget store adds for Postgres, the source of truth: counters are seeded from the sum
 * of cost events at start and reconciled periodically. Also the in-process store with those
 * operations (the embedded default with a database, and the fallback while Redis is unreachable).
 */
import { AppError } from '../errors.ts';
import type { BudgetStore, Reservation } from './budgets.ts';

/** What a reconcile found and left. */
export interface ReconcileResult {
  /** Settled spend the counter held before (null: it did not exist, e.g. after a Redis restart). */
  readonly before: number | null;
  /** Settled spend it holds now. */
  readonly after: number;
}

/** A budget store whose settled spend can be brought up to what the cost-event ledger says. */
export interface SyncableBudgetStore extends BudgetStore {
  /**
   * At start: makes the settled spend under `key` at least `spentMicros` (the cost_events sum for
   * the key's period). Never lowers it: other instances may have settled spend the ledger has not
   * stored yet.
   */
  seed(key: string, spentMicros: number): Promise<void>;
  /**
   * Periodically: same rule as seed (raise only), reporting the drift so the caller can alert when
   * the counter had fallen behind the ledger (lost Redis writes, failover).
   */
  reconcile(key: string, spentMicros: number): Promise<ReconcileResult>;
}

/** Throws unless `value` is a non-negative safe integer (money is integer micro-dollars). */
export function assertMicros(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new AppError(
      'ERR_BUDGET_INVALID_AMOUNT',
      `${what} must be a non-negative integer of micro-dollars`,
    );
  }
}

/** In-process budgets with seed/reconcile; same reserve/settle semantics as createMemoryBudgetStore. */
export function createLocalBudgetStore(): SyncableBudgetStore {
  const accounts = new Map<string, { spent: number; reserved: number }>();
  const account = (key: string) => {
    let a = accounts.get(key);
    if (a === undefined) accounts.set(key, (a = { spent: 0, reserved: 0 }));
    return a;
  };
  const raise = (key: string, spentMicros: number): ReconcileResult => {
    assertMicros(spentMicros, 'spentMicros');
    const before = accounts.get(key)?.spent ?? null;
    const a = account(key);
    a.spent = Math.max(a.spent, spentMicros);
    return { before, after: a.spent };
  };
  return {
    reserve(key, micros, limitMicros) {
      const a = account(key);
      if (a.spent + a.reserved + micros > limitMicros) return Promise.resolve(null);
      a.reserved += micros;
      const reservation: Reservation = { key, micros };
      return Promise.resolve(reservation);
    },
    settle(reservation, spentMicros) {
      const a = account(reservation.key);
      a.reserved = Math.max(0, a.reserved - reservation.micros);
      a.spent += Math.max(0, spentMicros);
      return Promise.resolve();
    },
    spent(key) {
      return Promise.resolve(accounts.get(key)?.spent ?? 0);
    },
    // The executor turns a validation throw into a rejection.
    seed(key, spentMicros) {
      return new Promise<void>((resolve) => {
        raise(key, spentMicros);
        resolve();
      });
    },
    reconcile(key, spentMicros) {
      return new Promise((resolve) => resolve(raise(key, spentMicros)));
    },
  };
}
