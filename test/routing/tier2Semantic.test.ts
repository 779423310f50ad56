import { describe, expect, it } from 'vitest';
import type { Situation } from '../../machines/types.ts';
import type { TemplateConfig } from '../../src/config/companyConfig.ts';
import type { Embedder } from '../../src/providers/embeddings/embedder.ts';
import { parseGolden } from '../../src/routing/evaluateGolden.ts';
import { createLocalEmbedder } from '../../src/routing/localEmbedder.ts';
import type { Item } from '../../src/routing/tier2Semantic.ts';
import { createTier2Matcher, rank } from '../../src/routing/tier2Semantic.ts';
import { demoTemplate, dentalTemplate, paths, readText } from '../fixtures/configs.ts';

/** An embedder that records every call and is not the local one (no `fit`). */
function recordingEmbedder(): Embedder & { calls: string[][] } {
  const inner = createLocalEmbedder();
  const calls: string[][] = [];
  return {
    id: 'test:recording',
    dimensions: inner.dimensions,
    calls,
    embed(texts, signal) {
      calls.push([...texts]);
      return inner.embed(texts, signal);
    },
  };
}

function situation(overrides: Partial<Situation> & { outOfScope?: boolean } = {}): Situation {
  const { outOfScope = false, ...rest } = overrides;
  return {
    category: null,
    confidence: 0,
    flags: { emergency: false, wantsHuman: false, goodbye: false, outOfScope },
    source: 'rules',
    providerMs: 0,
    durationMs: 0,
    ...rest,
  };
}

const plumbing = await createTier2Matcher([demoTemplate()], createLocalEmbedder());

describe('createTier2Matcher', () => {
  it('embeds every example and trigger once, in a single batched call', async () => {
    const embedder = recordingEmbedder();
    const template = demoTemplate();
    await createTier2Matcher([template], embedder);
    expect(embedder.calls).toHaveLength(1);
    const examples = template.categories.flatMap((c) => c.scenarios.flatMap((s) => s.examples));
    expect(embedder.calls[0]!.length).toBeGreaterThanOrEqual(examples.length);
  });

  it('answers a paraphrase no trigger covers, with the reply and candidates', async () => {
    const v = await plumbing.match('Water keeps gushing out of a pipe in the basement', null);
    expect(v.scenarioId).toBe('emergency-burst-pipe');
    expect(v.category).toBe('emergency');
    expect(v.confidence).toBeGreaterThanOrEqual(0.6);
    expect(v.reply).toMatch(/shut off your main water valve/);
    expect(v.candidates.length).toBeGreaterThan(0);
    expect(v.candidates.length).toBeLessThanOrEqual(3);
    expect(v.candidates[0]!.scenarioId).toBe('emergency-burst-pipe');
    expect(v.providerMs).toBeGreaterThanOrEqual(0);
    expect(v.durationMs).toBeGreaterThanOrEqual(v.providerMs);
  });

  it('stays unsure about things no scenario is about', async () => {
    for (const utterance of [
      'Do you sell pizza?',
      'Who won the game last night?',
      'Can you fix my car transmission?',
    ]) {
      expect((await plumbing.match(utterance, null)).confidence, utterance).toBeLessThan(0.3);
    }
  });

  it('lowers confidence when detect says the caller is out of scope', async () => {
    const utterance = 'My toilet will not stop running';
    const plain = await plumbing.match(utterance, null);
    const vetoed = await plumbing.match(utterance, situation({ outOfScope: true }));
    expect(vetoed.confidence).toBeLessThan(plain.confidence);
    expect(vetoed.confidence).toBeLessThan(0.6);
  });

  it('doubts a winner about other equipment than the caller named', async () => {
    const toilet = await plumbing.match('My toilet keeps running all night', null);
    const faucet = await plumbing.match('My faucet keeps running all night', null);
    expect(toilet).toMatchObject({ scenarioId: 'repair-running-toilet' });
    expect(toilet.confidence).toBeGreaterThanOrEqual(0.6);
    // Same words, other equipment: whatever wins, it is not a safe answer.
    expect(faucet.scenarioId === 'repair-running-toilet' ? faucet.confidence : 0).toBeLessThan(0.6);
  });

  it('is less sure when the caller also uses the trigger words of a close rival scenario', async () => {
    const plain = await plumbing.match('Can somebody come out tomorrow morning?', null);
    const twoRequests = await plumbing.match(
      'Can somebody come out tomorrow morning, what is the trip charge?',
      null,
    );
    expect(plain).toMatchObject({ scenarioId: 'booking-schedule' });
    expect(plain.confidence).toBeGreaterThanOrEqual(0.6);
    expect(twoRequests.candidates.map((c) => c.scenarioId)).toContain('pricing-service-call');
    expect(twoRequests.confidence).toBeLessThan(0.6);
  });

  it('works with an embedder it cannot fit', async () => {
    const matcher = await createTier2Matcher([demoTemplate()], recordingEmbedder());
    expect(matcher.embedderId).toBe('test:recording');
    expect((await matcher.match('There is a trip charge?', null)).scenarioId).toBe('pricing-service-call');
  });

  it('rejects when the turn is aborted', async () => {
    const controller = new AbortController();
    controller.abort();
    await expect(plumbing.match('My sink is clogged', null, controller.signal)).rejects.toThrow();
  });

  it('matches an utterance within a few milliseconds', async () => {
    for (let i = 0; i < 30; i++) await plumbing.match(`my water heater is leaking ${i}`, null);
    const started = performance.now();
    for (let i = 0; i < 100; i++) await plumbing.match(`the shower drain is slow again number ${i}`, null);
    expect((performance.now() - started) / 100).toBeLessThan(3);
  });
});

describe('Tier 2 calibration', () => {
  /** Precision and recall of Tier 2 alone at a confidence threshold, on a golden file. */
  async function precisionAt(template: TemplateConfig, goldenPath: string, threshold: number) {
    const matcher = await createTier2Matcher([template], createLocalEmbedder());
    const { cases } = parseGolden(readText(goldenPath));
    let answered = 0;
    let right = 0;
    const answerable = cases.filter((c) => c.expect.scenarioId !== null).length;
    for (const c of cases) {
      const v = await matcher.match(c.utterance, null);
      if (v.confidence < threshold) continue;
      answered += 1;
      if (v.scenarioId === c.expect.scenarioId) right += 1;
    }
    return { precision: answered === 0 ? 0 : right / answered, recall: right / answerable, matcher };
  }

  it('fits its own model for each template, monotone in every feature', async () => {
    const dental = await createTier2Matcher([dentalTemplate()], createLocalEmbedder());
    for (const c of [plumbing.calibration, dental.calibration]) {
      expect(c.wScore).toBeGreaterThan(0);
      expect(c.wMargin).toBeGreaterThanOrEqual(0);
      expect(c.wKnown).toBeGreaterThanOrEqual(0);
      expect(c.positives).toBeGreaterThan(10);
      expect(c.negatives).toBeGreaterThan(c.positives);
    }
    expect(dental.calibration.bias).not.toBeCloseTo(plumbing.calibration.bias, 2);
  });

  it('gives a threshold about the same precision on two different trades', async () => {
    const threshold = 0.6;
    const a = await precisionAt(demoTemplate(), paths.demoGolden, threshold);
    const b = await precisionAt(dentalTemplate(), paths.dentalGolden, threshold);
    expect(a.precision).toBeGreaterThanOrEqual(0.9);
    expect(b.precision).toBeGreaterThanOrEqual(0.9);
    expect(Math.abs(a.precision - b.precision)).toBeLessThanOrEqual(0.1);
    // Not by refusing to answer: most answerable lines are answered on both.
    expect(a.recall).toBeGreaterThanOrEqual(0.6);
    expect(b.recall).toBeGreaterThanOrEqual(0.6);
  });
});

describe('rank', () => {
  const items = (scenarios: number[]): Item[] =>
    scenarios.map((scenario) => ({ scenario, text: '', isExample: true, tokens: [], tokenSet: new Set() }));

  it('scores a scenario 0.6 × its best item plus 0.4 × the mean of its best three, in any order', () => {
    // Scenario 0: five items, best three 0.9, 0.8, 0.7. Scenario 1: two items. Scenario 2: none.
    const sims = [0.2, 0.9, 0.5, 0.7, 0.8, 0.4, 0.6];
    const r = rank(sims, items([0, 0, 1, 0, 0, 0, 1]), 3);
    expect(r.scores[0]).toBeCloseTo(0.6 * 0.9 + 0.4 * ((0.9 + 0.8 + 0.7) / 3), 12);
    expect(r.scores[1]).toBeCloseTo(0.6 * 0.6 + 0.4 * ((0.6 + 0.5) / 2), 12);
    expect(r.scores[2]).toBe(-1);
    expect([r.best, r.second]).toEqual([0, 1]);
    // Ties and a single item: the mean is over what there is.
    const tied = rank([0.5, 0.5, 0.3], items([1, 1, 0]), 2);
    expect(tied.scores).toEqual([0.6 * 0.3 + 0.4 * 0.3, 0.6 * 0.5 + 0.4 * 0.5]);
    expect([tied.best, tied.second]).toEqual([1, 0]);
  });

  it('leaves out the items skip rejects, and items of scenarios it was not told about', () => {
    const sims = [0.9, 0.1, 0.8, 0.95];
    const r = rank(sims, items([0, 0, 1, 5]), 2, (i) => i === 0);
    expect(r.scores[0]).toBeCloseTo(0.1, 12);
    expect(r.scores[1]).toBeCloseTo(0.8, 12);
    expect([r.best, r.second]).toEqual([1, 0]);
  });
});
