/**
 * The engine: compiled companies, the call machine provided once with every I/O implementation,
 * and the live call sessions. Transports open calls here; nothing else creates actors.
 */
import { performance } from 'node:perf_hooks';
import { fromCallback, fromPromise } from 'xstate';
import { callMachine } from '../../machines/callMachine.ts';
import type {
  CallMachine,
  CallPolicy,
  DetectInput,
  FallbackInput,
  LlmInput,
  SpeakerInput,
  Tier2Input,
  TurnInput,
  WarmupGateInput,
} from '../../machines/callMachine.ts';
import type {
  CaptureResult,
  FallbackLine,
  LlmAnswer,
  Situation,
  TierResult,
  WarmupDecision,
} from '../../machines/types.ts';
import type { CompanyConfig, TemplateConfig } from '../config/companyConfig.ts';
import type { BudgetStore } from '../cost/budgets.ts';
import type { CostLedger } from '../cost/costLedger.ts';
import { AppError } from '../errors.ts';
import type { Logger } from '../observability/logger.ts';
import type { Embedder } from '../providers/embeddings/embedder.ts';
import { createCompanyRouter } from '../routing/companyRouter.ts';
import type { CompanyRouter } from '../routing/companyRouter.ts';
import { canTransfer, createFallbackPicker } from '../routing/fallbackPicker.ts';
import { createLocalEmbedder } from '../routing/localEmbedder.ts';
import type { RotationStore } from '../routing/fallbackPicker.ts';
import { createTier3, usableModels } from '../routing/tier3Llm.ts';
import type { LlmClients } from '../routing/tier3Llm.ts';
import type { Catalog } from '../store/configStore.ts';
import { createUnderstanding } from '../understanding/understanding.ts';
import type { Understanding } from '../understanding/understanding.ts';
import { createWarmupGate } from '../warmup/warmupGate.ts';
import type { WarmupStats } from '../warmup/warmupStats.ts';
import { CallSession } from './callSession.ts';
import type { TurnObservation } from './callSession.ts';
import type { CallTransport } from './callTransport.ts';

export interface SessionListener {
  opened?(session: CallSession): void;
  ended?(session: CallSession): void;
}

export interface EngineDeps {
  readonly catalog: Catalog;
  readonly log: Logger;
  /** The embedder for a company's Tier 2 (one per company, so paid embeddings are billed to it). */
  readonly embedderFor: (companyId: string) => Embedder;
  readonly clients: LlmClients;
  readonly budgets: BudgetStore;
  readonly stats: WarmupStats;
  readonly ledger: CostLedger;
  readonly rotation: RotationStore;
  /** Engine-wide pacing; companies tune the rest in their config. */
  readonly timing?: { startTimeoutMs?: number; turnTimeoutMs?: number };
  /** Observes every answered turn (bench, metrics). */
  readonly onTurn?: (turn: TurnObservation) => void;
}

/** A company ready to take calls: its config, templates, compiled router and call policy. */
export interface CompanyRuntime {
  readonly config: CompanyConfig;
  readonly templates: readonly TemplateConfig[];
  readonly router: CompanyRouter;
  readonly understanding: Understanding;
  readonly policy: CallPolicy;
}

export function policyFor(
  company: CompanyConfig,
  llmAvailable: boolean,
  timing: EngineDeps['timing'] = {},
): CallPolicy {
  const conv = company.conversation;
  const llmEnabled = company.gatekeeper.enableLLMFallback && llmAvailable;
  return {
    tier1Threshold: company.gatekeeper.tier1Threshold,
    tier2Threshold: company.gatekeeper.tier2Threshold,
    detectConfidenceThreshold: conv.detectConfidenceThreshold,
    criticalSlots: company.slots.filter((s) => s.critical).map((s) => s.name),
    understandInOrder: company.understanding.order === 'sequential',
    llmEnabled,
    warmupEnabled: llmEnabled && company.warmup.enabled,
    canTransfer: canTransfer(company),
    escalateAfterFallbacks: company.fallbackResponses.escalateAfter,
    silenceTimeoutMs: conv.silenceTimeoutMs,
    maxReprompts: conv.maxReprompts,
    maxCallDurationMs: conv.maxCallDurationMs,
    startTimeoutMs: timing.startTimeoutMs ?? 10_000,
    // Long enough for a slow LLM answer, short enough that a caller is never left hanging.
    turnTimeoutMs: timing.turnTimeoutMs ?? company.gatekeeper.llm.timeoutMs + 3000,
    greeting: company.greeting,
    repromptLine: conv.repromptLine,
    closingLine: conv.closingLine,
    emergencyLine: conv.emergencyLine,
    transferLine: 'Of course. Let me transfer you to a member of our team now.',
  };
}

export class Engine {
  readonly #deps: EngineDeps;
  readonly #companies = new Map<string, CompanyRuntime>();
  readonly #byNumber = new Map<string, string>();
  readonly #sessions = new Map<string, CallSession>();
  readonly #sessionListeners = new Set<SessionListener>();
  readonly machine: CallMachine;

  private constructor(deps: EngineDeps) {
    this.#deps = deps;
    this.machine = this.#provideMachine();
    deps.ledger.onEvent((event) => {
      if (event.callId !== null) this.#sessions.get(event.callId)?.noteCost(event);
    });
  }

  /** Compiles every company (templates, embeddings) before the first call. */
  static async create(deps: EngineDeps): Promise<Engine> {
    const engine = new Engine(deps);
    for (const company of deps.catalog.companies.values()) await engine.#compile(company);
    for (const [number, id] of deps.catalog.byNumber) engine.#byNumber.set(number, id);
    return engine;
  }

  async #compile(company: CompanyConfig): Promise<void> {
    const templates = company.templates.map((id) => {
      const t = this.#deps.catalog.templates.get(id);
      if (t === undefined)
        throw new AppError('ERR_CONFIG_INVALID', `company ${company.id}: unknown template ${id}`);
      return t;
    });
    let router: CompanyRouter;
    const embedder = this.#deps.embedderFor(company.id);
    try {
      router = await createCompanyRouter({ company, templates, embedder });
    } catch (err) {
      if (!(err instanceof AppError) || err.code !== 'ERR_EMBEDDINGS_FAILED') throw err;
      // An embeddings outage at start must not keep the engine from answering calls.
      this.#deps.log.error(
        { companyId: company.id, embedder: embedder.id, err: { message: err.message } },
        'embeddings unavailable at start; Tier 2 uses the local embedder for this company',
      );
      router = await createCompanyRouter({ company, templates, embedder: createLocalEmbedder() });
    }
    const llmAvailable = usableModels(company, this.#deps.clients).length > 0;
    const understanding = createUnderstanding({
      company,
      router,
      clients: this.#deps.clients,
      ledger: this.#deps.ledger,
      log: this.#deps.log,
    });
    this.#companies.set(company.id, {
      config: company,
      templates,
      router,
      understanding,
      policy: policyFor(company, llmAvailable, this.#deps.timing),
    });
  }

  company(id: string): CompanyRuntime | undefined {
    return this.#companies.get(id);
  }

  companyForNumber(number: string): CompanyRuntime | undefined {
    const id = this.#byNumber.get(number);
    return id === undefined ? undefined : this.#companies.get(id);
  }

  companies(): IterableIterator<CompanyRuntime> {
    return this.#companies.values();
  }

  get liveCalls(): number {
    return this.#sessions.size;
  }

  session(callId: string): CallSession | undefined {
    return this.#sessions.get(callId);
  }

  /** Creates the call's actor; the transport then feeds it events (twilio.start first). */
  openCall(companyId: string, transport: CallTransport): CallSession {
    const company = this.#companies.get(companyId);
    if (company === undefined) throw new AppError('ERR_COMPANY_NOT_FOUND', `unknown company ${companyId}`);
    const session = new CallSession({
      machine: this.machine,
      company: company.config,
      policy: company.policy,
      transport,
      ledger: this.#deps.ledger,
      stats: this.#deps.stats,
      log: this.#deps.log,
      onEnded: (s) => {
        this.#sessions.delete(s.id);
        for (const l of this.#sessionListeners) l.ended?.(s);
      },
      ...(this.#deps.onTurn ? { onTurn: this.#deps.onTurn } : {}),
    });
    this.#sessions.set(session.id, session);
    for (const l of this.#sessionListeners) l.opened?.(session);
    session.start();
    return session;
  }

  /** Observes calls opening (before their actor starts) and ending (inspector, metrics). */
  onSession(listener: SessionListener): () => void {
    this.#sessionListeners.add(listener);
    return () => this.#sessionListeners.delete(listener);
  }

  /** The live calls. */
  sessions(): IterableIterator<CallSession> {
    return this.#sessions.values();
  }

  /** Ends every live call and flushes what must not be lost. */
  async shutdown(): Promise<void> {
    for (const session of [...this.#sessions.values()]) session.stop('shutdown');
    await this.#deps.ledger.flush();
  }

  #runtime(companyId: string): CompanyRuntime {
    const c = this.#companies.get(companyId);
    if (c === undefined) throw new AppError('ERR_COMPANY_NOT_FOUND', `unknown company ${companyId}`);
    return c;
  }

  /** Every I/O implementation, provided once; per-call state is looked up by callId. */
  #provideMachine(): CallMachine {
    const deps = this.#deps;
    const tier3 = createTier3({
      clients: deps.clients,
      budgets: deps.budgets,
      ledger: deps.ledger,
      stats: deps.stats,
      log: deps.log,
    });
    const gate = createWarmupGate({ budgets: deps.budgets, stats: deps.stats });
    const pickFallback = createFallbackPicker(deps.rotation);
    const sessions = this.#sessions;

    return callMachine.provide({
      actors: {
        capture: fromPromise<CaptureResult, TurnInput>(({ input, signal }) =>
          this.#runtime(input.companyId).understanding.capture(input, signal),
        ),
        detect: fromPromise<Situation, DetectInput>(({ input, signal }) =>
          this.#runtime(input.companyId).understanding.detect(input, signal),
        ),
        tier1: fromPromise<TierResult, TurnInput>(({ input }) =>
          Promise.resolve(this.#runtime(input.companyId).router.tier1(input.utterance)),
        ),
        tier2: fromPromise<TierResult, Tier2Input>(({ input, signal }) =>
          this.#runtime(input.companyId).router.tier2(input.utterance, input.situation, signal),
        ),
        warmupGate: fromPromise<WarmupDecision, WarmupGateInput>(async ({ input }) => {
          const started = performance.now();
          const decision = await gate({
            company: this.#runtime(input.companyId).config,
            tier1Confidence: input.tier1Confidence,
            category: input.category,
          });
          if (!decision.warm) {
            sessions.get(input.callId)?.log.info({ reason: decision.reason }, 'warmup skipped');
          }
          return { ...decision, durationMs: performance.now() - started };
        }),
        llm: fromPromise<LlmAnswer, LlmInput>(({ input, signal }) => {
          const company = this.#runtime(input.companyId);
          const session = sessions.get(input.callId);
          const request = tier3({
            company: company.config,
            templates: company.templates,
            input,
            callSid: session?.callSid ?? null,
            signal,
          });
          session?.track(input.turn, request);
          return request;
        }),
        fallbackLine: fromPromise<FallbackLine, FallbackInput>(async ({ input }) => {
          const started = performance.now();
          const text = await pickFallback(
            this.#runtime(input.companyId).config,
            input.kind,
            input.offerEscalation,
          );
          return { kind: input.kind, text, durationMs: performance.now() - started };
        }),
        speaker: fromCallback<{ type: 'noop' }, SpeakerInput>(({ input, sendBack }) => {
          const session = sessions.get(input.callId);
          if (session === undefined) throw new AppError('ERR_CALL_GONE', 'the call has no transport');
          return session.transport.speak(input.text, {
            interruptible: input.interruptible,
            onDone: () => sendBack({ type: 'playback.done' }),
          });
        }),
      },
    });
  }
}
