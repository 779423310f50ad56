import { describe, expect, it } from 'vitest';
import type { TierResult } from '../../machines/types.ts';
import { ConfigError } from '../../src/errors.ts';
import { createCompanyRouter, decideWithoutLlm } from '../../src/routing/companyRouter.ts';
import { createLocalEmbedder } from '../../src/routing/localEmbedder.ts';
import { demoCompany, demoTemplate, dentalTemplate } from '../fixtures/configs.ts';

function verdict(scenarioId: string | null, confidence: number): TierResult {
  return {
    confidence,
    scenarioId,
    category: scenarioId === null ? null : 'c',
    reply: scenarioId === null ? null : 'r',
    endsCall: false,
    action: null,
    candidates: [],
    providerMs: 0,
    durationMs: 0,
  };
}

const thresholds = { tier1Threshold: 0.7, tier2Threshold: 0.6 };

describe('decideWithoutLlm', () => {
  it('takes Tier 1 at its threshold, else Tier 2 at its own, else nobody', () => {
    expect(decideWithoutLlm(verdict('a', 0.7), verdict('b', 0.9), thresholds)).toMatchObject({ tier: 1 });
    expect(decideWithoutLlm(verdict('a', 0.69), verdict('b', 0.6), thresholds)).toMatchObject({ tier: 2 });
    expect(decideWithoutLlm(verdict('a', 0.69), verdict('b', 0.59), thresholds)).toEqual({
      tier: null,
      result: null,
    });
    expect(decideWithoutLlm(verdict('a', 0.5), null, thresholds)).toEqual({ tier: null, result: null });
  });

  it('never answers without a scenario, whatever the confidence says', () => {
    expect(decideWithoutLlm(verdict(null, 0.9), verdict(null, 0.9), thresholds).tier).toBeNull();
  });
});

const router = await createCompanyRouter({
  company: demoCompany(),
  templates: [dentalTemplate(), demoTemplate()],
  embedder: createLocalEmbedder(),
});

describe('createCompanyRouter', () => {
  it('uses the templates the company lists, with a fitted local embedder', () => {
    expect(router.templates.map((t) => t.id)).toEqual(['plumbing-residential']);
    expect(router.embedderId).toBe('local:hash-ngram-v1');
    expect(router.categories()).toContain('emergency');
    expect(router.categories()).not.toContain('insurance');
  });

  it('looks scenarios up by id', () => {
    expect(router.scenario('human-request')).toMatchObject({
      category: 'human',
      templateId: 'plumbing-residential',
    });
    expect(router.scenario('human-request')?.scenario.action).toBe('transfer');
    expect(router.scenario('nope')).toBeNull();
  });

  it('captures the company slots and reports them as rule results', () => {
    const c = router.capture('my name is Ana, call me at 555 201 3344, the water heater is leaking', {});
    expect(c.slots).toMatchObject({
      callerName: 'Ana',
      callbackNumber: '+15552013344',
      equipment: 'water heater',
    });
    expect(c.changed).toEqual(['callerName', 'callbackNumber', 'equipment']);
    expect(c).toMatchObject({ source: 'rules', providerMs: 0 });
  });

  it('detects situations and routes through both tiers', async () => {
    const situation = router.detect('A pipe burst and water is pouring into the basement', {});
    expect(situation).toMatchObject({ category: 'emergency', source: 'rules', providerMs: 0 });
    expect(situation.flags.emergency).toBe(true);
    expect(router.tier1('My toilet will not stop running')).toMatchObject({
      scenarioId: 'repair-running-toilet',
    });
    const t2 = await router.tier2('water is coming through the ceiling from upstairs', situation);
    expect(t2.scenarioId).toBe('emergency-burst-pipe');
  });

  it('refuses a company whose templates are not all loaded, naming them', async () => {
    const attempt = createCompanyRouter({
      company: demoCompany(),
      templates: [dentalTemplate()],
      embedder: createLocalEmbedder(),
    });
    await expect(attempt).rejects.toBeInstanceOf(ConfigError);
    await expect(attempt).rejects.toThrow(/plumbing-residential/);
  });
});
