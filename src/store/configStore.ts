/**
 * Where company and template documents live. The embedded default keeps them as JSON files under
 * DATA_DIR/config; documents are stored exactly as imported so an export round-trips.
 */
import { mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import type { CompanyConfig, TemplateConfig } from '../config/companyConfig.ts';
import { configKind, parseCompany, parseTemplate } from '../config/companyConfig.ts';
import { ConfigError } from '../errors.ts';

export type ConfigKind = 'company' | 'template';

export interface StoredDocument {
  readonly kind: ConfigKind;
  readonly id: string;
  /** The document as imported. */
  readonly raw: unknown;
}

export interface ConfigStore {
  list(kind: ConfigKind): Promise<StoredDocument[]>;
  /** The current document of one id, or null. */
  get(kind: ConfigKind, id: string): Promise<StoredDocument | null>;
  /** The id of the company whose document lists this E.164 number, or null. */
  companyIdForNumber(e164: string): Promise<string | null>;
  put(docs: readonly StoredDocument[]): Promise<void>;
  /** True when the store has never been written to. */
  isEmpty(): Promise<boolean>;
}

/** Validated companies and templates, indexed the way calls look them up. */
export interface Catalog {
  readonly companies: ReadonlyMap<string, CompanyConfig>;
  readonly templates: ReadonlyMap<string, TemplateConfig>;
  /** E.164 called number → company id. */
  readonly byNumber: ReadonlyMap<string, string>;
}

const FOLDER: Record<ConfigKind, string> = { company: 'companies', template: 'templates' };

/** True when a stored document lists `e164` among its phone numbers. */
function listsNumber(raw: unknown, e164: string): boolean {
  const numbers = (raw as { phoneNumbers?: unknown } | null)?.phoneNumbers;
  return Array.isArray(numbers) && numbers.includes(e164);
}

export function createFileConfigStore(dataDir: string): ConfigStore {
  const root = path.resolve(dataDir, 'config');
  const folder = (kind: ConfigKind) => path.join(root, FOLDER[kind]);
  const store: ConfigStore = {
    async get(kind, id) {
      // Ids are slugs; anything else cannot name a file of ours (and must not walk the disk).
      if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(id)) return null;
      try {
        const raw = JSON.parse(await readFile(path.join(folder(kind), `${id}.json`), 'utf8')) as unknown;
        return { kind, id, raw };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
        throw err;
      }
    },
    async companyIdForNumber(e164) {
      return (await store.list('company')).find((d) => listsNumber(d.raw, e164))?.id ?? null;
    },
    async list(kind) {
      let names: string[];
      try {
        names = (await readdir(folder(kind))).filter((n) => n.endsWith('.json')).sort();
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
        throw err;
      }
      return Promise.all(
        names.map(async (name) => ({
          kind,
          id: name.slice(0, -'.json'.length),
          raw: JSON.parse(await readFile(path.join(folder(kind), name), 'utf8')) as unknown,
        })),
      );
    },
    async put(docs) {
      for (const doc of docs) {
        await mkdir(folder(doc.kind), { recursive: true });
        const file = path.join(folder(doc.kind), `${doc.id}.json`);
        // Write then rename, so a crash never leaves half a document behind.
        await writeFile(`${file}.tmp`, `${JSON.stringify(doc.raw, null, 2)}\n`);
        await rename(`${file}.tmp`, file);
      }
    },
    async isEmpty() {
      try {
        return (await readdir(root)).length === 0;
      } catch {
        return true;
      }
    },
  };
  return store;
}

/**
 * Validates a set of documents together: each one against the contract, then across documents
 * (a company's templates exist, a phone number belongs to one company). Every problem is reported
 * at once, each naming its source and field.
 */
export function buildCatalog(docs: ReadonlyArray<StoredDocument & { source: string }>): Catalog {
  const problems: string[] = [];
  const companies = new Map<string, CompanyConfig>();
  const templates = new Map<string, TemplateConfig>();
  const sources = new Map<string, string>();
  for (const doc of docs) {
    try {
      if (doc.kind === 'company') {
        const c = parseCompany(doc.raw, doc.source);
        companies.set(c.id, c);
        sources.set(`company:${c.id}`, doc.source);
      } else {
        const t = parseTemplate(doc.raw, doc.source);
        templates.set(t.id, t);
        sources.set(`template:${t.id}`, doc.source);
      }
    } catch (err) {
      if (err instanceof ConfigError) problems.push(...err.problems);
      else throw err;
    }
  }
  const byNumber = new Map<string, string>();
  for (const c of companies.values()) {
    const source = sources.get(`company:${c.id}`) ?? c.id;
    c.templates.forEach((t, i) => {
      if (!templates.has(t)) problems.push(`${source}: templates.${i}: unknown template "${t}"`);
    });
    c.phoneNumbers.forEach((n, i) => {
      const owner = byNumber.get(n);
      if (owner !== undefined && owner !== c.id) {
        problems.push(`${source}: phoneNumbers.${i}: ${n} already belongs to company "${owner}"`);
      } else byNumber.set(n, c.id);
    });
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return { companies, templates, byNumber };
}

/** Reads the whole store into a validated catalog. */
export async function loadCatalog(store: ConfigStore): Promise<Catalog> {
  const docs = [...(await store.list('template')), ...(await store.list('company'))];
  return buildCatalog(docs.map((d) => ({ ...d, source: `${d.kind}s/${d.id}.json` })));
}

/** Reads JSON files given on a command line into documents; problems name the file. */
export async function readDocumentFiles(
  files: readonly string[],
): Promise<Array<StoredDocument & { source: string }>> {
  const problems: string[] = [];
  const docs: Array<StoredDocument & { source: string }> = [];
  for (const file of files) {
    let raw: unknown;
    try {
      raw = JSON.parse(await readFile(file, 'utf8'));
    } catch (err) {
      problems.push(`${file}: ${(err as Error).message}`);
      continue;
    }
    const kind = configKind(raw);
    const id = (raw as { id?: unknown } | null)?.id;
    if (kind === null) {
      problems.push(
        `${file}: (root): not a company (phoneNumbers, gatekeeper) or template (categories) document`,
      );
    } else if (typeof id !== 'string') {
      problems.push(`${file}: id: expected a string`);
    } else docs.push({ kind, id, raw, source: file });
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return docs;
}

/** The demo company and template shipped with the project. */
export const DEMO_FILES = ['company.riverside-plumbing.json', 'template.plumbing-residential.json'].map((f) =>
  fileURLToPath(new URL(`../config/demo/${f}`, import.meta.url)),
);

/** Fills an empty store with the demo configuration (first start of the embedded default). */
export async function seedDemo(store: ConfigStore): Promise<boolean> {
  if (!(await store.isEmpty())) return false;
  const docs = await readDocumentFiles(DEMO_FILES);
  buildCatalog(docs);
  await store.put(docs.map(({ kind, id, raw }) => ({ kind, id, raw })));
  return true;
}

/**
 * Fills an empty store on first use: with the JSON files an earlier version kept under
 * DATA_DIR/config when `fromFiles` and there are some (once: the store is not empty afterwards),
 * else with the demo. Resolves to what it did.
 */
export async function fillEmptyStore(
  store: ConfigStore,
  options: { dataDir: string; fromFiles: boolean },
): Promise<'files' | 'demo' | null> {
  if (!(await store.isEmpty())) return null;
  try {
    const files = createFileConfigStore(options.dataDir);
    if (options.fromFiles && !(await files.isEmpty())) {
      const docs = [...(await files.list('template')), ...(await files.list('company'))];
      buildCatalog(docs.map((d) => ({ ...d, source: `config/${FOLDER[d.kind]}/${d.id}.json` })));
      await store.put(docs);
      return 'files';
    }
    return (await seedDemo(store)) ? 'demo' : null;
  } catch (err) {
    // Several engines starting on one new database: one fills it, the others collide on its rows.
    if (await store.isEmpty()) throw err;
    return null;
  }
}
