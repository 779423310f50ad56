/**
 * A fake of Twilio's REST API for the one resource the engine changes: a live call,
 * `POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json` with a form-encoded body (`Twiml`,
 * `Url` or `Status`). It checks HTTP Basic auth against one account, records every request, answers
 * with a call resource shaped like Twilio's, and can be scripted to fail or to be slow.
 *
 * Call state is kept per CallSid: every call starts `in-progress`; `Status=completed` ends it, and a
 * later update of an ended call is refused with Twilio's 21220 ("Call is not in-progress").
 * Error codes 20003 (bad credentials), 20404 and 21220 are Twilio's; the 400s for a malformed update
 * use 20001 as a stand-in.
 */
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

const API_VERSION = '2010-04-01';
const CALL_PATH = /^\/2010-04-01\/Accounts\/(AC[0-9a-fA-F]{32})\/Calls\/(CA[0-9a-fA-F]{32})\.json$/;

export interface FakeTwilioRequest {
  readonly index: number;
  readonly method: string;
  /** Path and query as received. */
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  /** True when Basic auth named this fake's account and token. */
  readonly authorized: boolean;
  /** The form body, decoded. */
  readonly form: Readonly<Record<string, string>>;
  /** From the path; null when the path is not a call resource. */
  readonly accountSid: string | null;
  readonly callSid: string | null;
  /** HTTP status the fake answered with; null while it has not answered. */
  readonly answeredStatus: number | null;
  /** True when the client closed the connection before the answer was sent. */
  readonly clientWentAway: boolean;
}

/** Twilio's JSON error body: `{code, message, more_info, status}`. */
export interface FakeTwilioErrorReply {
  readonly type: 'error';
  readonly status: number;
  /** Twilio error code; default 20404 for 404, 20500 otherwise. */
  readonly code?: number;
  readonly message?: string;
  readonly delayMs?: number;
}

/** Answer normally after `delayMs`. */
export interface FakeTwilioSlowReply {
  readonly type: 'slow';
  readonly delayMs: number;
}

/**
 * Answer normally, but send the body a byte at a time, `intervalMs` apart: a server that is alive
 * (the socket never goes idle) and still too slow.
 */
export interface FakeTwilioTrickleReply {
  readonly type: 'trickle';
  readonly intervalMs: number;
}

/** Never answer; the connection stays open until the client gives up or the fake closes. */
export interface FakeTwilioHangReply {
  readonly type: 'hang';
}

export type FakeTwilioReply =
  FakeTwilioErrorReply | FakeTwilioSlowReply | FakeTwilioTrickleReply | FakeTwilioHangReply;

export interface FakeTwilioApi {
  /** Pass as the API base URL (`http://127.0.0.1:{port}`). */
  readonly baseUrl: string;
  readonly accountSid: string;
  readonly authToken: string;
  readonly requests: readonly FakeTwilioRequest[];
  /** The status of a call the fake has seen: 'in-progress' or 'completed'; undefined if unseen. */
  callStatus(callSid: string): string | undefined;
  /** Replies for the next authorized call updates, in order; afterwards they succeed again. */
  script(...replies: FakeTwilioReply[]): void;
  close(): Promise<void>;
}

export const FAKE_ACCOUNT_SID = `AC${'1'.repeat(32)}`;
export const FAKE_AUTH_TOKEN = 'fake-twilio-auth-token';

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const json = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(json),
  });
  res.end(json);
}

function twilioError(res: ServerResponse, status: number, code: number, message: string): void {
  sendJson(res, status, { code, message, more_info: `https://www.twilio.com/docs/errors/${code}`, status });
}

function basicAuth(header: string | undefined): { user: string; password: string } | null {
  if (header === undefined || !header.startsWith('Basic ')) return null;
  const decoded = Buffer.from(header.slice(6), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon < 0 ? null : { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** A call resource as Twilio returns it (the fields the engine could look at, with plausible values). */
function callResource(accountSid: string, callSid: string, status: string): Record<string, unknown> {
  const now = new Date().toUTCString().replace('GMT', '+0000');
  const uri = `/${API_VERSION}/Accounts/${accountSid}/Calls/${callSid}`;
  return {
    sid: callSid,
    account_sid: accountSid,
    parent_call_sid: null,
    date_created: now,
    date_updated: now,
    start_time: now,
    end_time: status === 'completed' ? now : null,
    duration: status === 'completed' ? '1' : null,
    status,
    direction: 'inbound',
    answered_by: null,
    api_version: API_VERSION,
    forwarded_from: null,
    caller_name: null,
    from: '+15550000001',
    from_formatted: '(555) 000-0001',
    to: '+15550000002',
    to_formatted: '(555) 000-0002',
    phone_number_sid: `PN${'0'.repeat(32)}`,
    price: null,
    price_unit: 'USD',
    group_sid: null,
    queue_time: '0',
    trunk_sid: null,
    uri: `${uri}.json`,
    subresource_uris: {
      notifications: `${uri}/Notifications.json`,
      recordings: `${uri}/Recordings.json`,
      events: `${uri}/Events.json`,
    },
  };
}

/** Starts the fake on 127.0.0.1 (random port). */
export async function startFakeTwilioApi(
  options: { accountSid?: string; authToken?: string } = {},
): Promise<FakeTwilioApi> {
  const accountSid = options.accountSid ?? FAKE_ACCOUNT_SID;
  const authToken = options.authToken ?? FAKE_AUTH_TOKEN;
  const requests: Mutable<FakeTwilioRequest>[] = [];
  const queue: FakeTwilioReply[] = [];
  const calls = new Map<string, string>();

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const url = req.url ?? '/';
      const match = CALL_PATH.exec(url.split('?')[0] ?? '');
      const credentials = basicAuth(req.headers.authorization);
      const record: Mutable<FakeTwilioRequest> = {
        index: requests.length,
        method: req.method ?? '',
        url,
        headers: req.headers,
        authorized: credentials?.user === accountSid && credentials.password === authToken,
        form: Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString('utf8'))),
        accountSid: match?.[1] ?? null,
        callSid: match?.[2] ?? null,
        answeredStatus: null,
        clientWentAway: false,
      };
      requests.push(record);
      res.on('close', () => {
        if (!res.writableFinished) record.clientWentAway = true;
      });
      void answer(record, res);
    });
  });

  async function answer(record: Mutable<FakeTwilioRequest>, res: ServerResponse): Promise<void> {
    const reply = (status: number, send: () => void) => {
      if (res.destroyed) return;
      record.answeredStatus = status;
      send();
    };
    if (!record.authorized || (record.accountSid !== null && record.accountSid !== accountSid))
      return reply(401, () => twilioError(res, 401, 20003, 'Authenticate'));
    if (record.method !== 'POST' || record.callSid === null || record.accountSid === null)
      return reply(404, () =>
        twilioError(res, 404, 20404, `The requested resource ${record.url} was not found`),
      );
    const scripted = queue.shift();
    if (scripted?.type === 'hang') return;
    if (scripted?.type === 'slow' || scripted?.type === 'error') await sleep(scripted.delayMs ?? 0);
    if (scripted?.type === 'error') {
      const code = scripted.code ?? (scripted.status === 404 ? 20404 : 20500);
      const message =
        scripted.message ??
        (scripted.status === 404
          ? `The requested resource ${record.url} was not found`
          : 'Internal Server Error');
      return reply(scripted.status, () => twilioError(res, scripted.status, code, message));
    }

    const callSid = record.callSid;
    const { Twiml: twiml, Url: url, Status: status } = record.form;
    if (twiml !== undefined && url !== undefined)
      return reply(400, () => twilioError(res, 400, 20001, 'Twiml and Url are mutually exclusive'));
    if (twiml === undefined && url === undefined && status === undefined)
      return reply(400, () => twilioError(res, 400, 20001, 'No parameters to update'));
    if (status !== undefined && status !== 'completed' && status !== 'canceled')
      return reply(400, () => twilioError(res, 400, 20001, `Invalid Status: ${status}`));
    const current = calls.get(callSid) ?? 'in-progress';
    if (current !== 'in-progress')
      return reply(400, () => twilioError(res, 400, 21220, 'Call is not in-progress. Cannot redirect.'));
    const next = status === undefined ? current : 'completed';
    calls.set(callSid, next);
    const resource = callResource(accountSid, callSid, next);
    if (scripted?.type === 'trickle') return trickle(record, res, resource, scripted.intervalMs);
    return reply(200, () => sendJson(res, 200, resource));
  }

  async function trickle(
    record: Mutable<FakeTwilioRequest>,
    res: ServerResponse,
    body: unknown,
    intervalMs: number,
  ): Promise<void> {
    const bytes = Buffer.from(JSON.stringify(body));
    record.answeredStatus = 200;
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': bytes.length });
    for (let i = 0; i < bytes.length && !res.destroyed; i++) {
      res.write(bytes.subarray(i, i + 1));
      await sleep(intervalMs);
    }
    if (!res.destroyed) res.end();
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    accountSid,
    authToken,
    requests,
    callStatus: (callSid) => calls.get(callSid),
    script(...replies) {
      queue.push(...replies);
    },
    close() {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
