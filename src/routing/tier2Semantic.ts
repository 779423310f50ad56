/**
 * Tier 2: semantic similarity between the utterance and each scenario's examples and triggers.
 *
 * A raw cosine means different things for different templates and embedders (a template with many
 * near-duplicate examples scores everything higher), so raw scores are never compared with the
 * company's threshold. Instead each matcher calibrates itself on its own template when it is built:
 *
 * - positives and confusions: every example is held out in turn and matched against the rest
 *   (leave-one-out); whether the winner was its own scenario is the label;
 * - near misses: every example is matched with its whole scenario removed, which is what an
 *   in-domain question the template does not cover looks like (always wrong to answer);
 * - off-topic: a built-in set of generic sentences from other businesses (always wrong to answer).
 *
 * A logistic model, constrained to be monotone, maps three features — the winner's score, its
 * margin over the runner-up scenario, and the share of the utterance's topic words the template
 * knows — to the probability that answering with the winner is right. That probability is the
 * confidence, so a threshold means about the same precision on every template.
 *
 * At match time independent checks then move it: Tier 1's trigger reading of the same utterance
 * (agreement adds, disagreement subtracts), the equipment the caller named (a scenario about
 * furnaces is not the answer about an air conditioner), trigger words of a close rival scenario in
 * the utterance (two requests in one), and detect's situation (out of scope halves it). None of
 * them can make Tier 2 answer a scenario the embedding did not rank first.
 */
import type { Situation, ScenarioCandidate, TierResult } from '../../machines/types.ts';
import type { TemplateConfig } from '../config/companyConfig.ts';
import type { Embedder } from '../providers/embeddings/embedder.ts';
import { extractAllEquipment, relatedEquipment } from '../understanding/ruleCapture.ts';
import { dotAll, isFittableEmbedder } from './localEmbedder.ts';
import type { TemplateIndex } from './normalize.ts';
import { indexTemplates, isContent } from './normalize.ts';
import type { Tier1Matcher } from './tier1Rules.ts';
import { createTier1Matcher, createTriggerEvidence } from './tier1Rules.ts';

/** A Tier 2 verdict; `providerMs` is the time spent in the embedder for the utterance. */
export type Tier2Verdict = TierResult;

export interface Tier2Matcher {
  /** The embedder actually used (the local one is re-fitted on the template's texts). */
  readonly embedderId: string;
  /** The fitted calibration, for inspection and tests. */
  readonly calibration: Tier2Calibration;
  match(utterance: string, situation: Situation | null, signal?: AbortSignal): Promise<Tier2Verdict>;
}

/** P(correct) = σ(bias + score·wScore + margin·wMargin + known·wKnown). */
export interface Tier2Calibration {
  readonly bias: number;
  readonly wScore: number;
  readonly wMargin: number;
  readonly wKnown: number;
  /** Number of calibration samples by label. */
  readonly positives: number;
  readonly negatives: number;
}

export interface Tier2Options {
  /** A prebuilt index of the same templates (the company router shares one across stages). */
  readonly index?: TemplateIndex;
  /** Off-topic sentences used as negatives in calibration; defaults to a built-in set. */
  readonly background?: readonly string[];
  /** The company's Tier 1 matcher: its lexical view is a second opinion on the semantic winner. */
  readonly tier1?: Tier1Matcher;
}

/**
 * Generic questions callers put to the wrong business. They are negatives for calibration only;
 * one made mostly of the template's own topic words is dropped, as it may be in its domain.
 */
const DEFAULT_BACKGROUND = [
  'can i order a large pepperoni pizza for delivery',
  'what is the weather forecast for this weekend',
  'is it going to snow tomorrow',
  'i would like to open a checking account',
  'what is my credit card balance',
  'can i book a table for two at seven',
  'do you have any job openings',
  'i want to apply for a position',
  'i need a lawyer for my divorce',
  'can you give me legal advice about my lease',
  'my car is making a noise when i brake',
  'i need an oil change and new tires',
  'can i schedule a haircut for tomorrow',
  'do you sell concert tickets',
  'what time does the pharmacy close',
  'i need to refill my prescription',
  'my internet is down again',
  'how do i reset my password',
  'can you recommend a good movie',
  'who won the game last night',
  'i want to adopt a puppy',
  'is the store selling groceries today',
  'do you deliver flowers',
  'i would like to renew my passport',
  'what are the symptoms of the flu',
  'can you help me with my taxes',
  'i want to cancel my phone plan',
  'how much is a plane ticket to denver',
  'my laptop screen is cracked',
  'do you do wedding photography',
  'what is the capital of france',
  'tell me a joke',
  'can you translate this into spanish',
  'i lost my wallet on the bus',
  'my dog is sick and will not eat',
  'where is the nearest gas station',
  'i want to sell my house',
  'can you cut my lawn this week',
  'do you clean carpets',
  'is the museum open on mondays',
];

const TOP_K = 3;
const MAX_CANDIDATES = 3;

/**
 * Per-scenario aggregate of item similarities: the best match, steadied by the next best ones
 * (0.6 × the best + 0.4 × the mean of the best `TOP_K`), from the scenario's best three in order
 * and how many items it has (at least one).
 */
function aggregate(count: number, first: number, second: number, third: number): number {
  // Summed best first, as a sort would leave them.
  const top = count === 1 ? first : count === 2 ? first + second : first + second + third;
  return 0.6 * first + 0.4 * (top / Math.min(count, TOP_K));
}

export interface Item {
  readonly scenario: number;
  readonly text: string;
  readonly isExample: boolean;
  readonly tokens: readonly string[];
  readonly tokenSet: ReadonlySet<string>;
}

export interface Ranked {
  readonly scores: readonly number[];
  readonly best: number;
  readonly second: number;
}

/** Scenario scores from an item-similarity row, skipping items `skip` rejects. Exported for tests. */
export function rank(
  sims: ArrayLike<number>,
  items: readonly Item[],
  scenarios: number,
  skip?: (i: number) => boolean,
): Ranked {
  // Each scenario's three best similarities so far, and how many it has: no array per scenario.
  const firsts = new Float64Array(scenarios).fill(-Infinity);
  const seconds = new Float64Array(scenarios).fill(-Infinity);
  const thirds = new Float64Array(scenarios).fill(-Infinity);
  const counts = new Uint32Array(scenarios);
  for (let i = 0; i < items.length; i++) {
    if (skip?.(i) === true) continue;
    const k = items[i]?.scenario ?? 0;
    if (k >= scenarios) continue;
    const sim = sims[i] ?? 0;
    counts[k] = counts[k]! + 1;
    if (sim > firsts[k]!) {
      thirds[k] = seconds[k]!;
      seconds[k] = firsts[k]!;
      firsts[k] = sim;
    } else if (sim > seconds[k]!) {
      thirds[k] = seconds[k]!;
      seconds[k] = sim;
    } else if (sim > thirds[k]!) thirds[k] = sim;
  }
  const scores: number[] = new Array<number>(scenarios);
  let best = -1;
  let second = -1;
  for (let k = 0; k < scenarios; k++) {
    const count = counts[k]!;
    const score = count === 0 ? -1 : aggregate(count, firsts[k]!, seconds[k]!, thirds[k]!);
    scores[k] = score;
    if (best < 0 || score > (scores[best] ?? -1)) {
      second = best;
      best = k;
    } else if (second < 0 || score > (scores[second] ?? -1)) second = k;
  }
  return { scores, best, second };
}

type Features = [score: number, margin: number, known: number];

function features(r: Ranked, known: number): Features {
  const s1 = r.scores[r.best] ?? 0;
  const s2 = r.second >= 0 ? Math.max(0, r.scores[r.second] ?? 0) : 0;
  return [s1, s1 - s2, known];
}

/** Share of topic words in `tokens` that `isKnown` accepts; 1 when there are none (no evidence against). */
function knownShare(tokens: Iterable<string>, isKnown: (t: string) => boolean): number {
  let topic = 0;
  let known = 0;
  for (const t of tokens) {
    if (!isContent(t)) continue;
    topic += 1;
    if (isKnown(t)) known += 1;
  }
  return topic === 0 ? 1 : known / topic;
}

function sigmoid(z: number): number {
  return 1 / (1 + Math.exp(-z));
}

/**
 * Fits P(y=1 | x) = σ(b + w·x) by gradient descent on standardised features, with w ≥ 0 (more
 * similarity, more margin and more known words can never lower confidence) and classes weighted
 * equally, then maps the weights back to raw features.
 */
function fitLogistic(
  xs: ReadonlyArray<readonly number[]>,
  ys: readonly number[],
): Omit<Tier2Calibration, 'positives' | 'negatives'> {
  const dims = 3;
  const mean = new Array<number>(dims).fill(0);
  const std = new Array<number>(dims).fill(0);
  for (const x of xs) for (let d = 0; d < dims; d++) mean[d] = (mean[d] ?? 0) + (x[d] ?? 0) / xs.length;
  for (const x of xs)
    for (let d = 0; d < dims; d++) std[d] = (std[d] ?? 0) + ((x[d] ?? 0) - (mean[d] ?? 0)) ** 2 / xs.length;
  for (let d = 0; d < dims; d++) std[d] = Math.sqrt(std[d] ?? 0) || 1;
  const z = xs.map((x) => x.map((v, d) => (v - (mean[d] ?? 0)) / (std[d] ?? 1)));
  const positives = ys.filter((y) => y === 1).length;
  const negatives = ys.length - positives;
  const weightOf = (y: number): number =>
    y === 1 ? 0.5 / Math.max(1, positives) : 0.5 / Math.max(1, negatives);
  let b = 0;
  const w = new Array<number>(dims).fill(0);
  const rate = 0.5;
  const l2 = 0.002;
  for (let iter = 0; iter < 1500; iter++) {
    let gb = 0;
    const gw = new Array<number>(dims).fill(0);
    z.forEach((x, i) => {
      const y = ys[i] ?? 0;
      const p = sigmoid(b + x.reduce((s, v, d) => s + v * (w[d] ?? 0), 0));
      const g = (p - y) * weightOf(y);
      gb += g;
      for (let d = 0; d < dims; d++) gw[d] = (gw[d] ?? 0) + g * (x[d] ?? 0);
    });
    b -= rate * gb;
    for (let d = 0; d < dims; d++) w[d] = Math.max(0, (w[d] ?? 0) - rate * ((gw[d] ?? 0) + l2 * (w[d] ?? 0)));
  }
  const raw = w.map((wd, d) => wd / (std[d] ?? 1));
  const bias = b - raw.reduce((s, rd, d) => s + rd * (mean[d] ?? 0), 0);
  return { bias, wScore: raw[0] ?? 0, wMargin: raw[1] ?? 0, wKnown: raw[2] ?? 0 };
}

function predict(c: Tier2Calibration, x: Features): number {
  return sigmoid(c.bias + c.wScore * x[0] + c.wMargin * x[1] + c.wKnown * x[2]);
}

/**
 * Tier 1's view of the same utterance as a second opinion. When its best trigger match names
 * another scenario, the two readings disagree and the semantic winner is less certain; when it names
 * the same one, the independent lexical evidence adds to the semantic confidence.
 */
function lexicalFactor(semantic: number, lexical: TierResult, scenarioId: string): number {
  if (lexical.scenarioId === null || lexical.confidence < LEXICAL_FLOOR) return semantic;
  if (lexical.scenarioId !== scenarioId) return semantic * (1 - 0.5 * lexical.confidence);
  return 1 - (1 - semantic) * (1 - 0.5 * lexical.confidence);
}

/** Below this Tier 1 has not really found a trigger; its opinion is ignored. */
const LEXICAL_FLOOR = 0.4;

/**
 * Each word of the caller's that a runner-up scenario's triggers use and the winner never does
 * ("can someone come out and *quote* a new system" won by booking, with the estimate scenario
 * close behind) means two requests may be in play: the winner keeps this share of its confidence.
 */
const RIVAL_WORD_FACTOR = 0.8;

/**
 * The equipment a scenario is about: a label named in at least half of its examples and triggers
 * ("furnace won't turn on", "the heater won't turn on" …). `mentioned` is every label any of them
 * names. A scenario that mentions equipment only in passing ("I smell gas near my furnace") is
 * about none in particular.
 */
interface ScenarioEquipment {
  readonly about: ReadonlySet<string>;
  readonly mentioned: ReadonlySet<string>;
}

function scenarioEquipment(texts: readonly string[]): ScenarioEquipment {
  const counts = new Map<string, number>();
  for (const text of texts)
    for (const label of extractAllEquipment(text)) counts.set(label, (counts.get(label) ?? 0) + 1);
  const about = [...counts].filter(([, n]) => n >= Math.max(2, texts.length / 2)).map(([label]) => label);
  return { about: new Set(about), mentioned: new Set(counts.keys()) };
}

/**
 * Similar words about different equipment are a different problem: "my air conditioner won't turn
 * on" is not the furnace scenario's "the heater won't turn on". When the caller names equipment and
 * none of it is related to what the winning scenario is about, the winner is much less likely.
 */
function equipmentFactor(utterance: string, equipment: ScenarioEquipment | undefined): number {
  if (equipment === undefined || equipment.about.size === 0) return 1;
  const named = extractAllEquipment(utterance);
  const related = named.some((n) => [...equipment.mentioned].some((m) => relatedEquipment(n, m)));
  return named.length === 0 || related ? 1 : 0.5;
}

/**
 * How a detected situation moves Tier 2's confidence: a prior, never a reason to answer. Out of
 * scope halves it; a confident detect that chose another category trims it.
 */
function situationFactor(situation: Situation | null, category: string): number {
  if (situation === null) return 1;
  if (situation.flags.outOfScope) return 0.5;
  const disagrees = situation.category !== null && situation.category !== category;
  return disagrees && situation.confidence >= 0.6 ? 0.85 : 1;
}

/**
 * Builds the Tier 2 matcher: normalises and embeds every example and trigger once (one batched
 * `embed` call, together with the calibration's off-topic sentences), then calibrates.
 */
export async function createTier2Matcher(
  templates: readonly TemplateConfig[],
  embedder: Embedder,
  options: Tier2Options = {},
): Promise<Tier2Matcher> {
  const index = options.index ?? indexTemplates(templates);
  const triggers = createTriggerEvidence(index);
  const tier1 = options.tier1 ?? createTier1Matcher(templates, { index });
  const equipment = index.scenarios.map((e) =>
    scenarioEquipment([...e.scenario.examples, ...e.scenario.triggers]),
  );
  const scenarioCount = index.scenarios.length;
  const items: Item[] = [];
  for (const entry of index.scenarios) {
    const add = (raw: string, isExample: boolean): void => {
      const n = index.normalize(raw);
      if (n.text.length === 0 || items.some((it) => it.scenario === entry.index && it.text === n.text))
        return;
      items.push({
        scenario: entry.index,
        text: n.text,
        isExample,
        tokens: n.tokens,
        tokenSet: new Set(n.tokens),
      });
    };
    entry.scenario.examples.forEach((e) => add(e, true));
    entry.scenario.triggers.forEach((t) => add(t, false));
  }
  const used = isFittableEmbedder(embedder) ? embedder.fit(items.map((it) => it.text)) : embedder;

  // Which scenarios' texts use each token (-1: only replies or synonyms), so that a held-out
  // sample can forget the words only it, or only its removed scenario, brought.
  const tokenUsers = new Map<string, Map<number, number>>();
  const noteToken = (token: string, scenario: number): void => {
    const users = tokenUsers.get(token) ?? new Map<number, number>();
    users.set(scenario, (users.get(scenario) ?? 0) + 1);
    tokenUsers.set(token, users);
  };
  for (const it of items) for (const t of it.tokenSet) noteToken(t, it.scenario);
  for (const t of index.knownTokens) if (!tokenUsers.has(t)) noteToken(t, -1);
  const knownWithout = (token: string, scenario: number, own: Item | null): boolean => {
    for (const [s, count] of tokenUsers.get(token) ?? []) {
      if (s !== scenario) return true;
      if (own !== null && count - (own.tokenSet.has(token) ? 1 : 0) > 0) return true;
    }
    return false;
  };

  // A background sentence mostly made of the template's own topic words may be in its domain.
  const background = (options.background ?? DEFAULT_BACKGROUND)
    .map((b) => index.normalize(b))
    .filter((n) => knownShare(n.tokens, (t) => index.scenarioVocabulary.has(t)) < 0.5);
  const vectors = await used.embed([...items.map((it) => it.text), ...background.map((b) => b.text)]);
  const itemVectors = vectors.slice(0, items.length);
  const backgroundVectors = vectors.slice(items.length);

  /** Ranks scenarios for a query, leaving out items `skip` rejects and scenarios a negative trigger vetoes. */
  const rankQuery = (q: Float32Array, tokens: readonly string[], skip?: (i: number) => boolean): Ranked => {
    const vetoed = index.scenarios.map((e) => triggers.vetoed(tokens, e.index));
    const sims = dotAll(q, itemVectors);
    return rank(
      sims,
      items,
      scenarioCount,
      (i) => vetoed[items[i]?.scenario ?? 0] === true || skip?.(i) === true,
    );
  };

  const xs: Features[] = [];
  const ys: number[] = [];
  const sample = (ranked: Ranked, known: number, correct: boolean): void => {
    xs.push(features(ranked, known));
    ys.push(correct ? 1 : 0);
  };
  items.forEach((it, i) => {
    const v = itemVectors[i];
    if (!it.isExample || v === undefined) return;
    // Held out: the rest of its scenario must still find it.
    const held = rankQuery(v, it.tokens, (j) => j === i);
    sample(
      held,
      knownShare(it.tokens, (t) => knownWithout(t, it.scenario, it)),
      held.best === it.scenario,
    );
    // Scenario removed: whatever wins now is a wrong answer to an in-domain question.
    if (scenarioCount > 1) {
      const removed = rankQuery(v, it.tokens, (j) => items[j]?.scenario === it.scenario);
      sample(
        removed,
        knownShare(it.tokens, (t) => knownWithout(t, it.scenario, null)),
        false,
      );
    }
  });
  background.forEach((b, i) => {
    const v = backgroundVectors[i];
    if (v !== undefined)
      sample(
        rankQuery(v, b.tokens),
        knownShare(b.tokens, (t) => tokenUsers.has(t)),
        false,
      );
  });
  const positives = ys.filter((y) => y === 1).length;
  const calibration: Tier2Calibration = {
    ...fitLogistic(xs, ys),
    positives,
    negatives: ys.length - positives,
  };

  return {
    embedderId: used.id,
    calibration,
    async match(utterance, situation, signal) {
      const started = performance.now();
      signal?.throwIfAborted();
      const normalized = index.normalize(utterance);
      const embedStarted = performance.now();
      const [q] = await used.embed([normalized.text], signal);
      const providerMs = performance.now() - embedStarted;
      signal?.throwIfAborted();
      if (q === undefined)
        return { ...noMatch, candidates: [], providerMs, durationMs: performance.now() - started };
      const ranked = rankQuery(q, normalized.tokens);
      const known = knownShare(normalized.tokens, (t) => tokenUsers.has(t));
      const order = ranked.scores
        .map((score, i) => ({ i, score }))
        .filter((x) => x.score > 0)
        .sort((a, b) => b.score - a.score)
        .slice(0, MAX_CANDIDATES);
      // Each candidate is scored as if it had won: its own margin over the best other scenario.
      const candidates: ScenarioCandidate[] = order.map(({ i, score }) => {
        const other = i === ranked.best ? ranked.second : ranked.best;
        const margin = score - Math.max(0, ranked.scores[other] ?? 0);
        const entry = index.scenarios[i];
        return {
          scenarioId: entry?.scenario.id ?? '',
          category: entry?.category ?? '',
          score: round(predict(calibration, [score, margin, known])),
        };
      });
      const top = order[0] === undefined ? undefined : index.scenarios[order[0].i];
      if (top === undefined)
        return { ...noMatch, candidates, providerMs, durationMs: performance.now() - started };
      const rivalWords = Math.max(
        0,
        ...order.slice(1).map((o) => triggers.rivalTriggerWords(normalized.tokens, top.index, o.i)),
      );
      const semantic =
        predict(calibration, features(ranked, known)) *
        equipmentFactor(utterance, equipment[top.index]) *
        RIVAL_WORD_FACTOR ** rivalWords;
      const confidence =
        lexicalFactor(semantic, tier1(utterance), top.scenario.id) * situationFactor(situation, top.category);
      return {
        confidence: round(confidence),
        scenarioId: top.scenario.id,
        category: top.category,
        reply: top.scenario.replies[0] ?? null,
        endsCall: top.scenario.endsCall,
        action: top.scenario.action ?? null,
        candidates,
        providerMs,
        durationMs: performance.now() - started,
      };
    },
  };
}

const noMatch = {
  confidence: 0,
  scenarioId: null,
  category: null,
  reply: null,
  endsCall: false,
  action: null,
} as const;

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
