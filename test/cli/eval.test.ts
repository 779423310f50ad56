import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { paths } from '../fixtures/configs.ts';
import { runNode, type NodeRun } from '../support/runNode.ts';

const cli = fileURLToPath(new URL('../../src/cli/eval.ts', import.meta.url));
const root = fileURLToPath(new URL('../..', import.meta.url));

function run(args: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<NodeRun> {
  return runNode(cli, args, { cwd: root, env });
}

const dir = await mkdtemp(join(tmpdir(), 'switchboard-eval-'));
afterAll(() => rm(dir, { recursive: true, force: true }));

const demo = ['--company', paths.demoCompany, '--template', paths.demoTemplate];

describe('npm run eval', () => {
  it('prints one JSON report for the demo files and exits 0', async () => {
    const { code, stdout } = await run([...demo, '--golden', paths.demoGolden, '--json']);
    expect(code).toBe(0);
    const report = JSON.parse(stdout) as Record<string, unknown>;
    expect(Object.keys(report)).toEqual(
      expect.arrayContaining(['total', 'correct', 'falseMatches', 'misses', 'accuracy', 'byTier', 'errors']),
    );
    expect(report['accuracy']).toBeGreaterThanOrEqual(0.9);
    expect(Object.keys(report['byTier'] as object).sort()).toEqual(['1', '2', 'none']);
  });

  it('under npm run, file names are relative to the folder the command was typed in', async () => {
    const typedIn = await mkdtemp(join(dir, 'typed-'));
    for (const [from, to] of [
      [paths.demoCompany, 'company.json'],
      [paths.demoTemplate, 'template.json'],
      [paths.demoGolden, 'golden.jsonl'],
    ] as const)
      await writeFile(join(typedIn, to), await readFile(from));
    const { code, stdout, stderr } = await run(
      ['--company', 'company.json', '--template', 'template.json', '--golden', 'golden.jsonl', '--json'],
      { ...process.env, INIT_CWD: typedIn, npm_package_json: join(root, 'package.json') },
    );
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect((JSON.parse(stdout) as { total: number }).total).toBeGreaterThan(0);
  });

  it('prints a readable report with the wrong lines, and exits 0 even when accuracy is poor', async () => {
    const golden = join(dir, 'wrong.jsonl');
    await writeFile(
      golden,
      [
        '{"utterance": "My toilet will not stop running", "expect": {"category": "repair", "scenarioId": "repair-clogged-drain"}}',
        'this line is not json',
      ].join('\n'),
    );
    const { code, stdout } = await run([...demo, '--golden', golden]);
    expect(code).toBe(0);
    expect(stdout).toMatch(/accuracy 0\.0%/);
    expect(stdout).toContain('line 1 FALSE MATCH');
    expect(stdout).toMatch(/line 2: not valid JSON/);
  });

  it('exits 1 naming the file and the field when a config file is invalid', async () => {
    const company = JSON.parse(await readFile(paths.demoCompany, 'utf8')) as Record<string, unknown>;
    delete company['greeting'];
    company['phoneNumbers'] = ['555-0100'];
    const broken = join(dir, 'company.broken.json');
    await writeFile(broken, JSON.stringify(company));
    const { code, stderr } = await run([
      '--company',
      broken,
      '--template',
      paths.demoTemplate,
      '--golden',
      paths.demoGolden,
    ]);
    expect(code).toBe(1);
    expect(stderr).toContain(`${broken}: greeting`);
    expect(stderr).toContain(`${broken}: phoneNumbers.0`);
  });

  it('exits 1 for a template that is not JSON or a file that does not exist', async () => {
    const notJson = join(dir, 'template.bad.json');
    await writeFile(notJson, '{ "id": ');
    const bad = await run([
      '--company',
      paths.demoCompany,
      '--template',
      notJson,
      '--golden',
      paths.demoGolden,
    ]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain(`${notJson}: (root): not valid JSON`);
    const missing = await run([...demo, '--golden', join(dir, 'nope.jsonl')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('nope.jsonl: cannot read file');
  });

  it('exits 2 with the usage on a usage error', async () => {
    const { code, stderr } = await run(['--company', paths.demoCompany]);
    expect(code).toBe(2);
    expect(stderr).toMatch(/usage: npm run eval/);
    const bogus = await run(['--bogus']);
    expect(bogus.code).toBe(2);
    // One line naming the flag, then the usage (no pointer to --help: the usage is right there).
    expect(bogus.stderr).toBe(
      'unknown option --bogus\nusage: npm run eval -- --company FILE --template FILE [--template FILE...] --golden FILE [--json]\n',
    );
    const stray = await run(['stray']);
    expect(stray.code).toBe(2);
    expect(stray.stderr).toMatch(/^unexpected argument stray\nusage: npm run eval/);
  });
});
