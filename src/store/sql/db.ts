/**
 * The small SQL interface the persistence layer is written against. Two implementations run the
 * same SQL: PostgreSQL through `pg` (pgDb.ts) and PGlite, Postgres compiled to WASM and embedded in
 * the process (pgliteDb.ts). Keeping the surface this small is what lets both stay interchangeable.
 */
import { AppError } from '../../errors.ts';

/** Something that runs SQL: the database itself, or one transaction on it. */
export interface Queryable {
  // Function-typed properties rather than methods: implementations are plain closures, safe to
  // pass around unbound.
  /** One statement with `$1…` parameters; resolves to the rows (empty for statements without any). */
  readonly query: <T extends object = Record<string, unknown>>(
    sql: string,
    params?: readonly unknown[],
  ) => Promise<T[]>;
  /** A script of several statements without parameters (migrations). */
  readonly exec: (sql: string) => Promise<void>;
}

/** A database: statements, transactions, and closing. */
export interface Db extends Queryable {
  /** 'postgres' or 'pglite': for logs and for the few places where the two differ (advisory locks). */
  readonly kind: 'postgres' | 'pglite';
  /**
   * Runs `fn` in one transaction on one connection: committed when it resolves, rolled back when
   * it throws (the error is rethrown).
   */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/**
 * Why a statement failed, as far as the caller needs to know:
 * - `ERR_DB_UNAVAILABLE`: the database could not be reached or the connection broke; the statement
 *   may or may not have committed. Trying again later can help (writes must be idempotent).
 * - `ERR_DB_REJECTED`: the database refused these values (SQLSTATE class 22 data exception or 23
 *   integrity violation). Trying the same values again cannot help.
 * - `ERR_DB_QUERY`: anything else (a missing table before migrations, a syntax error, a timeout).
 */
export type DbErrorCode = 'ERR_DB_UNAVAILABLE' | 'ERR_DB_REJECTED' | 'ERR_DB_QUERY';

/** Every error a Db throws. */
export class DbError extends AppError {
  declare readonly code: DbErrorCode;
  /** The SQLSTATE when the server answered, e.g. '22P02'. */
  readonly sqlState: string | undefined;

  constructor(
    code: DbErrorCode,
    message: string,
    options: { sqlState?: string | undefined; cause?: unknown } = {},
  ) {
    super(code, message, { retryable: code !== 'ERR_DB_REJECTED', cause: options.cause });
    this.name = 'DbError';
    this.sqlState = options.sqlState;
  }
}

/** Socket-level failures from Node while connecting to or talking with the server. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

/**
 * SQLSTATEs that mean "the server is not answering this connection now": connection exceptions
 * (08), shutdown and crash (57P01–57P03), too many connections and out of resources (53).
 */
function unavailableState(state: string): boolean {
  return state.startsWith('08') || /^57P0[1-3]$/.test(state) || state.startsWith('53');
}

/**
 * Translates whatever a driver threw into a DbError. The message keeps the driver's wording for
 * debugging, but callers log only `code` and `sqlState`: a driver message can quote the values
 * that were refused, and those may be caller data.
 */
export function toDbError(err: unknown): DbError {
  if (err instanceof DbError) return err;
  const e = err as { code?: unknown; message?: unknown } | null;
  const code = typeof e?.code === 'string' ? e.code : undefined;
  const message = typeof e?.message === 'string' ? e.message : String(err);
  const isSqlState = code !== undefined && /^[0-9A-Z]{5}$/.test(code) && !NETWORK_CODES.has(code);
  if (isSqlState) {
    if (unavailableState(code))
      return new DbError('ERR_DB_UNAVAILABLE', message, { sqlState: code, cause: err });
    if (code.startsWith('22') || code.startsWith('23'))
      return new DbError('ERR_DB_REJECTED', message, { sqlState: code, cause: err });
    return new DbError('ERR_DB_QUERY', message, { sqlState: code, cause: err });
  }
  // No SQLSTATE: the server never answered (network error, broken or timed-out connection).
  if (
    (code !== undefined && NETWORK_CODES.has(code)) ||
    /connection|terminated|timeout|timed out|ended|closed|socket/i.test(message)
  ) {
    return new DbError('ERR_DB_UNAVAILABLE', message, { cause: err });
  }
  return new DbError('ERR_DB_QUERY', message, { cause: err });
}

/** What a log line may say about a database error: no driver message (it can quote values). */
export function dbErrorForLog(err: unknown): { code: string; sqlState?: string } {
  const e = toDbError(err);
  return e.sqlState === undefined ? { code: e.code } : { code: e.code, sqlState: e.sqlState };
}

/**
 * A Queryable over a driver's own query and multi-statement calls, with every driver error
 * translated into a DbError (both drivers' clients and transactions go through here).
 */
export function translatedQueryable(
  run: (sql: string, params: unknown[]) => Promise<{ rows: unknown[] }>,
  execute: (sql: string) => Promise<unknown>,
): Queryable {
  return {
    async query<T extends object>(sql: string, params: readonly unknown[] = []): Promise<T[]> {
      try {
        return (await run(sql, [...params])).rows as T[];
      } catch (err) {
        throw toDbError(err);
      }
    },
    async exec(sql: string): Promise<void> {
      try {
        await execute(sql);
      } catch (err) {
        throw toDbError(err);
      }
    },
  };
}
