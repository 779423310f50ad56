/**
 * `GET /metrics` and `GET /status` on the real server, and the LLM circuit breaker end to end: the
 * real SDK against a failing fake provider until the circuit opens and turns fall back at once.
 */
import { afterEach, describe, expect, test } from 'vitest';
import { TestCall } from '../../src/cli/call.ts';
import type { StatusDocument } from '../../src/observability/status.ts';
import { createLocalEmbedder } from '../../src/routing/localEmbedder.ts';
import { startFakeOpenAiServer } from '../fakes/fakeOpenAiServer.ts';
import type { FakeServer } from '../fakes/fakeOpenAiServer.ts';
import { demoCompany, startTestApp } from '../support/testApp.ts';
import type { TestApp } from '../support/testApp.ts';

const DEMO = '+15550100100';
const CALLER = '+15555550123';
const ADMIN_TOKEN = 'test-admin-token-0123456789';

let app: TestApp | null = null;
let fake: FakeServer | null = null;

afterEach(async () => {
  await app?.stop();
  await fake?.close();
  app = null;
  fake = null;
});

function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

async function scrape(url: string): Promise<string> {
  return (await fetch(`${url}/metrics`)).text();
}

async function status(url: string, token?: string) {
  return fetch(`${url}/status`, token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } });
}

describe('GET /metrics', () => {
  test('Prometheus text, no token needed, turns and live calls counted, no caller data', async () => {
    app = await startTestApp({ env: { ADMIN_TOKEN } });
    const call = new TestCall({ url: app.server.url, to: DEMO, from: CALLER });
    await call.connect();
    await call.say('Hi, my kitchen sink is clogged and the water will not go down');
    await call.say('How much do you charge to come out?');

    const res = await fetch(`${app.server.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    const text = await res.text();
    expect(sample(text, 'switchboard_live_calls')).toBe(1);
    expect(sample(text, 'switchboard_ready')).toBe(1);
    const answered = ['1', '2', '3', 'fallback']
      .map((tier) => sample(text, `switchboard_turns_total{tier="${tier}"}`) ?? 0)
      .reduce((a, b) => a + b, 0);
    expect(answered).toBe(2);
    expect(text).toMatch(/^switchboard_turn_latency_ms_count\{tier="\w+",turn="first"\} 1$/m);
    expect(text).toMatch(/^switchboard_turn_latency_ms_count\{tier="\w+",turn="later"\} 1$/m);
    expect(sample(text, 'switchboard_turn_stage_duration_ms_count{stage="understanding"}')).toBe(2);
    expect(text).toMatch(/^nodejs_eventloop_lag_p99_seconds /m);
    expect(text).not.toMatch(/clogged|charge|5555550123|riverside/i);

    await call.close();
    await expect.poll(async () => sample(await scrape(app!.server.url), 'switchboard_live_calls')).toBe(0);
  });
});

describe('GET /status', () => {
  test('is off (404) without an ADMIN_TOKEN', async () => {
    app = await startTestApp();
    expect((await status(app.server.url, 'anything-at-all-0123')).status).toBe(404);
  });

  test('wants the admin bearer token: 401 with a challenge without it or with a wrong one', async () => {
    app = await startTestApp({ env: { ADMIN_TOKEN } });
    const missing = await status(app.server.url);
    expect(missing.status).toBe(401);
    expect(missing.headers.get('www-authenticate')).toBe('Bearer');
    expect((await status(app.server.url, `${ADMIN_TOKEN}x`)).status).toBe(401);
  });

  test('live calls, budgets per company, first-turn vs later-turn latency, startup warmup', async () => {
    app = await startTestApp({ env: { ADMIN_TOKEN } });
    const call = new TestCall({ url: app.server.url, to: DEMO, from: CALLER });
    await call.connect();
    await call.say('Hi, my kitchen sink is clogged and the water will not go down');
    await call.say('How much do you charge to come out?');
    await call.say('Do you do water heaters?');

    const res = await status(app.server.url, ADMIN_TOKEN);
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const doc = (await res.json()) as StatusDocument;
    expect(doc).toMatchObject({
      ready: true,
      liveCalls: 1,
      providers: [],
      budgets: [
        {
          companyId: 'riverside-plumbing',
          tier3Monthly: { spentUsd: 0, limitUsd: 100 },
          warmupDaily: { spentUsd: 0, limitUsd: 3 },
        },
      ],
      turnLatency: { firstTurn: { n: 1 }, laterTurns: { n: 2 } },
      startupWarmup: { status: 'off' },
    });
    expect(doc.turnLatency.firstTurn.p50Ms).toBeGreaterThan(0);
    expect(doc.turnLatency.laterTurns.p95Ms).toBeGreaterThan(0);
    expect(doc.turnLatency.processFirstTurn?.latencyMs).toBe(doc.turnLatency.firstTurn.p50Ms);
    await call.close();
  });
});

describe('LLM circuit breaker', () => {
  test('opens after consecutive failures: later turns fall back without a request, and it shows', async () => {
    fake = await startFakeOpenAiServer();
    fake.script({ type: 'error', status: 500 }, { type: 'error', status: 500 });
    const company = await demoCompany();
    const c = company as {
      understanding?: { mode: string };
      gatekeeper: { llm: { providers: string[] } };
      warmup: { enabled: boolean };
      fallbackResponses: { escalateAfter: number };
    };
    c.understanding = { mode: 'rules' };
    c.fallbackResponses.escalateAfter = 10;
    c.gatekeeper.llm.providers = ['openai:gpt-4o-mini'];
    c.warmup.enabled = false;
    app = await startTestApp({
      company,
      env: {
        OPENAI_API_KEY: 'sk-test',
        OPENAI_BASE_URL: fake.baseURL,
        ADMIN_TOKEN,
        LLM_CIRCUIT_FAILURES: '2',
        LLM_CIRCUIT_COOLDOWN_MS: '60000',
      },
      app: { embedder: createLocalEmbedder() },
    });
    const call = new TestCall({ url: app.server.url, to: DEMO, from: CALLER });
    await call.connect();

    const first = await call.say('Can you tell me something funny about plumbers?');
    const second = await call.say('What is the capital of France, by the way?');
    expect([first.tier, second.tier]).toEqual(['fallback', 'fallback']);
    expect(fake.requests).toHaveLength(2);

    const third = await call.say('Can you recommend a good novel to read on vacation?');
    expect(third.tier).toBe('fallback');
    expect(fake.requests).toHaveLength(2);
    // The refused request cost nothing, and says so exactly rather than as an estimate.
    const refused = app.ledger
      .recent()
      .filter((e) => e.action === 'failed')
      .at(-1);
    expect(refused).toMatchObject({ inputTokens: 0, outputTokens: 0, costUsd: 0, estimated: false });

    const doc = (await (await status(app.server.url, ADMIN_TOKEN)).json()) as StatusDocument;
    expect(doc.providers).toEqual([
      expect.objectContaining({
        provider: 'openai',
        state: 'open',
        consecutiveFailures: 2,
        lastErrorCode: 'ERR_LLM_HTTP_500',
        recentErrors: 2,
        opened: 1,
      }),
    ]);
    const text = await scrape(app.server.url);
    expect(sample(text, 'switchboard_circuit_state{provider="openai"}')).toBe(2);
    expect(sample(text, 'switchboard_circuit_opens_total{provider="openai"}')).toBe(1);
    expect(
      sample(text, 'switchboard_provider_errors_total{provider="openai",kind="llm",code="ERR_LLM_HTTP_500"}'),
    ).toBe(2);
    expect(sample(text, 'switchboard_fallbacks_total{kind="technicalIssue"}')).toBe(3);
    await call.close();
  });
});
