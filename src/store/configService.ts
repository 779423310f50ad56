/**
 * Configuration as the engine and the admin surfaces see it. Reads go through the config cache
 * (in-process, then Redis, then the store: `company:{id}`, `templates:{id}`, `number:{e164}`), so a
 * call never waits on the database for a company it has seen. Writes (admin API, `npm run company
 * -- import`) are validated against the whole store as it will be after the write — each document
 * against the contract, then across documents: templates exist, a phone number belongs to one
 * company — stored all or nothing, then invalidated on every instance through the bus.
 */
import type { CompanyConfig, TemplateConfig } from '../config/companyConfig.ts';
import { parseCompany, parseTemplate } from '../config/companyConfig.ts';
import type { Logger } from '../observability/logger.ts';
import type { ConfigCache, ConfigCacheKind, Invalidation, InvalidationBus } from './configCache.ts';
import type { CacheOptions } from './redisServices.ts';
import { buildCatalog } from './configStore.ts';
import type { ConfigKind, ConfigStore, StoredDocument } from './configStore.ts';

/** What each cache kind holds. */
export interface ConfigValues {
  company: CompanyConfig;
  templates: TemplateConfig;
  /** The owning company's id. */
  number: string;
}

/** What the engine reads: companies, templates and numbers, and word of changes. */
export interface ConfigSource {
  /** Every company in the store (compiled at start). */
  companyIds(): Promise<string[]>;
  company(id: string): Promise<CompanyConfig | null>;
  template(id: string): Promise<TemplateConfig | null>;
  companyIdForNumber(e164: string): Promise<string | null>;
  /** A company, template or number changed on some instance (its cached copies are already gone). */
  onChange(listener: (change: Invalidation) => void): () => void;
  /** Changes may have been missed (the bus reconnected): re-check everything. */
  onResync(listener: () => void): () => void;
}

/** A document to write and where it came from (a file name, `body`), named in every problem. */
export type IncomingDocument = StoredDocument & { readonly source: string };

export interface PutOutcome {
  readonly kind: ConfigKind;
  readonly id: string;
  /** False when it replaced a document with the same id. */
  readonly created: boolean;
}

export interface ConfigService extends ConfigSource {
  readonly store: ConfigStore;
  /** The current document as stored (the source of truth, not the cache), or null. */
  document(kind: ConfigKind, id: string): Promise<unknown>;
  documents(kind: ConfigKind): Promise<StoredDocument[]>;
  /**
   * Validates `docs` together with everything stored, stores them all or none, and invalidates
   * every instance's copies. Throws ConfigError listing every problem, each naming its source and
   * field.
   */
  put(docs: readonly IncomingDocument[]): Promise<PutOutcome[]>;
  close(): void;
}

export interface ConfigServiceOptions {
  readonly store: ConfigStore;
  /** Builds the cache in front of the store (RedisServices.configCache). */
  readonly cache: (options: CacheOptions) => ConfigCache<ConfigValues>;
  readonly bus: InvalidationBus;
  readonly log: Logger;
}

const phoneNumbers = (raw: unknown): string[] => {
  const numbers = (raw as { phoneNumbers?: unknown } | null)?.phoneNumbers;
  return Array.isArray(numbers) ? numbers.filter((n): n is string => typeof n === 'string') : [];
};

const CACHE_KIND: Record<ConfigKind, ConfigCacheKind> = { company: 'company', template: 'templates' };

export function createConfigService(options: ConfigServiceOptions): ConfigService {
  const { store, bus, log } = options;
  const cache = options.cache({
    async load(kind, id) {
      if (kind === 'number') return store.companyIdForNumber(id);
      const doc = await store.get(kind === 'company' ? 'company' : 'template', id);
      if (doc === null) return null;
      return kind === 'company'
        ? parseCompany(doc.raw, `companies/${id}`)
        : parseTemplate(doc.raw, `templates/${id}`);
    },
    // Values in Redis were validated when loaded; parsing again restores the exact types (and
    // refuses anything that is not a valid document, which the cache then reloads).
    decode(kind, json) {
      if (kind === 'company')
        return parseCompany(json, `cache company:${String((json as { id?: unknown }).id)}`);
      if (kind === 'templates')
        return parseTemplate(json, `cache templates:${String((json as { id?: unknown }).id)}`);
      return typeof json === 'string' ? json : null;
    },
  });
  // Writes on this instance are serialised, so two validations cannot both pass against the same
  // old state (across instances the window is one write's duration).
  let writing: Promise<unknown> = Promise.resolve();

  async function put(docs: readonly IncomingDocument[]): Promise<PutOutcome[]> {
    const stored = [...(await store.list('template')), ...(await store.list('company'))];
    const current = new Map(stored.map((d) => [`${d.kind}:${d.id}`, d]));
    const incoming = new Set(docs.map((d) => `${d.kind}:${d.id}`));
    // Stored documents first: a number taken twice is then reported on the incoming document.
    buildCatalog([
      ...stored
        .filter((d) => !incoming.has(`${d.kind}:${d.id}`))
        .map((d) => ({ ...d, source: `${d.kind}s/${d.id} (stored)` })),
      ...docs,
    ]);
    await store.put(docs.map(({ kind, id, raw }) => ({ kind, id, raw })));
    for (const doc of docs) {
      await cache.invalidate(CACHE_KIND[doc.kind], doc.id);
      if (doc.kind !== 'company') continue;
      const before = phoneNumbers(current.get(`company:${doc.id}`)?.raw);
      for (const n of new Set([...before, ...phoneNumbers(doc.raw)])) await cache.invalidate('number', n);
    }
    log.info({ documents: docs.map((d) => `${d.kind}:${d.id}`) }, 'configuration stored; caches invalidated');
    return docs.map((d) => ({ kind: d.kind, id: d.id, created: !current.has(`${d.kind}:${d.id}`) }));
  }

  return {
    store,
    async companyIds() {
      return (await store.list('company')).map((d) => d.id);
    },
    company: (id) => cache.get('company', id),
    template: (id) => cache.get('templates', id),
    companyIdForNumber: (e164) => cache.get('number', e164),
    // Subscribed after the cache (created above), so the cache has dropped its copy by the time a
    // listener reads again.
    onChange: (listener) => bus.subscribe(listener),
    onResync: (listener) => bus.onResync(listener),
    async document(kind, id) {
      return (await store.get(kind, id))?.raw ?? null;
    },
    documents: (kind) => store.list(kind),
    put(docs) {
      const run = writing.then(
        () => put(docs),
        () => put(docs),
      );
      writing = run.catch(() => undefined);
      return run;
    },
    close: () => cache.close(),
  };
}
