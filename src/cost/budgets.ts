/**
 * Spend limits as reserve → settle/release in integer micro-dollars, so concurrent requests can
 * never jointly overspend by more than one reservation. The in-process store is the embedded
 * default; a Redis-backed store implements the same interface for many instances.
 */

export const MICROS_PER_USD = 1_000_000;

export function toMicros(usd: number): number {
  return Math.ceil(usd * MICROS_PER_USD);
}

export interface Reservation {
  readonly key: string;
  readonly micros: number;
}

export interface BudgetStore {
  /** Reserves `micros` under `key` if spent + reserved + micros ≤ limitMicros; null when it would not fit. */
  reserve(key: string, micros: number, limitMicros: number): Promise<Reservation | null>;
  /** Replaces a reservation by what was actually spent (0 to release it). */
  settle(reservation: Reservation, spentMicros: number): Promise<void>;
  /** Settled spend under `key`. */
  spent(key: string): Promise<number>;
}

export function createMemoryBudgetStore(): BudgetStore {
  const accounts = new Map<string, { spent: number; reserved: number }>();
  const account = (key: string) => {
    let a = accounts.get(key);
    if (a === undefined) accounts.set(key, (a = { spent: 0, reserved: 0 }));
    return a;
  };
  return {
    reserve(key, micros, limitMicros) {
      const a = account(key);
      if (a.spent + a.reserved + micros > limitMicros) return Promise.resolve(null);
      a.reserved += micros;
      return Promise.resolve({ key, micros });
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
  };
}

/** The monthly Tier 3 budget key (UTC month). */
export function monthlyKey(companyId: string, now: Date): string {
  return `budget:tier3:${companyId}:${now.toISOString().slice(0, 7)}`;
}

/** The daily warmup budget key (UTC day; resets at 00:00 UTC). */
export function dailyWarmupKey(companyId: string, now: Date): string {
  return `budget:warmup:${companyId}:${now.toISOString().slice(0, 10)}`;
}
