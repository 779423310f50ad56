import { describe, expect, it } from 'vitest';
import {
  continuesFrom,
  createSentenceChunker,
  type SentenceChunkerOptions,
} from '../../src/speech/sentences.ts';

/** Feeds `text` as a stream of `step`-character deltas, then flushes it; returns every piece. */
function stream(
  text: string,
  step = 3,
  options?: SentenceChunkerOptions,
): { pushed: string[][]; all: string[] } {
  const chunker = createSentenceChunker(options);
  const pushed: string[][] = [];
  for (let end = step; end < text.length + step; end += step) pushed.push(chunker.push(text.slice(0, end)));
  const all = [...pushed.flat(), ...chunker.flush(text)];
  return { pushed, all };
}

/** Every piece, whatever the delta size (1 character or the whole text at once). */
function pieces(text: string, options?: SentenceChunkerOptions): string[] {
  const results = [1, 2, 7, text.length].map((step) => stream(text, step, options).all);
  for (const result of results) expect(result).toEqual(results[0]);
  return results[0]!;
}

describe('createSentenceChunker', () => {
  it('splits at sentence ends followed by whitespace and hands each sentence out once', () => {
    expect(pieces('Thanks for calling Riverside. How can I help you today? We are open until six!')).toEqual([
      'Thanks for calling Riverside.',
      'How can I help you today?',
      'We are open until six!',
    ]);
  });

  it('hands a sentence out as soon as the whitespace after it arrives, not before', () => {
    const chunker = createSentenceChunker();
    expect(chunker.push('We open at nine in the morning.')).toEqual([]);
    expect(chunker.push('We open at nine in the morning. ')).toEqual(['We open at nine in the morning.']);
    expect(chunker.consumed).toBe('We open at nine in the morning.'.length);
    expect(chunker.push('We open at nine in the morning. See')).toEqual([]);
    expect(chunker.flush('We open at nine in the morning. See you then.')).toEqual(['See you then.']);
  });

  it('does not split after titles, dotted abbreviations, initials or numbered list markers', () => {
    expect(
      pieces(
        'Dr. Smith and Mr. Jones see patients, e.g. for check-ups, from 9 a.m. until noon on weekdays. ' +
          'John F. Kennedy Ave. is where we are based in the U.S. and nowhere else. Bye for now.',
      ),
    ).toEqual([
      'Dr. Smith and Mr. Jones see patients, e.g. for check-ups, from 9 a.m. until noon on weekdays.',
      'John F. Kennedy Ave. is where we are based in the U.S. and nowhere else.',
      'Bye for now.',
    ]);
    expect(
      pieces('Here is what to bring:\n1. Your insurance card please\n2. A photo ID of yourself'),
    ).toEqual(['Here is what to bring:', '1. Your insurance card please', '2. A photo ID of yourself']);
  });

  it('keeps decimals, prices, URLs and e-mail addresses whole, and ends sentences right after them', () => {
    expect(
      pieces(
        'The plan costs $19.99 a month, or 3.5 percent less yearly. Visit www.riverside-plumbing.com/pricing?plan=a.b for details. ' +
          'Or write to help@riverside.example.com. We answer within a day.',
      ),
    ).toEqual([
      'The plan costs $19.99 a month, or 3.5 percent less yearly.',
      'Visit www.riverside-plumbing.com/pricing?plan=a.b for details.',
      'Or write to help@riverside.example.com.',
      'We answer within a day.',
    ]);
  });

  it('merges pieces shorter than minChars with the next, and a short tail with the piece before', () => {
    expect(pieces('Sure. Okay. Your appointment is on Tuesday at ten. Bye!')).toEqual([
      'Sure. Okay. Your appointment is on Tuesday at ten.',
      'Bye!',
    ]);
    // In one flush, the short tail joins the piece before it instead of going to TTS alone.
    expect(createSentenceChunker().flush('Your appointment is on Tuesday at ten. Bye!')).toEqual([
      'Your appointment is on Tuesday at ten. Bye!',
    ]);
    expect(pieces('Sure. Okay.', { minChars: 3 })).toEqual(['Sure.', 'Okay.']);
  });

  it('splits at newlines, ellipses, runs of marks and closing quotes', () => {
    expect(
      pieces(
        'Our hours are listed below\nMonday to Friday, eight to six\n\nWell… let me check that for you. He said "call back tomorrow!" and hung up. Really?! That is odd.',
      ),
    ).toEqual([
      'Our hours are listed below',
      'Monday to Friday, eight to six',
      'Well… let me check that for you.',
      'He said "call back tomorrow!"',
      'and hung up. Really?!',
      'That is odd.',
    ]);
  });

  it('lets the first piece end at a clause break once it is long enough, and only the first', () => {
    const text =
      'I can certainly help you reschedule the appointment you booked last week, and I see two open slots, ' +
      'one on Monday morning, one on Wednesday afternoon, both with Dr. Patel. Which suits you better?';
    expect(pieces(text)).toEqual([
      'I can certainly help you reschedule the appointment you booked last week,',
      'and I see two open slots, one on Monday morning, one on Wednesday afternoon, both with Dr. Patel.',
      'Which suits you better?',
    ]);
    // Before the threshold, a comma does not end anything.
    expect(pieces('Yes, of course, we do, gladly, any day. Anything else?')).toEqual([
      'Yes, of course, we do, gladly, any day.',
      'Anything else?',
    ]);
    expect(pieces(text, { firstClauseChars: Infinity })[0]).toMatch(/Dr\. Patel\.$/);
  });

  it('the first clause is handed out while the sentence is still being written', () => {
    const chunker = createSentenceChunker();
    const head = 'I can certainly help you reschedule the appointment you booked last week, ';
    expect(chunker.push(head)).toEqual([head.trim()]);
  });

  it('cuts a piece that runs past maxChars at its last clause break, else its last space', () => {
    const words = Array.from({ length: 60 }, (_, i) => `word${i}`).join(' ');
    const out = pieces(words, { maxChars: 100 });
    expect(out.length).toBeGreaterThan(3);
    for (const piece of out) expect(piece.length).toBeLessThanOrEqual(101);
    expect(out.join(' ')).toBe(words);
  });

  it('loses nothing: the pieces joined are the text, whitespace aside', () => {
    const text =
      'Hi there! Thanks for calling Riverside Plumbing, the best plumbers in town, with 24/7 service. ' +
      'Prices start at $89.50 per visit.\nWe cover St. Louis and its suburbs... Anything else I can do? No. Bye.';
    for (const step of [1, 4, 11]) {
      expect(stream(text, step).all.join(' ').replace(/\s+/g, ' ')).toBe(text.replace(/\s+/g, ' '));
    }
  });

  it('hands nothing out for a draft that no longer continues what was consumed; flush returns [] then', () => {
    const chunker = createSentenceChunker();
    expect(chunker.push('Your plumber arrives at noon today. ')).toEqual([
      'Your plumber arrives at noon today.',
    ]);
    expect(chunker.push('Sorry, something went wrong on our side. ')).toEqual([]);
    expect(chunker.flush('Sorry, something went wrong on our side.')).toEqual([]);
  });

  it('flush continues a final text whose leading whitespace differs from the drafts', () => {
    const chunker = createSentenceChunker();
    expect(chunker.push('  Your plumber arrives at noon today. Is')).toEqual([
      'Your plumber arrives at noon today.',
    ]);
    expect(chunker.flush('Your plumber arrives at noon today. Is that okay for you?')).toEqual([
      'Is that okay for you?',
    ]);
  });

  it('rejects nonsensical options', () => {
    expect(() => createSentenceChunker({ minChars: 50, maxChars: 10 })).toThrow(RangeError);
  });
});

describe('continuesFrom', () => {
  it('is true when the final text starts with what was consumed, leading whitespace aside', () => {
    expect(continuesFrom('', 'Anything.')).toBe(true);
    expect(continuesFrom('Hello there.', 'Hello there. More.')).toBe(true);
    expect(continuesFrom(' Hello there.', 'Hello there.')).toBe(true);
    expect(continuesFrom('Hello there.', 'Sorry, I could not find that.')).toBe(false);
    expect(continuesFrom('Hello there.', 'Hello')).toBe(false);
  });
});
