/**
 * The ledger's local spool: cost events that could not reach the database wait here, on disk, until
 * they can. Append-only JSON lines, fsync'd once per appended batch, so an event the spool has
 * accepted survives a crash.
 *
 * Files in the folder:
 * - `current.jsonl`: where appends go.
 * - `replay-<time>-<seq>.jsonl`: frozen by a replay (renamed from current), read oldest first and
 *   deleted once every batch in it is stored. A crash mid-replay leaves the file; the next replay
 *   reads it again from the start, which is harmless because the insert skips stored ids.
 * - `rejected.jsonl`: events the database refused as invalid (never replayed; kept for a human).
 */
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, rename, stat, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { Logger } from '../observability/logger.ts';
import type { CostEvent } from './costEvent.ts';

/** The spool's operations (one writer per folder). */
export interface LedgerSpool {
  readonly dir: string;
  /** Appends the events durably: one write and one fdatasync for the whole batch. */
  append(events: readonly CostEvent[]): Promise<void>;
  /** Sets events aside that the database refused as invalid; they are never replayed. */
  reject(events: readonly CostEvent[]): Promise<void>;
  /** True when spooled events wait to be replayed. */
  hasPending(): Promise<boolean>;
  /**
   * Hands every spooled event to `write`, oldest first, in batches of at most `batchSize`, removing
   * each file once all its batches went through. Stops at the first `write` that throws (the error
   * is rethrown and the file stays for the next replay). Lines that are not events — a partial line
   * left by a crash mid-append — are skipped with a warning.
   */
  replay(
    write: (batch: CostEvent[]) => Promise<void>,
    batchSize: number,
  ): Promise<{ events: number; skipped: number }>;
  /** Bytes waiting to be replayed (for a size alert). */
  bytes(): Promise<number>;
}

const CURRENT = 'current.jsonl';
const REJECTED = 'rejected.jsonl';
const FROZEN = /^replay-\d{15}-\d{6}\.jsonl$/;

function isEvent(value: unknown): value is CostEvent {
  const v = value as Partial<CostEvent> | null;
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof v.id === 'string' &&
    typeof v.at === 'string' &&
    typeof v.companyId === 'string' &&
    typeof v.purpose === 'string' &&
    typeof v.action === 'string'
  );
}

async function sizeOf(file: string): Promise<number> {
  try {
    return (await stat(file)).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
}

/** Makes a created or renamed file's directory entry durable too. */
async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** The spool in `dir` (created on the first append). One writer per folder. */
export function createLedgerSpool(options: { dir: string; log: Logger }): LedgerSpool {
  const { dir, log } = options;
  const current = path.join(dir, CURRENT);
  let ready: Promise<unknown> | undefined;
  /** Appends and renames of current.jsonl run one at a time. */
  let chain: Promise<unknown> = Promise.resolve();
  let seq = 0;
  /** Files whose last byte is known to be a newline (so the next line starts clean). */
  const cleanTail = new Set<string>();
  /** Bumped by every append, so a replay knows whether current.jsonl filled up behind it. */
  let appends = 0;
  let pendingKnown: boolean | undefined;

  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = chain.then(fn, fn);
    chain = run.catch(() => undefined);
    return run;
  };
  const ensureDir = () =>
    (ready ??= mkdir(dir, { recursive: true }).catch((err: unknown) => {
      ready = undefined;
      throw err;
    }));

  async function appendLines(file: string, events: readonly CostEvent[]): Promise<void> {
    await ensureDir();
    const existed = (await sizeOf(file)) > 0;
    let handle: FileHandle | undefined;
    try {
      handle = await open(file, 'a+');
      let prefix = '';
      if (existed && !cleanTail.has(file)) {
        // A crash mid-append can leave a partial last line; start ours on a fresh line so only the
        // partial one is lost, not the first event written after it.
        const { size } = await handle.stat();
        const last = Buffer.alloc(1);
        await handle.read(last, 0, 1, size - 1);
        if (last[0] !== 0x0a) prefix = '\n';
      }
      cleanTail.delete(file);
      await handle.write(prefix + events.map((e) => JSON.stringify(e)).join('\n') + '\n');
      await handle.datasync();
      cleanTail.add(file);
    } finally {
      await handle?.close();
    }
    if (!existed) await syncDir(dir);
  }

  async function frozenFiles(): Promise<string[]> {
    try {
      return (await readdir(dir)).filter((n) => FROZEN.test(n)).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  }

  /** Renames current.jsonl to a frozen file so appends can continue while it is replayed. */
  const freeze = () =>
    serial(async () => {
      if ((await sizeOf(current)) === 0) return;
      seq += 1;
      const name = `replay-${String(Date.now()).padStart(15, '0')}-${String(seq % 1_000_000).padStart(6, '0')}.jsonl`;
      await rename(current, path.join(dir, name));
      cleanTail.delete(current);
      await syncDir(dir);
    });

  async function replayFile(
    file: string,
    write: (batch: CostEvent[]) => Promise<void>,
    batchSize: number,
  ): Promise<{ events: number; skipped: number }> {
    let events = 0;
    let skipped = 0;
    let batch: CostEvent[] = [];
    const lines = createInterface({ input: createReadStream(file, 'utf8'), crlfDelay: Infinity });
    try {
      for await (const line of lines) {
        if (line.trim() === '') continue;
        let parsed: unknown;
        try {
          parsed = JSON.parse(line);
        } catch {
          parsed = undefined;
        }
        if (!isEvent(parsed)) {
          skipped += 1;
          continue;
        }
        batch.push(parsed);
        if (batch.length >= batchSize) {
          await write(batch);
          events += batch.length;
          batch = [];
        }
      }
    } finally {
      lines.close();
    }
    if (batch.length > 0) {
      await write(batch);
      events += batch.length;
    }
    if (skipped > 0) {
      log.warn(
        { file: path.basename(file), skipped },
        'cost spool: skipped unreadable lines (partial write?)',
      );
    }
    await unlink(file);
    return { events, skipped };
  }

  return {
    dir,
    append(events) {
      if (events.length === 0) return Promise.resolve();
      return serial(async () => {
        await appendLines(current, events);
        appends += 1;
        pendingKnown = true;
      });
    },
    reject(events) {
      if (events.length === 0) return Promise.resolve();
      return serial(() => appendLines(path.join(dir, REJECTED), events));
    },
    async hasPending() {
      if (pendingKnown === undefined) {
        pendingKnown = (await sizeOf(current)) > 0 || (await frozenFiles()).length > 0;
      }
      return pendingKnown;
    },
    async replay(write, batchSize) {
      const appendsBefore = appends;
      await freeze();
      let events = 0;
      let skipped = 0;
      for (const name of await frozenFiles()) {
        const done = await replayFile(path.join(dir, name), write, batchSize);
        events += done.events;
        skipped += done.skipped;
      }
      // Events appended while this replay ran wait in current.jsonl for the next one.
      if (appends === appendsBefore) pendingKnown = (await sizeOf(current)) > 0;
      return { events, skipped };
    },
    async bytes() {
      let total = await sizeOf(current);
      for (const name of await frozenFiles()) total += await sizeOf(path.join(dir, name));
      return total;
    },
  };
}
