/**
 * The composition root: configuration in, a running engine and server out. main.ts, the tests and
 * the benchmark all start Switchboard through here, so they run the same wiring.
 */
import type { TurnRecord } from '../machines/types.ts';
import { Engine } from './calls/engine.ts';
import type { EnvConfig } from './config/env.ts';
import { createMemoryBudgetStore } from './cost/budgets.ts';
import type { BudgetStore } from './cost/budgets.ts';
import { createMemoryLedger } from './cost/costLedger.ts';
import type { CostLedger } from './cost/costLedger.ts';
import type { CostSink } from './cost/costEvent.ts';
import { newCostEvent } from './cost/costEvent.ts';
import { costUsd } from './cost/priceTable.ts';
import { createLogger } from './observability/logger.ts';
import type { Logger } from './observability/logger.ts';
import type { Embedder } from './providers/embeddings/embedder.ts';
import { createOpenAiEmbedder } from './providers/embeddings/openaiEmbedder.ts';
import { createAnthropicLlm } from './providers/llm/anthropicLlm.ts';
import { createOpenAiLlm } from './providers/llm/openaiLlm.ts';
import { createLocalEmbedder } from './routing/localEmbedder.ts';
import { createMemoryRotationStore } from './routing/fallbackPicker.ts';
import type { LlmClients } from './routing/tier3Llm.ts';
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
  readonly onTurn?: (turn: { record: TurnRecord; latencyMs: number; engineMs: number }) => void;
}

export interface App {
  readonly engine: Engine;
  readonly server: RunningServer;
  readonly ledger: CostLedger;
  readonly log: Logger;
  /** Stops taking calls, ends live ones, flushes the ledger. */
  close(): Promise<void>;
}

export function llmClientsFrom(env: EnvConfig): LlmClients {
  return {
    ...(env.openai
      ? {
          openai: createOpenAiLlm({
            apiKey: env.openai.apiKey,
            ...(env.openai.baseURL ? { baseURL: env.openai.baseURL } : {}),
          }),
        }
      : {}),
    ...(env.anthropic
      ? {
          anthropic: createAnthropicLlm({
            apiKey: env.anthropic.apiKey,
            ...(env.anthropic.baseURL ? { baseURL: env.anthropic.baseURL } : {}),
          }),
        }
      : {}),
  };
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
): (companyId: string) => Embedder {
  if (given !== undefined) return () => given;
  const openai = env.openai;
  if (openai === undefined) return () => createLocalEmbedder();
  return (companyId) =>
    createOpenAiEmbedder({
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
  const embedderFor = embeddersFrom(env, ledger, options.embedder);
  const engine = await Engine.create({
    catalog,
    log,
    embedderFor,
    clients: llmClientsFrom(env),
    budgets: options.budgets ?? createMemoryBudgetStore(),
    stats: createMemoryWarmupStats(),
    ledger,
    rotation: createMemoryRotationStore(),
    ...(options.timing ? { timing: options.timing } : {}),
    ...(options.onTurn ? { onTurn: options.onTurn } : {}),
  });
  const server = await startServer({
    env,
    engine,
    log,
    ...(options.relay ? { relay: options.relay } : {}),
    shedDelayMs: options.shedDelayMs ?? DEFAULT_SHED_DELAY_MS,
  });
  log.info(
    {
      url: server.url,
      companies: catalog.companies.size,
      templates: catalog.templates.size,
      embedder: embedderFor('').id,
    },
    'switchboard ready',
  );
  return {
    engine,
    server,
    ledger,
    log,
    async close() {
      await engine.shutdown();
      await server.close();
    },
  };
}
