/**
 * Handoff notes: what the `<Connect action>` webhook should do once a call's media stream has ended
 * (dial a person, or hang up). The instance that ends the stream writes the note; Twilio may deliver
 * the webhook to any instance, so with more than one instance the notes live in Redis.
 *
 * A note is read once and expires after `ttlMs` (Twilio calls the action URL within seconds of the
 * stream closing; a note nobody took belongs to a call that is already over).
 */
import type { Redis } from 'ioredis';
import { pino } from 'pino';
import type { Logger } from '../observability/logger.ts';
import type { RedisHealth } from '../store/resilientRedis.ts';
import { isE164 } from './callControl.ts';
import type { Handoff, HandoffStore } from './callControl.ts';

export const DEFAULT_HANDOFF_TTL_MS = 60_000;

/** Expired notes are swept every this many puts (take drops an expired note on its own). */
const SWEEP_EVERY_PUTS = 64;

export interface MemoryHandoffsOptions {
  readonly ttlMs?: number;
  /** Clock in milliseconds; default Date.now. */
  readonly now?: () => number;
}

/** Notes in this process: one instance, or the fallback while Redis is unreachable. */
export function createMemoryHandoffs(options: MemoryHandoffsOptions = {}): HandoffStore {
  const ttlMs = options.ttlMs ?? DEFAULT_HANDOFF_TTL_MS;
  const now = options.now ?? Date.now;
  const notes = new Map<string, { readonly handoff: Handoff; readonly expiresAt: number }>();
  let puts = 0;

  return {
    put(callSid, handoff) {
      const t = now();
      if (++puts % SWEEP_EVERY_PUTS === 0) {
        for (const [sid, note] of notes) if (note.expiresAt <= t) notes.delete(sid);
      }
      notes.set(callSid, { handoff, expiresAt: t + ttlMs });
      return Promise.resolve();
    },
    take(callSid) {
      const note = notes.get(callSid);
      if (note === undefined) return Promise.resolve(null);
      notes.delete(callSid);
      return Promise.resolve(note.expiresAt > now() ? note.handoff : null);
    },
  };
}

export interface RedisHandoffsOptions {
  /** Prepended to every key (`{keyPrefix}handoff:{callSid}`); tests use a random one. */
  readonly keyPrefix?: string;
  readonly ttlMs?: number;
  /**
   * The engine's shared Redis health (RedisServices.health): while it reports an outage, notes go
   * straight to the in-process fallback instead of waiting for a command timeout each time. Without
   * it, each failed command falls back on its own.
   */
  readonly health?: RedisHealth;
  readonly log?: Logger;
}

/** A stored note, checked: Redis is shared, and a malformed value must not become a bad transfer. */
function parseHandoff(raw: string): Handoff | null {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  const note = value as { action?: unknown; number?: unknown };
  if (note.action === 'hangup') return { action: 'hangup' };
  if (note.action === 'transfer' && typeof note.number === 'string' && isE164(note.number))
    return { action: 'transfer', number: note.number };
  return null;
}

/**
 * Notes in Redis (`SET … PX ttlMs`, taken with GETDEL, so two webhook deliveries cannot both act on
 * one note; needs Redis 6.2 or later). Never rejects: when Redis fails, notes are kept in process.
 * A note kept in process during an outage is only seen by this instance, so a webhook delivered to
 * another one finds nothing and takes its default path; `take` here checks the process first, so
 * notes written during an outage are still found after Redis returns.
 */
export function createRedisHandoffs(redis: Redis, options: RedisHandoffsOptions = {}): HandoffStore {
  const prefix = `${options.keyPrefix ?? ''}handoff:`;
  const ttlMs = options.ttlMs ?? DEFAULT_HANDOFF_TTL_MS;
  const log = options.log ?? pino({ level: 'silent' });
  const local = createMemoryHandoffs({ ttlMs });
  const { health } = options;

  async function run<T>(what: string, op: () => Promise<T>, fallback: () => Promise<T>): Promise<T> {
    if (health !== undefined) return health.run(op, fallback);
    try {
      return await op();
    } catch (err) {
      log.warn(
        { op: what, err: { message: (err as Error).message } },
        'redis handoff failed: kept in process',
      );
      return fallback();
    }
  }

  return {
    async put(callSid, handoff) {
      await run(
        'put',
        async () => {
          await redis.set(prefix + callSid, JSON.stringify(handoff), 'PX', ttlMs);
        },
        () => local.put(callSid, handoff),
      );
    },
    async take(callSid) {
      const kept = await local.take(callSid);
      if (kept !== null) return kept;
      return run(
        'take',
        async () => {
          const raw = await redis.getdel(prefix + callSid);
          if (raw === null) return null;
          const handoff = parseHandoff(raw);
          if (handoff === null) log.error({ callSid }, 'malformed handoff note in redis: ignored');
          return handoff;
        },
        () => Promise.resolve(null),
      );
    },
  };
}
