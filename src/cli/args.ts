/** A small argv parser for the CLIs: `--name value`, repeated flags, boolean switches. */
import { realpathSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { ParseArgsConfig } from 'node:util';

export function parseCli<T extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: T) {
  return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
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
