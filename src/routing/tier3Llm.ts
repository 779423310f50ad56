/**
 * Tier 3: the LLM answers with the company's facts, the best scenarios the cheaper tiers found, the
 * conversation so far and the captured slots. The same function serves the speculative warmup and
 * a direct Tier 3 request; budgets are reserved before and settled after, and every request leaves
 * cost events (money only on the terminal one: completed, cancelled or failed).
 */
import type { LlmInput } from '../../machines/callMachine.ts';
import type { LlmAnswer } from '../../machines/types.ts';
import type { CompanyConfig, TemplateConfig } from '../config/companyConfig.ts';
import { AppError, isAbortError } from '../errors.ts';
import type { BudgetStore, Reservation } from '../cost/budgets.ts';
import { dailyWarmupKey, monthlyKey, toMicros } from '../cost/budgets.ts';
import type { CostAction, CostEvent, CostSink } from '../cost/costEvent.ts';
import { newCostEvent } from '../cost/costEvent.ts';
import { costUsd, estimateTokens } from '../cost/priceTable.ts';
import type { ChatMessage, LlmClient, LlmPartial, LlmResult } from '../providers/llm/llmClient.ts';
import type { Logger } from '../observability/logger.ts';
import type { WarmupStats } from '../warmup/warmupStats.ts';

export interface LlmClients {
  readonly openai?: LlmClient;
  readonly anthropic?: LlmClient;
}

/** A request a budget refused: the LLM is blocked and the turn answers with a fallback line. */
export interface BudgetExceeded {
  readonly companyId: string;
  /** Which budget: the monthly Tier 3 budget (warmups included) or the daily warmup budget. */
  readonly budget: 'tier3-monthly' | 'warmup-daily';
  readonly purpose: 'tier3' | 'warmup';
  readonly limitUsd: number;
}

export interface Tier3Deps {
  readonly clients: LlmClients;
  readonly budgets: BudgetStore;
  readonly ledger: CostSink;
  readonly stats: WarmupStats;
  readonly log: Logger;
  readonly now?: () => Date;
  /** Told of every refusal (alerting; de-duplication is the listener's business). Must not throw. */
  readonly onBudgetExceeded?: (refusal: BudgetExceeded) => void;
}

export interface Tier3Request {
  readonly company: CompanyConfig;
  readonly templates: readonly TemplateConfig[];
  readonly input: LlmInput;
  readonly callSid: string | null;
  readonly signal: AbortSignal;
  /** The answer so far (growing), as it streams: lets a transport speak it sentence by sentence. */
  readonly onText?: (textSoFar: string) => void;
}

/** The providers a company asked for that this engine has credentials for, in the company's order. */
export function usableModels(
  company: CompanyConfig,
  clients: LlmClients,
): Array<{ client: LlmClient; model: string }> {
  return company.gatekeeper.llm.providers.flatMap((spec) => {
    const [vendor, ...rest] = spec.split(':');
    const client =
      vendor === 'openai' ? clients.openai : vendor === 'anthropic' ? clients.anthropic : undefined;
    return client ? [{ client, model: rest.join(':') }] : [];
  });
}

export function buildPrompt(company: CompanyConfig, templates: readonly TemplateConfig[], input: LlmInput) {
  const scenarios = new Map(
    templates.flatMap((t) => t.categories.flatMap((c) => c.scenarios.map((s) => [s.id, s] as const))),
  );
  const known = input.candidates
    .slice(0, 3)
    .map((c) => scenarios.get(c.scenarioId))
    .filter((s) => s !== undefined)
    .map((s) => `- ${s.examples[0] ?? s.triggers[0] ?? s.id}: ${s.replies[0]}`);
  const facts = company.facts.map((f) => `- ${f}`);
  const slots = Object.entries(input.slots)
    .filter(([name]) => name !== 'callbackNumber')
    .map(([name, value]) => `${name}: ${value}`);
  const system = [
    `You are the phone receptionist for ${company.name}${company.industryType ? `, a ${company.industryType} company` : ''}.`,
    'You are speaking on a live phone call: answer in one to three short spoken sentences, no lists, no markdown.',
    'Only state facts given here; if you do not know, offer to take a message or transfer the caller.',
    facts.length > 0 ? `Company facts:\n${facts.join('\n')}` : '',
    known.length > 0 ? `Answers to related questions:\n${known.join('\n')}` : '',
    slots.length > 0 ? `Known about the caller:\n${slots.join('\n')}` : '',
    input.situation?.flags.emergency ? 'The caller may be in an emergency: put their safety first.' : '',
  ]
    .filter((s) => s !== '')
    .join('\n\n');
  const messages: ChatMessage[] = [
    ...input.history.map((h) => ({
      role: h.role === 'caller' ? ('user' as const) : ('assistant' as const),
      content: h.text,
    })),
    { role: 'user', content: input.utterance },
  ];
  return { system, messages };
}

export function createTier3(deps: Tier3Deps) {
  const now = deps.now ?? (() => new Date());
  const warnedModels = new Set<string>();

  function priced(provider: string, model: string, inputTokens: number, outputTokens: number): number | null {
    const usd = costUsd(provider, model, { inputTokens, outputTokens });
    if (usd === null && !warnedModels.has(`${provider}:${model}`)) {
      warnedModels.add(`${provider}:${model}`);
      deps.log.warn(
        { provider, model },
        'model missing from the price table; its cost is recorded as unknown',
      );
    }
    return usd;
  }

  return async function answer(req: Tier3Request): Promise<LlmAnswer> {
    const { company, input } = req;
    const models = usableModels(company, deps.clients);
    if (!company.gatekeeper.enableLLMFallback || models.length === 0) {
      throw new AppError('ERR_LLM_UNAVAILABLE', 'no LLM provider is configured for this company');
    }
    const { client, model } = models[0]!;
    const { system, messages } = buildPrompt(company, req.templates, input);
    const maxOutputTokens = company.gatekeeper.llm.maxOutputTokens;
    const inputTokensEstimate =
      estimateTokens(system) + messages.reduce((n, m) => n + estimateTokens(m.content), 0);
    const ceilingUsd = priced(client.provider, model, inputTokensEstimate, maxOutputTokens);
    const ceilingMicros = ceilingUsd === null ? 0 : toMicros(ceilingUsd);

    const today = now();
    const purpose = input.mode;
    // A warmup holds both budgets. The two reservations are made together: with a shared store that
    // is one wait on the critical path instead of two; a side that did not fit releases the other.
    const [monthly, daily] = await Promise.all([
      deps.budgets.reserve(
        monthlyKey(company.id, today),
        ceilingMicros,
        toMicros(company.gatekeeper.monthlyBudgetUsd),
      ),
      purpose === 'warmup'
        ? deps.budgets.reserve(
            dailyWarmupKey(company.id, today),
            ceilingMicros,
            toMicros(company.warmup.dailyBudgetUsd),
          )
        : null,
    ]);
    if (monthly === null || (purpose === 'warmup' && daily === null)) {
      const held = [monthly, daily].filter((r): r is Reservation => r !== null);
      await Promise.all(held.map((r) => deps.budgets.settle(r, 0)));
      const monthlySpent = monthly === null;
      deps.onBudgetExceeded?.({
        companyId: company.id,
        budget: monthlySpent ? 'tier3-monthly' : 'warmup-daily',
        purpose,
        limitUsd: monthlySpent ? company.gatekeeper.monthlyBudgetUsd : company.warmup.dailyBudgetUsd,
      });
      throw new AppError(
        'ERR_BUDGET_EXCEEDED',
        monthlySpent ? 'the monthly Tier 3 budget is spent' : 'the daily warmup budget is spent',
      );
    }
    const reservations: Reservation[] = daily === null ? [monthly] : [monthly, daily];
    if (purpose === 'warmup')
      deps.stats.recordTriggered(company.id, input.situation?.category ?? null, today);

    const event = (action: CostAction, fields: Partial<CostEvent> = {}): CostEvent =>
      newCostEvent({
        companyId: company.id,
        callId: input.callId,
        callSid: req.callSid,
        turn: input.turn,
        purpose,
        tier: 3,
        action,
        provider: client.provider,
        model,
        ...fields,
      });
    if (purpose === 'warmup') deps.ledger.record(event('triggered'));

    const settle = async (usd: number | null) => {
      const micros = usd === null ? 0 : toMicros(usd);
      await Promise.all(reservations.map((r) => deps.budgets.settle(r, micros)));
    };

    if (purpose === 'warmup') {
      // The warmup's request leaves on the next turn of the event loop. A Tier 2 that answers at
      // once (the local embedder, no store round trip) cancels it before a byte is sent, instead of
      // a request opened and aborted within the same millisecond: a prompt the provider may bill,
      // and a pooled connection closed. A Tier 2 that waits on anything loses nothing but that turn.
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (req.signal.aborted) {
        deps.ledger.record(
          event('cancelled', {
            inputTokens: 0,
            outputTokens: 0,
            durationMs: 0,
            costUsd: 0,
            estimated: false,
          }),
        );
        void settle(0);
        throw new AppError('ERR_LLM_ABORTED', 'the warmup was cancelled before its request was sent');
      }
    }

    let result: LlmResult;
    const onText = req.onText;
    let streamed = '';
    try {
      result = await client.complete({
        model,
        system,
        messages,
        maxOutputTokens,
        temperature: 0.3,
        signal: req.signal,
        timeoutMs: company.gatekeeper.llm.timeoutMs,
        ...(onText === undefined
          ? {}
          : {
              onToken: (delta: string) => {
                streamed += delta;
                onText(streamed);
              },
            }),
      });
    } catch (err) {
      // What may have been billed: the prompt, plus what streamed before the end.
      const partial = (err as { partial?: LlmPartial }).partial;
      const inputTokens = partial?.usage?.inputTokens ?? inputTokensEstimate;
      const outputTokens = partial?.usage?.outputTokens ?? estimateTokens(partial?.text ?? '');
      const usd = priced(client.provider, model, inputTokens, outputTokens);
      const aborted = isAbortError(err) || req.signal.aborted;
      deps.ledger.record(
        event(aborted ? 'cancelled' : 'failed', {
          inputTokens,
          outputTokens,
          durationMs: Math.round(partial?.durationMs ?? 0),
          costUsd: usd,
          estimated: partial?.usage == null,
        }),
      );
      void settle(usd);
      // An open circuit refuses every request at once; it logged when it opened, once is enough.
      if (!aborted && (err as AppError).code !== 'ERR_LLM_CIRCUIT_OPEN') {
        deps.log.warn(
          {
            err: { code: (err as AppError).code, message: (err as Error).message },
            provider: client.provider,
            model,
          },
          'llm request failed',
        );
      }
      throw err;
    }
    const inputTokens = result.usage?.inputTokens ?? inputTokensEstimate;
    const outputTokens = result.usage?.outputTokens ?? estimateTokens(result.text);
    const usd = priced(client.provider, model, inputTokens, outputTokens);
    deps.ledger.record(
      event('completed', {
        inputTokens,
        outputTokens,
        durationMs: Math.round(result.durationMs),
        costUsd: usd,
        estimated: result.usage === null,
      }),
    );
    // Not awaited: the caller should not wait for a budget write (the reservation already held the
    // money). The store's settle never rejects; the in-process one is done before this returns.
    void settle(usd);
    if (result.text.trim() === '')
      throw new AppError('ERR_LLM_BAD_RESPONSE', 'the LLM answered with no text');
    return {
      text: result.text.trim(),
      provider: result.provider,
      model: result.model,
      firstTokenMs: result.firstTokenMs,
      durationMs: result.durationMs,
      costUsd: usd,
    };
  };
}

export type Tier3 = ReturnType<typeof createTier3>;
