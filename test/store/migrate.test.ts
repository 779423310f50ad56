import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { migrate, MIGRATIONS_DIR, readMigrations } from '../../src/store/sql/migrate.ts';
import { openTestDb, silentLog } from './dbForTest.ts';
import type { TestDb } from './dbForTest.ts';

const open: TestDb[] = [];
async function freshDb(): Promise<TestDb> {
  const t = await openTestDb({ migrate: false });
  open.push(t);
  return t;
}

afterEach(async () => {
  await Promise.all(open.splice(0).map((t) => t.dispose()));
});

async function tables(t: TestDb): Promise<string[]> {
  const rows = await t.db.query<{ table_name: string }>(
    `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY table_name`,
  );
  return rows.map((r) => r.table_name);
}

describe('migrate', () => {
  it('applies every migration once, in order, and is idempotent', async () => {
    const t = await freshDb();
    const files = await readMigrations();
    expect(files.map((m) => m.version)).toEqual([...files.map((m) => m.version)].sort((a, b) => a - b));

    expect(await migrate(t.db, { log: silentLog })).toEqual(files.map((m) => m.version));
    expect(await migrate(t.db, { log: silentLog })).toEqual([]);
    expect(await migrate(t.db, { log: silentLog })).toEqual([]);

    const recorded = await t.db.query<{ version: number; name: string }>(
      'SELECT version, name FROM schema_migrations ORDER BY version',
    );
    expect(recorded).toEqual(files.map((m) => ({ version: m.version, name: m.name })));
    expect(await tables(t)).toEqual(
      expect.arrayContaining([
        'alerts',
        'calls',
        'companies',
        'cost_events',
        'schema_migrations',
        'templates',
        'turns',
      ]),
    );
  });

  it('lets only one of two concurrent starts apply the migrations', async () => {
    const t = await freshDb();
    // Two pools on PostgreSQL (two "processes"); PGlite is one process, so the same instance twice.
    const other = t.reopen();
    const results = await Promise.all([
      migrate(t.db, { log: silentLog }),
      migrate(other, { log: silentLog }),
    ]);
    const files = await readMigrations();
    expect(results.flat().sort((a, b) => a - b)).toEqual(files.map((m) => m.version));
    expect(results.some((r) => r.length === 0)).toBe(true);
    const count = await t.db.query<{ n: number }>('SELECT count(*)::integer AS n FROM schema_migrations');
    expect(count[0]!.n).toBe(files.length);
  });

  it('applies nothing when one pending migration fails', async () => {
    const t = await freshDb();
    const dir = await mkdtemp(path.join(tmpdir(), 'switchboard-migrations-'));
    try {
      await cp(new URL('0001_init.sql', MIGRATIONS_DIR), path.join(dir, '0001_init.sql'));
      await writeFile(path.join(dir, '0002_broken.sql'), 'CREATE TABLE broken (;');
      const dirUrl = pathToFileURL(`${dir}/`);
      await expect(migrate(t.db, { log: silentLog, dir: dirUrl })).rejects.toMatchObject({
        code: 'ERR_DB_QUERY',
      });
      expect(await tables(t)).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses badly named migration files', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'switchboard-migrations-'));
    try {
      await writeFile(path.join(dir, '1_init.sql'), 'SELECT 1;');
      await expect(readMigrations(pathToFileURL(`${dir}/`))).rejects.toMatchObject({
        code: 'ERR_MIGRATION_INVALID',
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
