/**
 * Transfer and hang-up through the real twilio package against a fake of Twilio's REST API: the
 * wire request (path, Basic auth, form fields, TwiML), Twilio's error answers, the deadline, and
 * input refused before any request is made.
 */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { createTwilioCallControl, TwilioApiError } from '../../src/twilio/callControl.ts';
import type { CallControl } from '../../src/twilio/callControl.ts';
import { startFakeTwilioApi } from '../fakes/fakeTwilioApi.ts';
import type { FakeTwilioApi } from '../fakes/fakeTwilioApi.ts';
import { errorOf } from '../support/errorOf.ts';

const CALL_SID = `CA${'ab'.repeat(16)}`;
let n = 0;
/** A fresh call per test: the fake remembers calls it has ended. */
const nextCallSid = () => `CA${(++n).toString(16).padStart(32, '0')}`;

let api: FakeTwilioApi;
let logLines: string[];
const log = pino(
  { level: 'debug' },
  new Writable({
    write(chunk: Buffer, _encoding, done) {
      logLines.push(chunk.toString('utf8'));
      done();
    },
  }),
);

beforeAll(async () => {
  api = await startFakeTwilioApi();
});
afterAll(() => api.close());
beforeEach(() => {
  logLines = [];
});

function control(overrides: { authToken?: string; timeoutMs?: number } = {}): CallControl {
  return createTwilioCallControl({
    accountSid: api.accountSid,
    authToken: overrides.authToken ?? api.authToken,
    apiBaseUrl: api.baseUrl,
    ...(overrides.timeoutMs === undefined ? {} : { timeoutMs: overrides.timeoutMs }),
    log,
  });
}

const rejection = (promise: Promise<unknown>) => errorOf(promise, TwilioApiError);

describe('createTwilioCallControl against a fake Twilio REST API', () => {
  test('transfer posts the Dial TwiML to the call resource, authenticated as the account', async () => {
    const callSid = nextCallSid();
    const before = api.requests.length;
    await control().transfer(callSid, '+15557654321');
    expect(api.requests).toHaveLength(before + 1);
    const req = api.requests[before]!;
    expect(req.method).toBe('POST');
    expect(req.url).toBe(`/2010-04-01/Accounts/${api.accountSid}/Calls/${callSid}.json`);
    expect(req.authorized).toBe(true);
    expect(req.headers['content-type']).toBe('application/x-www-form-urlencoded');
    expect(req.form).toEqual({
      Twiml: '<?xml version="1.0" encoding="UTF-8"?><Response><Dial>+15557654321</Dial></Response>',
    });
    expect(req.answeredStatus).toBe(200);
    expect(api.callStatus(callSid)).toBe('in-progress');
  });

  test('hangup posts Status=completed and nothing else', async () => {
    const callSid = nextCallSid();
    const before = api.requests.length;
    await control().hangup(callSid);
    const req = api.requests[before]!;
    expect(req.url).toBe(`/2010-04-01/Accounts/${api.accountSid}/Calls/${callSid}.json`);
    expect(req.form).toEqual({ Status: 'completed' });
    expect(api.callStatus(callSid)).toBe('completed');
  });

  test('a wrong auth token is refused by the fake and surfaces as HTTP 401, without the token', async () => {
    const err = await rejection(control({ authToken: 'not-the-token' }).hangup(nextCallSid()));
    expect(err.code).toBe('ERR_TWILIO_API');
    expect(err.status).toBe(401);
    expect(err.twilioCode).toBe(20003);
    expect(err.retryable).toBe(false);
    expect(api.requests.at(-1)!.authorized).toBe(false);
    expect(JSON.stringify({ message: err.message, stack: err.stack, cause: err.cause })).not.toContain(
      'not-the-token',
    );
    expect(logLines.join('')).not.toContain('not-the-token');
  });

  test("Twilio's 404 JSON error becomes ERR_TWILIO_API with status and Twilio code", async () => {
    api.script({ type: 'error', status: 404 });
    const err = await rejection(control().transfer(nextCallSid(), '+15557654321'));
    expect(err).toMatchObject({ code: 'ERR_TWILIO_API', status: 404, twilioCode: 20404, retryable: false });
    expect(err.message).toContain('HTTP 404');
    const line = JSON.parse(logLines.at(-1)!) as Record<string, unknown>;
    expect(line).toMatchObject({ msg: 'twilio call update failed', action: 'transfer', status: 404 });
    expect(logLines.join('')).not.toContain('+15557654321');
    expect(logLines.join('')).not.toContain(api.authToken);
  });

  test('a 5xx is retryable; updating a call that has ended is 21220', async () => {
    api.script({ type: 'error', status: 503 });
    expect(await rejection(control().hangup(nextCallSid()))).toMatchObject({ status: 503, retryable: true });

    const callSid = nextCallSid();
    await control().hangup(callSid);
    const err = await rejection(control().transfer(callSid, '+15557654321'));
    expect(err).toMatchObject({ status: 400, twilioCode: 21220 });
  });

  test('a slow answer within the deadline succeeds', async () => {
    api.script({ type: 'slow', delayMs: 100 });
    await control({ timeoutMs: 1000 }).hangup(nextCallSid());
    expect(api.requests.at(-1)!.answeredStatus).toBe(200);
  });

  test('no answer: rejects at the deadline and abandons the request', async () => {
    api.script({ type: 'hang' });
    const t0 = performance.now();
    const err = await rejection(control({ timeoutMs: 200 }).hangup(nextCallSid()));
    const elapsedMs = performance.now() - t0;
    expect(err).toMatchObject({ code: 'ERR_TWILIO_API', status: null, retryable: true });
    expect(err.message).toContain('200 ms');
    expect(elapsedMs).toBeGreaterThanOrEqual(190);
    expect(elapsedMs).toBeLessThan(1000);
    await expect.poll(() => api.requests.at(-1)!.clientWentAway).toBe(true);
  });

  test('an answer that trickles in is abandoned at the deadline (wall clock, not socket idle)', async () => {
    // About 1.5 kB at a byte per 20 ms would take 30 s; the socket is never idle for 200 ms.
    api.script({ type: 'trickle', intervalMs: 20 });
    const t0 = performance.now();
    const err = await rejection(control({ timeoutMs: 200 }).hangup(nextCallSid()));
    expect(err.status).toBe(null);
    expect(performance.now() - t0).toBeLessThan(1000);
    await expect.poll(() => api.requests.at(-1)!.clientWentAway).toBe(true);
  });

  test('nothing listening: ERR_TWILIO_API with no status', async () => {
    const closed = await startFakeTwilioApi();
    await closed.close();
    const cc = createTwilioCallControl({
      accountSid: closed.accountSid,
      authToken: closed.authToken,
      apiBaseUrl: closed.baseUrl,
      log,
    });
    expect(await rejection(cc.hangup(CALL_SID))).toMatchObject({ status: null, retryable: true });
  });

  test('a base URL with a path prefix keeps the prefix', async () => {
    const cc = createTwilioCallControl({
      accountSid: api.accountSid,
      authToken: api.authToken,
      apiBaseUrl: `${api.baseUrl}/proxy/`,
      log,
    });
    // The fake serves no /proxy prefix: the 404 shows where the request went.
    const err = await rejection(cc.hangup(nextCallSid()));
    expect(err.status).toBe(404);
    expect(api.requests.at(-1)!.url).toMatch(/^\/proxy\/2010-04-01\/Accounts\/AC[0-9a-f]{32}\/Calls\/CA/);
  });

  test('a malformed call SID or number is refused before any request', async () => {
    const before = api.requests.length;
    const cc = control();
    await expect(cc.hangup('CA123')).rejects.toMatchObject({ code: 'ERR_TWILIO_CALL_SID_INVALID' });
    await expect(cc.transfer(`PN${'0'.repeat(32)}`, '+15557654321')).rejects.toMatchObject({
      code: 'ERR_TWILIO_CALL_SID_INVALID',
    });
    await expect(cc.transfer(CALL_SID, '5557654321')).rejects.toMatchObject({
      code: 'ERR_TWILIO_NUMBER_INVALID',
    });
    await expect(cc.transfer(CALL_SID, '+1555<Hangup/>')).rejects.toMatchObject({
      code: 'ERR_TWILIO_NUMBER_INVALID',
    });
    expect(api.requests).toHaveLength(before);
  });

  test('bad configuration fails at construction', () => {
    const base = { accountSid: api.accountSid, authToken: api.authToken, log };
    expect(() => createTwilioCallControl({ ...base, accountSid: 'SK123' })).toThrow(/accountSid/);
    expect(() => createTwilioCallControl({ ...base, authToken: '' })).toThrow(/authToken/);
    expect(() => createTwilioCallControl({ ...base, apiBaseUrl: 'ftp://x' })).toThrow(/apiBaseUrl/);
    expect(() => createTwilioCallControl({ ...base, timeoutMs: 0 })).toThrow(/timeoutMs/);
  });
});
