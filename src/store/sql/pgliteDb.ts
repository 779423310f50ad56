/**
 * PGlite: PostgreSQL compiled to WASM, running inside this process with its data in a folder (or in
 * memory). It is the embedded default when no DATABASE_URL is set, so the same SQL, migrations and
 * queries run with or without a server. One process only: PGlite has no locking across processes,
 * so two engines must never open the same folder.
 */
import { mkdir } from 'node:fs/promises';
import { PGlite } from '@electric-sql/pglite';
import type { Transaction } from '@electric-sql/pglite';
import type { Db, Queryable } from './db.ts';
import { toDbError, translatedQueryable } from './db.ts';

/** Where PGlite keeps its data. */
export interface PgliteDbOptions {
  /** The data folder (e.g. DATA_DIR/pglite); omitted = in memory, gone when closed (tests). */
  readonly dataDir?: string;
}

/** Starts PGlite (about 3 s for a new data folder, under 1 s for an existing one) as a Db. */
export async function createPgliteDb(options: PgliteDbOptions = {}): Promise<Db> {
  if (options.dataDir !== undefined) await mkdir(options.dataDir, { recursive: true });
  let pglite: PGlite;
  try {
    pglite = await PGlite.create(options.dataDir === undefined ? {} : { dataDir: options.dataDir });
  } catch (err) {
    throw toDbError(err);
  }

  const on = (client: PGlite | Transaction): Queryable =>
    translatedQueryable(
      (sql, params) => client.query(sql, params),
      (sql) => client.exec(sql),
    );

  const direct = on(pglite);
  return {
    kind: 'pglite',
    query: direct.query,
    exec: direct.exec,
    async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
      try {
        // PGlite runs one transaction at a time and queues other statements behind it.
        return await pglite.transaction((tx) => fn(on(tx)));
      } catch (err) {
        throw toDbError(err);
      }
    },
    async close(): Promise<void> {
      if (!pglite.closed) await pglite.close();
    },
  };
}
