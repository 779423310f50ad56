/**
 * Alerts for the notification center: the engine raises a code when something needs a human, and
 * the alert is logged, stored and optionally pushed to a webhook, all without ever slowing or
 * failing the caller's path.
 *
 * - Log: one line per (code, company) per window, at the severity's level, with a static message
 *   and no caller data (the caller's message and details go to the store and the webhook, scrubbed).
 * - Store: every occurrence goes through `recordAlert` (same code and company within the window:
 *   count and last_at bumped), written behind the call by one background writer, one statement at a
 *   time so an alert storm cannot take the pool from the ledger and the call recorder. While the
 *   database is unreachable occurrences wait in a bounded queue and are retried with a back-off;
 *   their original times are kept, so the stored count and window are right once it answers.
 * - Webhook: at most one POST per (code, company) per window, short timeout, no retries: a flapping
 *   provider makes one notification per window, not a retry storm against a receiver that is down.
 * - Memory: the recent alerts are also kept in this process (bounded), so `list` answers with no
 *   database configured, or while it is down (DATABASE_ERROR cannot be read from the database that
 *   is failing).
 */
import { ConfigError } from '../errors.ts';
import type { AlertInput, AlertRow, AlertSeverity } from '../store/sql/alertStore.ts';
import { listAlerts, recordAlert } from '../store/sql/alertStore.ts';
import type { Db } from '../store/sql/db.ts';
import { dbErrorForLog, toDbError } from '../store/sql/db.ts';
import type { Logger } from './logger.ts';

/**
 * Every alert the engine raises. The first eight are the reference notification center's;
 * REDIS_DEGRADED is Switchboard's own: while the shared Redis is unreachable every instance answers
 * from local fallbacks (budgets enforced per instance on a local share, warmup statistics and
 * fallback rotation split per instance, config invalidations not broadcast). Calls keep working, so
 * nothing else fires, but spend control and consistency across instances are weaker until it comes
 * back, and someone should know.
 */
export const ALERT_CODES = [
  'COMPANY_NOT_FOUND',
  'BUDGET_EXCEEDED',
  'LLM_DOWN',
  'LLM_SLOW',
  'FALLBACK_USED',
  'FALLBACK_RATE_HIGH',
  'ROUTING_ERROR',
  'DATABASE_ERROR',
  'REDIS_DEGRADED',
] as const;

export type AlertCode = (typeof ALERT_CODES)[number];

/** Severity of each code, as the reference notification center grades them. */
export const ALERT_SEVERITY: Readonly<Record<AlertCode, AlertSeverity>> = {
  COMPANY_NOT_FOUND: 'critical',
  BUDGET_EXCEEDED: 'critical',
  LLM_DOWN: 'critical',
  LLM_SLOW: 'warning',
  FALLBACK_USED: 'warning',
  FALLBACK_RATE_HIGH: 'warning',
  ROUTING_ERROR: 'critical',
  DATABASE_ERROR: 'critical',
  // Degraded, not down: calls are answered; see ALERT_CODES.
  REDIS_DEGRADED: 'warning',
};

/**
 * Stored and sent codes carry the reference format's prefix (`PRODUCTION_AI_LLM_DOWN`), so the
 * alerts table and the webhook speak the notification center's vocabulary.
 */
export const STORED_CODE_PREFIX = 'PRODUCTION_AI_';

/** The code as stored in `alerts.code` and sent to the webhook, e.g. 'PRODUCTION_AI_LLM_DOWN'. */
export function storedAlertCode(code: AlertCode): string {
  return `${STORED_CODE_PREFIX}${code}`;
}

export const DEFAULT_ALERT_WINDOW_MS = 300_000;
export const DEFAULT_WEBHOOK_TIMEOUT_MS = 3000;

/** What a raise carries besides its code. */
export interface AlertFields {
  /** Omitted or null for engine-wide alerts (a provider down, the database failing). */
  readonly companyId?: string | null | undefined;
  /** For humans, and static: no transcripts, no phone numbers (runs of digits are masked anyway). */
  readonly message: string;
  /**
   * Flat facts (codes, counts, durations, provider names). Only string, number, boolean and null
   * values are kept, strings are scrubbed and shortened, and keys that name caller data are dropped.
   */
  readonly details?: Readonly<Record<string, unknown>> | undefined;
}

export interface AlertsOptions {
  /** Where alerts are stored (migrated); null = memory only. Not closed by close(). */
  readonly db: Db | null;
  readonly log: Logger;
  /** POSTed a JSON payload once per (code, company) per window; http(s) only. */
  readonly webhookUrl?: string | undefined;
  /** Dedupe window for logs, webhook and storage (300 000 = five minutes). */
  readonly windowMs?: number;
  readonly now?: () => Date;
  readonly webhookTimeoutMs?: number;
  /** Alerts kept in memory for `list` (500). */
  readonly memoryCapacity?: number;
  /** Occurrences waiting for the database before the oldest are dropped (1000). */
  readonly maxQueue?: number;
  /** Back-off after a failed write: doubles from `retryMinMs` up to `retryMaxMs` (1 s, 30 s). */
  readonly retryMinMs?: number;
  readonly retryMaxMs?: number;
}

export interface AlertListFilter {
  /** A company's own alerts plus the engine-wide ones. */
  readonly companyId?: string;
  readonly since?: Date | string;
  /** 1–1000, default 100. */
  readonly limit?: number;
}

/** Recent alerts, latest activity first, and where they were read from. */
export interface AlertList {
  readonly alerts: AlertRow[];
  /**
   * 'memory' without a database, or when reading it failed: then only what this process raised
   * (ids are this process's own, not table ids).
   */
  readonly source: 'database' | 'memory';
}

/** Counters since start (metrics, /status). */
export interface AlertsStats {
  readonly raised: number;
  /** Log lines written (first raise of a (code, company) in a window). */
  readonly logged: number;
  readonly stored: number;
  /** Occurrences never stored: queue full during an outage, or refused by the database. */
  readonly dropped: number;
  readonly queued: number;
  readonly webhookSent: number;
  readonly webhookFailed: number;
  readonly databaseAvailable: boolean;
}

export interface Alerts {
  /** Never throws, never waits: logs, stores and notifies behind the call. */
  raise(code: AlertCode, fields: AlertFields): void;
  list(filter?: AlertListFilter): Promise<AlertList>;
  /** Writes what is queued (even during a back-off) and waits for webhook requests in flight. */
  flush(): Promise<void>;
  /** Flushes and stops; later raises are only logged and kept in memory. */
  close(): Promise<void>;
  stats(): AlertsStats;
}

/** The JSON body POSTed to the webhook. */
export interface AlertWebhookPayload {
  readonly source: 'switchboard';
  /** Stored form, e.g. 'PRODUCTION_AI_LLM_DOWN'. */
  readonly code: string;
  /** Short form, e.g. 'LLM_DOWN'. */
  readonly alert: AlertCode;
  readonly severity: AlertSeverity;
  readonly companyId: string | null;
  readonly message: string;
  readonly details: Record<string, unknown>;
  readonly at: string;
  /** Further notifications for this code and company are held back for this long. */
  readonly windowMs: number;
}

const MAX_MESSAGE_CHARS = 300;
const MAX_DETAIL_CHARS = 120;
const MAX_DETAIL_KEYS = 20;
/** Keys that would carry what a caller said or who they are. */
const CALLER_KEYS =
  /^(transcript|utterance|text|reply|slots|caller|callername|callbacknumber|from|to|number|phone|payload|history|messages?)$/i;
/** Seven or more digits, apart by at most two separators: a phone number (or close enough to one). */
const DIGIT_RUN = /\+?\(?\d(?:[\s().-]{0,2}\d){6,}/g;

function scrub(text: string, max: number): string {
  const masked = text.replace(DIGIT_RUN, '[redacted]');
  return masked.length > max ? `${masked.slice(0, max - 1)}…` : masked;
}

/** Keeps flat, non-caller facts only (see AlertFields.details). */
export function sanitizeAlertDetails(details: Readonly<Record<string, unknown>> | undefined) {
  const out: Record<string, string | number | boolean | null> = {};
  if (details === undefined || details === null || typeof details !== 'object') return out;
  let kept = 0;
  for (const [key, value] of Object.entries(details)) {
    if (kept >= MAX_DETAIL_KEYS) break;
    if (CALLER_KEYS.test(key)) continue;
    if (typeof value === 'string') out[key] = scrub(value, MAX_DETAIL_CHARS);
    else if (typeof value === 'number') out[key] = Number.isFinite(value) ? value : null;
    else if (typeof value === 'boolean' || value === null) out[key] = value;
    else continue;
    kept++;
  }
  return out;
}

interface MemoryRow {
  id: number;
  code: string;
  severity: AlertSeverity;
  companyId: string | null;
  message: string;
  details: Record<string, unknown>;
  firstAt: number;
  lastAt: number;
  count: number;
}

const LOG_LEVEL = { critical: 'error', warning: 'warn', info: 'info' } as const;
/** Past this many (code, company) windows tracked, expired ones are forgotten. */
const MAX_TRACKED_WINDOWS = 10_000;

/** Starts the alerting service. Throws ConfigError for a webhook URL that is not http(s). */
export function createAlerts(options: AlertsOptions): Alerts {
  const { db, log } = options;
  const now = options.now ?? (() => new Date());
  const windowMs = options.windowMs ?? DEFAULT_ALERT_WINDOW_MS;
  const webhookTimeoutMs = options.webhookTimeoutMs ?? DEFAULT_WEBHOOK_TIMEOUT_MS;
  const memoryCapacity = Math.max(1, options.memoryCapacity ?? 500);
  const maxQueue = Math.max(1, options.maxQueue ?? 1000);
  const retryMinMs = options.retryMinMs ?? 1000;
  const retryMaxMs = options.retryMaxMs ?? 30_000;
  const webhookUrl = validWebhookUrl(options.webhookUrl);

  const c = { raised: 0, logged: 0, stored: 0, dropped: 0, webhookSent: 0, webhookFailed: 0 };
  let closed = false;

  // --- once per (code, company) per window: log line and webhook ---------------------------------
  const windows = new Map<string, { startedAt: number; repeats: number }>();
  const webhooksInFlight = new Map<string, Promise<void>>();

  function forgetExpiredWindows(at: number): void {
    if (windows.size < MAX_TRACKED_WINDOWS) return;
    for (const [key, w] of windows) if (at - w.startedAt >= windowMs) windows.delete(key);
    // Still full (an unbounded set of company ids?): drop the oldest rather than grow.
    for (const key of windows.keys()) {
      if (windows.size < MAX_TRACKED_WINDOWS) break;
      windows.delete(key);
    }
  }

  function notify(key: string, payload: AlertWebhookPayload): void {
    if (webhookUrl === undefined || webhooksInFlight.has(key)) return;
    const request = post(webhookUrl, payload).finally(() => webhooksInFlight.delete(key));
    webhooksInFlight.set(key, request);
  }

  async function post(url: string, payload: AlertWebhookPayload): Promise<void> {
    try {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(payload),
        signal: AbortSignal.timeout(webhookTimeoutMs),
      });
      // The answer's body is not needed; release the connection.
      await res.body?.cancel().catch(() => undefined);
      if (res.ok) c.webhookSent++;
      else {
        c.webhookFailed++;
        log.warn({ alert: payload.alert, status: res.status }, 'alert webhook refused the notification');
      }
    } catch (err) {
      c.webhookFailed++;
      // Never the URL (a chat webhook's path is its secret) nor the message (it can quote it).
      const e = err as { name?: unknown; cause?: { code?: unknown } } | null;
      log.warn(
        {
          alert: payload.alert,
          err: { name: typeof e?.name === 'string' ? e.name : 'Error', code: e?.cause?.code },
        },
        'alert webhook failed',
      );
    }
  }

  // --- memory: recent alerts, aggregated like the alerts table ---------------------------------
  const rows: MemoryRow[] = [];
  const latestRow = new Map<string, MemoryRow>();
  let nextId = 1;

  function remember(
    key: string,
    input: Omit<MemoryRow, 'id' | 'firstAt' | 'lastAt' | 'count'> & { at: number },
  ): void {
    const open = latestRow.get(key);
    if (open !== undefined && open.lastAt >= input.at - windowMs) {
      open.count += 1;
      open.lastAt = Math.max(open.lastAt, input.at);
      open.severity = input.severity;
      open.message = input.message;
      open.details = input.details;
      return;
    }
    const row: MemoryRow = {
      id: nextId++,
      code: input.code,
      severity: input.severity,
      companyId: input.companyId,
      message: input.message,
      details: input.details,
      firstAt: input.at,
      lastAt: input.at,
      count: 1,
    };
    rows.push(row);
    latestRow.set(key, row);
    if (rows.length > memoryCapacity) {
      let oldest = 0;
      for (let i = 1; i < rows.length; i++) if (rows[i]!.lastAt < rows[oldest]!.lastAt) oldest = i;
      const [evicted] = rows.splice(oldest, 1);
      for (const [k, r] of latestRow) if (r === evicted) latestRow.delete(k);
    }
  }

  function listMemory(filter: AlertListFilter): AlertRow[] {
    const since = filter.since === undefined ? null : new Date(filter.since).getTime();
    const limit = Math.min(Math.max(filter.limit ?? 100, 1), 1000);
    return rows
      .filter(
        (r) =>
          (filter.companyId === undefined || r.companyId === filter.companyId || r.companyId === null) &&
          (since === null || r.lastAt >= since),
      )
      .sort((a, b) => b.lastAt - a.lastAt || b.id - a.id)
      .slice(0, limit)
      .map((r) => ({
        id: r.id,
        code: r.code,
        severity: r.severity,
        companyId: r.companyId,
        message: r.message,
        details: { ...r.details },
        firstAt: new Date(r.firstAt).toISOString(),
        lastAt: new Date(r.lastAt).toISOString(),
        count: r.count,
      }));
  }

  // --- database: one writer behind the callers ---------------------------------------------------
  const queue: AlertInput[] = [];
  let draining: Promise<void> | null = null;
  let retryTimer: NodeJS.Timeout | null = null;
  let backoffMs = retryMinMs;
  let databaseAvailable = true;
  let warnedFull = false;
  let warnedListFailed = false;

  function enqueue(input: AlertInput): void {
    if (queue.length >= maxQueue) {
      queue.shift();
      c.dropped++;
      if (!warnedFull) {
        warnedFull = true;
        log.warn({ maxQueue }, 'alerts: queue full while the database is unavailable; dropping the oldest');
      }
    }
    queue.push(input);
    if (retryTimer === null) void drain();
  }

  function drain(): Promise<void> {
    if (draining !== null) return draining;
    if (db === null || queue.length === 0) return Promise.resolve();
    const run: Promise<void> = writeQueued(db).finally(() => {
      if (draining === run) draining = null;
    });
    draining = run;
    return run;
  }

  async function writeQueued(store: Db): Promise<void> {
    while (queue.length > 0) {
      const head = queue[0]!;
      try {
        await recordAlert(store, head, { windowMs });
      } catch (err) {
        const e = toDbError(err);
        if (e.code === 'ERR_DB_REJECTED') {
          // The same values would be refused again: drop this one, keep the rest moving.
          queue.shift();
          c.dropped++;
          log.error({ err: dbErrorForLog(e) }, 'alerts: the database refused an alert; dropped');
          continue;
        }
        if (databaseAvailable) {
          databaseAvailable = false;
          log.warn({ err: dbErrorForLog(e) }, 'alerts: database write failed; retrying later');
        }
        scheduleRetry();
        return;
      }
      queue.shift();
      c.stored++;
      if (!databaseAvailable) {
        databaseAvailable = true;
        warnedFull = false;
        log.info('alerts: database available again');
      }
      backoffMs = retryMinMs;
    }
  }

  function scheduleRetry(): void {
    if (closed || retryTimer !== null) return;
    retryTimer = setTimeout(() => {
      retryTimer = null;
      void drain();
    }, backoffMs);
    retryTimer.unref();
    backoffMs = Math.min(backoffMs * 2, retryMaxMs);
  }

  // --- the API ----------------------------------------------------------------------------------
  function raise(code: AlertCode, fields: AlertFields): void {
    try {
      const severity = ALERT_SEVERITY[code] as AlertSeverity | undefined;
      if (severity === undefined) {
        log.warn('alerts: unknown alert code ignored');
        return;
      }
      c.raised++;
      const at = now().getTime();
      const companyId = fields.companyId ?? null;
      const key = `${code}\u0000${companyId ?? ''}`;
      const input = {
        code: storedAlertCode(code),
        severity,
        companyId,
        message: scrub(String(fields.message), MAX_MESSAGE_CHARS),
        details: sanitizeAlertDetails(fields.details),
      };
      remember(key, { ...input, at });

      const w = windows.get(key);
      if (w === undefined || at - w.startedAt >= windowMs || at < w.startedAt) {
        const repeats = w?.repeats ?? 0;
        forgetExpiredWindows(at);
        windows.set(key, { startedAt: at, repeats: 0 });
        c.logged++;
        log[LOG_LEVEL[severity]](
          { alert: code, severity, companyId, ...(repeats > 0 ? { repeatsInPreviousWindow: repeats } : {}) },
          'alert raised',
        );
        if (!closed) {
          notify(key, {
            source: 'switchboard',
            code: input.code,
            alert: code,
            severity,
            companyId,
            message: input.message,
            details: input.details,
            at: new Date(at).toISOString(),
            windowMs,
          });
        }
      } else {
        w.repeats++;
      }
      if (db !== null && !closed) enqueue({ ...input, at: new Date(at) });
    } catch (err) {
      // Alerting must never be what breaks a call.
      try {
        log.error({ err: { name: (err as Error | null)?.name } }, 'alerts: raise failed');
      } catch {
        // Nothing left to tell.
      }
    }
  }

  async function list(filter: AlertListFilter = {}): Promise<AlertList> {
    if (db === null) return { alerts: listMemory(filter), source: 'memory' };
    try {
      return { alerts: await listAlerts(db, filter), source: 'database' };
    } catch (err) {
      if (!warnedListFailed) {
        warnedListFailed = true;
        log.warn({ err: dbErrorForLog(err) }, 'alerts: reading the database failed; answering from memory');
      }
      return { alerts: listMemory(filter), source: 'memory' };
    }
  }

  async function flush(): Promise<void> {
    if (retryTimer !== null) {
      clearTimeout(retryTimer);
      retryTimer = null;
    }
    await drain();
    await Promise.allSettled([...webhooksInFlight.values()]);
  }

  return {
    raise,
    list,
    flush,
    async close() {
      await flush();
      closed = true;
      // Alerts are not money: what the database never took is reported, not spooled.
      if (queue.length > 0) log.warn({ count: queue.length }, 'alerts: closing with alerts not stored');
      if (retryTimer !== null) {
        clearTimeout(retryTimer);
        retryTimer = null;
      }
    },
    stats: () => ({ ...c, queued: queue.length, databaseAvailable }),
  };
}

function validWebhookUrl(url: string | undefined): string | undefined {
  if (url === undefined || url.trim() === '') return undefined;
  let protocol: string;
  try {
    protocol = new URL(url).protocol;
  } catch {
    protocol = '';
  }
  if (protocol !== 'http:' && protocol !== 'https:') {
    throw new ConfigError(['alerts.webhookUrl: expected an http(s) URL']);
  }
  return url.trim();
}

/** Something with a database-availability flag: the ledger writer's or the call recorder's stats. */
export type DatabaseHealthSource = () => { readonly databaseAvailable: boolean };

/**
 * Raises DATABASE_ERROR (engine-wide) when a writer's database goes from available to unavailable,
 * by polling its stats: the ledger writer and the call recorder already track this and recover on
 * their own, they only need someone to tell. One raise per outage per source (the alert's count says
 * how many outages the window saw).
 */
export function watchDatabaseHealth(options: {
  readonly alerts: Pick<Alerts, 'raise'>;
  /** By name, e.g. { 'cost-ledger': () => writer.stats(), 'call-records': () => recorder.stats() }. */
  readonly sources: Readonly<Record<string, DatabaseHealthSource>>;
  /** 5000. */
  readonly intervalMs?: number;
}): { check(): void; close(): void } {
  const up = new Map<string, boolean>();
  function check(): void {
    for (const [source, stats] of Object.entries(options.sources)) {
      let available: boolean;
      try {
        available = stats().databaseAvailable;
      } catch {
        continue;
      }
      if (!available && up.get(source) !== false) {
        options.alerts.raise('DATABASE_ERROR', {
          message: 'Database writes are failing; records are queued or spooled until it answers',
          details: { source },
        });
      }
      up.set(source, available);
    }
  }
  const timer = setInterval(check, options.intervalMs ?? 5000);
  timer.unref();
  return { check, close: () => clearInterval(timer) };
}
