/**
 * Warmup hit-rate counters shared by every instance: one Redis hash per company and UTC day
 * (`warmup:{company}:YYYY-MM-DD`), fields `triggered|<category>` and `used|<category>` with `*` for
 * all categories and `(none)` for no category, exactly as the in-memory version buckets them. A hash
 * lives 8 days after its last write, so the 7-day window always finds its days. Each record is one
 * pipelined round trip (two HINCRBY and an EXPIRE); reading a window is one pipeline of HMGETs.
 */
import type { Redis } from 'ioredis';
import { pino } from 'pino';
import type { Logger } from '../observability/logger.ts';
import type { HitRate, WarmupStats } from './warmupStats.ts';

export const WARMUP_STATS_TTL_SECONDS = 8 * 86_400;
const DAY_MS = 86_400_000;

export type WarmupField = 'triggered' | 'used';

/** One counter increment, as kept while Redis is unreachable and added when it returns. */
export interface WarmupCount {
  readonly companyId: string;
  /** UTC day, YYYY-MM-DD. */
  readonly day: string;
  /** Hash field, e.g. `triggered|*`. */
  readonly field: string;
  readonly n: number;
}

/** The UTC day bucket of a moment. */
export function warmupDay(date: Date): string {
  return date.toISOString().slice(0, 10);
}

/** The UTC days of a window ending today, today first. */
export function warmupWindow(now: Date, days: number): string[] {
  return Array.from({ length: Math.max(0, days) }, (_, i) => warmupDay(new Date(now.getTime() - i * DAY_MS)));
}

/** The two fields one record bumps: the all-categories total and the category's own. */
export function warmupFields(field: WarmupField, category: string | null): [string, string] {
  return [`${field}|*`, `${field}|${category ?? '(none)'}`];
}

/** The field pair a hitRate query reads (`undefined` = all categories). */
export function warmupQueryFields(category: string | null | undefined): [string, string] {
  const c = category === undefined ? '*' : (category ?? '(none)');
  return [`triggered|${c}`, `used|${c}`];
}

export interface RedisWarmupStats extends WarmupStats {
  /** recordTriggered/recordUsed as a promise that rejects when Redis does. */
  increment(companyId: string, category: string | null, now: Date, field: WarmupField): Promise<void>;
  /** Adds many counts in one pipeline (catching up after an outage). */
  addCounts(counts: Iterable<WarmupCount>): Promise<void>;
}

export interface RedisWarmupStatsOptions {
  readonly redis: Redis;
  readonly keyPrefix?: string;
  readonly log?: Logger;
  /** Where a failed fire-and-forget record goes (default: logged and dropped). */
  readonly onError?: (err: unknown) => void;
}

/** Throws the first error of a pipeline's results. */
function check(results: Array<[Error | null, unknown]> | null): unknown[] {
  if (results === null) throw new Error('redis pipeline was aborted');
  return results.map(([err, value]) => {
    if (err) throw err;
    return value;
  });
}

/** Warmup statistics in Redis. record* never throw (failures go to onError); hitRate rejects when Redis does. */
export function createRedisWarmupStats(options: RedisWarmupStatsOptions): RedisWarmupStats {
  const { redis } = options;
  const prefix = options.keyPrefix ?? '';
  const log = options.log ?? pino({ level: 'silent' });
  const onError =
    options.onError ??
    ((err: unknown) => log.warn({ err: { message: (err as Error).message } }, 'warmup stats write failed'));
  // The company in a hash tag: a window's seven keys share a Cluster slot.
  const keyOf = (companyId: string, day: string) => `${prefix}warmup:{${companyId}}:${day}`;

  async function increment(companyId: string, category: string | null, now: Date, field: WarmupField) {
    const key = keyOf(companyId, warmupDay(now));
    const [all, mine] = warmupFields(field, category);
    const p = redis.pipeline().hincrby(key, all, 1);
    if (mine !== all) p.hincrby(key, mine, 1);
    check(await p.expire(key, WARMUP_STATS_TTL_SECONDS).exec());
  }

  const record = (field: WarmupField) => (companyId: string, category: string | null, now: Date) => {
    increment(companyId, category, now, field).catch(onError);
  };

  return {
    increment,
    recordTriggered: record('triggered'),
    recordUsed: record('used'),
    async hitRate(companyId, days, now, category) {
      const fields = warmupQueryFields(category);
      const p = redis.pipeline();
      for (const day of warmupWindow(now, days)) p.hmget(keyOf(companyId, day), ...fields);
      let triggered = 0;
      let used = 0;
      for (const value of check(await p.exec())) {
        const [t, u] = value as Array<string | null>;
        triggered += Number(t ?? 0);
        used += Number(u ?? 0);
      }
      const rate: HitRate = { triggered, used };
      return rate;
    },
    async addCounts(counts) {
      const p = redis.pipeline();
      const keys = new Set<string>();
      for (const c of counts) {
        const key = keyOf(c.companyId, c.day);
        p.hincrby(key, c.field, c.n);
        keys.add(key);
      }
      if (keys.size === 0) return;
      for (const key of keys) p.expire(key, WARMUP_STATS_TTL_SECONDS);
      check(await p.exec());
    },
  };
}
