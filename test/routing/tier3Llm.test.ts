/** Tier 3 around any LlmClient: prompt, budgets, cost events. The client here is a recording double. */
import { readFile } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { beforeAll, describe, expect, test } from 'vitest';
import type { LlmInput } from '../../machines/callMachine.ts';
import type { CompanyConfig, TemplateConfig } from '../../src/config/companyConfig.ts';
import { parseCompany, parseTemplate } from '../../src/config/companyConfig.ts';
import { createMemoryBudgetStore, monthlyKey, toMicros } from '../../src/cost/budgets.ts';
import { createMemoryLedger } from '../../src/cost/costLedger.ts';
import { costUsd } from '../../src/cost/priceTable.ts';
import type { LlmClient, LlmRequest } from '../../src/providers/llm/llmClient.ts';
import { LlmError } from '../../src/providers/llm/llmErrors.ts';
import { createTier3 } from '../../src/routing/tier3Llm.ts';
import { DEMO_FILES } from '../../src/store/configStore.ts';
import { createMemoryWarmupStats } from '../../src/warmup/warmupStats.ts';

let company: CompanyConfig;
let template: TemplateConfig;
beforeAll(async () => {
  company = parseCompany(JSON.parse(await readFile(DEMO_FILES[0]!, 'utf8')), 'demo');
  template = parseTemplate(JSON.parse(await readFile(DEMO_FILES[1]!, 'utf8')), 'demo');
});

function client(behaviour: (req: LlmRequest) => Promise<string> = () => Promise.resolve('Sure thing.')) {
  const requests: LlmRequest[] = [];
  const c: LlmClient = {
    provider: 'openai',
    async complete(req) {
      requests.push(req);
      const text = await behaviour(req);
      return {
        text,
        provider: 'openai',
        model: req.model,
        usage: { inputTokens: 1000, outputTokens: 100 },
        firstTokenMs: 5,
        durationMs: 10,
      };
    },
  };
  return { c, requests };
}

function input(mode: 'warmup' | 'tier3', overrides: Partial<LlmInput> = {}): LlmInput {
  return {
    callId: 'call-1',
    companyId: company.id,
    turn: 3,
    utterance: 'Do you also install dishwashers?',
    slots: { callerName: 'Ana', callbackNumber: '+15551112222' },
    history: [
      { role: 'caller', text: 'Hi there' },
      { role: 'agent', text: 'Hello!' },
    ],
    mode,
    situation: null,
    candidates: [{ scenarioId: 'install-estimate', category: 'installation', score: 0.4 }],
    ...overrides,
  };
}

function setup(c: LlmClient, patch: (co: CompanyConfig) => CompanyConfig = (x) => x) {
  let logged = '';
  const log = pino(
    { level: 'warn' },
    new Writable({
      write(chunk: Buffer, _e, done) {
        logged += chunk.toString();
        done();
      },
    }),
  );
  const ledger = createMemoryLedger();
  const budgets = createMemoryBudgetStore();
  const tier3 = createTier3({
    clients: { openai: c },
    budgets,
    ledger,
    stats: createMemoryWarmupStats(),
    log,
  });
  const co = patch({
    ...company,
    gatekeeper: {
      ...company.gatekeeper,
      llm: { ...company.gatekeeper.llm, providers: ['openai:gpt-4o-mini'] },
    },
  });
  return { tier3, ledger, budgets, co, logged: () => logged };
}

describe('Tier 3', () => {
  test('prompts with the company, related answers, known slots (never the caller number) and the conversation', async () => {
    const { c, requests } = client();
    const { tier3, co } = setup(c, (x) => ({ ...x, facts: ['We are licensed in three counties.'] }));
    await tier3({
      company: co,
      templates: [template],
      input: input('tier3'),
      callSid: 'CA1',
      signal: new AbortController().signal,
    });
    const req = requests[0]!;
    expect(req.model).toBe('gpt-4o-mini');
    expect(req.system).toContain('Riverside Plumbing');
    expect(req.system).toContain('We are licensed in three counties.');
    expect(req.system).toContain('callerName: Ana');
    expect(req.system).not.toContain('+15551112222');
    expect(req.system).toContain(
      template.categories.flatMap((cat) => cat.scenarios).find((s) => s.id === 'install-estimate')!
        .replies[0],
    );
    expect(req.messages).toEqual([
      { role: 'user', content: 'Hi there' },
      { role: 'assistant', content: 'Hello!' },
      { role: 'user', content: 'Do you also install dishwashers?' },
    ]);
    expect(req.timeoutMs).toBe(co.gatekeeper.llm.timeoutMs);
  });

  test('a completed answer is one cost event priced from the table, settled against the monthly budget', async () => {
    const { c } = client();
    const { tier3, co, ledger, budgets } = setup(c);
    const answer = await tier3({
      company: co,
      templates: [template],
      input: input('tier3'),
      callSid: null,
      signal: new AbortController().signal,
    });
    const expected = costUsd('openai', 'gpt-4o-mini', { inputTokens: 1000, outputTokens: 100 })!;
    expect(answer.costUsd).toBeCloseTo(expected, 12);
    expect(ledger.recent()).toEqual([
      expect.objectContaining({
        purpose: 'tier3',
        tier: 3,
        action: 'completed',
        inputTokens: 1000,
        outputTokens: 100,
        costUsd: expected,
        estimated: false,
      }),
    ]);
    expect(await budgets.spent(monthlyKey(co.id, new Date()))).toBe(toMicros(expected));
  });

  test('an unknown model is recorded with cost null (never 0) and warned about once', async () => {
    const { c } = client();
    const { tier3, co, ledger, logged } = setup(c, (x) => ({
      ...x,
      gatekeeper: { ...x.gatekeeper, llm: { ...x.gatekeeper.llm, providers: ['openai:house-model-9'] } },
    }));
    for (let i = 0; i < 2; i++) {
      await tier3({
        company: co,
        templates: [template],
        input: input('tier3'),
        callSid: null,
        signal: new AbortController().signal,
      });
    }
    expect(ledger.recent().map((e) => e.costUsd)).toEqual([null, null]);
    expect(logged().match(/missing from the price table/g)).toHaveLength(1);
  });

  test('a warmup is triggered, then completed; a cancelled one records an estimate', async () => {
    const { c } = client();
    const { tier3, co, ledger } = setup(c);
    await tier3({
      company: co,
      templates: [template],
      input: input('warmup'),
      callSid: null,
      signal: new AbortController().signal,
    });
    expect(ledger.recent().map((e) => e.action)).toEqual(['triggered', 'completed']);

    const aborting = client(
      (req) =>
        new Promise((_resolve, reject) =>
          req.signal!.addEventListener('abort', () =>
            reject(
              new LlmError('ERR_LLM_ABORTED', 'aborted', {
                provider: 'openai',
                partial: { text: 'Well, we', usage: null, firstTokenMs: 3, durationMs: 20 },
              }),
            ),
          ),
        ),
    );
    const second = setup(aborting.c);
    const ac = new AbortController();
    const pending = second.tier3({
      company: second.co,
      templates: [template],
      input: input('warmup'),
      callSid: null,
      signal: ac.signal,
    });
    await new Promise((r) => setTimeout(r, 5));
    ac.abort();
    await expect(pending).rejects.toMatchObject({ code: 'ERR_LLM_ABORTED' });
    const cancelled = second.ledger.recent().find((e) => e.action === 'cancelled')!;
    expect(cancelled).toMatchObject({ estimated: true, outputTokens: 2 });
    expect(cancelled.costUsd).toBeGreaterThan(0);
  });

  test('a warmup cancelled before the next turn of the event loop sends no request and costs nothing', async () => {
    const { c, requests } = client();
    const { tier3, co, ledger, budgets } = setup(c);
    const ac = new AbortController();
    const pending = tier3({
      company: co,
      templates: [template],
      input: input('warmup'),
      callSid: null,
      signal: ac.signal,
    });
    // As a Tier 2 that answers at once: in the same turn, after the budget reservations' microtasks.
    await Promise.resolve();
    ac.abort();
    await expect(pending).rejects.toMatchObject({ code: 'ERR_LLM_ABORTED' });
    expect(requests).toHaveLength(0);
    expect(ledger.recent().map((e) => e.action)).toEqual(['triggered', 'cancelled']);
    expect(ledger.recent()[1]).toMatchObject({ costUsd: 0, estimated: false, inputTokens: 0 });
    // The reservation is released: the whole monthly budget can still be reserved.
    const limit = toMicros(co.gatekeeper.monthlyBudgetUsd);
    expect(await budgets.reserve(monthlyKey(co.id, new Date()), limit, limit)).not.toBeNull();
  });

  test('a spent budget refuses before any request', async () => {
    const { c, requests } = client();
    const { tier3, co } = setup(c, (x) => ({ ...x, gatekeeper: { ...x.gatekeeper, monthlyBudgetUsd: 0 } }));
    await expect(
      tier3({
        company: co,
        templates: [template],
        input: input('tier3'),
        callSid: null,
        signal: new AbortController().signal,
      }),
    ).rejects.toMatchObject({ code: 'ERR_BUDGET_EXCEEDED' });
    expect(requests).toHaveLength(0);
  });
});
