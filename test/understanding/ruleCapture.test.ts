import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { slotNames } from '../../src/config/companyConfig.ts';
import {
  captureSlots,
  extractAllEquipment,
  extractPreferredTime,
  relatedEquipment,
} from '../../src/understanding/ruleCapture.ts';

const all = [...slotNames];
const capture = (utterance: string, previous = {}) => captureSlots(utterance, previous, all);

describe('captureSlots', () => {
  it('hears a caller name in the usual ways', () => {
    expect(capture('Hi, my name is maria lopez and my sink is clogged').slots['callerName']).toBe(
      'Maria Lopez',
    );
    expect(capture('This is Dana.').slots['callerName']).toBe('Dana');
    expect(capture("It's Bob Jones calling about my water heater").slots['callerName']).toBe('Bob Jones');
    expect(capture("Hello, I'm Priya, from Oak Street").slots['callerName']).toBe('Priya');
  });

  it('does not mistake ordinary phrases for names', () => {
    for (const utterance of [
      'This is urgent, my basement is flooding',
      "I'm calling about my bill",
      'This is the third time I called',
    ]) {
      expect(capture(utterance).slots['callerName'], utterance).toBeUndefined();
    }
  });

  it('normalises US phone numbers, in digits or spoken, to E.164', () => {
    expect(capture('call me back at (555) 201-3344').slots['callbackNumber']).toBe('+15552013344');
    expect(capture('my cell is +1 555.201.3344').slots['callbackNumber']).toBe('+15552013344');
    expect(capture('it is five five five, two oh one, three three four four').slots['callbackNumber']).toBe(
      '+15552013344',
    );
    expect(capture('double five five two zero one triple three four').slots['callbackNumber']).toBe(
      '+15552013334',
    );
    expect(capture('I have 2 bathrooms and 1 kitchen').slots['callbackNumber']).toBeUndefined();
    expect(capture('my number is 123 456 7890').slots['callbackNumber']).toBeUndefined(); // no area code starts with 1
  });

  it('finds a street address with its unit', () => {
    expect(capture('I live at 1420 North Maple Street, apartment 3b').slots['serviceAddress']).toBe(
      '1420 North Maple Street, Apartment 3B',
    );
    expect(capture('the house is at 22 oak st #4').slots['serviceAddress']).toBe('22 Oak St, Unit 4');
    expect(capture('can someone come at 3 pm on Maple Drive').slots['serviceAddress']).toBeUndefined();
  });

  it('collects the time phrases a caller prefers, in order', () => {
    expect(capture('Can someone come tomorrow morning?').slots['preferredTime']).toBe('tomorrow morning');
    expect(capture('next Tuesday at 3 pm works').slots['preferredTime']).toBe('next tuesday at 3 pm');
    expect(capture('any time on March 5th').slots['preferredTime']).toContain('march 5th');
    expect(capture('Good morning, my toilet is running').slots['preferredTime']).toBeUndefined();
  });

  it('names the equipment with a canonical label', () => {
    expect(capture('my hot water heater is leaking').slots['equipment']).toBe('water heater');
    expect(capture('the A/C is blowing warm air').slots['equipment']).toBe('air conditioner');
    expect(capture('the heater makes a noise').slots['equipment']).toBe('furnace');
    expect(extractAllEquipment('the tub faucet drips')).toEqual(['bathtub', 'faucet']);
    expect(relatedEquipment('sewer line', 'drain')).toBe(true);
    expect(relatedEquipment('air conditioner', 'furnace')).toBe(false);
  });

  it('grades urgency', () => {
    expect(capture('this is an emergency, water everywhere').slots['urgency']).toBe('high');
    expect(capture('I need someone ASAP').slots['urgency']).toBe('high');
    expect(capture('can you come today').slots['urgency']).toBe('high');
    expect(capture("it's not urgent, whenever you can").slots['urgency']).toBe('low');
    expect(capture('sometime this week would be good').slots['urgency']).toBe('normal');
  });

  it('fills only the slots the company asked for and merges with what it already had', () => {
    const result = captureSlots('My name is Ana and my number is 555 201 3344', { urgency: 'high' }, [
      'callbackNumber',
    ]);
    expect(result.slots).toEqual({ urgency: 'high', callbackNumber: '+15552013344' });
    expect(result.changed).toEqual(['callbackNumber']);
  });

  it('reports only what changed', () => {
    const first = capture('my number is 555 201 3344');
    const again = capture('yes, 555 201 3344', first.slots);
    expect(again.changed).toEqual([]);
    const corrected = capture('sorry, it is 555 201 9999', first.slots);
    expect(corrected.changed).toEqual(['callbackNumber']);
    expect(corrected.slots['callbackNumber']).toBe('+15552019999');
  });

  it('never throws, whatever bytes or characters arrive', () => {
    const samples: string[] = [
      '',
      ' ',
      '\u0000',
      '\uD800',
      '🔥'.repeat(1000),
      '1'.repeat(5000),
      'my name is '.repeat(400),
    ];
    for (let i = 0; i < 500; i++) {
      samples.push(randomBytes(1 + (i % 200)).toString('latin1'));
      samples.push(randomBytes(1 + (i % 200)).toString('utf8'));
      samples.push(
        Array.from({ length: 1 + (i % 60) }, () =>
          String.fromCodePoint(Math.floor(Math.random() * 0x2ffff)),
        ).join(''),
      );
    }
    for (const text of samples) {
      expect(() => capture(text)).not.toThrow();
      const { slots, changed } = capture(text);
      expect(Object.values(slots).every((v) => typeof v === 'string')).toBe(true);
      expect(Array.isArray(changed)).toBe(true);
    }
    // Even a value that is not a string at all (a bad caller of the API) is survived.
    expect(() => captureSlots(undefined as unknown as string, {}, all)).not.toThrow();
  });
});

describe('a house number is not a time', () => {
  it.each([
    ["Can someone come Thursday morning? I'm at 42 Maple Street", 'thursday morning'],
    ['I live at 9 Elm Road, can you come tomorrow', 'tomorrow'],
    ['tomorrow at 3', 'tomorrow at 3'],
    ['friday at 4 pm', 'friday at 4 pm'],
  ])('%s → %s', (utterance, time) => {
    expect(extractPreferredTime(utterance)).toBe(time);
  });
});
