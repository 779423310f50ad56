/**
 * What the simulated callers say and which companies they call. Utterances come from the demo
 * plumbing template: its own phrasings (Tier 1), paraphrases the rules miss but Tier 2 matches, and
 * in-domain questions the template does not cover (Tier 3). The pools were checked against the demo
 * template; the bench reports which tier actually answered, so drift shows in the output.
 */
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const DEMO_DIR = fileURLToPath(new URL('../config/demo/', import.meta.url));

/** Said the way the template says it: Tier 1 answers. */
export const TIER1_UTTERANCES = [
  'What are your hours?',
  'Is there a trip charge?',
  'How much to snake a drain?',
  'I need to schedule a visit.',
  'My toilet keeps running after I flush.',
  'How do I pay my bill?',
  'My kitchen faucet drips all night.',
  "We've got no hot water this morning.",
  'My shower drain is backed up again.',
  'How much for a new tankless heater?',
] as const;

/** Paraphrases: Tier 1 misses, Tier 2 (embeddings) answers. */
export const TIER2_UTTERANCES = [
  'What towns do you go to?',
  'Can I change the time of my appointment?',
  'Is there a fee to diagnose the problem?',
  'What do you charge for clearing drains?',
  'Can somebody come out Thursday morning?',
  'The pressure in the shower dropped.',
  'Could you email me a copy of my receipt?',
  'How early can you get here in the morning?',
  'The toilet in the upstairs bathroom will not stop filling.',
  'Is your work guaranteed?',
] as const;

/** Off-script but in the company's domain: neither tier is sure, the LLM answers. */
export const TIER3_UTTERANCES = [
  'Do you also fix lawn sprinkler systems?',
  'Can you tell me whether my landlord or I should pay for this repair?',
  'Do your plumbers wear shoe covers inside the house?',
  'Is it safe to use store bought drain cleaner with a septic system?',
  'What brand of water heater do you recommend for a family of five?',
  'Do you offer any discount for seniors or veterans?',
  'How long does a typical repipe take?',
  'Do you install water softeners?',
  'Are your plumbers licensed and insured?',
  'My name is Dana Whitfield and you can reach me at 555 201 3344.',
] as const;

/**
 * What the fake LLM says for Tier 3 and warmups: 34 word-tokens, so with the defaults (first token
 * 400 ms, then 15 ms per token) the stream takes 400 + 33 × 15 = 895 ms.
 */
export const TIER3_ANSWER =
  "Good question. That's something our plumbers handle case by case, so I'd rather not guess. " +
  'I can take a message and have someone from the office call you back today with a firm answer.';

/** The fake streams one word (with its leading space) per token, as test/fakes does. */
export const TIER3_ANSWER_TOKENS = TIER3_ANSWER.match(/\s*\S+/g)?.length ?? 0;

/** Ends the call (Tier 1, goodbye scenario). */
export const GOODBYE = 'Okay, thanks so much, bye.';

export type Pool = 'tier1' | 'tier2' | 'tier3';

export interface Mix {
  readonly tier1: number;
  readonly tier2: number;
  readonly tier3: number;
}

/** Default share of each pool in the main mix. */
export const MAIN_MIX: Mix = { tier1: 0.4, tier2: 0.3, tier3: 0.3 };
export const TIER3_ONLY: Mix = { tier1: 0, tier2: 0, tier3: 1 };

function pick<T>(items: readonly T[]): T {
  const item = items[Math.floor(Math.random() * items.length)];
  if (item === undefined) throw new Error('pick from an empty list');
  return item;
}

/** One call's utterances: 2 to 5 turns from the mix, half of the calls ending with a goodbye. */
export function planCall(mix: Mix): string[] {
  const turns = 2 + Math.floor(Math.random() * 4);
  const out: string[] = [];
  for (let i = 0; i < turns; i++) {
    const r = Math.random() * (mix.tier1 + mix.tier2 + mix.tier3);
    const pool =
      r < mix.tier1 ? TIER1_UTTERANCES : r < mix.tier1 + mix.tier2 ? TIER2_UTTERANCES : TIER3_UTTERANCES;
    out.push(pick(pool));
  }
  if (mix.tier1 > 0 && Math.random() < 0.5) out.push(GOODBYE);
  return out;
}

/** The companies the bench creates: one per variant, each with its own number. */
export const COMPANIES = {
  /** Production-like: LLM-backed capture/detect, warmup on. The load levels call this one. */
  main: { id: 'bench-main', number: '+15550170001' },
  /**
   * (b) parallel capture ∥ detect with reconcile: as main, but warmup off in both (b) arms, so the
   * warmup's hit-rate learning (which drifts apart per company) cannot tilt the comparison.
   */
  parallel: { id: 'bench-parallel', number: '+15550170002' },
  /** (b) sequential baseline: capture, then detect (`understanding.order: "sequential"`). */
  sequential: { id: 'bench-sequential', number: '+15550170003' },
  /** (a) rule understanding, warmup on. */
  warm: { id: 'bench-warm', number: '+15550170004' },
  /** (a) rule understanding, warmup off. */
  cold: { id: 'bench-cold', number: '+15550170005' },
} as const;

type Json = Record<string, unknown>;

/**
 * A temporary data folder with the demo template and one company per variant, all derived from the
 * demo company: OpenAI only, budgets large enough never to interfere, and a long silence timeout
 * so idle calls stay connected while memory is measured.
 */
export async function createDataDir(): Promise<{
  dataDir: string;
  companyFile: string;
  templateFile: string;
}> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'switchboard-bench-'));
  const companies = path.join(dataDir, 'config', 'companies');
  const templates = path.join(dataDir, 'config', 'templates');
  await mkdir(companies, { recursive: true });
  await mkdir(templates, { recursive: true });
  const template = JSON.parse(
    await readFile(path.join(DEMO_DIR, 'template.plumbing-residential.json'), 'utf8'),
  ) as Json;
  const templateFile = path.join(templates, `${String(template['id'])}.json`);
  await writeFile(templateFile, JSON.stringify(template));
  const demo = JSON.parse(
    await readFile(path.join(DEMO_DIR, 'company.riverside-plumbing.json'), 'utf8'),
  ) as Json;

  const variant = (
    c: { id: string; number: string },
    understanding: 'llm' | 'rules',
    warmup: boolean,
    order: 'parallel' | 'sequential' = 'parallel',
  ): Json => {
    const copy = structuredClone(demo);
    const gatekeeper = copy['gatekeeper'] as Json;
    const llm = gatekeeper['llm'] as Json;
    const warm = copy['warmup'] as Json;
    copy['id'] = c.id;
    copy['phoneNumbers'] = [c.number];
    gatekeeper['monthlyBudgetUsd'] = 1_000_000;
    llm['providers'] = ['openai:gpt-4o-mini'];
    warm['enabled'] = warmup;
    warm['dailyBudgetUsd'] = 1_000_000;
    copy['understanding'] = { mode: understanding, model: 'openai:gpt-4o-mini', order };
    copy['conversation'] = { silenceTimeoutMs: 120_000 };
    return copy;
  };
  const docs = [
    variant(COMPANIES.main, 'llm', true),
    variant(COMPANIES.parallel, 'llm', false),
    variant(COMPANIES.sequential, 'llm', false, 'sequential'),
    variant(COMPANIES.warm, 'rules', true),
    variant(COMPANIES.cold, 'rules', false),
  ];
  for (const doc of docs)
    await writeFile(path.join(companies, `${String(doc['id'])}.json`), JSON.stringify(doc));
  return { dataDir, companyFile: path.join(companies, `${COMPANIES.main.id}.json`), templateFile };
}
