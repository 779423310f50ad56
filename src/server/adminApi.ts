/**
 * The admin API under /api/: companies and templates (read, create or replace), call records, cost
 * events, and the analytics and alert reads. Behind `Authorization: Bearer <ADMIN_TOKEN>` (compared
 * in constant time; no cookie, so a browser cannot be tricked into a write); with no ADMIN_TOKEN
 * configured every /api/ URL answers 404, off rather than open.
 *
 * Every answer is JSON. Errors are `{ "error": "…" }`, and validation errors (422) add `problems`,
 * each naming the field: `{ "field": "gatekeeper.tier1Threshold", "message": "…" }`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ConfigError } from '../errors.ts';
import type { Logger } from '../observability/logger.ts';
import { getCall, listCalls, listCostEvents } from '../store/callRecords.ts';
import type { ConfigService } from '../store/configService.ts';
import type { ConfigKind } from '../store/configStore.ts';
import type { Queryable } from '../store/sql/db.ts';
import { DbError, dbErrorForLog } from '../store/sql/db.ts';
import { createAdminAuth } from './adminAuth.ts';
import type { HttpRoute } from './httpServer.ts';
import { readBody } from '../readBody.ts';

/** Largest request body accepted (a template with many scenarios is tens of KiB). */
export const MAX_ADMIN_BODY_BYTES = 1024 * 1024;

/** One validation problem. `document` names another stored document when the problem is there. */
export interface ApiProblem {
  readonly field: string;
  readonly message: string;
  readonly document?: string;
}

/** The analytics reads (src/cost/warmupAnalytics.ts), passed in when wired. */
export interface AnalyticsSeam {
  warmup(query: {
    companyId: string;
    days: number;
    company: { readonly warmup: { readonly minimumHitRate: number } };
  }): Promise<unknown>;
  tiers(query: { companyId: string; days: number }): Promise<unknown>;
}

/** The alert service's read, passed in when wired. */
export interface AlertsSeam {
  list(filter: { companyId?: string; since?: Date; limit?: number }): Promise<unknown>;
}

export interface AdminApiOptions {
  readonly adminToken: string | undefined;
  readonly config: ConfigService;
  /** Where calls and cost events are stored; undefined without a database (those reads answer 501). */
  readonly db: Queryable | undefined;
  readonly log: Logger;
  /** Absent: the analytics routes answer 501. */
  readonly analytics?: AnalyticsSeam;
  /** Absent: GET /api/alerts answers 501. */
  readonly alerts?: AlertsSeam;
  readonly maxBodyBytes?: number;
}

class ApiError extends Error {
  readonly status: number;
  readonly problems: readonly ApiProblem[] | undefined;
  readonly headers: Record<string, string>;
  constructor(
    status: number,
    message: string,
    options: { problems?: readonly ApiProblem[]; headers?: Record<string, string> } = {},
  ) {
    super(message);
    this.status = status;
    this.problems = options.problems;
    this.headers = options.headers ?? {};
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}

async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    req.resume();
    throw new ApiError(413, `body larger than ${limit} bytes`);
  }
  const { body, truncated } = await readBody(req, limit);
  if (truncated) throw new ApiError(413, `body larger than ${limit} bytes`);
  try {
    return JSON.parse(body.toString('utf8')) as unknown;
  } catch (err) {
    throw new ApiError(400, `invalid JSON: ${(err as Error).message}`);
  }
}

/** "source: field: message" (ConfigError's form) into a problem; `body` is the request's document. */
export function toProblem(problem: string): ApiProblem {
  const [source, rest] = splitOnce(problem);
  if (rest === undefined) return { field: '(root)', message: problem };
  const [field, message] = splitOnce(rest);
  const p = message === undefined ? { field: '(root)', message: rest } : { field, message };
  return source === 'body' ? p : { ...p, document: source };
}

function splitOnce(text: string): [string, string | undefined] {
  const i = text.indexOf(': ');
  return i < 0 ? [text, undefined] : [text.slice(0, i), text.slice(i + 2)];
}

const queryProblem = (field: string, message: string) =>
  new ApiError(400, 'invalid query', { problems: [{ field, message }] });

function intParam(url: URL, name: string, min: number, max: number, fallback: number): number {
  const raw = url.searchParams.get(name);
  if (raw === null || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw queryProblem(name, `expected a whole number from ${min} to ${max}`);
  }
  return n;
}

function dateParam(url: URL, name: string): Date | undefined {
  const raw = url.searchParams.get(name);
  if (raw === null || raw === '') return undefined;
  const d = new Date(raw);
  if (Number.isNaN(d.getTime())) throw queryProblem(name, 'expected an ISO 8601 date-time');
  return d;
}

function requiredParam(url: URL, name: string): string {
  const raw = url.searchParams.get(name);
  if (raw === null || raw.trim() === '') throw queryProblem(name, 'required');
  return raw.trim();
}

const DAY_MS = 86_400_000;

/** The admin API as an HttpRoute (tried for every path under /api). */
export function adminApiRoute(options: AdminApiOptions): HttpRoute {
  const auth = options.adminToken === undefined ? null : createAdminAuth(options.adminToken);
  const { config, log } = options;
  const limit = options.maxBodyBytes ?? MAX_ADMIN_BODY_BYTES;

  const needDb = (): Queryable => {
    if (options.db === undefined) throw new ApiError(501, 'no database configured: calls are not recorded');
    return options.db;
  };

  async function putDocument(kind: ConfigKind, id: string, req: IncomingMessage, res: ServerResponse) {
    const body = await readJson(req, limit);
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new ApiError(422, 'invalid document', {
        problems: [{ field: '(root)', message: `expected a ${kind} JSON object` }],
      });
    }
    const given = (body as { id?: unknown }).id;
    if (given !== undefined && given !== id) {
      throw new ApiError(422, 'invalid document', {
        problems: [{ field: 'id', message: `must match the id in the URL ("${id}")` }],
      });
    }
    const raw = { ...body, id };
    let created = false;
    try {
      created = (await config.put([{ kind, id, raw, source: 'body' }]))[0]?.created ?? false;
    } catch (err) {
      if (err instanceof ConfigError) {
        throw new ApiError(422, `invalid ${kind}`, { problems: err.problems.map(toProblem) });
      }
      throw err;
    }
    const location = `/api/${kind === 'company' ? 'companies' : 'templates'}/${encodeURIComponent(id)}`;
    sendJson(res, created ? 201 : 200, raw, created ? { location } : {});
  }

  async function getDocument(kind: ConfigKind, id: string, res: ServerResponse) {
    const doc = await config.document(kind, id);
    if (doc === null) throw new ApiError(404, `no ${kind} "${id}"`);
    sendJson(res, 200, doc);
  }

  async function handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const method = req.method ?? 'GET';
    let segments: string[];
    try {
      segments = url.pathname
        .slice('/api/'.length)
        .split('/')
        .filter((s) => s !== '')
        .map(decodeURIComponent);
    } catch {
      throw new ApiError(400, 'malformed path');
    }
    const allow = (...methods: string[]) => {
      if (!methods.includes(method)) {
        throw new ApiError(405, `method ${method} not allowed here`, {
          headers: { allow: methods.join(', ') },
        });
      }
    };
    const [collection, id, sub, leaf, ...extra] = segments;
    if (extra.length > 0) throw new ApiError(404, 'not found');

    if ((collection === 'companies' || collection === 'templates') && id === undefined) {
      allow('GET');
      const kind: ConfigKind = collection === 'companies' ? 'company' : 'template';
      const docs = await config.documents(kind);
      const summary = (raw: unknown) => {
        const r = raw as Record<string, unknown>;
        return kind === 'company'
          ? { id: r['id'], name: r['name'], phoneNumbers: r['phoneNumbers'], templates: r['templates'] }
          : { id: r['id'], name: r['name'] ?? null };
      };
      return sendJson(res, 200, { [collection]: docs.map((d) => summary(d.raw)) });
    }
    if ((collection === 'companies' || collection === 'templates') && id !== undefined && sub === undefined) {
      allow('GET', 'PUT');
      const kind: ConfigKind = collection === 'companies' ? 'company' : 'template';
      return method === 'PUT' ? putDocument(kind, id, req, res) : getDocument(kind, id, res);
    }
    if (collection === 'companies' && id !== undefined && sub === 'analytics' && leaf !== undefined) {
      allow('GET');
      if (leaf !== 'warmup' && leaf !== 'tiers') throw new ApiError(404, 'not found');
      const days = intParam(url, 'days', 1, 366, 7);
      const company = await config.company(id);
      if (company === null) throw new ApiError(404, `no company "${id}"`);
      if (options.analytics === undefined || options.db === undefined) {
        throw new ApiError(501, 'analytics are not available in this build');
      }
      const result =
        leaf === 'warmup'
          ? await options.analytics.warmup({ companyId: id, days, company })
          : await options.analytics.tiers({ companyId: id, days });
      return sendJson(res, 200, result);
    }
    if (collection === 'calls' && id === undefined) {
      allow('GET');
      const companyId = requiredParam(url, 'companyId');
      const before = dateParam(url, 'before');
      const from = dateParam(url, 'from');
      const to = dateParam(url, 'to');
      const calls = await listCalls(needDb(), {
        companyId,
        limit: intParam(url, 'limit', 1, 1000, 50),
        ...(before ? { before } : {}),
        ...(from ? { from } : {}),
        ...(to ? { to } : {}),
      });
      return sendJson(res, 200, { calls });
    }
    if (collection === 'calls' && id !== undefined && sub === undefined) {
      allow('GET');
      const call = await getCall(needDb(), id);
      if (call === null) throw new ApiError(404, `no call "${id}"`);
      return sendJson(res, 200, call);
    }
    if (collection === 'cost-events' && id === undefined) {
      allow('GET');
      const companyId = requiredParam(url, 'companyId');
      const to = dateParam(url, 'to') ?? new Date();
      const from = dateParam(url, 'from') ?? new Date(to.getTime() - DAY_MS);
      if (from.getTime() >= to.getTime()) throw queryProblem('from', 'must be before "to"');
      const afterAt = dateParam(url, 'afterAt');
      const afterId = url.searchParams.get('afterId');
      if ((afterAt === undefined) !== (afterId === null)) {
        throw queryProblem(afterAt === undefined ? 'afterAt' : 'afterId', 'afterAt and afterId go together');
      }
      if (afterId !== null && !/^[0-9a-f-]{36}$/i.test(afterId))
        throw queryProblem('afterId', 'expected a UUID');
      const pageSize = intParam(url, 'limit', 1, 10_000, 1000);
      const events = await listCostEvents(needDb(), {
        companyId,
        from,
        to,
        limit: pageSize,
        ...(afterAt !== undefined && afterId !== null
          ? { after: { at: afterAt.toISOString(), id: afterId } }
          : {}),
      });
      const last = events.at(-1);
      return sendJson(res, 200, {
        from: from.toISOString(),
        to: to.toISOString(),
        events,
        // A full page may have more behind it: pass these as afterAt and afterId.
        next:
          events.length === pageSize && last !== undefined ? { afterAt: last.at, afterId: last.id } : null,
      });
    }
    if (collection === 'alerts' && id === undefined) {
      allow('GET');
      if (options.alerts === undefined) throw new ApiError(501, 'alerts are not available in this build');
      const companyId = url.searchParams.get('companyId') ?? undefined;
      const since = dateParam(url, 'since');
      const result = await options.alerts.list({
        ...(companyId ? { companyId } : {}),
        ...(since ? { since } : {}),
        limit: intParam(url, 'limit', 1, 1000, 100),
      });
      return sendJson(res, 200, result);
    }
    throw new ApiError(404, 'not found');
  }

  return async (req, res, url) => {
    if (url.pathname !== '/api' && !url.pathname.startsWith('/api/')) return false;
    try {
      if (auth === null) throw new ApiError(404, 'not found');
      if (!auth.allowsBearer(req)) {
        throw new ApiError(401, 'unauthorized', { headers: { 'www-authenticate': 'Bearer' } });
      }
      await handle(req, res, url);
    } catch (err) {
      if (res.headersSent) {
        res.destroy();
        return true;
      }
      if (err instanceof ApiError) {
        sendJson(
          res,
          err.status,
          err.problems === undefined
            ? { error: err.message }
            : { error: err.message, problems: err.problems },
          err.headers,
        );
      } else if (err instanceof DbError && err.code === 'ERR_DB_UNAVAILABLE') {
        log.warn({ err: dbErrorForLog(err) }, 'admin api: database unavailable');
        sendJson(res, 503, { error: 'database unavailable; try again' }, { 'retry-after': '5' });
      } else {
        log.error({ err: err instanceof DbError ? dbErrorForLog(err) : err }, 'admin api request failed');
        sendJson(res, 500, { error: 'internal error' });
      }
    }
    return true;
  };
}
