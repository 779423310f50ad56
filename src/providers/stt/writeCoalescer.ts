/**
 * Pairs the small writes of one WebSocket into one system call. Audio goes to the STT provider as
 * one append per 20 ms frame, and on loopback or a fast link each send is a `writev` of its own —
 * the largest single cost of a call's inbound path. The coalescer corks the socket before the first
 * write of a group and uncorks it after the `every`-th, so `every` appends leave together; the
 * messages themselves are unchanged. A process-wide sweeper uncorks any socket held longer than
 * `MAX_HOLD_MS` (the caller's audio stalled), so audio is never held for long: at 2 per group the
 * first frame of a pair waits for the next, 20 ms later.
 */
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';

const MAX_HOLD_MS = 30;
const SWEEP_MS = 10;

/** Corked sockets, with when they were corked. */
const held = new Map<Duplex, number>();
let sweeper: NodeJS.Timeout | null = null;

function sweep(): void {
  const now = performance.now();
  for (const [socket, since] of held) {
    if (now - since < MAX_HOLD_MS) continue;
    held.delete(socket);
    socket.uncork();
  }
  if (held.size === 0 && sweeper !== null) {
    clearInterval(sweeper);
    sweeper = null;
  }
}

export class WriteCoalescer {
  #socket: Duplex | null;
  readonly #every: number;
  #count = 0;

  /** `every` ≤ 1 writes each message at once. */
  constructor(ws: WebSocket, every: number) {
    this.#every = every;
    // ws keeps its TCP socket as `_socket` (there is no public cork).
    this.#socket = every > 1 ? ((ws as unknown as { _socket?: Duplex })._socket ?? null) : null;
  }

  /** Runs `send` (one ws.send) inside the current group. */
  write(send: () => void): void {
    const socket = this.#socket;
    if (socket === null || socket.destroyed) {
      send();
      return;
    }
    if (this.#count === 0) {
      socket.cork();
      held.set(socket, performance.now());
      if (sweeper === null) {
        sweeper = setInterval(sweep, SWEEP_MS);
        sweeper.unref();
      }
    }
    send();
    this.#count += 1;
    if (this.#count >= this.#every) this.flush();
  }

  /** Writes what the group holds now. */
  flush(): void {
    const socket = this.#socket;
    this.#count = 0;
    // The sweeper may have released it already; uncork only what this group corked.
    if (socket !== null && held.delete(socket)) socket.uncork();
  }

  /** Flushes and lets go of the socket (before it closes). */
  dispose(): void {
    this.flush();
    this.#socket = null;
  }
}

/** Sockets held right now (tests: nothing may stay corked after a call). */
export function heldSockets(): number {
  return held.size;
}
