import { createServer } from 'node:http';
import type { IncomingHttpHeaders, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test, vi } from 'vitest';
import { ConfigError } from '../../src/errors.ts';
import type { AlertCode, AlertFields, Alerts } from '../../src/observability/alerts.ts';
import {
  ALERT_CODES,
  ALERT_SEVERITY,
  createAlerts,
  sanitizeAlertDetails,
  storedAlertCode,
  watchDatabaseHealth,
} from '../../src/observability/alerts.ts';
import type { Db } from '../../src/store/sql/db.ts';
import { DbError } from '../../src/store/sql/db.ts';
import { openTestDb } from '../store/dbForTest.ts';
import type { TestDb } from '../store/dbForTest.ts';
import { flakyDb } from '../store/outageDb.ts';

let t: TestDb;

// PGlite starts (WASM) and migrates in-process: seconds on a loaded machine, more than the default hook timeout.
beforeAll(async () => {
  t = await openTestDb();
}, 60_000);

afterAll(async () => {
  await t?.dispose();
});

beforeEach(async () => {
  await t.db.exec('DELETE FROM alerts');
});

/** A logger whose JSON lines the test can read. */
function capturedLog() {
  const lines: Array<Record<string, unknown>> = [];
  let raw = '';
  const log = pino(
    { level: 'info' },
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        raw += chunk.toString();
        for (const line of chunk.toString().split('\n')) {
          if (line.trim() !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
        }
        done();
      },
    }),
  );
  return { log, lines, raw: () => raw, messages: () => lines.map((l) => l['msg']) };
}

/** A clock the test moves. */
function clock(start = Date.UTC(2026, 10, 4, 8, 0)) {
  let ms = start;
  return { now: () => new Date(ms), advance: (by: number) => (ms += by), at: () => ms };
}

async function storedRows() {
  return t.db.query<{ code: string; severity: string; company_id: string | null; count: number }>(
    'SELECT code, severity, company_id, count, details FROM alerts ORDER BY id',
  );
}

const opened: Alerts[] = [];
function alertsWith(options: Parameters<typeof createAlerts>[0]): Alerts {
  const a = createAlerts(options);
  opened.push(a);
  return a;
}
afterEach(async () => {
  await Promise.all(opened.splice(0).map((a) => a.close()));
});

describe('codes', () => {
  test('every code has a severity; the reference grades, and Redis as a warning', () => {
    expect(ALERT_CODES).toHaveLength(9);
    for (const code of ALERT_CODES) expect(['critical', 'warning']).toContain(ALERT_SEVERITY[code]);
    const critical = ALERT_CODES.filter((c) => ALERT_SEVERITY[c] === 'critical');
    expect(critical).toEqual([
      'COMPANY_NOT_FOUND',
      'BUDGET_EXCEEDED',
      'LLM_DOWN',
      'ROUTING_ERROR',
      'DATABASE_ERROR',
    ]);
    expect(storedAlertCode('LLM_SLOW')).toBe('PRODUCTION_AI_LLM_SLOW');
  });

  test('details keep flat facts and lose caller data', () => {
    expect(
      sanitizeAlertDetails({
        provider: 'openai',
        failures: 7,
        open: true,
        none: null,
        transcript: 'my name is Dana',
        callbackNumber: '+15551234567',
        slots: { callerName: 'Dana' },
        note: 'caller at +1 (555) 123-4567 said hi',
        other: 'or (555) 123 4567, took 1500 ms on 2 tries',
        nested: { a: 1 },
        list: [1, 2],
        inf: Number.POSITIVE_INFINITY,
      }),
    ).toEqual({
      provider: 'openai',
      failures: 7,
      open: true,
      none: null,
      note: 'caller at [redacted] said hi',
      other: 'or [redacted], took 1500 ms on 2 tries',
      inf: null,
    });
  });

  test('a webhook URL that is not http(s) is a configuration error', () => {
    expect(() => createAlerts({ db: null, log: pino({ level: 'silent' }), webhookUrl: 'ftp://x' })).toThrow(
      ConfigError,
    );
  });
});

describe('raise with a database', () => {
  test('many raises in the window: one stored row with the count, one log line', async () => {
    const { log, lines, raw } = capturedLog();
    const c = clock();
    const alerts = alertsWith({ db: t.db, log, now: c.now, windowMs: 300_000 });
    for (let i = 0; i < 50; i++) {
      alerts.raise('LLM_DOWN', {
        companyId: 'acme',
        message: 'The LLM provider is not answering',
        details: { provider: 'openai', transcript: 'secret words' },
      });
      c.advance(1000);
    }
    alerts.raise('LLM_DOWN', { companyId: 'globex', message: 'The LLM provider is not answering' });
    await alerts.flush();

    const rows = await storedRows();
    expect(rows).toEqual([
      expect.objectContaining({
        code: 'PRODUCTION_AI_LLM_DOWN',
        severity: 'critical',
        company_id: 'acme',
        count: 50,
        details: { provider: 'openai' },
      }),
      expect.objectContaining({ company_id: 'globex', count: 1 }),
    ]);
    const raised = lines.filter((l) => l['msg'] === 'alert raised');
    expect(raised).toHaveLength(2);
    expect(raised[0]).toMatchObject({
      level: 50,
      alert: 'LLM_DOWN',
      severity: 'critical',
      companyId: 'acme',
    });
    // Static message, no caller data: neither the message nor the details reach the log.
    expect(raw()).not.toContain('not answering');
    expect(raw()).not.toContain('secret words');
    expect(raw()).not.toContain('openai');

    // Past the window: a new log line saying how many repeats it held back, and a new stored row.
    c.advance(301_000);
    alerts.raise('LLM_DOWN', { companyId: 'acme', message: 'The LLM provider is not answering' });
    await alerts.flush();
    const again = lines.filter((l) => l['msg'] === 'alert raised');
    expect(again).toHaveLength(3);
    expect(again[2]).toMatchObject({ companyId: 'acme', repeatsInPreviousWindow: 49 });
    expect((await storedRows()).map((r) => [r.company_id, r.count])).toEqual([
      ['acme', 50],
      ['globex', 1],
      ['acme', 1],
    ]);
    expect(alerts.stats()).toMatchObject({ raised: 52, logged: 3, stored: 52, dropped: 0, queued: 0 });

    const listed = await alerts.list({ companyId: 'acme' });
    expect(listed.source).toBe('database');
    expect(listed.alerts.map((a) => a.count)).toEqual([1, 50]);
  });

  test('warnings log at warn level; engine-wide alerts have no company', async () => {
    const { log, lines } = capturedLog();
    const alerts = alertsWith({ db: t.db, log });
    alerts.raise('REDIS_DEGRADED', { message: 'Redis is unreachable; answering from local state' });
    await alerts.flush();
    expect(lines.find((l) => l['msg'] === 'alert raised')).toMatchObject({
      level: 40,
      alert: 'REDIS_DEGRADED',
      companyId: null,
    });
    expect(await storedRows()).toEqual([
      expect.objectContaining({
        code: 'PRODUCTION_AI_REDIS_DEGRADED',
        severity: 'warning',
        company_id: null,
      }),
    ]);
  });

  test('database down: raise does not throw, list answers from memory, the queue is written once it is back', async () => {
    const { log, lines } = capturedLog();
    let down = true;
    const alerts = alertsWith({
      db: flakyDb(t.db, () => down),
      log,
      retryMinMs: 20,
      retryMaxMs: 40,
    });
    expect(() => {
      for (let i = 0; i < 3; i++) alerts.raise('DATABASE_ERROR', { message: 'Database writes are failing' });
    }).not.toThrow();
    await alerts.flush();
    expect(alerts.stats()).toMatchObject({ databaseAvailable: false, queued: 3, stored: 0 });
    const listed = await alerts.list();
    expect(listed.source).toBe('memory');
    expect(listed.alerts).toEqual([
      expect.objectContaining({ code: 'PRODUCTION_AI_DATABASE_ERROR', count: 3, companyId: null }),
    ]);
    // One warning for the outage, not one per failed write.
    expect(lines.filter((l) => l['msg'] === 'alerts: database write failed; retrying later')).toHaveLength(1);

    down = false;
    await vi.waitFor(() => expect(alerts.stats().queued).toBe(0), { timeout: 2000 });
    expect(alerts.stats()).toMatchObject({ databaseAvailable: true, stored: 3 });
    expect((await storedRows()).map((r) => r.count)).toEqual([3]);
    expect(lines.some((l) => l['msg'] === 'alerts: database available again')).toBe(true);
  });

  test('a full queue during an outage drops the oldest, and says so once', async () => {
    const { log, lines } = capturedLog();
    const alerts = alertsWith({ db: flakyDb(t.db, () => true), log, maxQueue: 3, retryMinMs: 10_000 });
    for (let i = 0; i < 5; i++)
      alerts.raise('ROUTING_ERROR', { companyId: 'acme', message: 'Routing failed' });
    await alerts.flush();
    expect(alerts.stats()).toMatchObject({ queued: 3, dropped: 2 });
    expect(lines.filter((l) => String(l['msg']).startsWith('alerts: queue full'))).toHaveLength(1);
  });

  test('an alert the database refuses is dropped and the rest still written', async () => {
    const { log } = capturedLog();
    let calls = 0;
    const refusing: Db = {
      ...t.db,
      query: async (sql: string, params?: readonly unknown[]) => {
        calls++;
        if (calls === 1) throw new DbError('ERR_DB_REJECTED', 'value too long', { sqlState: '22001' });
        return t.db.query(sql, params);
      },
    };
    const alerts = alertsWith({ db: refusing, log });
    alerts.raise('BUDGET_EXCEEDED', { companyId: 'acme', message: 'The monthly Tier 3 budget is spent' });
    alerts.raise('BUDGET_EXCEEDED', { companyId: 'globex', message: 'The monthly Tier 3 budget is spent' });
    await alerts.flush();
    expect(alerts.stats()).toMatchObject({ dropped: 1, stored: 1, queued: 0 });
    expect((await storedRows()).map((r) => r.company_id)).toEqual(['globex']);
  });

  test('never throws, whatever it is given', async () => {
    const { log, lines } = capturedLog();
    const alerts = alertsWith({ db: t.db, log });
    expect(() => alerts.raise('NOT_A_CODE' as AlertCode, { message: 'x' })).not.toThrow();
    expect(() =>
      alerts.raise('LLM_SLOW', {
        message: undefined as unknown as string,
        details: 'text' as unknown as AlertFields['details'],
      }),
    ).not.toThrow();
    await alerts.flush();
    expect(lines.some((l) => l['msg'] === 'alerts: unknown alert code ignored')).toBe(true);
  });
});

describe('memory mode (no database)', () => {
  test('list answers with aggregated alerts, filtered like the table', async () => {
    const c = clock();
    const alerts = alertsWith({ db: null, log: pino({ level: 'silent' }), now: c.now, windowMs: 60_000 });
    alerts.raise('FALLBACK_USED', { companyId: 'acme', message: 'A fallback line answered the caller' });
    c.advance(10_000);
    alerts.raise('FALLBACK_USED', { companyId: 'acme', message: 'A fallback line answered the caller' });
    c.advance(10_000);
    alerts.raise('LLM_DOWN', { message: 'The LLM provider is not answering' });
    c.advance(10_000);
    alerts.raise('BUDGET_EXCEEDED', { companyId: 'globex', message: 'Budget spent' });
    c.advance(120_000);
    alerts.raise('FALLBACK_USED', { companyId: 'acme', message: 'A fallback line answered the caller' });
    await alerts.flush();

    const all = await alerts.list();
    expect(all.source).toBe('memory');
    expect(all.alerts.map((a) => [a.code, a.companyId, a.count])).toEqual([
      ['PRODUCTION_AI_FALLBACK_USED', 'acme', 1],
      ['PRODUCTION_AI_BUDGET_EXCEEDED', 'globex', 1],
      ['PRODUCTION_AI_LLM_DOWN', null, 1],
      ['PRODUCTION_AI_FALLBACK_USED', 'acme', 2],
    ]);
    const first = all.alerts[3]!;
    expect(first.lastAt).toBe(new Date(Date.UTC(2026, 10, 4, 8, 0, 10)).toISOString());
    expect(first.firstAt).toBe(new Date(Date.UTC(2026, 10, 4, 8, 0, 0)).toISOString());
    // A company sees its own and the engine-wide alerts.
    expect((await alerts.list({ companyId: 'acme' })).alerts.map((a) => a.companyId)).toEqual([
      'acme',
      null,
      'acme',
    ]);
    expect((await alerts.list({ since: new Date(Date.UTC(2026, 10, 4, 8, 0, 25)) })).alerts).toHaveLength(2);
    expect((await alerts.list({ limit: 1 })).alerts).toHaveLength(1);
  });

  test('memory is bounded: the alerts with the oldest activity go first', async () => {
    const c = clock();
    const alerts = alertsWith({ db: null, log: pino({ level: 'silent' }), now: c.now, memoryCapacity: 3 });
    for (const id of ['a', 'b', 'c', 'd', 'e']) {
      alerts.raise('COMPANY_NOT_FOUND', { companyId: id, message: 'No company owns the called number' });
      c.advance(1000);
    }
    const { alerts: kept } = await alerts.list();
    expect(kept.map((a) => a.companyId)).toEqual(['e', 'd', 'c']);
  });
});

describe('webhook', () => {
  let server: Server;
  let url: string;
  let received: Array<{ headers: IncomingHttpHeaders; body: unknown }>;
  let respond: (res: ServerResponse) => void;

  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        received.push({ headers: req.headers, body: JSON.parse(body) as unknown });
        respond(res);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/secret-token`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  beforeEach(() => {
    received = [];
    respond = (res) => res.writeHead(204).end();
  });

  test('one POST per code and company per window, with the payload', async () => {
    const c = clock();
    const alerts = alertsWith({ db: null, log: pino({ level: 'silent' }), webhookUrl: url, now: c.now });
    for (let i = 0; i < 5; i++) {
      alerts.raise('BUDGET_EXCEEDED', {
        companyId: 'acme',
        message: 'The monthly Tier 3 budget is spent',
        details: { budget: 'monthly', callbackNumber: '+15551234567' },
      });
    }
    alerts.raise('BUDGET_EXCEEDED', { companyId: 'globex', message: 'The monthly Tier 3 budget is spent' });
    await alerts.flush();
    expect(received).toHaveLength(2);
    expect(received[0]!.headers['content-type']).toBe('application/json');
    expect(received[0]!.body).toEqual({
      source: 'switchboard',
      code: 'PRODUCTION_AI_BUDGET_EXCEEDED',
      alert: 'BUDGET_EXCEEDED',
      severity: 'critical',
      companyId: 'acme',
      message: 'The monthly Tier 3 budget is spent',
      details: { budget: 'monthly' },
      at: c.now().toISOString(),
      windowMs: 300_000,
    });
    expect(alerts.stats()).toMatchObject({ webhookSent: 2, webhookFailed: 0 });

    c.advance(300_000);
    alerts.raise('BUDGET_EXCEEDED', { companyId: 'acme', message: 'The monthly Tier 3 budget is spent' });
    await alerts.flush();
    expect(received).toHaveLength(3);
  });

  test('a refusing or hanging receiver: no throw, counted, logged without the URL', async () => {
    const { log, lines, raw } = capturedLog();
    respond = (res) => res.writeHead(500).end('nope');
    const alerts = alertsWith({ db: null, log, webhookUrl: url, webhookTimeoutMs: 200 });
    alerts.raise('LLM_DOWN', { message: 'The LLM provider is not answering' });
    await alerts.flush();
    expect(lines.find((l) => l['msg'] === 'alert webhook refused the notification')).toMatchObject({
      alert: 'LLM_DOWN',
      status: 500,
    });

    respond = () => undefined; // never answers
    const started = Date.now();
    alerts.raise('ROUTING_ERROR', { companyId: 'acme', message: 'Routing failed' });
    await alerts.flush();
    expect(Date.now() - started).toBeLessThan(2000);
    expect(alerts.stats().webhookFailed).toBe(2);
    expect(lines.find((l) => l['msg'] === 'alert webhook failed')).toMatchObject({ alert: 'ROUTING_ERROR' });
    expect(raw()).not.toContain('secret-token');
  });

  test('receiver down: no throw, failure logged, later alerts still stored', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));

    const { log, lines } = capturedLog();
    const alerts = alertsWith({ db: t.db, log, webhookUrl: `http://127.0.0.1:${port}/hook` });
    expect(() => alerts.raise('DATABASE_ERROR', { message: 'Database writes are failing' })).not.toThrow();
    await alerts.flush();
    expect(alerts.stats()).toMatchObject({ webhookFailed: 1, stored: 1 });
    expect(lines.find((l) => l['msg'] === 'alert webhook failed')).toMatchObject({
      err: { code: 'ECONNREFUSED' },
    });
  });
});

describe('database health watch', () => {
  test('raises DATABASE_ERROR once per outage per source', () => {
    const raise = vi.fn();
    const health = { ledger: true, records: true };
    const watch = watchDatabaseHealth({
      alerts: { raise },
      sources: {
        'cost-ledger': () => ({ databaseAvailable: health.ledger }),
        'call-records': () => ({ databaseAvailable: health.records }),
      },
      intervalMs: 60_000,
    });
    watch.check();
    expect(raise).not.toHaveBeenCalled();
    health.ledger = false;
    watch.check();
    watch.check();
    expect(raise).toHaveBeenCalledTimes(1);
    expect(raise).toHaveBeenCalledWith(
      'DATABASE_ERROR',
      expect.objectContaining({ details: { source: 'cost-ledger' } }),
    );
    health.records = false;
    watch.check();
    health.ledger = true;
    watch.check();
    health.ledger = false;
    watch.check();
    expect(raise).toHaveBeenCalledTimes(3);
    watch.close();
  });
});
