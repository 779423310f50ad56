import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listAlerts, recordAlert } from '../../src/store/sql/alertStore.ts';
import { openTestDb } from './dbForTest.ts';
import type { TestDb } from './dbForTest.ts';

let t: TestDb;

beforeAll(async () => {
  t = await openTestDb();
});

afterAll(async () => {
  await t.dispose();
});

const at = (minute: number) => new Date(Date.UTC(2026, 10, 4, 8, minute));

describe('alerts', () => {
  it('counts repeats within the window on one row and opens a new row after it', async () => {
    const down = {
      code: 'PRODUCTION_AI_LLM_DOWN',
      severity: 'critical',
      companyId: 'acme',
      message: 'LLM down',
    } as const;
    const first = await recordAlert(t.db, { ...down, at: at(0) }, { windowMs: 10 * 60_000 });
    expect(first.count).toBe(1);
    expect(await recordAlert(t.db, { ...down, at: at(5) }, { windowMs: 10 * 60_000 })).toEqual({
      id: first.id,
      count: 2,
    });
    expect(await recordAlert(t.db, { ...down, at: at(14) }, { windowMs: 10 * 60_000 })).toEqual({
      id: first.id,
      count: 3,
    });
    // Another company, and engine-wide, are separate alerts.
    const other = await recordAlert(t.db, { ...down, companyId: 'globex', at: at(14) });
    const global = await recordAlert(t.db, { ...down, companyId: null, at: at(14) });
    expect(new Set([first.id, other.id, global.id]).size).toBe(3);
    // Quiet for longer than the window: a new alert.
    const later = await recordAlert(
      t.db,
      { ...down, at: at(40), details: { failures: 7 } },
      { windowMs: 10 * 60_000 },
    );
    expect(later).toMatchObject({ count: 1 });
    expect(later.id).not.toBe(first.id);

    const acme = await listAlerts(t.db, { companyId: 'acme' });
    expect(acme.map((a) => [a.companyId, a.count])).toEqual([
      ['acme', 1],
      [null, 1],
      ['acme', 3],
    ]);
    expect(acme[0]).toMatchObject({ details: { failures: 7 }, firstAt: at(40).toISOString() });
    expect(acme[2]).toMatchObject({ firstAt: at(0).toISOString(), lastAt: at(14).toISOString() });
  });
});
