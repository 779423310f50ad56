/**
 * The bare relay baseline in its own process for the audio bench (started with --expose-gc, pinned
 * like the engine): the relay on port 0, forwarding to the fake upstream whose URL comes in
 * BENCH_RELAY_UPSTREAM, measured by the server probe.
 */
import { startBareRelay } from './bareRelay.ts';
import { serveProbe } from './serverProbe.ts';

const upstreamUrl = process.env['BENCH_RELAY_UPSTREAM'];
if (upstreamUrl === undefined) throw new Error('BENCH_RELAY_UPSTREAM is not set');
const relay = await startBareRelay({ upstreamUrl });
serveProbe({ url: relay.url, liveCalls: () => relay.liveCalls, close: () => relay.close() });
