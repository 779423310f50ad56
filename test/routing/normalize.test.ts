import { describe, expect, it } from 'vitest';
import { parseTemplate } from '../../src/config/companyConfig.ts';
import type { TemplateConfigInput } from '../../src/config/companyConfig.ts';
import { createNormalizer, indexTemplates, isStopword, stem, tokenize } from '../../src/routing/normalize.ts';

function template(overrides: Partial<TemplateConfigInput> = {}) {
  return parseTemplate(
    {
      id: 'test-trade',
      name: 'Test trade',
      fillerWords: ['um', 'uh', 'like', 'you know', 'i mean', 'hello', 'hi', 'please'],
      synonymMap: {
        ac: ['air conditioner', 'air conditioning', 'a/c', 'central air'],
        'water heater': ['hot water heater', 'hot water tank'],
        clogged: ['backed up', 'stopped up'],
        appointment: ['booking', 'visit'],
        broken: ['not working', 'stopped working'],
      },
      categories: [
        {
          name: 'greeting',
          scenarios: [{ id: 'hello', triggers: ['hello', 'hi there'], replies: ['Hi!'] }],
        },
        {
          name: 'repair',
          cues: ['fix'],
          scenarios: [
            { id: 'ac', triggers: ['ac broken'], examples: ['My AC stopped working.'], replies: ['Sorry!'] },
            { id: 'drain', triggers: ['clogged drain'], replies: ['We can clear it.'] },
          ],
        },
      ],
      ...overrides,
    },
    'test',
  );
}

describe('tokenize', () => {
  it('lower-cases, unifies apostrophes and expands contractions', () => {
    expect(tokenize('The AC Isn’t WORKING')).toEqual(['the', 'ac', 'is', 'not', 'working']);
    expect(tokenize("It won't start, can't you help? I'd like that; it's cold")).toEqual(
      'it will not start can not you help i would like that it is cold'.split(' '),
    );
  });

  it('turns punctuation into word breaks and keeps possessives as the bare word', () => {
    expect(tokenize('a/c -- t-stat!!! John’s  house')).toEqual(['a', 'c', 't', 'stat', 'john', 'house']);
  });
});

describe('stem', () => {
  it('folds plurals and -ing/-ed so inflections meet', () => {
    const same: Array<[string, string]> = [
      ['pipes', 'pipe'],
      ['leaking', 'leak'],
      ['stopped', 'stop'],
      ['charged', 'charge'],
      ['freezing', 'freeze'],
      ['coming', 'come'],
      ['batteries', 'battery'],
      ['scheduled', 'schedule'],
      ['broken', 'break'],
      ['frozen', 'freezing'],
    ];
    for (const [a, b] of same) expect(stem(a), `${a} ~ ${b}`).toBe(stem(b));
  });

  it('keeps short words apart that a crude e-stripper would merge', () => {
    expect(stem('care')).not.toBe(stem('car'));
    expect(stem('note')).not.toBe(stem('not'));
    expect(stem('rate')).not.toBe(stem('rat'));
  });
});

describe('createNormalizer', () => {
  const normalize = createNormalizer([template()]);

  it('removes single and multi-word fillers at word boundaries only', () => {
    expect(normalize('Um, you know, the drain is, like, clogged, I mean really').text).toBe(
      'the drain is clogged really',
    );
    // "um" inside "umbrella" and "like" inside "likely" are words of their own.
    expect(normalize('The umbrella stand is likely wet').text).toBe('the umbrella stand is likely wet');
  });

  it('keeps the fillers when they are the whole message', () => {
    expect(normalize('Hello?').text).toBe('hello');
    expect(normalize('Hi there!').text).toBe('hi there');
    expect(normalize('Hello, my AC is not working').text).toBe('my ac is broken');
  });

  it('replaces synonym variants with the canonical key, longest variant first', () => {
    expect(normalize('My air conditioner stopped working').text).toBe('my ac broken');
    expect(normalize('The hot water heater and the central air').text).toBe('the water heater and the ac');
    expect(normalize('Two air conditioners').text).toBe('two ac');
  });

  it('matches variants on word boundaries, never inside a word', () => {
    expect(normalize('Please come back soon').text).toBe('come back soon');
    expect(normalize('The ACME visitor').text).toBe('the acme visitor');
  });

  it('matches multi-word variants across inflections but keeps one-word variants literal', () => {
    expect(normalize('The sink is backing up').text).toBe('the sink is clogged');
    // "booking" is a synonym of appointment; the verb "book" is not.
    expect(normalize('I want to book a booking').text).toBe('i want to book a appointment');
  });

  it('collapses spaces and returns stemmed tokens for matching', () => {
    const n = normalize('  The   pipes   are   leaking  ');
    expect(n.text).toBe('the pipes are leaking');
    expect(n.tokens).toEqual(['the', 'pipe', 'are', 'leak']);
  });

  it('gives the same tokens to a trigger and to an utterance that says the same thing', () => {
    expect(normalize('AC broken').tokens).toEqual(
      normalize('the a/c is not working').tokens.filter((t) => !isStopword(t)),
    );
  });

  it('never throws on odd input', () => {
    for (const text of ['', '   ', '🔥💧', '\u0000\u0001', 'ŝŧřåñğë wörds', 'x'.repeat(10_000)]) {
      expect(() => normalize(text)).not.toThrow();
    }
  });
});

describe('indexTemplates', () => {
  it('lists scenarios with their categories and the vocabulary they use', () => {
    const index = indexTemplates([template()]);
    expect(index.scenarios.map((s) => s.scenario.id)).toEqual(['hello', 'ac', 'drain']);
    expect(index.categories).toEqual(['greeting', 'repair']);
    expect(index.byId.get('drain')?.category).toBe('repair');
    expect([...(index.scenarioVocabulary.get('clog') ?? [])]).toEqual([2]);
    expect(index.knownTokens.has('fix')).toBe(true); // from the category cues
  });

  it('keeps the first scenario when a later template repeats an id', () => {
    const second = template({ id: 'other-trade' });
    const index = indexTemplates([template(), second]);
    expect(index.scenarios).toHaveLength(3);
    expect(index.byId.get('ac')?.templateId).toBe('test-trade');
  });
});
