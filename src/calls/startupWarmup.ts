/**
 * The startup warmup: before the engine reports ready, one synthetic turn per company goes through
 * the call machine as the engine provided it, and each LLM provider gets a connection, so the first
 * real caller does not pay for cold code paths, a TCP + TLS handshake or a client's lazy set-up.
 *
 * What runs for real: the call machine (greeting, listening, thinking with every routing state the
 * company's policy reaches, speaking), Tier 1, the warmup gate (it reads the budget and hit-rate
 * stores), Tier 2 through the company's own embedder — with OpenAI embeddings that is one real
 * embeddings request for the company's greeting (about 15 tokens, a cost event of ~$0.0000003),
 * which also opens the connection later Tier 2 requests reuse — and the relay frame parser and
 * TwiML builder. What is simulated, so that no tokens are spent: capture and detect answer with the
 * company's rules even when it understands with an LLM; the LLM actor answers a fixed text without
 * a request; fallback lines rotate in a throwaway counter (the shared one is left alone); the
 * speaker finishes at once. Instead, each configured LLM provider is asked for its model list (a
 * free `GET /v1/models` through the provider's client), which leaves a kept-alive connection and a
 * TLS session behind for the first paid request. The connection lasts only while the client keeps
 * idle sockets (4 s for OpenAI's): a call soon after start rides it; a later one still finds the
 * client's code warm and the TLS session cached.
 *
 * There is no audio cache to fill: on ConversationRelay, Twilio synthesises speech itself.
 *
 * Failures are recorded in the report and logged, never fatal: the engine becomes ready when the
 * warmup ends, however it ended, or when its deadline passes.
 */
import { performance } from 'node:perf_hooks';
import { createActor, fromCallback, fromPromise } from 'xstate';
import type {
  CallMachine,
  DetectInput,
  FallbackInput,
  LlmInput,
  SpeakerInput,
  TurnInput,
} from '../../machines/callMachine.ts';
import type {
  AnsweredBy,
  CaptureResult,
  FallbackLine,
  LlmAnswer,
  Situation,
  TurnRecord,
} from '../../machines/types.ts';
import { AppError } from '../errors.ts';
import type { Logger } from '../observability/logger.ts';
import { providerErrorCode } from '../providers/llm/circuitBreaker.ts';
import type { LlmClient } from '../providers/llm/llmClient.ts';
import { isLlmError } from '../providers/llm/llmErrors.ts';
import { createFallbackPicker, createMemoryRotationStore } from '../routing/fallbackPicker.ts';
import type { LlmClients } from '../routing/tier3Llm.ts';
import type { Readiness } from '../server/httpServer.ts';
import { parseRelayFrame } from '../twilio/relayProtocol.ts';
import { conversationRelayTwiml } from '../twilio/twiml.ts';
import type { CompanyRuntime, Engine } from './engine.ts';

export type StartupWarmupStatus = 'pending' | 'running' | 'done' | 'off';

/** One company's synthetic turn. */
export interface CompanyWarmupResult {
  readonly companyId: string;
  readonly ok: boolean;
  readonly durationMs: number;
  /** Who answered the synthetic turn (3 = the simulated LLM answer). */
  readonly answeredBy: AnsweredBy | null;
  /** Whether Tier 2 embedded the utterance through the company's embedder. */
  readonly embedded: boolean;
  readonly embedder: string;
  /** The error code when it failed (never a message: messages can quote configuration). */
  readonly error: string | null;
}

/** One LLM provider's connection. */
export interface ProviderWarmupResult {
  readonly provider: string;
  readonly ok: boolean;
  readonly durationMs: number;
  readonly error: string | null;
}

export interface StartupWarmupReport {
  readonly status: StartupWarmupStatus;
  readonly startedAt: string | null;
  readonly durationMs: number | null;
  /** True when every synthetic turn and every provider connection succeeded; null until done. */
  readonly ok: boolean | null;
  readonly companies: readonly CompanyWarmupResult[];
  readonly providers: readonly ProviderWarmupResult[];
}

export interface StartupWarmupDeps {
  readonly engine: Engine;
  readonly clients: LlmClients;
  readonly log: Logger;
  /** False: no warmup, the engine is ready at once (status `off`). */
  readonly enabled: boolean;
  /** Deadline for the whole warmup; what has not finished by then is recorded as timed out. */
  readonly timeoutMs: number;
  /** Called once the warmup has ended (or at once when disabled). */
  readonly onDone?: (report: StartupWarmupReport) => void;
}

/** How many companies warm up at once: each may wait on an embeddings request. */
const CONCURRENCY = 4;

const SIMULATED_LLM_ANSWER: LlmAnswer = {
  text: 'Startup warmup: simulated answer, no provider was called.',
  provider: 'startup-warmup',
  model: 'none',
  firstTokenMs: 0,
  durationMs: 0,
  costUsd: 0,
};

function errorCode(err: unknown): string {
  if (isLlmError(err)) return providerErrorCode(err);
  return err instanceof AppError ? err.code : 'ERR_STARTUP_WARMUP';
}

const round = (ms: number) => Math.round(ms * 10) / 10;

/**
 * The engine's readiness: not ready while the startup warmup is pending or running, ready once it
 * has ended (or when it is off). `GET /health` shows its report.
 */
export class StartupWarmup implements Readiness {
  readonly #deps: StartupWarmupDeps;
  #report: StartupWarmupReport;

  constructor(deps: StartupWarmupDeps) {
    this.#deps = deps;
    this.#report = {
      status: deps.enabled ? 'pending' : 'off',
      startedAt: null,
      durationMs: null,
      ok: null,
      companies: [],
      providers: [],
    };
  }

  get ready(): boolean {
    return this.#report.status === 'done' || this.#report.status === 'off';
  }

  report(): StartupWarmupReport {
    return this.#report;
  }

  health(): Record<string, unknown> {
    return { warmup: this.#report };
  }

  /** Runs the warmup once; resolves with its report when it has ended. Never rejects. */
  async run(): Promise<StartupWarmupReport> {
    if (this.#report.status !== 'pending') {
      if (this.#report.status === 'off') this.#deps.onDone?.(this.#report);
      return this.#report;
    }
    const { engine, clients, log, timeoutMs } = this.#deps;
    const startedAt = performance.now();
    this.#report = { ...this.#report, status: 'running', startedAt: new Date().toISOString() };
    log.info({ companies: [...engine.companies()].length, timeoutMs }, 'startup warmup started');

    const deadline = AbortSignal.timeout(timeoutMs);
    let providerResults: ProviderWarmupResult[] = [];
    let companyResults: CompanyWarmupResult[] = [];
    let wireOk = true;
    try {
      warmWire();
    } catch (err) {
      wireOk = false;
      log.warn({ code: errorCode(err) }, 'startup warmup: the wire codecs failed');
    }
    try {
      const providers = Promise.all(
        (['openai', 'anthropic'] as const).flatMap((name) => {
          const client = clients[name];
          return client?.preconnect === undefined ? [] : [preconnect(client, deadline, timeoutMs)];
        }),
      );
      const companies = mapLimited([...engine.companies()], CONCURRENCY, (runtime) =>
        warmCompany(engine, runtime, deadline),
      );
      [providerResults, companyResults] = await Promise.all([providers, companies]);
    } catch (err) {
      // Each step records its own failure; this is a bug in the warmup itself, and still not fatal.
      wireOk = false;
      log.error({ err }, 'startup warmup failed');
    }

    const ok = wireOk && [...providerResults, ...companyResults].every((r) => r.ok);
    this.#report = {
      ...this.#report,
      status: 'done',
      durationMs: round(performance.now() - startedAt),
      ok,
      companies: companyResults,
      providers: providerResults,
    };
    for (const r of companyResults.filter((c) => !c.ok))
      log.warn({ companyId: r.companyId, code: r.error }, 'startup warmup: synthetic turn failed');
    for (const r of providerResults.filter((p) => !p.ok))
      log.warn({ provider: r.provider, code: r.error }, 'startup warmup: provider connection failed');
    log.info(
      { durationMs: this.#report.durationMs, ok, companies: companyResults.length },
      'startup warmup done',
    );
    this.#deps.onDone?.(this.#report);
    return this.#report;
  }
}

/** The relay frame schemas (zod compiles them on first use) and the TwiML builder. */
function warmWire(): void {
  parseRelayFrame(JSON.stringify({ type: 'setup', callSid: 'CA00000000000000000000000000000000' }));
  parseRelayFrame(JSON.stringify({ type: 'prompt', voicePrompt: 'Hello', last: true }));
  parseRelayFrame(JSON.stringify({ type: 'interrupt', utteranceUntilInterrupt: 'Hel' }));
  conversationRelayTwiml({
    relayUrl: 'wss://warmup.invalid/twilio/relay/x',
    actionUrl: 'https://warmup.invalid/twilio/connect-action',
    language: 'en-US',
  });
}

async function preconnect(
  client: LlmClient,
  deadline: AbortSignal,
  timeoutMs: number,
): Promise<ProviderWarmupResult> {
  const started = performance.now();
  try {
    await client.preconnect!({ signal: deadline, timeoutMs: Math.min(timeoutMs, 10_000) });
    return {
      provider: client.provider,
      ok: true,
      durationMs: round(performance.now() - started),
      error: null,
    };
  } catch (err) {
    return {
      provider: client.provider,
      ok: false,
      durationMs: round(performance.now() - started),
      error: deadline.aborted ? 'ERR_STARTUP_WARMUP_TIMEOUT' : errorCode(err),
    };
  }
}

async function warmCompany(
  engine: Engine,
  runtime: CompanyRuntime,
  deadline: AbortSignal,
): Promise<CompanyWarmupResult> {
  const started = performance.now();
  const companyId = runtime.config.id;
  const result = (fields: Partial<CompanyWarmupResult>): CompanyWarmupResult => ({
    companyId,
    ok: true,
    durationMs: round(performance.now() - started),
    answeredBy: null,
    embedded: false,
    embedder: runtime.router.embedderId,
    error: null,
    ...fields,
  });
  try {
    const utterance = runtime.config.greeting;
    const record = await syntheticTurn(engine, runtime, utterance, deadline);
    let embedded = record.timings.tier2Ms !== null;
    if (!embedded) {
      // Tier 1 answered: Tier 2's embedder (and its connection) still needs its first request.
      await runtime.router.tier2(utterance, record.situation, deadline);
      embedded = true;
    }
    return result({ answeredBy: record.tier, embedded });
  } catch (err) {
    return result({ ok: false, error: deadline.aborted ? 'ERR_STARTUP_WARMUP_TIMEOUT' : errorCode(err) });
  }
}

/**
 * One caller turn through the engine's machine with the provider-spending actors replaced: start,
 * greeting, the caller says `utterance`, the reply is "spoken", back to listening.
 */
function syntheticTurn(
  engine: Engine,
  runtime: CompanyRuntime,
  utterance: string,
  deadline: AbortSignal,
): Promise<TurnRecord> {
  const machine: CallMachine = engine.machine.provide({
    actors: {
      capture: fromPromise<CaptureResult, TurnInput>(({ input }) =>
        Promise.resolve(runtime.router.capture(input.utterance, input.slots)),
      ),
      detect: fromPromise<Situation, DetectInput>(({ input }) =>
        Promise.resolve(runtime.router.detect(input.utterance, input.slots)),
      ),
      llm: fromPromise<LlmAnswer, LlmInput>(() => Promise.resolve(SIMULATED_LLM_ANSWER)),
      fallbackLine: fromPromise<FallbackLine, FallbackInput>(async ({ input }) => {
        const text = await pickFallback(runtime.config, input.kind, input.offerEscalation);
        return { kind: input.kind, text, durationMs: 0 };
      }),
      speaker: fromCallback<{ type: 'noop' }, SpeakerInput>(({ sendBack }) => {
        const timer = setImmediate(() => sendBack({ type: 'playback.done' }));
        return () => clearImmediate(timer);
      }),
    },
  });
  const policy = runtime.policy;
  const actor = createActor(machine, {
    input: {
      callId: `startup-warmup:${runtime.config.id}`,
      companyId: runtime.config.id,
      policy: { ...policy, turnTimeoutMs: Math.min(policy.turnTimeoutMs, 10_000) },
    },
  });

  return new Promise<TurnRecord>((resolve, reject) => {
    let record: TurnRecord | null = null;
    let spoke = false;
    let settled = false;
    const settle = (outcome: () => void) => {
      if (settled) return;
      settled = true;
      deadline.removeEventListener('abort', onDeadline);
      // Stop outside the notification that brought us here: the actor is mid-transition.
      queueMicrotask(() => actor.stop());
      outcome();
    };
    const onDeadline = () =>
      settle(() => reject(new AppError('ERR_STARTUP_WARMUP_TIMEOUT', 'the startup warmup ran out of time')));
    if (deadline.aborted) return onDeadline();
    deadline.addEventListener('abort', onDeadline, { once: true });

    actor.on('turn.completed', (event) => {
      record = event.record;
    });
    actor.subscribe({
      next(snapshot) {
        const listening = snapshot.matches({ conversation: 'listening' });
        if (listening && !spoke) {
          spoke = true;
          actor.send({ type: 'caller.transcriptFinal', text: utterance });
        } else if (record !== null && (listening || snapshot.status === 'done')) {
          const answered = record;
          settle(() => resolve(answered));
        } else if (snapshot.status === 'done') {
          settle(() =>
            reject(new AppError('ERR_STARTUP_WARMUP', 'the synthetic call ended before its turn')),
          );
        }
      },
      error: (err) => settle(() => reject(err instanceof Error ? err : new Error(String(err)))),
    });
    actor.start();
    actor.send({ type: 'twilio.start', callSid: 'startup-warmup' });
  });
}

/** Fallback lines for synthetic turns rotate here, never in the shared rotation store. */
const pickFallback = createFallbackPicker(createMemoryRotationStore());

/** Runs `work` over `items`, at most `limit` at a time, keeping the order of `items`. */
async function mapLimited<T, R>(
  items: readonly T[],
  limit: number,
  work: (item: T) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await work(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
