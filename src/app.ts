/**
 * The composition root: configuration in, a running engine and server out. main.ts, the tests and
 * the benchmark all start Switchboard through here, so they run the same wiring.
 */
import type { TurnObservation } from './calls/callSession.ts';
import { Engine } from './calls/engine.ts';
import { StartupWarmup } from './calls/startupWarmup.ts';
import type { EnvConfig } from './config/env.ts';
import { createMemoryBudgetStore } from './cost/budgets.ts';
import type { BudgetStore } from './cost/budgets.ts';
import { createMemoryLedger } from './cost/costLedger.ts';
import type { CostLedger } from './cost/costLedger.ts';
import type { CostSink } from './cost/costEvent.ts';
import { newCostEvent } from './cost/costEvent.ts';
import { costUsd } from './cost/priceTable.ts';
import { AppError, isAbortError } from './errors.ts';
import { createLogger } from './observability/logger.ts';
import type { Logger } from './observability/logger.ts';
import { createInspector } from './observability/inspect/inspector.ts';
import type { Inspector } from './observability/inspect/inspector.ts';
import { InspectHub } from './observability/inspect/inspectHub.ts';
import { createMetrics, metricsRoute } from './observability/metrics.ts';
import type { Metrics } from './observability/metrics.ts';
import { statusRoute } from './observability/status.ts';
import { createTurnLatencyWindow } from './observability/turnLatencyWindow.ts';
import type { Embedder } from './providers/embeddings/embedder.ts';
import { createOpenAiEmbedder } from './providers/embeddings/openaiEmbedder.ts';
import { createAnthropicLlm } from './providers/llm/anthropicLlm.ts';
import { withCircuitBreaker } from './providers/llm/circuitBreaker.ts';
import type {
  CircuitBreakerLlm,
  CircuitBreakerOptions,
  CircuitSnapshot,
} from './providers/llm/circuitBreaker.ts';
import { createOpenAiLlm } from './providers/llm/openaiLlm.ts';
import { createLocalEmbedder } from './routing/localEmbedder.ts';
import { createMemoryRotationStore } from './routing/fallbackPicker.ts';
import { startServer } from './server/httpServer.ts';
import type { RunningServer, ServerOptions } from './server/httpServer.ts';
import { createFileConfigStore, loadCatalog, seedDemo } from './store/configStore.ts';
import { createMemoryWarmupStats } from './warmup/warmupStats.ts';

/**
 * New calls are refused (503 on the webhook, so Twilio can fail over) while the event loop lags by
 * more than this: live calls would otherwise all get slower.
 */
export const DEFAULT_SHED_DELAY_MS = 500;

export interface AppOptions {
  readonly log?: Logger;
  readonly ledger?: CostLedger;
  readonly budgets?: BudgetStore;
  readonly embedder?: Embedder;
  readonly timing?: { startTimeoutMs?: number; turnTimeoutMs?: number };
  readonly relay?: ServerOptions['relay'];
  /** Overrides DEFAULT_SHED_DELAY_MS. */
  readonly shedDelayMs?: number;
  readonly onTurn?: (turn: TurnObservation) => void;
  /** Overrides STARTUP_WARMUP: run the startup warmup before reporting ready (true) or not. */
  readonly startupWarmup?: boolean;
  /** Called once the server listens, before the startup warmup runs (the engine is not ready yet). */
  readonly onListening?: (server: RunningServer) => void;
}

export interface App {
  readonly engine: Engine;
  readonly server: RunningServer;
  readonly ledger: CostLedger;
  readonly log: Logger;
  readonly metrics: Metrics;
  /** The startup warmup's report; it has ended by the time startApp resolves. */
  readonly warmup: StartupWarmup;
  /** The statechart inspector under /inspect; only with ADMIN_TOKEN set. */
  readonly inspector: Inspector | undefined;
  /** Stops taking calls, ends live ones, flushes the ledger. */
  close(): Promise<void>;
}

/** The LLM clients, each behind its provider's circuit breaker. */
export interface LlmCircuitClients {
  readonly openai?: CircuitBreakerLlm;
  readonly anthropic?: CircuitBreakerLlm;
}

/** The configured LLM providers, each behind a circuit breaker (LLM_CIRCUIT_* settings). */
export function llmClientsFrom(
  env: EnvConfig,
  hooks: Pick<CircuitBreakerOptions, 'onError' | 'onStateChange'> = {},
): LlmCircuitClients {
  const breaker = { ...env.llmCircuit, ...hooks };
  return {
    ...(env.openai
      ? {
          openai: withCircuitBreaker(
            createOpenAiLlm({
              apiKey: env.openai.apiKey,
              ...(env.openai.baseURL ? { baseURL: env.openai.baseURL } : {}),
            }),
            breaker,
          ),
        }
      : {}),
    ...(env.anthropic
      ? {
          anthropic: withCircuitBreaker(
            createAnthropicLlm({
              apiKey: env.anthropic.apiKey,
              ...(env.anthropic.baseURL ? { baseURL: env.anthropic.baseURL } : {}),
            }),
            breaker,
          ),
        }
      : {}),
  };
}

/** Every breaker's snapshot, for metrics and `GET /status`. */
function circuitsOf(clients: LlmCircuitClients): () => CircuitSnapshot[] {
  const breakers = [clients.openai, clients.anthropic].filter((c) => c !== undefined);
  return () => breakers.map((c) => c.snapshot());
}

/**
 * Tier 2's embedder per company: OpenAI embeddings when a key is configured (each company its own
 * batching client, so every embeddings request is a cost event billed to that company), the local
 * embedder otherwise, or the one a caller provides (tests, bench).
 */
export function embeddersFrom(
  env: EnvConfig,
  ledger: CostSink,
  given?: Embedder,
  /** Sees every failed embeddings request (caller aborts excluded), for metrics. */
  onError?: (code: string) => void,
): (companyId: string) => Embedder {
  if (given !== undefined) return () => given;
  const openai = env.openai;
  if (openai === undefined) return () => createLocalEmbedder();
  return (companyId) => {
    const embedder = createOpenAiEmbedder({
      apiKey: openai.apiKey,
      ...(openai.baseURL ? { baseURL: openai.baseURL } : {}),
      onUsage: (usage) =>
        ledger.record(
          newCostEvent({
            companyId,
            purpose: 'embedding',
            tier: 2,
            action: 'completed',
            provider: 'openai',
            model: usage.model,
            inputTokens: usage.inputTokens,
            durationMs: Math.round(usage.durationMs),
            costUsd: costUsd('openai', usage.model, { inputTokens: usage.inputTokens, outputTokens: 0 }),
          }),
        ),
    });
    if (onError === undefined) return embedder;
    return {
      id: embedder.id,
      dimensions: embedder.dimensions,
      async embed(texts, signal) {
        try {
          return await embedder.embed(texts, signal);
        } catch (err) {
          if (!isAbortError(err)) onError(err instanceof AppError ? err.code : 'ERR_EMBEDDINGS_FAILED');
          throw err;
        }
      },
    };
  };
}

export async function startApp(env: EnvConfig, options: AppOptions = {}): Promise<App> {
  const log = options.log ?? createLogger(env.logLevel);
  if (env.twilio.authToken === undefined) {
    log.warn(
      '!!! TWILIO_AUTH_TOKEN is not set: webhook signatures are NOT checked, and unsigned requests are accepted from loopback only. Set it before taking real calls. !!!',
    );
  }
  const store = createFileConfigStore(env.dataDir);
  if (await seedDemo(store))
    log.info({ dataDir: env.dataDir }, 'first start: loaded the demo company and template');
  const catalog = await loadCatalog(store);

  const ledger = options.ledger ?? createMemoryLedger();
  const metrics = createMetrics();
  const turnLatency = createTurnLatencyWindow();
  ledger.onEvent((event) => metrics.observeCost(event));
  const embedderFor = embeddersFrom(env, ledger, options.embedder, (code) =>
    metrics.observeProviderError({ provider: 'openai', kind: 'embeddings', code }),
  );
  const clients = llmClientsFrom(env, {
    onError: (error) => metrics.observeProviderError({ ...error, kind: 'llm' }),
    onStateChange: (change) => {
      metrics.observeCircuitChange(change);
      log.warn(change, 'llm circuit breaker changed state');
    },
  });
  const circuits = circuitsOf(clients);
  const budgets = options.budgets ?? createMemoryBudgetStore();
  const engine = await Engine.create({
    catalog,
    log,
    embedderFor,
    clients,
    budgets,
    stats: createMemoryWarmupStats(),
    ledger,
    rotation: createMemoryRotationStore(),
    ...(options.timing ? { timing: options.timing } : {}),
    onTurn: (turn) => {
      metrics.observeTurn(turn);
      turnLatency.observe(turn.record.turn, turn.latencyMs);
      options.onTurn?.(turn);
    },
  });
  // The server listens before the engine is ready: /health answers, the webhook says 503.
  const warmup = new StartupWarmup({
    engine,
    clients,
    log,
    enabled: options.startupWarmup ?? env.startupWarmup.enabled,
    timeoutMs: env.startupWarmup.timeoutMs,
    onDone: (report) => {
      if (report.durationMs !== null) metrics.observeStartupWarmup(report.durationMs);
    },
  });
  const ready = () => warmup.ready;
  metrics.track({
    liveCalls: () => engine.liveCalls,
    circuits,
    ready,
    understandsInOrder: (companyId) => engine.company(companyId)?.policy.understandInOrder ?? false,
  });
  // Off without an admin token: then nothing records calls or listens under /inspect.
  const inspector =
    env.adminToken === undefined
      ? undefined
      : await createInspector({ engine, adminToken: env.adminToken, log, publicBaseUrl: env.publicBaseUrl });
  // Loaded only when configured: nothing of @statelyai/inspect runs otherwise.
  const stately =
    env.statelyInspectUrl === undefined
      ? undefined
      : (await import('./observability/inspect/statelyBridge.ts')).startStatelyBridge({
          url: env.statelyInspectUrl,
          engine,
          hub: inspector?.hub ?? new InspectHub(engine, log),
          log,
        });
  const server = await startServer({
    env,
    engine,
    log,
    ...(options.relay ? { relay: options.relay } : {}),
    shedDelayMs: options.shedDelayMs ?? DEFAULT_SHED_DELAY_MS,
    readiness: warmup,
    routes: [
      metricsRoute(metrics),
      statusRoute(
        { engine, budgets, circuits, turns: turnLatency, warmup: () => warmup.report(), ready },
        env.adminToken,
      ),
      ...(inspector?.routes ?? []),
    ],
  });
  options.onListening?.(server);
  await warmup.run();
  log.info(
    {
      url: server.url,
      companies: catalog.companies.size,
      templates: catalog.templates.size,
      embedder: embedderFor('').id,
      startupWarmupMs: warmup.report().durationMs,
    },
    'switchboard ready',
  );
  return {
    engine,
    server,
    ledger,
    log,
    metrics,
    warmup,
    inspector,
    async close() {
      await engine.shutdown();
      inspector?.close();
      stately?.close();
      await server.close();
    },
  };
}
