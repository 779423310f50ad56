/**
 * Tier 1: template triggers matched against the normalised utterance. Cheap and exact, so its
 * confidence must be honest: a trigger that explains the whole utterance is a safe answer, a
 * generic one-word trigger buried in a long sentence about something else is not.
 *
 * Confidence = trigger strength × how much of the utterance the matched triggers explain:
 * - strength: a phrase match (a few function words may sit between its words) beats the same words
 *   scattered, which alone stays below 0.7; longer triggers beat shorter ones; a one-word trigger
 *   whose word other scenarios also use is weaker.
 * - explanation: every topic word of the utterance the triggers do not cover costs something —
 *   little if the scenario's own examples use it, more if it is unknown to the template, more
 *   still if other scenarios use it, most if it is one of their trigger words (the caller is
 *   probably asking about those).
 * A negative trigger vetoes its scenario; a close runner-up scenario lowers the winner's confidence.
 */
import type { ScenarioCandidate, TierResult } from '../../machines/types.ts';
import type { TemplateConfig } from '../config/companyConfig.ts';
import type { ScenarioEntry, TemplateIndex } from './normalize.ts';
import { indexTemplates, isNeutral, isStopword } from './normalize.ts';

/** A Tier 1 verdict: `providerMs` is always 0. */
export type Tier1Verdict = TierResult;

/** Matches one caller utterance against the company's triggers. Synchronous and allocation-light. */
export type Tier1Matcher = (utterance: string) => Tier1Verdict;

export interface Tier1Options {
  /** A prebuilt index of the same templates (the company router shares one across stages). */
  readonly index?: TemplateIndex;
}

interface CompiledTrigger {
  readonly tokens: readonly string[];
  /** The topic words of the trigger (all of its words when it has none, e.g. "that's all"). */
  readonly meaningful: readonly string[];
  /** True when the trigger is made only of function words: then only an exact phrase counts. */
  readonly functionOnly: boolean;
  /** Number of other scenarios whose vocabulary holds this trigger's single topic word. */
  readonly sharedBy: number;
}

interface CompiledScenario {
  readonly entry: ScenarioEntry;
  readonly triggers: readonly CompiledTrigger[];
  readonly negatives: readonly CompiledTrigger[];
}

interface TriggerHit {
  readonly strength: number;
  readonly positions: readonly number[];
}

interface CompiledTemplate {
  readonly index: TemplateIndex;
  readonly scenarios: readonly CompiledScenario[];
  /** Topic word → scenarios whose triggers use it. */
  readonly triggerWords: ReadonlyMap<string, ReadonlySet<number>>;
}

/** Function words allowed between two words of a phrase trigger ("ac is not cooling" ~ "ac not cooling"). */
const MAX_GAP = 2;

// Weights of an unexplained topic word, by what the template knows about it. A word another
// scenario's triggers use ("fee" while "come out" matched booking) argues hardest against.
const COST_OWN_WORD = 0.1;
const COST_UNKNOWN_WORD = 0.4;
const COST_OTHER_SCENARIO_WORD = 0.7;
const COST_OTHER_TRIGGER_WORD = 1;

const MAX_CANDIDATES = 5;

function compileTrigger(text: string, index: TemplateIndex, own: number): CompiledTrigger | null {
  const tokens = index.normalize(text).tokens;
  if (tokens.length === 0) return null;
  const topic = tokens.filter((t) => !isStopword(t));
  const first = topic[0];
  const sharedBy =
    topic.length === 1 && first !== undefined
      ? [...(index.scenarioVocabulary.get(first) ?? [])].filter((i) => i !== own).length
      : 0;
  return {
    tokens,
    meaningful: topic.length > 0 ? topic : tokens,
    functionOnly: topic.length === 0,
    sharedBy,
  };
}

/**
 * Finds `trigger` as a phrase in `tokens`: its words in order, with at most {@link MAX_GAP}
 * function words between consecutive ones (none for function-only triggers).
 */
function phraseMatch(tokens: readonly string[], trigger: CompiledTrigger): number[] | null {
  const words = trigger.tokens;
  const maxGap = trigger.functionOnly ? 0 : MAX_GAP;
  for (let start = 0; start < tokens.length; start++) {
    if (tokens[start] !== words[0]) continue;
    const positions = [start];
    let at = start;
    for (let k = 1; k < words.length && positions.length === k; k++) {
      for (let p = at + 1; p < tokens.length && p - at - 1 <= maxGap; p++) {
        const token = tokens[p] ?? '';
        if (token === words[k]) {
          positions.push(p);
          at = p;
          break;
        }
        if (!isStopword(token)) break;
      }
    }
    if (positions.length === words.length) return positions;
  }
  return null;
}

/** Every topic word of a multi-word trigger present anywhere: weaker evidence than a phrase. */
function allWordsMatch(tokens: readonly string[], trigger: CompiledTrigger): number[] | null {
  if (trigger.functionOnly || trigger.meaningful.length < 2) return null;
  const positions: number[] = [];
  for (const word of trigger.meaningful) {
    const p = tokens.indexOf(word);
    if (p < 0) return null;
    positions.push(p);
  }
  return positions;
}

function matchTrigger(tokens: readonly string[], trigger: CompiledTrigger): TriggerHit | null {
  const m = trigger.meaningful.length;
  const phrase = phraseMatch(tokens, trigger);
  if (phrase !== null) {
    let strength = trigger.functionOnly ? 0.8 : m === 1 ? 0.8 : m === 2 ? 0.9 : 0.95;
    // A one-word trigger other scenarios also talk about ("cover", "service") proves little.
    if (!trigger.functionOnly && m === 1) strength -= 0.06 * Math.min(3, trigger.sharedBy);
    return { strength, positions: phrase };
  }
  // Scattered words are weaker evidence than a phrase: alone they stay below the usual 0.7
  // threshold unless the caller kept the trigger's order or said three of its words.
  const loose = allWordsMatch(tokens, trigger);
  if (loose === null) return null;
  const span = Math.max(...loose) - Math.min(...loose) + 1;
  const ordered = loose.every((p, i) => i === 0 || p > (loose[i - 1] ?? -1));
  const tight = span <= m + 2;
  const strength =
    (m === 2 ? 0.68 : 0.74) + (ordered ? 0.02 : 0) + (tight ? 0.04 : 0) - (span > m + 3 ? 0.06 : 0);
  return { strength, positions: loose };
}

function isVetoed(tokens: readonly string[], compiled: CompiledScenario): boolean {
  return compiled.negatives.some((n) => phraseMatch(tokens, n) !== null || allWordsMatch(tokens, n) !== null);
}

function triggerHits(tokens: readonly string[], compiled: CompiledScenario): TriggerHit[] {
  const hits: TriggerHit[] = [];
  for (const trigger of compiled.triggers) {
    const hit = matchTrigger(tokens, trigger);
    if (hit !== null) hits.push(hit);
  }
  return hits.sort((a, b) => b.strength - a.strength);
}

/** Confidence of one scenario for a tokenised utterance, 0 when no trigger matched or a negative did. */
function scoreScenario(
  tokens: readonly string[],
  compiled: CompiledScenario,
  template: CompiledTemplate,
): number {
  const { index, triggerWords } = template;
  if (isVetoed(tokens, compiled)) return 0;
  const hits = triggerHits(tokens, compiled);
  if (hits.length === 0) return 0;
  const covered = new Set<number>();
  for (const hit of hits) for (const p of hit.positions) covered.add(p);
  const best = hits[0]?.strength ?? 0;
  const strength = Math.min(0.97, best + 0.04 * Math.min(2, hits.length - 1));

  let explained = 0;
  let unexplained = 0;
  tokens.forEach((token, p) => {
    if (covered.has(p)) {
      explained += isStopword(token) ? 0.5 : 1;
      return;
    }
    if (isStopword(token) || isNeutral(token)) return;
    const users = index.scenarioVocabulary.get(token);
    if (users === undefined) unexplained += COST_UNKNOWN_WORD;
    else if (users.has(compiled.entry.index)) unexplained += COST_OWN_WORD;
    else if (triggerWords.has(token)) unexplained += COST_OTHER_TRIGGER_WORD;
    else unexplained += COST_OTHER_SCENARIO_WORD;
  });
  return strength * Math.sqrt(explained / (explained + unexplained));
}

const compiledByIndex = new WeakMap<TemplateIndex, CompiledTemplate>();

/** Compiles every scenario's triggers once per index (Tier 1 and Tier 2 share the result). */
function compileTemplate(index: TemplateIndex): CompiledTemplate {
  const cached = compiledByIndex.get(index);
  if (cached !== undefined) return cached;
  const scenarios = index.scenarios.map((entry) => ({
    entry,
    triggers: entry.scenario.triggers.flatMap((t) => compileTrigger(t, index, entry.index) ?? []),
    negatives: entry.scenario.negativeTriggers.flatMap((t) => compileTrigger(t, index, entry.index) ?? []),
  }));
  const triggerWords = new Map<string, Set<number>>();
  for (const c of scenarios) {
    for (const t of c.triggers) {
      if (t.functionOnly) continue;
      for (const word of t.meaningful)
        triggerWords.set(word, (triggerWords.get(word) ?? new Set()).add(c.entry.index));
    }
  }
  const compiled = { index, scenarios, triggerWords };
  compiledByIndex.set(index, compiled);
  return compiled;
}

/** What a scenario's own triggers say about an utterance, apart from Tier 1's overall verdict. */
export interface TriggerEvidence {
  /** True when one of the scenario's negative triggers is in the (normalised) tokens. */
  vetoed(tokens: readonly string[], scenario: number): boolean;
  /** How many distinct topic words of the tokens `rival`'s triggers use and `winner`'s texts never do. */
  rivalTriggerWords(tokens: readonly string[], winner: number, rival: number): number;
}

/**
 * Trigger evidence for the scenarios of `index` (by {@link ScenarioEntry.index}), sharing Tier 1's
 * compiled triggers. Tier 2 uses it so that a negative trigger vetoes a scenario there too, and to
 * notice a caller using a competing scenario's trigger words.
 */
export function createTriggerEvidence(index: TemplateIndex): TriggerEvidence {
  const { scenarios: compiled, triggerWords } = compileTemplate(index);
  return {
    vetoed: (tokens, scenario) => {
      const c = compiled[scenario];
      return c !== undefined && isVetoed(tokens, c);
    },
    rivalTriggerWords: (tokens, winner, rival) =>
      new Set(
        tokens.filter(
          (t) =>
            !isStopword(t) &&
            !isNeutral(t) &&
            triggerWords.get(t)?.has(rival) === true &&
            index.scenarioVocabulary.get(t)?.has(winner) !== true,
        ),
      ).size,
  };
}

function emptyVerdict(durationMs: number): Tier1Verdict {
  return {
    confidence: 0,
    scenarioId: null,
    category: null,
    reply: null,
    endsCall: false,
    action: null,
    candidates: [],
    providerMs: 0,
    durationMs,
  };
}

/**
 * Compiles the templates' triggers once and returns the Tier 1 matcher. The verdict names the best
 * scenario (its first reply, endsCall, action) and up to five ranked candidates; `confidence` ≥ 0.7
 * means "answer this with little risk".
 */
export function createTier1Matcher(
  templates: readonly TemplateConfig[],
  options: Tier1Options = {},
): Tier1Matcher {
  const index = options.index ?? indexTemplates(templates);
  const template = compileTemplate(index);
  const compiled = template.scenarios;
  // Only scenarios sharing a topic word with the utterance can match; this index skips the rest.
  const byWord = new Map<string, CompiledScenario[]>();
  for (const c of compiled) {
    for (const word of new Set(c.triggers.flatMap((t) => t.meaningful))) {
      const list = byWord.get(word) ?? [];
      list.push(c);
      byWord.set(word, list);
    }
  }

  return (utterance: string): Tier1Verdict => {
    const started = performance.now();
    const tokens = index.normalize(utterance).tokens;
    const reachable = new Set<CompiledScenario>();
    for (const token of tokens) for (const c of byWord.get(token) ?? []) reachable.add(c);
    const scored: Array<{ c: CompiledScenario; score: number }> = [];
    for (const c of reachable) {
      const score = scoreScenario(tokens, c, template);
      if (score > 0) scored.push({ c, score });
    }
    scored.sort((a, b) => b.score - a.score);
    const candidates: ScenarioCandidate[] = scored.slice(0, MAX_CANDIDATES).map(({ c, score }) => ({
      scenarioId: c.entry.scenario.id,
      category: c.entry.category,
      score: round(score),
    }));
    const top = scored[0];
    if (top === undefined) return emptyVerdict(performance.now() - started);
    // Two scenarios matching about as well means the caller may mean either: less sure of the winner.
    const runnerUp = scored[1]?.score ?? 0;
    const confidence = Math.max(0, top.score - 0.6 * Math.max(0, runnerUp - 0.5));
    const s = top.c.entry.scenario;
    return {
      confidence: round(confidence),
      scenarioId: s.id,
      category: top.c.entry.category,
      reply: s.replies[0] ?? null,
      endsCall: s.endsCall,
      action: s.action ?? null,
      candidates,
      providerMs: 0,
      durationMs: performance.now() - started,
    };
  };
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
