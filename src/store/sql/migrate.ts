/**
 * Versioned SQL migrations: `src/store/migrations/NNNN_name.sql`, applied in order, each recorded in
 * `schema_migrations`. Everything pending is applied in one transaction, so a failing file leaves
 * the schema as it was. Two processes starting at once do not both apply: the transaction first
 * takes a Postgres advisory lock, so the second waits, then finds the work done.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { AppError } from '../../errors.ts';
import type { Logger } from '../../observability/logger.ts';
import type { Db } from './db.ts';

/** The folder shipped with the code. */
export const MIGRATIONS_DIR = new URL('../migrations/', import.meta.url);

/** Keys of the advisory lock (any constant; the second half separates schemas sharing a database). */
const LOCK_CLASS = 0x5b0a;

/** One migration file, read. */
export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
  readonly checksum: string;
}

/** How migrate() logs, and where it reads migrations from. */
export interface MigrateOptions {
  readonly log: Logger;
  /** Another folder of migrations (tests). */
  readonly dir?: URL;
}

/** Reads the migration files in version order; names must be `NNNN_words.sql`, versions unique. */
export async function readMigrations(dir: URL = MIGRATIONS_DIR): Promise<Migration[]> {
  const names = (await readdir(fileURLToPath(dir))).filter((n) => n.endsWith('.sql')).sort();
  const migrations: Migration[] = [];
  for (const name of names) {
    const match = /^(\d{4})_[a-z0-9_]+\.sql$/.exec(name);
    if (match === null) {
      throw new AppError('ERR_MIGRATION_INVALID', `migration ${name}: expected a name like 0001_init.sql`);
    }
    const version = Number(match[1]);
    if (migrations.some((m) => m.version === version)) {
      throw new AppError('ERR_MIGRATION_INVALID', `migration ${name}: version ${version} is used twice`);
    }
    const sql = await readFile(new URL(name, dir), 'utf8');
    migrations.push({ version, name, sql, checksum: createHash('sha256').update(sql).digest('hex') });
  }
  return migrations;
}

/**
 * Applies the pending migrations; resolves to the versions applied by this call (empty when the
 * schema was already current). Safe to run at every start and from a command.
 */
export async function migrate(db: Db, options: MigrateOptions): Promise<number[]> {
  const migrations = await readMigrations(options.dir);
  const applied = await db.transaction(async (tx) => {
    // Held until commit: a concurrent start blocks here, then sees the rows this one wrote.
    await tx.query("SELECT pg_advisory_xact_lock($1, hashtext(coalesce(current_schema(), '')))", [
      LOCK_CLASS,
    ]);
    await tx.exec(
      `CREATE TABLE IF NOT EXISTS schema_migrations (
         version integer PRIMARY KEY,
         name text NOT NULL,
         checksum text NOT NULL,
         applied_at timestamptz NOT NULL DEFAULT now()
       )`,
    );
    const done = new Map(
      (
        await tx.query<{ version: number; checksum: string }>(
          'SELECT version, checksum FROM schema_migrations',
        )
      ).map((r) => [r.version, r.checksum]),
    );
    const now: Migration[] = [];
    for (const m of migrations) {
      const checksum = done.get(m.version);
      if (checksum !== undefined) {
        // Editing an applied file does nothing to existing databases: say so, but keep starting.
        if (checksum !== m.checksum) {
          options.log.warn({ version: m.version, name: m.name }, 'applied migration file has changed since');
        }
        continue;
      }
      await tx.exec(m.sql);
      await tx.query('INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)', [
        m.version,
        m.name,
        m.checksum,
      ]);
      now.push(m);
    }
    return now;
  });
  for (const m of applied)
    options.log.info({ version: m.version, name: m.name }, 'database migration applied');
  return applied.map((m) => m.version);
}
