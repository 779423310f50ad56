/**
 * Cuts a streaming LLM reply into sentences for TTS, so the first sentence can be synthesized while
 * the rest is still being written.
 *
 * A sentence ends at `.`, `!`, `?` or `…` (a run of them, plus closing quotes or brackets) followed by
 * whitespace, or at a newline. Whitespace must follow because the text grows token by token: "3." may
 * become "3.5" and "example." may become "example.com". A period does not end a sentence after a known
 * abbreviation ("Dr.", "Mr.", "approx."), after dotted initials ("e.g.", "a.m.", "U.S."), after a single
 * capital letter ("John F. Kennedy"), or after a list number at the start of a line ("1. ").
 * Splitting too little only delays audio a little; splitting too much puts a pause in the middle of a
 * sentence, so doubtful cases do not split ("at 9 a.m. Then" stays one piece).
 *
 * Pieces shorter than `minChars` are merged with the next one, so TTS is not asked for "Sure." on its
 * own (each request has its own first-byte latency, and prosody suffers on scraps).
 *
 * The first piece of a reply may end early, at a clause break (`,` `;` `:` or a spaced dash followed by
 * whitespace) once it is at least `firstClauseChars` long: the caller hears the start of a long first
 * sentence about as soon as a short one, and a comma is where a speaker pauses anyway. Later pieces
 * wait for whole sentences, since by then audio is already playing and whole sentences sound better.
 *
 * A piece that grows past `maxChars` without any boundary is cut at its last clause break (or last
 * space), bounding the wait for audio and keeping every request far below the TTS input limit.
 */
import type { SentenceChunker } from './types.ts';

export interface SentenceChunkerOptions {
  /** Pieces shorter than this (trimmed) are merged with the next. Default 20. */
  readonly minChars?: number;
  /** The first piece may end at a clause break once it is this long. Default 60; Infinity disables. */
  readonly firstClauseChars?: number;
  /** A piece with no boundary is cut once it is this long. Default 400. */
  readonly maxChars?: number;
}

const DEFAULT_MIN_CHARS = 20;
const DEFAULT_FIRST_CLAUSE_CHARS = 60;
const DEFAULT_MAX_CHARS = 400;

/**
 * Words that take a period without ending a sentence (lower case, without the period). Words that
 * also end sentences in ordinary speech ("no", "etc", "may", "sun") are left out on purpose.
 */
const ABBREVIATIONS = new Set([
  'mr',
  'mrs',
  'ms',
  'mx',
  'dr',
  'prof',
  'sr',
  'jr',
  'st',
  'mt',
  'ft',
  'vs',
  'approx',
  'appt',
  'apt',
  'ave',
  'blvd',
  'rd',
  'dept',
  'est',
  'ext',
  'tel',
  'inc',
  'ltd',
  'corp',
  'co',
  'jan',
  'feb',
  'mar',
  'apr',
  'jun',
  'jul',
  'aug',
  'sep',
  'sept',
  'oct',
  'nov',
  'dec',
  'mon',
  'tue',
  'tues',
  'thu',
  'thur',
  'thurs',
  'fri',
]);

/** "e.g", "i.e", "a.m", "U.S", "Ph.D" (the token before the final period). */
const DOTTED = /^(?:[a-z]{1,2}\.)+[a-z]{1,2}$/i;
/** A single capital other than "I" ("John F. Kennedy"; "do I." does end a sentence). */
const INITIAL = /^[A-HJ-Z]$/;
const DIGITS = /^\d+$/;
/** Opening quotes and brackets that may precede a word. */
const OPENERS = /^["'([{“‘«]+/;

function isTerminal(c: string): boolean {
  return c === '.' || c === '!' || c === '?' || c === '…';
}

function isCloser(c: string): boolean {
  return c === '"' || c === "'" || c === ')' || c === ']' || c === '}' || c === '”' || c === '’' || c === '»';
}

function isClauseBreak(c: string): boolean {
  return c === ',' || c === ';' || c === ':' || c === '—' || c === '–';
}

function isSpace(c: string | undefined): boolean {
  return c === ' ' || c === '\n' || c === '\t' || c === '\r' || c === '\u00a0';
}

/** Whether the single period at `dot` belongs to the word before it rather than ending a sentence. */
function periodIsPartOfWord(text: string, dot: number): boolean {
  let wordStart = dot;
  while (wordStart > 0 && !isSpace(text[wordStart - 1])) wordStart--;
  const word = text.slice(wordStart, dot).replace(OPENERS, '');
  if (word === '') return false;
  if (ABBREVIATIONS.has(word.toLowerCase()) || DOTTED.test(word) || INITIAL.test(word)) return true;
  // "1. Bring your ID" at the start of a line is a list marker, not a sentence.
  if (DIGITS.test(word)) {
    let lineStart = wordStart;
    while (lineStart > 0 && (text[lineStart - 1] === ' ' || text[lineStart - 1] === '\t')) lineStart--;
    return lineStart === 0 || text[lineStart - 1] === '\n';
  }
  return false;
}

/**
 * Whether `finalText` carries on from `consumedText` (the text a chunker already handed out), so the
 * sentences already spoken are still the start of the reply. Leading whitespace is ignored on both.
 * When it is false the reply changed under the speaker (e.g. a fallback replaced a failed answer),
 * and `flush` returns nothing: the caller decides what to say instead.
 */
export function continuesFrom(consumedText: string, finalText: string): boolean {
  return finalText.trimStart().startsWith(consumedText.trimStart());
}

/** A chunker for one reply. Not reusable: create one per reply. */
export function createSentenceChunker(options: SentenceChunkerOptions = {}): SentenceChunker {
  const minChars = options.minChars ?? DEFAULT_MIN_CHARS;
  const firstClauseChars = options.firstClauseChars ?? DEFAULT_FIRST_CLAUSE_CHARS;
  const maxChars = options.maxChars ?? DEFAULT_MAX_CHARS;
  if (!(minChars >= 0) || !(firstClauseChars > 0) || !(maxChars > minChars)) {
    throw new RangeError(
      `createSentenceChunker: need minChars ≥ 0, firstClauseChars > 0, maxChars > minChars; got ${minChars}, ${firstClauseChars}, ${maxChars}`,
    );
  }
  /** End (exclusive) of the last piece handed out, in the text last seen; never on whitespace. */
  let consumed = 0;
  /** text.slice(0, consumed), kept to check that the next text still starts with it. */
  let consumedText = '';
  let handedOut = 0;

  /** Splits `text` from `from`; returns the pieces and moves `consumed` past them. */
  function split(text: string, from: number, final: boolean): string[] {
    const out: string[] = [];
    const n = text.length;
    let start = from;
    let lastClause = -1;
    let lastSpace = -1;

    /** Ends the pending piece at `end` unless it is too short (then it waits to merge with the next). */
    const cut = (end: number): void => {
      let last = end;
      while (last > start && isSpace(text[last - 1])) last--;
      let first = start;
      while (first < last && isSpace(text[first])) first++;
      if (last - first < minChars) return;
      out.push(text.slice(first, last));
      handedOut++;
      start = last;
      consumed = last;
      lastClause = -1;
      lastSpace = -1;
    };

    let i = from;
    while (i < n) {
      const c = text[i]!;
      if (c === '\n') {
        cut(i);
        i++;
        continue;
      }
      if (isTerminal(c)) {
        let j = i + 1;
        while (j < n && (isTerminal(text[j]!) || isCloser(text[j]!))) j++;
        if (j === n) break; // what follows decides; wait for more text (flush takes the rest)
        const single = c === '.' && (j === i + 1 || !isTerminal(text[i + 1]!));
        if (isSpace(text[j]) && !(single && periodIsPartOfWord(text, i))) cut(j);
        i = j;
        continue;
      }
      if (isSpace(c)) {
        lastSpace = i;
      } else if (isClauseBreak(c) && isSpace(text[i + 1])) {
        lastClause = i + 1;
        if (handedOut === 0 && i + 1 - start >= firstClauseChars) cut(i + 1);
      }
      if (i - start >= maxChars) {
        const at = lastClause > start + minChars ? lastClause : lastSpace > start + minChars ? lastSpace : -1;
        if (at > 0) cut(at);
      }
      i++;
    }

    if (final) {
      let last = n;
      while (last > start && isSpace(text[last - 1])) last--;
      let first = start;
      while (first < last && isSpace(text[first])) first++;
      if (first < last) {
        const rest = text.slice(first, last);
        // A short tail joins the piece before it in this batch; otherwise it goes alone.
        if (rest.length < minChars && out.length > 0) out[out.length - 1] += ` ${rest}`;
        else out.push(rest);
        handedOut++;
        consumed = last;
      }
    }
    consumedText = text.slice(0, consumed);
    return out;
  }

  return {
    push(textSoFar) {
      // The draft changed under us: hand out nothing more; flush and continuesFrom tell the caller.
      if (!textSoFar.startsWith(consumedText)) return [];
      return split(textSoFar, consumed, false);
    },
    flush(finalText) {
      if (!continuesFrom(consumedText, finalText)) return [];
      const lead = finalText.length - finalText.trimStart().length;
      const consumedLead = consumedText.length - consumedText.trimStart().length;
      consumed = lead + consumed - consumedLead;
      return split(finalText, consumed, true);
    },
    get consumed() {
      return consumed;
    },
  };
}
