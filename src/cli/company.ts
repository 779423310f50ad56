/**
 * `npm run company -- import FILE…` validates company and template files and stores them in the
 * engine's database (DATABASE_URL, else the embedded PGlite under DATA_DIR); `export [ID…] [--out
 * DIR]` writes them back out; `list` lists them.
 *
 * With DATABASE_URL the command works while engines run: a write invalidates their cached copies
 * through Redis pub/sub (REDIS_URL), so they serve it within a second. The embedded database serves
 * one process at a time, so while an engine holds it the command refuses and says so (stop the
 * engine, or use its admin API).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pino } from 'pino';
import type { EnvConfig } from '../config/env.ts';
import { loadEnv } from '../config/env.ts';
import { createLogger } from '../observability/logger.ts';
import { createConfigService } from '../store/configService.ts';
import type { ConfigService, ConfigValues, IncomingDocument, PutOutcome } from '../store/configService.ts';
import { fillEmptyStore, readDocumentFiles } from '../store/configStore.ts';
import { createRedisServices } from '../store/redisServices.ts';
import { openDb } from '../store/sql/openDb.ts';
import { createSqlConfigStore } from '../store/sql/sqlConfigStore.ts';
import { isMain, parseCli, runCli, usageError, userPath } from './args.ts';

const USAGE = `usage:
  npm run company -- import FILE [FILE…]        validate and store company/template JSON files
  npm run company -- export [ID…] [--out DIR]   print (or write to DIR) companies and their templates
  npm run company -- list                       list what the store holds`;

/**
 * Validates the files together with what the store holds (as it will be after the import, so
 * nothing half-valid is written), stores them, and invalidates the engines' caches.
 */
export async function importDocuments(
  config: ConfigService,
  incoming: readonly IncomingDocument[],
): Promise<string[]> {
  const outcomes: PutOutcome[] = await config.put(incoming);
  return incoming.map(
    (d, i) => `${d.kind} ${d.id} ← ${d.source}${outcomes[i]?.created === false ? ' (replaced)' : ''}`,
  );
}

/** The configured database as a config service, with the engines' invalidation bus when there is one. */
async function openConfig(env: EnvConfig): Promise<{ config: ConfigService; close(): Promise<void> }> {
  // Problems go to stderr; stdout carries the export.
  const log = createLogger(env.logLevel === 'info' ? 'warn' : env.logLevel, pino.destination(2));
  const db = await openDb({ databaseUrl: env.databaseUrl, dataDir: env.dataDir, log, holder: 'command' });
  try {
    const store = createSqlConfigStore(db);
    // The same first fill as the engine's first start, so an import into a new database is
    // checked against what the engine will load.
    await fillEmptyStore(store, { dataDir: env.dataDir, fromFiles: true });
    const services = await createRedisServices({
      redisUrl: env.redisUrl,
      keyPrefix: env.redisKeyPrefix,
      log,
    });
    const config = createConfigService({
      store,
      cache: (o) => services.configCache<ConfigValues>(o),
      bus: services.bus,
      log,
    });
    return {
      config,
      async close() {
        config.close();
        await services.close();
        await db.close();
      },
    };
  } catch (err) {
    await db.close();
    throw err;
  }
}

function whereStored(env: EnvConfig): string {
  if (env.databaseUrl === undefined) {
    return `stored in ${path.resolve(env.dataDir, 'pglite')} (embedded); the next engine start serves it`;
  }
  return env.redisUrl === undefined
    ? 'stored in PostgreSQL; running engines serve it within 60 s (no REDIS_URL: their caches expire)'
    : 'stored in PostgreSQL; running engines serve it within a second (caches invalidated through Redis)';
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseCli(
    argv,
    { out: { type: 'string' }, help: { type: 'boolean', default: false } },
    USAGE,
  );
  const [command, ...args] = positionals;
  if (values.help || command === undefined) {
    process.stdout.write(`${USAGE}\n`);
    return values.help ? 0 : 2;
  }
  if (!['import', 'list', 'export'].includes(command))
    throw usageError(`unknown command "${command}"`, USAGE);
  if (command === 'import' && args.length === 0) throw usageError('import: no FILE given', USAGE);
  const env = loadEnv();
  // Files are read and checked on their own first: a broken file needs no database.
  const incoming = command === 'import' ? await readDocumentFiles(args.map((file) => userPath(file))) : [];
  const opened = await openConfig(env);
  const config = opened.config;
  try {
    switch (command) {
      case 'import': {
        for (const line of await importDocuments(config, incoming))
          process.stdout.write(`imported ${line}\n`);
        process.stdout.write(`${whereStored(env)}\n`);
        return 0;
      }
      case 'list': {
        for (const kind of ['company', 'template'] as const) {
          for (const d of await config.documents(kind)) process.stdout.write(`${kind}\t${d.id}\n`);
        }
        return 0;
      }
      default: {
        const companies = await config.documents('company');
        const templates = await config.documents('template');
        const chosen = args.length === 0 ? companies : companies.filter((c) => args.includes(c.id));
        const missing = args.filter((id) => !companies.some((c) => c.id === id));
        if (missing.length > 0) {
          process.stderr.write(`unknown company: ${missing.join(', ')}\n`);
          return 1;
        }
        const wanted = new Set(
          chosen.flatMap((c) => ((c.raw as { templates?: string[] }).templates ?? []).map(String)),
        );
        const docs = [...chosen, ...templates.filter((t) => wanted.has(t.id))];
        if (values.out === undefined) {
          process.stdout.write(
            `${JSON.stringify(
              docs.map((d) => d.raw),
              null,
              2,
            )}\n`,
          );
          return 0;
        }
        const out = userPath(values.out);
        await mkdir(out, { recursive: true });
        for (const d of docs) {
          const file = path.join(out, `${d.kind}.${d.id}.json`);
          await writeFile(file, `${JSON.stringify(d.raw, null, 2)}\n`);
          process.stdout.write(`wrote ${file}\n`);
        }
        return 0;
      }
    }
  } finally {
    await opened.close();
  }
}

if (isMain(import.meta.url)) {
  runCli('company', main(process.argv.slice(2)));
}
