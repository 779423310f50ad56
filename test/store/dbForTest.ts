/**
 * The database for a test file: real PostgreSQL when DATABASE_URL is set (each call gets its own
 * schema, dropped by dispose(), so test files running in parallel never see each other's rows),
 * an in-memory PGlite otherwise. The same test files run both ways.
 */
import { randomBytes } from 'node:crypto';
import { pino } from 'pino';
import { loadEnv } from '../../src/config/env.ts';
import type { Db } from '../../src/store/sql/db.ts';
import { migrate } from '../../src/store/sql/migrate.ts';
import { createPgDb } from '../../src/store/sql/pgDb.ts';
import { createPgliteDb } from '../../src/store/sql/pgliteDb.ts';

/**
 * Read once, through the one module allowed to read the environment: DATABASE_URL is how a run
 * chooses the backend (`DATABASE_URL=postgres://postgres@127.0.0.1:5432/test npx vitest run …`).
 */
export const TEST_DATABASE_URL = loadEnv().databaseUrl;

export const BACKEND: 'postgres' | 'pglite' = TEST_DATABASE_URL === undefined ? 'pglite' : 'postgres';

export const silentLog = pino({ level: 'silent' });

/**
 * DATABASE_URL with every connection's search_path set to `schema`: how a child process (the
 * company command, a second engine) is pointed at a test's own schema.
 */
export function urlWithSchema(schema: string, url = TEST_DATABASE_URL): string {
  if (url === undefined) throw new Error('DATABASE_URL is not set');
  const u = new URL(url);
  u.searchParams.set('options', `-c search_path=${schema}`);
  return u.toString();
}

export interface TestDb {
  readonly db: Db;
  /** The schema of this test database (PostgreSQL only). */
  readonly schema: string | undefined;
  /** Another connection pool on the same schema (PostgreSQL), or the same PGlite instance. */
  reopen(options?: { url?: string; connectTimeoutMs?: number; queryTimeoutMs?: number }): Db;
  dispose(): Promise<void>;
}

/** A fresh, migrated (unless told otherwise) database. */
export async function openTestDb(options: { migrate?: boolean } = {}): Promise<TestDb> {
  let testDb: TestDb;
  if (TEST_DATABASE_URL === undefined) {
    const db = await createPgliteDb();
    testDb = {
      db,
      schema: undefined,
      reopen: () => ({ ...db, close: () => Promise.resolve() }),
      dispose: () => db.close(),
    };
  } else {
    const url = TEST_DATABASE_URL;
    const schema = `test_${randomBytes(6).toString('hex')}`;
    const admin = createPgDb({ url, log: silentLog, maxConnections: 1 });
    await admin.exec(`CREATE SCHEMA ${schema}`);
    const db = createPgDb({ url, log: silentLog, schema });
    const extra: Db[] = [];
    testDb = {
      db,
      schema,
      reopen(o = {}) {
        const other = createPgDb({
          url: o.url ?? url,
          log: silentLog,
          schema,
          ...(o.connectTimeoutMs === undefined ? {} : { connectTimeoutMs: o.connectTimeoutMs }),
          ...(o.queryTimeoutMs === undefined ? {} : { queryTimeoutMs: o.queryTimeoutMs }),
        });
        extra.push(other);
        return other;
      },
      async dispose() {
        await Promise.allSettled([db.close(), ...extra.map((d) => d.close())]);
        await admin.exec(`DROP SCHEMA ${schema} CASCADE`);
        await admin.close();
      },
    };
  }
  if (options.migrate !== false) await migrate(testDb.db, { log: silentLog });
  return testDb;
}

/** Counts rows and distinct ids of cost_events. */
export async function countCostEvents(db: Db): Promise<{ rows: number; distinct: number; ids: Set<string> }> {
  const counts = await db.query<{ rows: number; distinct: number }>(
    'SELECT count(*)::integer AS rows, count(DISTINCT id)::integer AS distinct FROM cost_events',
  );
  const ids = await db.query<{ id: string }>('SELECT id::text AS id FROM cost_events');
  return { rows: counts[0]!.rows, distinct: counts[0]!.distinct, ids: new Set(ids.map((r) => r.id)) };
}
