import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newCostEvent } from '../../src/cost/costEvent.ts';
import { insertCostEvents } from '../../src/store/sql/insertCostEvents.ts';
import { countCostEvents, openTestDb } from './dbForTest.ts';
import type { TestDb } from './dbForTest.ts';

let t: TestDb;

beforeAll(async () => {
  t = await openTestDb();
});

afterAll(async () => {
  await t.dispose();
});

const event = () =>
  newCostEvent({
    companyId: 'acme',
    purpose: 'embedding',
    tier: 2,
    action: 'completed',
    provider: 'openai',
    model: 'text-embedding-3-small',
    inputTokens: 12,
    durationMs: 31.7,
    costUsd: 2.4e-7,
  });

describe('insertCostEvents', () => {
  it('stores an event written twice once, in one batch or across batches', async () => {
    const a = event();
    const b = event();
    expect(await insertCostEvents(t.db, [a, a, b])).toBe(2);
    expect(await insertCostEvents(t.db, [a, b])).toBe(0);
    expect(await insertCostEvents(t.db, [])).toBe(0);
    const stored = await countCostEvents(t.db);
    expect(stored).toMatchObject({ rows: 2, distinct: 2 });
    const rows = await t.db.query<{ cost: string; duration: number }>(
      'SELECT cost_usd::text AS cost, duration_ms AS duration FROM cost_events WHERE id = $1',
      [a.id],
    );
    // Exact decimal, and a fractional duration rounded rather than refused.
    expect(rows[0]).toEqual({ cost: '0.00000024', duration: 32 });
  });

  it('refuses an event whose id is not a UUID, as a rejected (not retryable) error', async () => {
    await expect(insertCostEvents(t.db, [{ ...event(), id: 'x' }])).rejects.toMatchObject({
      code: 'ERR_DB_REJECTED',
      sqlState: '22P02',
      retryable: false,
    });
  });
});
