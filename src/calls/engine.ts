/**
 * The engine: compiled companies, the call machine provided once with every I/O implementation,
 * and the live call sessions. Transports open calls here; nothing else creates actors.
 *
 * Companies come from a ConfigSource (the config cache in front of the store). Every company is
 * compiled at start; when the source says a company or one of its templates changed (on any
 * instance), it is compiled again in the background and swapped in for new calls. A call keeps the
 * compiled company it started with until it ends, so a change never alters a conversation midway.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
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
import type { BudgetExceeded, LlmClients } from '../routing/tier3Llm.ts';
import type { ConfigSource } from '../store/configService.ts';
import { createUnderstanding } from '../understanding/understanding.ts';
import type { Understanding } from '../understanding/understanding.ts';
import type { GateReads } from '../warmup/gateReads.ts';
import { createWarmupGate } from '../warmup/warmupGate.ts';
import type { WarmupStats } from '../warmup/warmupStats.ts';
import { CallSession } from './callSession.ts';
import type { CallSessionDeps, TurnObservation } from './callSession.ts';
import type { CallTransport } from './callTransport.ts';

export interface SessionListener {
  opened?(session: CallSession): void;
  ended?(session: CallSession): void;
}

export interface EngineDeps {
  /** Companies, templates and called numbers, and word of their changes. */
  readonly config: ConfigSource;
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
  /** A Tier 3 or warmup request was refused by a budget (alerting). */
  readonly onBudgetExceeded?: (refusal: BudgetExceeded) => void;
  /** A tier's matcher failed (the turn goes on to the next tier); for the ROUTING_ERROR alert. */
  readonly onRoutingError?: (failure: { companyId: string; tier: 1 | 2; code: string }) => void;
  /** The warmup gate's reads, when they should not go to `budgets` and `stats` directly (gateReads.ts). */
  readonly gateReads?: GateReads;
  /** A company was compiled (at start or after a change): e.g. synthesize its fixed lines' audio. */
  readonly onCompiled?: (runtime: CompanyRuntime) => void;
  /** What the caller heard of a reply (Media Streams calls). */
  readonly onHeard?: CallSessionDeps['onHeard'];
}

/** A company ready to take calls: its config, templates, compiled router and call policy. */
export interface CompanyRuntime {
  readonly config: CompanyConfig;
  readonly templates: readonly TemplateConfig[];
  readonly router: CompanyRouter;
  readonly understanding: Understanding;
  readonly policy: CallPolicy;
  /** The config and templates it was compiled from, in a canonical form (what a change compares). */
  readonly fingerprint: string;
}

/**
 * How long a new call waits for a company being compiled again before it is answered with the
 * previous compilation (a slow embeddings provider must not hold the webhook).
 */
export const RECOMPILE_WAIT_MS = 2000;

/** JSON with object keys sorted, so equal documents compare equal whatever their key order. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}

const fingerprints = new WeakMap<object, string>();
/** Computed once per cached object: the cache hands out the same object until it reloads. */
function fingerprintOf(value: object): string {
  let f = fingerprints.get(value);
  if (f === undefined) fingerprints.set(value, (f = canonicalJson(value)));
  return f;
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
    dtmfActions: Object.fromEntries(
      Object.entries(company.dtmf).flatMap(([digit, action]) =>
        typeof action === 'string' ? [[digit, action] as const] : [],
      ),
    ),
  };
}

export class Engine {
  readonly #deps: EngineDeps;
  readonly #companies = new Map<string, CompanyRuntime>();
  /** Numbers of the compiled companies: the answer when the config source cannot be read. */
  readonly #byNumber = new Map<string, string>();
  readonly #sessions = new Map<string, CallSession>();
  /** The compiled company each live call started with. */
  readonly #pinned = new Map<string, CompanyRuntime>();
  readonly #refreshing = new Map<string, { again: boolean; done: Promise<CompanyRuntime | undefined> }>();
  readonly #unsubscribe: Array<() => void> = [];
  readonly #sessionListeners = new Set<SessionListener>();
  readonly machine: CallMachine;

  private constructor(deps: EngineDeps) {
    this.#deps = deps;
    this.machine = this.#provideMachine();
    deps.ledger.onEvent((event) => {
      if (event.callId !== null) this.#sessions.get(event.callId)?.noteCost(event);
    });
  }

  /**
   * Compiles every company (templates, embeddings) before the first call, then follows changes.
   * A company that cannot be compiled at start fails the start.
   */
  static async create(deps: EngineDeps): Promise<Engine> {
    const engine = new Engine(deps);
    for (const id of await deps.config.companyIds()) await engine.#build(id);
    engine.#follow();
    return engine;
  }

  /** Recompiles what changed, on this instance or another (the source's bus). */
  #follow(): void {
    const source = this.#deps.config;
    this.#unsubscribe.push(
      source.onChange((change) => {
        // After the cache's own listener has dropped its copy (listeners run in order, but a
        // source may deliver asynchronously).
        setImmediate(() => {
          if (change.kind === 'company') void this.#refresh(change.id);
          if (change.kind !== 'templates') return;
          for (const runtime of this.#companies.values()) {
            if (runtime.config.templates.includes(change.id)) void this.#refresh(runtime.config.id);
          }
        });
      }),
      source.onResync(() => {
        for (const id of this.#companies.keys()) void this.#refresh(id);
      }),
    );
  }

  /**
   * Reads a company and its templates from the source and compiles them unless the compiled
   * runtime already has exactly that configuration. Resolves to undefined when the company is gone.
   */
  async #build(id: string): Promise<CompanyRuntime | undefined> {
    const source = this.#deps.config;
    const config = await source.company(id);
    if (config === null) {
      this.#uninstall(id);
      return undefined;
    }
    const templates = await Promise.all(
      config.templates.map(async (templateId) => {
        const t = await source.template(templateId);
        if (t === null)
          throw new AppError('ERR_CONFIG_INVALID', `company ${config.id}: unknown template ${templateId}`);
        return t;
      }),
    );
    const fingerprint = [config, ...templates].map(fingerprintOf).join('\n');
    const current = this.#companies.get(id);
    if (current?.fingerprint === fingerprint) return current;
    const runtime = await this.#compile(config, templates, fingerprint);
    this.#uninstall(id);
    this.#companies.set(id, runtime);
    for (const number of config.phoneNumbers) this.#byNumber.set(number, id);
    if (current !== undefined) this.#deps.log.info({ companyId: id }, 'company recompiled after a change');
    this.#deps.onCompiled?.(runtime);
    return runtime;
  }

  #uninstall(id: string): void {
    const current = this.#companies.get(id);
    if (current === undefined) return;
    this.#companies.delete(id);
    for (const number of current.config.phoneNumbers) {
      if (this.#byNumber.get(number) === id) this.#byNumber.delete(number);
    }
  }

  /**
   * #build, one at a time per company: a change arriving while a build runs triggers one more.
   * Never rejects: on failure the compiled runtime stays (and is resolved).
   */
  #refresh(id: string): Promise<CompanyRuntime | undefined> {
    const running = this.#refreshing.get(id);
    if (running !== undefined) {
      running.again = true;
      return running.done;
    }
    const state = { again: false, done: Promise.resolve<CompanyRuntime | undefined>(undefined) };
    state.done = (async () => {
      let runtime: CompanyRuntime | undefined;
      do {
        state.again = false;
        try {
          runtime = await this.#build(id);
        } catch (err) {
          // The database unreachable with nothing cached, or a stored document the code refuses:
          // keep serving what is compiled.
          runtime = this.#companies.get(id);
          this.#deps.log.error(
            { companyId: id, err: { code: (err as AppError).code, message: (err as Error).message } },
            'company could not be (re)loaded; serving the compiled version',
          );
        }
      } while (state.again);
      return runtime;
    })().finally(() => this.#refreshing.delete(id));
    this.#refreshing.set(id, state);
    return state.done;
  }

  async #compile(
    company: CompanyConfig,
    templates: readonly TemplateConfig[],
    fingerprint: string,
  ): Promise<CompanyRuntime> {
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
    return {
      config: company,
      templates,
      router,
      understanding,
      policy: policyFor(company, llmAvailable, this.#deps.timing),
      fingerprint,
    };
  }

  /** The compiled company (new calls get this one). */
  company(id: string): CompanyRuntime | undefined {
    return this.#companies.get(id);
  }

  /**
   * The company a called number belongs to, as the config source says now (cached): compiled
   * again first if its configuration changed, compiled on first use if it is new to this instance.
   * While the source cannot be read, the compiled companies answer.
   */
  async companyForNumber(number: string): Promise<CompanyRuntime | undefined> {
    let id: string | null;
    try {
      id = await this.#deps.config.companyIdForNumber(number);
    } catch (err) {
      this.#deps.log.warn(
        { err: { code: (err as AppError).code } },
        'configuration unavailable; routing the call by the compiled companies',
      );
      const compiledId = this.#byNumber.get(number);
      return compiledId === undefined ? undefined : this.#companies.get(compiledId);
    }
    if (id === null) return undefined;
    const compiled = this.#companies.get(id);
    const fresh = this.#refresh(id);
    if (compiled === undefined) return fresh;
    const timer = new AbortController();
    try {
      return await Promise.race([
        fresh,
        sleep(RECOMPILE_WAIT_MS, compiled, { signal: timer.signal, ref: false }),
      ]);
    } finally {
      timer.abort();
    }
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
        this.#pinned.delete(s.id);
        for (const l of this.#sessionListeners) l.ended?.(s);
      },
      ...(this.#deps.onTurn ? { onTurn: this.#deps.onTurn } : {}),
      ...(this.#deps.onHeard ? { onHeard: this.#deps.onHeard } : {}),
    });
    // Before start(): the actor's first actions look the company up by call id.
    this.#pinned.set(session.id, company);
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
    for (const unsubscribe of this.#unsubscribe.splice(0)) unsubscribe();
    for (const session of [...this.#sessions.values()]) session.stop('shutdown');
    await this.#deps.ledger.flush();
  }

  /** The call's own compiled company; the current one for calls the engine did not open (startup warmup). */
  #runtime(input: { readonly callId: string; readonly companyId: string }): CompanyRuntime {
    const c = this.#pinned.get(input.callId) ?? this.#companies.get(input.companyId);
    if (c === undefined) throw new AppError('ERR_COMPANY_NOT_FOUND', `unknown company ${input.companyId}`);
    return c;
  }

  #routingFailed(companyId: string, tier: 1 | 2, err: unknown): void {
    const code = err instanceof AppError ? err.code : 'ERR_ROUTING';
    this.#deps.log.warn({ companyId, tier, code }, 'tier matcher failed; the turn goes on');
    this.#deps.onRoutingError?.({ companyId, tier, code });
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
      ...(deps.onBudgetExceeded ? { onBudgetExceeded: deps.onBudgetExceeded } : {}),
    });
    const gate = createWarmupGate(deps.gateReads ?? { budgets: deps.budgets, stats: deps.stats });
    const pickFallback = createFallbackPicker(deps.rotation);
    const sessions = this.#sessions;

    return callMachine.provide({
      actors: {
        capture: fromPromise<CaptureResult, TurnInput>(({ input, signal }) =>
          this.#runtime(input).understanding.capture(input, signal),
        ),
        detect: fromPromise<Situation, DetectInput>(({ input, signal }) =>
          this.#runtime(input).understanding.detect(input, signal),
        ),
        tier1: fromPromise<TierResult, TurnInput>(({ input }) => {
          try {
            return Promise.resolve(this.#runtime(input).router.tier1(input.utterance));
          } catch (err) {
            this.#routingFailed(input.companyId, 1, err);
            return Promise.reject(err instanceof Error ? err : new Error(String(err)));
          }
        }),
        tier2: fromPromise<TierResult, Tier2Input>(async ({ input, signal }) => {
          try {
            return await this.#runtime(input).router.tier2(input.utterance, input.situation, signal);
          } catch (err) {
            if (!signal.aborted) this.#routingFailed(input.companyId, 2, err);
            throw err;
          }
        }),
        warmupGate: fromPromise<WarmupDecision, WarmupGateInput>(async ({ input }) => {
          const started = performance.now();
          const decision = await gate({
            company: this.#runtime(input).config,
            tier1Confidence: input.tier1Confidence,
            category: input.category,
          });
          if (!decision.warm) {
            sessions.get(input.callId)?.log.info({ reason: decision.reason }, 'warmup skipped');
          }
          return { ...decision, durationMs: performance.now() - started };
        }),
        llm: fromPromise<LlmAnswer, LlmInput>(({ input, signal }) => {
          const company = this.#runtime(input);
          const session = sessions.get(input.callId);
          const request = tier3({
            company: company.config,
            templates: company.templates,
            input,
            callSid: session?.callSid ?? null,
            signal,
            ...(session?.streamsReplies === true
              ? { onText: (text: string) => session.draft(input.turn, input.mode, text) }
              : {}),
          });
          session?.track(input.turn, request);
          return request;
        }),
        fallbackLine: fromPromise<FallbackLine, FallbackInput>(async ({ input }) => {
          const started = performance.now();
          const text = await pickFallback(this.#runtime(input).config, input.kind, input.offerEscalation);
          return { kind: input.kind, text, durationMs: performance.now() - started };
        }),
        speaker: fromCallback<{ type: 'noop' }, SpeakerInput>(({ input, sendBack }) => {
          const session = sessions.get(input.callId);
          if (session === undefined) throw new AppError('ERR_CALL_GONE', 'the call has no transport');
          return session.transport.speak(input.text, {
            turn: input.turn,
            interruptible: input.interruptible,
            cacheable: input.cacheable,
            onDone: () => sendBack({ type: 'playback.done' }),
          });
        }),
      },
    });
  }
}
