/**
 * Prometheus metrics, in a registry the app owns (never prom-client's global one, so a test process
 * can run several apps). Turns, cost events and provider errors are pushed in as they happen; live
 * calls, circuit states and readiness are read at scrape time.
 *
 * No label carries caller data or a company id: stages, tiers, outcomes, reasons, purposes,
 * providers, models and error codes are all small fixed sets, so `GET /metrics` can be scraped
 * without the admin token. Rates are ratios of counters, e.g. the fallback rate:
 *
 *   sum(rate(switchboard_fallbacks_total[5m])) / sum(rate(switchboard_turns_total[5m]))
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { TurnObservation } from '../calls/callSession.ts';
import type { CostEvent } from '../cost/costEvent.ts';
import type { CircuitSnapshot, CircuitState } from '../providers/llm/circuitBreaker.ts';
import type { HttpRoute } from '../server/httpServer.ts';
import type { MediaObserver } from '../twilio/mediaConnection.ts';

/** Milliseconds, 1 ms to 10 s: sub-millisecond stages (Tier 1, the warmup gate) fall in the first. */
export const LATENCY_BUCKETS_MS = [
  1, 2.5, 5, 10, 25, 50, 75, 100, 150, 200, 300, 400, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10_000,
];

/** The values of `switchboard_turn_stage_duration_ms{stage}`. */
export const TURN_STAGES = [
  'capture',
  'detect',
  'redetect',
  'understanding',
  'tier1',
  'warmup_gate',
  'tier2',
  'tier3',
  'tier3_first_token',
  'fallback',
  'provider',
] as const;
export type TurnStage = (typeof TURN_STAGES)[number];

/** `switchboard_circuit_state` encodes the state as a number, so it can be graphed. */
export const CIRCUIT_STATE_VALUE: Readonly<Record<CircuitState, number>> = {
  closed: 0,
  'half-open': 1,
  open: 2,
};

/** What the metrics read at scrape time. */
export interface MetricsSources {
  readonly liveCalls: () => number;
  readonly circuits: () => Iterable<CircuitSnapshot>;
  readonly ready: () => boolean;
  /** Whether a company understands in order (capture, then detect) rather than side by side. */
  readonly understandsInOrder: (companyId: string) => boolean;
}

export interface Metrics {
  readonly registry: Registry;
  /** Where scrape-time values come from; called once the engine exists. */
  track(sources: MetricsSources): void;
  observeTurn(turn: TurnObservation): void;
  observeCost(event: CostEvent): void;
  observeProviderError(error: {
    readonly provider: string;
    readonly kind: 'llm' | 'embeddings';
    readonly code: string;
  }): void;
  observeCircuitChange(change: { readonly provider: string; readonly to: CircuitState }): void;
  observeStartupWarmup(durationMs: number): void;
  /** Hooks for Media Streams sockets: speech-to-first-audio by stage, barge-ins, frames, STT errors. */
  mediaObserver(): MediaObserver;
  /** The exposition text (Prometheus text format 0.0.4). */
  render(): Promise<string>;
  readonly contentType: string;
}

export interface MetricsOptions {
  /**
   * prom-client's default process metrics (CPU, memory, GC, event-loop delay as
   * `nodejs_eventloop_lag_*_seconds`). Default true.
   */
  readonly defaultMetrics?: boolean;
}

/**
 * Wall time of the understanding step: side by side, the slower of capture and detect plus the
 * re-detect; in order, capture then detect. Null when neither ran.
 */
export function understandingMs(
  t: { captureMs: number | null; detectMs: number | null; redetectMs: number | null },
  inOrder: boolean,
): number | null {
  if (t.captureMs === null && t.detectMs === null) return null;
  if (inOrder) return (t.captureMs ?? 0) + (t.detectMs ?? 0) + (t.redetectMs ?? 0);
  return Math.max(t.captureMs ?? 0, t.detectMs ?? 0) + (t.redetectMs ?? 0);
}

export function createMetrics(options: MetricsOptions = {}): Metrics {
  const registry = new Registry();
  const registers = [registry];
  let sources: MetricsSources | null = null;

  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });

  const stage = new Histogram({
    name: 'switchboard_turn_stage_duration_ms',
    help:
      'Duration of each stage of a turn, ms, for turns in which the stage ran. understanding = wall time of ' +
      'capture ∥ detect (+ re-detect); provider = provider time on the critical path. Speech and first-audio ' +
      'times of Media Streams calls are in switchboard_media_first_audio_ms (on ConversationRelay Twilio ' +
      'speaks the text and never reports its first audio byte).',
    labelNames: ['stage'],
    buckets: LATENCY_BUCKETS_MS,
    registers,
  });
  const turnLatency = new Histogram({
    name: 'switchboard_turn_latency_ms',
    help:
      "Whole turn, ms: the caller's final words reaching the call actor to the reply handed to the transport. " +
      'turn="first" is each call\'s first turn.',
    labelNames: ['tier', 'turn'],
    buckets: LATENCY_BUCKETS_MS,
    registers,
  });
  const engineShare = new Histogram({
    name: 'switchboard_turn_engine_ms',
    help: "The engine's own share of a turn, ms: turn latency minus provider time on the critical path.",
    labelNames: ['tier'],
    buckets: LATENCY_BUCKETS_MS,
    registers,
  });
  const turns = new Counter({
    name: 'switchboard_turns_total',
    help: 'Answered turns, by who answered: 1, 2, 3 or fallback.',
    labelNames: ['tier'],
    registers,
  });
  const warmupOutcomes = new Counter({
    name: 'switchboard_warmup_outcomes_total',
    help: "What became of each turn's speculative LLM warmup: none, skipped, cancelled, unused, used, failed.",
    labelNames: ['outcome'],
    registers,
  });
  const warmupSkips = new Counter({
    name: 'switchboard_warmup_skips_total',
    help: 'Warmups the gate skipped, by reason.',
    labelNames: ['reason'],
    registers,
  });
  const reconciles = new Counter({
    name: 'switchboard_reconciles_total',
    help: 'Turns whose detect ran again after capture, by reason. Rate: divide by switchboard_turns_total.',
    labelNames: ['reason'],
    registers,
  });
  const fallbacks = new Counter({
    name: 'switchboard_fallbacks_total',
    help:
      'Turns answered with a fallback line, by kind (escalation = the transfer or emergency line). Rate: ' +
      'divide by switchboard_turns_total.',
    labelNames: ['kind'],
    registers,
  });
  const costEvents = new Counter({
    name: 'switchboard_cost_events_total',
    help: 'Cost events, by purpose, action (triggered, used, completed, cancelled, failed) and provider.',
    labelNames: ['purpose', 'action', 'provider'],
    registers,
  });
  const costUsd = new Counter({
    name: 'switchboard_cost_usd_total',
    help: 'Spend in USD at list prices (estimates included), from cost events whose cost is known.',
    labelNames: ['purpose', 'provider', 'model'],
    registers,
  });
  const costUnknown = new Counter({
    name: 'switchboard_cost_unknown_events_total',
    help: 'Terminal cost events whose model is missing from the price table: their spend is not in switchboard_cost_usd_total.',
    labelNames: ['purpose', 'provider', 'model'],
    registers,
  });
  const providerErrors = new Counter({
    name: 'switchboard_provider_errors_total',
    help: 'Provider errors (caller aborts excluded), by provider, kind (llm, embeddings) and code.',
    labelNames: ['provider', 'kind', 'code'],
    registers,
  });
  const circuitOpens = new Counter({
    name: 'switchboard_circuit_opens_total',
    help: "Times a provider's circuit breaker opened.",
    labelNames: ['provider'],
    registers,
  });
  new Gauge({
    name: 'switchboard_circuit_state',
    help: "State of each LLM provider's circuit breaker: 0 closed, 1 half-open, 2 open.",
    labelNames: ['provider'],
    registers,
    collect() {
      for (const c of sources?.circuits() ?? [])
        this.set({ provider: c.provider }, CIRCUIT_STATE_VALUE[c.state]);
    },
  });
  new Gauge({
    name: 'switchboard_live_calls',
    help: 'Calls with a live actor in this process.',
    registers,
    collect() {
      this.set(sources?.liveCalls() ?? 0);
    },
  });
  new Gauge({
    name: 'switchboard_ready',
    help: '1 once the startup warmup is over and the engine takes calls, else 0.',
    registers,
    collect() {
      this.set(sources?.ready() === true ? 1 : 0);
    },
  });
  const startupWarmup = new Gauge({
    name: 'switchboard_startup_warmup_duration_ms',
    help: 'How long the startup warmup (one synthetic turn per company, provider connections) took, ms.',
    registers,
  });

  // Label children are looked up once per label set: a turn observes up to a dozen series.
  const stageChild = new Map(TURN_STAGES.map((s) => [s, stage.labels({ stage: s })] as const));
  const observeStage = (s: TurnStage, ms: number | null) => {
    if (ms !== null && Number.isFinite(ms)) stageChild.get(s)!.observe(ms);
  };

  const speechToAudio = new Histogram({
    name: 'switchboard_media_first_audio_ms',
    help:
      'Media Streams: time to a reply\'s first audio frame, ms, by stage. stage="speech_end": from the caller\'s speech ' +
      'ending (STT) to the first frame; "stt": speech end to the final transcript; "engine": final transcript to the ' +
      'first frame (tiers, LLM, TTS); "tts": the TTS request to its first audio; "reply": from the reply starting to ' +
      'its first frame. source = cache | tts.',
    labelNames: ['stage', 'source'],
    buckets: LATENCY_BUCKETS_MS,
    registers,
  });
  const bargeIns = new Histogram({
    name: 'switchboard_media_barge_in_reaction_ms',
    help: "Media Streams: from the caller's speech onset (local VAD) to `clear` cutting the reply, ms.",
    buckets: [10, 25, 50, 75, 100, 150, 200, 300, 500, 1000],
    registers,
  });
  const invalidFrames = new Counter({
    name: 'switchboard_media_invalid_frames_total',
    help: 'Media Streams: inbound frames refused (bad JSON, schema, order). The socket closes after a bound.',
    registers,
  });
  const repliesEnded = new Counter({
    name: 'switchboard_media_replies_total',
    help: 'Media Streams: replies played, by outcome (played, cut, …).',
    labelNames: ['outcome'],
    registers,
  });
  const lateFrames = new Counter({
    name: 'switchboard_media_late_frames_total',
    help: 'Media Streams: outbound frames sent after the audio before them had finished playing (gaps heard).',
    registers,
  });
  const framesSent = new Counter({
    name: 'switchboard_media_frames_sent_total',
    help: 'Media Streams: outbound 20 ms audio frames sent.',
    registers,
  });
  const backpressure = new Counter({
    name: 'switchboard_media_backpressure_wait_ms_total',
    help: 'Media Streams: time outbound audio waited for a congested socket to drain, ms.',
    registers,
  });
  const sttErrors = new Counter({
    name: 'switchboard_stt_errors_total',
    help: 'Speech-to-text errors by code; fatal="true" ended the call.',
    labelNames: ['code', 'fatal'],
    registers,
  });
  const media: MediaObserver = {
    invalidFrame: () => invalidFrames.inc(),
    bargeIn: ({ reactionMs }) => {
      if (reactionMs !== null) bargeIns.observe(reactionMs);
    },
    firstAudio: (t) => {
      const source = t.source ?? 'none';
      speechToAudio.observe({ stage: 'reply', source }, t.startToFirstAudioMs);
      if (t.speechStoppedToFirstAudioMs !== null)
        speechToAudio.observe({ stage: 'speech_end', source }, t.speechStoppedToFirstAudioMs);
      if (t.speechStoppedToFinalMs !== null)
        speechToAudio.observe({ stage: 'stt', source }, t.speechStoppedToFinalMs);
      if (t.finalToFirstAudioMs !== null)
        speechToAudio.observe({ stage: 'engine', source }, t.finalToFirstAudioMs);
      if (t.ttsFirstAudioMs !== null) speechToAudio.observe({ stage: 'tts', source }, t.ttsFirstAudioMs);
    },
    backpressureWait: (ms) => backpressure.inc(ms),
    sttError: (code, fatal) => sttErrors.inc({ code, fatal: String(fatal) }),
    replyEnded: (r) => {
      repliesEnded.inc({ outcome: r.outcome });
      framesSent.inc(r.framesSent);
      if (r.lateFrames > 0) lateFrames.inc(r.lateFrames);
    },
  };

  return {
    mediaObserver: () => media,
    registry,
    contentType: registry.contentType,
    track(s) {
      sources = s;
    },
    observeTurn({ companyId, record, latencyMs, engineMs }) {
      const t = record.timings;
      const tier = String(record.tier);
      observeStage('capture', t.captureMs);
      observeStage('detect', t.detectMs);
      observeStage('redetect', t.redetectMs);
      observeStage('understanding', understandingMs(t, sources?.understandsInOrder(companyId) ?? false));
      observeStage('tier1', t.tier1Ms);
      observeStage('warmup_gate', t.warmupGateMs);
      observeStage('tier2', t.tier2Ms);
      observeStage('tier3', t.tier3Ms);
      observeStage('tier3_first_token', t.tier3FirstTokenMs);
      observeStage('fallback', t.fallbackMs);
      observeStage('provider', t.providerMs);
      turnLatency.observe({ tier, turn: record.turn <= 1 ? 'first' : 'later' }, latencyMs);
      engineShare.observe({ tier }, engineMs);
      turns.inc({ tier });
      warmupOutcomes.inc({ outcome: record.warmup });
      if (record.warmup === 'skipped') warmupSkips.inc({ reason: record.warmupReason ?? 'unknown' });
      if (record.reconcileReason !== null) reconciles.inc({ reason: record.reconcileReason });
      if (record.tier === 'fallback') fallbacks.inc({ kind: record.fallbackKind ?? 'escalation' });
    },
    observeCost(event) {
      costEvents.inc({ purpose: event.purpose, action: event.action, provider: event.provider });
      const labels = { purpose: event.purpose, provider: event.provider, model: event.model };
      if (event.costUsd === null) costUnknown.inc(labels);
      else if (event.costUsd > 0) costUsd.inc(labels, event.costUsd);
    },
    observeProviderError(error) {
      providerErrors.inc({ provider: error.provider, kind: error.kind, code: error.code });
    },
    observeCircuitChange(change) {
      if (change.to === 'open') circuitOpens.inc({ provider: change.provider });
    },
    observeStartupWarmup(durationMs) {
      startupWarmup.set(durationMs);
    },
    render: () => registry.metrics(),
  };
}

/** `GET /metrics`, unauthenticated: the registry holds no caller data (see the module comment). */
export function metricsRoute(metrics: Metrics): HttpRoute {
  return async (req: IncomingMessage, res: ServerResponse, url: URL) => {
    if (req.method !== 'GET' || url.pathname !== '/metrics') return false;
    const body = await metrics.render();
    res.writeHead(200, { 'content-type': metrics.contentType, 'content-length': Buffer.byteLength(body) });
    res.end(body);
    return true;
  };
}
