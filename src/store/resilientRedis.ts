/**
 * Redis health shared by the resilient wrappers: every Redis operation goes through `run`, which
 * answers from the wrapper's local fallback when Redis fails or is known to be down. While down,
 * nothing is sent to Redis (a hung Redis would cost every call a command timeout); a probe pings it
 * every second instead, and recovery hooks (flushing what was recorded locally) run when it answers.
 * onDegraded fires once per outage, onRecovered once per recovery.
 */
import type { Redis } from 'ioredis';
import { pino } from 'pino';
import type { Logger } from '../observability/logger.ts';
import { DEFAULT_COMMAND_TIMEOUT_MS } from './redisClient.ts';

export const DEFAULT_PROBE_INTERVAL_MS = 1000;

export interface RedisHealthOptions {
  readonly redis: Redis;
  /** Raised once per outage (alerting). Must not throw; if it does, the error is logged. */
  readonly onDegraded?: (reason: string) => void;
  readonly onRecovered?: () => void;
  readonly log?: Logger;
  readonly probeIntervalMs?: number;
  /**
   * Upper bound on one operation, pipelines and scripts included, on top of ioredis's per-command
   * timeout. Defaults to the command timeout plus 50 ms.
   */
  readonly opTimeoutMs?: number;
}

export interface RedisHealth {
  /** True while Redis is considered unreachable. */
  readonly degraded: boolean;
  /** Why the current outage started, null when healthy. */
  readonly reason: string | null;
  /**
   * Runs `op` against Redis, or `fallback` when Redis is down or `op` fails or overruns. Rejects only
   * if `fallback` throws.
   */
  run<T>(op: () => Promise<T>, fallback: () => T | Promise<T>): Promise<T>;
  /** Reports a failure seen outside `run` (a background write); starts an outage if it is one. */
  report(err: unknown): void;
  /**
   * Runs when Redis answers again, before calls go back to it and before onRecovered; if a hook
   * fails, the outage continues and the hooks run again on the next probe. Hooks must talk to Redis
   * directly (not through `run`, which still answers from the fallback at that point).
   */
  onRecovery(hook: () => Promise<void>): () => void;
  /** Stops probing. */
  close(): void;
}

const UNAVAILABLE_REPLY = /^(LOADING|READONLY|MASTERDOWN|CLUSTERDOWN|BUSY|TRYAGAIN|NOREPLICAS|MISCONF)\b/;

/**
 * True when an error means Redis cannot be used right now (connection, timeout, a server that is
 * loading or read-only), false for errors a retry elsewhere would repeat (a bug, a wrong type).
 */
export function isRedisOutage(err: unknown): boolean {
  if (!(err instanceof Error)) return true;
  if (err.name === 'ReplyError') return UNAVAILABLE_REPLY.test(err.message);
  if (err.name === 'AppError') return false;
  return true;
}

class OpTimeoutError extends Error {
  constructor(ms: number) {
    super(`redis operation exceeded ${ms} ms`);
    this.name = 'OpTimeoutError';
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new OpTimeoutError(ms)), ms);
  });
  // A late rejection of the losing operation must not become an unhandled rejection.
  promise.catch(() => undefined);
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Health for one Redis connection; starts healthy and watches the connection's close/ready events. */
export function createRedisHealth(options: RedisHealthOptions): RedisHealth {
  const { redis } = options;
  const log = options.log ?? pino({ level: 'silent' });
  const probeIntervalMs = options.probeIntervalMs ?? DEFAULT_PROBE_INTERVAL_MS;
  const opTimeoutMs =
    options.opTimeoutMs ?? (redis.options.commandTimeout ?? DEFAULT_COMMAND_TIMEOUT_MS) + 50;
  const hooks = new Set<() => Promise<void>>();
  let reason: string | null = null;
  let probe: NodeJS.Timeout | undefined;
  let probing = false;
  let closed = false;

  const safely = (what: string, fn: () => void) => {
    try {
      fn();
    } catch (err) {
      log.error({ callback: what, err: { message: (err as Error).message } }, 'redis health callback threw');
    }
  };

  function markDown(why: string): void {
    if (reason !== null || closed) return;
    reason = why;
    log.warn({ reason: why }, 'redis unavailable: shared state degraded to local fallbacks');
    safely('onDegraded', () => options.onDegraded?.(why));
    probe = setInterval(() => void tryRecover(), probeIntervalMs);
    probe.unref();
  }

  // Hooks run while still degraded: what was recorded locally reaches Redis before calls use it
  // again, and a hook that fails leaves the outage (and its single alert) open.
  async function tryRecover(): Promise<void> {
    if (probing || reason === null || closed) return;
    probing = true;
    try {
      await withTimeout(redis.ping(), opTimeoutMs);
      for (const hook of hooks) await withTimeout(hook(), opTimeoutMs * 4);
    } catch (err) {
      log.debug({ err: { message: (err as Error).message } }, 'redis still unavailable');
      return;
    } finally {
      probing = false;
    }
    if (reason === null || closed) return;
    clearInterval(probe);
    log.info({ reason }, 'redis available again');
    reason = null;
    safely('onRecovered', () => options.onRecovered?.());
  }

  const onClose = () => {
    if (!closed) markDown('connection closed');
  };
  const onReady = () => void tryRecover();
  redis.on('close', onClose);
  redis.on('ready', onReady);

  // A timeout is not always Redis: a command's timer also fires when this process's own event loop
  // was blocked past it (a company compiling for ~100 ms while a write was in flight), with the
  // answer already waiting on the socket. So a timeout is confirmed with a PING first; only when
  // that fails too is it an outage. (Closed connections and refusals need no confirmation.)
  let confirming: Promise<void> | null = null;
  function confirmTimeout(why: string): void {
    if (reason !== null || closed) return;
    confirming ??= withTimeout(redis.ping(), opTimeoutMs)
      .then(
        () => log.debug({ reason: why }, 'redis timeout not confirmed (event loop stall?); still healthy'),
        () => markDown(why),
      )
      .finally(() => {
        confirming = null;
      });
  }

  function report(err: unknown): void {
    if (!isRedisOutage(err)) {
      log.error({ err: { message: (err as Error).message } }, 'redis operation failed');
      return;
    }
    const why = (err as Error).message ?? String(err);
    if (err instanceof OpTimeoutError || /timed out/i.test(why)) confirmTimeout(why);
    else markDown(why);
  }

  return {
    get degraded() {
      return reason !== null;
    },
    get reason() {
      return reason;
    },
    async run(op, fallback) {
      if (reason !== null || closed) return fallback();
      try {
        return await withTimeout(op(), opTimeoutMs);
      } catch (err) {
        report(err);
        return fallback();
      }
    },
    report,
    onRecovery(hook) {
      hooks.add(hook);
      return () => hooks.delete(hook);
    },
    close() {
      closed = true;
      clearInterval(probe);
      redis.off('close', onClose);
      redis.off('ready', onReady);
    },
  };
}
