import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCatalog, seedDemo } from '../../src/store/configStore.ts';
import { createSqlConfigStore } from '../../src/store/sql/sqlConfigStore.ts';
import { openTestDb } from './dbForTest.ts';
import type { TestDb } from './dbForTest.ts';

let t: TestDb;

beforeAll(async () => {
  t = await openTestDb();
});

afterAll(async () => {
  await t.dispose();
});

describe('SQL config store', () => {
  it('seeds the demo into an empty database and loads it as a catalog', async () => {
    const store = createSqlConfigStore(t.db);
    expect(await store.isEmpty()).toBe(true);
    expect(await seedDemo(store)).toBe(true);
    expect(await store.isEmpty()).toBe(false);
    expect(await seedDemo(store)).toBe(false);
    const catalog = await loadCatalog(store);
    expect([...catalog.companies.keys()]).toHaveLength(1);
    expect(catalog.byNumber.get('+15550100100')).toBeDefined();
  });

  it('keeps every imported version and serves the highest; the same document adds no version', async () => {
    const store = createSqlConfigStore(t.db);
    const v1 = { id: 'tpl-x', categories: [], extra: { kept: true } };
    const v2 = { ...v1, categories: [{ name: 'drain', scenarios: [] }] };
    await store.put([{ kind: 'template', id: 'tpl-x', raw: v1 }]);
    await store.put([{ kind: 'template', id: 'tpl-x', raw: v1 }]);
    await store.put([{ kind: 'template', id: 'tpl-x', raw: v2 }]);
    const current = (await store.list('template')).find((d) => d.id === 'tpl-x');
    expect(current?.raw).toEqual(v2);
    const history = await store.history('template', 'tpl-x');
    expect(history.map((h) => h.version)).toEqual([2, 1]);
    expect(history[1]?.raw).toEqual(v1);
  });

  it('imports several documents all or nothing', async () => {
    const store = createSqlConfigStore(t.db);
    const fine = { id: 'tpl-y', categories: [] };
    // jsonb cannot hold a NUL character: the second document fails, so the first is not stored either.
    const unstorable = { id: 'tpl-z', note: 'nul \u0000 byte' };
    await expect(
      store.put([
        { kind: 'template', id: 'tpl-y', raw: fine },
        { kind: 'template', id: 'tpl-z', raw: unstorable },
      ]),
    ).rejects.toMatchObject({ code: 'ERR_DB_REJECTED' });
    expect((await store.list('template')).map((d) => d.id)).not.toContain('tpl-y');
  });

  it('reads one document, and finds a company by a number its current version lists', async () => {
    const store = createSqlConfigStore(t.db);
    const v1 = { id: 'num-co', phoneNumbers: ['+15550111111'], gatekeeper: {} };
    const v2 = { ...v1, phoneNumbers: ['+15550122222'] };
    await store.put([{ kind: 'company', id: 'num-co', raw: v1 }]);
    expect(await store.companyIdForNumber('+15550111111')).toBe('num-co');
    await store.put([{ kind: 'company', id: 'num-co', raw: v2 }]);
    expect(await store.get('company', 'num-co')).toEqual({ kind: 'company', id: 'num-co', raw: v2 });
    expect(await store.get('company', 'nobody')).toBeNull();
    // The number moved with the new version: the old one belongs to nobody now.
    expect(await store.companyIdForNumber('+15550111111')).toBeNull();
    expect(await store.companyIdForNumber('+15550122222')).toBe('num-co');
  });
});
