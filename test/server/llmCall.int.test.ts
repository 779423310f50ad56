/**
 * Tier 3 and the warmup end to end: the real server and the real SDKs against fake provider
 * servers that speak the vendors' wire protocols and record when the client went away.
 */
import { afterEach, describe, expect, test } from 'vitest';
import { TestCall } from '../../src/cli/call.ts';
import type { Embedder } from '../../src/providers/embeddings/embedder.ts';
import { createLocalEmbedder } from '../../src/routing/localEmbedder.ts';
import { startFakeAnthropicServer } from '../fakes/fakeAnthropicServer.ts';
import { startFakeOpenAiServer } from '../fakes/fakeOpenAiServer.ts';
import type { FakeServer } from '../fakes/fakeOpenAiServer.ts';
import { demoCompany, startTestApp } from '../support/testApp.ts';
import type { TestApp } from '../support/testApp.ts';

const DEMO = '+15550100100';
const OFF_SCRIPT = 'Can you tell me something funny about plumbers?';
const TIER2_ONLY = 'How much do you charge to come out?';

let app: TestApp | null = null;
let fake: FakeServer | null = null;

afterEach(async () => {
  await app?.stop();
  await fake?.close();
  app = null;
  fake = null;
});

/** The parts of the demo company these tests change. */
interface CompanyDoc {
  understanding?: { mode: string };
  gatekeeper: { monthlyBudgetUsd: number; llm: { providers: string[]; timeoutMs: number } };
  warmup: { enabled: boolean; confidenceThreshold: number };
}

async function companyWith(patch: (c: CompanyDoc) => void): Promise<Record<string, unknown>> {
  const doc = await demoCompany();
  const c = doc as unknown as CompanyDoc;
  c.understanding = { mode: 'rules' };
  c.gatekeeper.llm.providers = ['openai:gpt-4o-mini'];
  patch(c);
  return doc;
}

/** The local embedder with an embeddings provider's latency, so Tier 2 takes as long as it would. */
function slowEmbedder(delayMs: number): Embedder {
  const local = createLocalEmbedder();
  return {
    id: local.id,
    dimensions: local.dimensions,
    embed: async (texts, signal) => {
      await new Promise((resolve) => setTimeout(resolve, delayMs));
      return local.embed(texts, signal);
    },
  };
}

async function openAiApp(
  company: Record<string, unknown>,
  server: FakeServer,
  tier2DelayMs = 0,
): Promise<TestApp> {
  return startTestApp({
    company,
    env: { OPENAI_API_KEY: 'sk-test', OPENAI_BASE_URL: server.baseURL },
    app: { embedder: tier2DelayMs > 0 ? slowEmbedder(tier2DelayMs) : createLocalEmbedder() },
  });
}

async function callOnce(utterance: string) {
  const call = new TestCall({ url: app!.server.url, to: DEMO, from: '+15555550123' });
  await call.connect();
  const turn = await call.say(utterance);
  return { call, turn };
}

describe('warmup', () => {
  test('Tier 2 misses: Tier 3 adopts the warmup — exactly one LLM request, its answer, its cost', async () => {
    fake = await startFakeOpenAiServer({ firstTokenDelayMs: 30 });
    fake.script({
      type: 'text',
      text: 'Ha! A good plumber never leaks a secret. How can I help with your plumbing?',
    });
    app = await openAiApp(await companyWith(() => {}), fake);
    const { call, turn } = await callOnce(OFF_SCRIPT);

    expect(turn.tier).toBe(3);
    expect(turn.warmup).toBe('used');
    expect(turn.reply).toBe('Ha! A good plumber never leaks a secret. How can I help with your plumbing?');
    expect(turn.costUsd).toBeGreaterThan(0);
    expect(fake.requests).toHaveLength(1);
    expect((await fake.settled(0)).clientWentAway).toBe('no');
    const actions = app.ledger.recent().map((e) => `${e.purpose}:${e.action}`);
    expect(actions).toEqual(['warmup:triggered', 'warmup:completed', 'warmup:used']);
    const used = app.ledger.recent().find((e) => e.action === 'used');
    expect(used?.timeSavedMs).toBeGreaterThanOrEqual(0);
    await call.close();
  });

  test('Tier 2 answers: the warmup request is aborted on the wire and its possible cost recorded as an estimate', async () => {
    fake = await startFakeOpenAiServer({ firstTokenDelayMs: 3000 });
    app = await openAiApp(
      await companyWith((c) => {
        c.warmup.confidenceThreshold = 1;
      }),
      fake,
      150,
    );
    const { call, turn } = await callOnce(TIER2_ONLY);

    expect(turn.tier).toBe(2);
    expect(turn.scenarioId).toBe('pricing-service-call');
    expect(turn.warmup).toBe('cancelled');
    const request = await fake.settled(0);
    expect(request.clientWentAway).toBe('before-first-token');
    expect(fake.requests).toHaveLength(1);
    const cancelled = app.ledger.recent().find((e) => e.action === 'cancelled');
    expect(cancelled).toEqual(
      expect.objectContaining({ purpose: 'warmup', estimated: true, outputTokens: 0 }),
    );
    expect(cancelled!.costUsd).toBeGreaterThan(0);
    expect(turn.costEstimated).toBe(true);
    await call.close();
  });

  test('the gate skips the warmup with a reason, and Tier 3 then makes its own single request', async () => {
    fake = await startFakeOpenAiServer();
    fake.script({ type: 'text', text: 'We can certainly look into that for you.' });
    app = await openAiApp(
      await companyWith((c) => {
        c.warmup.confidenceThreshold = 0;
      }),
      fake,
    );
    const { call, turn } = await callOnce(OFF_SCRIPT);
    expect(turn.warmup).toBe('skipped');
    expect(turn.warmupReason).toBe('tier1-confidence-above-threshold');
    expect(turn.tier).toBe(3);
    expect(fake.requests).toHaveLength(1);
    expect(app.ledger.recent().map((e) => `${e.purpose}:${e.action}`)).toEqual(['tier3:completed']);
    await call.close();
  });
});

describe('when the LLM cannot answer, the caller still hears a line', () => {
  test('HTTP 500: one request (no retries), a technical-issue fallback, and the call goes on', async () => {
    fake = await startFakeOpenAiServer();
    fake.script({ type: 'error', status: 500 });
    app = await openAiApp(await companyWith(() => {}), fake);
    const { call, turn } = await callOnce(OFF_SCRIPT);
    expect(turn.tier).toBe('fallback');
    expect(turn.reply).toMatch(/trouble|technical|difficult/i);
    expect(fake.requests).toHaveLength(1);
    expect(app.ledger.recent().some((e) => e.action === 'failed')).toBe(true);
    const next = await call.say('What are your hours?');
    expect(next.scenarioId).toBe('hours-open');
    await call.close();
  });

  test('a provider that hangs is cut off at the company timeout', async () => {
    fake = await startFakeOpenAiServer();
    fake.script({ type: 'hang' });
    app = await openAiApp(
      await companyWith((c) => {
        c.gatekeeper.llm.timeoutMs = 300;
      }),
      fake,
    );
    const started = Date.now();
    const { call, turn } = await callOnce(OFF_SCRIPT);
    expect(turn.tier).toBe('fallback');
    expect(Date.now() - started).toBeLessThan(3000);
    expect((await fake.settled(0)).clientWentAway).toBe('before-first-token');
    await call.close();
  });

  test('an exhausted monthly budget blocks the LLM before any request is made', async () => {
    fake = await startFakeOpenAiServer();
    app = await openAiApp(
      await companyWith((c) => {
        c.gatekeeper.monthlyBudgetUsd = 0;
      }),
      fake,
    );
    const { call, turn } = await callOnce(OFF_SCRIPT);
    expect(turn.tier).toBe('fallback');
    expect(fake.requests).toHaveLength(0);
    await call.close();
  });
});

describe('providers', () => {
  test('OpenAI embeddings for Tier 2 are cost events billed to the company, batched per request', async () => {
    fake = await startFakeOpenAiServer();
    app = await startTestApp({
      company: await companyWith((c) => {
        c.warmup.enabled = false;
        c.gatekeeper.llm.providers = [];
      }),
      env: { OPENAI_API_KEY: 'sk-test', OPENAI_BASE_URL: fake.baseURL },
    });
    const atStart = app.ledger.recent().filter((e) => e.purpose === 'embedding');
    expect(atStart.length).toBeGreaterThan(0);
    expect(atStart[0]).toMatchObject({
      companyId: 'riverside-plumbing',
      tier: 2,
      provider: 'openai',
      action: 'completed',
    });
    expect(atStart[0]!.costUsd).toBeGreaterThan(0);
    const embeddingRequests = () => fake!.requests.filter((r) => r.path.endsWith('/embeddings')).length;
    const before = embeddingRequests();
    const { call } = await callOnce('Quintessential zebra marmalade');
    expect(embeddingRequests()).toBe(before + 1);
    expect(app.ledger.recent().filter((e) => e.purpose === 'embedding')).toHaveLength(atStart.length + 1);
    await call.close();
  });

  test('Anthropic answers Tier 3 over its own wire protocol', async () => {
    fake = await startFakeAnthropicServer();
    fake.script({ type: 'text', text: 'Happy to help with that.' });
    const company = await companyWith((c) => {
      c.gatekeeper.llm.providers = ['anthropic:claude-haiku-4-5'];
      c.warmup.enabled = false;
    });
    app = await startTestApp({
      company,
      env: { ANTHROPIC_API_KEY: 'sk-ant-test', ANTHROPIC_BASE_URL: fake.baseURL },
    });
    const { call, turn } = await callOnce(OFF_SCRIPT);
    expect(turn.tier).toBe(3);
    expect(turn.reply).toBe('Happy to help with that.');
    expect(fake.requests).toHaveLength(1);
    expect(fake.requests[0]!.path).toBe('/v1/messages');
    expect(turn.costUsd).toBeGreaterThan(0);
    await call.close();
  });

  test('LLM-backed capture and detect run in parallel and their JSON fills the slots', async () => {
    fake = await startFakeOpenAiServer();
    fake.script((request) => {
      const body = request.body as { response_format?: unknown; messages?: Array<{ content: string }> };
      const system = body.messages?.[0]?.content ?? '';
      if (body.response_format === undefined) return { type: 'text', text: 'Sure.' };
      return system.includes('Extract')
        ? { type: 'text', text: JSON.stringify({ slots: { callerName: 'Marisol Ortega', urgency: 'high' } }) }
        : {
            type: 'text',
            text: JSON.stringify({
              category: 'emergency',
              confidence: 0.9,
              emergency: true,
              wantsHuman: false,
              outOfScope: false,
              goodbye: false,
            }),
          };
    });
    const company = await companyWith((c) => {
      c.understanding = { mode: 'llm' };
    });
    app = await openAiApp(company, fake);
    const { call, turn } = await callOnce('This is Marisol, water is pouring out of a pipe under my sink');
    expect(turn.slots['callerName']).toBe('Marisol Ortega');
    expect(turn.slots['urgency']).toBe('high');
    // capture and detect, then a reconcile detect (urgency is critical)
    const purposes = app.ledger.recent().map((e) => e.purpose);
    expect(purposes.filter((p) => p === 'capture')).toHaveLength(1);
    expect(purposes.filter((p) => p === 'detect')).toHaveLength(2);
    expect(turn.reconciled).toBe(true);
    await call.close();
  });
});
