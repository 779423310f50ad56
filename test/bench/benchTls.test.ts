/** The audio bench's --tls plumbing: a certificate the server trusts, fakes that serve only TLS. */
import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { afterEach, expect, test } from 'vitest';
import WebSocket from 'ws';
import { createBenchCertificate } from '../../src/bench/audio/benchTls.ts';
import { startFakeVoiceUpstream } from '../../src/bench/audio/fakeVoiceUpstream.ts';
import type { FakeVoiceUpstream } from '../../src/bench/audio/fakeVoiceUpstream.ts';

/** The certificate comes from Debian's openssl; without it --tls says so (and these tests skip). */
const hasOpenssl = spawnSync('openssl', ['version']).status === 0;

let upstream: FakeVoiceUpstream | null = null;
let remove: (() => Promise<void>) | null = null;
afterEach(async () => {
  await upstream?.close();
  await remove?.();
  upstream = remove = null;
});

/** 'open', or the error's message. */
function connect(url: string, ca?: string): Promise<string> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, ca === undefined ? {} : { ca });
    ws.once('open', () => {
      ws.close();
      resolve('open');
    });
    ws.once('error', (err) => resolve(err.message));
  });
}

test.skipIf(!hasOpenssl)(
  'the relay upstream fake serves wss:// with the certificate, and only a client trusting it gets in',
  async () => {
    const certificate = await createBenchCertificate();
    remove = certificate.remove;
    const cert = await readFile(certificate.certFile, 'utf8');
    upstream = await startFakeVoiceUpstream({
      tls: { cert, key: await readFile(certificate.keyFile, 'utf8') },
    });
    expect(upstream.url).toMatch(/^wss:\/\/127\.0\.0\.1:\d+\/v1\/realtime$/);
    expect(await connect(upstream.url, cert)).toBe('open');
    expect(await connect(upstream.url)).toMatch(/self[- ]signed certificate/);
    expect(await connect(upstream.url.replace('wss:', 'ws:'), cert)).not.toBe('open');
  },
);
