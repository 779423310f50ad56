/**
 * Rule-based slot capture: what a caller tells us about themselves and the job, pulled out of one
 * utterance with patterns that need no provider. Each extractor is independent and defensive: a
 * slot it is unsure about stays as it was, and no input (empty, binary, emoji, 100 kB of noise)
 * can make capture throw.
 */
import type { Slots } from '../../machines/types.ts';

/** The slots this turn knows about and which of them this utterance added or changed. */
export interface SlotCapture {
  readonly slots: Slots;
  readonly changed: string[];
}

/** Longer inputs are cut: nobody says more than this in one turn, and it bounds regex work. */
const MAX_INPUT_CHARS = 2000;

/** Urgency levels, most urgent first. */
export type Urgency = 'high' | 'normal' | 'low';

type Extractor = (text: string) => string | null;

const DIGIT_WORDS: Readonly<Record<string, string>> = {
  zero: '0',
  oh: '0',
  o: '0',
  one: '1',
  two: '2',
  three: '3',
  four: '4',
  five: '5',
  six: '6',
  seven: '7',
  eight: '8',
  nine: '9',
};

/** Words that follow "this is" / "I'm" but are not names ("this is urgent", "I'm calling …"). */
const NOT_NAMES = new Set(
  `a an the about actually also am an and any are as at be been being but by calling call can could did do
does doing done for from gonna going got had has have having he her here hers him his how i if in into is it
its just like looking me mine my need needing no not now of off on one or our out really regarding returning
she so some still sure that the their them then there these they this those to trying urgent very was we
well were what when where which who why will with would yes you your hoping wondering interested glad happy
sorry calling having getting having stuck home away back available free out emergency`.split(/\s+/),
);

const STREET_SUFFIXES =
  'street|st|avenue|ave|road|rd|drive|dr|lane|ln|court|ct|boulevard|blvd|way|place|pl|circle|cir|terrace|parkway|pkwy|highway|hwy|trail|square|crescent';

/** Words that cannot sit between a house number and a street suffix ("3 pm on Maple Drive"). */
const NOT_STREET_WORDS = "am|pm|a\\.m|p\\.m|on|at|in|to|for|and|or|my|is|of|by|from|with|o'clock";

/**
 * Equipment a caller may name, most specific phrase first, with the label stored in the slot.
 * Domain-generic on purpose (heating, cooling, plumbing, household water): detect and the tiers use
 * the label as extra evidence, they never require it.
 */
const EQUIPMENT: ReadonlyArray<readonly [RegExp, string]> = [
  [/\b(?:tankless (?:water )?heater|tankless)\b/, 'tankless water heater'],
  [/\b(?:hot )?water (?:heater|tank)s?\b/, 'water heater'],
  [/\bheat ?pumps?\b/, 'heat pump'],
  [/\bmini[- ]?splits?\b|\bductless\b/, 'mini split'],
  [/\b(?:air condition(?:er|ers|ing)|a\/?c|central air|aircon)\b/, 'air conditioner'],
  [/\bfurnaces?\b|\bheaters?\b/, 'furnace'],
  [/\bboilers?\b/, 'boiler'],
  [/\bradiators?\b/, 'radiator'],
  [/\bthermostats?\b|\bt-?stat\b|\bnest\b|\becobee\b/, 'thermostat'],
  [/\bair handlers?\b|\bblowers?\b/, 'air handler'],
  [/\bduct(?:s|work)?\b|\bvents?\b/, 'ductwork'],
  [/\b(?:de)?humidifiers?\b/, 'humidifier'],
  [/\bgarbage disposals?\b|\bdisposals?\b/, 'garbage disposal'],
  [/\bsump pumps?\b/, 'sump pump'],
  [/\bwater softeners?\b/, 'water softener'],
  [/\bwell pumps?\b/, 'well pump'],
  [/\bsewer (?:line|main|pipe)s?\b|\bmain (?:sewer )?line\b|\bsewer\b/, 'sewer line'],
  [/\btoilets?\b/, 'toilet'],
  [/\bfaucets?\b|\btaps?\b/, 'faucet'],
  [/\bshowers?\b/, 'shower'],
  [/\b(?:bath)?tubs?\b/, 'bathtub'],
  [/\bsinks?\b/, 'sink'],
  [/\bdrains?\b/, 'drain'],
  [/\bpipes?\b|\bplumbing lines?\b/, 'pipe'],
  [/\bgas lines?\b/, 'gas line'],
];

const URGENCY_LOW =
  /\b(?:no rush|no hurry|not urgent|isn't urgent|is not urgent|not an emergency|isn't an emergency|whenever|when(?:ever)? (?:you|it's) (?:can|convenient)|some ?time next|next month|no big deal|not in a hurry)\b/;
const URGENCY_HIGH =
  /\b(?:emergency|urgent(?:ly)?|asap|a\.s\.a\.p|as soon as possible|right away|right now|immediately|today|tonight|this morning|this afternoon|this evening|flood(?:ing|ed)?|burst|gushing|pouring|smell(?:s|ing)? (?:of |like )?gas|gas (?:leak|smell)|carbon monoxide|sparks?|smoke|fire|no heat|freezing)\b/;
const URGENCY_NORMAL =
  /\b(?:soon|this week|tomorrow|next few days|in the next couple of days|when you can)\b/;

function clean(utterance: unknown): string {
  if (typeof utterance !== 'string') return '';
  return utterance
    .slice(0, MAX_INPUT_CHARS)
    .normalize('NFKC')
    .replace(/[\u2018\u2019\u02bc]/g, "'")
    .replace(/\p{Cc}/gu, ' ');
}

function titleCase(name: string): string {
  return name
    .split(/\s+/)
    .map((w) => (w.length === 0 ? w : w[0]?.toUpperCase() + w.slice(1).toLowerCase()))
    .join(' ');
}

/** True when a word written by the caller (or the transcriber) can be part of a name. */
function nameWord(word: string | undefined, strict: boolean): boolean {
  if (word === undefined || !/^[\p{L}][\p{L}'-]{0,30}$/u.test(word)) return false;
  if (NOT_NAMES.has(word.toLowerCase())) return false;
  // After "this is" or "I'm" a name must look like one (capitalised) unless the whole
  // transcript is lower-case and casing tells us nothing.
  return !strict || /^\p{Lu}/u.test(word);
}

/** "my name is Ana Lopez", "this is Ana", "it's Ana calling", "Ana Lopez here", "I'm Ana". */
export function extractCallerName(text: string): string | null {
  const hasCase = /\p{Lu}/u.test(text) && /\p{Ll}/u.test(text);
  const patterns: ReadonlyArray<readonly [RegExp, boolean]> = [
    [/\b(?:my name is|my name's|name is|the name is|name's)\s+([\p{L}'-]+)(?:\s+([\p{L}'-]+))?/iu, false],
    [/\b(?:this is|it's|it is)\s+([\p{L}'-]+)(?:\s+([\p{L}'-]+))?\s+(?:calling|here)\b/iu, hasCase],
    [
      /(?:^|[.,!?]\s*)(?:hi,?\s+|hello,?\s+|hey,?\s+)?(?:this is|i'm|i am)\s+([\p{L}'-]+)(?:\s+([\p{L}'-]+))?\s*(?:[.,!?]|$|\s+(?:from|and|calling))/iu,
      hasCase,
    ],
  ];
  for (const [pattern, strict] of patterns) {
    const m = pattern.exec(text);
    if (m === null) continue;
    const first = m[1];
    if (!nameWord(first, strict)) continue;
    const last = nameWord(m[2], strict) ? m[2] : undefined;
    return titleCase(last === undefined ? (first ?? '') : `${first ?? ''} ${last}`);
  }
  return null;
}

/**
 * A US phone number in digits ("(555) 201-3344", "555.201.3344", "+1 555 201 3344") or spoken digit
 * by digit ("five five five, two oh one, …", "double five"), as E.164 (+1XXXXXXXXXX).
 */
export function extractCallbackNumber(text: string): string | null {
  const spoken = text
    .toLowerCase()
    .replace(
      /\b(double|triple)[\s-]+(zero|oh|o|one|two|three|four|five|six|seven|eight|nine|\d)\b/g,
      (_m, times: string, d: string) => ` ${d} `.repeat(times === 'double' ? 2 : 3),
    );
  // Read the text as a stream of digits; separators between digits are allowed, words end a run.
  let run = '';
  const runs: string[] = [];
  for (const token of spoken.split(/[\s,.;:()\-+/]+/)) {
    if (token.length === 0) continue;
    const digits = /^\d+$/.test(token) ? token : DIGIT_WORDS[token];
    if (digits !== undefined && !(token === 'o' && run.length === 0)) {
      run += digits;
      continue;
    }
    if (run.length > 0) runs.push(run);
    run = '';
  }
  if (run.length > 0) runs.push(run);
  for (const digits of runs) {
    const national = digits.length === 11 && digits.startsWith('1') ? digits.slice(1) : digits;
    if (national.length === 10 && /^[2-9]/.test(national)) return `+1${national}`;
  }
  return null;
}

/** "1420 North Maple Street, apartment 3B" → the street address with its unit. */
export function extractServiceAddress(text: string): string | null {
  const pattern = new RegExp(
    `\\b(\\d{1,6}[a-z]?)\\s+((?:(?:north|south|east|west|n|s|e|w)\\.?\\s+)?(?:(?!(?:${NOT_STREET_WORDS})\\b)[\\p{L}0-9'.-]+\\s+){0,3}?(?:${STREET_SUFFIXES}))\\b\\.?` +
      `(?:,?\\s*(?:(apartment|apt|unit|suite|ste|number|#)\\.?\\s*#?\\s*([a-z0-9-]{1,6})))?`,
    'iu',
  );
  const m = pattern.exec(text);
  if (m === null) return null;
  const street = titleCase((m[2] ?? '').replace(/\s+/g, ' ').trim());
  const unitWord = m[3]?.toLowerCase();
  const unit =
    m[4] === undefined
      ? ''
      : `, ${unitWord === '#' || unitWord === 'number' ? 'Unit' : titleCase(unitWord === 'apt' ? 'apartment' : (unitWord ?? 'unit'))} ${m[4].toUpperCase()}`;
  return `${m[1] ?? ''} ${street}${unit}`;
}

const WEEKDAYS = 'monday|tuesday|wednesday|thursday|friday|saturday|sunday';
const MONTHS =
  'january|february|march|april|may|june|july|august|september|october|november|december|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec';

const TIME_PATTERNS: readonly RegExp[] = [
  /\b(?:today|tonight|tomorrow|day after tomorrow)\b/,
  new RegExp(`\\b(?:(?:this|next|coming)\\s+)?(?:${WEEKDAYS})s?\\b`),
  /\b(?:this|next|the following)\s+(?:week|weekend|month)\b|\b(?:on the|this|next)?\s*weekend\b|\bweekdays?\b/,
  new RegExp(
    `\\b(?:${MONTHS})\\.?\\s+\\d{1,2}(?:st|nd|rd|th)?\\b|\\bthe\\s+\\d{1,2}(?:st|nd|rd|th)\\b|\\b\\d{1,2}/\\d{1,2}(?:/\\d{2,4})?\\b`,
  ),
  /\b(?:(?:early|late|first thing (?:in the)?|in the)\s+)?(?:morning|afternoon|evening)s?\b|\b(?:around |at )?(?:noon|midday|lunch ?time)\b/,
  // "at 3 pm", "around 10:30"; a bare "at 42" followed by more words is an address, not a time.
  /\b(?:at|around|after|before|by)\s+\d{1,2}(?::\d{2})?\s*(?:a\.?m\.?|p\.?m\.?|o'?clock)(?=\W|$)|\b(?:at|around|after|before|by)\s+(?:1[0-2]|[1-9])(?::[0-5]\d)?(?=\s*(?:[.,!?;]|$|\s(?:in|on|or|and|if|then|tomorrow|today|tonight)\b))|\b\d{1,2}(?::\d{2})?\s*(?:a\.?m\.?|p\.?m\.?)(?=\W|$)/,
  /\b(?:as soon as possible|asap|right away|any ?time|first available|earliest)\b/,
];

/** "tomorrow morning", "next Tuesday at 3 pm", "March 5th": the time phrases, in the caller's order. */
export function extractPreferredTime(text: string): string | null {
  // "Good morning" is a greeting, not a time.
  const lower = text.toLowerCase().replace(/\bgood (?:morning|afternoon|evening|night|day)\b/g, ' ');
  const found: Array<{ at: number; phrase: string }> = [];
  for (const pattern of TIME_PATTERNS) {
    const m = pattern.exec(lower);
    if (m === null) continue;
    const phrase = m[0].trim().replace(/\s+/g, ' ');
    // A phrase inside one already found ("morning" in "this morning") adds nothing.
    if (phrase.length > 0 && !found.some((f) => f.phrase.includes(phrase) || phrase.includes(f.phrase))) {
      found.push({ at: m.index, phrase });
    }
  }
  if (found.length === 0) return null;
  return found
    .sort((a, b) => a.at - b.at)
    .map((f) => f.phrase)
    .join(' ');
}

/** Every piece of equipment the caller names, as canonical labels in the order they were said. */
export function extractAllEquipment(text: string): string[] {
  const lower = text.toLowerCase();
  const found: Array<{ at: number; label: string }> = [];
  for (const [pattern, label] of EQUIPMENT) {
    const m = pattern.exec(lower);
    if (m !== null && !found.some((f) => f.label === label)) found.push({ at: m.index, label });
  }
  return found.sort((a, b) => a.at - b.at).map((f) => f.label);
}

/** The first piece of equipment the caller names, as a canonical label. */
export function extractEquipment(text: string): string | null {
  return extractAllEquipment(text)[0] ?? null;
}

/**
 * Equipment labels that name the same system or part of it ("sewer line" is the main drain, a
 * boiler heats like a furnace). Used to tell "the same problem, other words" from "another problem".
 */
const EQUIPMENT_FAMILIES: ReadonlyArray<readonly string[]> = [
  ['furnace', 'boiler', 'heat pump', 'radiator', 'air handler', 'ductwork'],
  ['air conditioner', 'heat pump', 'mini split', 'air handler', 'ductwork'],
  ['water heater', 'tankless water heater'],
  ['drain', 'sewer line', 'garbage disposal', 'sump pump'],
  ['pipe', 'gas line'],
];

/** True when two equipment labels are the same thing or belong to one family. */
export function relatedEquipment(a: string, b: string): boolean {
  return a === b || EQUIPMENT_FAMILIES.some((family) => family.includes(a) && family.includes(b));
}

/** 'high' for emergencies and today/ASAP, 'low' for "no rush", 'normal' for "soon" or "this week". */
export function extractUrgency(text: string): Urgency | null {
  const lower = text.toLowerCase();
  if (URGENCY_LOW.test(lower)) return 'low';
  if (URGENCY_HIGH.test(lower)) return 'high';
  if (URGENCY_NORMAL.test(lower)) return 'normal';
  return null;
}

const EXTRACTORS: Readonly<Record<string, Extractor>> = {
  callerName: extractCallerName,
  callbackNumber: extractCallbackNumber,
  serviceAddress: extractServiceAddress,
  preferredTime: extractPreferredTime,
  equipment: extractEquipment,
  urgency: extractUrgency,
};

/**
 * Captures the slots named in `slotNames` from one utterance and merges them over `previous`.
 * A slot is replaced only when the utterance states a value for it; `changed` lists the slots whose
 * value is new or different. Slot names without an extractor are ignored. Never throws.
 */
export function captureSlots(utterance: string, previous: Slots, slotNames: readonly string[]): SlotCapture {
  const base: Record<string, string> = { ...(previous ?? {}) };
  const changed: string[] = [];
  const text = clean(utterance);
  if (text.trim().length === 0) return { slots: base, changed };
  for (const name of slotNames) {
    const extract = Object.hasOwn(EXTRACTORS, name) ? EXTRACTORS[name] : undefined;
    if (extract === undefined) continue;
    let value: string | null = null;
    try {
      value = extract(text);
    } catch {
      // A pattern that trips over odd input just means this slot was not heard this turn.
      value = null;
    }
    if (value !== null && value.length > 0 && base[name] !== value) {
      base[name] = value;
      changed.push(name);
    }
  }
  return { slots: base, changed };
}
