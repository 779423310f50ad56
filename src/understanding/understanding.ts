/**
 * Capture (slots) and detect (situation) for one company: rule-based by default, LLM-backed (JSON
 * output) when a provider is configured. An LLM failure never fails the turn: the rules answer.
 */
import { performance } from 'node:perf_hooks';
import { z } from 'zod';
import type { DetectInput, TurnInput } from '../../machines/callMachine.ts';
import type { CaptureResult, Situation, Slots } from '../../machines/types.ts';
import type { CompanyConfig } from '../config/companyConfig.ts';
import type { CostAction, CostSink } from '../cost/costEvent.ts';
import { newCostEvent } from '../cost/costEvent.ts';
import { costUsd, estimateTokens } from '../cost/priceTable.ts';
import type { Logger } from '../observability/logger.ts';
import type { LlmClient, LlmPartial, LlmResult } from '../providers/llm/llmClient.ts';
import type { CompanyRouter } from '../routing/companyRouter.ts';
import type { LlmClients } from '../routing/tier3Llm.ts';
import { isAbortError } from '../errors.ts';

export interface Understanding {
  readonly mode: 'rules' | 'llm';
  capture(input: TurnInput, signal?: AbortSignal): Promise<CaptureResult>;
  detect(input: DetectInput, signal?: AbortSignal): Promise<Situation>;
}

export interface UnderstandingDeps {
  readonly company: CompanyConfig;
  readonly router: CompanyRouter;
  readonly clients: LlmClients;
  readonly ledger: CostSink;
  readonly log: Logger;
}

const captureAnswer = z.object({ slots: z.record(z.string(), z.union([z.string(), z.null()])) });
const detectAnswer = z.object({
  category: z.string().nullable(),
  confidence: z.number().min(0).max(1),
  emergency: z.boolean().default(false),
  wantsHuman: z.boolean().default(false),
  outOfScope: z.boolean().default(false),
  goodbye: z.boolean().default(false),
});

function pickModel(company: CompanyConfig, clients: LlmClients): { client: LlmClient; model: string } | null {
  const spec = company.understanding.model ?? company.gatekeeper.llm.providers[0];
  if (spec === undefined) return null;
  const [vendor, ...rest] = spec.split(':');
  const client =
    vendor === 'openai' ? clients.openai : vendor === 'anthropic' ? clients.anthropic : undefined;
  return client === undefined ? null : { client, model: rest.join(':') };
}

function mergeSlots(previous: Slots, found: Record<string, string | null>, allowed: readonly string[]) {
  const slots: Record<string, string> = { ...previous };
  const changed: string[] = [];
  for (const name of allowed) {
    const value = found[name]?.trim();
    if (value && slots[name] !== value) {
      slots[name] = value;
      changed.push(name);
    }
  }
  return { slots, changed };
}

export function createUnderstanding(deps: UnderstandingDeps): Understanding {
  const { company, router } = deps;
  const slotNames = company.slots.map((s) => s.name);
  const llm = company.understanding.mode === 'rules' ? null : pickModel(company, deps.clients);
  if (company.understanding.mode === 'llm' && llm === null) {
    deps.log.warn(
      { companyId: company.id },
      'LLM understanding requested but no provider is configured; using rules',
    );
  }
  const categories = [...new Set(router.categories())];

  const ruleCapture = (input: TurnInput): CaptureResult => router.capture(input.utterance, input.slots);
  const ruleDetect = (input: DetectInput): Situation => router.detect(input.utterance, input.slots);

  async function ask(
    purpose: 'capture' | 'detect',
    input: TurnInput,
    system: string,
    user: string,
    signal: AbortSignal | undefined,
  ): Promise<LlmResult> {
    const { client, model } = llm!;
    const record = (
      action: CostAction,
      r: Partial<LlmPartial> & { usage?: LlmResult['usage'] },
      estimated: boolean,
    ) => {
      const inputTokens = r.usage?.inputTokens ?? estimateTokens(system + user);
      const outputTokens = r.usage?.outputTokens ?? estimateTokens(r.text ?? '');
      const event = newCostEvent({
        companyId: company.id,
        callId: input.callId,
        turn: input.turn,
        purpose,
        action,
        provider: client.provider,
        model,
        inputTokens,
        outputTokens,
        durationMs: Math.round(r.durationMs ?? 0),
        costUsd: costUsd(client.provider, model, { inputTokens, outputTokens }),
        estimated,
      });
      deps.ledger.record(event);
    };
    try {
      const result = await client.complete({
        model,
        system,
        messages: [{ role: 'user', content: user }],
        maxOutputTokens: 200,
        json: true,
        temperature: 0,
        timeoutMs: company.understanding.timeoutMs,
        ...(signal ? { signal } : {}),
      });
      record('completed', result, result.usage === null);
      return result;
    } catch (err) {
      const partial = (err as { partial?: LlmPartial }).partial ?? {};
      record(isAbortError(err) ? 'cancelled' : 'failed', partial, true);
      throw err;
    }
  }

  return {
    mode: llm === null ? 'rules' : 'llm',

    async capture(input, signal) {
      if (llm === null) return ruleCapture(input);
      const started = performance.now();
      const system = [
        'Extract details a phone caller gave. Answer with one JSON object: {"slots": {<name>: <value or null>}}.',
        `Slot names: ${slotNames.join(', ')}.`,
        'callbackNumber as E.164 (+1XXXXXXXXXX for US numbers). Use null for anything not said.',
      ].join('\n');
      try {
        const result = await ask('capture', input, system, input.utterance, signal);
        const parsed = captureAnswer.parse(JSON.parse(result.text));
        const merged = mergeSlots(input.slots, parsed.slots, slotNames);
        return {
          ...merged,
          source: 'llm',
          providerMs: result.durationMs,
          durationMs: performance.now() - started,
        };
      } catch (err) {
        if (signal?.aborted) throw err;
        deps.log.warn({ err: { message: (err as Error).message } }, 'LLM capture failed; rules answered');
        const rules = ruleCapture(input);
        return {
          ...rules,
          source: 'rules-fallback',
          providerMs: performance.now() - started - rules.durationMs,
        };
      }
    },

    async detect(input, signal) {
      if (llm === null) return ruleDetect(input);
      const started = performance.now();
      const known = Object.entries(input.slots)
        .filter(([name]) => name !== 'callbackNumber')
        .map(([n, v]) => `${n}=${v}`)
        .join(', ');
      const system = [
        `Classify a caller's situation for ${company.name}. Answer with one JSON object:`,
        '{"category": <one of the categories or null>, "confidence": 0..1, "emergency": bool, "wantsHuman": bool, "outOfScope": bool, "goodbye": bool}.',
        `Categories: ${categories.join(', ')}.`,
      ].join('\n');
      const user = known === '' ? input.utterance : `${input.utterance}\n(known: ${known})`;
      try {
        const result = await ask('detect', input, system, user, signal);
        const a = detectAnswer.parse(JSON.parse(result.text));
        return {
          category: a.category !== null && categories.includes(a.category) ? a.category : null,
          confidence: a.confidence,
          flags: {
            emergency: a.emergency,
            wantsHuman: a.wantsHuman,
            outOfScope: a.outOfScope,
            goodbye: a.goodbye,
          },
          source: 'llm',
          providerMs: result.durationMs,
          durationMs: performance.now() - started,
        };
      } catch (err) {
        if (signal?.aborted) throw err;
        deps.log.warn({ err: { message: (err as Error).message } }, 'LLM detect failed; rules answered');
        const rules = ruleDetect(input);
        return {
          ...rules,
          source: 'rules-fallback',
          providerMs: performance.now() - started - rules.durationMs,
        };
      }
    },
  };
}
