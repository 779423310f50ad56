/**
 * Alerts for the notification center, de-duplicated over a window: the same code for the same
 * company within `windowMs` of its last occurrence bumps `count` and `last_at` on the open row
 * instead of adding one, so a flapping provider makes one alert with a count, not a thousand rows.
 *
 * Two processes raising the same new alert at the same instant may both insert (no lock): at worst
 * two rows for one burst, which is cheaper than serialising every alert.
 */
import type { Queryable } from './db.ts';

/** Lower case, as the alerts table's CHECK constraint requires. */
export type AlertSeverity = 'info' | 'warning' | 'critical';

/** One occurrence of an alert. */
export interface AlertInput {
  /** Stable code, e.g. 'PRODUCTION_AI_LLM_DOWN'. */
  readonly code: string;
  readonly severity: AlertSeverity;
  /** Null for engine-wide alerts. */
  readonly companyId: string | null;
  /** For humans; no caller data (transcripts, numbers). */
  readonly message: string;
  readonly details?: Readonly<Record<string, unknown>>;
  readonly at?: Date | string;
}

/** An alert as stored, with its occurrence count. */
export interface AlertRow {
  readonly id: number;
  readonly code: string;
  readonly severity: AlertSeverity;
  readonly companyId: string | null;
  readonly message: string;
  readonly details: Record<string, unknown>;
  readonly firstAt: string;
  readonly lastAt: string;
  readonly count: number;
}

const RECORD_SQL = `
WITH open_alert AS (
  SELECT id FROM alerts
   WHERE code = $1 AND company_id IS NOT DISTINCT FROM $3
     AND last_at >= $6::timestamptz - make_interval(secs => $7::double precision / 1000)
   ORDER BY last_at DESC
   LIMIT 1
),
bumped AS (
  UPDATE alerts SET count = count + 1, last_at = greatest(last_at, $6::timestamptz),
                    severity = $2, message = $4, details = $5::jsonb
   WHERE id = (SELECT id FROM open_alert)
  RETURNING id, count
),
inserted AS (
  INSERT INTO alerts (code, severity, company_id, message, details, first_at, last_at)
  SELECT $1, $2, $3, $4, $5::jsonb, $6::timestamptz, $6::timestamptz
   WHERE NOT EXISTS (SELECT 1 FROM open_alert)
  RETURNING id, count
)
SELECT id::integer AS id, count FROM bumped UNION ALL SELECT id::integer AS id, count FROM inserted`;

/** Records an occurrence; resolves to the alert's row id and its count (1 = new alert). */
export async function recordAlert(
  db: Queryable,
  alert: AlertInput,
  options: { windowMs?: number } = {},
): Promise<{ id: number; count: number }> {
  const rows = await db.query<{ id: number; count: number }>(RECORD_SQL, [
    alert.code,
    alert.severity,
    alert.companyId,
    alert.message,
    JSON.stringify(alert.details ?? {}),
    new Date(alert.at ?? Date.now()).toISOString(),
    options.windowMs ?? 15 * 60_000,
  ]);
  return rows[0]!;
}

/** Recent alerts, latest activity first; with a company, its own alerts and engine-wide ones. */
export async function listAlerts(
  db: Queryable,
  query: { companyId?: string; since?: Date | string; limit?: number } = {},
): Promise<AlertRow[]> {
  const rows = await db.query<{
    id: number;
    code: string;
    severity: AlertSeverity;
    company_id: string | null;
    message: string;
    details: Record<string, unknown>;
    first_at: Date | string;
    last_at: Date | string;
    count: number;
  }>(
    `SELECT id::integer AS id, code, severity, company_id, message, details, first_at, last_at, count
       FROM alerts
      WHERE ($1::text IS NULL OR company_id = $1 OR company_id IS NULL)
        AND ($2::timestamptz IS NULL OR last_at >= $2)
      ORDER BY last_at DESC, id DESC
      LIMIT $3`,
    [
      query.companyId ?? null,
      query.since === undefined ? null : new Date(query.since).toISOString(),
      Math.min(Math.max(query.limit ?? 100, 1), 1000),
    ],
  );
  return rows.map((r) => ({
    id: r.id,
    code: r.code,
    severity: r.severity,
    companyId: r.company_id,
    message: r.message,
    details: r.details,
    firstAt: new Date(r.first_at).toISOString(),
    lastAt: new Date(r.last_at).toISOString(),
    count: r.count,
  }));
}
