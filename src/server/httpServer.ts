/**
 * HTTP and WebSocket entry points: the Twilio webhook, ConversationRelay and Media Streams sockets,
 * and health.
 * Requests are small and few per call, so plain node:http keeps the hot path free of framework work.
 */
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer } from 'ws';
import type { Engine } from '../calls/engine.ts';
import type { EnvConfig } from '../config/env.ts';
import { isLoopback } from '../config/env.ts';
import type { Logger } from '../observability/logger.ts';
import { handleRelaySocket } from '../twilio/relayConnection.ts';
import { MAX_RELAY_FRAME_BYTES, TRACE_HEADER } from '../twilio/relayProtocol.ts';
import { isValidTwilioSignature } from '../twilio/signature.ts';
import { createStreamTokens } from '../twilio/streamTokens.ts';
import type { StreamTokens } from '../twilio/streamTokens.ts';
import { conversationRelayTwiml, dialTwiml, mediaStreamTwiml, sayAndHangupTwiml } from '../twilio/twiml.ts';
import type { CostSink } from '../cost/costEvent.ts';
import type { MediaServices } from '../speech/mediaServices.ts';
import { handleMediaSocket } from '../twilio/mediaConnection.ts';
import type { MediaObserver, MediaSocketOptions } from '../twilio/mediaConnection.ts';
import { MAX_MEDIA_FRAME_BYTES } from '../twilio/mediaProtocol.ts';
import { readBody } from '../readBody.ts';

const MAX_BODY_BYTES = 64 * 1024;

export interface ServerOptions {
  readonly env: EnvConfig;
  readonly engine: Engine;
  readonly log: Logger;
  readonly tokens?: StreamTokens;
  /** Shed new calls (503) when event-loop lag exceeds this many milliseconds. */
  readonly shedDelayMs?: number;
  readonly relay?: { setupTimeoutMs?: number; playbackMsPerChar?: number };
  /** Media Streams calls (our own STT and TTS); absent = every call goes over ConversationRelay. */
  readonly media?: {
    readonly services: MediaServices;
    readonly ledger: CostSink;
    readonly options?: Omit<MediaSocketOptions, 'trace'>;
    readonly observe?: MediaObserver;
  };
  /** Further HTTP routes (admin API, inspector, metrics), tried in order before the 404. */
  readonly routes?: readonly HttpRoute[];
  /** Further WebSocket endpoints, tried in order before the 404. */
  readonly upgrades?: readonly UpgradeRoute[];
  /** Whether the engine takes calls yet (the startup warmup); absent = ready from the start. */
  readonly readiness?: Readiness;
  /** A call came in for a number no company owns (alerting). */
  readonly onUnknownNumber?: () => void;
}

/**
 * The engine's readiness. The server listens before the engine is ready, so `GET /health` can say
 * "live, not ready yet" while the webhook answers 503 (Twilio then tries the fallback URL, a load
 * balancer another replica).
 */
export interface Readiness {
  readonly ready: boolean;
  /** Extra fields for `GET /health`, e.g. the startup warmup's report. */
  health(): Record<string, unknown>;
}

/** Handles the request and returns true, or returns false to let the next route try. */
export type HttpRoute = (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<boolean> | boolean;

/** Takes over the upgrade (accepting or refusing it) and returns true, or returns false. */
export type UpgradeRoute = (req: IncomingMessage, socket: Duplex, head: Buffer, url: URL) => boolean;

export interface RunningServer {
  readonly server: Server;
  readonly url: string;
  close(): Promise<void>;
}

class HttpError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

async function readForm(req: IncomingMessage): Promise<Record<string, string>> {
  const { body, truncated } = await readBody(req, MAX_BODY_BYTES);
  if (truncated) throw new HttpError(413, 'body too large');
  return Object.fromEntries(new URLSearchParams(body.toString('utf8')));
}

const LAG_TICK_MS = 100;

/**
 * Event-loop lag: how late a 100 ms tick fires, decaying by half each tick. A stall shows up on the
 * first tick after it (that tick is overdue, so it runs before any later timer) and fades within
 * about a second once the loop is free.
 */
function watchEventLoopLag(): { lagMs(): number; stop(): void } {
  let last = performance.now();
  let lag = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    lag = Math.max(now - last - LAG_TICK_MS, lag / 2);
    last = now;
  }, LAG_TICK_MS);
  timer.unref();
  return { lagMs: () => lag, stop: () => clearInterval(timer) };
}

function send(res: ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

export function startServer(options: ServerOptions): Promise<RunningServer> {
  const { env, engine, log } = options;
  const tokens =
    options.tokens ?? createStreamTokens(env.twilio.authToken ? { secret: env.twilio.authToken } : {});
  const authToken = env.twilio.authToken;
  const lag = watchEventLoopLag();
  /** The URL Twilio requested, as it signed it: the public base URL when configured. */
  const publicUrl = (req: IncomingMessage, scheme: 'http' | 'ws'): URL => {
    const path = req.url ?? '/';
    if (env.publicBaseUrl) {
      const base = new URL(env.publicBaseUrl);
      if (scheme === 'ws') base.protocol = base.protocol === 'https:' ? 'wss:' : 'ws:';
      return new URL(path, base);
    }
    const host = req.headers.host ?? `127.0.0.1:${env.port}`;
    return new URL(path, `${scheme}://${host}`);
  };

  /** Twilio-signed, or (with no auth token configured) from this machine only. */
  const checkTwilio = (req: IncomingMessage, url: URL, params: Record<string, string>) => {
    if (authToken === undefined) {
      if (!isLoopback(req.socket.remoteAddress))
        throw new HttpError(403, 'unsigned webhooks are accepted from loopback only');
      return;
    }
    const signature = req.headers['x-twilio-signature'];
    if (
      !isValidTwilioSignature(
        authToken,
        typeof signature === 'string' ? signature : undefined,
        url.href,
        params,
      )
    ) {
      throw new HttpError(403, 'invalid X-Twilio-Signature');
    }
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://local');
    const route = `${req.method ?? 'GET'} ${url.pathname}`;
    switch (route) {
      // /health is liveness (200 while the process answers); /health/ready is 503 until ready,
      // for load balancers and orchestrators that only look at the status code.
      case 'GET /health':
      case 'GET /health/ready': {
        const ready = options.readiness?.ready ?? true;
        return send(
          res,
          route === 'GET /health/ready' && !ready ? 503 : 200,
          JSON.stringify({
            status: 'ok',
            live: true,
            ready,
            liveCalls: engine.liveCalls,
            eventLoopLagMs: Math.round(lag.lagMs()),
            ...options.readiness?.health(),
          }),
          'application/json',
        );
      }
      case 'POST /twilio/voice': {
        const form = await readForm(req);
        checkTwilio(req, publicUrl(req, 'http'), form);
        if (options.readiness?.ready === false) {
          log.warn('refusing a new call: the engine is not ready yet');
          res.setHeader('retry-after', '1');
          return send(res, 503, 'not ready');
        }
        if (options.shedDelayMs !== undefined && lag.lagMs() > options.shedDelayMs) {
          log.warn({ eventLoopLagMs: Math.round(lag.lagMs()) }, 'shedding a new call: event loop saturated');
          res.setHeader('retry-after', '1');
          return send(res, 503, 'busy');
        }
        const company = await engine.companyForNumber(form['To'] ?? '');
        if (company === undefined) {
          log.warn({ code: 'COMPANY_NOT_FOUND' }, 'no company owns the called number');
          options.onUnknownNumber?.();
          return send(
            res,
            200,
            sayAndHangupTwiml('Sorry, this number is not in service. Goodbye.'),
            'text/xml; charset=utf-8',
          );
        }
        const transport = transportFor(company.config.id, company.config.voice.transport);
        const token = tokens.mint({
          transport,
          companyId: company.config.id,
          callSid: form['CallSid'] ?? null,
        });
        const actionUrl = new URL('/twilio/connect-action', publicUrl(req, 'http')).href;
        if (transport === 'media') {
          // Twilio drops query strings from a stream URL: the token is a path segment, and both go
          // along as <Parameter>s, which come back in the stream's `start`.
          const streamUrl = new URL(`/twilio/media/${token}`, publicUrl(req, 'ws')).href;
          const twiml = mediaStreamTwiml({
            streamUrl,
            actionUrl,
            parameters: { company: company.config.id, token },
          });
          return send(res, 200, twiml, 'text/xml; charset=utf-8');
        }
        const relayUrl = new URL(`/twilio/relay/${token}`, publicUrl(req, 'ws')).href;
        const twiml = conversationRelayTwiml({
          relayUrl,
          actionUrl,
          language: company.config.voice.language,
        });
        return send(res, 200, twiml, 'text/xml; charset=utf-8');
      }
      case 'POST /twilio/connect-action': {
        // Twilio calls this when the relay session or the media stream ends: transfer if we handed
        // off, else hang up. A relay says so in HandoffData; a stream we ended left a handoff note.
        const form = await readForm(req);
        checkTwilio(req, publicUrl(req, 'http'), form);
        if (form['HandoffData'] === undefined && options.media !== undefined && form['CallSid']) {
          const note = await options.media.services.handoffs.take(form['CallSid']);
          const twiml = note?.action === 'transfer' ? dialTwiml(note.number) : sayAndHangupTwiml(null);
          return send(res, 200, twiml, 'text/xml; charset=utf-8');
        }
        let handoff: { reasonCode?: string } = {};
        try {
          handoff = JSON.parse(form['HandoffData'] ?? '{}') as typeof handoff;
        } catch {
          handoff = {};
        }
        const company = await engine.companyForNumber(form['To'] ?? '');
        const number = company?.config.fallbackResponses.transferNumber;
        const twiml =
          handoff.reasonCode === 'transfer' && number ? dialTwiml(number) : sayAndHangupTwiml(null);
        return send(res, 200, twiml, 'text/xml; charset=utf-8');
      }
      case 'POST /twilio/status': {
        const form = await readForm(req);
        checkTwilio(req, publicUrl(req, 'http'), form);
        res.writeHead(204).end();
        return;
      }
      default:
        for (const route of options.routes ?? []) if (await route(req, res, url)) return;
        return send(res, 404, 'not found');
    }
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      const status = err instanceof HttpError ? err.status : 500;
      if (status >= 500) log.error({ err }, 'request failed');
      else
        log.warn(
          { status, reason: (err as Error).message, path: req.url?.split('/').slice(0, 3).join('/') },
          'request refused',
        );
      if (!res.headersSent) send(res, status, status >= 500 ? 'internal error' : (err as Error).message);
      else res.destroy();
    });
  });

  /** Media Streams when STT and TTS are configured and the company does not insist on the relay. */
  const warnedNoMedia = new Set<string>();
  const transportFor = (companyId: string, choice: 'auto' | 'relay' | 'media'): 'relay' | 'media' => {
    if (choice === 'relay') return 'relay';
    if (options.media !== undefined) return 'media';
    if (choice === 'media' && !warnedNoMedia.has(companyId)) {
      warnedNoMedia.add(companyId);
      log.warn(
        { companyId },
        'company asks for Media Streams but STT_PROVIDER/TTS_PROVIDER are not set; using ConversationRelay',
      );
    }
    return 'relay';
  };

  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: MAX_RELAY_FRAME_BYTES,
    perMessageDeflate: false,
  });
  // Twilio's media frames are a few hundred bytes; anything near this bound is not Twilio.
  const mediaWss = new WebSocketServer({
    noServer: true,
    maxPayload: MAX_MEDIA_FRAME_BYTES,
    perMessageDeflate: false,
  });
  server.on('upgrade', (req, socket, head) => {
    const refuse = (status: number, reason: string) => {
      log.warn({ status, reason }, 'websocket upgrade refused');
      socket.end(`HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    };
    const url = new URL(req.url ?? '/', 'http://local');
    const match = /^\/twilio\/(relay|media)\/([^/]+)$/.exec(url.pathname);
    if (match === null || (match[1] === 'media' && options.media === undefined)) {
      for (const route of options.upgrades ?? []) if (route(req, socket, head, url)) return;
      return refuse(404, 'Not Found');
    }
    if (authToken !== undefined) {
      const signature = req.headers['x-twilio-signature'];
      if (
        !isValidTwilioSignature(
          authToken,
          typeof signature === 'string' ? signature : undefined,
          publicUrl(req, 'ws').href,
          {},
        )
      ) {
        return refuse(403, 'Forbidden');
      }
    } else if (!isLoopback(req.socket.remoteAddress)) {
      return refuse(403, 'Forbidden');
    }
    let token: string;
    try {
      token = decodeURIComponent(match[2]!);
    } catch {
      return refuse(403, 'Forbidden');
    }
    // Spent here, before the socket exists: a replayed, forged, expired or other-transport token
    // never gets a WebSocket.
    const grant = tokens.consume(token);
    if (grant === null || grant.transport !== match[1]) return refuse(403, 'Forbidden');
    const trace = req.headers[TRACE_HEADER] === '1';
    const media = options.media;
    if (grant.transport === 'media' && media !== undefined) {
      const { services } = media;
      mediaWss.handleUpgrade(req, socket, head, (ws) =>
        handleMediaSocket(
          ws,
          grant,
          token,
          {
            openCall: (companyId, transport) => engine.openCall(companyId, transport),
            stt: services.stt,
            speech: services.speech,
            callControl: services.callControl,
            handoffs: services.handoffs,
            ledger: media.ledger,
            log,
            ...(media.observe === undefined ? {} : { observe: media.observe }),
          },
          { ...media.options, trace },
        ),
      );
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) =>
      handleRelaySocket(ws, grant, engine, log, { ...options.relay, trace }),
    );
  });

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(env.port, env.host, () => {
      server.off('error', reject);
      const address = server.address() as AddressInfo;
      const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
      resolve({
        server,
        url: `http://${host === '0.0.0.0' || host === '[::]' ? '127.0.0.1' : host}:${address.port}`,
        close: () =>
          new Promise<void>((done) => {
            lag.stop();
            for (const client of wss.clients) client.close(1001, 'server shutting down');
            for (const client of mediaWss.clients) client.close(1001, 'server shutting down');
            wss.close();
            mediaWss.close();
            server.close(() => done());
            server.closeAllConnections();
          }),
      });
    });
  });
}
