/**
 * Simulated callers over the real ConversationRelay protocol (the `TestCall` client): each caller
 * places a call, says a few utterances with think times in between, hangs up, and calls again,
 * so that up to `callers` calls per arm are live at once until the load is stopped.
 */
import { performance } from 'node:perf_hooks';
import { TestCall } from '../cli/call.ts';
import type { ClientTurn } from '../cli/call.ts';
import type { Mix } from './scenario.ts';
import { planCall } from './scenario.ts';

export interface Arm {
  readonly name: string;
  /** The company's number (the webhook's To). */
  readonly number: string;
  readonly callers: number;
  readonly mix: Mix;
}

/** One turn as the caller saw it; the timings are the engine's own (its trace frame). */
export interface ClientSample {
  readonly turn: ClientTurn;
  /** Prompt sent → reply and trace received, on the caller's clock; null when the turn ended the call. */
  readonly clientMs: number | null;
}

export interface ArmStats {
  turns: ClientSample[];
  callsStarted: number;
  callsCompleted: number;
  errors: Record<string, number>;
}

export interface LoadOptions {
  readonly url: string;
  readonly arms: readonly Arm[];
  /** Callers start evenly spread over this time. */
  readonly rampMs: number;
  readonly thinkMs: readonly [number, number];
  readonly replyTimeoutMs: number;
}

function randomCaller(): string {
  return `+1555${String(Math.floor(Math.random() * 1e7)).padStart(7, '0')}`;
}

/** Short, stable error labels ("no answer within 15000 ms", "the engine closed the call", …). */
function label(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.replace(/HTTP \d+:.*/s, (m) => m.slice(0, 12)).slice(0, 60);
}

export class Load {
  readonly stats = new Map<string, ArmStats>();
  /** Resolves once every caller has placed its first call. */
  readonly rampedUp: Promise<void>;
  readonly #options: LoadOptions;
  readonly #wakers = new Set<() => void>();
  readonly #callers: Promise<void>[] = [];
  #stopped = false;

  constructor(options: LoadOptions) {
    this.#options = options;
    this.reset();
    const total = options.arms.reduce((n, a) => n + a.callers, 0);
    const started: Promise<void>[] = [];
    let i = 0;
    for (const arm of options.arms) {
      for (let c = 0; c < arm.callers; c++, i++) {
        const delay = total <= 1 ? 0 : (options.rampMs * i) / total;
        let markStarted!: () => void;
        started.push(new Promise<void>((resolve) => (markStarted = resolve)));
        this.#callers.push(this.#caller(arm, delay, markStarted));
      }
    }
    this.rampedUp = Promise.all(started).then(() => undefined);
  }

  /** Forgets what was recorded so far (the measurement window starts now). */
  reset(): void {
    for (const arm of this.#options.arms) {
      this.stats.set(arm.name, { turns: [], callsStarted: 0, callsCompleted: 0, errors: {} });
    }
  }

  /** What was recorded since the last reset; recording goes on into fresh lists. */
  snapshot(): Map<string, ArmStats> {
    const out = new Map(this.stats);
    this.reset();
    return out;
  }

  /** Stops placing calls and turns; resolves once every caller has hung up. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const wake of this.#wakers) wake();
    await Promise.all(this.#callers);
  }

  #sleep(ms: number): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.#wakers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.#wakers.add(wake);
    });
  }

  #think(): Promise<void> {
    const [min, max] = this.#options.thinkMs;
    return this.#sleep(min + Math.random() * Math.max(0, max - min));
  }

  async #caller(arm: Arm, delayMs: number, started: () => void): Promise<void> {
    await this.#sleep(delayMs);
    let first = true;
    while (!this.#stopped) {
      const stats = () => this.stats.get(arm.name)!;
      const call = new TestCall({
        url: this.#options.url,
        to: arm.number,
        from: randomCaller(),
        replyTimeoutMs: this.#options.replyTimeoutMs,
      });
      stats().callsStarted += 1;
      if (first) {
        first = false;
        started();
      }
      try {
        await call.connect();
        for (const utterance of planCall(arm.mix)) {
          await this.#think();
          if (this.#stopped) break;
          const sentAt = performance.now();
          const turn = await call.say(utterance);
          const clientMs = turn.end === null ? performance.now() - sentAt : null;
          stats().turns.push({ turn, clientMs });
          if (turn.end !== null) break;
        }
        stats().callsCompleted += 1;
      } catch (err) {
        const errors = stats().errors;
        const key = label(err);
        errors[key] = (errors[key] ?? 0) + 1;
        // A failing engine should not be hammered in a tight loop.
        await this.#sleep(200);
      } finally {
        await call.close().catch(() => undefined);
      }
    }
    started();
  }
}

/** Connects `count` calls that stay idle (greeted, listening), `concurrency` handshakes at a time. */
export async function connectIdle(
  url: string,
  number: string,
  count: number,
  concurrency = 25,
): Promise<{ calls: TestCall[]; failed: number }> {
  const calls: TestCall[] = [];
  let failed = 0;
  let next = 0;
  const worker = async () => {
    while (next < count) {
      next += 1;
      const call = new TestCall({ url, to: number, from: randomCaller(), replyTimeoutMs: 30_000 });
      try {
        await call.connect();
        calls.push(call);
      } catch {
        failed += 1;
        await call.close().catch(() => undefined);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return { calls, failed };
}
