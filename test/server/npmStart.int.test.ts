/** `npm start` as an operator runs it: a start that cannot happen says why in one line and exits 1. */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { PGLITE_LOCK_FILE } from '../../src/store/sql/pgliteLock.ts';
import { runNode } from '../support/runNode.ts';

const main = path.resolve('src/main.ts');
const dataDir = mkdtemp(path.join(tmpdir(), 'switchboard-start-'));
afterAll(async () => rm(await dataDir, { recursive: true, force: true }));

function start(env: Record<string, string>) {
  return runNode(main, [], {
    env: { PATH: process.env['PATH'] ?? '', LOG_LEVEL: 'silent', HOST: '127.0.0.1', ...env },
  });
}

test('a port already taken: one line naming it, exit 1, no stack', async () => {
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  const { port } = taken.address() as AddressInfo;
  try {
    const { code, stderr } = await start({ PORT: String(port), DATA_DIR: await dataDir });
    expect(code).toBe(1);
    expect(stderr).toBe(
      `switchboard could not start: 127.0.0.1:${port} is already in use (is another engine running?). Stop it, or choose another PORT.\n`,
    );
  } finally {
    await new Promise((resolve) => taken.close(resolve));
  }
}, 30_000);

test('a setting that is not valid: the configuration problem, exit 1', async () => {
  const { code, stderr } = await start({ PORT: 'eighty', DATA_DIR: await dataDir });
  expect(code).toBe(1);
  expect(stderr).toMatch(/PORT/);
  expect(stderr).not.toMatch(/\n\s+at /);
});

test('the embedded database held by a running engine: what to do instead, exit 1, no stack', async () => {
  const held = path.join(await dataDir, 'held');
  await mkdir(path.join(held, 'pglite'), { recursive: true });
  // This test's own process plays the engine that holds it.
  await writeFile(
    path.join(held, 'pglite', PGLITE_LOCK_FILE),
    JSON.stringify({ pid: process.pid, holder: 'engine', since: new Date().toISOString() }),
  );
  const { code, stderr } = await start({ PORT: '0', DATA_DIR: held });
  expect(code).toBe(1);
  expect(stderr).toMatch(
    new RegExp(
      `^switchboard could not start: a running engine \\(pid ${process.pid}\\) holds the embedded database`,
    ),
  );
  expect(stderr.trim().split('\n')).toHaveLength(1);
});

test('a data folder that cannot be made: the system error in one line, exit 1, no stack', async () => {
  const file = path.join(await dataDir, 'a-file');
  await writeFile(file, 'not a folder');
  const { code, stderr } = await start({ PORT: '0', DATA_DIR: path.join(file, 'data') });
  expect(code).toBe(1);
  expect(stderr).toBe(
    `switchboard could not start: ENOTDIR: not a directory, mkdir '${path.join(file, 'data', 'pglite')}'\n`,
  );
});
