/**
 * The optional @statelyai/inspect bridge: off unless STATELY_INSPECT_URL is set; then every call's
 * events reach a local relay in Stately's protocol, without what the caller said.
 */
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, test } from 'vitest';
import { WebSocketServer } from 'ws';
import { TestCall } from '../../src/cli/call.ts';
import { loadEnv } from '../../src/config/env.ts';
import { ConfigError } from '../../src/errors.ts';
import { startTestApp } from '../support/testApp.ts';
import type { TestApp } from '../support/testApp.ts';

const UTTERANCE = 'Hi, my name is Dana Whitfield and my kitchen sink is clogged';

let app: TestApp | null = null;
let relay: WebSocketServer | null = null;
afterEach(async () => {
  await app?.stop();
  app = null;
  await new Promise<void>((resolve) => (relay ? relay.close(() => resolve()) : resolve()));
  relay = null;
});

/** A stand-in for `createInspectorServer()`: a WebSocket server that keeps what it receives. */
async function startRelay(): Promise<{ url: string; messages: Record<string, unknown>[]; raw: string[] }> {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  relay = server;
  await new Promise((resolve) => server.once('listening', resolve));
  const messages: Record<string, unknown>[] = [];
  const raw: string[] = [];
  server.on('connection', (ws) =>
    ws.on('message', (data) => {
      const text = (data as Buffer).toString('utf8');
      raw.push(text);
      messages.push(JSON.parse(text) as Record<string, unknown>);
    }),
  );
  return { url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}`, messages, raw };
}

describe('the @statelyai/inspect bridge', () => {
  test('is off by default and takes only a ws:// or wss:// URL', () => {
    expect(loadEnv({}).statelyInspectUrl).toBeUndefined();
    expect(loadEnv({ STATELY_INSPECT_URL: 'ws://127.0.0.1:8080' }).statelyInspectUrl).toBe(
      'ws://127.0.0.1:8080',
    );
    expect(() => loadEnv({ STATELY_INSPECT_URL: 'https://stately.ai/inspect' })).toThrow(ConfigError);
  });

  test("sends each call's actor, events and snapshots in Stately's protocol, without the caller's words", async () => {
    const { url, messages, raw } = await startRelay();
    app = await startTestApp({ env: { STATELY_INSPECT_URL: url } });
    const call = new TestCall({ url: app.server.url, to: '+15550100100', from: '+15555550123' });
    await call.connect();
    await call.say(UTTERANCE);
    await expect
      .poll(() =>
        messages.some(
          (m) =>
            m['type'] === '@xstate.event' &&
            (m['event'] as { type: string }).type === 'caller.transcriptFinal',
        ),
      )
      .toBe(true);
    await call.close();

    const actor = messages.find((m) => m['type'] === '@xstate.actor')!;
    expect(actor['name']).toBe('call');
    expect(actor['definition']).toEqual(expect.stringContaining('"awaitingStart"'));
    expect(actor['definition']).toEqual(expect.stringContaining('"adoptingWarmup"'));
    const root = actor['sessionId'];
    // Only the call actor: the actors it invokes (their inputs and outputs carry what was said) are not sent.
    expect(new Set(messages.map((m) => m['sessionId']))).toEqual(new Set([root]));
    const snapshot = messages.filter((m) => m['type'] === '@xstate.snapshot').at(-1)!;
    const slots: unknown = expect.arrayContaining(['callerName']);
    expect(snapshot['snapshot']).toMatchObject({ context: { turn: 1, slots } });
    for (const text of raw) {
      expect(text).not.toContain('Dana');
      expect(text).not.toContain('kitchen sink');
    }
  });

  test('an unreachable relay neither fails calls nor keeps the engine from stopping', async () => {
    app = await startTestApp({ env: { STATELY_INSPECT_URL: 'ws://127.0.0.1:9' } });
    const call = new TestCall({ url: app.server.url, to: '+15550100100', from: '+15555550123' });
    await call.connect();
    const turn = await call.say('What are your hours?');
    expect(turn.scenarioId).toBe('hours-open');
    await call.close();
  });
});
