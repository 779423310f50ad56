/** `userPath`: where a path typed on a command line points, under `npm run` and without it. */
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { userPath } from '../../src/cli/args.ts';

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
