import { readFile } from 'node:fs/promises';
import { beforeAll, describe, expect, test } from 'vitest';
import type { CompanyConfig } from '../../src/config/companyConfig.ts';
import { parseCompany } from '../../src/config/companyConfig.ts';
import {
  canTransfer,
  createFallbackPicker,
  createMemoryRotationStore,
  escalationOffer,
} from '../../src/routing/fallbackPicker.ts';
import { DEMO_FILES } from '../../src/store/configStore.ts';

let company: CompanyConfig;
beforeAll(async () => {
  company = parseCompany(JSON.parse(await readFile(DEMO_FILES[0]!, 'utf8')), 'demo');
});

describe('fallback lines', () => {
  test('rotate so the same line is never heard twice in a row', async () => {
    const pick = createFallbackPicker(createMemoryRotationStore());
    const lines: string[] = [];
    for (let i = 0; i < 6; i++) lines.push(await pick(company, 'clarificationNeeded', false));
    expect(company.fallbackResponses.clarificationNeeded.length).toBeGreaterThan(1);
    for (let i = 1; i < lines.length; i++) expect(lines[i]).not.toBe(lines[i - 1]);
    expect(new Set(lines)).toEqual(new Set(company.fallbackResponses.clarificationNeeded));
  });

  test('rotation is per company and per line type', async () => {
    const pick = createFallbackPicker(createMemoryRotationStore());
    const a = await pick(company, 'outOfScope', false);
    const b = await pick(company, 'clarificationNeeded', false);
    expect(a).toBe(company.fallbackResponses.outOfScope[0]);
    expect(b).toBe(company.fallbackResponses.clarificationNeeded[0]);
  });

  test('lines that cannot help offer transfer, message and callback in words', async () => {
    const pick = createFallbackPicker(createMemoryRotationStore());
    const line = await pick(company, 'noMatchFound', false);
    expect(line).toContain('transfer you to a team member, take a message or arrange a callback');
  });

  test('escalation hands over to a person when the company can transfer, else offers what it can', async () => {
    const pick = createFallbackPicker(createMemoryRotationStore());
    expect(await pick(company, 'clarificationNeeded', true)).toMatch(/connect you with a member of our team/);
    const noTransfer = {
      ...company,
      fallbackResponses: {
        ...company.fallbackResponses,
        escalationOptions: { offerTransfer: false, offerMessage: true, offerCallback: false },
      },
    } as CompanyConfig;
    expect(canTransfer(noTransfer)).toBe(false);
    expect(escalationOffer(noTransfer)).toBe('I can take a message.');
    expect(await pick(noTransfer, 'clarificationNeeded', true)).toMatch(/I can take a message\.$/);
  });
});
