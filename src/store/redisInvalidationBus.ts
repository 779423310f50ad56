/**
 * Config invalidations across instances over Redis pub/sub. Pub/sub is fire-and-forget: a
 * subscriber that is reconnecting misses messages, so when its connection drops and again when it
 * is back, the caches are told to resync (drop their in-process layer).
 */
import type { Redis } from 'ioredis';
import { pino } from 'pino';
import type { Logger } from '../observability/logger.ts';
import type { ConfigCacheKind, Invalidation, InvalidationBus } from './configCache.ts';

export const INVALIDATION_CHANNEL = 'config:invalidate';

const KINDS = new Set<string>(['company', 'templates', 'number'] satisfies ConfigCacheKind[]);

export interface RedisInvalidationBusOptions {
  /** The shared command connection (PUBLISH). */
  readonly publisher: Redis;
  /** A dedicated connection, from createRedisClient(url, { subscriber: true }); the bus closes it. */
  readonly subscriber: Redis;
  readonly keyPrefix?: string;
  readonly log?: Logger;
}

function parse(message: string): Invalidation | null {
  try {
    const m = JSON.parse(message) as Partial<Invalidation> | null;
    if (m && typeof m.id === 'string' && typeof m.kind === 'string' && KINDS.has(m.kind)) {
      return { kind: m.kind, id: m.id };
    }
  } catch {
    // fall through: not ours
  }
  return null;
}

export interface RedisInvalidationBus extends InvalidationBus {
  /** Settles when the first SUBSCRIBE is confirmed (true) or failed (false); pending while Redis is unreachable. */
  readonly subscribed: Promise<boolean>;
}

/** An InvalidationBus over Redis pub/sub; subscribes at once and closes `subscriber` on close(). */
export function createRedisInvalidationBus(options: RedisInvalidationBusOptions): RedisInvalidationBus {
  const { publisher, subscriber } = options;
  const log = options.log ?? pino({ level: 'silent' });
  const channel = `${options.keyPrefix ?? ''}${INVALIDATION_CHANNEL}`;
  const listeners = new Set<(message: Invalidation) => void>();
  const resyncs = new Set<() => void>();
  // Resync only when a confirmed subscription was lost, on both edges: when the connection drops
  // (an invalidation may be published before it is back) and when the subscription is back
  // (entries cached meanwhile may have missed one).
  let subscribedOnce = false;
  let lost = false;
  const resync = () => {
    for (const r of resyncs) r();
  };
  const onClose = () => {
    if (!subscribedOnce) return;
    lost = true;
    resync();
  };
  const onReady = () => {
    if (!lost) return;
    lost = false;
    // ioredis resubscribes as it becomes ready; a PING answered after that resubscription means
    // it is confirmed, and nothing published from then on can be missed.
    subscriber.ping().then(resync, resync);
  };

  const onMessage = (from: string, raw: string) => {
    if (from !== channel) return;
    const message = parse(raw);
    if (message === null) {
      log.warn({ channel }, 'ignored malformed config invalidation');
      return;
    }
    for (const l of listeners) l(message);
  };
  subscriber.on('message', onMessage);
  subscriber.on('close', onClose);
  subscriber.on('ready', onReady);
  // SUBSCRIBE waits for the first 'ready': sent earlier, while ioredis is still running its ready
  // check, it makes that check fail and the connection cycle once (messages lost meanwhile).
  // Not awaited here: with Redis down at start-up it waits for the connection. ioredis resubscribes
  // by itself after every reconnect.
  const connected =
    subscriber.status === 'ready'
      ? Promise.resolve()
      : new Promise<void>((resolve) => subscriber.once('ready', () => resolve()));
  const subscribed = connected
    .then(() => subscriber.subscribe(channel))
    .then(
      () => (subscribedOnce = true),
      (err: Error) => {
        log.warn({ channel, err: { message: err.message } }, 'config invalidation subscribe failed');
        return false;
      },
    );

  return {
    subscribed,
    async publish(message) {
      await publisher.publish(channel, JSON.stringify({ kind: message.kind, id: message.id }));
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    onResync(listener) {
      resyncs.add(listener);
      return () => resyncs.delete(listener);
    },
    close() {
      listeners.clear();
      resyncs.clear();
      subscriber.off('message', onMessage);
      subscriber.off('close', onClose);
      subscriber.off('ready', onReady);
      subscriber.disconnect(false);
      return Promise.resolve();
    },
  };
}
