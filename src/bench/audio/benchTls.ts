/**
 * `npm run bench -- audio --tls`: a throwaway certificate for the fake providers, so that the
 * server under test (relay or engine) reaches its upstream over TLS, as it would reach OpenAI: the
 * fakes serve it, and the server trusts it through NODE_EXTRA_CA_CERTS. Made with Debian's
 * `openssl` (an EC P-256 key, valid for a day, for 127.0.0.1). A bench tool only.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { AppError } from '../../errors.ts';

/** PEM files of the certificate and its key. */
export interface BenchTls {
  readonly certFile: string;
  readonly keyFile: string;
}

export async function createBenchCertificate(): Promise<BenchTls & { remove(): Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'switchboard-bench-tls-'));
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  try {
    await promisify(execFile)('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
      '-keyout',
      keyFile,
      '-out',
      certFile,
    ]);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    throw new AppError(
      'ERR_BENCH_TLS',
      missing
        ? '--tls needs the openssl command (apt-get install openssl) to make a certificate for the fakes'
        : `--tls: openssl could not make a certificate: ${(err as Error).message}`,
      { cause: err },
    );
  }
  return { certFile, keyFile, remove: () => rm(dir, { recursive: true, force: true }) };
}
