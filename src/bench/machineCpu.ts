/**
 * Whole-machine CPU use per core from /proc/stat (Linux), so a report can say how busy each core
 * was during a window and how much of that was neither the engine, the fake nor the load generator.
 */
import os from 'node:os';
import { readFileSync } from 'node:fs';

export interface CpuTimes {
  /** Per core: busy (user, nice, system, irq, softirq), steal and total jiffies. */
  readonly cores: readonly { readonly busy: number; readonly steal: number; readonly total: number }[];
}

export interface CpuShares {
  /** Busy share of each core over the window, in percent. */
  readonly busyPct: readonly number[];
  /** Time the hypervisor gave to others, per core, in percent. */
  readonly stealPct: readonly number[];
}

/** Null where /proc/stat is not available. */
export function readCpuTimes(): CpuTimes | null {
  let text: string;
  try {
    text = readFileSync('/proc/stat', 'utf8');
  } catch {
    return null;
  }
  const cores = text
    .split('\n')
    .filter((line) => /^cpu\d+ /.test(line))
    .map((line) => {
      const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = line
        .split(/\s+/)
        .slice(1)
        .map(Number);
      return {
        busy: user + nice + system + irq + softirq,
        steal,
        total: user + nice + system + idle + iowait + irq + softirq + steal,
      };
    });
  return { cores };
}

export function cpuShares(from: CpuTimes, to: CpuTimes): CpuShares {
  const busyPct: number[] = [];
  const stealPct: number[] = [];
  to.cores.forEach((core, i) => {
    const before = from.cores[i];
    if (before === undefined) return;
    const total = Math.max(1, core.total - before.total);
    busyPct.push(((core.busy - before.busy) / total) * 100);
    stealPct.push(((core.steal - before.steal) / total) * 100);
  });
  return { busyPct, stealPct };
}

/** The machine a bench ran on, as both reports print it. */
export interface BenchMachine {
  readonly cpus: number;
  readonly cpuModel: string;
  readonly memoryGiB: number;
  readonly node: string;
  readonly platform: string;
  readonly date: string;
  /** Per-core busy share measured for 2 s before the bench started anything. */
  readonly backgroundBusyPctBeforeStart: readonly number[] | null;
}

export function describeMachine(backgroundBusyPctBeforeStart: readonly number[] | null): BenchMachine {
  return {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
    memoryGiB: os.totalmem() / 1024 ** 3,
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
    date: new Date().toISOString(),
    backgroundBusyPctBeforeStart,
  };
}
