/** `npm run call -- --json`: the test client as a user runs it, against a running engine. */
import { execFile, spawn } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, expect, test } from 'vitest';
import { startTestApp } from '../support/testApp.ts';
import type { TestApp } from '../support/testApp.ts';

const run = promisify(execFile);
let app: TestApp | null = null;
afterEach(async () => {
  await app?.stop();
  app = null;
});

test('prints one JSON object per turn with the documented fields', async () => {
  app = await startTestApp();
  const { stdout } = await run(process.execPath, [
    path.resolve('src/cli/call.ts'),
    '--url',
    app.server.url,
    '--json',
    '--say',
    'What are your hours on Saturday?',
    '--say',
    'Do you sell pizza?',
  ]);
  const turns = stdout
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
  expect(turns).toHaveLength(2);
  for (const t of turns) {
    for (const key of [
      'utterance',
      'reply',
      'tier',
      'confidence',
      'category',
      'scenarioId',
      'warmup',
      'latencyMs',
      'costUsd',
    ]) {
      expect(t).toHaveProperty(key);
    }
  }
  expect(turns[0]).toMatchObject({ utterance: 'What are your hours on Saturday?', scenarioId: 'hours-open' });
  expect([1, 2]).toContain(turns[0]!['tier']);
  expect(turns[1]).toMatchObject({ tier: 'fallback', scenarioId: null });
});

test('prints a readable turn without --json, and fails clearly when no engine answers', async () => {
  app = await startTestApp();
  const { stdout } = await run(process.execPath, [
    path.resolve('src/cli/call.ts'),
    '--url',
    app.server.url,
    '--say',
    'Is my repair under warranty?',
  ]);
  expect(stdout).toContain('caller › Is my repair under warranty?');
  expect(stdout).toMatch(/tier [12] \(\d\.\d\d\) · warranty\/warranty-coverage/);
  expect(stdout).toMatch(/stages ms: capture/);

  const failed = await run(process.execPath, [
    path.resolve('src/cli/call.ts'),
    '--url',
    'http://127.0.0.1:9',
    '--say',
    'hi',
  ]).catch((err: { code: number; stderr: string }) => err);
  expect((failed as { code: number }).code).toBe(1);
  expect((failed as { stderr: string }).stderr).toMatch(/^call failed: /);
});

test('--interactive reads turns from standard input until an empty line', async () => {
  app = await startTestApp();
  const child = spawn(process.execPath, [
    path.resolve('src/cli/call.ts'),
    '--url',
    app.server.url,
    '--interactive',
    '--json',
  ]);
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stdin.end('What are your hours?\nDo you have a warranty on repairs?\n\nDo you sell pizza?\n');
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  expect(code).toBe(0);
  const turns = out
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { scenarioId: string | null });
  expect(turns.map((t) => t.scenarioId)).toEqual(['hours-open', 'warranty-coverage']);
});
