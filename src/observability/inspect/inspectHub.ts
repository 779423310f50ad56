/**
 * Inspection on demand. XState's inspection costs throughput (every transition, event and action
 * becomes an inspection event), so no call is inspected by default: the hub attaches one
 * `actor.system.inspect` observer to a call when its first viewer arrives, fans its events out to
 * every viewer of that call, and unsubscribes when the last viewer leaves or the call ends.
 */
import type { AnyActorRef, InspectionEvent, Subscription } from 'xstate';
import type { Logger } from '../logger.ts';

/** What the hub needs of a call: its id and its root actor. */
export interface WatchableCall {
  readonly id: string;
  readonly actor: AnyActorRef;
}

/** Where the hub finds live calls and hears of their end (the Engine). */
export interface CallDirectory {
  session(id: string): WatchableCall | undefined;
  onSession(listener: { ended?(session: WatchableCall): void }): () => void;
}

export interface Viewer {
  /**
   * Every inspection event of the call's actor system: the call actor and the actors it invokes.
   * Called synchronously inside the actor's transition, so it must be quick.
   */
  next(event: InspectionEvent): void;
  /** The call ended; the viewer has already been let go. */
  ended?(): void;
}

/** A viewer's hold on a call; closing it more than once is harmless. */
export interface Lease {
  close(): void;
}

interface Watched {
  readonly call: WatchableCall;
  readonly viewers: Set<Viewer>;
  subscription: Subscription | null;
}

export class InspectHub {
  readonly #calls: CallDirectory;
  readonly #log: Logger;
  readonly #watched = new Map<string, Watched>();
  readonly #stopListening: () => void;

  constructor(calls: CallDirectory, log: Logger) {
    this.#calls = calls;
    this.#log = log;
    this.#stopListening = calls.onSession({ ended: (session) => this.#ended(session.id) });
  }

  /** Starts inspecting a live call for this viewer; undefined when the call is not live. */
  watch(callId: string, viewer: Viewer): Lease | undefined {
    let watched = this.#watched.get(callId);
    if (watched === undefined) {
      const call = this.#calls.session(callId);
      if (call === undefined) return undefined;
      const entry: Watched = { call, viewers: new Set(), subscription: null };
      watched = entry;
      this.#watched.set(callId, entry);
      entry.subscription = call.actor.system.inspect({ next: (event) => this.#fanOut(entry, event) });
      this.#log.debug({ callId }, 'inspection attached');
    }
    watched.viewers.add(viewer);
    const entry = watched;
    let open = true;
    return {
      close: () => {
        if (!open) return;
        open = false;
        entry.viewers.delete(viewer);
        if (entry.viewers.size === 0) this.#detach(entry);
      },
    };
  }

  /** Whether an inspection observer is attached to the call now. */
  isAttached(callId: string): boolean {
    return this.#watched.get(callId)?.subscription != null;
  }

  /** How many viewers watch the call. */
  viewers(callId: string): number {
    return this.#watched.get(callId)?.viewers.size ?? 0;
  }

  /** How many calls are inspected now. */
  get attached(): number {
    return this.#watched.size;
  }

  /** Detaches from every call. */
  close(): void {
    this.#stopListening();
    for (const entry of [...this.#watched.values()]) this.#detach(entry);
  }

  #fanOut(entry: Watched, event: InspectionEvent): void {
    for (const viewer of entry.viewers) {
      try {
        viewer.next(event);
      } catch (err) {
        // A throw here would surface inside the call's own transition: contain it.
        this.#log.warn({ err }, 'inspection viewer failed');
      }
    }
  }

  #detach(entry: Watched): void {
    entry.subscription?.unsubscribe();
    entry.subscription = null;
    if (this.#watched.get(entry.call.id) === entry) this.#watched.delete(entry.call.id);
    this.#log.debug({ callId: entry.call.id }, 'inspection detached');
  }

  #ended(callId: string): void {
    const entry = this.#watched.get(callId);
    if (entry === undefined) return;
    // The call ends inside a transition: let viewers see the final snapshot and the actor stop first.
    queueMicrotask(() => {
      const viewers = [...entry.viewers];
      entry.viewers.clear();
      this.#detach(entry);
      for (const viewer of viewers) viewer.ended?.();
    });
  }
}
