/** `npm start`: reads the environment, starts the engine, stops cleanly on SIGINT/SIGTERM. */
import { startApp } from './app.ts';
import { loadEnv } from './config/env.ts';
import { AppError, ConfigError } from './errors.ts';

/**
 * What to tell the operator when the engine cannot start for a reason of theirs (a bad setting, the
 * port or the embedded database taken): one line, no stack. Null for anything else, a bug, whose
 * stack is worth seeing.
 */
function startupProblem(err: unknown): string | null {
  if (err instanceof ConfigError) return err.message;
  if (err instanceof AppError) return `switchboard could not start: ${err.message}`;
  const e = err as NodeJS.ErrnoException & { address?: string; port?: number };
  if (e?.syscall === 'listen' && (e.code === 'EADDRINUSE' || e.code === 'EACCES')) {
    const where = `${e.address ?? 'the address'}:${e.port ?? '?'}`;
    return e.code === 'EADDRINUSE'
      ? `switchboard could not start: ${where} is already in use (is another engine running?). Stop it, or choose another PORT.`
      : `switchboard could not start: not allowed to listen on ${where} (ports below 1024 need privileges). Choose another PORT.`;
  }
  return null;
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
  const problem = startupProblem(err);
  if (problem === null) throw err;
  process.stderr.write(`${problem}\n`);
  process.exit(1);
}
