/**
 * The admin API on the real server and the real stores (PostgreSQL + Redis when DATABASE_URL and
 * REDIS_URL are set, PGlite + in-process otherwise): the bearer token, companies and templates
 * read and written with validation errors that name the field, a write served to the next call,
 * and the call and cost reads.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { TestCall } from '../../src/cli/call.ts';
import { MAX_ADMIN_BODY_BYTES } from '../../src/server/adminApi.ts';
import { demoCompany, demoTemplate, startTestApp } from '../support/testApp.ts';
import type { TestApp } from '../support/testApp.ts';
import { STORES, eventually, openTestStores, startStoreApp } from '../support/storeApp.ts';
import type { TestStores } from '../support/storeApp.ts';

const ADMIN_TOKEN = 'test-admin-token-0123456789';
const DEMO = '+15550100100';
const CALLER = '+15555550123';

let stores: TestStores;
let app: TestApp;

beforeAll(async () => {
  stores = await openTestStores();
  app = await startStoreApp(stores, { env: { ADMIN_TOKEN } });
});

afterAll(async () => {
  await app?.stop();
  await stores?.dispose();
});

function api(path: string, init: RequestInit & { token?: string | null } = {}) {
  const { token = ADMIN_TOKEN, ...rest } = init;
  const headers = new Headers(rest.headers);
  if (token !== null) headers.set('authorization', `Bearer ${token}`);
  if (rest.body !== undefined) headers.set('content-type', 'application/json');
  return fetch(`${app.server.url}/api${path}`, { ...rest, headers });
}

const put = (path: string, body: unknown) => api(path, { method: 'PUT', body: JSON.stringify(body) });

interface ErrorBody {
  error: string;
  problems?: Array<{ field: string; message: string; document?: string }>;
}

async function greetingOf(to: string): Promise<string> {
  const call = new TestCall({ url: app.server.url, to, from: CALLER });
  await call.connect();
  await call.close();
  return call.greeting;
}

describe(`admin API (${STORES})`, () => {
  test('off without ADMIN_TOKEN: every /api URL answers 404', async () => {
    const off = await startTestApp();
    try {
      for (const path of ['/api', '/api/companies', '/api/companies/riverside-plumbing']) {
        const res = await fetch(`${off.server.url}${path}`, {
          headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
        });
        expect(res.status).toBe(404);
      }
    } finally {
      await off.stop();
    }
  });

  test('401 without the token or with a wrong one, and nothing is read or written', async () => {
    const missing = await api('/companies', { token: null });
    expect(missing.status).toBe(401);
    expect(missing.headers.get('www-authenticate')).toBe('Bearer');
    expect(await missing.json()).toEqual({ error: 'unauthorized' });
    expect((await api('/companies', { token: `${ADMIN_TOKEN}x` })).status).toBe(401);
    const company = await demoCompany();
    const write = await api('/companies/riverside-plumbing', {
      token: 'wrong-token-wrong-token',
      method: 'PUT',
      body: JSON.stringify({ ...company, greeting: 'Hacked.' }),
    });
    expect(write.status).toBe(401);
    expect(await greetingOf(DEMO)).toBe(company['greeting']);
  });

  test('reads companies and templates as stored', async () => {
    const list = (await (await api('/companies')).json()) as { companies: Array<{ id: string }> };
    expect(list.companies.map((c) => c.id)).toContain('riverside-plumbing');
    const company = await api('/companies/riverside-plumbing');
    expect(company.status).toBe(200);
    expect(await company.json()).toEqual(await demoCompany());
    const template = await api('/templates/plumbing-residential');
    expect(await template.json()).toEqual(await demoTemplate());
    const missing = await api('/companies/no-such-company');
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as ErrorBody).error).toBe('no company "no-such-company"');
  });

  test('PUT replaces a company; the next call is answered with the new greeting', async () => {
    const company = await demoCompany();
    const greeting = 'Riverside Plumbing, now answering from the database. How can we help?';
    const started = Date.now();
    const res = await put('/companies/riverside-plumbing', { ...company, greeting });
    expect(res.status).toBe(200);
    expect(await greetingOf(DEMO)).toBe(greeting);
    expect(Date.now() - started).toBeLessThan(1000);
    expect(
      ((await (await api('/companies/riverside-plumbing')).json()) as { greeting: string }).greeting,
    ).toBe(greeting);
  });

  test('PUT creates a template and a company; a call to its number is answered at once', async () => {
    const template = { ...(await demoTemplate()), id: 'drains' };
    const created = await put('/templates/drains', template);
    expect(created.status).toBe(201);
    expect(created.headers.get('location')).toBe('/api/templates/drains');
    const company = {
      ...(await demoCompany()),
      id: 'lakeside-drains',
      name: 'Lakeside Drains',
      phoneNumbers: ['+15550177777'],
      templates: ['drains'],
      greeting: 'Lakeside Drains, how can I help?',
    };
    // The id may be left to the URL.
    const { id: _id, ...withoutId } = company;
    expect((await put('/companies/lakeside-drains', withoutId)).status).toBe(201);
    expect(await greetingOf('+15550177777')).toBe('Lakeside Drains, how can I help?');
    const call = new TestCall({ url: app.server.url, to: '+15550177777', from: CALLER });
    await call.connect();
    const turn = await call.say('Hi, my kitchen sink is clogged and the water will not go down');
    expect(turn.tier).not.toBe('fallback');
    await call.close();
  });

  test('422 with every problem naming its field', async () => {
    const company = await demoCompany();
    const res = await put('/companies/riverside-plumbing', {
      ...company,
      greeting: '',
      gatekeeper: { ...(company['gatekeeper'] as object), tier1Threshold: 2 },
    });
    expect(res.status).toBe(422);
    const body = (await res.json()) as ErrorBody;
    expect(body.error).toBe('invalid company');
    expect(body.problems?.map((p) => p.field).sort()).toEqual(['gatekeeper.tier1Threshold', 'greeting']);
    expect(body.problems?.find((p) => p.field === 'greeting')?.message).toMatch(/too small|>=1/i);
    // Nothing was stored.
    expect(
      ((await (await api('/companies/riverside-plumbing')).json()) as { greeting: string }).greeting,
    ).not.toBe('');
  });

  test('422 on the cross-checks: a template that does not exist, a number another company has', async () => {
    const company = {
      ...(await demoCompany()),
      id: 'copycat',
      phoneNumbers: ['+15550100100'],
      templates: ['plumbing-residential', 'no-such-template'],
    };
    const res = await put('/companies/copycat', company);
    expect(res.status).toBe(422);
    const { problems } = (await res.json()) as ErrorBody;
    expect(problems).toEqual(
      expect.arrayContaining([
        { field: 'templates.1', message: 'unknown template "no-such-template"' },
        { field: 'phoneNumbers.0', message: '+15550100100 already belongs to company "riverside-plumbing"' },
      ]),
    );
    expect((await api('/companies/copycat')).status).toBe(404);
  });

  test('400 on malformed JSON, 422 on a body that is not a document or names another id, 413 when too large', async () => {
    const bad = await api('/templates/x', { method: 'PUT', body: '{ nope' });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as ErrorBody).error).toMatch(/^invalid JSON/);
    const array = await put('/templates/x', []);
    expect(array.status).toBe(422);
    expect(((await array.json()) as ErrorBody).problems).toEqual([
      { field: '(root)', message: 'expected a template JSON object' },
    ]);
    const other = await put('/templates/x', { ...(await demoTemplate()), id: 'y' });
    expect(((await other.json()) as ErrorBody).problems).toEqual([
      { field: 'id', message: 'must match the id in the URL ("x")' },
    ]);
    const huge = await api('/templates/x', {
      method: 'PUT',
      body: JSON.stringify({ id: 'x', pad: 'x'.repeat(MAX_ADMIN_BODY_BYTES) }),
    });
    expect(huge.status).toBe(413);
    expect(((await huge.json()) as ErrorBody).error).toMatch(/larger than/);
  });

  test('405 on a method a route does not take, 404 on unknown routes', async () => {
    const res = await api('/companies', { method: 'PUT', body: '{}' });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('GET');
    expect((await api('/nothing-here')).status).toBe(404);
  });

  test("a company's calls, one call with its turns, and cost events by period", async () => {
    const call = new TestCall({ url: app.server.url, to: DEMO, from: CALLER });
    await call.connect();
    await call.say('Hi, my kitchen sink is clogged and the water will not go down');
    await call.say('How much do you charge to come out?');
    await call.close();
    type Calls = { calls: Array<{ id: string; callSid: string; turns: number; endedAt: string | null }> };
    const listed = await eventually(async () => {
      const body = (await (await api('/calls?companyId=riverside-plumbing')).json()) as Calls;
      const mine = body.calls.find((c) => c.callSid === call.callSid);
      return mine?.endedAt && mine.turns === 2 ? mine : undefined;
    });
    const one = (await (await api(`/calls/${listed.id}`)).json()) as {
      call: { id: string; endReason: string };
      turns: Array<{ turn: number; transcript: string; tier: string; reply: string }>;
    };
    expect(one.call.id).toBe(listed.id);
    expect(one.turns.map((t) => t.turn)).toEqual([1, 2]);
    expect(one.turns[1]?.transcript).toBe('How much do you charge to come out?');
    expect((await api('/calls/00000000-0000-0000-0000-000000000000')).status).toBe(404);

    const missing = await api('/calls');
    expect(missing.status).toBe(400);
    expect(((await missing.json()) as ErrorBody).problems).toEqual([
      { field: 'companyId', message: 'required' },
    ]);
    const costs = await api('/cost-events?companyId=riverside-plumbing');
    expect(costs.status).toBe(200);
    expect(await costs.json()).toMatchObject({ events: [], next: null });
    const reversed = await api(
      '/cost-events?companyId=riverside-plumbing&from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z',
    );
    expect(((await reversed.json()) as ErrorBody).problems).toEqual([
      { field: 'from', message: 'must be before "to"' },
    ]);
    const badDate = await api('/cost-events?companyId=riverside-plumbing&from=yesterday');
    expect(((await badDate.json()) as ErrorBody).problems).toEqual([
      { field: 'from', message: 'expected an ISO 8601 date-time' },
    ]);
  });

  test('analytics per company, and the alerts the engine raised', async () => {
    const warmup = await api('/companies/riverside-plumbing/analytics/warmup?days=7');
    expect(warmup.status).toBe(200);
    expect(await warmup.json()).toMatchObject({ days: 7 });
    const tiers = (await (await api('/companies/riverside-plumbing/analytics/tiers?days=1')).json()) as {
      days: number;
      turns: number;
    };
    expect(tiers.days).toBe(1);
    expect(tiers.turns).toBeGreaterThanOrEqual(0);
    const badDays = await api('/companies/riverside-plumbing/analytics/tiers?days=0');
    expect(((await badDays.json()) as ErrorBody).problems).toEqual([
      { field: 'days', message: 'expected a whole number from 1 to 366' },
    ]);
    expect((await api('/companies/nobody/analytics/warmup')).status).toBe(404);

    // A call to a number nobody owns raises COMPANY_NOT_FOUND, stored behind the call.
    const res = await fetch(`${app.server.url}/twilio/voice`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ To: '+15550199999', From: CALLER, CallSid: 'CA0' }).toString(),
    });
    expect(await res.text()).toContain('not in service');
    const alerts = await eventually(async () => {
      const body = (await (await api('/alerts?limit=50')).json()) as {
        alerts: Array<{ code: string; severity: string }>;
        source: string;
      };
      return body.alerts.some((a) => a.code.endsWith('COMPANY_NOT_FOUND')) ? body : undefined;
    });
    expect(alerts.source).toBe('database');
  });
});
