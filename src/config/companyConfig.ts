/**
 * The company and template configuration format. It is a public contract that other tools produce:
 * every field of the reference format is accepted as is, unknown fields are kept (so an export
 * round-trips), and Switchboard's own additions are optional with documented defaults.
 */
import { z } from 'zod';
import { ConfigError } from '../errors.ts';

const unit = z.number().min(0).max(1);
const e164 = z.string().regex(/^\+[1-9]\d{6,14}$/, 'expected an E.164 phone number such as +15551234567');
const nonEmpty = z.string().trim().min(1);
const lines = z.array(nonEmpty);

/** "vendor:model", e.g. "openai:gpt-4o-mini" or "anthropic:claude-haiku-4-5". */
const providerModel = z
  .string()
  .regex(/^(openai|anthropic):[\w.\-/:]+$/, 'expected "openai:<model>" or "anthropic:<model>"');

export const slotNames = [
  'callerName',
  'callbackNumber',
  'serviceAddress',
  'preferredTime',
  'equipment',
  'urgency',
] as const;

const companySchema = z.looseObject({
  id: z.string().regex(/^[a-z0-9][a-z0-9-]{0,63}$/, 'expected a lower-case slug (a-z, 0-9, -)'),
  name: nonEmpty,
  phoneNumbers: z.array(e164).min(1),
  industryType: z.string().default(''),
  timezone: z.string().default('UTC'),
  greeting: nonEmpty,
  voice: z
    .looseObject({
      ttsVoice: z.string().default('alloy'),
      language: z.string().default('en-US'),
      /**
       * Switchboard extension: how calls reach the engine. auto: Media Streams (our own STT and TTS)
       * when both are configured, ConversationRelay otherwise; relay or media force one (media falls
       * back to relay, with a warning, while STT or TTS is not configured).
       */
      transport: z.enum(['auto', 'relay', 'media']).default('auto'),
    })
    .prefault({}),
  gatekeeper: z.looseObject({
    enabled: z.boolean().default(true),
    tier1Threshold: unit.default(0.7),
    tier2Threshold: unit.default(0.6),
    enableLLMFallback: z.boolean().default(false),
    monthlyBudgetUsd: z.number().min(0).default(0),
    llm: z
      .looseObject({
        providers: z.array(providerModel).default([]),
        race: z.boolean().default(false),
        timeoutMs: z.number().int().min(100).max(60_000).default(4000),
        maxOutputTokens: z.number().int().min(16).max(4096).default(300),
      })
      .prefault({}),
  }),
  warmup: z
    .looseObject({
      enabled: z.boolean().default(false),
      confidenceThreshold: unit.default(0.75),
      dailyBudgetUsd: z.number().min(0).default(5),
      enablePatternLearning: z.boolean().default(true),
      minimumHitRate: unit.default(0.3),
      alwaysWarmupCategories: z.array(z.string()).default([]),
      neverWarmupCategories: z.array(z.string()).default([]),
    })
    .prefault({}),
  fallbackResponses: z.looseObject({
    toneProfile: z.string().default('friendly'),
    clarificationNeeded: lines.min(1),
    noMatchFound: lines.min(1),
    technicalIssue: lines.min(1),
    outOfScope: lines.min(1),
    escalationOptions: z
      .looseObject({
        offerTransfer: z.boolean().default(true),
        offerMessage: z.boolean().default(true),
        offerCallback: z.boolean().default(true),
      })
      .prefault({}),
    transferNumber: e164.optional(),
    /** Switchboard extension: escalate after this many fallback lines in a row in one call. */
    escalateAfter: z.number().int().min(1).max(10).default(2),
  }),
  learningSettings: z
    .looseObject({
      autoLearn: z.boolean().default(false),
      sharePatterns: z.boolean().default(false),
      minConfidenceForSuggestion: unit.default(0.8),
    })
    .prefault({}),
  slots: z.array(z.looseObject({ name: nonEmpty, critical: z.boolean().default(false) })).default([]),
  templates: z.array(nonEmpty).min(1),
  /** Switchboard extension: how capture and detect run. */
  understanding: z
    .looseObject({
      /** auto: LLM-backed when a provider is configured, rules otherwise. */
      mode: z.enum(['auto', 'rules', 'llm']).default('auto'),
      /** parallel: capture ∥ detect, then reconcile; sequential: capture, then detect. */
      order: z.enum(['parallel', 'sequential']).default('parallel'),
      /** "vendor:model" for capture/detect; defaults to the first gatekeeper.llm provider. */
      model: providerModel.optional(),
      timeoutMs: z.number().int().min(100).max(10_000).default(1500),
    })
    .prefault({}),
  /**
   * Switchboard extension: what keypad digits do. `transfer` asks for a person, `hangup` says the
   * closing line and ends the call, `{ "say": "…" }` acts as if the caller had said those words.
   */
  dtmf: z
    .record(
      z.string().regex(/^[0-9*#]$/, 'expected one keypad key: 0-9, * or #'),
      z.union([z.enum(['transfer', 'hangup']), z.looseObject({ say: nonEmpty })]),
    )
    .default({ '0': 'transfer' }),
  /** Switchboard extension: facts the LLM may state (hours, prices, policies). */
  facts: z.array(nonEmpty).default([]),
  /** Switchboard extension: conversation pacing. */
  conversation: z
    .looseObject({
      silenceTimeoutMs: z.number().int().min(1000).max(120_000).default(8000),
      maxReprompts: z.number().int().min(0).max(10).default(2),
      maxCallDurationMs: z.number().int().min(10_000).default(1_800_000),
      repromptLine: nonEmpty.default('Are you still there?'),
      closingLine: nonEmpty.default("I'll let you go for now. Please call back any time. Goodbye!"),
      emergencyLine: nonEmpty.default(
        "I'm experiencing technical difficulties. Let me transfer you to a live agent immediately.",
      ),
      /** Detect runs again after capture when its confidence is below this. */
      detectConfidenceThreshold: unit.default(0.6),
    })
    .prefault({}),
});

const scenarioSchema = z.looseObject({
  id: z.string().regex(/^[A-Za-z0-9][\w-]*$/, 'expected an id of letters, digits, - and _'),
  triggers: lines.default([]),
  /** Switchboard extension: a trigger match is vetoed when one of these also matches. */
  negativeTriggers: lines.default([]),
  examples: lines.default([]),
  replies: lines.min(1),
  endsCall: z.boolean().default(false),
  action: z.enum(['transfer', 'hangup', 'message']).optional(),
});

const templateSchema = z
  .looseObject({
    id: z.string().regex(/^[a-z0-9][a-z0-9-]{0,63}$/, 'expected a lower-case slug (a-z, 0-9, -)'),
    name: nonEmpty,
    fillerWords: z.array(z.string()).default([]),
    synonymMap: z.record(z.string(), z.array(z.string())).default({}),
    categories: z
      .array(
        z.looseObject({
          name: nonEmpty,
          /** Switchboard extension: extra cue words for situation detection. */
          cues: lines.default([]),
          scenarios: z.array(scenarioSchema).min(1),
        }),
      )
      .min(1),
  })
  .superRefine((t, ctx) => {
    const seen = new Map<string, string>();
    t.categories.forEach((c, ci) =>
      c.scenarios.forEach((s, si) => {
        const where = seen.get(s.id);
        if (where !== undefined) {
          ctx.addIssue({
            code: 'custom',
            path: ['categories', ci, 'scenarios', si, 'id'],
            message: `duplicate scenario id "${s.id}" (also at ${where})`,
          });
        }
        seen.set(s.id, `categories.${ci}.scenarios.${si}`);
        if (s.triggers.length === 0 && s.examples.length === 0) {
          ctx.addIssue({
            code: 'custom',
            path: ['categories', ci, 'scenarios', si],
            message: 'a scenario needs at least one trigger or example',
          });
        }
      }),
    );
  });

export type CompanyConfig = z.infer<typeof companySchema>;
export type TemplateConfig = z.infer<typeof templateSchema>;
export type TemplateCategory = TemplateConfig['categories'][number];
export type Scenario = z.infer<typeof scenarioSchema>;
/** The raw JSON as written by people and tools (defaults not yet applied). */
export type CompanyConfigInput = z.input<typeof companySchema>;
export type TemplateConfigInput = z.input<typeof templateSchema>;

function formatIssues(source: string, error: z.ZodError): string[] {
  return error.issues.map((issue) => {
    const field = issue.path.length > 0 ? issue.path.join('.') : '(root)';
    return `${source}: ${field}: ${issue.message}`;
  });
}

/** Validates a company document; `source` (a file name) is named in every problem. */
export function parseCompany(json: unknown, source: string): CompanyConfig {
  const result = companySchema.safeParse(json);
  if (!result.success) throw new ConfigError(formatIssues(source, result.error));
  return result.data;
}

/** Validates a template document; `source` (a file name) is named in every problem. */
export function parseTemplate(json: unknown, source: string): TemplateConfig {
  const result = templateSchema.safeParse(json);
  if (!result.success) throw new ConfigError(formatIssues(source, result.error));
  return result.data;
}

/** Tells a company document from a template document by shape. */
export function configKind(json: unknown): 'company' | 'template' | null {
  if (typeof json !== 'object' || json === null) return null;
  if ('phoneNumbers' in json || 'gatekeeper' in json) return 'company';
  if ('categories' in json) return 'template';
  return null;
}
