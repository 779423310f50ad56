/**
 * The inspector in a real browser: Debian's Chromium, driven by playwright-core, signs in, picks a
 * live call made with the test client and watches the highlighted state go listening → thinking →
 * speaking as the caller speaks; then steps through the ended call's replay. Screenshots are kept
 * in test-artifacts/ (not committed).
 *
 * Without /usr/bin/chromium the test is skipped locally, with the reason in its name; in CI (CI or
 * SWITCHBOARD_REQUIRE_BROWSER set, as .ci/run does) it fails instead.
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { chromium } from 'playwright-core';
import type { Browser, Page } from 'playwright-core';
import { afterAll, describe, expect, test } from 'vitest';
import { TestCall } from '../../src/cli/call.ts';
import type { Embedder } from '../../src/providers/embeddings/embedder.ts';
import { createLocalEmbedder } from '../../src/routing/localEmbedder.ts';
import { startTestApp } from '../support/testApp.ts';
import type { TestApp } from '../support/testApp.ts';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
];
const ARTIFACTS = path.resolve(import.meta.dirname, '../../test-artifacts');
const ADMIN_TOKEN = 'inspector-browser-test-token';
const DEMO = '+15550100100';
/** Answered by Tier 2, so the turn waits for the (slowed) embedder while thinking. */
const UTTERANCE = 'How much do you charge to come out?';

const available = existsSync(CHROMIUM);
const required = Boolean(process.env['CI']) || process.env['SWITCHBOARD_REQUIRE_BROWSER'] === '1';

/** The local embedder behind a delay that can be switched on once the engine has started. */
function slowableEmbedder(): { embedder: Embedder; slow(ms: number): void } {
  const local = createLocalEmbedder();
  let delayMs = 0;
  return {
    embedder: {
      id: local.id,
      dimensions: local.dimensions,
      async embed(texts, signal) {
        if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
        return local.embed(texts, signal);
      },
    },
    slow: (ms) => {
      delayMs = ms;
    },
  };
}

const stateSelector = (id: string) => `#chart [data-id="${id}"].active`;

let app: TestApp | null = null;
let browser: Browser | null = null;

afterAll(async () => {
  await browser?.close();
  await app?.stop();
});

async function signIn(page: Page, url: string): Promise<void> {
  const signInPage = await page.goto(`${url}/inspect`);
  expect(signInPage?.status()).toBe(401);
  await page.fill('#token', ADMIN_TOKEN);
  await Promise.all([page.waitForURL(`${url}/inspect`), page.click('button[type="submit"]')]);
  await page.waitForSelector('#chart .sc-state[data-id="call"]');
}

describe('the inspector in Chromium', () => {
  if (!available && !required) {
    test.skip(`skipped: ${CHROMIUM} not found (apt-get install chromium; .ci/run installs it)`, () => {});
    return;
  }

  test('follows a live call listening → thinking → speaking, then replays it', async () => {
    if (!available) throw new Error(`${CHROMIUM} is missing, and this run requires the browser test`);
    const embedding = slowableEmbedder();
    app = await startTestApp({
      env: { ADMIN_TOKEN },
      // Long enough to see `speaking`: about 30 ms of playback per character of the reply.
      app: { embedder: embedding.embedder, relay: { playbackMsPerChar: 30 } },
    });
    // launch() gives the browser a fresh temporary profile of its own.
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
    const page = await browser.newPage({ viewport: { width: 1680, height: 1500 } });
    // Anything the page logs as an error (a script error, a CSP refusal) fails the test.
    const problems: string[] = [];
    page.on('pageerror', (err) => problems.push(err.message));
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(message.text());
    });
    const url = app.server.url;
    await signIn(page, url);

    const call = new TestCall({ url, to: DEMO, from: '+15555550123' });
    await call.connect();
    const callId = [...app.engine.sessions()][0]!.id;
    await page.click(`button.call[data-id="${callId}"]`, { timeout: 10_000 });
    await page.waitForSelector('body[data-mode="live"]');
    expect(app.inspector!.hub.isAttached(callId)).toBe(true);

    // Note every configuration the page highlights, in order (browser code: no DOM types here).
    await page.evaluate(`(() => {
      const chart = document.querySelector('#chart');
      const seen = (window.seen = []);
      const note = () => {
        const current = chart.dataset.current ?? '';
        if (seen.at(-1) !== current) seen.push(current);
      };
      note();
      new MutationObserver(note).observe(chart, { attributes: true, attributeFilter: ['data-current'] });
    })()`);

    await page.waitForSelector(stateSelector('call.conversation.listening'), { timeout: 15_000 });
    embedding.slow(1500);
    const turn = call.say(UTTERANCE);
    await page.waitForSelector(stateSelector('call.conversation.thinking'), { timeout: 5000 });
    await page.waitForSelector(stateSelector('call.conversation.speaking'), { timeout: 10_000 });
    const answered = await turn;
    expect(answered.tier).toBe(2);

    const seen = await page.evaluate<string[]>('window.seen');
    const listening = seen.indexOf('conversation.listening');
    const thinking = seen.findIndex((s, i) => i > listening && s.startsWith('conversation.thinking'));
    const speaking = seen.findIndex((s, i) => i > thinking && s === 'conversation.speaking');
    expect(listening).toBeGreaterThanOrEqual(0);
    expect(thinking).toBeGreaterThan(listening);
    expect(speaking).toBeGreaterThan(thinking);

    // The log, the context and the waterfall of the turn.
    await page.waitForSelector('#waterfall .wf-turn[data-turn="1"]');
    expect(await page.textContent('#log tbody')).toContain('caller.transcriptFinal');
    expect(await page.textContent('#context')).toContain(UTTERANCE);
    await mkdir(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'inspector-live-call.png'), fullPage: true });

    // Nobody watching: inspection is detached while the call goes on.
    await page.goto('about:blank');
    await expect.poll(() => app!.inspector!.hub.attached).toBe(0);
    expect(app.engine.session(callId)).toBeDefined();

    // Replay of the ended call, from its recording.
    await call.close();
    await expect.poll(() => app!.engine.liveCalls).toBe(0);
    await page.goto(`${url}/inspect#call=${callId}`);
    await page.waitForSelector('body[data-mode="replay"]');
    await page.waitForSelector(stateSelector('call.ended'));
    await page.click('#first');
    await page.waitForSelector(stateSelector('call.awaitingStart'));
    for (let i = 0; i < 4; i++) await page.click('#next');
    await page.waitForSelector(stateSelector('call.conversation.thinking'));
    await page.screenshot({ path: path.join(ARTIFACTS, 'inspector-replay.png'), fullPage: true });
    // The sign-in page answers 401 by design; Chromium logs that as a failed resource load.
    expect(problems.filter((p) => !p.includes('401'))).toEqual([]);
  }, 60_000);
});
