/** `npm start`: reads the environment, starts the engine, stops cleanly on SIGINT/SIGTERM. */
import { startApp } from './app.ts';
import { loadEnv } from './config/env.ts';
import { ConfigError } from './errors.ts';

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
  if (err instanceof ConfigError) {
    process.stderr.write(`${err.message}\n`);
    process.exit(1);
  }
  throw err;
}
