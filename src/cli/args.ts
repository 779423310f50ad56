/** A small argv parser for the CLIs: `--name value`, repeated flags, boolean switches. */
import { realpathSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { ParseArgsConfig } from 'node:util';
import { AppError, ConfigError } from '../errors.ts';

/**
 * Parses `argv` against `options`. A flag the CLI does not know, or one missing its value, throws an
 * `ERR_USAGE` AppError with one line to show the user (node's own message carries a hint about
 * positionals that does not apply here), followed by `usage` when the CLI gives it.
 */
export function parseCli<T extends NonNullable<ParseArgsConfig['options']>>(
  argv: string[],
  options: T,
  usage?: string,
) {
  return parseCliConfig({ args: argv, options, allowPositionals: true, strict: true }, usage);
}

/** `parseArgs` with any config (tokens, say), its mistakes turned into usage errors as in `parseCli`. */
export function parseCliConfig<T extends ParseArgsConfig>(
  config: T,
  usage?: string,
): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (err) {
    throw usageProblem(err, usage);
  }
}

/** A mistake in how a CLI was called: shown as it is (with the CLI's usage when given), exit code 2. */
export function usageError(message: string, usage?: string): AppError {
  return new AppError('ERR_USAGE', usage === undefined ? message : `${message}\n${usage}`);
}

/** A flag's value as a number ≥ 0; `fallback` when the flag is absent. */
export function numberFlag(value: string | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw usageError(`--${name}: expected a number, got ${value}`);
  return n;
}

function usageProblem(err: unknown, usage: string | undefined): unknown {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !code.startsWith('ERR_PARSE_ARGS_')) return err;
  const message = (err as Error).message;
  const unknownFlag = /^Unknown option '([^']+)'/.exec(message)?.[1];
  if (unknownFlag === undefined) return usageError(message, usage);
  // Without the usage text to show, point at it.
  const hint = usage === undefined ? ' (--help lists the options)' : '';
  return usageError(`unknown option ${unknownFlag}${hint}`, usage);
}

/**
 * What a CLI prints for an error that ends it. A configuration problem and a usage mistake: their
 * message alone (exit codes 1 and 2). The app's own errors and the system's (ENOENT, ECONNREFUSED …):
 * one line after `prefix`. Anything else is a bug, whose stack is worth reporting.
 */
export function cliFailure(prefix: string, err: unknown): { text: string; exitCode: number } {
  if (err instanceof ConfigError) return { text: err.message, exitCode: 1 };
  if (err instanceof AppError && err.code === 'ERR_USAGE') return { text: err.message, exitCode: 2 };
  if (err instanceof Error && typeof (err as { code?: unknown }).code === 'string') {
    return { text: `${prefix}: ${err.message}`, exitCode: 1 };
  }
  return {
    text: `${prefix}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
    exitCode: 1,
  };
}

/**
 * Ends a CLI: exits with the code `run` resolves to, or prints what `cliFailure` makes of its error
 * and exits with that code.
 */
export function runCli(prefix: string, run: Promise<number>): void {
  run.then(
    (code) => process.exit(code),
    (err: unknown) => {
      const { text, exitCode } = cliFailure(prefix, err);
      process.stderr.write(`${text}\n`);
      process.exit(exitCode);
    },
  );
}

/** True when the module at `moduleUrl` is the script node was started with (not imported). */
export function isMain(moduleUrl: string): boolean {
  const entry = process.argv[1];
  return entry !== undefined && realpathSync(entry) === realpathSync(fileURLToPath(moduleUrl));
}

/**
 * A path the user typed, made absolute against the directory they typed it in. `npm run` starts a
 * script in the package root, whatever folder it was run from, and leaves that folder in INIT_CWD;
 * without this, `npm run call -- --wav q.wav` in a subfolder would look for q.wav in the root.
 * INIT_CWD counts only when this process runs where npm put it (the folder of npm_package_json):
 * a script started some other way, with those variables inherited, resolves against its own cwd.
 */
export function userPath(typed: string, env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): string {
  const initCwd = env['INIT_CWD'];
  const packageJson = env['npm_package_json'];
  const startedByNpm =
    initCwd !== undefined &&
    packageJson !== undefined &&
    path.resolve(path.dirname(packageJson)) === path.resolve(cwd);
  return path.resolve(startedByNpm ? initCwd : cwd, typed);
}
