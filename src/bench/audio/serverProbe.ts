/**
 * What the server under test (the engine or the bare relay, each in its own child process) reports
 * to the audio bench's orchestrator over the IPC channel of `Child` (src/bench/protocol.ts): CPU
 * time, event-loop delay and utilisation over a window, memory after a full collection, live calls.
 * The child measures itself, so the callers and fakes cannot inflate its figures.
 */
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import type { MemorySample } from '../protocol.ts';
import { serveParent } from '../protocol.ts';

/** The server's figures over one measurement window. */
export interface ServerWindow {
  readonly durationMs: number;
  /** Open calls at the end of the window. */
  readonly liveCalls: number;
  /** CPU time of the process (user + system) as a share of one core, percent. */
  readonly cpuCorePct: number;
  /** The part of `cpuCorePct` spent in the kernel (system time): socket writes and reads, mostly. */
  readonly systemCorePct: number;
  readonly eventLoopUtilization: number;
  /** How late a 10 ms sampling timer fired, the interval itself removed. */
  readonly loopDelayMs: { readonly p50: number; readonly p99: number; readonly max: number };
}

export type ServerRequest =
  | { readonly id: number; readonly type: 'phase' }
  | { readonly id: number; readonly type: 'collect' }
  | { readonly id: number; readonly type: 'status' }
  | { readonly id: number; readonly type: 'memory' }
  | { readonly id: number; readonly type: 'stop' };

export type ServerAnswer =
  | { readonly id: number; readonly type: 'phase' }
  | { readonly id: number; readonly type: 'collect'; readonly window: ServerWindow }
  | { readonly id: number; readonly type: 'status'; readonly liveCalls: number }
  | { readonly id: number; readonly type: 'memory'; readonly memory: MemorySample }
  | { readonly id: number; readonly type: 'stop' };

const LOOP_DELAY_RESOLUTION_MS = 10;

/**
 * Answers the orchestrator's requests for a server in this process, then says it is ready.
 * Needs --expose-gc for the memory figure.
 */
export function serveProbe(server: {
  readonly url: string;
  liveCalls(): number;
  close(): Promise<void>;
}): void {
  let windowStart = performance.now();
  let cpuStart = process.cpuUsage();
  let eluStart = performance.eventLoopUtilization();
  const loopDelay = monitorEventLoopDelay({ resolution: LOOP_DELAY_RESOLUTION_MS });
  const gc = (globalThis as { gc?: () => void }).gc;
  const lateness = (ns: number) => Math.max(0, ns / 1e6 - LOOP_DELAY_RESOLUTION_MS);

  serveParent<ServerRequest>(async (request) => {
    switch (request.type) {
      case 'phase':
        windowStart = performance.now();
        cpuStart = process.cpuUsage();
        eluStart = performance.eventLoopUtilization();
        loopDelay.reset();
        loopDelay.enable();
        return { type: 'phase' };
      case 'collect': {
        const durationMs = performance.now() - windowStart;
        const cpu = process.cpuUsage(cpuStart);
        loopDelay.disable();
        const window: ServerWindow = {
          durationMs,
          liveCalls: server.liveCalls(),
          cpuCorePct: ((cpu.user + cpu.system) / 1000 / durationMs) * 100,
          systemCorePct: (cpu.system / 1000 / durationMs) * 100,
          eventLoopUtilization: performance.eventLoopUtilization(eluStart).utilization,
          loopDelayMs: {
            p50: lateness(loopDelay.percentile(50)),
            p99: lateness(loopDelay.percentile(99)),
            max: lateness(loopDelay.max),
          },
        };
        return { type: 'collect', window };
      }
      case 'status':
        return { type: 'status', liveCalls: server.liveCalls() };
      case 'memory': {
        if (gc === undefined) throw new Error('run the server with --expose-gc');
        for (let i = 0; i < 4; i++) {
          gc();
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        const m = process.memoryUsage();
        const memory: MemorySample = {
          liveCalls: server.liveCalls(),
          heapUsed: m.heapUsed,
          heapTotal: m.heapTotal,
          rss: m.rss,
          external: m.external,
          arrayBuffers: m.arrayBuffers,
        };
        return { type: 'memory', memory };
      }
      case 'stop':
        await server.close();
        setImmediate(() => process.exit(0));
        return { type: 'stop' };
    }
  });
  process.send?.({ type: 'ready', url: server.url, pid: process.pid });
}
