/**
 * Budgets shared by every engine instance through Redis: one Lua script per operation, so
 * check-and-reserve is atomic and costs one round trip, in integer micro-dollars (never
 * INCRBYFLOAT, which drifts).
 *
 * Layout per budget key K (the period is in K, e.g. budget:tier3:acme:2026-11):
 *   {K}       hash   spent, reserved, r:<id> → micros of each open reservation
 *   {K}:resv  zset   <id> scored by its expiry (Redis server time, ms)
 * Both share the hash tag {K}, so the scripts stay legal on Redis Cluster.
 *
 * Reservations expire: a process that dies between reserve and settle would otherwise hold its
 * reservation forever. Each reserve first releases expired ones (oldest first, a bounded batch), so
 * no background sweeper is needed, and expiry uses Redis's clock, so instance clocks cannot skew it.
 * A settle that arrives after its reservation expired still adds its spend (never under-count).
 * The keys expire some days after their period ends.
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { AppError } from '../errors.ts';
import { defineScript, runScript } from '../store/redisClient.ts';
import type { Reservation } from './budgets.ts';
import type { ReconcileResult, SyncableBudgetStore } from './budgetsLocal.ts';
import { assertMicros } from './budgetsLocal.ts';

/** Longer than any LLM request (timeout + turn slack), so a live request never loses its hold. */
export const DEFAULT_RESERVATION_TTL_MS = 120_000;
/** Counters outlive their period by this much, for late settles and reconciling the last period. */
export const BUDGET_KEY_MARGIN_DAYS = 7;
/** Keys without a recognisable period live this long after their last write. */
export const UNPERIODED_KEY_TTL_DAYS = 35;
/** Expired reservations released per reserve; the rest go on the next ones. */
const RELEASE_BATCH = 256;
const DAY_MS = 86_400_000;

const PERIOD = /:(\d{4})-(\d{2})(?:-(\d{2}))?$/;

/**
 * When the counters under `key` may go (unix seconds): the end of the UTC month or day named at the
 * end of the key plus a margin, and never sooner than a day from now (so a late write to an old
 * period cannot delete the key at once).
 */
export function budgetKeyExpiresAt(key: string, now: Date, marginDays = BUDGET_KEY_MARGIN_DAYS): number {
  const m = PERIOD.exec(key);
  let end: number;
  if (m === null) end = now.getTime() + UNPERIODED_KEY_TTL_DAYS * DAY_MS;
  else {
    const [year, month, day] = [Number(m[1]), Number(m[2]), m[3] === undefined ? null : Number(m[3])];
    end = day === null ? Date.UTC(year, month, 1) : Date.UTC(year, month - 1, day + 1);
    end += marginDays * DAY_MS;
  }
  return Math.ceil(Math.max(end, now.getTime() + DAY_MS) / 1000);
}

// KEYS[1]=account hash, KEYS[2]=expiry zset
// ARGV[1]=reservation id, ARGV[2]=micros, ARGV[3]=limit, ARGV[4]=reservation ttl ms, ARGV[5]=expireat s
// → {1|0, spent, reserved (after)}
const RESERVE = defineScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, ${RELEASE_BATCH})
if #expired > 0 then
  local freed = 0
  for i = 1, #expired do
    local field = 'r:' .. expired[i]
    local m = redis.call('HGET', KEYS[1], field)
    if m then
      freed = freed + tonumber(m)
      redis.call('HDEL', KEYS[1], field)
    end
  end
  redis.call('ZREM', KEYS[2], unpack(expired))
  if freed > 0 then redis.call('HINCRBY', KEYS[1], 'reserved', string.format('%d', -freed)) end
end
local v = redis.call('HMGET', KEYS[1], 'spent', 'reserved', 'r:' .. ARGV[1])
local spent = tonumber(v[1] or '0')
local reserved = tonumber(v[2] or '0')
if v[3] then return {1, spent, reserved} end
local amount = tonumber(ARGV[2])
if spent + reserved + amount > tonumber(ARGV[3]) then return {0, spent, reserved} end
redis.call('HINCRBY', KEYS[1], 'reserved', ARGV[2])
redis.call('HSET', KEYS[1], 'r:' .. ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[1])
redis.call('EXPIREAT', KEYS[1], ARGV[5])
redis.call('EXPIREAT', KEYS[2], ARGV[5])
return {1, spent, reserved + amount}
`);

// KEYS[1]=account hash, KEYS[2]=expiry zset; ARGV[1]=reservation id, ARGV[2]=actual micros, ARGV[3]=expireat s
// → {1 if the reservation was still open else 0, spent (after)}
const SETTLE = defineScript(`
local field = 'r:' .. ARGV[1]
local m = redis.call('HGET', KEYS[1], field)
if m then
  redis.call('HDEL', KEYS[1], field)
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('HINCRBY', KEYS[1], 'reserved', string.format('%d', -tonumber(m)))
end
local spent = redis.call('HINCRBY', KEYS[1], 'spent', ARGV[2])
redis.call('EXPIREAT', KEYS[1], ARGV[3])
return {m and 1 or 0, spent}
`);

// KEYS[1]=account hash; ARGV[1]=micros, ARGV[2]=expireat s → spent before (-1 when absent)
const RAISE = defineScript(`
local before = tonumber(redis.call('HGET', KEYS[1], 'spent') or '-1')
if before < tonumber(ARGV[1]) then redis.call('HSET', KEYS[1], 'spent', ARGV[1]) end
redis.call('EXPIREAT', KEYS[1], ARGV[2])
return before
`);

// KEYS[1]=account hash; ARGV[1]=micros, ARGV[2]=expireat s → spent (after)
const ADD = defineScript(`
local spent = redis.call('HINCRBY', KEYS[1], 'spent', ARGV[1])
redis.call('EXPIREAT', KEYS[1], ARGV[2])
return spent
`);

/** A reservation held in Redis; `id` names it in the account hash and the expiry set. */
export interface RedisReservation extends Reservation {
  readonly id: string;
}

/** A reserve's answer with the counters it saw, so a caller can remember how full the budget was. */
export interface ReserveOutcome {
  readonly reservation: RedisReservation | null;
  /** Settled spend. */
  readonly spent: number;
  /** Open reservations, including this one when granted. */
  readonly reserved: number;
}

/** A settle's answer. */
export interface SettleOutcome {
  /** Settled spend after this settle. */
  readonly spent: number;
  /** False when the reservation had already expired (or was settled before). */
  readonly released: boolean;
}

export interface BudgetSnapshot {
  readonly spent: number;
  readonly reserved: number;
  /** Open reservations (expired ones are counted until the next reserve releases them). */
  readonly reservations: number;
}

export interface RedisBudgetStore extends SyncableBudgetStore {
  reserve(key: string, micros: number, limitMicros: number): Promise<RedisReservation | null>;
  reserveDetailed(key: string, micros: number, limitMicros: number): Promise<ReserveOutcome>;
  settleDetailed(reservation: Reservation, spentMicros: number): Promise<SettleOutcome>;
  /** Adds settled spend made elsewhere (spend recorded locally while Redis was unreachable). */
  addSpent(key: string, micros: number): Promise<number>;
  snapshot(key: string): Promise<BudgetSnapshot>;
}

export interface RedisBudgetStoreOptions {
  readonly redis: Redis;
  /** Prepended to every key (tests use a random one). */
  readonly keyPrefix?: string;
  readonly reservationTtlMs?: number;
  readonly now?: () => Date;
}

function isRedisReservation(r: Reservation): r is RedisReservation {
  return typeof (r as Partial<RedisReservation>).id === 'string';
}

/**
 * Errors: Redis errors (unreachable, timeout) reject; wrap the store with createResilientBudgetStore
 * before handing it to the engine, which must keep answering calls.
 */
export function createRedisBudgetStore(options: RedisBudgetStoreOptions): RedisBudgetStore {
  const { redis } = options;
  const prefix = options.keyPrefix ?? '';
  const ttlMs = options.reservationTtlMs ?? DEFAULT_RESERVATION_TTL_MS;
  const now = options.now ?? (() => new Date());
  const keys = (key: string) => [`${prefix}{${key}}`, `${prefix}{${key}}:resv`] as const;
  const expiresAt = (key: string) => budgetKeyExpiresAt(key, now());

  async function reserveDetailed(key: string, micros: number, limitMicros: number): Promise<ReserveOutcome> {
    assertMicros(micros, 'micros');
    assertMicros(limitMicros, 'limitMicros');
    const id = randomBytes(9).toString('base64url');
    const [ok, spent, reserved] = (await runScript(redis, RESERVE, keys(key), [
      id,
      micros,
      limitMicros,
      ttlMs,
      expiresAt(key),
    ])) as [number, number, number];
    return { reservation: ok === 1 ? { key, micros, id } : null, spent, reserved };
  }

  async function settleDetailed(reservation: Reservation, spentMicros: number): Promise<SettleOutcome> {
    if (!isRedisReservation(reservation)) {
      throw new AppError('ERR_BUDGET_UNKNOWN_RESERVATION', 'the reservation was not made by this store');
    }
    // Spend is rounded up to whole micro-dollars, as toMicros does.
    const actual = Math.max(0, Math.ceil(spentMicros));
    assertMicros(actual, 'spentMicros');
    const [released, spent] = (await runScript(redis, SETTLE, keys(reservation.key), [
      reservation.id,
      actual,
      expiresAt(reservation.key),
    ])) as [number, number];
    return { spent, released: released === 1 };
  }

  return {
    reserveDetailed,
    settleDetailed,
    async reserve(key, micros, limitMicros) {
      return (await reserveDetailed(key, micros, limitMicros)).reservation;
    },
    async settle(reservation, spentMicros) {
      await settleDetailed(reservation, spentMicros);
    },
    async spent(key) {
      return Number((await redis.hget(keys(key)[0], 'spent')) ?? 0);
    },
    async addSpent(key, micros) {
      assertMicros(micros, 'micros');
      return (await runScript(redis, ADD, [keys(key)[0]], [micros, expiresAt(key)])) as number;
    },
    async seed(key, spentMicros) {
      assertMicros(spentMicros, 'spentMicros');
      await runScript(redis, RAISE, [keys(key)[0]], [spentMicros, expiresAt(key)]);
    },
    async reconcile(key, spentMicros) {
      assertMicros(spentMicros, 'spentMicros');
      const before = (await runScript(redis, RAISE, [keys(key)[0]], [spentMicros, expiresAt(key)])) as number;
      const result: ReconcileResult = {
        before: before < 0 ? null : before,
        after: Math.max(before, spentMicros),
      };
      return result;
    },
    async snapshot(key) {
      const [account, resv] = keys(key);
      const [spent, reserved, count] = await Promise.all([
        redis.hget(account, 'spent'),
        redis.hget(account, 'reserved'),
        redis.zcard(resv),
      ]);
      return { spent: Number(spent ?? 0), reserved: Number(reserved ?? 0), reservations: count };
    },
  };
}
