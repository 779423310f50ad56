/**
 * The persistence layer under a real engine, on the stores the environment gives (PostgreSQL +
 * Redis when DATABASE_URL and REDIS_URL are set, PGlite + in-process otherwise): call records and
 * cost events written behind the call, budgets rebuilt from the ledger and enforced with an alert,
 * and what happens when Redis or the database is not there.
 */
import net from 'node:net';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, test } from 'vitest';
import { startApp } from '../../src/app.ts';
import type { App } from '../../src/app.ts';
import { TestCall } from '../../src/cli/call.ts';
import { loadEnv } from '../../src/config/env.ts';
import { newCostEvent } from '../../src/cost/costEvent.ts';
import type { LedgerWriter } from '../../src/cost/ledgerWriter.ts';
import { createLocalEmbedder } from '../../src/routing/localEmbedder.ts';
import { getCall, listCalls } from '../../src/store/callRecords.ts';
import { insertCostEvents } from '../../src/store/sql/insertCostEvents.ts';
import { PGLITE_LOCK_FILE } from '../../src/store/sql/pgliteLock.ts';
import { startFakeOpenAiServer } from '../fakes/fakeOpenAiServer.ts';
import type { FakeServer } from '../fakes/fakeOpenAiServer.ts';
import { openOutageDb } from '../store/outageDb.ts';
import type { OutageDb } from '../store/outageDb.ts';
import { demoCompany, demoTemplate } from '../support/testApp.ts';
import type { TestApp } from '../support/testApp.ts';
import { STORES, eventually, openTestStores, recordingAlerts, startStoreApp } from '../support/storeApp.ts';
import type { TestStores } from '../support/storeApp.ts';

const DEMO = '+15550100100';
const CALLER = '+15555550123';
const OFF_SCRIPT = 'Can you tell me something funny about plumbers?';
const ADMIN_TOKEN = 'test-admin-token-0123456789';

let stores: TestStores | null = null;
let app: TestApp | null = null;
let fake: FakeServer | null = null;
let outage: OutageDb | null = null;

afterEach(async () => {
  await app?.stop();
  await fake?.close();
  await outage?.dispose();
  await stores?.dispose();
  app = fake = outage = stores = null;
});

/** The parts of the demo company these tests change. */
interface CompanyDoc {
  understanding?: { mode: string };
  gatekeeper: { monthlyBudgetUsd: number; llm: { providers: string[] } };
  warmup: { enabled: boolean };
}

/** The demo company answering off-script questions with OpenAI (the fake), rules for understanding. */
async function llmCompany(patch: (c: CompanyDoc) => void = () => {}): Promise<Record<string, unknown>> {
  const doc = await demoCompany();
  const c = doc as unknown as CompanyDoc;
  c.understanding = { mode: 'rules' };
  c.gatekeeper.llm.providers = ['openai:gpt-4o-mini'];
  c.warmup.enabled = false;
  patch(c);
  return doc;
}

async function callAndSay(url: string, ...utterances: string[]) {
  const call = new TestCall({ url, to: DEMO, from: CALLER });
  await call.connect();
  const turns = [];
  for (const u of utterances) turns.push(await call.say(u));
  await call.close();
  return { call, turns };
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe(`persistence (${STORES})`, () => {
  test("a call's turns and cost events land in the database, written behind the call", async () => {
    stores = await openTestStores();
    fake = await startFakeOpenAiServer();
    fake.script({ type: 'text', text: 'A plumber never leaks a secret. How can I help with your pipes?' });
    app = await startStoreApp(stores, {
      company: await llmCompany(),
      env: { OPENAI_API_KEY: 'sk-test', OPENAI_BASE_URL: fake.baseURL },
      app: { embedder: createLocalEmbedder() },
    });
    const { call, turns } = await callAndSay(
      app.server.url,
      OFF_SCRIPT,
      'How much do you charge to come out?',
    );
    expect(turns[0]?.tier).toBe(3);
    const db = stores.testDb.db;
    const stored = await eventually(async () => {
      const [summary] = await listCalls(db, { companyId: 'riverside-plumbing' });
      return summary?.endedAt !== null && summary?.turns === 2 ? summary : undefined;
    });
    expect(stored).toMatchObject({ callSid: call.callSid, endReason: expect.any(String) as string });
    const full = await getCall(db, stored.id);
    expect(full?.turns.map((t) => [t.turn, t.tier, t.transcript])).toEqual([
      [1, '3', OFF_SCRIPT],
      [
        2,
        turns[1]?.tier === 'fallback' ? 'fallback' : String(turns[1]?.tier),
        'How much do you charge to come out?',
      ],
    ]);
    const events = await eventually(async () => {
      const rows = await db.query<{ purpose: string; action: string; cost_usd: string | null; turn: number }>(
        'SELECT purpose, action, cost_usd::text AS cost_usd, turn FROM cost_events WHERE call_id = $1',
        [stored.id],
      );
      return rows.length > 0 ? rows : undefined;
    });
    expect(events).toEqual([
      { purpose: 'tier3', action: 'completed', cost_usd: expect.any(String) as string, turn: 1 },
    ]);
    expect(Number(events[0]!.cost_usd)).toBeCloseTo(turns[0]!.costUsd!, 9);
    expect(stored.costUsd).toBeCloseTo(turns[0]!.costUsd!, 9);
    expect((app.ledger as LedgerWriter).stats()).toMatchObject({ inserted: 1, spooled: 0 });
  });

  test('a budget spent in the ledger before start: the LLM is blocked, a fallback line, a BUDGET_EXCEEDED alert', async () => {
    stores = await openTestStores();
    // Spend recorded by an earlier run (or another instance): the counters start from it.
    await insertCostEvents(stores.testDb.db, [
      newCostEvent({
        companyId: 'riverside-plumbing',
        purpose: 'tier3',
        tier: 3,
        action: 'completed',
        provider: 'openai',
        model: 'gpt-4o-mini',
        costUsd: 0.75,
      }),
      newCostEvent({
        companyId: 'riverside-plumbing',
        purpose: 'warmup',
        tier: 3,
        action: 'cancelled',
        provider: 'openai',
        model: 'gpt-4o-mini',
        costUsd: 0.25,
      }),
    ]);
    fake = await startFakeOpenAiServer();
    const alerts = recordingAlerts();
    app = await startStoreApp(stores, {
      company: await llmCompany((c) => (c.gatekeeper.monthlyBudgetUsd = 1)),
      env: { OPENAI_API_KEY: 'sk-test', OPENAI_BASE_URL: fake.baseURL, ADMIN_TOKEN },
      app: { embedder: createLocalEmbedder(), alerts },
    });
    const { turns } = await callAndSay(app.server.url, OFF_SCRIPT);
    expect(turns[0]?.tier).toBe('fallback');
    expect(fake.requests).toHaveLength(0);
    expect(alerts.raised).toContainEqual({
      code: 'BUDGET_EXCEEDED',
      companyId: 'riverside-plumbing',
      message: expect.stringContaining('monthly Tier 3 budget') as string,
      details: { budget: 'tier3-monthly', purpose: 'tier3', limitUsd: 1 },
    });
    // /status shows the seeded spend.
    const status = (await (
      await fetch(`${app.server.url}/status`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
    ).json()) as { budgets: Array<{ tier3Monthly: { spentUsd: number } }> };
    expect(status.budgets[0]?.tier3Monthly.spentUsd).toBe(1);
  });

  test('Redis unreachable at start: calls are answered, an alert is raised, configuration comes from the database', async () => {
    stores = await openTestStores();
    const alerts = recordingAlerts();
    app = await startStoreApp(stores, {
      env: { REDIS_URL: `redis://127.0.0.1:${await closedPort()}`, ADMIN_TOKEN },
      app: { alerts },
    });
    expect(alerts.raised.map((a) => a.code)).toContain('REDIS_DEGRADED');
    const health = (await (await fetch(`${app.server.url}/health`)).json()) as { stores: unknown };
    expect(health.stores).toMatchObject({ redis: 'redis', redisDegraded: true });
    const { turns } = await callAndSay(
      app.server.url,
      'Hi, my kitchen sink is clogged and the water will not go down',
    );
    expect(turns[0]?.reply).toBeTruthy();
    // A write is not broadcast (no Redis), but this instance's cache misses go to the database.
    const greeting = 'Riverside Plumbing, still answering without Redis.';
    const res = await fetch(`${app.server.url}/api/companies/riverside-plumbing`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ ...(await demoCompany()), greeting }),
    });
    expect(res.status).toBe(200);
    const { call } = await callAndSay(app.server.url);
    expect(call.greeting).toBe(greeting);
  });

  test('database unreachable: cached configuration keeps serving, cost events spool, and land once it is back', async () => {
    stores = await openTestStores();
    outage = await openOutageDb(stores.testDb);
    fake = await startFakeOpenAiServer();
    fake.script({ type: 'text', text: 'We can look into that for you.' });
    app = await startStoreApp(stores, {
      company: await llmCompany(),
      env: { OPENAI_API_KEY: 'sk-test', OPENAI_BASE_URL: fake.baseURL },
      app: { embedder: createLocalEmbedder(), db: outage.db },
    });
    const first = await callAndSay(app.server.url, OFF_SCRIPT);
    outage.cut();
    const second = await callAndSay(app.server.url, OFF_SCRIPT);
    expect(second.call.greeting).toBe(first.call.greeting);
    expect(second.turns[0]?.tier).toBe(3);
    const writer = app.ledger as LedgerWriter;
    await writer.flush();
    expect(writer.stats().spooled).toBeGreaterThan(0);
    outage.restore();
    await writer.flush();
    await app.recorder?.flush();
    const rows = await stores.testDb.db.query<{ call_sid: string }>(
      `SELECT c.call_sid FROM cost_events e JOIN calls c ON c.id = e.call_id WHERE e.action = 'completed'`,
    );
    expect(rows.map((r) => r.call_sid).sort()).toEqual([first.call.callSid, second.call.callSid].sort());
  });
});

describe('the embedded default (PGlite under DATA_DIR)', () => {
  let dataDir: string | null = null;
  const running: App[] = [];
  afterEach(async () => {
    for (const a of running.splice(0)) await a.close();
    if (dataDir !== null) await rm(dataDir, { recursive: true, force: true });
    dataDir = null;
  });

  test('first start imports the JSON files; one process at a time; the lock goes with the engine', async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'switchboard-embedded-'));
    const company = { ...(await demoCompany()), greeting: 'Imported from the files.' };
    const { mkdir, writeFile } = await import('node:fs/promises');
    await mkdir(path.join(dataDir, 'config', 'companies'), { recursive: true });
    await mkdir(path.join(dataDir, 'config', 'templates'), { recursive: true });
    await writeFile(
      path.join(dataDir, 'config', 'companies', 'riverside-plumbing.json'),
      JSON.stringify(company),
    );
    await writeFile(
      path.join(dataDir, 'config', 'templates', 'plumbing-residential.json'),
      JSON.stringify(await demoTemplate()),
    );
    // The environment a user has: no DATABASE_URL, no REDIS_URL.
    const env = loadEnv({ PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'silent' });
    const options = {
      log: pino({ level: 'silent' }),
      startupWarmup: false,
      relay: { playbackMsPerChar: 0.5 },
    };
    const first = await startApp(env, options);
    running.push(first);
    expect(first.db?.kind).toBe('pglite');
    const lock = JSON.parse(await readFile(path.join(dataDir, 'pglite', PGLITE_LOCK_FILE), 'utf8')) as {
      pid: number;
      holder: string;
    };
    expect(lock).toMatchObject({ pid: process.pid, holder: 'engine' });
    const { call } = await callAndSay(first.server.url);
    expect(call.greeting).toBe('Imported from the files.');

    await expect(startApp(env, options)).rejects.toMatchObject({ code: 'ERR_DB_LOCKED' });

    await first.close();
    running.splice(0);
    await expect(readFile(path.join(dataDir, 'pglite', PGLITE_LOCK_FILE))).rejects.toMatchObject({
      code: 'ENOENT',
    });
    // Restarted: the database has the configuration (the files are not imported twice).
    const again = await startApp(env, options);
    running.push(again);
    expect((await again.config.documents('company')).map((d) => d.id)).toEqual(['riverside-plumbing']);
  });
});
