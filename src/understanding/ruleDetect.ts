/**
 * Rule-based situation detection: which template category the caller is in, and the flags the call
 * must react to whatever the category (emergency, wants a human, goodbye, out of scope).
 *
 * The category comes from the templates themselves: each category's words (category name, cues,
 * triggers, examples) weighted by how specific they are to it, plus Tier 1's trigger matches, plus
 * what the captured slots add (the equipment named, an urgency). The flags come from built-in,
 * trade-independent phrase patterns. Out of scope means the utterance talks about things no
 * template covers: a built-in lexicon of common off-topic subjects (food, weather, jobs, legal
 * questions, cars, unrelated appliances and trades …) that the template does not itself mention,
 * or almost no word the templates know.
 */
import type { SituationFlags, Slots } from '../../machines/types.ts';
import type { TemplateConfig } from '../config/companyConfig.ts';
import type { TemplateIndex } from '../routing/normalize.ts';
import { indexTemplates, isContent, isStopword, stem, tokenize } from '../routing/normalize.ts';
import type { Tier1Matcher } from '../routing/tier1Rules.ts';
import { createTier1Matcher } from '../routing/tier1Rules.ts';

/** What the rules concluded about one utterance. */
export interface RuleDetection {
  readonly category: string | null;
  readonly confidence: number;
  readonly flags: SituationFlags;
}

export type RuleDetector = (utterance: string, slots: Slots) => RuleDetection;

export interface RuleDetectorOptions {
  /** A prebuilt index of the same templates (the company router shares one across stages). */
  readonly index?: TemplateIndex;
  /** The company's Tier 1 matcher, reused for trigger evidence. */
  readonly tier1?: Tier1Matcher;
}

/**
 * Subjects callers raise with a home-services or office line that are rarely its business. A word
 * here counts as off-topic only when none of the company's templates uses it, so a template that
 * does talk about refrigerators or roofs keeps those words in scope.
 */
const OFF_TOPIC_WORDS =
  `pizza burger burgers sandwich sushi restaurant restaurants menu takeout groceries grocery coffee
dinner lunch breakfast recipe weather forecast rain raining snow snowing sunny tornado hurricane hiring
career careers resume apprentice apprentices apprenticeship internship salary employment recruiter lawyer
attorney sue suing lawsuit legal court judge rights eviction evict divorce custody mortgage bitcoin taxes
lottery refrigerator refrigerators fridge freezer dishwasher dishwashers washer
dryer microwave oven stove tv television laptop computer printer router wifi internet password roof roofs
roofing shingle shingles gutter gutters solar landscaping lawn mowing painting painter carpet carpets
termite termites exterminator pest locksmith asphalt paving car cars truck vehicle transmission tire tires
brakes mechanic doctor dentist hospital pharmacy prescription flu vaccine symptoms medicine movie movies
football basketball baseball soccer concert tickets music song joke jokes flight flights airline hotel
vacation passport taxi puppy veterinarian vet insurance plumber plumbers plumbing electrician electricians
electrical outlets roofer roofers carpenter carpentry handyman landscaper mason masonry`
    .split(/\s+/)
    .filter((w) => w.length > 0);

const OFF_TOPIC_PHRASES =
  /\b(?:washing machine|oil change|job openings?|job application|work for you|apply for (?:a|the) (?:job|position)|real estate|car insurance|life insurance|solar panels?|garage door|ice maker)\b/;

const EMERGENCY_PATTERNS: readonly RegExp[] = [
  /\bsmell(?:s|ing|ed)? (?:of |like )?(?:gas|propane|rotten eggs?)\b/,
  /\bgas (?:leak|leaking|smell)\b|\brotten eggs?\b|\bcarbon monoxide\b|\bco (?:alarm|detector|monitor)\b/,
  /\b(?:on fire|caught fire|flames?|sparks?|sparking|smoke (?:is )?(?:coming|pouring)|burning smell|smells? (?:like )?burning)\b/,
  /\b(?:flood|flooding|flooded)\b|\bwater (?:is )?(?:pouring|gushing|spraying|everywhere)\b/,
  /\b(?:burst|bursting|busted|broken|cracked) (?:water )?(?:pipe|pipes|main|line)\b|\bpipes? (?:burst|broke|exploded|split)\b/,
  /\bsewage\b.{0,30}\b(?:backing|coming|overflow|everywhere|basement)|\bsewage back ?up\b/,
  /\bpipes? (?:are |is )?(?:freezing|frozen)\b/,
];
const EXPLICIT_EMERGENCY = /\bemergency\b/;
const NOT_EMERGENCY = /\b(?:not|no|is not|nothing) (?:an? |really |like an? )?emergency\b/;
const OUTAGE =
  /\b(?:no (?:heat|heating|ac|air|cooling|hot water|water)|(?:heat|heating|furnace|ac|air conditioner|boiler) (?:is |went |has )?(?:out|off|dead|died|broken|not working|quit|stopped))\b/;
const VULNERABLE =
  /\b(?:baby|babies|infant|newborn|toddler|elderly|senior|grandmother|grandfather|grandma|grandpa|disabled|pregnant|oxygen|medical condition|sick)\b/;
const EXTREME = /\b(?:freezing|below zero|sub zero|frozen|heat wave|over 100|100 degrees|dangerously)\b/;

const HUMAN_PATTERNS: readonly RegExp[] = [
  /\b(?:real|live|actual) (?:person|human|people|agent|representative|operator)\b/,
  /\bhuman(?: being)?\b|\brepresentative\b|\boperator\b|\bcustomer (?:service|support)\b/,
  /\b(?:speak|talk) (?:to|with) (?:someone|somebody|anyone|a person|the manager|a manager|your manager|a supervisor|your supervisor|the owner|the office|a dispatcher|the dispatcher|an employee)\b/,
  /\btransfer me\b|\bput me through\b|\bconnect me (?:to|with)\b/,
  /(?<!\b(?:insurance|real estate|travel|estate) )\bagent\b/,
];
const NOT_HUMAN =
  /\b(?:do not|don't|no) (?:need|want) (?:to (?:talk|speak) (?:to|with) )?(?:a |an )?(?:person|human|agent|representative)\b/;

const GOODBYE_PATTERNS: readonly RegExp[] = [
  /\b(?:bye|goodbye|good bye|bye bye)\b/,
  /\bthat is (?:all|everything|it)(?: for (?:now|me|today))?\b/,
  /\bhave a (?:good|nice|great|wonderful|blessed) (?:day|one|night|evening|weekend|afternoon)\b/,
  /\b(?:talk to you later|take care|see you)\b/,
];
/** A goodbye is short; "that is it" inside a long problem description is not one. */
const GOODBYE_MAX_WORDS = 14;

const DECISIVE = 0.7;

const OFF_TOPIC: ReadonlySet<string> = new Set(OFF_TOPIC_WORDS);

/** Category vocabulary: token → weight per category (specific words weigh more). */
function categoryVocabulary(
  templates: readonly TemplateConfig[],
  index: TemplateIndex,
): Map<string, Map<string, number>> {
  const raw = new Map<string, Map<string, number>>();
  const add = (token: string, category: string, weight: number): void => {
    if (isStopword(token)) return;
    const byCategory = raw.get(token) ?? new Map<string, number>();
    byCategory.set(category, Math.max(byCategory.get(category) ?? 0, weight));
    raw.set(token, byCategory);
  };
  for (const template of templates) {
    for (const category of template.categories) {
      for (const cue of [category.name, ...category.cues]) {
        for (const t of index.normalize(cue).tokens) add(t, category.name, 1);
      }
      for (const s of category.scenarios) {
        for (const text of [...s.triggers, ...s.examples])
          for (const t of index.normalize(text).tokens) add(t, category.name, 0.8);
      }
    }
  }
  // A word used by several categories says less about each of them.
  for (const byCategory of raw.values()) {
    const share = 1 / byCategory.size;
    for (const [category, weight] of byCategory) byCategory.set(category, weight * share);
  }
  return raw;
}

function anyMatch(patterns: readonly RegExp[], text: string): boolean {
  return patterns.some((p) => p.test(text));
}

/**
 * Builds the detector for a company's templates. Call it with the slots captured so far; when the
 * slots add evidence (the equipment named, an urgency) the answer can change.
 */
export function createRuleDetector(
  templates: readonly TemplateConfig[],
  options: RuleDetectorOptions = {},
): RuleDetector {
  const index = options.index ?? indexTemplates(templates);
  const tier1 = options.tier1 ?? createTier1Matcher(templates, { index });
  const vocabulary = categoryVocabulary(templates, index);
  const emergencyCategory = index.categories.find((c) => /emergenc/i.test(c)) ?? null;
  const transferCategories = new Set(
    index.scenarios.filter((e) => e.scenario.action === 'transfer').map((e) => e.category),
  );
  const endingCategories = new Set(index.scenarios.filter((e) => e.scenario.endsCall).map((e) => e.category));
  // A function word the templates happen to use ("right" now) does not make "rights" a topic of theirs.
  const knowsTopic = (token: string): boolean => !isStopword(token) && index.knownTokens.has(token);

  const scoreCategories = (
    tokens: readonly string[],
    extra: ReadonlyArray<readonly [string, number]>,
  ): Map<string, number> => {
    const scores = new Map<string, number>();
    let mass = 0;
    const credit = (token: string, weight: number): void => {
      mass += weight;
      for (const [category, w] of vocabulary.get(token) ?? [])
        scores.set(category, (scores.get(category) ?? 0) + w * weight);
    };
    for (const t of tokens) if (!isStopword(t)) credit(t, 1);
    for (const [t, weight] of extra) credit(t, weight);
    if (mass > 0) for (const [c, s] of scores) scores.set(c, s / Math.max(1, mass));
    return scores;
  };

  return (utterance: string, slots: Slots): RuleDetection => {
    const text = typeof utterance === 'string' ? utterance.slice(0, 2000) : '';
    const plain = tokenize(text).join(' ');
    const normalized = index.normalize(text);
    const verdict = tier1(text);

    // Slots captured earlier in the call are evidence too, at half weight.
    const extra: Array<[string, number]> = [];
    const equipment = slots['equipment'];
    if (equipment !== undefined) for (const t of index.normalize(equipment).tokens) extra.push([t, 0.5]);
    if (slots['urgency'] === 'high')
      for (const t of index.normalize('emergency urgent').tokens) extra.push([t, 0.5]);

    const hazard = anyMatch(EMERGENCY_PATTERNS, plain);
    const explicit = EXPLICIT_EMERGENCY.test(plain) && !NOT_EMERGENCY.test(plain);
    const vulnerable = VULNERABLE.test(plain) || EXTREME.test(plain);
    const outage = OUTAGE.test(plain) || OUTAGE.test(normalized.text);
    if (emergencyCategory !== null && (hazard || explicit || (outage && vulnerable))) {
      for (const t of index.normalize(emergencyCategory).tokens) extra.push([t, 1]);
    }

    const scores = scoreCategories(normalized.tokens, extra);
    const ranked = [...scores].sort((a, b) => b[1] - a[1]);
    let category = ranked[0]?.[0] ?? null;
    const top = ranked[0]?.[1] ?? 0;
    const second = ranked[1]?.[1] ?? 0;
    let confidence = top > 0 ? top * (1 - (0.5 * second) / top) : 0;
    if (verdict.category !== null) {
      if (verdict.category === category) confidence = Math.max(confidence, verdict.confidence);
      else if (verdict.confidence >= Math.max(DECISIVE, confidence)) {
        category = verdict.category;
        confidence = verdict.confidence;
      }
    }

    const words = normalized.tokens.length;
    const emergency =
      hazard ||
      explicit ||
      (outage && vulnerable) ||
      (slots['urgency'] === 'high' && vulnerable) ||
      (category !== null && category === emergencyCategory && confidence >= DECISIVE);
    const wantsHuman =
      (anyMatch(HUMAN_PATTERNS, plain) && !NOT_HUMAN.test(plain)) ||
      (verdict.category !== null &&
        transferCategories.has(verdict.category) &&
        verdict.confidence >= DECISIVE);
    const goodbye =
      (anyMatch(GOODBYE_PATTERNS, plain) && words <= GOODBYE_MAX_WORDS) ||
      (verdict.category !== null && endingCategories.has(verdict.category) && verdict.confidence >= DECISIVE);

    // Out of scope: an off-topic subject the templates never mention, or (in a real sentence)
    // hardly a word the templates know. Words of captured slots (names, streets) are not evidence.
    const slotWords = new Set(
      ['callerName', 'serviceAddress'].flatMap((name) =>
        slots[name] === undefined ? [] : tokenize(slots[name] ?? '').map(stem),
      ),
    );
    const topic = normalized.tokens.filter((t) => isContent(t) && !slotWords.has(t));
    // Looked up by surface word: stems blur "rights" into "right".
    const offTopic =
      plain.split(' ').some((w) => OFF_TOPIC.has(w) && !knowsTopic(stem(w)) && !slotWords.has(stem(w))) ||
      OFF_TOPIC_PHRASES.test(plain);
    const known = topic.filter((t) => index.knownTokens.has(t)).length;
    // Several topic words and (almost) none known, unless a trigger already half-matched.
    const unfamiliar =
      (topic.length >= 2 && known === 0) ||
      (topic.length >= 3 && known / topic.length <= 0.25 && verdict.confidence < 0.5);
    // Strong evidence for a category, or a flag the call must act on, outweighs a stray word.
    const decided =
      verdict.confidence >= DECISIVE || confidence >= DECISIVE || emergency || wantsHuman || goodbye;
    const outOfScope = !decided && (offTopic || unfamiliar);

    if (outOfScope) {
      // Unknown words alone are weak evidence (a name or a street the caller just gave): below the
      // usual reconcile threshold, so detect runs again once capture has them as slots.
      return {
        category: null,
        confidence: offTopic ? 0.8 : 0.5,
        flags: { emergency, wantsHuman, goodbye, outOfScope },
      };
    }
    return {
      category: confidence > 0 ? category : null,
      confidence: Math.round(Math.min(1, confidence) * 1000) / 1000,
      flags: { emergency, wantsHuman, goodbye, outOfScope },
    };
  };
}
