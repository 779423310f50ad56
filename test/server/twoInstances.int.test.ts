/**
 * Two engines acting as one: both on one PostgreSQL schema and one Redis (key prefix of this test's
 * own). A write through one engine's admin API, or through `npm run company -- import` while both
 * run, is served by the other within a second: its config cache is invalidated over Redis pub/sub
 * and the company compiled again.
 *
 * Needs DATABASE_URL and REDIS_URL (CI sets both). Without them it is skipped: PGlite serves one
 * process and the in-process bus one engine, so there is nothing to share.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { TestCall } from '../../src/cli/call.ts';
import { TEST_DATABASE_URL, urlWithSchema } from '../store/dbForTest.ts';
import { demoCompany, demoTemplate } from '../support/testApp.ts';
import type { TestApp } from '../support/testApp.ts';
import { TEST_REDIS_URL, openTestStores, startStoreApp } from '../support/storeApp.ts';
import type { TestStores } from '../support/storeApp.ts';

const ADMIN_TOKEN = 'test-admin-token-0123456789';
const DEMO = '+15550100100';
const CALLER = '+15555550123';
const shared = TEST_DATABASE_URL !== undefined && TEST_REDIS_URL !== undefined;

let stores: TestStores;
let a: TestApp;
let b: TestApp;

beforeAll(async () => {
  if (!shared) return;
  stores = await openTestStores();
  a = await startStoreApp(stores, { env: { ADMIN_TOKEN } });
  b = await startStoreApp(stores, { env: { ADMIN_TOKEN } });
});

afterAll(async () => {
  if (!shared) return;
  await a?.stop();
  await b?.stop();
  await stores?.dispose();
});

async function call(app: TestApp, utterance?: string) {
  const c = new TestCall({ url: app.server.url, to: DEMO, from: CALLER });
  await c.connect();
  const turn = utterance === undefined ? undefined : await c.say(utterance);
  await c.close();
  return { greeting: c.greeting, turn };
}

function put(app: TestApp, what: string, body: unknown) {
  return fetch(`${app.server.url}/api/${what}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

/** Calls `app` until `check` holds; resolves to how long that took after `since`. */
async function servedWithin(since: number, check: () => Promise<boolean>): Promise<number> {
  while (!(await check())) {
    if (Date.now() - since > 3000) throw new Error('not served within 3 s');
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return Date.now() - since;
}

describe.skipIf(!shared)(
  shared
    ? 'two engines on one PostgreSQL and one Redis'
    : 'two engines on one PostgreSQL and one Redis — skipped: needs DATABASE_URL and REDIS_URL (PGlite serves one process, the in-process bus one engine)',
  () => {
    test("a PUT on engine A's admin API: engine B answers with the new greeting within a second", async () => {
      const company = await demoCompany();
      // B has the company cached (in process and in Redis) before the write.
      expect((await call(b)).greeting).toBe(company['greeting']);
      const greeting = 'Riverside Plumbing, written on A and served by B.';
      const started = Date.now();
      expect((await put(a, 'companies/riverside-plumbing', { ...company, greeting })).status).toBe(200);
      const ms = await servedWithin(started, async () => (await call(b)).greeting === greeting);
      expect(ms).toBeLessThan(1000);
    });

    test('a template PUT on A: B answers the scenario with the new reply within a second', async () => {
      const question = 'How much do you charge to come out?';
      const before = await call(b, question);
      const scenarioId = before.turn?.scenarioId;
      expect(scenarioId).toBeTruthy();
      const template = (await demoTemplate()) as {
        categories: Array<{ scenarios: Array<{ id: string; replies: string[] }> }>;
      };
      const reply = 'Our service call is $59 this month, credited toward the repair.';
      for (const c of template.categories)
        for (const s of c.scenarios) if (s.id === scenarioId) s.replies = [reply];
      const started = Date.now();
      expect((await put(a, 'templates/plumbing-residential', template)).status).toBe(200);
      const ms = await servedWithin(started, async () => (await call(b, question)).turn?.reply === reply);
      expect(ms).toBeLessThan(1000);
    });

    test('npm run company -- import while both run: both serve the import within a second', async () => {
      const dir = await mkdtemp(path.join(tmpdir(), 'switchboard-import-'));
      try {
        const greeting = 'Riverside Plumbing, imported from the command line.';
        const file = path.join(dir, 'company.json');
        await writeFile(file, JSON.stringify({ ...(await demoCompany()), greeting }));
        const started = Date.now();
        await promisify(execFile)(process.execPath, [path.resolve('src/cli/company.ts'), 'import', file], {
          env: {
            ...process.env,
            DATA_DIR: dir,
            DATABASE_URL: urlWithSchema(stores.testDb.schema!),
            ...stores.env,
          },
        });
        const imported = Date.now();
        for (const app of [a, b]) {
          const ms = await servedWithin(imported, async () => (await call(app)).greeting === greeting);
          expect(ms).toBeLessThan(1000);
        }
        expect(imported - started).toBeLessThan(15_000);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  },
);
