/**
 * One live call: its actor, its transport and the bookkeeping around them (turn traces, warmup
 * hits, cost per turn). Transports feed it domain events; it never sees frames or audio.
 */
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { createActor } from 'xstate';
import type { Actor } from 'xstate';
import type { CallEmitted, CallEvent, CallMachine, CallPolicy } from '../../machines/callMachine.ts';
import type { TurnRecord } from '../../machines/types.ts';
import type { CompanyConfig } from '../config/companyConfig.ts';
import type { CostEvent, CostSink } from '../cost/costEvent.ts';
import { newCostEvent } from '../cost/costEvent.ts';
import type { Logger } from '../observability/logger.ts';
import type { WarmupStats } from '../warmup/warmupStats.ts';
import type { CallTransport, HeardReport } from './callTransport.ts';

/** One answered turn, as the engine's onTurn hook reports it (bench, metrics, /status). */
export interface TurnObservation {
  /** The engine's call id (CallSession.id), the one cost events and call records carry. */
  readonly callId: string;
  readonly companyId: string;
  readonly record: TurnRecord;
  /** From the caller's final words reaching the actor to the reply being handed to the transport. */
  readonly latencyMs: number;
  /** latencyMs minus provider time on the critical path. */
  readonly engineMs: number;
}

export interface CallSessionDeps {
  readonly machine: CallMachine;
  readonly company: CompanyConfig;
  readonly policy: CallPolicy;
  readonly transport: CallTransport;
  readonly ledger: CostSink;
  readonly stats: WarmupStats;
  readonly log: Logger;
  readonly onEnded: (session: CallSession) => void;
  readonly onTurn?: (turn: TurnObservation) => void;
  /** What the caller heard of a reply (transports that know it: Media Streams). */
  readonly onHeard?: (heard: HeardReport & { readonly callId: string; readonly companyId: string }) => void;
}

export class CallSession {
  readonly id = randomUUID();
  readonly companyId: string;
  readonly company: CompanyConfig;
  readonly transport: CallTransport;
  readonly log: Logger;
  readonly startedAt = Date.now();
  callSid: string | null = null;
  /** Why the call ended (the machine's reason, or 'shutdown', 'socket-closed', …); null while live. */
  endReason: string | null = null;
  /** Date.now() when it ended; null while live. */
  endedAt: number | null = null;
  readonly #deps: CallSessionDeps;
  readonly #actor: Actor<CallMachine>;
  /** Cost of the turn in progress, by turn number. */
  readonly #turnCost = new Map<number, { usd: number; unknown: boolean; estimated: boolean }>();
  /** Requests still settling for a turn (an aborted warmup records its cost a moment later). */
  readonly #inflight = new Map<number, Set<Promise<unknown>>>();
  #turnStartedAt = 0;
  #ended = false;
  /** Turns whose warmup answer became the reply (its text may be spoken as it streams). */
  readonly #committed = new Set<number>();
  /** Warmup text that streamed in before the warmup was adopted, by turn. */
  readonly #pendingDrafts = new Map<number, string>();

  constructor(deps: CallSessionDeps) {
    this.#deps = deps;
    this.company = deps.company;
    this.companyId = deps.company.id;
    this.transport = deps.transport;
    this.log = deps.log.child({ callId: this.id, companyId: this.companyId });
    this.#actor = createActor(deps.machine, {
      input: { callId: this.id, companyId: this.companyId, policy: deps.policy },
    });
    // Without an error observer a failing actor would rethrow asynchronously and take the process down.
    this.#actor.subscribe({
      error: (err) => {
        this.log.error({ err }, 'call actor failed');
        this.#end('actor-error');
      },
    });
    this.#actor.on('*', (event) => this.#onEmitted(event));
  }

  get actor(): Actor<CallMachine> {
    return this.#actor;
  }

  get ended(): boolean {
    return this.#ended;
  }

  start(): void {
    this.#actor.start();
  }

  /** Whether the transport speaks LLM answers as they stream (then Tier 3 reports its text as it grows). */
  get streamsReplies(): boolean {
    return this.transport.draft !== undefined;
  }

  /**
   * LLM text for `turn` as it streams. A Tier 3 answer is the turn's reply from its first token; a
   * warmup's only once the machine adopts it (`llm.committed`), so until then it is held back.
   */
  draft(turn: number, mode: 'tier3' | 'warmup', textSoFar: string): void {
    if (this.#ended || turn !== this.#actor.getSnapshot().context.turn) return;
    const text = textSoFar.trimStart();
    if (mode === 'warmup' && !this.#committed.has(turn)) {
      this.#pendingDrafts.set(turn, text);
      return;
    }
    if (text !== '') this.transport.draft?.(turn, text);
  }

  /** The transport's account of what the caller heard of a reply. */
  noteHeard(report: HeardReport): void {
    this.#deps.onHeard?.({ ...report, callId: this.id, companyId: this.companyId });
  }

  /** Feeds a domain event to the actor. */
  send(event: CallEvent): void {
    if (this.#ended) return;
    if (event.type === 'caller.dtmf') {
      // A key the company maps to words acts as if the caller had said them.
      const action = this.company.dtmf[event.digit];
      if (action !== undefined && typeof action !== 'string') {
        event = { type: 'caller.transcriptFinal', text: action.say };
      }
    }
    if (event.type === 'twilio.start') {
      this.callSid = event.callSid;
      this.log.info({ callSid: event.callSid }, 'call started');
    }
    if (event.type === 'caller.transcriptFinal') this.#turnStartedAt = performance.now();
    this.#actor.send(event);
  }

  /** Tier 3 and warmup requests report here so the turn's cost includes requests that settle late. */
  track(turn: number, request: Promise<unknown>): void {
    let set = this.#inflight.get(turn);
    if (set === undefined) this.#inflight.set(turn, (set = new Set()));
    const settled: Promise<unknown> = request.then(
      () => set.delete(settled),
      () => set.delete(settled),
    );
    set.add(settled);
  }

  /** Called by the ledger fan-out for events of this call. */
  noteCost(event: CostEvent): void {
    if (event.turn === null) return;
    const entry = this.#turnCost.get(event.turn) ?? { usd: 0, unknown: false, estimated: false };
    if (event.costUsd === null) entry.unknown = true;
    else entry.usd += event.costUsd;
    entry.estimated ||= event.estimated;
    this.#turnCost.set(event.turn, entry);
  }

  /** Stops the call from outside (socket closed, shutdown). */
  stop(reason: string): void {
    if (this.#ended) return;
    this.#actor.send({ type: 'twilio.stop' });
    this.#end(reason);
  }

  #onEmitted(event: CallEmitted): void {
    switch (event.type) {
      case 'turn.completed':
        void this.#completeTurn(event.record);
        break;
      case 'warmup.used': {
        this.#deps.stats.recordUsed(this.companyId, event.category, new Date());
        this.#deps.ledger.record(
          newCostEvent({
            companyId: this.companyId,
            callId: this.id,
            callSid: this.callSid,
            turn: event.turn,
            purpose: 'warmup',
            tier: 3,
            action: 'used',
            provider: event.provider,
            model: event.model,
            timeSavedMs: Math.round(event.timeSavedMs),
          }),
        );
        break;
      }
      case 'reply.interrupted':
        this.log.debug({ turn: event.turn }, 'caller barged in');
        this.#forgetDraft(event.turn);
        this.transport.abandonDraft?.(event.turn);
        break;
      case 'llm.committed': {
        this.#committed.add(event.turn);
        const pending = this.#pendingDrafts.get(event.turn);
        this.#pendingDrafts.delete(event.turn);
        if (pending !== undefined && pending !== '') this.transport.draft?.(event.turn, pending);
        break;
      }
      case 'call.transfer':
        this.log.info({ reason: event.reason }, 'transferring call');
        this.transport.transfer(this.company.fallbackResponses.transferNumber, event.reason);
        break;
      case 'call.hangup':
        this.log.info({ reason: event.reason }, 'hanging up');
        this.transport.hangup(event.reason);
        break;
      case 'call.failed':
        this.log.warn({ reason: event.reason }, 'call failed');
        this.transport.hangup(event.reason);
        this.#end(event.reason);
        break;
      case 'call.ended':
        this.#end(event.reason);
        break;
    }
  }

  #forgetDraft(turn: number): void {
    this.#committed.delete(turn);
    this.#pendingDrafts.delete(turn);
  }

  async #completeTurn(record: TurnRecord): Promise<void> {
    this.#forgetDraft(record.turn);
    const latencyMs = performance.now() - this.#turnStartedAt;
    const engineMs = Math.max(0, latencyMs - record.timings.providerMs);
    this.#deps.onTurn?.({ callId: this.id, companyId: this.companyId, record, latencyMs, engineMs });
    // Caller words and replies stay out of logs; the decision does not.
    this.log.info(
      {
        turn: record.turn,
        tier: record.tier,
        category: record.category,
        scenarioId: record.scenarioId,
        confidence: Number(record.confidence.toFixed(3)),
        warmup: record.warmup,
        latencyMs: Math.round(latencyMs),
      },
      'turn answered',
    );
    const pending = this.#inflight.get(record.turn);
    if (pending && pending.size > 0) await Promise.allSettled([...pending]);
    this.#inflight.delete(record.turn);
    const cost = this.#turnCost.get(record.turn);
    this.#turnCost.delete(record.turn);
    this.transport.trace({
      record,
      latencyMs,
      engineMs,
      costUsd: cost === undefined ? 0 : cost.unknown ? null : cost.usd,
      costEstimated: cost?.estimated ?? false,
    });
  }

  #end(reason: string): void {
    if (this.#ended) return;
    this.#ended = true;
    this.endReason = reason;
    this.endedAt = Date.now();
    this.log.info({ reason, durationMs: Date.now() - this.startedAt }, 'call ended');
    // Stop outside the emit that may have brought us here: the actor is mid-transition.
    queueMicrotask(() => this.#actor.stop());
    this.transport.close(reason);
    this.#deps.onEnded(this);
  }
}
