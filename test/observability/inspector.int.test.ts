/**
 * The inspector's routes on the real server: who may use them, the machine and call APIs, and the
 * live stream that attaches inspection to a call only while it is open.
 */
import { afterEach, describe, expect, test } from 'vitest';
import { toObserver } from 'xstate';
import type { AnyActorRef, InspectionEvent, Observer } from 'xstate';
import { callMachine } from '../../machines/callMachine.ts';
import { TestCall } from '../../src/cli/call.ts';
import { createAdminAuth, SESSION_COOKIE, SESSION_MS } from '../../src/server/adminAuth.ts';
import { allStates, describeMachine } from '../../src/observability/inspect/statechart.ts';
import type { MachineDescription } from '../../src/observability/inspect/statechart.ts';
import { startTestApp } from '../support/testApp.ts';
import type { TestApp } from '../support/testApp.ts';

const TOKEN = 'inspector-test-admin-token';
const DEMO = '+15550100100';
const bearer = { authorization: `Bearer ${TOKEN}` };

let app: TestApp | null = null;
afterEach(async () => {
  await app?.stop();
  app = null;
});

async function login(url: string, token: string) {
  return fetch(`${url}/inspect/login`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token }),
  });
}

async function callNow(): Promise<{ call: TestCall; id: string }> {
  const call = new TestCall({ url: app!.server.url, to: DEMO, from: '+15555550123' });
  await call.connect();
  const session = [...app!.engine.sessions()].at(-1)!;
  return { call, id: session.id };
}

/** Server-sent events from a fetch body, as they arrive. */
function sseReader(body: ReadableStream<Uint8Array>) {
  const events: { event: string; data: unknown }[] = [];
  let buffer = '';
  let done = false;
  const decoder = new TextDecoder();
  const pump = (async () => {
    const reader = body.getReader();
    try {
      for (;;) {
        const { value, done: end } = await reader.read();
        if (end) break;
        buffer += decoder.decode(value, { stream: true });
        let cut: number;
        while ((cut = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event !== undefined && data !== undefined)
            events.push({ event, data: JSON.parse(data) as unknown });
        }
      }
    } catch {
      // aborted
    }
    done = true;
  })();
  return {
    events,
    get done() {
      return done;
    },
    finished: pump,
  };
}

/** Counts inspection observers attached to an actor's system and the events delivered to them. */
function countInspection(actor: AnyActorRef) {
  const system = actor.system as { inspect(o: Observer<InspectionEvent>): { unsubscribe(): void } };
  const original = system.inspect.bind(system);
  const counts = { observers: 0, delivered: 0 };
  system.inspect = (observer) => {
    const target = toObserver(observer);
    counts.observers++;
    const sub = original({
      next: (e) => {
        counts.delivered++;
        target.next?.(e);
      },
    });
    return {
      unsubscribe() {
        counts.observers--;
        sub.unsubscribe();
      },
    };
  };
  return counts;
}

describe('who may use the inspector', () => {
  test('with no ADMIN_TOKEN the inspector is off: 404 everywhere, nothing recorded', async () => {
    app = await startTestApp();
    expect(app.inspector).toBeUndefined();
    for (const path of [
      '/inspect',
      '/inspect/api/calls',
      '/inspect/api/machine',
      '/inspect/assets/inspector.js',
    ]) {
      const res = await fetch(`${app.server.url}${path}`, { headers: bearer });
      expect(res.status, path).toBe(404);
    }
    expect((await login(app.server.url, TOKEN)).status).toBe(404);
  });

  test('refuses requests without the token or with a wrong one; accepts the bearer token', async () => {
    app = await startTestApp({ env: { ADMIN_TOKEN: TOKEN } });
    const url = `${app.server.url}/inspect/api/calls`;
    const without = await fetch(url);
    expect(without.status).toBe(401);
    expect(without.headers.get('www-authenticate')).toMatch(/^Bearer/);
    for (const authorization of [
      `Bearer ${TOKEN}x`,
      `Bearer ${TOKEN.slice(0, -1)}`,
      'Bearer ',
      TOKEN,
      `Basic ${TOKEN}`,
    ]) {
      expect((await fetch(url, { headers: { authorization } })).status, authorization).toBe(401);
    }
    expect((await fetch(`${app.server.url}/inspect/api/calls/x/stream`)).status).toBe(401);
    const ok = await fetch(url, { headers: bearer });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ live: [], recent: [] });
    expect((await fetch(url, { headers: { authorization: `bearer ${TOKEN}` } })).status).toBe(200);

    // The page: a sign-in form when signed out, locked down by its CSP.
    const page = await fetch(`${app.server.url}/inspect`);
    expect(page.status).toBe(401);
    expect(await page.text()).toContain('action="/inspect/login"');
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
    const signedIn = await fetch(`${app.server.url}/inspect`, { headers: bearer });
    expect(signedIn.status).toBe(200);
    expect(await signedIn.text()).toContain('/inspect/assets/inspector.js');
    // Static code is public; anything else under /inspect is not found.
    expect(
      (await fetch(`${app.server.url}/inspect/assets/statechart.js`)).headers.get('content-type'),
    ).toMatch(/^text\/javascript/);
    expect((await fetch(`${app.server.url}/inspect/assets/../../app.ts`)).status).toBe(404);
    expect((await fetch(`${app.server.url}/inspect/assets/index.html`)).status).toBe(404);
  });

  test('a browser signs in once: an HttpOnly SameSite=Strict cookie holding an HMAC, never the token', async () => {
    app = await startTestApp({ env: { ADMIN_TOKEN: TOKEN } });
    const wrong = await login(app.server.url, 'not-the-admin-token');
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get('set-cookie')).toBeNull();

    const right = await login(app.server.url, TOKEN);
    expect(right.status).toBe(303);
    expect(right.headers.get('location')).toBe('/inspect');
    const setCookie = right.headers.get('set-cookie')!;
    expect(setCookie).toMatch(new RegExp(`^${SESSION_COOKIE}=\\d+\\.[A-Za-z0-9_-]{43};`));
    expect(setCookie).toContain('HttpOnly');
    expect(setCookie).toContain('SameSite=Strict');
    expect(setCookie).toContain('Path=/inspect');
    expect(setCookie).not.toContain(TOKEN);
    const cookie = setCookie.split(';')[0]!;

    const api = `${app.server.url}/inspect/api/machine`;
    expect((await fetch(api, { headers: { cookie } })).status).toBe(200);
    const tampered = cookie.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A'));
    expect((await fetch(api, { headers: { cookie: tampered } })).status).toBe(401);
    const extended = cookie.replace(/=\d+\./, `=${Math.floor(Date.now() / 1000) + 10 * 365 * 86400}.`);
    expect((await fetch(api, { headers: { cookie: extended } })).status).toBe(401);

    const out = await fetch(`${app.server.url}/inspect/logout`, {
      method: 'POST',
      redirect: 'manual',
      headers: { cookie },
    });
    expect(out.status).toBe(303);
    expect(out.headers.get('set-cookie')).toContain('Max-Age=0');
  });

  test('session cookies expire, and another token signs every browser out', () => {
    let now = 1_800_000_000_000;
    const auth = createAdminAuth(TOKEN, () => now);
    const cookie = auth.sessionCookie(false).split(';')[0]!;
    const req = (c: string) => ({ headers: { cookie: c } }) as never;
    expect(auth.allows(req(cookie))).toBe(true);
    expect(createAdminAuth(`${TOKEN}-rotated`, () => now).allows(req(cookie))).toBe(false);
    now += SESSION_MS + 1000;
    expect(auth.allows(req(cookie))).toBe(false);
    expect(auth.sessionCookie(true)).toContain('; Secure');
  });

  test('repeated failed sign-ins from one address are refused for a while', async () => {
    app = await startTestApp({ env: { ADMIN_TOKEN: TOKEN } });
    for (let i = 0; i < 10; i++) expect((await login(app.server.url, `wrong-${i}`)).status).toBe(401);
    expect((await login(app.server.url, TOKEN)).status).toBe(429);
    expect((await fetch(`${app.server.url}/inspect/api/calls`, { headers: bearer })).status).toBe(200);
  });
});

describe('the inspector API', () => {
  test('serves the machine generated from the engine', async () => {
    app = await startTestApp({ env: { ADMIN_TOKEN: TOKEN } });
    const res = await fetch(`${app.server.url}/inspect/api/machine`, { headers: bearer });
    const served = (await res.json()) as MachineDescription;
    expect(served.machineId).toBe('call');
    expect(allStates(served.root).map((s) => s.id)).toEqual(
      allStates(describeMachine(callMachine).root).map((s) => s.id),
    );
  });

  test('streams a live call: its history, each step with its event, turns; detaches when the viewer leaves', async () => {
    app = await startTestApp({ env: { ADMIN_TOKEN: TOKEN } });
    const { call, id } = await callNow();
    const counts = countInspection(app.engine.session(id)!.actor);
    const hub = app.inspector!.hub;

    const listed = (await (
      await fetch(`${app.server.url}/inspect/api/calls`, { headers: bearer })
    ).json()) as {
      live: { id: string; live: boolean }[];
    };
    expect(listed.live).toEqual([expect.objectContaining({ id, live: true })]);

    const abort = new AbortController();
    const res = await fetch(`${app.server.url}/inspect/api/calls/${id}/stream`, {
      headers: bearer,
      signal: abort.signal,
    });
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const sse = sseReader(res.body!);
    await expect.poll(() => sse.events.length).toBeGreaterThan(0);
    const hello = sse.events[0]!;
    expect(hello.event).toBe('hello');
    expect(hello.data).toMatchObject({ call: { id, live: true }, turns: [] });
    expect(hub.isAttached(id)).toBe(true);
    expect(counts.observers).toBe(1);

    await call.say('What are your hours?');
    await expect.poll(() => sse.events.some((e) => e.event === 'turn')).toBe(true);
    const steps = sse.events
      .filter((e) => e.event === 'step')
      .map((e) => (e.data as { step: { event: string; label: string; inferred: boolean } }).step);
    expect(steps.map((s) => s.event)).toContain('caller.transcriptFinal');
    expect(steps.map((s) => s.label)).toEqual(
      expect.arrayContaining(['caller.transcriptFinal', 'done tier1', 'done']),
    );
    expect(steps.every((s) => !s.inferred)).toBe(true);
    expect(sse.events.some((e) => e.event === 'context')).toBe(true);
    const turn = sse.events.find((e) => e.event === 'turn')!.data as {
      record: { scenarioId: string };
      latencyMs: number;
    };
    expect(turn.record.scenarioId).toBe('hours-open');

    // The viewer leaves: inspection is detached and XState stops producing inspection events.
    abort.abort();
    await expect.poll(() => hub.attached).toBe(0);
    expect(counts.observers).toBe(0);
    const delivered = counts.delivered;
    await call.say('Do you have a warranty on repairs?');
    expect(counts.delivered).toBe(delivered);
    await call.close();
  });

  test('a stream ends with the call, and the ended call can then be replayed from its recording', async () => {
    app = await startTestApp({ env: { ADMIN_TOKEN: TOKEN } });
    const { call, id } = await callNow();
    await call.say('What are your hours?');
    const res = await fetch(`${app.server.url}/inspect/api/calls/${id}/stream`, { headers: bearer });
    const sse = sseReader(res.body!);
    await expect.poll(() => sse.events.length).toBeGreaterThan(0);
    await call.close();
    await sse.finished;
    expect(sse.events.at(-1)).toMatchObject({
      event: 'ended',
      data: { call: { id, live: false, endReason: 'stream-stopped' } },
    });
    expect(app.inspector!.hub.attached).toBe(0);

    const listed = (await (
      await fetch(`${app.server.url}/inspect/api/calls`, { headers: bearer })
    ).json()) as {
      live: unknown[];
      recent: { id: string }[];
    };
    expect(listed.live).toEqual([]);
    expect(listed.recent.map((c) => c.id)).toEqual([id]);

    const replay = (await (
      await fetch(`${app.server.url}/inspect/api/calls/${id}`, { headers: bearer })
    ).json()) as {
      call: { live: boolean; state: string[] };
      steps: { label: string; active: string[] }[];
      turns: { turn: number }[];
    };
    expect(replay.call).toMatchObject({ live: false, state: ['call.ended'] });
    expect(replay.steps[0]!.active).toContain('call.awaitingStart');
    expect(replay.steps.map((s) => s.label)).toContain('caller.transcriptFinal');
    expect(replay.turns.map((t) => t.turn)).toEqual([1]);

    // An ended call's stream says hello with the recording and ends at once.
    const again = sseReader(
      (await fetch(`${app.server.url}/inspect/api/calls/${id}/stream`, { headers: bearer })).body!,
    );
    await again.finished;
    expect(again.events.map((e) => e.event)).toEqual(['hello']);
    expect(
      (await fetch(`${app.server.url}/inspect/api/calls/unknown-call`, { headers: bearer })).status,
    ).toBe(404);
  });
});
