/**
 * The statechart inspector, served by the engine itself under /inspect (admin token required):
 *
 *   GET  /inspect                         the page (or, signed out, the sign-in form with 401)
 *   POST /inspect/login, /inspect/logout  sign a browser in (session cookie) or out
 *   GET  /inspect/assets/{file}           the page's static ES modules and stylesheet
 *   GET  /inspect/api/machine             the call machine, generated from its definition
 *   GET  /inspect/api/calls               live and recently ended calls
 *   GET  /inspect/api/calls/{id}          one call's recording, for replay
 *   GET  /inspect/api/calls/{id}/stream   server-sent events: the recording so far, then live steps
 *                                         (inspection attached while at least one stream is open)
 */
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Engine } from '../../calls/engine.ts';
import type { HttpRoute } from '../../server/httpServer.ts';
import type { Logger } from '../logger.ts';
import type { AdminAuth } from '../../server/adminAuth.ts';
import { createAdminAuth } from '../../server/adminAuth.ts';
import type { RecorderLimits } from './replayRecorder.ts';
import { ReplayRecorder } from './replayRecorder.ts';
import { InspectHub } from './inspectHub.ts';
import { liveFeed } from './liveFeed.ts';
import { callMeta, replayOf, TransitionInference } from './replay.ts';
import { describeMachine } from './statechart.ts';
import type { MachineDescription } from './statechart.ts';
import { readBody } from '../../readBody.ts';

export interface InspectorOptions {
  readonly engine: Engine;
  readonly adminToken: string;
  readonly log: Logger;
  /** The engine's public URL; an https one marks the session cookie Secure. */
  readonly publicBaseUrl?: string | undefined;
  readonly limits?: RecorderLimits;
}

export interface Inspector {
  readonly routes: readonly HttpRoute[];
  readonly hub: InspectHub;
  readonly recorder: ReplayRecorder;
  readonly description: MachineDescription;
  /** Ends open streams and detaches from every call. */
  close(): void;
}

const ASSETS: Readonly<Record<string, string>> = {
  'inspector.js': 'text/javascript; charset=utf-8',
  'statechart.js': 'text/javascript; charset=utf-8',
  'panels.js': 'text/javascript; charset=utf-8',
  'style.css': 'text/css; charset=utf-8',
};

/** The page runs only what it is served from here: no inline script, no other origin. */
const PAGE_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

const MAX_FORM_BYTES = 4096;
/** Failed sign-ins allowed per address per window. */
const MAX_FAILED_LOGINS = 10;
const LOGIN_WINDOW_MS = 5 * 60 * 1000;
const HEARTBEAT_MS = 15_000;
/** A viewer this far behind is cut off rather than buffered without bound. */
const MAX_STREAM_BACKLOG_BYTES = 1024 * 1024;

const PAGE_DIR = new URL('./page/', import.meta.url);

function send(
  res: ServerResponse,
  status: number,
  body: string,
  type: string,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, {
    'content-type': type,
    'content-length': Buffer.byteLength(body),
    'x-content-type-options': 'nosniff',
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(body);
}

const json = (res: ServerResponse, status: number, value: unknown) =>
  send(res, status, JSON.stringify(value), 'application/json; charset=utf-8');

async function readForm(req: IncomingMessage): Promise<URLSearchParams | null> {
  const { body, truncated } = await readBody(req, MAX_FORM_BYTES);
  return truncated ? null : new URLSearchParams(body.toString('utf8'));
}

/** Counts failed sign-ins per address so the token cannot be guessed at speed. */
function loginLimiter(now: () => number = Date.now) {
  const failures = new Map<string, { count: number; resetAt: number }>();
  return {
    blocked(address: string): boolean {
      const entry = failures.get(address);
      return entry !== undefined && entry.resetAt > now() && entry.count >= MAX_FAILED_LOGINS;
    },
    fail(address: string): void {
      const entry = failures.get(address);
      if (entry === undefined || entry.resetAt <= now()) {
        if (failures.size > 10_000) failures.clear();
        failures.set(address, { count: 1, resetAt: now() + LOGIN_WINDOW_MS });
      } else entry.count += 1;
    },
  };
}

export async function createInspector(options: InspectorOptions): Promise<Inspector> {
  const { engine, log } = options;
  const auth: AdminAuth = createAdminAuth(options.adminToken);
  const secureCookie = options.publicBaseUrl?.startsWith('https:') ?? false;
  const machine = engine.machine;
  const description = describeMachine(machine);
  const inference = new TransitionInference(description);
  const recorder = new ReplayRecorder(engine, options.limits);
  const hub = new InspectHub(engine, log);
  const limiter = loginLimiter();
  const streams = new Set<() => void>();

  const [indexHtml, loginHtml] = await Promise.all([
    readFile(new URL('index.html', PAGE_DIR), 'utf8'),
    readFile(new URL('login.html', PAGE_DIR), 'utf8'),
  ]);
  const assets = new Map<string, { body: Buffer; type: string }>();
  for (const [name, type] of Object.entries(ASSETS)) {
    assets.set(name, { body: await readFile(new URL(name, PAGE_DIR)), type });
  }

  const isSecure = (req: IncomingMessage) => secureCookie || req.headers['x-forwarded-proto'] === 'https';

  const signInPage = (res: ServerResponse, status: number, message: string) =>
    send(res, status, loginHtml.replace('<!--message-->', message), 'text/html; charset=utf-8', PAGE_HEADERS);

  const unauthorized = (res: ServerResponse) =>
    send(res, 401, JSON.stringify({ error: 'admin token required' }), 'application/json; charset=utf-8', {
      'www-authenticate': 'Bearer realm="switchboard-inspector"',
    });

  const metaOf = (id: string) => {
    const recording = recorder.get(id);
    if (recording === undefined) return undefined;
    const live = recording.endedAt === null;
    return callMeta(recording, machine, { live, watchers: hub.viewers(id) });
  };

  async function signIn(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const address = req.socket.remoteAddress ?? 'unknown';
    if (limiter.blocked(address)) {
      log.warn('inspector sign-in refused: too many failures');
      return signInPage(res, 429, '<p class="error">Too many attempts. Try again in a few minutes.</p>');
    }
    const form = await readForm(req);
    const token = form?.get('token') ?? '';
    if (!auth.matches(token)) {
      limiter.fail(address);
      log.warn('inspector sign-in failed');
      return signInPage(res, 401, '<p class="error">That is not the admin token.</p>');
    }
    log.info('inspector sign-in');
    res.writeHead(303, {
      location: '/inspect',
      'set-cookie': auth.sessionCookie(isSecure(req)),
      'cache-control': 'no-store',
    });
    res.end();
  }

  function stream(req: IncomingMessage, res: ServerResponse, id: string): void {
    const recording = recorder.get(id);
    if (recording === undefined) return json(res, 404, { error: 'no such call' });
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-accel-buffering': 'no',
      'x-content-type-options': 'nosniff',
    });
    let open = true;
    const cleanups: Array<() => void> = [];
    const finish = () => {
      if (!open) return;
      open = false;
      streams.delete(finish);
      for (const cleanup of cleanups) cleanup();
      if (!res.writableEnded) res.end();
    };
    const write = (event: string, data: unknown) => {
      if (!open || res.writableEnded || res.destroyed) return;
      res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
      if (res.writableLength > MAX_STREAM_BACKLOG_BYTES) {
        log.warn({ callId: id }, 'inspector viewer too slow; stream closed');
        finish();
      }
    };
    streams.add(finish);
    res.on('close', finish);

    const session = recording.endedAt === null ? engine.session(id) : undefined;
    const live = session !== undefined;
    write('hello', replayOf(recording, machine, inference, { live, watchers: hub.viewers(id) + 1 }));
    if (!live) return finish();

    // Turns come from the recorder (it measures their latency); steps from inspection.
    cleanups.push(recorder.listen(id, { turn: (entry) => write('turn', entry) }));
    const lease = hub.watch(id, {
      ...liveFeed(session.actor, machine, (message) => write(message.type, message)),
      ended: () => {
        write('ended', { call: metaOf(id) ?? null });
        finish();
      },
    });
    if (lease === undefined) {
      write('ended', { call: metaOf(id) ?? null });
      return finish();
    }
    cleanups.push(() => lease.close());
    const heartbeat = setInterval(() => {
      if (open) res.write(': keep-alive\n\n');
    }, HEARTBEAT_MS);
    heartbeat.unref();
    cleanups.push(() => clearInterval(heartbeat));
  }

  const route: HttpRoute = async (req, res, url) => {
    const path = url.pathname;
    if (path !== '/inspect' && !path.startsWith('/inspect/')) return false;
    const method = req.method ?? 'GET';

    if (method === 'GET' && path.startsWith('/inspect/assets/')) {
      const asset = assets.get(path.slice('/inspect/assets/'.length));
      if (asset === undefined) return false;
      res.writeHead(200, {
        'content-type': asset.type,
        'content-length': asset.body.length,
        'x-content-type-options': 'nosniff',
        'cache-control': 'no-cache',
      });
      res.end(asset.body);
      return true;
    }
    if (method === 'POST' && path === '/inspect/login') {
      await signIn(req, res);
      return true;
    }
    if (method === 'POST' && path === '/inspect/logout') {
      res.writeHead(303, {
        location: '/inspect',
        'set-cookie': auth.clearCookie(isSecure(req)),
        'cache-control': 'no-store',
      });
      res.end();
      return true;
    }
    if (method === 'GET' && (path === '/inspect' || path === '/inspect/')) {
      if (!auth.allows(req)) {
        signInPage(res, 401, '');
        return true;
      }
      send(res, 200, indexHtml, 'text/html; charset=utf-8', PAGE_HEADERS);
      return true;
    }
    if (!path.startsWith('/inspect/api/') || method !== 'GET') return false;
    if (!auth.allows(req)) {
      unauthorized(res);
      return true;
    }

    const api = path.slice('/inspect/api/'.length);
    if (api === 'machine') {
      json(res, 200, description);
      return true;
    }
    if (api === 'calls') {
      const meta = (recordings: ReturnType<ReplayRecorder['live']>) =>
        recordings.map((r) => metaOf(r.id)).filter((m) => m !== undefined);
      json(res, 200, { live: meta(recorder.live()), recent: meta(recorder.recent()) });
      return true;
    }
    const match = /^calls\/([A-Za-z0-9-]{1,64})(\/stream)?$/.exec(api);
    if (match === null) return false;
    const id = match[1]!;
    if (match[2] !== undefined) {
      stream(req, res, id);
      return true;
    }
    const recording = recorder.get(id);
    if (recording === undefined) {
      json(res, 404, { error: 'no such call' });
      return true;
    }
    const live = recording.endedAt === null;
    json(res, 200, replayOf(recording, machine, inference, { live, watchers: hub.viewers(id) }));
    return true;
  };

  return {
    routes: [route],
    hub,
    recorder,
    description,
    close() {
      for (const finish of [...streams]) finish();
      hub.close();
      recorder.close();
    },
  };
}
