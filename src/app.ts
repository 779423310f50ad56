/**
 * The composition root: configuration in, a running engine and server out. main.ts, the tests and
 * the benchmark all start Switchboard through here, so they run the same wiring.
 *
 * Stores: the database (PostgreSQL with DATABASE_URL, else PGlite under DATA_DIR) holds the
 * configuration, call records, the cost ledger and alerts; Redis (REDIS_URL, else in process) holds
 * the shared fast state: config cache and invalidation, budget counters, fallback rotation, warmup
 * statistics.
 */
import path from 'node:path';
import type { TurnObservation } from './calls/callSession.ts';
import { Engine } from './calls/engine.ts';
import type { CompanyRuntime } from './calls/engine.ts';
import { cannedLines, createMediaServices } from './speech/mediaServices.ts';
import type { MediaSocketOptions } from './twilio/mediaConnection.ts';
import { StartupWarmup } from './calls/startupWarmup.ts';
import type { EnvConfig } from './config/env.ts';
import type { BudgetStore } from './cost/budgets.ts';
import { DEFAULT_RECONCILE_INTERVAL_MS, seedBudgets, startBudgetReconciler } from './cost/budgetSync.ts';
import { tierDistribution, warmupAnalytics } from './cost/warmupAnalytics.ts';
import { createMemoryLedger } from './cost/costLedger.ts';
import type { CostLedger } from './cost/costLedger.ts';
import type { CostSink } from './cost/costEvent.ts';
import { newCostEvent } from './cost/costEvent.ts';
import { createLedgerWriter } from './cost/ledgerWriter.ts';
import type { LedgerWriter } from './cost/ledgerWriter.ts';
import { costUsd } from './cost/priceTable.ts';
import { AppError, isAbortError } from './errors.ts';
import type { AlertSink } from './observability/alertSink.ts';
import { createAlerts, watchDatabaseHealth } from './observability/alerts.ts';
import type { Alerts } from './observability/alerts.ts';
import { createTurnAlerts } from './observability/turnAlerts.ts';
import { cachedGateReads } from './warmup/gateReads.ts';
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
import { prefetchedRotation } from './routing/prefetchedRotation.ts';
import { adminApiRoute } from './server/adminApi.ts';
import { startServer } from './server/httpServer.ts';
import type { RunningServer, ServerOptions } from './server/httpServer.ts';
import { createCallRecorder } from './store/callRecords.ts';
import type { CallRecorder } from './store/callRecords.ts';
import { createConfigService } from './store/configService.ts';
import type { ConfigService, ConfigValues } from './store/configService.ts';
import { createFileConfigStore, fillEmptyStore, loadCatalog } from './store/configStore.ts';
import { createRedisServices } from './store/redisServices.ts';
import type { RedisServices } from './store/redisServices.ts';
import type { Db } from './store/sql/db.ts';
import { migrate } from './store/sql/migrate.ts';
import { openDb } from './store/sql/openDb.ts';
import { createSqlConfigStore } from './store/sql/sqlConfigStore.ts';

/**
 * New calls are refused (503 on the webhook, so Twilio can fail over) while the event loop lags by
 * more than this: live calls would otherwise all get slower.
 */
export const DEFAULT_SHED_DELAY_MS = 500;

export interface AppOptions {
  readonly log?: Logger;
  /**
   * The database. Omitted: from the environment (DATABASE_URL, else PGlite under DATA_DIR),
   * migrated at start and closed by close(). `null`: none — configuration from the JSON files under
   * DATA_DIR/config, the ledger in memory, no call records (fast tests; PGlite takes seconds to
   * start). A Db: that one (migrated at start, not closed by close()).
   */
  readonly db?: Db | null;
  /** Overrides the ledger (default: the durable writer with a database, in memory without). */
  readonly ledger?: CostLedger;
  /** Overrides the budget store (default: Redis with REDIS_URL, in process without; seeded from the ledger). */
  readonly budgets?: BudgetStore;
  /**
   * Where alerts go (default: the alert service — logged, stored in the database, POSTed to
   * ALERT_WEBHOOK_URL — once per code and company per window). GET /api/alerts reads the service.
   */
  readonly alerts?: AlertSink;
  /** How often budget counters are reconciled with the ledger (DEFAULT_RECONCILE_INTERVAL_MS). */
  readonly budgetReconcileMs?: number;
  readonly embedder?: Embedder;
  readonly timing?: { startTimeoutMs?: number; turnTimeoutMs?: number };
  readonly relay?: ServerOptions['relay'];
  /** Overrides DEFAULT_SHED_DELAY_MS. */
  readonly shedDelayMs?: number;
  readonly onTurn?: (turn: TurnObservation) => void;
  /** Overrides STARTUP_WARMUP: run the startup warmup before reporting ready (true) or not. */
  readonly startupWarmup?: boolean;
  /** Media Streams socket settings (tests shorten the start timeout and heartbeat). */
  readonly media?: Omit<MediaSocketOptions, 'trace'>;
  /** Called once the server listens, before the startup warmup runs (the engine is not ready yet). */
  readonly onListening?: (server: RunningServer) => void;
}

export interface App {
  readonly engine: Engine;
  readonly server: RunningServer;
  readonly ledger: CostLedger;
  /** The database, unless started with `db: null`. */
  readonly db: Db | undefined;
  /** Companies and templates: cached reads, validated writes. */
  readonly config: ConfigService;
  /** Redis (or in-process) shared state. */
  readonly services: RedisServices;
  /** Writes calls and turns behind the call; undefined without a database. */
  readonly recorder: CallRecorder | undefined;
  readonly alerts: AlertSink;
  readonly log: Logger;
  readonly metrics: Metrics;
  /** The startup warmup's report; it has ended by the time startApp resolves. */
  readonly warmup: StartupWarmup;
  /** The statechart inspector under /inspect; only with ADMIN_TOKEN set. */
  readonly inspector: Inspector | undefined;
  /** Stops taking calls, ends live ones, flushes call records and the ledger, closes the stores. */
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
  // What start-up opened, closed in reverse if a later step fails (a PGlite lock must not outlive it).
  const undo: Array<() => Promise<void> | void> = [];
  const unwind = async () => {
    for (const step of undo.reverse()) await Promise.resolve(step()).catch(() => undefined);
  };
  try {
    let db: Db | undefined;
    if (options.db === undefined) {
      db = await openDb({ databaseUrl: env.databaseUrl, dataDir: env.dataDir, log });
      const opened = db;
      undo.push(() => opened.close());
    } else if (options.db !== null) {
      db = options.db;
      await migrate(db, { log });
    }
    let service: Alerts | undefined;
    if (options.alerts === undefined) {
      const created = createAlerts({ db: db ?? null, log, webhookUrl: env.alertWebhookUrl });
      undo.push(() => created.close());
      service = created;
    }
    const alerts: AlertSink = options.alerts ?? service!;
    const store = db === undefined ? createFileConfigStore(env.dataDir) : createSqlConfigStore(db);
    const filled = await fillEmptyStore(store, { dataDir: env.dataDir, fromFiles: db !== undefined });
    if (filled === 'files')
      log.info(
        { dataDir: env.dataDir },
        'first start on this database: imported the configuration files from DATA_DIR/config',
      );
    if (filled === 'demo')
      log.info({ dataDir: env.dataDir }, 'first start: loaded the demo company and template');
    // Every document valid and consistent with the others, or the start fails naming each problem.
    const catalog = await loadCatalog(store);

    const services = await createRedisServices({
      redisUrl: env.redisUrl,
      keyPrefix: env.redisKeyPrefix,
      log,
      onDegraded: (reason) =>
        alerts.raise('REDIS_DEGRADED', {
          message:
            'Redis is unreachable: calls are answered with local fallbacks (budgets in conservative local mode, configuration from the database)',
          details: { reason },
        }),
    });
    undo.push(() => services.close());
    const config = createConfigService({
      store,
      cache: (o) => services.configCache<ConfigValues>(o),
      bus: services.bus,
      log,
    });
    undo.push(() => config.close());

    let writer: LedgerWriter | undefined;
    if (options.ledger === undefined && db !== undefined) {
      writer = createLedgerWriter({ db, spoolDir: path.resolve(env.dataDir, 'spool', 'cost-events'), log });
      const w = writer;
      undo.push(() => w.close());
    }
    const ledger: CostLedger = options.ledger ?? writer ?? createMemoryLedger();
    const recorder = db === undefined ? undefined : createCallRecorder({ db, log });
    if (recorder !== undefined) undo.push(() => recorder.close());

    const budgets: BudgetStore = options.budgets ?? services.budgets;
    let reconciler: ReturnType<typeof startBudgetReconciler> | undefined;
    if (options.budgets === undefined && db !== undefined) {
      // Postgres is the source of truth for spend: counters start from the ledger's sums.
      const seeded = await seedBudgets(services.budgets, db);
      if (seeded > 0) log.info({ companies: seeded }, 'budget counters seeded from the cost ledger');
      reconciler = startBudgetReconciler({
        budgets: services.budgets,
        db,
        log,
        intervalMs: options.budgetReconcileMs ?? DEFAULT_RECONCILE_INTERVAL_MS,
      });
      const r = reconciler;
      undo.push(() => r.stop());
    }

    const databaseWatch =
      db === undefined
        ? undefined
        : watchDatabaseHealth({
            alerts,
            sources: {
              ...(writer === undefined ? {} : { 'cost-ledger': () => writer.stats() }),
              ...(recorder === undefined ? {} : { 'call-records': () => recorder.stats() }),
            },
          });
    if (databaseWatch !== undefined) undo.push(() => databaseWatch.close());
    const turnAlerts = createTurnAlerts({ alerts });
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
        if (change.to === 'open') {
          alerts.raise('LLM_DOWN', {
            message:
              'An LLM provider keeps failing: its circuit is open and Tier 3 answers with fallback lines',
            details: { provider: change.provider },
          });
        }
      },
    });
    const circuits = circuitsOf(clients);
    // Media Streams (our own STT and TTS) when both are configured; ConversationRelay otherwise.
    const media = createMediaServices(env, {
      ledger,
      log,
      redis: services.redis,
      keyPrefix: env.redisKeyPrefix,
      health: services.health,
    });
    const engine = await Engine.create({
      config,
      log,
      embedderFor,
      clients,
      budgets,
      stats: services.stats,
      ledger,
      // With Redis, neither the warmup gate's reads nor a fallback line's rotation index wait for a
      // round trip: both are in memory, refreshed behind the turn (gateReads.ts, prefetchedRotation.ts).
      rotation: services.mode === 'redis' ? prefetchedRotation(services.rotation) : services.rotation,
      ...(services.mode === 'redis' ? { gateReads: cachedGateReads(budgets, services.stats) } : {}),
      ...(options.timing ? { timing: options.timing } : {}),
      onTurn: (turn) => {
        metrics.observeTurn(turn);
        turnLatency.observe(turn.record.turn, turn.latencyMs);
        recorder?.recordTurn(turn);
        turnAlerts.observe(turn);
        options.onTurn?.(turn);
      },
      onHeard: (heard) => recorder?.recordHeard(heard),
      // Fixed lines' audio is synthesized ahead of calls, each time a company is (re)compiled; the
      // cache keeps what did not change, so only new or edited lines cost a synthesis.
      ...(media === undefined
        ? {}
        : {
            onCompiled: (runtime: CompanyRuntime) =>
              void media.speech.prefill(cannedLines(runtime), {
                voice: runtime.config.voice.ttsVoice,
                billing: { companyId: runtime.config.id, callId: null, callSid: null, turn: null },
              }),
          }),
      onRoutingError: (failure) =>
        alerts.raise('ROUTING_ERROR', {
          companyId: failure.companyId,
          message: 'A tier matcher failed; the turn went on to the next tier',
          details: { tier: failure.tier, code: failure.code },
        }),
      onBudgetExceeded: (refusal) => {
        // The daily warmup cap is routine (the turn just runs without a head start); the monthly
        // budget blocks the LLM for the company.
        if (refusal.budget !== 'tier3-monthly') return;
        alerts.raise('BUDGET_EXCEEDED', {
          companyId: refusal.companyId,
          message: 'The monthly Tier 3 budget is spent: LLM answers are blocked and calls get fallback lines',
          details: { budget: refusal.budget, purpose: refusal.purpose, limitUsd: refusal.limitUsd },
        });
      },
    });
    undo.push(() => engine.shutdown());
    if (recorder !== undefined) {
      engine.onSession({
        opened: (s) =>
          recorder.recordCallStarted({
            callId: s.id,
            companyId: s.companyId,
            callSid: s.callSid,
            startedAt: s.startedAt,
          }),
        ended: (s) =>
          recorder.recordCallEnded({
            callId: s.id,
            companyId: s.companyId,
            callSid: s.callSid,
            startedAt: s.startedAt,
            endedAt: s.endedAt ?? Date.now(),
            endReason: s.endReason ?? 'unknown',
          }),
      });
    }
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
        : await createInspector({
            engine,
            adminToken: env.adminToken,
            log,
            publicBaseUrl: env.publicBaseUrl,
          });
    if (inspector !== undefined) undo.push(() => inspector.close());
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
    if (stately !== undefined) undo.push(() => stately.close());
    const stores = () => ({
      database: db?.kind ?? 'none',
      databaseAvailable:
        (writer?.stats().databaseAvailable ?? true) && (recorder?.stats().databaseAvailable ?? true),
      redis: services.mode,
      redisDegraded: services.health?.degraded ?? false,
    });
    const server = await startServer({
      env,
      engine,
      log,
      ...(options.relay ? { relay: options.relay } : {}),
      ...(media === undefined
        ? {}
        : {
            media: {
              services: media,
              ledger,
              observe: metrics.mediaObserver(),
              ...(options.media ? { options: options.media } : {}),
            },
          }),
      shedDelayMs: options.shedDelayMs ?? DEFAULT_SHED_DELAY_MS,
      onUnknownNumber: () =>
        alerts.raise('COMPANY_NOT_FOUND', {
          message: 'A call came in for a number no company owns; the caller heard "not in service"',
        }),
      readiness: {
        get ready() {
          return warmup.ready;
        },
        health: () => ({ ...warmup.health(), stores: stores() }),
      },
      routes: [
        metricsRoute(metrics),
        statusRoute(
          { engine, budgets, circuits, turns: turnLatency, warmup: () => warmup.report(), ready },
          env.adminToken,
        ),
        adminApiRoute({
          adminToken: env.adminToken,
          config,
          db,
          log,
          ...(db === undefined
            ? {}
            : {
                analytics: {
                  warmup: (q) => warmupAnalytics(db, q),
                  tiers: (q) => tierDistribution(db, q),
                },
              }),
          ...(service === undefined ? {} : { alerts: service }),
        }),
        ...(inspector?.routes ?? []),
      ],
    });
    undo.push(() => server.close());
    options.onListening?.(server);
    await warmup.run();
    log.info(
      {
        url: server.url,
        companies: catalog.companies.size,
        templates: catalog.templates.size,
        embedder: embedderFor('').id,
        database: db?.kind ?? 'none',
        redis: services.mode,
        transport: media === undefined ? 'relay' : 'media',
        startupWarmupMs: warmup.report().durationMs,
      },
      'switchboard ready',
    );
    return {
      engine,
      server,
      ledger,
      db,
      config,
      services,
      recorder,
      alerts,
      log,
      metrics,
      warmup,
      inspector,
      async close() {
        // Calls first (their last turns and ends are recorded), then the writers drain, then the
        // connections go.
        await engine.shutdown();
        inspector?.close();
        stately?.close();
        await server.close();
        await reconciler?.stop();
        await recorder?.close();
        await writer?.close();
        databaseWatch?.close();
        await service?.close();
        config.close();
        await services.close();
        if (options.db === undefined) await db?.close();
      },
    };
  } catch (err) {
    await unwind();
    throw err;
  }
}
