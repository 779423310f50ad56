import { describe, expect, it } from 'vitest';
import { parseTemplate } from '../../src/config/companyConfig.ts';
import { createRuleDetector } from '../../src/understanding/ruleDetect.ts';
import { demoTemplate, dentalTemplate } from '../fixtures/configs.ts';

const detect = createRuleDetector([demoTemplate()]);

describe('createRuleDetector', () => {
  it('picks the category from the template vocabulary and triggers', () => {
    expect(detect('My kitchen sink is clogged', {})).toMatchObject({ category: 'repair' });
    expect(detect('What are your hours on Saturday?', {})).toMatchObject({ category: 'hours' });
    expect(detect('How much does drain cleaning cost?', {})).toMatchObject({ category: 'pricing' });
    const confident = detect('I need to reschedule my appointment', {});
    expect(confident.category).toBe('booking');
    expect(confident.confidence).toBeGreaterThanOrEqual(0.7);
  });

  it('has no category and no confidence when nothing points anywhere', () => {
    expect(detect('yes', {})).toMatchObject({ category: null, confidence: 0 });
  });

  it('flags emergencies from hazards, and from vulnerable people without heat or water', () => {
    for (const u of [
      'I smell gas in the garage',
      'A pipe burst and the basement is flooding',
      'sewage is backing up into the shower',
      'the carbon monoxide alarm is going off',
      'this is an emergency',
    ]) {
      expect(detect(u, {}).flags.emergency, u).toBe(true);
    }
    expect(detect('We have no heat and a newborn baby', {}).flags.emergency).toBe(true);
    expect(detect('We have no heat', {}).flags.emergency).toBe(false);
    expect(detect("It's not an emergency, the faucet drips", {}).flags.emergency).toBe(false);
  });

  it('lets captured urgency count when someone vulnerable is involved', () => {
    expect(detect('my elderly mother lives with me', {}).flags.emergency).toBe(false);
    expect(detect('my elderly mother lives with me', { urgency: 'high' }).flags.emergency).toBe(true);
  });

  it('flags callers who want a person', () => {
    for (const u of [
      'Can I talk to a real person?',
      'representative',
      'Let me speak to someone',
      'transfer me please',
    ]) {
      expect(detect(u, {}).flags.wantsHuman, u).toBe(true);
    }
    expect(detect("I don't need a person, just the price", {}).flags.wantsHuman).toBe(false);
  });

  it('flags a goodbye only when the utterance is one', () => {
    expect(detect("Okay that's all, thanks, bye", {}).flags.goodbye).toBe(true);
    expect(detect('Have a good day', {}).flags.goodbye).toBe(true);
    expect(
      detect(
        "That's it, the toilet has been running all week and now the floor around it is soaking wet and soft",
        {},
      ).flags.goodbye,
    ).toBe(false);
  });

  it('flags out-of-scope subjects and utterances with no domain words', () => {
    for (const u of [
      'Do you sell pizza?',
      'What is the weather tomorrow?',
      'Are you hiring apprentices?',
      'Can I sue my landlord?',
    ]) {
      const d = detect(u, {});
      expect(d.flags.outOfScope, u).toBe(true);
      expect(d.category, u).toBeNull();
    }
    expect(detect('Quantum chromodynamics lectures', {}).flags.outOfScope).toBe(true);
    expect(detect('My kitchen sink is clogged', {}).flags.outOfScope).toBe(false);
  });

  it('keeps a subject in scope when the template itself talks about it', () => {
    // "insurance" is off-topic for a plumber but the dental office's business.
    expect(detect('Do you take my insurance?', {}).flags.outOfScope).toBe(true);
    expect(createRuleDetector([dentalTemplate()])('Do you take my insurance?', {}).flags.outOfScope).toBe(
      false,
    );
  });

  it('does not count the words of a captured name or street as off-topic', () => {
    expect(detect('This is Roof Carter', {}).flags.outOfScope).toBe(true);
    expect(detect('This is Roof Carter', { callerName: 'Roof Carter' }).flags.outOfScope).toBe(false);
  });

  it('changes its mind when captured slots add evidence', () => {
    const template = parseTemplate(
      {
        id: 'two-trades',
        name: 'Two trades',
        categories: [
          {
            name: 'heating',
            scenarios: [{ id: 'furnace', examples: ['my furnace is out'], replies: ['ok'] }],
          },
          {
            name: 'water',
            scenarios: [{ id: 'water-heater', examples: ['my water heater is out'], replies: ['ok'] }],
          },
        ],
      },
      'two-trades',
    );
    const d = createRuleDetector([template]);
    const before = d('it is out again', {});
    const after = d('it is out again', { equipment: 'water heater' });
    expect(after.category).toBe('water');
    expect(after.confidence).toBeGreaterThan(before.category === 'water' ? before.confidence : 0);
  });
});
