/**
 * Picks the database from configuration: PostgreSQL when DATABASE_URL is set, PGlite in
 * DATA_DIR/pglite otherwise (behind a lock file, since PGlite serves one process), and brings its
 * schema up to date.
 */
import path from 'node:path';
import type { Logger } from '../../observability/logger.ts';
import type { Db } from './db.ts';
import { migrate } from './migrate.ts';
import { createPgDb } from './pgDb.ts';
import { createPgliteDb } from './pgliteDb.ts';
import { acquirePgliteLock } from './pgliteLock.ts';
import type { PgliteHolder } from './pgliteLock.ts';

/** Which database to open (from EnvConfig). */
export interface OpenDbOptions {
  /** EnvConfig.databaseUrl. */
  readonly databaseUrl: string | undefined;
  /** EnvConfig.dataDir: PGlite keeps its data in `<dataDir>/pglite`. */
  readonly dataDir: string;
  readonly log: Logger;
  /** Apply pending migrations before returning (default true). */
  readonly migrate?: boolean;
  /** Who takes the embedded database's lock (default 'engine'); ignored with DATABASE_URL. */
  readonly holder?: PgliteHolder;
}

/**
 * PGlite in `dir` behind its lock: refused (ERR_DB_LOCKED) while another process holds it; the lock
 * goes when the database is closed.
 */
async function openPglite(dir: string, holder: PgliteHolder): Promise<Db> {
  const lock = await acquirePgliteLock(dir, holder);
  let db: Db;
  try {
    db = await createPgliteDb({ dataDir: dir });
  } catch (err) {
    await lock.release();
    throw err;
  }
  return {
    ...db,
    async close() {
      try {
        await db.close();
      } finally {
        await lock.release();
      }
    },
  };
}

/** Opens the configured database and (by default) applies pending migrations. */
export async function openDb(options: OpenDbOptions): Promise<Db> {
  const db =
    options.databaseUrl === undefined
      ? await openPglite(path.resolve(options.dataDir, 'pglite'), options.holder ?? 'engine')
      : createPgDb({ url: options.databaseUrl, log: options.log });
  if (options.migrate !== false) {
    try {
      await migrate(db, { log: options.log });
    } catch (err) {
      await db.close();
      throw err;
    }
  }
  return db;
}
