/**
 * For teams that use Stately's own tools: with STATELY_INSPECT_URL set, every call is inspected
 * and its events are sent, in the `@statelyai/inspect` protocol, to a WebSocket relay at that URL
 * (e.g. `createInspectorServer()` from `@statelyai/inspect/server` on a developer's machine, whose
 * page shows them in Stately's inspector). Off by default: it inspects every call, which costs
 * throughput (see docs/BENCHMARKS.md), so it is for development and debugging engines only.
 *
 * Offline-safe: the engine connects to the configured URL and nowhere else (the package's own
 * WebSocket adapter retries forever and cannot be stopped, so this one is ours). What callers said
 * stays here: only the call actor's events are sent, with event payloads and the context reduced
 * to what is not personal (slot names without values, no utterances, replies or history).
 */
import { createInspector } from '@statelyai/inspect';
import type { StatelyInspectionEvent } from '@statelyai/inspect';
import type { AnyActorRef } from 'xstate';
import WebSocket from 'ws';
import type { CallContext } from '../../../machines/callMachine.ts';
import type { Logger } from '../logger.ts';
import type { CallDirectory, InspectHub, Lease, WatchableCall } from './inspectHub.ts';

type Adapter = Parameters<typeof createInspector>[0];

/** Events kept while the relay is unreachable; older ones are dropped. */
const MAX_QUEUED = 200;
const RECONNECT_MS = 5000;

export interface StatelyBridge {
  /** Whether the relay is connected (tests, status). */
  readonly connected: boolean;
  close(): void;
}

export interface StatelyBridgeOptions {
  readonly url: string;
  readonly engine: CallDirectory & {
    onSession(listener: { opened?(s: WatchableCall): void; ended?(s: WatchableCall): void }): () => void;
  };
  readonly hub: InspectHub;
  readonly log: Logger;
}

/** A WebSocket client that reconnects until stopped and never keeps the process alive. */
class RelayAdapter implements Adapter {
  readonly #url: string;
  readonly #log: Logger;
  #ws: WebSocket | null = null;
  #queue: string[] = [];
  #retry: NodeJS.Timeout | null = null;
  #stopped = false;
  #warned = false;

  constructor(url: string, log: Logger) {
    this.#url = url;
    this.#log = log;
  }

  get connected(): boolean {
    return this.#ws?.readyState === WebSocket.OPEN;
  }

  start(): void {
    if (this.#stopped || this.#ws !== null) return;
    const ws = new WebSocket(this.#url, { perMessageDeflate: false });
    this.#ws = ws;
    ws.on('open', () => {
      this.#warned = false;
      this.#log.info('stately inspector relay connected');
      for (const message of this.#queue.splice(0)) ws.send(message);
    });
    ws.on('error', () => {
      if (!this.#warned) this.#log.warn('stately inspector relay unreachable; retrying');
      this.#warned = true;
    });
    ws.on('close', () => {
      this.#ws = null;
      if (this.#stopped) return;
      this.#retry = setTimeout(() => {
        this.#retry = null;
        this.start();
      }, RECONNECT_MS);
      this.#retry.unref();
    });
  }

  stop(): void {
    this.#stopped = true;
    if (this.#retry !== null) clearTimeout(this.#retry);
    this.#ws?.terminate();
    this.#ws = null;
    this.#queue = [];
  }

  send(event: StatelyInspectionEvent): void {
    let message: string;
    try {
      message = JSON.stringify(event);
    } catch {
      return;
    }
    if (this.#ws?.readyState === WebSocket.OPEN) this.#ws.send(message);
    else {
      this.#queue.push(message);
      if (this.#queue.length > MAX_QUEUED) this.#queue.shift();
    }
  }
}

/** The context without what callers said or who they are. */
export function sanitizeCallContext(context: unknown): unknown {
  const c = context as Partial<CallContext> | undefined;
  if (c === undefined || c === null || typeof c !== 'object' || !('callId' in c)) return undefined;
  return {
    callId: c.callId,
    companyId: c.companyId,
    turn: c.turn,
    slots: Object.keys(c.slots ?? {}),
    situation: c.situation ?? null,
    reprompts: c.reprompts,
    consecutiveFallbacks: c.consecutiveFallbacks,
    answeredBy: c.work?.answeredBy ?? null,
    warmup: c.work ? { status: c.work.warmup.status, outcome: c.work.warmupOutcome } : null,
    reply: c.reply ? { then: c.reply.then, interruptible: c.reply.interruptible } : null,
    endReason: c.endReason ?? null,
  };
}

/** Only the event's type (and a DTMF digit): transcripts and actor outputs stay here. */
export function sanitizeCallEvent<E extends { type: string }>(event: E): E {
  const digit = (event as { digit?: unknown }).digit;
  return (typeof digit === 'string' ? { type: event.type, digit } : { type: event.type }) as E;
}

export function startStatelyBridge(options: StatelyBridgeOptions): StatelyBridge {
  const { engine, hub, log } = options;
  const adapter = new RelayAdapter(options.url, log);
  /** Session ids of the call actors being bridged: their invoked actors' events are not sent. */
  const roots = new Set<string>();
  const inspector = createInspector(adapter, {
    filter: (event) => roots.has(event.sessionId),
    // The call machine's definition nests deeper than the default 10 levels.
    serializationDepthLimit: 40,
    sanitizeContext: (context) => sanitizeCallContext(context) as Record<string, unknown>,
    sanitizeEvent: sanitizeCallEvent,
  });
  const leases = new Map<string, Lease>();

  const bridge = (call: WatchableCall) => {
    const actor: AnyActorRef = call.actor;
    roots.add(actor.sessionId);
    // The call actor was created before we heard of it: announce it, with its machine definition.
    inspector.actor(actor, { status: 'active' });
    const lease = hub.watch(call.id, {
      next: (event) => inspector.inspect.next?.(event),
      ended: () => {
        leases.delete(call.id);
        // Events are converted a tick later; keep the actor's id until its last ones went out.
        setTimeout(() => roots.delete(actor.sessionId), 50).unref();
      },
    });
    if (lease !== undefined) leases.set(call.id, lease);
  };

  const stopListening = engine.onSession({ opened: bridge });
  adapter.start();
  log.warn('stately inspector bridge on: every call is inspected (development only)');
  return {
    get connected() {
      return adapter.connected;
    },
    close() {
      stopListening();
      for (const lease of leases.values()) lease.close();
      leases.clear();
      adapter.stop();
    },
  };
}
