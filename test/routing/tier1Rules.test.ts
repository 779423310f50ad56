import { describe, expect, it } from 'vitest';
import { parseTemplate } from '../../src/config/companyConfig.ts';
import { createTier1Matcher } from '../../src/routing/tier1Rules.ts';
import { demoTemplate } from '../fixtures/configs.ts';

const match = createTier1Matcher([demoTemplate()]);

/** A template whose triggers are the generic one-word kind people really write. */
const generic = parseTemplate(
  {
    id: 'generic-triggers',
    name: 'Generic triggers',
    categories: [
      {
        name: 'hours',
        scenarios: [{ id: 'hours', triggers: ['open', 'close', 'hours'], replies: ['9 to 5.'] }],
      },
      {
        name: 'area',
        scenarios: [{ id: 'area', triggers: ['cover', 'service area'], replies: ['The whole city.'] }],
      },
      {
        name: 'billing',
        scenarios: [{ id: 'billing', triggers: ['bill', 'invoice'], replies: ['Account name?'] }],
      },
      {
        name: 'pricing',
        scenarios: [
          {
            id: 'tuneup',
            triggers: ['service'],
            examples: ['How much is a furnace service?'],
            replies: ['$89.'],
          },
        ],
      },
      {
        name: 'repair',
        scenarios: [
          {
            id: 'panel',
            triggers: ['breaker tripped'],
            examples: ['The breaker panel keeps tripping.', 'My electrical panel is sparking.'],
            replies: ['We can check it.'],
          },
        ],
      },
    ],
  },
  'generic',
);

describe('createTier1Matcher', () => {
  it('answers a clear trigger with high confidence, the first reply and the scenario flags', () => {
    const v = match('I have a clogged drain in the basement.');
    expect(v.scenarioId).toBe('repair-clogged-drain');
    expect(v.category).toBe('repair');
    expect(v.confidence).toBeGreaterThanOrEqual(0.7);
    expect(v.reply).toMatch(/^We can clear that/);
    expect(v.endsCall).toBe(false);
    expect(v.action).toBeNull();
    expect(v.providerMs).toBe(0);
    expect(v.durationMs).toBeGreaterThanOrEqual(0);
  });

  it('carries endsCall and the transfer action of the matched scenario', () => {
    expect(match('Okay, that is all, thanks. Bye!')).toMatchObject({
      scenarioId: 'goodbye-thanks',
      endsCall: true,
    });
    expect(match('Can I talk to a real person?')).toMatchObject({
      scenarioId: 'human-request',
      action: 'transfer',
    });
  });

  it('matches through fillers, synonyms and inflections', () => {
    expect(match('Um, so, the tap in the bathroom is, like, dripping').scenarioId).toBe(
      'repair-leaking-faucet',
    );
    expect(match('My hot water tank is not working').scenarioId).toBe('repair-no-hot-water');
  });

  it('lets a negative trigger veto its scenario', () => {
    // "water heater not working" is a no-hot-water trigger, but a gas smell is an emergency.
    const v = match('The water heater is not working and I smell gas');
    expect(v.scenarioId).toBe('emergency-gas-water-heater');
    expect(v.candidates.map((c) => c.scenarioId)).not.toContain('repair-no-hot-water');
  });

  it('trusts a phrase more than the same words scattered', () => {
    const phrase = match('My drain is clogged').confidence;
    const scattered = match('The drain in the upstairs hall bathroom got clogged').confidence;
    expect(scattered).toBeGreaterThan(0);
    expect(scattered).toBeLessThan(phrase);
  });

  it('does not let a generic one-word trigger decide a long utterance about something else', () => {
    const g = createTier1Matcher([generic]);
    expect(g('What time do you open?')).toMatchObject({ scenarioId: 'hours' });
    expect(g('What time do you open?').confidence).toBeGreaterThanOrEqual(0.7);
    for (const utterance of [
      'I could not open the cover of the electrical panel because the breaker tripped again',
      'My neighbor Bill said you might service the panel in my garage, the breaker keeps tripping',
      'The breaker tripped when I tried to close the garage door',
    ]) {
      const v = g(utterance);
      expect(v.scenarioId, utterance).toBe('panel');
    }
    const offTopic = g('Can you cover the cost of the repairs the other company did to my roof last year');
    expect(offTopic.confidence).toBeLessThan(0.7);
  });

  it('lowers confidence when two scenarios match about equally well', () => {
    const single = match('I need to reschedule my appointment').confidence;
    const both = match('I need to reschedule my appointment and I have a question about my bill').confidence;
    expect(both).toBeLessThan(single);
    expect(
      match('I need to reschedule my appointment and I have a question about my bill').candidates.length,
    ).toBeGreaterThan(1);
  });

  it('returns no scenario and zero confidence when nothing matches', () => {
    const v = match('Do you sell pizza?');
    expect(v).toMatchObject({ scenarioId: null, category: null, reply: null, confidence: 0, candidates: [] });
  });

  it('keeps confidence in [0, 1] and candidates ranked, whatever the input', () => {
    for (const text of ['', '🚿🚽', 'drain drain drain drain clogged clogged', 'bill '.repeat(500)]) {
      const v = match(text);
      expect(v.confidence).toBeGreaterThanOrEqual(0);
      expect(v.confidence).toBeLessThanOrEqual(1);
      expect(v.candidates.length).toBeLessThanOrEqual(5);
      const scores = v.candidates.map((c) => c.score);
      expect(scores).toEqual([...scores].sort((a, b) => b - a));
    }
  });

  it('matches an utterance in well under a millisecond', () => {
    const utterances = [
      'My toilet will not stop running',
      'How much is a new water heater?',
      'Do you sell pizza?',
    ];
    for (let i = 0; i < 100; i++) for (const u of utterances) match(`${u} ${i}`);
    const started = performance.now();
    for (let i = 0; i < 300; i++) match(`${utterances[i % 3] ?? ''} number ${i}`);
    expect((performance.now() - started) / 300).toBeLessThan(0.5);
  });
});
