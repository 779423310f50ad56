/**
 * Picks the database from configuration: PostgreSQL when DATABASE_URL is set, PGlite in
 * DATA_DIR/pglite otherwise, and brings its schema up to date.
 */
import path from 'node:path';
import type { Logger } from '../../observability/logger.ts';
import type { Db } from './db.ts';
import { migrate } from './migrate.ts';
import { createPgDb } from './pgDb.ts';
import { createPgliteDb } from './pgliteDb.ts';

/** Which database to open (from EnvConfig). */
export interface OpenDbOptions {
  /** EnvConfig.databaseUrl. */
  readonly databaseUrl: string | undefined;
  /** EnvConfig.dataDir: PGlite keeps its data in `<dataDir>/pglite`. */
  readonly dataDir: string;
  readonly log: Logger;
  /** Apply pending migrations before returning (default true). */
  readonly migrate?: boolean;
}

/** Opens the configured database and (by default) applies pending migrations. */
export async function openDb(options: OpenDbOptions): Promise<Db> {
  const db =
    options.databaseUrl === undefined
      ? await createPgliteDb({ dataDir: path.resolve(options.dataDir, 'pglite') })
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
