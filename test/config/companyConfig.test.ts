import { readFile } from 'node:fs/promises';
import { describe, expect, test } from 'vitest';
import { parseCompany, parseTemplate } from '../../src/config/companyConfig.ts';
import { ConfigError } from '../../src/errors.ts';
import { DEMO_FILES } from '../../src/store/configStore.ts';

async function demo(i: number): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(DEMO_FILES[i]!, 'utf8')) as Record<string, unknown>;
}

function problemsOf(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('company documents', () => {
  test('the demo company parses, with Switchboard defaults filled in', async () => {
    const c = parseCompany(await demo(0), 'company.json');
    expect(c.id).toBe('riverside-plumbing');
    expect(c.conversation.silenceTimeoutMs).toBe(8000);
    expect(c.fallbackResponses.escalateAfter).toBe(2);
    expect(c.understanding.mode).toBe('auto');
  });

  test('unknown fields are kept, so a document round-trips', async () => {
    const raw = { ...(await demo(0)), crmId: 'x-42' };
    expect(parseCompany(raw, 'c.json')['crmId']).toBe('x-42');
  });

  test('every problem names the file and the field', async () => {
    const raw = await demo(0);
    const bad = {
      ...raw,
      phoneNumbers: ['555-1234'],
      gatekeeper: {
        ...(raw['gatekeeper'] as object),
        tier1Threshold: 1.5,
        llm: { providers: ['mistral:large'] },
      },
      fallbackResponses: { ...(raw['fallbackResponses'] as object), outOfScope: [] },
    };
    const problems = problemsOf(() => parseCompany(bad, 'company.broken.json'));
    expect(problems.every((p) => p.startsWith('company.broken.json: '))).toBe(true);
    const fields = problems.map((p) => p.split(': ')[1]);
    expect(fields).toEqual(
      expect.arrayContaining([
        'phoneNumbers.0',
        'gatekeeper.tier1Threshold',
        'gatekeeper.llm.providers.0',
        'fallbackResponses.outOfScope',
      ]),
    );
  });
});

describe('template documents', () => {
  test('the demo template parses', async () => {
    const t = parseTemplate(await demo(1), 'template.json');
    expect(t.categories.length).toBeGreaterThan(5);
  });

  test('duplicate scenario ids and empty scenarios are reported with their paths', async () => {
    const t = (await demo(1)) as { categories: Array<{ scenarios: Array<Record<string, unknown>> }> };
    const first = t.categories[0]!.scenarios[0]!;
    t.categories[1]!.scenarios.push({ ...first });
    t.categories[1]!.scenarios.push({ id: 'empty', replies: ['hi'] });
    const problems = problemsOf(() => parseTemplate(t, 'template.x.json'));
    expect(problems.some((p) => p.includes('duplicate scenario id'))).toBe(true);
    expect(problems.some((p) => p.includes('needs at least one trigger or example'))).toBe(true);
    expect(problems.every((p) => p.startsWith('template.x.json: categories.1.scenarios.'))).toBe(true);
  });
});
