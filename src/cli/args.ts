/** A small argv parser for the CLIs: `--name value`, repeated flags, boolean switches. */
import { parseArgs } from 'node:util';
import type { ParseArgsConfig } from 'node:util';

export function parseCli<T extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: T) {
  return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
}
