/**
 * The engine under test, in its own process (started by `npm run bench` with --expose-gc): the real
 * app through startApp on port 0, a temporary data folder, LLM calls to the fake provider process,
 * embeddings with a fixed provider latency, and the onTurn hook collecting every answered turn.
 * It keeps the samples in memory and hands them over when the orchestrator asks, so measuring costs
 * the engine one array push per turn.
 */
import { pino } from 'pino';
import { startApp } from '../app.ts';
import { loadEnv } from '../config/env.ts';
import { createLogger } from '../observability/logger.ts';
import type { Embedder } from '../providers/embeddings/embedder.ts';
import { createLocalEmbedder } from '../routing/localEmbedder.ts';
import type { LocalEmbedder } from '../routing/localEmbedder.ts';
import type { EngineChildConfig, EngineRequest, TurnSample } from './protocol.ts';
import { processMeter, sampleMemory, serveParent } from './protocol.ts';

const config = JSON.parse(process.env['BENCH_ENGINE_CONFIG'] ?? '{}') as EngineChildConfig;

function abortError(): Error {
  const err = new Error('The embedding request was aborted');
  err.name = 'AbortError';
  return err;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError());
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortError());
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * The local embedder (so Tier 2 answers what it would in production, fitted to the template as the
 * engine fits it) plus a fixed provider latency per call, without a cache: every Tier 2 turn waits
 * the full latency, as with a remote embeddings API on a cache miss.
 */
function delayedEmbedder(inner: LocalEmbedder, delayMs: number): LocalEmbedder {
  return {
    id: `${inner.id}+${delayMs}ms`,
    dimensions: inner.dimensions,
    embedSync: (text) => inner.embedSync(text),
    async embed(texts, signal) {
      await sleep(delayMs, signal);
      return inner.embed(texts, signal);
    },
    fit: (corpus) => delayedEmbedder(inner.fit(corpus), delayMs),
  };
}

let turns: TurnSample[] = [];
let reconcileReasons = { newCriticalSlot: 0, unsureDetect: 0, both: 0 };

const meter = processMeter();
let live = { min: Number.POSITIVE_INFINITY, sum: 0, samples: 0, max: 0 };

const log = createLogger(config.logLevel, pino.destination({ dest: '/dev/null', sync: true }));
const embedder: Embedder = delayedEmbedder(createLocalEmbedder(), config.embeddingMs);
const app = await startApp(
  loadEnv({
    PORT: '0',
    HOST: '127.0.0.1',
    DATA_DIR: config.dataDir,
    LOG_LEVEL: config.logLevel,
    OPENAI_API_KEY: 'sk-bench',
    OPENAI_BASE_URL: config.openaiBaseURL,
    ...(config.stores?.databaseUrl ? { DATABASE_URL: config.stores.databaseUrl } : {}),
    ...(config.stores?.redisUrl ? { REDIS_URL: config.stores.redisUrl } : {}),
    ...(config.stores?.redisKeyPrefix ? { REDIS_KEY_PREFIX: config.stores.redisKeyPrefix } : {}),
  }),
  {
    log,
    // Without stores: no database (configuration from the files in dataDir, ledger in memory).
    ...(config.stores === undefined ? { db: null } : {}),
    embedder,
    startupWarmup: config.startupWarmup ?? true,
    relay: { playbackMsPerChar: config.playbackMsPerChar },
    onTurn: ({ record, latencyMs, engineMs }) => {
      const t = record.timings;
      turns.push({
        latencyMs,
        engineMs,
        providerMs: t.providerMs,
        captureMs: t.captureMs,
        detectMs: t.detectMs,
        redetectMs: t.redetectMs,
        tier1Ms: t.tier1Ms,
        warmupGateMs: t.warmupGateMs,
        tier2Ms: t.tier2Ms,
        tier3Ms: t.tier3Ms,
        fallbackMs: t.fallbackMs,
        tier: record.tier,
        warmup: record.warmup,
        warmupReason: record.warmupReason,
        reconciled: record.reconciled,
        fallbackKind: record.fallbackKind,
      });
      if (record.reconcileReason === 'both') reconcileReasons.both += 1;
      else if (record.reconcileReason === 'new-critical-slot') reconcileReasons.newCriticalSlot += 1;
      else if (record.reconcileReason === 'unsure-detect') reconcileReasons.unsureDetect += 1;
    },
  },
);

const sampler = setInterval(() => {
  const n = app.engine.liveCalls;
  live.min = Math.min(live.min, n);
  live.max = Math.max(live.max, n);
  live.sum += n;
  live.samples += 1;
}, 100);
sampler.unref();

serveParent<EngineRequest>(async (request) => {
  switch (request.type) {
    case 'phase':
      turns = [];
      reconcileReasons = { newCriticalSlot: 0, unsureDetect: 0, both: 0 };
      meter.start();
      live = { min: Number.POSITIVE_INFINITY, sum: 0, samples: 0, max: 0 };
      return { type: 'phase' };
    case 'collect': {
      const window = {
        ...meter.collect(),
        turns,
        reconcileReasons,
        liveCalls: {
          min: live.samples === 0 ? app.engine.liveCalls : live.min,
          mean: live.samples === 0 ? app.engine.liveCalls : live.sum / live.samples,
          max: live.samples === 0 ? app.engine.liveCalls : live.max,
        },
      };
      turns = [];
      return { type: 'collect', window };
    }
    case 'status':
      return { type: 'status', liveCalls: app.engine.liveCalls };
    case 'memory':
      return { type: 'memory', memory: await sampleMemory(app.engine.liveCalls) };
    case 'stop':
      await app.close();
      setImmediate(() => process.exit(0));
      return { type: 'stop' };
  }
});

process.send?.({
  type: 'ready',
  url: app.server.url,
  pid: process.pid,
  startupWarmupMs: app.warmup.report().durationMs,
});
