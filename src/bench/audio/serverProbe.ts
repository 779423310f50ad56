/**
 * What the server under test (the engine or the bare relay, each in its own child process) reports
 * to the audio bench's orchestrator over the IPC channel of `Child` (src/bench/protocol.ts): CPU
 * time, event-loop delay and utilisation over a window, memory after a full collection, live calls.
 * The child measures itself, so the callers and fakes cannot inflate its figures.
 */
import type { MemorySample, ProbeRequest, ProcessWindow } from '../protocol.ts';
import { processMeter, sampleMemory, serveParent } from '../protocol.ts';

/** The server's figures over one measurement window. */
export interface ServerWindow extends ProcessWindow {
  /** Open calls at the end of the window. */
  readonly liveCalls: number;
}

export type ServerRequest = ProbeRequest;

export type ServerAnswer =
  | { readonly id: number; readonly type: 'phase' }
  | { readonly id: number; readonly type: 'collect'; readonly window: ServerWindow }
  | { readonly id: number; readonly type: 'status'; readonly liveCalls: number }
  | { readonly id: number; readonly type: 'memory'; readonly memory: MemorySample }
  | { readonly id: number; readonly type: 'stop' };

/**
 * Answers the orchestrator's requests for a server in this process, then says it is ready.
 * Needs --expose-gc for the memory figure.
 */
export function serveProbe(server: {
  readonly url: string;
  liveCalls(): number;
  close(): Promise<void>;
}): void {
  const meter = processMeter();
  serveParent<ServerRequest>(async (request) => {
    switch (request.type) {
      case 'phase':
        meter.start();
        return { type: 'phase' };
      case 'collect':
        return { type: 'collect', window: { ...meter.collect(), liveCalls: server.liveCalls() } };
      case 'status':
        return { type: 'status', liveCalls: server.liveCalls() };
      case 'memory':
        return { type: 'memory', memory: await sampleMemory(server.liveCalls()) };
      case 'stop':
        await server.close();
        setImmediate(() => process.exit(0));
        return { type: 'stop' };
    }
  });
  process.send?.({ type: 'ready', url: server.url, pid: process.pid });
}
