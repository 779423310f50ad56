/**
 * One company's understanding and routing, built once at startup (or when its configuration
 * changes) and shared by all of its calls: rule capture, rule detect, Tier 1 and Tier 2 over the
 * company's templates, one precomputed index behind all of them. The call actors and the golden-set
 * evaluation use exactly these functions and {@link decideWithoutLlm}, so what `npm run eval`
 * measures is what callers get.
 */
import type { CaptureResult, Situation, Slots, TierResult } from '../../machines/types.ts';
import type { CompanyConfig, Scenario, TemplateConfig } from '../config/companyConfig.ts';
import { slotNames as allSlotNames } from '../config/companyConfig.ts';
import { ConfigError } from '../errors.ts';
import type { Embedder } from '../providers/embeddings/embedder.ts';
import { captureSlots } from '../understanding/ruleCapture.ts';
import { createRuleDetector } from '../understanding/ruleDetect.ts';
import { indexTemplates } from './normalize.ts';
import { createTier1Matcher } from './tier1Rules.ts';
import { createTier2Matcher } from './tier2Semantic.ts';

export interface CompanyRouterOptions {
  readonly company: CompanyConfig;
  /** Templates available; the router uses the ones the company lists, in the company's order. */
  readonly templates: readonly TemplateConfig[];
  readonly embedder: Embedder;
}

/** A scenario with the category and template it belongs to. */
export interface ScenarioRef {
  readonly scenario: Scenario;
  readonly category: string;
  readonly templateId: string;
}

export interface CompanyRouter {
  readonly company: CompanyConfig;
  /** The templates in use, in the company's order. */
  readonly templates: readonly TemplateConfig[];
  /** The embedder Tier 2 actually uses (the local one is fitted to these templates). */
  readonly embedderId: string;
  /** The category names of the templates, in template order, without repeats. */
  categories(): readonly string[];
  /** Rule-based slot capture over the company's slots; `source` is 'rules'. */
  capture(utterance: string, slots: Slots): CaptureResult;
  /** Rule-based situation detection given the slots known so far; `source` is 'rules'. */
  detect(utterance: string, slots: Slots): Situation;
  tier1(utterance: string): TierResult;
  tier2(utterance: string, situation: Situation | null, signal?: AbortSignal): Promise<TierResult>;
  scenario(id: string): ScenarioRef | null;
}

/** Which tier answers without the LLM, and with what. */
export interface NoLlmDecision {
  readonly tier: 1 | 2 | null;
  /** The verdict that answers, null when neither tier was confident enough. */
  readonly result: TierResult | null;
}

/** The two thresholds of `company.gatekeeper`. */
export interface TierThresholds {
  readonly tier1Threshold: number;
  readonly tier2Threshold: number;
}

/**
 * The routing rule shared by the engine and the evaluation: Tier 1 answers when its confidence
 * reaches `tier1Threshold`, else Tier 2 when it reaches `tier2Threshold`, else nobody (Tier 3 or a
 * fallback). Pass `tier2` as null when it has not run (Tier 1 answered or it is still pending).
 */
export function decideWithoutLlm(
  tier1: TierResult,
  tier2: TierResult | null,
  thresholds: TierThresholds,
): NoLlmDecision {
  if (tier1.scenarioId !== null && tier1.confidence >= thresholds.tier1Threshold)
    return { tier: 1, result: tier1 };
  if (tier2 !== null && tier2.scenarioId !== null && tier2.confidence >= thresholds.tier2Threshold) {
    return { tier: 2, result: tier2 };
  }
  return { tier: null, result: null };
}

/** The company's templates in its order; every template it lists must be there. */
function selectTemplates(company: CompanyConfig, templates: readonly TemplateConfig[]): TemplateConfig[] {
  const missing = company.templates.filter((id) => !templates.some((t) => t.id === id));
  if (missing.length > 0) {
    const available = templates.map((t) => t.id).join(', ') || 'none';
    throw new ConfigError(
      missing.map(
        (id) => `company ${company.id}: templates: template "${id}" is not loaded (available: ${available})`,
      ),
    );
  }
  return company.templates.flatMap((id) => templates.filter((t) => t.id === id).slice(0, 1));
}

/** Builds the router for one company: indexes its templates, embeds and calibrates Tier 2. */
export async function createCompanyRouter(options: CompanyRouterOptions): Promise<CompanyRouter> {
  const { company, embedder } = options;
  const templates = selectTemplates(company, options.templates);
  const index = indexTemplates(templates);
  const tier1 = createTier1Matcher(templates, { index });
  const detector = createRuleDetector(templates, { index, tier1 });
  const tier2 = await createTier2Matcher(templates, embedder, { index, tier1 });
  // A company that lists no slots still gets the standard ones captured.
  const slots = company.slots.length > 0 ? company.slots.map((s) => s.name) : [...allSlotNames];

  const router: CompanyRouter = {
    company,
    templates,
    embedderId: tier2.embedderId,
    categories: () => index.categories,
    capture(utterance, previous) {
      const started = performance.now();
      const result = captureSlots(utterance, previous, slots);
      return { ...result, source: 'rules', providerMs: 0, durationMs: performance.now() - started };
    },
    detect(utterance, known) {
      const started = performance.now();
      const result = detector(utterance, known);
      return { ...result, source: 'rules', providerMs: 0, durationMs: performance.now() - started };
    },
    tier1,
    tier2: (utterance, situation, signal) => tier2.match(utterance, situation, signal),
    scenario(id) {
      const entry = index.byId.get(id);
      return entry === undefined
        ? null
        : { scenario: entry.scenario, category: entry.category, templateId: entry.templateId };
    },
  };
  await warmUp(router, index.scenarios[0]?.scenario.examples[0] ?? '');
  return router;
}

/**
 * Runs every stage a few times at startup, so the first caller does not pay for compiling the
 * patterns and optimising the hot path (several milliseconds on a cold process).
 */
async function warmUp(router: CompanyRouter, example: string): Promise<void> {
  const sample = `Hi, this is Sam at 12 Oak Street, call me at 555 201 3344 tomorrow morning, it's urgent. ${example}`;
  for (let i = 0; i < 3; i++) {
    const captured = router.capture(sample, {});
    const situation = router.detect(sample, captured.slots);
    router.tier1(`${sample} ${i}`);
    await router.tier2(`${sample} ${i}`, situation);
  }
}
