/** `npm run company -- import/export` as a user runs it: a real process, a real data folder. */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { createFileConfigStore, DEMO_FILES, loadCatalog } from '../../src/store/configStore.ts';

const run = promisify(execFile);
const CLI = path.resolve('src/cli/company.ts');
let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'switchboard-company-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function company(args: string[]) {
  try {
    const r = await run(process.execPath, [CLI, ...args], {
      env: { ...process.env, DATA_DIR: path.join(dir, 'data') },
    });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

async function writeDocs(): Promise<{ companyFile: string; templateFile: string }> {
  const c = JSON.parse(await readFile(DEMO_FILES[0]!, 'utf8')) as Record<string, unknown>;
  const t = JSON.parse(await readFile(DEMO_FILES[1]!, 'utf8')) as Record<string, unknown>;
  c['id'] = 'lakeside-drains';
  c['name'] = 'Lakeside Drains';
  c['phoneNumbers'] = ['+15550177777'];
  c['templates'] = ['drains'];
  t['id'] = 'drains';
  const companyFile = path.join(dir, 'company.lakeside.json');
  const templateFile = path.join(dir, 'template.drains.json');
  await writeFile(companyFile, JSON.stringify(c));
  await writeFile(templateFile, JSON.stringify(t));
  return { companyFile, templateFile };
}

describe('npm run company', () => {
  test('import validates and stores the documents; the engine store then serves them', async () => {
    const { companyFile, templateFile } = await writeDocs();
    const r = await company(['import', companyFile, templateFile]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('company lakeside-drains');
    const catalog = await loadCatalog(createFileConfigStore(path.join(dir, 'data')));
    expect(catalog.byNumber.get('+15550177777')).toBe('lakeside-drains');
    // The demo is there too: the store was seeded before the import.
    expect(catalog.companies.has('riverside-plumbing')).toBe(true);
  });

  test('an invalid file is refused with the file and field named, and nothing is written', async () => {
    const { companyFile, templateFile } = await writeDocs();
    const c = JSON.parse(await readFile(companyFile, 'utf8')) as Record<string, unknown>;
    c['greeting'] = '';
    c['templates'] = ['no-such-template'];
    await writeFile(companyFile, JSON.stringify(c));
    const r = await company(['import', companyFile, templateFile]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${companyFile}: greeting:`);
    const catalog = await loadCatalog(createFileConfigStore(path.join(dir, 'data')));
    expect(catalog.templates.has('drains')).toBe(false);
  });

  test('a company that references a missing template, or takes another company’s number, is refused', async () => {
    const { companyFile } = await writeDocs();
    const c = JSON.parse(await readFile(companyFile, 'utf8')) as Record<string, unknown>;
    c['phoneNumbers'] = ['+15550100100'];
    await writeFile(companyFile, JSON.stringify(c));
    const r = await company(['import', companyFile]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('templates.0: unknown template "drains"');
    expect(r.stderr).toContain(
      'phoneNumbers.0: +15550100100 already belongs to company "riverside-plumbing"',
    );
  });

  test('a file that is not JSON, or not a config document, is named', async () => {
    const junk = path.join(dir, 'junk.json');
    await writeFile(junk, '{ nope');
    const other = path.join(dir, 'other.json');
    await writeFile(other, '{"hello": 1}');
    const r = await company(['import', junk, other]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${junk}:`);
    expect(r.stderr).toContain(`${other}: (root): not a company`);
  });

  test('export writes back exactly what was imported', async () => {
    const { companyFile, templateFile } = await writeDocs();
    await company(['import', companyFile, templateFile]);
    const out = path.join(dir, 'out');
    const r = await company(['export', 'lakeside-drains', '--out', out]);
    expect(r.code).toBe(0);
    const exported = JSON.parse(
      await readFile(path.join(out, 'company.lakeside-drains.json'), 'utf8'),
    ) as unknown;
    expect(exported).toEqual(JSON.parse(await readFile(companyFile, 'utf8')));
    expect(JSON.parse(await readFile(path.join(out, 'template.drains.json'), 'utf8'))).toEqual(
      JSON.parse(await readFile(templateFile, 'utf8')),
    );
  });
});
