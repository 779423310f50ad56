/**
 * Golden-set evaluation: runs labelled caller utterances through a company's router exactly as a
 * call would (capture, detect, Tier 1, Tier 2, {@link decideWithoutLlm}; no LLM) and counts what
 * went right and wrong. A false match — answering with the wrong scenario, or answering what no
 * template should answer — is the worst error; a miss only sends the caller on to Tier 3 or a
 * fallback line.
 */
import type { CompanyRouter } from './companyRouter.ts';
import { decideWithoutLlm } from './companyRouter.ts';

/** One labelled line of a golden JSONL file. */
export interface GoldenCase {
  /** 1-based line number in the file. */
  readonly line: number;
  readonly utterance: string;
  readonly expect: { readonly category: string | null; readonly scenarioId: string | null };
}

/** A line that could not be used, and why. */
export interface GoldenProblem {
  readonly line: number;
  readonly message: string;
}

export interface GoldenFile {
  readonly cases: readonly GoldenCase[];
  readonly invalid: readonly GoldenProblem[];
}

export type GoldenVerdict = 'correct' | 'falseMatch' | 'miss';

/** What happened to one golden line. */
export interface GoldenOutcome extends GoldenCase {
  readonly verdict: GoldenVerdict;
  /** The tier that answered, null when none did. */
  readonly tier: 1 | 2 | null;
  readonly scenarioId: string | null;
  /** The category detect chose. */
  readonly detectedCategory: string | null;
  readonly tier1: { readonly scenarioId: string | null; readonly confidence: number };
  readonly tier2: { readonly scenarioId: string | null; readonly confidence: number } | null;
}

export interface LatencySummary {
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

export interface GoldenReport {
  readonly total: number;
  readonly correct: number;
  readonly falseMatches: number;
  readonly misses: number;
  /** correct / total (0 when there are no lines). */
  readonly accuracy: number;
  /** How many lines each tier answered ('none': neither). */
  readonly byTier: { readonly '1': number; readonly '2': number; readonly none: number };
  /** How many of those were right (for 'none': lines that rightly had no answer). */
  readonly correctByTier: { readonly '1': number; readonly '2': number; readonly none: number };
  /** Share of lines where detect chose the expected category (null expected = no category). */
  readonly categoryAccuracy: number;
  /** Every line that was not correct, in file order. */
  readonly errors: readonly GoldenOutcome[];
  /** Lines that could not be read or name a scenario the templates do not have. */
  readonly invalid: readonly GoldenProblem[];
  readonly latency: {
    readonly tier1: LatencySummary;
    readonly tier2: LatencySummary;
    readonly detect: LatencySummary;
  };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function nullableString(value: unknown): value is string | null {
  return value === null || typeof value === 'string';
}

/**
 * Parses golden JSONL text. Blank lines and lines starting with `//` or `#` are skipped; a line that
 * is not `{"utterance": string, "expect": {"category": string|null, "scenarioId": string|null}}`
 * becomes a problem with its line number instead of stopping the run.
 */
export function parseGolden(text: string): GoldenFile {
  const cases: GoldenCase[] = [];
  const invalid: GoldenProblem[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = i + 1;
    const trimmed = raw.trim();
    if (trimmed.length === 0 || trimmed.startsWith('//') || trimmed.startsWith('#')) return;
    let value: unknown;
    try {
      value = JSON.parse(trimmed);
    } catch (err) {
      invalid.push({ line, message: `not valid JSON (${err instanceof Error ? err.message : String(err)})` });
      return;
    }
    if (!isRecord(value) || typeof value['utterance'] !== 'string') {
      invalid.push({ line, message: 'expected an object with a string "utterance"' });
      return;
    }
    const expect = value['expect'];
    if (
      !isRecord(expect) ||
      !nullableString(expect['scenarioId']) ||
      !nullableString(expect['category'] ?? null)
    ) {
      invalid.push({
        line,
        message: 'expected "expect": {"category": string|null, "scenarioId": string|null}',
      });
      return;
    }
    cases.push({
      line,
      utterance: value['utterance'],
      expect: {
        category: (expect['category'] as string | null | undefined) ?? null,
        scenarioId: expect['scenarioId'],
      },
    });
  });
  return { cases, invalid };
}

function summarize(samples: number[]): LatencySummary {
  if (samples.length === 0) return { p50Ms: 0, p99Ms: 0, maxMs: 0 };
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
  const round = (x: number): number => Math.round(x * 1000) / 1000;
  return { p50Ms: round(at(0.5)), p99Ms: round(at(0.99)), maxMs: round(sorted.at(-1) ?? 0) };
}

/**
 * Runs every case through `router` as the first turn of a call and reports the counts. Detect sees
 * the slots captured from the same utterance (what the engine's reconcile step converges to).
 */
export async function evaluateGolden(router: CompanyRouter, golden: GoldenFile): Promise<GoldenReport> {
  const { tier1Threshold, tier2Threshold } = router.company.gatekeeper;
  const invalid = [...golden.invalid];
  const outcomes: GoldenOutcome[] = [];
  const timings = { tier1: [] as number[], tier2: [] as number[], detect: [] as number[] };
  for (const c of golden.cases) {
    const expected = c.expect.scenarioId;
    if (expected !== null && router.scenario(expected) === null) {
      invalid.push({ line: c.line, message: `unknown scenarioId "${expected}"` });
      continue;
    }
    const captured = router.capture(c.utterance, {});
    const situation = router.detect(c.utterance, captured.slots);
    const t1 = router.tier1(c.utterance);
    const thresholds = { tier1Threshold, tier2Threshold };
    const t2 =
      decideWithoutLlm(t1, null, thresholds).tier === 1 ? null : await router.tier2(c.utterance, situation);
    timings.detect.push(situation.durationMs);
    timings.tier1.push(t1.durationMs);
    if (t2 !== null) timings.tier2.push(t2.durationMs);
    const decision = decideWithoutLlm(t1, t2, thresholds);
    const answered = decision.result?.scenarioId ?? null;
    const verdict: GoldenVerdict =
      answered === expected ? 'correct' : answered === null ? 'miss' : 'falseMatch';
    outcomes.push({
      ...c,
      verdict,
      tier: decision.tier,
      scenarioId: answered,
      detectedCategory: situation.category,
      tier1: { scenarioId: t1.scenarioId, confidence: t1.confidence },
      tier2: t2 === null ? null : { scenarioId: t2.scenarioId, confidence: t2.confidence },
    });
  }
  const count = (p: (o: GoldenOutcome) => boolean): number => outcomes.filter(p).length;
  const tierKey = (o: GoldenOutcome): '1' | '2' | 'none' =>
    o.tier === null ? 'none' : o.tier === 1 ? '1' : '2';
  const total = outcomes.length;
  const correct = count((o) => o.verdict === 'correct');
  return {
    total,
    correct,
    falseMatches: count((o) => o.verdict === 'falseMatch'),
    misses: count((o) => o.verdict === 'miss'),
    accuracy: total === 0 ? 0 : Math.round((correct / total) * 10_000) / 10_000,
    byTier: {
      '1': count((o) => tierKey(o) === '1'),
      '2': count((o) => tierKey(o) === '2'),
      none: count((o) => tierKey(o) === 'none'),
    },
    correctByTier: {
      '1': count((o) => tierKey(o) === '1' && o.verdict === 'correct'),
      '2': count((o) => tierKey(o) === '2' && o.verdict === 'correct'),
      none: count((o) => tierKey(o) === 'none' && o.verdict === 'correct'),
    },
    categoryAccuracy:
      total === 0
        ? 0
        : Math.round((count((o) => o.detectedCategory === o.expect.category) / total) * 10_000) / 10_000,
    errors: outcomes.filter((o) => o.verdict !== 'correct'),
    invalid: invalid.sort((a, b) => a.line - b.line),
    latency: {
      tier1: summarize(timings.tier1),
      tier2: summarize(timings.tier2),
      detect: summarize(timings.detect),
    },
  };
}

function percent(x: number): string {
  return `${(x * 100).toFixed(1)}%`;
}

/** The report as text for people: totals, per-tier counts, then every wrong or unusable line. */
export function formatGoldenReport(report: GoldenReport): string {
  const out: string[] = [];
  out.push(`lines ${report.total}  correct ${report.correct}  accuracy ${percent(report.accuracy)}`);
  out.push(
    `false matches ${report.falseMatches}  misses ${report.misses}  category accuracy ${percent(report.categoryAccuracy)}`,
  );
  out.push(
    `answered by tier 1: ${report.byTier['1']} (${report.correctByTier['1']} right)  tier 2: ${report.byTier['2']} (${report.correctByTier['2']} right)  none: ${report.byTier.none} (${report.correctByTier.none} rightly unanswered)`,
  );
  const l = report.latency;
  out.push(
    `latency p50/p99 ms  tier 1 ${l.tier1.p50Ms}/${l.tier1.p99Ms}  tier 2 ${l.tier2.p50Ms}/${l.tier2.p99Ms}  detect ${l.detect.p50Ms}/${l.detect.p99Ms}`,
  );
  if (report.errors.length > 0) out.push('', 'wrong lines:');
  for (const e of report.errors) {
    const got = e.scenarioId === null ? 'no answer' : `${e.scenarioId} (tier ${e.tier})`;
    const t2 = e.tier2 === null ? '' : `, t2 ${e.tier2.scenarioId ?? '-'} ${e.tier2.confidence}`;
    out.push(
      `  line ${e.line} ${e.verdict === 'falseMatch' ? 'FALSE MATCH' : 'miss'}: "${e.utterance}" expected ${e.expect.scenarioId ?? 'no answer'}, got ${got} [t1 ${e.tier1.scenarioId ?? '-'} ${e.tier1.confidence}${t2}]`,
    );
  }
  if (report.invalid.length > 0) out.push('', 'unusable lines:');
  for (const p of report.invalid) out.push(`  line ${p.line}: ${p.message}`);
  return out.join('\n');
}
