/**
 * `userPath`: where a path typed on a command line points, under `npm run` and without it.
 * `parseCli` and `cliFailure`: a mistyped flag is one line for the user, not a stack.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { cliFailure, parseCli, userPath } from '../../src/cli/args.ts';
import { AppError, ConfigError } from '../../src/errors.ts';

describe('userPath', () => {
  const root = path.resolve('/srv/switchboard');
  const typedIn = path.resolve('/home/me/calls');
  const npm = { INIT_CWD: typedIn, npm_package_json: path.join(root, 'package.json') };

  test('under npm run (cwd is the package root), a relative path is taken from where it was typed', () => {
    expect(userPath('q.wav', npm, root)).toBe(path.join(typedIn, 'q.wav'));
    expect(userPath('../out/heard.wav', npm, root)).toBe(path.resolve(typedIn, '../out/heard.wav'));
  });

  test('an absolute path stays as it is', () => {
    expect(userPath('/tmp/q.wav', npm, root)).toBe(path.resolve('/tmp/q.wav'));
  });

  test('started some other way, a relative path is taken from the process cwd', () => {
    expect(userPath('q.wav', {}, root)).toBe(path.join(root, 'q.wav'));
    // npm's variables inherited by a script that runs elsewhere (a child of `npm test`): cwd wins.
    const elsewhere = path.resolve('/tmp/work');
    expect(userPath('q.wav', npm, elsewhere)).toBe(path.join(elsewhere, 'q.wav'));
    // INIT_CWD alone, with no package.json named, is not trusted either.
    expect(userPath('q.wav', { INIT_CWD: typedIn }, root)).toBe(path.join(root, 'q.wav'));
  });
});

describe('parseCli', () => {
  const options = { calls: { type: 'string' }, json: { type: 'boolean', default: false } } as const;

  test('reads the flags it knows', () => {
    expect(parseCli(['--calls', '10', '--json'], options).values).toEqual({ calls: '10', json: true });
  });

  /** What parseCli threw, or null. */
  const thrown = (argv: string[], usage?: string): unknown => {
    try {
      parseCli(argv, options, usage);
    } catch (e) {
      return e;
    }
    return null;
  };

  test('an unknown flag is a usage error naming it', () => {
    const err = thrown(['--climb=false']);
    expect(err).toBeInstanceOf(AppError);
    expect(err).toMatchObject({
      code: 'ERR_USAGE',
      message: 'unknown option --climb (--help lists the options)',
    });
  });

  test('with the CLI’s usage text, the usage follows the line instead of the --help hint', () => {
    expect(thrown(['--climb'], 'usage: npm run x')).toMatchObject({
      code: 'ERR_USAGE',
      message: 'unknown option --climb\nusage: npm run x',
    });
    const missing = thrown(['--calls'], 'usage: npm run x');
    expect(missing).toMatchObject({ code: 'ERR_USAGE' });
    expect((missing as Error).message).toMatch(/argument missing\nusage: npm run x$/);
  });

  test('a flag without its value is a usage error with node’s words', () => {
    expect(() => parseCli(['--calls'], options)).toThrow(expect.objectContaining({ code: 'ERR_USAGE' }));
  });
});

describe('cliFailure', () => {
  test('usage errors: the message alone, exit code 2', () => {
    expect(cliFailure('bench failed', new AppError('ERR_USAGE', 'unknown option --x'))).toEqual({
      text: 'unknown option --x',
      exitCode: 2,
    });
  });

  test('other errors the code raised on purpose: one line with the prefix', () => {
    expect(cliFailure('bench failed', new AppError('ERR_WAV_UNREADABLE', 'not a WAV'))).toEqual({
      text: 'bench failed: not a WAV',
      exitCode: 1,
    });
  });

  test('a configuration problem: its list alone, exit code 1', () => {
    expect(cliFailure('company', new ConfigError(['a.json: slots.0.name: required']))).toEqual({
      text: 'Invalid configuration:\n  - a.json: slots.0.name: required',
      exitCode: 1,
    });
  });

  test('a system error (it has a code): one line with the prefix', () => {
    const err = Object.assign(new Error("ENOENT: no such file or directory, open 'x.wav'"), {
      code: 'ENOENT',
    });
    expect(cliFailure('call failed', err)).toEqual({
      text: "call failed: ENOENT: no such file or directory, open 'x.wav'",
      exitCode: 1,
    });
  });

  test('anything else is a bug: the stack, to report it', () => {
    const { text, exitCode } = cliFailure('bench failed', new TypeError('x is undefined'));
    expect(text).toMatch(/^bench failed: TypeError: x is undefined\n\s+at /);
    expect(exitCode).toBe(1);
  });
});

describe('the CLIs: mistakes on the command line', () => {
  const cli = (script: string, ...args: string[]) =>
    spawnSync(process.execPath, [`src/cli/${script}`, ...args], { encoding: 'utf8', timeout: 15_000 });

  test.each([
    ['call.ts', ['--bogus'], 'unknown option --bogus\nusage: npm run call -- '],
    ['call.ts', ['--media', '--wav'], "Option '--wav <value>' argument missing\nusage: npm run call -- "],
    ['company.ts', ['export', '--bogus'], 'unknown option --bogus\nusage:\n  npm run company -- import FILE'],
    ['company.ts', ['exprot'], 'unknown command "exprot"\nusage:\n  npm run company -- import FILE'],
    ['company.ts', ['import'], 'import: no FILE given\nusage:\n  npm run company -- import FILE'],
  ])('%s %j: the mistake in one line, then the CLI’s usage; exit code 2', (script, args, start) => {
    const run = cli(script, ...args);
    expect(run.stderr.startsWith(start), run.stderr).toBe(true);
    expect(run.stdout).toBe('');
    expect(run.status).toBe(2);
  });
});

describe('npm run bench: mistakes on the command line', () => {
  const bench = (...args: string[]) =>
    spawnSync(process.execPath, ['src/cli/bench.ts', ...args], { encoding: 'utf8', timeout: 15_000 });

  test.each([
    [['audio', '--climb=false'], 'unknown option --climb (--help lists the options)'],
    [['--bogus'], 'unknown option --bogus (--help lists the options)'],
    [['audio', '--calls', 'ten'], '--calls: expected a number, got ten'],
    [['audio', '--arms', 'relay,sip'], '--arms: expected relay or engine, got sip'],
    [['audi'], 'unexpected argument audi (the audio bench is npm run bench -- audio)'],
  ])('%j: one line, exit code 2, nothing started', (args, line) => {
    const run = bench(...args);
    expect(run.stderr).toBe(`${line}\n`);
    expect(run.stdout).toBe('');
    expect(run.status).toBe(2);
  });
});
