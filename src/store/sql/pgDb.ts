/**
 * PostgreSQL through a `pg` Pool. Every error is translated into a DbError here, so nothing above
 * this file sees driver types.
 */
import pg from 'pg';
import type { PoolClient } from 'pg';
import { AppError } from '../../errors.ts';
import type { Logger } from '../../observability/logger.ts';
import type { Db, Queryable } from './db.ts';
import { dbErrorForLog, toDbError, translatedQueryable } from './db.ts';

/** Connection settings for createPgDb. */
export interface PgDbOptions {
  /** `postgres://user@host:port/db` (DATABASE_URL). */
  readonly url: string;
  readonly log: Logger;
  /**
   * Schema every connection uses (`search_path`). Tests give each run its own schema so parallel
   * files do not collide; production leaves the server's default.
   */
  readonly schema?: string;
  /** Pool size; the writers batch, so a few connections are plenty. */
  readonly maxConnections?: number;
  /** Connecting gives up after this long, so an unreachable server fails fast instead of hanging. */
  readonly connectTimeoutMs?: number;
  /**
   * A statement gives up (client side) after this long: a connection that silently stops answering
   * must not hold a writer forever. The statement may still have committed, which is why every
   * write in this layer is idempotent.
   */
  readonly queryTimeoutMs?: number;
}

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** A Db on a PostgreSQL server; nothing connects until the first statement. */
export function createPgDb(options: PgDbOptions): Db {
  if (options.schema !== undefined && !SCHEMA_NAME.test(options.schema)) {
    throw new AppError('ERR_CONFIG_INVALID', `invalid schema name ${options.schema}`);
  }
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.maxConnections ?? 4,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 3000,
    query_timeout: options.queryTimeoutMs ?? 15_000,
    idleTimeoutMillis: 30_000,
    application_name: 'switchboard',
    ...(options.schema === undefined ? {} : { options: `-c search_path=${options.schema}` }),
  });
  // An idle connection that breaks (server restart, network cut) is reported here; without a
  // listener the pool would rethrow it and take the process down. The pool drops the client itself.
  pool.on('error', (err) => options.log.warn({ err: dbErrorForLog(err) }, 'idle database connection lost'));

  const on = (client: pg.Pool | PoolClient): Queryable =>
    translatedQueryable(
      (sql, params) => client.query(sql, params),
      // Without parameters pg uses the simple protocol, which accepts several statements.
      (sql) => client.query(sql),
    );

  const direct = on(pool);
  return {
    kind: 'postgres',
    query: direct.query,
    exec: direct.exec,
    async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
      let client: PoolClient;
      try {
        client = await pool.connect();
      } catch (err) {
        throw toDbError(err);
      }
      const tx = on(client);
      let broken: unknown;
      try {
        await tx.exec('BEGIN');
        const result = await fn(tx);
        await tx.exec('COMMIT');
        return result;
      } catch (err) {
        try {
          await client.query('ROLLBACK');
        } catch (rollbackErr) {
          // The connection itself is gone: do not hand it back to the pool.
          broken = rollbackErr;
        }
        throw toDbError(err);
      } finally {
        client.release(broken === undefined ? undefined : (broken as Error));
      }
    },
    async close(): Promise<void> {
      await pool.end();
    },
  };
}
