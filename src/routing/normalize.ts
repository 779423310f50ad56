/**
 * Text normalisation shared by every rule and embedding matcher. Triggers, examples and caller
 * utterances all go through the same function, so whatever it does (contractions, filler removal,
 * synonyms, stemming) is symmetric: a trigger and an utterance meaning the same thing end up as the
 * same tokens. {@link indexTemplates} builds, once per company, the normaliser together with the
 * scenario list and vocabulary that Tier 1, Tier 2 and detect share.
 */
import type { Scenario, TemplateConfig } from '../config/companyConfig.ts';

/** The normalised form of one text. */
export interface NormalizedText {
  /** Lower-case words with fillers removed and synonyms replaced by their canonical key. */
  readonly text: string;
  /** The words of `text`, each folded by {@link stem} (plural, -ing, -ed): what matchers compare. */
  readonly tokens: readonly string[];
}

export type Normalizer = (text: string) => NormalizedText;

/**
 * Function words, pronouns, auxiliaries and "light" verbs: they glue a sentence together but do
 * not say what it is about. Matchers ignore them when they weigh how much of an utterance a
 * trigger explains. Negations ("not", "no", "never") are deliberately absent: they change meaning.
 */
const STOPWORD_SURFACES = `a an the and or but if so than then to of in on at by for with from about into onto
over under up down out off as i me my mine myself we us our ours you your yours yourself he him his she her
it its they them their theirs this that these those there here what which who whom whose when where why
how is am are was were be been being do does did doing done have has had having get gets got getting gotten
go goes going went gone come comes came coming make makes made making take takes took want wants wanted need
needs needed like would could should can will shall may might must let know think see say said tell ask
look looking give try call calling called keep keeps just also too very really all any some each every
much many more most other another such own same only again still even ever yes yeah yep ok okay well um uh
hmm oh hi hey please guy guys folks anyone anybody someone somebody something anything thing things stuff
kind sort bit lot one sure right now soon actually basically maybe probably thank thanks alright`
  .split(/\s+/)
  .filter((w) => w.length > 0);

/**
 * Words that carry slot values (when, how many) rather than a topic: an unmatched time word in an
 * utterance is neither evidence for nor against a scenario.
 */
const NEUTRAL_SURFACES =
  `today tonight tomorrow yesterday morning afternoon evening night noon midnight week weeks
weekend month months year next last monday tuesday wednesday thursday friday saturday sunday mon tue tues wed
thu thur thurs fri sat sun january february march april june july august september october november december
jan feb mar apr jun jul aug sep sept oct nov dec am pm o'clock oclock zero oh one two three four five six
seven eight nine ten eleven twelve fifteen twenty thirty forty fifty hundred first second third fourth fifth
half quarter hour hours minute minutes time`
    .split(/\s+/)
    .filter((w) => w.length > 0);

/** Pronoun-like words whose "'s" means "is" ("it's", "what's"); elsewhere "'s" is a possessive. */
const IS_CONTRACTIONS = new Set(
  'it that what there here he she who where how when why everything nothing something someone somebody one this'.split(
    ' ',
  ),
);

/**
 * A light stemmer after Porter's steps 1 and 5: folds plurals and -ing/-ed endings so "pipes",
 * "leaking", "stopped" and "charged" meet "pipe", "leak", "stop" and "charge", while short words
 * keep their final "e" so "care" never meets "car" nor "note" meets "not". It over-stems a few
 * words ("news" → "new"); that is harmless because every text goes through it.
 */
export function stem(word: string): string {
  const irregular = IRREGULAR.get(word);
  if (irregular !== undefined) return irregular;
  if (word.length <= 3 || !/^[a-z]+$/.test(word)) return word;
  let w = foldPlural(word);
  if (w === word) w = stripVerbSuffix(w);
  // Porter step 5: a final "e" goes unless the word is short and would become a c-v-c stem.
  if (w.endsWith('e') && !w.endsWith('ee')) {
    const base = w.slice(0, -1);
    const m = measure(base);
    if (m > 1 || (m === 1 && !endsCvc(base))) return base;
  }
  return w;
}

function stripVerbSuffix(w: string): string {
  if (w.endsWith('ied')) return w.length <= 4 ? `${w.slice(0, -3)}ie` : `${w.slice(0, -3)}y`;
  let base: string;
  if (w.endsWith('ing') && !KEEP_ING.test(w) && w.length >= 6 && hasVowel(w.slice(0, -3)))
    base = w.slice(0, -3);
  else if (w.endsWith('ed') && !w.endsWith('eed') && w.length >= 5 && hasVowel(w.slice(0, -2)))
    base = w.slice(0, -2);
  else return w;
  // Porter step 1b: "stopp" → "stop", "rat" → "rate", "troubl" → "trouble".
  const last = base.at(-1) ?? '';
  if (
    base.length > 2 &&
    last === base.at(-2) &&
    !'lsz'.includes(last) &&
    isConsonant(base, base.length - 1)
  ) {
    return base.slice(0, -1);
  }
  if (/(?:at|bl|iz)$/.test(base) || (measure(base) === 1 && endsCvc(base))) return `${base}e`;
  return base;
}

function isConsonant(w: string, i: number): boolean {
  const c = w[i];
  if (c === undefined || 'aeiou'.includes(c)) return false;
  return c !== 'y' || i === 0 || !isConsonant(w, i - 1);
}

/** Porter's m: the number of vowel-consonant sequences in a word. */
function measure(w: string): number {
  let m = 0;
  let previousVowel = false;
  for (let i = 0; i < w.length; i++) {
    const vowel = !isConsonant(w, i);
    if (previousVowel && !vowel) m += 1;
    previousVowel = vowel;
  }
  return m;
}

/** Ends consonant-vowel-consonant with the last not w, x or y ("hop", "car", "not"). */
function endsCvc(w: string): boolean {
  const n = w.length;
  return (
    n >= 3 &&
    isConsonant(w, n - 1) &&
    !isConsonant(w, n - 2) &&
    isConsonant(w, n - 3) &&
    !'wxy'.includes(w[n - 1] ?? '')
  );
}

/** Irregular verb forms callers use about things breaking, leaking and arriving, to their stem. */
const IRREGULAR: ReadonlyMap<string, string> = new Map(
  Object.entries({
    broke: 'break',
    broken: 'break',
    froze: 'freez',
    frozen: 'freez',
    blew: 'blow',
    blown: 'blow',
    fell: 'fall',
    fallen: 'fall',
    swollen: 'swell',
    ran: 'run',
    came: 'come',
    went: 'go',
    gone: 'go',
    did: 'do',
    done: 'do',
    got: 'get',
    gotten: 'get',
    made: 'make',
    took: 'take',
    taken: 'take',
    gave: 'give',
    given: 'give',
    said: 'say',
    told: 'tell',
    thought: 'think',
    bought: 'buy',
    brought: 'bring',
    kept: 'keep',
    paid: 'pay',
    sent: 'send',
    spent: 'spend',
    built: 'build',
    burnt: 'burn',
    bent: 'bend',
    stuck: 'stick',
    worn: 'wear',
    torn: 'tear',
    shook: 'shake',
    began: 'begin',
    begun: 'begin',
    knew: 'know',
    known: 'know',
    found: 'find',
    heard: 'hear',
    lost: 'lose',
    sold: 'sell',
    wrote: 'write',
    written: 'write',
    drove: 'drive',
    driven: 'drive',
    rang: 'ring',
    rung: 'ring',
    felt: 'feel',
    leapt: 'leap',
    dealt: 'deal',
    meant: 'mean',
  }),
);

/** Words whose "-ing" is not a suffix. */
const KEEP_ING = /(?:thing|^morning|^evening|^ceiling|^during|^spring|^string|^awning)$/;

/**
 * Folds only plural endings ("air conditioners" → "air conditioner", "batteries" → "battery"):
 * synonym and filler phrases are looked up by this, not by {@link stem}, so that the noun
 * "booking" and the verb "book" stay apart.
 */
export function foldPlural(word: string): string {
  const w = word;
  if (w.length <= 3 || !/^[a-z]+$/.test(w)) return w;
  if (w.endsWith('sses')) return w.slice(0, -2);
  if (w.endsWith('ies')) return w.length <= 4 ? `${w.slice(0, -3)}ie` : `${w.slice(0, -3)}y`;
  if (/(?:x|ch|sh|z)es$/.test(w)) return w.slice(0, -2);
  if (w.endsWith('s') && !/(?:ss|us|is)$/.test(w)) return w.slice(0, -1);
  return w;
}

function hasVowel(s: string): boolean {
  return /[aeiouy]/.test(s);
}

const STOPWORDS: ReadonlySet<string> = new Set(STOPWORD_SURFACES.flatMap((w) => [w, stem(w)]));
const NEUTRAL: ReadonlySet<string> = new Set(NEUTRAL_SURFACES.flatMap((w) => [w, stem(w)]));

/** True for a (stemmed or surface) token that says nothing about the topic ("the", "my", "want"). */
export function isStopword(token: string): boolean {
  return STOPWORDS.has(token);
}

/** True for a time or number word: slot content, not topic evidence. */
export function isNeutral(token: string): boolean {
  return NEUTRAL.has(token) || /^\d/.test(token);
}

/** True when a token carries topic: not a stopword, not a time or number word. */
export function isContent(token: string): boolean {
  return !isStopword(token) && !isNeutral(token);
}

/**
 * Lower-cases, unifies apostrophes and dashes, expands contractions and splits into words. Only
 * letters, digits and in-word apostrophes survive; "a/c" and "t-stat" become "a c" and "t stat".
 */
export function tokenize(text: string): string[] {
  const lowered = text
    .normalize('NFKC')
    .toLowerCase()
    .replace(/[\u2018\u2019\u201b\u02bc\u0060\u00b4]/g, "'")
    .replace(/%/g, ' percent ')
    .replace(/&/g, ' and ')
    .replace(/[^a-z0-9']+/g, ' ');
  const words: string[] = [];
  for (const raw of lowered.split(' ')) {
    const word = raw.replace(/^'+|'+$/g, '');
    if (word.length === 0) continue;
    for (const part of expandContraction(word)) words.push(part);
  }
  return words;
}

function expandContraction(word: string): string[] {
  if (!word.includes("'")) return word === 'cannot' ? ['can', 'not'] : [word];
  if (word === "won't") return ['will', 'not'];
  if (word === "can't") return ['can', 'not'];
  if (word === "shan't") return ['shall', 'not'];
  if (word === "ain't") return ['is', 'not'];
  if (word === "let's") return ['let', 'us'];
  const match = /^(.+?)(n't|'re|'ve|'ll|'d|'m|'s)$/.exec(word);
  if (match === null) return [word.replace(/'/g, '')];
  const base = (match[1] ?? '').replace(/'/g, '');
  switch (match[2]) {
    case "n't":
      return [base, 'not'];
    case "'re":
      return [base, 'are'];
    case "'ve":
      return [base, 'have'];
    case "'ll":
      return [base, 'will'];
    case "'d":
      return [base, 'would'];
    case "'m":
      return [base, 'am'];
    default:
      return IS_CONTRACTIONS.has(base) ? [base, 'is'] : [base];
  }
}

/**
 * Phrases to replace. A one-word phrase is compared after plural folding only, so the noun
 * "booking" never swallows the verb "book"; a longer phrase is specific enough to compare by stem,
 * so "backed up" also finds "backing up". Multi-word phrases are keyed by their first stem and
 * kept longest first.
 */
interface PhraseTable {
  readonly single: Map<string, readonly string[]>;
  readonly multi: Map<string, Array<{ stems: readonly string[]; output: readonly string[] }>>;
}

function emptyTable(): PhraseTable {
  return { single: new Map(), multi: new Map() };
}

function addPhrase(table: PhraseTable, words: readonly string[], output: readonly string[]): void {
  const [first, ...rest] = words;
  if (first === undefined) return;
  // The first definition of a phrase wins.
  if (rest.length === 0) {
    if (!table.single.has(foldPlural(first))) table.single.set(foldPlural(first), output);
    return;
  }
  const stems = words.map(stem);
  const list = table.multi.get(stem(first)) ?? [];
  if (list.some((p) => p.stems.join(' ') === stems.join(' '))) return;
  list.push({ stems, output });
  list.sort((a, b) => b.stems.length - a.stems.length);
  table.multi.set(stem(first), list);
}

/** Replaces every phrase of `table` found in `words`, longest match first, left to right. */
function replacePhrases(words: readonly string[], table: PhraseTable): string[] {
  if (table.single.size === 0 && table.multi.size === 0) return [...words];
  const stems = words.map(stem);
  const out: string[] = [];
  let i = 0;
  while (i < words.length) {
    const word = words[i] ?? '';
    const hit = table.multi.get(stems[i] ?? '')?.find((p) => p.stems.every((s, k) => stems[i + k] === s));
    if (hit !== undefined) {
      out.push(...hit.output);
      i += hit.stems.length;
      continue;
    }
    out.push(...(table.single.get(foldPlural(word)) ?? [word]));
    i += 1;
  }
  return out;
}

function hasContent(words: readonly string[]): boolean {
  return words.some((w) => isContent(stem(w)));
}

/**
 * Builds the normaliser for a set of templates (their filler words and synonym maps, merged; the
 * first template wins on conflicts). Everything is precomputed here; the returned function is a
 * single pass over the words of the text.
 *
 * When removing fillers would leave nothing but function words ("Hello?", "Hi there", "Okay."),
 * the fillers are kept: then the filler *is* the message, and greeting triggers made of filler
 * words still match.
 */
export function createNormalizer(templates: readonly TemplateConfig[]): Normalizer {
  const fillers = emptyTable();
  for (const t of templates) for (const filler of t.fillerWords) addPhrase(fillers, tokenize(filler), []);
  const stripFillers = (words: readonly string[]): string[] => {
    const stripped = replacePhrases(words, fillers);
    return hasContent(stripped) ? stripped : [...words];
  };
  const synonyms = emptyTable();
  for (const t of templates) {
    for (const [key, variants] of Object.entries(t.synonymMap)) {
      const canonical = tokenize(key);
      if (canonical.length === 0) continue;
      for (const variant of [key, ...variants]) {
        // Variants go through the same steps as the text they will be looked for in.
        const words = stripFillers(tokenize(variant));
        addPhrase(synonyms, words, canonical);
      }
    }
  }
  return (text: string): NormalizedText => {
    const words = replacePhrases(stripFillers(tokenize(typeof text === 'string' ? text : '')), synonyms);
    return { text: words.join(' '), tokens: words.map(stem) };
  };
}

/** One scenario of a company's templates, with where it came from. */
export interface ScenarioEntry {
  readonly scenario: Scenario;
  readonly category: string;
  readonly templateId: string;
  /** Position in {@link TemplateIndex.scenarios}. */
  readonly index: number;
}

/**
 * Everything the matchers precompute about a company's templates, built once and shared by Tier 1,
 * Tier 2 and detect so an utterance is normalised once per turn.
 */
export interface TemplateIndex {
  /** The normaliser; it remembers its last few inputs because every stage of a turn asks again. */
  readonly normalize: Normalizer;
  /** Every scenario; a scenario id repeated in a later template is skipped (the first one wins). */
  readonly scenarios: readonly ScenarioEntry[];
  readonly byId: ReadonlyMap<string, ScenarioEntry>;
  /** Category names in template order, without repeats. */
  readonly categories: readonly string[];
  /** Topic token → indices of the scenarios whose triggers, examples or category cues use it. */
  readonly scenarioVocabulary: ReadonlyMap<string, ReadonlySet<number>>;
  /** Every token the templates use anywhere, replies and synonyms included: the domain's words. */
  readonly knownTokens: ReadonlySet<string>;
}

/** Wraps a normaliser with a tiny most-recent cache: one turn normalises the same text several times. */
function memoize(normalize: Normalizer, size: number): Normalizer {
  const cache = new Map<string, NormalizedText>();
  return (text) => {
    const hit = cache.get(text);
    if (hit !== undefined) return hit;
    const result = normalize(text);
    if (cache.size >= size) {
      const oldest = cache.keys().next();
      if (oldest.done !== true) cache.delete(oldest.value);
    }
    cache.set(text, result);
    return result;
  };
}

/** Builds the {@link TemplateIndex} of a company's templates. */
export function indexTemplates(templates: readonly TemplateConfig[]): TemplateIndex {
  const normalize = memoize(createNormalizer(templates), 8);
  const scenarios: ScenarioEntry[] = [];
  const byId = new Map<string, ScenarioEntry>();
  const categories: string[] = [];
  const scenarioVocabulary = new Map<string, Set<number>>();
  const knownTokens = new Set<string>();
  const know = (text: string): readonly string[] => {
    const tokens = normalize(text).tokens;
    for (const t of tokens) knownTokens.add(t);
    return tokens;
  };
  for (const template of templates) {
    for (const [key, variants] of Object.entries(template.synonymMap)) [key, ...variants].forEach(know);
    for (const category of template.categories) {
      if (!categories.includes(category.name)) categories.push(category.name);
      const categoryTokens = [category.name, ...category.cues].flatMap(know);
      for (const scenario of category.scenarios) {
        if (byId.has(scenario.id)) continue;
        const entry: ScenarioEntry = {
          scenario,
          category: category.name,
          templateId: template.id,
          index: scenarios.length,
        };
        scenarios.push(entry);
        byId.set(scenario.id, entry);
        scenario.replies.forEach(know);
        const topical = [...scenario.triggers, ...scenario.examples].flatMap(know).concat(categoryTokens);
        for (const token of topical) {
          if (isStopword(token)) continue;
          const set = scenarioVocabulary.get(token) ?? new Set<number>();
          set.add(entry.index);
          scenarioVocabulary.set(token, set);
        }
      }
    }
  }
  return { normalize, scenarios, byId, categories, scenarioVocabulary, knownTokens };
}
