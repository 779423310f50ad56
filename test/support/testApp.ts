/**
 * Starts the real app on port 0 with a temporary data folder holding the given documents, a silent
 * logger, short playback estimates so conversations run fast, no startup warmup and no database
 * unless asked.
 */
import { mkdtemp, rm, writeFile, mkdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import type { App, AppOptions } from '../../src/app.ts';
import { startApp } from '../../src/app.ts';
import { loadEnv } from '../../src/config/env.ts';

export const DEMO_DIR = fileURLToPath(new URL('../../src/config/demo/', import.meta.url));

export async function demoCompany(): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(path.join(DEMO_DIR, 'company.riverside-plumbing.json'), 'utf8')) as Record<
    string,
    unknown
  >;
}

export async function demoTemplate(): Promise<Record<string, unknown>> {
  return JSON.parse(
    await readFile(path.join(DEMO_DIR, 'template.plumbing-residential.json'), 'utf8'),
  ) as Record<string, unknown>;
}

export interface TestApp extends App {
  readonly dataDir: string;
  stop(): Promise<void>;
}

export async function startTestApp(
  options: {
    env?: Record<string, string>;
    company?: Record<string, unknown>;
    template?: Record<string, unknown>;
    app?: AppOptions;
  } = {},
): Promise<TestApp> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'switchboard-test-'));
  const company = options.company ?? (await demoCompany());
  const template = options.template ?? (await demoTemplate());
  await mkdir(path.join(dataDir, 'config', 'companies'), { recursive: true });
  await mkdir(path.join(dataDir, 'config', 'templates'), { recursive: true });
  await writeFile(
    path.join(dataDir, 'config', 'companies', `${String(company['id'])}.json`),
    JSON.stringify(company),
  );
  await writeFile(
    path.join(dataDir, 'config', 'templates', `${String(template['id'])}.json`),
    JSON.stringify(template),
  );
  const env = loadEnv({
    PORT: '0',
    HOST: '127.0.0.1',
    DATA_DIR: dataDir,
    LOG_LEVEL: 'silent',
    ...options.env,
  });
  const app = await startApp(env, {
    log: pino({ level: 'silent' }),
    relay: { playbackMsPerChar: 0.5 },
    // Off unless a test asks: its provider requests would shift the fakes' request logs.
    startupWarmup: false,
    // No database unless a test asks: JSON files for configuration, the ledger in memory (PGlite
    // would add seconds to every start). test/server/persistence*.test.ts run the stores.
    db: null,
    ...options.app,
  });
  return {
    ...app,
    dataDir,
    async stop() {
      await app.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
