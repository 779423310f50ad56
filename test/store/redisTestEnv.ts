/**
 * Shared by the Redis tests: REDIS_URL (through loadEnv, as the engine reads it), a random key prefix
 * per run so parallel runs and other engineers' data never collide, and cleanup by that prefix.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect } from 'vitest';
import { loadEnv } from '../../src/config/env.ts';
import { closeRedis, createRedisClient, waitForRedis } from '../../src/store/redisClient.ts';

export const redisUrl: string | undefined = loadEnv().redisUrl;

export const NO_REDIS = 'REDIS_URL is not set: this test needs a real Redis (CI sets REDIS_URL)';

export function testPrefix(): string {
  return `sbtest:${randomBytes(6).toString('hex')}:`;
}

/** A plain connection for test set-up and inspection (fails fast, like the engine's). */
export function adminClient(url = redisUrl): Redis {
  if (url === undefined) throw new Error(NO_REDIS);
  const redis = new Redis(url, { maxRetriesPerRequest: 1, lazyConnect: false });
  redis.on('error', () => undefined);
  return redis;
}

/** Deletes every key under `prefix`. */
export async function deleteByPrefix(redis: Redis, prefix: string): Promise<number> {
  let cursor = '0';
  let deleted = 0;
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
    cursor = next;
    if (keys.length > 0) deleted += await redis.unlink(...keys);
  } while (cursor !== '0');
  return deleted;
}

/** host and port of REDIS_URL, for the fault proxy. */
export function redisTarget(url = redisUrl): { host: string; port: number } {
  if (url === undefined) throw new Error(NO_REDIS);
  const u = new URL(url);
  return { host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port || 6379) };
}

/** REDIS_URL with its host and port replaced (keeps credentials and database). */
export function redisUrlVia(port: number, host = '127.0.0.1', url = redisUrl): string {
  const u = new URL(url ?? 'redis://127.0.0.1:6379');
  u.hostname = host;
  u.port = String(port);
  return u.toString();
}

/**
 * A test file's Redis: registers `beforeAll` (one connection, when REDIS_URL is set) and `afterAll`
 * (its keys deleted by prefix, every client closed). `connect` opens more connections to REDIS_URL,
 * `track` hands over any other client (a dead one, say) for closing.
 */
export function useTestRedis(name: string): {
  readonly prefix: string;
  /** The shared connection; only for tests that run when REDIS_URL is set. */
  readonly redis: Redis;
  connect(): Promise<Redis>;
  track<T extends Redis>(client: T): T;
} {
  const prefix = testPrefix();
  const clients: Redis[] = [];
  let shared: Redis | undefined;
  const track = <T extends Redis>(client: T): T => {
    clients.push(client);
    return client;
  };
  const connect = async (): Promise<Redis> => {
    if (redisUrl === undefined) throw new Error(NO_REDIS);
    const r = track(createRedisClient(redisUrl, { name, commandTimeoutMs: 2000 }));
    expect(await waitForRedis(r, 5000)).toBe(true);
    return r;
  };
  beforeAll(async () => {
    if (redisUrl !== undefined) shared = await connect();
  });
  afterAll(async () => {
    if (shared) await deleteByPrefix(shared, prefix);
    clients.forEach(closeRedis);
  });
  return {
    prefix,
    get redis(): Redis {
      if (shared === undefined) throw new Error(NO_REDIS);
      return shared;
    },
    connect,
    track,
  };
}
