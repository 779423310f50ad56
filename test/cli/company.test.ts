/**
 * `npm run company -- import/export/list` as a user runs it: a real process on the engine's store —
 * a scratch schema of DATABASE_URL when it is set (CI), the embedded PGlite under DATA_DIR otherwise.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { DEMO_FILES, loadCatalog } from '../../src/store/configStore.ts';
import type { Catalog } from '../../src/store/configStore.ts';
import { createPgDb } from '../../src/store/sql/pgDb.ts';
import { createPgliteDb } from '../../src/store/sql/pgliteDb.ts';
import { PGLITE_LOCK_FILE } from '../../src/store/sql/pgliteLock.ts';
import { createSqlConfigStore } from '../../src/store/sql/sqlConfigStore.ts';
import { BACKEND, TEST_DATABASE_URL, silentLog, urlWithSchema } from '../store/dbForTest.ts';

const run = promisify(execFile);
const CLI = path.resolve('src/cli/company.ts');
let dir: string;
let schema: string | undefined;

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'switchboard-company-'));
  if (TEST_DATABASE_URL !== undefined) {
    schema = `test_${randomBytes(6).toString('hex')}`;
    const admin = createPgDb({ url: TEST_DATABASE_URL, log: silentLog, maxConnections: 1 });
    await admin.exec(`CREATE SCHEMA ${schema}`);
    await admin.close();
  }
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
  if (TEST_DATABASE_URL !== undefined && schema !== undefined) {
    const admin = createPgDb({ url: TEST_DATABASE_URL, log: silentLog, maxConnections: 1 });
    await admin.exec(`DROP SCHEMA ${schema} CASCADE`);
    await admin.close();
  }
});

async function company(args: string[], extraEnv: Record<string, string> = {}) {
  try {
    const r = await run(process.execPath, [CLI, ...args], {
      env: {
        ...process.env,
        ...extraEnv,
        DATA_DIR: path.join(dir, 'data'),
        DATABASE_URL: schema === undefined ? '' : urlWithSchema(schema),
        // Invalidations (with REDIS_URL) go to a channel no engine of another test listens on.
        REDIS_KEY_PREFIX: `sbtest:${randomBytes(4).toString('hex')}:`,
      },
    });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

/** What the store holds now, as the engine would load it. */
async function stored(): Promise<Catalog> {
  const db =
    schema === undefined
      ? await createPgliteDb({ dataDir: path.join(dir, 'data', 'pglite') })
      : createPgDb({ url: urlWithSchema(schema), log: silentLog, maxConnections: 1 });
  try {
    return await loadCatalog(createSqlConfigStore(db));
  } finally {
    await db.close();
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

describe(`npm run company (${BACKEND})`, () => {
  test('import validates and stores the documents; the engine store then serves them', async () => {
    const { companyFile, templateFile } = await writeDocs();
    const r = await company(['import', companyFile, templateFile]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('company lakeside-drains');
    expect(r.stdout).toContain(
      BACKEND === 'postgres' ? 'stored in PostgreSQL' : 'the next engine start serves it',
    );
    const catalog = await stored();
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
    const catalog = await stored();
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

  test('under npm run, file names are relative to the folder the command was typed in', async () => {
    const { templateFile } = await writeDocs();
    // What npm sets for `npm run company` typed in `dir`: the script itself runs in the package root.
    const typedInDir = { INIT_CWD: dir, npm_package_json: path.resolve('package.json') };
    const imported = await company(['import', 'company.lakeside.json', 'template.drains.json'], typedInDir);
    expect(imported.stderr).toBe('');
    expect(imported.code).toBe(0);
    expect((await stored()).companies.has('lakeside-drains')).toBe(true);
    const exported = await company(['export', 'lakeside-drains', '--out', 'exported'], typedInDir);
    expect(exported.code).toBe(0);
    expect(exported.stdout).toContain(`wrote ${path.join(dir, 'exported', 'company.lakeside-drains.json')}`);
    expect(JSON.parse(await readFile(path.join(dir, 'exported', 'template.drains.json'), 'utf8'))).toEqual(
      JSON.parse(await readFile(templateFile, 'utf8')),
    );
  });

  test('list shows what the store holds, the demo included', async () => {
    const { companyFile, templateFile } = await writeDocs();
    await company(['import', companyFile, templateFile]);
    const r = await company(['list']);
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n').sort()).toEqual(
      [
        '',
        'company\tlakeside-drains',
        'company\triverside-plumbing',
        'template\tdrains',
        'template\tplumbing-residential',
      ].sort(),
    );
  });

  test.skipIf(BACKEND === 'postgres')(
    'refuses, saying what to do, while an engine holds the embedded database',
    async () => {
      const lockDir = path.join(dir, 'data', 'pglite');
      await mkdir(lockDir, { recursive: true });
      // This test process is alive: as good as a running engine.
      await writeFile(
        path.join(lockDir, PGLITE_LOCK_FILE),
        JSON.stringify({ pid: process.pid, holder: 'engine', since: new Date().toISOString() }),
      );
      const r = await company(['list']);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`a running engine (pid ${process.pid}) holds the embedded database`);
      expect(r.stderr).toContain(
        'Stop the engine first, or change companies and templates through its admin API',
      );
    },
  );

  test.skipIf(BACKEND === 'postgres')('takes over a lock left by a process that is gone', async () => {
    const lockDir = path.join(dir, 'data', 'pglite');
    await mkdir(lockDir, { recursive: true });
    // Pids are at most 2^22 on Linux: this one cannot be running.
    await writeFile(
      path.join(lockDir, PGLITE_LOCK_FILE),
      JSON.stringify({ pid: 2 ** 22 + 1, holder: 'engine', since: new Date().toISOString() }),
    );
    const r = await company(['list']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('company\triverside-plumbing');
  });
});
