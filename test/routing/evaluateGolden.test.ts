import { describe, expect, it } from 'vitest';
import { createCompanyRouter } from '../../src/routing/companyRouter.ts';
import { evaluateGolden, formatGoldenReport, parseGolden } from '../../src/routing/evaluateGolden.ts';
import { createLocalEmbedder } from '../../src/routing/localEmbedder.ts';
import {
  demoCompany,
  demoTemplate,
  dentalCompany,
  dentalTemplate,
  paths,
  readText,
} from '../fixtures/configs.ts';

const router = await createCompanyRouter({
  company: demoCompany(),
  templates: [demoTemplate()],
  embedder: createLocalEmbedder(),
});

describe('parseGolden', () => {
  it('reads labelled lines and reports unusable ones by line number', () => {
    const text = [
      '{"utterance": "hi", "expect": {"category": "greeting", "scenarioId": "greeting-hello"}}',
      '',
      '# a comment',
      '{"utterance": "pizza?", "expect": {"category": null, "scenarioId": null}}',
      '{"utterance": "broken json"',
      '{"utterance": 42, "expect": {"category": null, "scenarioId": null}}',
      '{"utterance": "no expectation"}',
      '{"utterance": "no category", "expect": {"scenarioId": "hours-open"}}',
    ].join('\n');
    const golden = parseGolden(text);
    expect(golden.cases.map((c) => [c.line, c.expect.scenarioId])).toEqual([
      [1, 'greeting-hello'],
      [4, null],
      [8, 'hours-open'],
    ]);
    expect(golden.invalid.map((p) => p.line)).toEqual([5, 6, 7]);
    expect(golden.invalid[0]!.message).toMatch(/not valid JSON/);
  });
});

describe('evaluateGolden', () => {
  it('meets the bar on the demo golden set: 90% right, at most one false match', async () => {
    const report = await evaluateGolden(router, parseGolden(readText(paths.demoGolden)));
    expect(report.total).toBeGreaterThanOrEqual(50);
    expect(report.invalid).toEqual([]);
    expect(report.accuracy).toBeGreaterThanOrEqual(0.9);
    expect(report.falseMatches).toBeLessThanOrEqual(1);
    expect(report.correct + report.falseMatches + report.misses).toBe(report.total);
    expect(report.byTier['1'] + report.byTier['2'] + report.byTier.none).toBe(report.total);
    // Lines that should not be answered are part of the set, and are left unanswered.
    expect(report.correctByTier.none).toBeGreaterThanOrEqual(7);
    expect(report.byTier['1']).toBeGreaterThan(report.byTier['2']);
  });

  it('meets the bar on a second trade with the same method', async () => {
    const dental = await createCompanyRouter({
      company: dentalCompany(),
      templates: [dentalTemplate()],
      embedder: createLocalEmbedder(),
    });
    const report = await evaluateGolden(dental, parseGolden(readText(paths.dentalGolden)));
    expect(report.accuracy).toBeGreaterThanOrEqual(0.8);
    expect(report.falseMatches).toBe(0);
  });

  it('counts a wrong answer and an answer to an unanswerable line as false matches', async () => {
    const golden = parseGolden(
      [
        '{"utterance": "My toilet will not stop running", "expect": {"category": "repair", "scenarioId": "repair-clogged-drain"}}',
        '{"utterance": "What are your business hours?", "expect": {"category": null, "scenarioId": null}}',
        '{"utterance": "Tell me about quantum physics", "expect": {"category": "hours", "scenarioId": "hours-open"}}',
        '{"utterance": "Is there a trip charge?", "expect": {"category": "pricing", "scenarioId": "no-such-scenario"}}',
      ].join('\n'),
    );
    const report = await evaluateGolden(router, golden);
    expect(report).toMatchObject({ total: 3, correct: 0, falseMatches: 2, misses: 1, accuracy: 0 });
    expect(report.errors.map((e) => [e.line, e.verdict])).toEqual([
      [1, 'falseMatch'],
      [2, 'falseMatch'],
      [3, 'miss'],
    ]);
    expect(report.invalid).toEqual([{ line: 4, message: 'unknown scenarioId "no-such-scenario"' }]);
    const text = formatGoldenReport(report);
    expect(text).toContain('line 1 FALSE MATCH');
    expect(text).toContain('line 3 miss');
    expect(text).toContain('line 4: unknown scenarioId');
  });
});
