/**
 * Applies pending migrations to the configured database (DATABASE_URL, or PGlite in DATA_DIR) and
 * exits: for deployments that migrate before starting the engines. The engine also migrates at
 * start, so this is optional.
 *
 *   npm run migrate        (node src/store/sql/migrateCommand.ts)
 */
import { isMain } from '../../cli/args.ts';
import type { EnvConfig } from '../../config/env.ts';
import { loadEnv } from '../../config/env.ts';
import type { Logger } from '../../observability/logger.ts';
import { createLogger } from '../../observability/logger.ts';
import { migrate } from './migrate.ts';
import { openDb } from './openDb.ts';

/** Opens the configured database, applies what is pending, closes it; resolves to the versions applied. */
export async function runMigrations(
  env: Pick<EnvConfig, 'databaseUrl' | 'dataDir'>,
  log: Logger,
): Promise<number[]> {
  const db = await openDb({
    databaseUrl: env.databaseUrl,
    dataDir: env.dataDir,
    log,
    migrate: false,
    holder: 'command',
  });
  try {
    return await migrate(db, { log });
  } finally {
    await db.close();
  }
}

if (isMain(import.meta.url)) {
  try {
    const env = loadEnv();
    const applied = await runMigrations(env, createLogger(env.logLevel));
    process.stdout.write(
      applied.length === 0 ? 'database schema is up to date\n' : `applied migrations ${applied.join(', ')}\n`,
    );
  } catch (err) {
    // ERR_DB_LOCKED (an engine holds the embedded database) and the like: one line, no stack.
    process.stderr.write(`migrate: ${(err as Error).message}\n`);
    process.exitCode = 1;
  }
}
