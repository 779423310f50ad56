/**
 * First-turn vs later-turn latency for `GET /status`: the last N turn latencies of each kind, so a
 * cold start (or a slow first turn for any other reason) shows next to the steady state. Bounded:
 * two rings of `capacity` numbers, whatever the traffic.
 */

export interface LatencySummary {
  /** Turns in the window (at most the capacity). */
  readonly n: number;
  readonly p50Ms: number | null;
  readonly p95Ms: number | null;
}

export interface TurnLatencySnapshot {
  readonly windowTurns: number;
  /** Each call's first turn. */
  readonly firstTurn: LatencySummary;
  /** Every call's second and later turns. */
  readonly laterTurns: LatencySummary;
  /** The first turn this process answered, the one a cold start would slow down. */
  readonly processFirstTurn: { readonly latencyMs: number; readonly at: string } | null;
}

export interface TurnLatencyWindow {
  /** `turn` is the call's turn number (1 = the first). */
  observe(turn: number, latencyMs: number): void;
  snapshot(): TurnLatencySnapshot;
}

/** A fixed-size ring of the most recent values. */
class Ring {
  readonly #values: Float64Array;
  #next = 0;
  #size = 0;

  constructor(capacity: number) {
    this.#values = new Float64Array(capacity);
  }

  push(value: number): void {
    this.#values[this.#next] = value;
    this.#next = (this.#next + 1) % this.#values.length;
    this.#size = Math.min(this.#size + 1, this.#values.length);
  }

  summary(): LatencySummary {
    const sorted = this.#values.slice(0, this.#size).sort();
    return { n: this.#size, p50Ms: nearestRank(sorted, 50), p95Ms: nearestRank(sorted, 95) };
  }
}

/** Nearest-rank percentile of an ascending array (as the benchmark computes it); null when empty. */
function nearestRank(sorted: Float64Array, p: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  const value = sorted[rank - 1];
  return value === undefined ? null : Math.round(value * 100) / 100;
}

/** Keeps the last `capacity` first turns and the last `capacity` later turns. */
export function createTurnLatencyWindow(
  capacity = 500,
  now: () => Date = () => new Date(),
): TurnLatencyWindow {
  const first = new Ring(capacity);
  const later = new Ring(capacity);
  let processFirst: TurnLatencySnapshot['processFirstTurn'] = null;
  return {
    observe(turn, latencyMs) {
      processFirst ??= { latencyMs: Math.round(latencyMs * 100) / 100, at: now().toISOString() };
      (turn <= 1 ? first : later).push(latencyMs);
    },
    snapshot() {
      return {
        windowTurns: capacity,
        firstTurn: first.summary(),
        laterTurns: later.summary(),
        processFirstTurn: processFirst,
      };
    },
  };
}
