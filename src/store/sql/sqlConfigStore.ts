/**
 * The ConfigStore on the database: company and template documents as imported (jsonb), one row per
 * version. Importing a document that differs from the current one adds a version; importing the
 * same document again adds nothing. The current document of an id is its highest version, and the
 * older rows are its history. Unlike the JSON files, every engine sharing the database sees the
 * same configuration.
 *
 * jsonb keeps every field and value but not the key order or whitespace of the imported file, so
 * an export is equal to the import as JSON, not byte for byte.
 */
import type { ConfigKind, ConfigStore, StoredDocument } from '../configStore.ts';
import type { Db } from './db.ts';

/** Table per kind: fixed names, never built from input. */
const TABLE: Record<ConfigKind, 'companies' | 'templates'> = { company: 'companies', template: 'templates' };

/** One stored version of a document. */
export interface DocumentVersion {
  readonly version: number;
  readonly createdAt: string;
  readonly raw: unknown;
}

/** A ConfigStore that also keeps history. */
export interface SqlConfigStore extends ConfigStore {
  /** Every version of one document, newest first. */
  history(kind: ConfigKind, id: string): Promise<DocumentVersion[]>;
}

/** The ConfigStore on a migrated database. */
export function createSqlConfigStore(db: Db): SqlConfigStore {
  return {
    async list(kind) {
      const rows = await db.query<{ id: string; document: unknown }>(
        `SELECT DISTINCT ON (id) id, document FROM ${TABLE[kind]} ORDER BY id, version DESC`,
      );
      return rows.map((r) => ({ kind, id: r.id, raw: r.document }));
    },
    async get(kind, id) {
      const rows = await db.query<{ document: unknown }>(
        `SELECT document FROM ${TABLE[kind]} WHERE id = $1 ORDER BY version DESC LIMIT 1`,
        [id],
      );
      return rows[0] === undefined ? null : { kind, id, raw: rows[0].document };
    },
    async companyIdForNumber(e164) {
      // Current versions only: a number moved to another company belongs to its new owner.
      const rows = await db.query<{ id: string }>(
        `SELECT id FROM (SELECT DISTINCT ON (id) id, document FROM companies ORDER BY id, version DESC) c
          WHERE c.document -> 'phoneNumbers' @> to_jsonb($1::text)
          ORDER BY id LIMIT 1`,
        [e164],
      );
      return rows[0]?.id ?? null;
    },
    async put(docs: readonly StoredDocument[]) {
      // All or nothing, like an import of several files should be.
      await db.transaction(async (tx) => {
        for (const doc of docs) {
          const table = TABLE[doc.kind];
          const json = JSON.stringify(doc.raw);
          const current = await tx.query<{ version: number; same: boolean }>(
            `SELECT version, document = $2::jsonb AS same FROM ${table} WHERE id = $1 ORDER BY version DESC LIMIT 1`,
            [doc.id, json],
          );
          if (current[0]?.same === true) continue;
          // Two imports of the same id at once collide on the primary key and one fails: re-run it.
          await tx.query(`INSERT INTO ${table} (id, version, document) VALUES ($1, $2, $3::jsonb)`, [
            doc.id,
            (current[0]?.version ?? 0) + 1,
            json,
          ]);
        }
      });
    },
    async isEmpty() {
      const rows = await db.query<{ any: boolean }>(
        'SELECT EXISTS (SELECT 1 FROM companies) OR EXISTS (SELECT 1 FROM templates) AS any',
      );
      return rows[0]?.any !== true;
    },
    async history(kind, id) {
      const rows = await db.query<{ version: number; created_at: Date | string; document: unknown }>(
        `SELECT version, created_at, document FROM ${TABLE[kind]} WHERE id = $1 ORDER BY version DESC`,
        [id],
      );
      return rows.map((r) => ({
        version: r.version,
        createdAt: new Date(r.created_at).toISOString(),
        raw: r.document,
      }));
    },
  };
}
