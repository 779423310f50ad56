/**
 * One process at a time on an embedded database. PGlite has no locking across processes: two
 * processes opening the same folder would each run their own Postgres on the same files and corrupt
 * them. So whoever opens DATA_DIR/pglite first writes a lock file there (its pid and what it is),
 * and everyone else is refused with a message saying who holds it. A lock left by a process that no
 * longer runs (a crash, kill -9) is taken over.
 */
import { mkdir, open, readFile, unlink } from 'node:fs/promises';
import path from 'node:path';
import { AppError } from '../../errors.ts';

export const PGLITE_LOCK_FILE = 'switchboard.lock';

/** Who holds the lock: the engine (long-running) or a command (company, migrate; short). */
export type PgliteHolder = 'engine' | 'command';

export interface PgliteLock {
  readonly file: string;
  /** Removes the lock file if it is still ours. */
  release(): Promise<void>;
}

interface LockContent {
  readonly pid: number;
  readonly holder: PgliteHolder;
  readonly since: string;
}

function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function readLock(file: string): Promise<LockContent | null> {
  try {
    const content = JSON.parse(await readFile(file, 'utf8')) as Partial<LockContent>;
    if (typeof content.pid !== 'number' || (content.holder !== 'engine' && content.holder !== 'command'))
      return null;
    return { pid: content.pid, holder: content.holder, since: String(content.since) };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    // Half-written by a process that died while writing it: as good as stale.
    return null;
  }
}

function refusal(dir: string, held: LockContent): AppError {
  const by =
    held.holder === 'engine'
      ? `a running engine (pid ${held.pid}) holds the embedded database in ${dir}. ` +
        'Stop the engine first, or change companies and templates through its admin API ' +
        '(PUT /api/companies/{id}, PUT /api/templates/{id}) while it runs.'
      : `another command (pid ${held.pid}) is using the embedded database in ${dir}; ` +
        'try again when it has finished.';
  return new AppError(
    'ERR_DB_LOCKED',
    `${by} (PGlite serves one process at a time; a shared PostgreSQL via DATABASE_URL has no such limit.)`,
  );
}

/** Takes the lock on an embedded database folder, or throws ERR_DB_LOCKED naming the holder. */
export async function acquirePgliteLock(dir: string, holder: PgliteHolder): Promise<PgliteLock> {
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, PGLITE_LOCK_FILE);
  const content = JSON.stringify({ pid: process.pid, holder, since: new Date().toISOString() });
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const handle = await open(file, 'wx');
      try {
        await handle.writeFile(`${content}\n`);
      } finally {
        await handle.close();
      }
      return {
        file,
        async release() {
          const held = await readLock(file);
          if (held?.pid === process.pid) await unlink(file).catch(() => undefined);
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const held = await readLock(file);
    if (held !== null && alive(held.pid)) throw refusal(dir, held);
    // Stale: its process is gone. Remove it and try again (another process may win the race).
    await unlink(file).catch(() => undefined);
  }
  throw new AppError('ERR_DB_LOCKED', `could not take the lock ${file}; try again`);
}
