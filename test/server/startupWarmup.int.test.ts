/**
 * The startup warmup end to end: the server listens before the engine is ready, `/health` says so,
 * the webhook answers 503, and once one synthetic turn per company and the providers' connections
 * are done the engine is ready. What the warmup did is asserted on its report and on the fake
 * provider's request log — never on timings (the latency comparison lives in `npm run bench`).
 */
import { afterEach, describe, expect, test } from 'vitest';
import { TestCall } from '../../src/cli/call.ts';
import type { Embedder } from '../../src/providers/embeddings/embedder.ts';
import { createLocalEmbedder } from '../../src/routing/localEmbedder.ts';
import type { LocalEmbedder } from '../../src/routing/localEmbedder.ts';
import { startFakeOpenAiServer } from '../fakes/fakeOpenAiServer.ts';
import type { FakeServer } from '../fakes/fakeOpenAiServer.ts';
import { demoCompany, startTestApp } from '../support/testApp.ts';
import type { TestApp } from '../support/testApp.ts';

const DEMO = '+15550100100';

let app: TestApp | null = null;
let fake: FakeServer | null = null;

afterEach(async () => {
  await app?.stop();
  await fake?.close();
  app = null;
  fake = null;
});

/** The local embedder, whose requests can be held once armed (so the warmup stays "running"). */
function gatedEmbedder() {
  let armed = false;
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  const texts: string[] = [];
  const gate = (inner: LocalEmbedder): LocalEmbedder => ({
    id: inner.id,
    dimensions: inner.dimensions,
    embedSync: (text) => inner.embedSync(text),
    async embed(batch, signal) {
      if (armed) {
        texts.push(...batch);
        await released;
      }
      return inner.embed(batch, signal);
    },
    fit: (corpus) => gate(inner.fit(corpus)),
  });
  return {
    embedder: gate(createLocalEmbedder()) as Embedder,
    arm: () => (armed = true),
    release: () => release(),
    /** What was embedded once armed. */
    texts,
  };
}

async function companyOnOpenAi(): Promise<Record<string, unknown>> {
  const doc = await demoCompany();
  // Understanding on "auto": a real call would ask the LLM; the warmup must not.
  (doc as { gatekeeper: { llm: { providers: string[] } } }).gatekeeper.llm.providers = ['openai:gpt-4o-mini'];
  return doc;
}

async function post(url: string, form: Record<string, string>) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form),
  });
  return { status: res.status, retryAfter: res.headers.get('retry-after'), body: await res.text() };
}

interface Health {
  live: boolean;
  ready: boolean;
  warmup: {
    status: string;
    durationMs: number | null;
    ok: boolean | null;
    companies: Array<{
      companyId: string;
      ok: boolean;
      embedded: boolean;
      answeredBy: unknown;
      error: unknown;
    }>;
    providers: Array<{ provider: string; ok: boolean; error: string | null }>;
  };
}

async function health(url: string, path = '/health'): Promise<{ status: number; body: Health }> {
  const res = await fetch(`${url}${path}`);
  return { status: res.status, body: (await res.json()) as Health };
}

describe('startup warmup', () => {
  test('live but not ready while it runs (webhook 503), then ready with its report', async () => {
    fake = await startFakeOpenAiServer();
    const gated = gatedEmbedder();
    let listening!: (url: string) => void;
    const url = new Promise<string>((resolve) => (listening = resolve));
    const starting = startTestApp({
      company: await companyOnOpenAi(),
      env: { OPENAI_API_KEY: 'sk-test', OPENAI_BASE_URL: fake.baseURL },
      app: {
        startupWarmup: true,
        embedder: gated.embedder,
        onListening: (server) => {
          gated.arm();
          listening(server.url);
        },
      },
    });
    try {
      const base = await url;

      const during = await health(base);
      expect(during.status).toBe(200);
      expect(during.body).toMatchObject({ live: true, ready: false, warmup: { status: 'running' } });
      expect((await health(base, '/health/ready')).status).toBe(503);
      const refused = await post(`${base}/twilio/voice`, { To: DEMO, CallSid: 'CA-early' });
      expect(refused.status).toBe(503);
      expect(refused.retryAfter).toBe('1');
      // The synthetic turn is waiting on Tier 2's embedder: the company's greeting was sent to it.
      await expect.poll(() => gated.texts.length).toBeGreaterThan(0);
    } finally {
      gated.release();
      app = await starting;
    }

    const after = await health(app.server.url);
    expect(after.body).toMatchObject({
      live: true,
      ready: true,
      warmup: {
        status: 'done',
        ok: true,
        companies: [{ companyId: 'riverside-plumbing', ok: true, embedded: true, error: null }],
        providers: [{ provider: 'openai', ok: true, error: null }],
      },
    });
    expect(after.body.warmup.durationMs).toBeGreaterThan(0);
    expect(after.body.warmup.companies[0]?.answeredBy).not.toBeNull();
    expect((await health(app.server.url, '/health/ready')).status).toBe(200);

    // No tokens spent: one free model listing, no chat completion, no cost event.
    expect(fake.requests.map((r) => `${r.method} ${r.path}`)).toEqual(['GET /v1/models']);
    expect(app.ledger.recent()).toEqual([]);

    // The first real call is served normally.
    const call = new TestCall({ url: app.server.url, to: DEMO, from: '+15555550123' });
    await call.connect();
    const turn = await call.say('Hi, my kitchen sink is clogged and the water will not go down');
    expect(turn.scenarioId).toBe('repair-clogged-drain');
    await call.close();
  });

  test('the first real LLM request reuses the connection the warmup opened; without it, a new one', async () => {
    const firstTurnPorts = async (startupWarmup: boolean) => {
      const server = await startFakeOpenAiServer();
      const started = await startTestApp({
        company: await companyOnOpenAi(),
        env: { OPENAI_API_KEY: 'sk-test', OPENAI_BASE_URL: server.baseURL },
        app: { startupWarmup, embedder: createLocalEmbedder() },
      });
      try {
        const warmupRequests = server.requests.length;
        const call = new TestCall({ url: started.server.url, to: DEMO, from: '+15555550123' });
        await call.connect();
        await call.say('Hi, my kitchen sink is clogged');
        await call.close();
        const before = server.requests.slice(0, warmupRequests);
        const turn = server.requests.slice(warmupRequests);
        return { before, turn };
      } finally {
        await started.stop();
        await server.close();
      }
    };

    const warm = await firstTurnPorts(true);
    expect(warm.before.map((r) => r.path)).toEqual(['/v1/models']);
    // Capture and detect ask the LLM side by side: one of them rides the warmup's connection.
    expect(warm.turn.map((r) => r.path)).toContain('/v1/chat/completions');
    expect(warm.turn.map((r) => r.clientPort)).toContain(warm.before[0]!.clientPort);

    const cold = await firstTurnPorts(false);
    expect(cold.before).toEqual([]);
    expect(cold.turn.map((r) => r.path)).toContain('/v1/chat/completions');
  });

  test('a provider that fails its connection is recorded, and the engine still becomes ready', async () => {
    fake = await startFakeOpenAiServer();
    fake.script({ type: 'error', status: 401, message: 'Incorrect API key provided.' });
    app = await startTestApp({
      company: await companyOnOpenAi(),
      env: { OPENAI_API_KEY: 'sk-wrong', OPENAI_BASE_URL: fake.baseURL },
      app: { startupWarmup: true, embedder: createLocalEmbedder() },
    });

    const { body } = await health(app.server.url);
    expect(body).toMatchObject({
      ready: true,
      warmup: {
        status: 'done',
        ok: false,
        companies: [{ ok: true }],
        providers: [{ provider: 'openai', ok: false, error: 'ERR_LLM_HTTP_401' }],
      },
    });
    // A failed preconnect says nothing about calls: the circuit stays closed.
    expect(app.warmup.report().providers).toHaveLength(1);
    const metrics = await (await fetch(`${app.server.url}/metrics`)).text();
    expect(metrics).toMatch(/^switchboard_circuit_state\{provider="openai"\} 0$/m);
  });

  test('off: ready at once, nothing sent to any provider', async () => {
    fake = await startFakeOpenAiServer();
    app = await startTestApp({
      company: await companyOnOpenAi(),
      env: { OPENAI_API_KEY: 'sk-test', OPENAI_BASE_URL: fake.baseURL },
      app: { embedder: createLocalEmbedder(), startupWarmup: false },
    });

    const { body } = await health(app.server.url);
    expect(body).toMatchObject({ ready: true, warmup: { status: 'off', companies: [], providers: [] } });
    expect(fake.requests).toEqual([]);
  });
});
