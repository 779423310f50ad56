/**
 * The one statement that writes cost events: a multi-row INSERT from arrays (`unnest`), so a batch
 * of any size is one round trip with nineteen parameters, and `ON CONFLICT (id) DO NOTHING`, so a
 * retried batch or a replayed spool stores each event once. (COPY would be faster but cannot skip
 * duplicates.)
 */
import type { CostEvent } from '../../cost/costEvent.ts';
import type { Queryable } from './db.ts';

const INSERT_SQL = `
WITH inserted AS (
  INSERT INTO cost_events (
    id, at, company_id, call_id, call_sid, turn, purpose, tier, action, provider, model,
    input_tokens, output_tokens, duration_ms, cost_usd, estimated, price_version, time_saved_ms,
    audio_ms
  )
  SELECT * FROM unnest(
    $1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::integer[], $7::text[],
    $8::smallint[], $9::text[], $10::text[], $11::text[], $12::integer[], $13::integer[],
    $14::integer[], $15::numeric[], $16::boolean[], $17::text[], $18::integer[],
    $19::integer[]
  )
  ON CONFLICT (id) DO NOTHING
  RETURNING 1
)
SELECT count(*)::integer AS inserted FROM inserted`;

/** Integer columns take whole numbers; a fractional duration must not make the batch unwritable. */
function int(value: number | null): number | null {
  return value === null || !Number.isFinite(value) ? null : Math.round(value);
}

/**
 * Inserts the events that are not stored yet; resolves to how many were new (the rest were
 * already there).
 */
export async function insertCostEvents(db: Queryable, events: readonly CostEvent[]): Promise<number> {
  if (events.length === 0) return 0;
  const columns: unknown[][] = Array.from({ length: 19 }, () => new Array<unknown>(events.length));
  events.forEach((e, i) => {
    const values = [
      e.id,
      e.at,
      e.companyId,
      e.callId,
      e.callSid,
      int(e.turn),
      e.purpose,
      e.tier,
      e.action,
      e.provider,
      e.model,
      int(e.inputTokens) ?? 0,
      int(e.outputTokens) ?? 0,
      int(e.durationMs) ?? 0,
      // As a string, so the numeric column stores the value as written, not a binary float.
      e.costUsd === null ? null : String(e.costUsd),
      e.estimated,
      e.priceVersion,
      int(e.timeSavedMs),
      // Spooled before the column existed: absent.
      int(e.audioMs ?? null),
    ];
    values.forEach((v, c) => (columns[c]![i] = v));
  });
  const rows = await db.query<{ inserted: number }>(INSERT_SQL, columns);
  return rows[0]?.inserted ?? 0;
}
