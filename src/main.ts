/** `npm start`: reads the environment, starts the engine, stops cleanly on SIGINT/SIGTERM. */
import { startApp } from './app.ts';
import { loadEnv } from './config/env.ts';
import { cliFailure } from './cli/args.ts';

const CANNOT_START = 'switchboard could not start';

/**
 * The listening socket refused (port taken, or privileged): what the operator should do about it.
 * Null for anything else, which `cliFailure` words like every CLI's errors (a bad setting, the
 * embedded database taken: one line; a bug: its stack).
 */
function listenProblem(err: unknown): string | null {
  const e = err as NodeJS.ErrnoException & { address?: string; port?: number };
  if (e?.syscall !== 'listen' || (e.code !== 'EADDRINUSE' && e.code !== 'EACCES')) return null;
  const where = `${e.address ?? 'the address'}:${e.port ?? '?'}`;
  return e.code === 'EADDRINUSE'
    ? `${CANNOT_START}: ${where} is already in use (is another engine running?). Stop it, or choose another PORT.`
    : `${CANNOT_START}: not allowed to listen on ${where} (ports below 1024 need privileges). Choose another PORT.`;
}

try {
  const env = loadEnv();
  const app = await startApp(env);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    app.log.info({ signal }, 'shutting down');
    app.close().then(
      () => process.exit(0),
      (err: unknown) => {
        app.log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
} catch (err) {
  process.stderr.write(`${listenProblem(err) ?? cliFailure(CANNOT_START, err).text}\n`);
  process.exit(1);
}
