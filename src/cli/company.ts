/**
 * `npm run company -- import FILE…` validates company and template files and loads them into the
 * engine's store (the next `npm start` serves them); `export [ID…] [--out DIR]` writes them back out.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { loadEnv } from '../config/env.ts';
import { ConfigError } from '../errors.ts';
import { buildCatalog, createFileConfigStore, readDocumentFiles, seedDemo } from '../store/configStore.ts';
import type { ConfigStore } from '../store/configStore.ts';
import { isMain, parseCli } from './args.ts';

const USAGE = `usage:
  npm run company -- import FILE [FILE…]        validate and load company/template JSON files
  npm run company -- export [ID…] [--out DIR]   print (or write to DIR) companies and their templates
  npm run company -- list                       list what the store holds`;

export async function importFiles(store: ConfigStore, files: readonly string[]): Promise<string[]> {
  // The demo is seeded first so an import into a fresh store is checked against what start will load.
  await seedDemo(store);
  const incoming = await readDocumentFiles(files);
  const existing = [...(await store.list('template')), ...(await store.list('company'))].map((d) => ({
    ...d,
    source: `${d.kind}s/${d.id}.json (in the store)`,
  }));
  const replaced = new Set(incoming.map((d) => `${d.kind}:${d.id}`));
  // Validate the store as it will be after the import, so nothing half-valid is written.
  buildCatalog([...existing.filter((d) => !replaced.has(`${d.kind}:${d.id}`)), ...incoming]);
  await store.put(incoming.map(({ kind, id, raw }) => ({ kind, id, raw })));
  return incoming.map((d) => `${d.kind} ${d.id} ← ${d.source}`);
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseCli(argv, {
    out: { type: 'string' },
    help: { type: 'boolean', default: false },
  });
  const [command, ...args] = positionals;
  if (values.help || command === undefined) {
    process.stdout.write(`${USAGE}\n`);
    return values.help ? 0 : 2;
  }
  const env = loadEnv();
  const store = createFileConfigStore(env.dataDir);
  switch (command) {
    case 'import': {
      if (args.length === 0) {
        process.stderr.write(`${USAGE}\n`);
        return 2;
      }
      for (const line of await importFiles(store, args)) process.stdout.write(`imported ${line}\n`);
      process.stdout.write(
        `store: ${path.resolve(env.dataDir, 'config')} (restart the engine to serve the changes)\n`,
      );
      return 0;
    }
    case 'list': {
      await seedDemo(store);
      for (const kind of ['company', 'template'] as const) {
        for (const d of await store.list(kind)) process.stdout.write(`${kind}\t${d.id}\n`);
      }
      return 0;
    }
    case 'export': {
      await seedDemo(store);
      const companies = await store.list('company');
      const templates = await store.list('template');
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
      await mkdir(values.out, { recursive: true });
      for (const d of docs) {
        const file = path.join(values.out, `${d.kind}.${d.id}.json`);
        await writeFile(file, `${JSON.stringify(d.raw, null, 2)}\n`);
        process.stdout.write(`wrote ${file}\n`);
      }
      return 0;
    }
    default:
      process.stderr.write(`unknown command "${command}"\n${USAGE}\n`);
      return 2;
  }
}

if (isMain(import.meta.url)) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(
        `${err instanceof ConfigError ? err.message : `company: ${(err as Error).message}`}\n`,
      );
      process.exit(1);
    },
  );
}
