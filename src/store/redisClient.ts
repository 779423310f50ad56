/**
 * ioredis connections tuned for the speech path: a command answers quickly or fails quickly, so a
 * slow or absent Redis costs a turn at most `commandTimeoutMs`, never a stalled call. Every
 * connection gets an 'error' listener (an EventEmitter 'error' with none would crash the process).
 */
import { createHash } from 'node:crypto';
import { Redis } from 'ioredis';
import type { RedisOptions } from 'ioredis';
import { pino } from 'pino';
import type { Logger } from '../observability/logger.ts';

/** Local Redis answers in well under a millisecond; 200 ms means it is hung or far away. */
export const DEFAULT_COMMAND_TIMEOUT_MS = 200;
export const DEFAULT_CONNECT_TIMEOUT_MS = 1000;
/** Reconnect attempts back off to this ceiling and then keep trying forever. */
export const MAX_RECONNECT_DELAY_MS = 2000;

export interface RedisClientOptions {
  readonly log?: Logger;
  /** Shows in logs and in CLIENT LIST. */
  readonly name?: string;
  readonly commandTimeoutMs?: number;
  readonly connectTimeoutMs?: number;
  /**
   * A pub/sub subscriber connection: keeps an offline queue and no command timeout, because its
   * SUBSCRIBE must survive reconnects and it is never on a caller's critical path.
   */
  readonly subscriber?: boolean;
}

/** The ioredis options behind createRedisClient, exported so a test or the owner can inspect them. */
export function redisOptions(options: RedisClientOptions = {}): RedisOptions {
  const base: RedisOptions = {
    connectTimeout: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    retryStrategy: (attempt: number) => Math.min(50 * 2 ** Math.min(attempt, 6), MAX_RECONNECT_DELAY_MS),
    ...(options.name ? { connectionName: options.name } : {}),
  };
  if (options.subscriber) return { ...base, maxRetriesPerRequest: null, enableOfflineQueue: true };
  return {
    ...base,
    // Fail fast: no queueing while disconnected, no retry of a command that was in flight when the
    // connection dropped (a resent reserve or settle could be applied twice), and a hard timeout.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    commandTimeout: options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS,
  };
}

/** A connection that starts connecting at once; pair it with waitForRedis at start-up. */
export function createRedisClient(url: string, options: RedisClientOptions = {}): Redis {
  const redis = new Redis(url, redisOptions(options));
  const log = options.log ?? pino({ level: 'silent' });
  const name = options.name ?? 'redis';
  // ioredis emits 'error' on every failed reconnect attempt; log the first of each outage only.
  let quiet = false;
  redis.on('error', (err: Error) => {
    if (quiet) return;
    quiet = true;
    log.warn({ connection: name, err: { message: err.message } }, 'redis connection error');
  });
  redis.on('ready', () => {
    if (quiet) log.info({ connection: name }, 'redis connection ready again');
    quiet = false;
  });
  return redis;
}

/** Resolves true once the connection is ready, false after `timeoutMs` (it keeps reconnecting). */
export function waitForRedis(redis: Redis, timeoutMs = DEFAULT_CONNECT_TIMEOUT_MS): Promise<boolean> {
  if (redis.status === 'ready') return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      redis.off('ready', onReady);
      resolve(ok);
    };
    const onReady = () => done(true);
    const timer = setTimeout(() => done(false), timeoutMs);
    redis.on('ready', onReady);
  });
}

/** Closes a connection without waiting for a server that may be gone. */
export function closeRedis(redis: Redis): void {
  redis.disconnect(false);
}

/** A Lua script run by its SHA1, so the script body crosses the wire once per Redis restart. */
export interface RedisScript {
  readonly lua: string;
  readonly sha: string;
}

/** A script and its SHA1, computed once at module load. */
export function defineScript(lua: string): RedisScript {
  return { lua, sha: createHash('sha1').update(lua).digest('hex') };
}

/**
 * EVALSHA, falling back to EVAL when Redis has not seen the script (first use, or after a
 * restart): one round trip in the steady state.
 */
export async function runScript(
  redis: Redis,
  script: RedisScript,
  keys: readonly string[],
  args: ReadonlyArray<string | number>,
): Promise<unknown> {
  try {
    return await redis.evalsha(script.sha, keys.length, ...keys, ...args);
  } catch (err) {
    if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
    return redis.eval(script.lua, keys.length, ...keys, ...args);
  }
}
