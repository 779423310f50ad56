/**
 * A database the test can take away and give back. On PostgreSQL the connections really break
 * (through the fault proxy); on PGlite, which runs in-process, a wrapper fails statements the way
 * a broken connection does — including a statement that committed but whose answer was lost.
 */
import type { Db, Queryable } from '../../src/store/sql/db.ts';
import { DbError } from '../../src/store/sql/db.ts';
import { TEST_DATABASE_URL } from './dbForTest.ts';
import type { TestDb } from './dbForTest.ts';
import { startFaultProxy } from './faultProxy.ts';

export interface OutageDb {
  /** Give this to the code under test; check results through TestDb.db. */
  readonly db: Db;
  cut(): void;
  restore(): void;
  dispose(): Promise<void>;
}

const unavailable = () => new DbError('ERR_DB_UNAVAILABLE', 'Connection terminated unexpectedly');

/** Wraps a Db so statements fail while `isDown()`: at the start, or after running (answer lost). */
export function flakyDb(inner: Db, isDown: () => boolean): Db {
  const wrap = (q: Queryable): Queryable => ({
    async query<T extends object>(sql: string, params?: readonly unknown[]) {
      if (isDown()) throw unavailable();
      const rows = await q.query<T>(sql, params);
      if (isDown()) throw unavailable();
      return rows;
    },
    async exec(sql: string) {
      if (isDown()) throw unavailable();
      await q.exec(sql);
      if (isDown()) throw unavailable();
    },
  });
  const direct = wrap(inner);
  return {
    kind: inner.kind,
    query: direct.query,
    exec: direct.exec,
    transaction: (fn) => {
      if (isDown()) return Promise.reject(unavailable());
      return inner.transaction((tx) => fn(wrap(tx)));
    },
    close: () => Promise.resolve(),
  };
}

export async function openOutageDb(testDb: TestDb): Promise<OutageDb> {
  if (TEST_DATABASE_URL === undefined) {
    let down = false;
    return {
      db: flakyDb(testDb.db, () => down),
      cut: () => (down = true),
      restore: () => (down = false),
      dispose: () => Promise.resolve(),
    };
  }
  const url = new URL(TEST_DATABASE_URL);
  const proxy = await startFaultProxy({ host: url.hostname, port: Number(url.port || 5432) });
  url.hostname = '127.0.0.1';
  url.port = String(proxy.port);
  const db = testDb.reopen({ url: url.toString(), connectTimeoutMs: 1000, queryTimeoutMs: 5000 });
  return {
    db,
    cut: () => proxy.cut(),
    restore: () => proxy.restore(),
    async dispose() {
      await db.close();
      await proxy.close();
    },
  };
}
