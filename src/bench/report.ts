/** The benchmark's result shape and its text rendering. */
import type { BenchMachine } from './machineCpu.ts';
import type { ColdStartArm, ColdStartResult } from './coldStart.ts';
import type { MemorySample } from './protocol.ts';
import type { Summary } from './stats.ts';

export const STAGES = [
  'capture',
  'detect',
  'redetect',
  'tier1',
  'warmupGate',
  'tier2',
  'tier3',
  'fallback',
  'provider',
  'turn',
] as const;
export type Stage = (typeof STAGES)[number];

export interface LevelResult {
  readonly calls: number;
  readonly windowS: number;
  readonly turns: number;
  readonly turnsPerSec: number;
  readonly liveCalls: { readonly min: number; readonly mean: number; readonly max: number };
  readonly callsPlaced: number;
  readonly callsCompleted: number;
  readonly errors: Record<string, number>;
  /** Turns that ended in the technicalIssue fallback (turn timeout or LLM failure). */
  readonly technicalFallbacks: number;
  readonly tiers: Record<string, number>;
  readonly warmup: Record<string, number>;
  readonly warmupSkipReasons: Record<string, number>;
  readonly reconcileRate: number | null;
  /** Why the re-detects ran: a newly captured critical slot, a first detect below the threshold, or both. */
  readonly reconcileReasons: Record<string, number>;
  readonly stages: Record<Stage, Summary>;
  /**
   * Turn latency minus the fakes' nominal latencies on the turn's path (understanding, re-detect,
   * embeddings, LLM stream): everything else — engine CPU, event-loop queueing, HTTP client,
   * loopback, the fake's own lateness. An upper bound on what the engine adds.
   */
  readonly excessOverNominalMs: Summary;
  readonly engineOverheadMs: Summary;
  /** The same, split by who answered the turn. */
  readonly engineOverheadByTierMs: Record<string, Summary>;
  readonly clientRoundTripMs: Summary;
  readonly engineCpuCorePct: number;
  readonly engineEventLoopUtilization: number;
  readonly engineLoopDelayMs: { readonly p50: number; readonly p99: number; readonly max: number };
  readonly fake: { readonly requestsPerSec: number; readonly cpuCorePct: number };
  /** The orchestrator (callers) CPU, and per-core machine load from /proc/stat over the window. */
  readonly loadGeneratorCpuCorePct: number;
  readonly machineCpu: {
    readonly busyPct: readonly number[];
    readonly stealPct: readonly number[];
    /** Busy core time not used by the engine, the fake or the load generator (other processes, kernel). */
    readonly otherCorePct: number;
  } | null;
  /** Engine onTurn records vs trace frames the callers received in the same window. */
  readonly clientTurns: number;
}

export interface MemoryResult {
  readonly calls: number;
  readonly connected: number;
  readonly failed: number;
  readonly turnsFailed: number;
  readonly before: MemorySample;
  /** Half of the calls connected. */
  readonly halfway: MemorySample;
  readonly idle: MemorySample;
  /** Every call has made two turns (one Tier 1, one Tier 3) and is idle again. */
  readonly afterTurns: MemorySample;
  readonly after: MemorySample;
  /** (idle − before) / calls. */
  readonly perCallBytes: { readonly heapUsed: number; readonly rss: number; readonly external: number };
  /** (idle − halfway) / second half: the marginal cost, without one-time growth of shared structures. */
  readonly perCallSecondHalfBytes: { readonly heapUsed: number };
  /** (afterTurns − before) / calls: includes each call's cost-ledger entries (a shared, bounded log). */
  readonly perCallAfterTurnsBytes: { readonly heapUsed: number };
  /** (after − before) / calls, right after hang-up (spent stream tokens are kept 30 s). */
  readonly leftAfterHangupPerCallBytes: { readonly heapUsed: number };
}

export interface ArmResult {
  readonly name: string;
  readonly turns: number;
  readonly tiers: Record<string, number>;
  readonly warmup: Record<string, number>;
  readonly reconcileRate: number | null;
  readonly latencyMs: Summary;
  readonly understandingMs: Summary;
  readonly errors: Record<string, number>;
}

export interface AbResult {
  readonly windowS: number;
  readonly callersPerArm: number;
  readonly engineTurns: number;
  readonly clientTurns: number;
  readonly engineCpuCorePct: number;
  /** (a) Tier-3 turns only, rule understanding. */
  readonly warmupOn: ArmResult;
  readonly warmupOff: ArmResult;
  readonly warmupRatio: { readonly p50: number | null; readonly p95: number | null };
  /** (b) all turns of the main mix, LLM understanding. */
  readonly parallel: ArmResult;
  readonly sequential: ArmResult;
  readonly parallelRatio: {
    readonly turnP50: number | null;
    readonly turnP95: number | null;
    readonly understandingP50: number | null;
    readonly understandingP95: number | null;
    readonly understandingMean: number | null;
  };
}

export interface BenchResult {
  readonly machine: BenchMachine;
  readonly config: Record<string, unknown>;
  readonly levels: readonly LevelResult[];
  readonly memory: MemoryResult | null;
  readonly ab: AbResult | null;
  /** First-turn latency of fresh engines with and without the startup warmup. */
  readonly coldStart: ColdStartResult | null;
  readonly durationS: number;
}

function ms(x: number | null | undefined): string {
  if (x === null || x === undefined) return '-';
  if (x < 10) return x.toFixed(2);
  if (x < 100) return x.toFixed(1);
  return x.toFixed(0);
}

function pct(x: number | null): string {
  return x === null ? '-' : `${(x * 100).toFixed(1)}%`;
}

function kib(bytes: number): string {
  return `${(bytes / 1024).toFixed(1)} KiB`;
}

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

function x(r: number | null): string {
  return r === null ? '-' : `${r.toFixed(2)}×`;
}

/** A plain-text table: left-aligned first column, right-aligned others (the audio report uses it too). */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

function shares(counts: Record<string, number>): string {
  const total = Object.values(counts).reduce((s, n) => s + n, 0);
  if (total === 0) return '-';
  return Object.entries(counts)
    .sort((a, b) => b[1] - a[1])
    .map(([k, n]) => `${k} ${((n / total) * 100).toFixed(0)}%`)
    .join(', ');
}

function errorsText(errors: Record<string, number>): string {
  const entries = Object.entries(errors);
  return entries.length === 0 ? '0' : entries.map(([k, n]) => `${n}× ${k}`).join('; ');
}

export function formatReport(r: BenchResult): string {
  const out: string[] = [];
  const m = r.machine;
  out.push(
    `Switchboard benchmark — ${m.date}`,
    `machine: ${m.cpus} CPUs (${m.cpuModel}), ${m.memoryGiB.toFixed(0)} GiB, Node ${m.node}, ${m.platform}`,
    `background load before start: ${m.backgroundBusyPctBeforeStart?.map((b) => `${b.toFixed(0)}%`).join(' / ') ?? 'unknown'} per core`,
    `config: ${Object.entries(r.config)
      .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('-') : String(v)}`)
      .join(' ')}`,
    '',
  );

  if (r.levels.length > 0) {
    out.push('Engine overhead = turn latency − provider time on the critical path (engine onTurn), ms');
    out.push(
      table(
        ['calls', 'turns', 'p50', 'p95', 'p99', 'max', 'engine CPU', 'ELU', 'loop delay p99'],
        r.levels.map((l) => [
          String(l.calls),
          String(l.turns),
          ms(l.engineOverheadMs.p50),
          ms(l.engineOverheadMs.p95),
          ms(l.engineOverheadMs.p99),
          ms(l.engineOverheadMs.max),
          `${l.engineCpuCorePct.toFixed(0)}%`,
          l.engineEventLoopUtilization.toFixed(2),
          ms(l.engineLoopDelayMs.p99),
        ]),
      ),
      '',
    );

    out.push(
      "Latency over nominal provider time = turn latency − the fakes' configured latencies on the turn's path, ms",
      '(engine CPU + event-loop queueing + HTTP client + loopback; an upper bound on what the engine adds)',
    );
    out.push(
      table(
        ['calls', 'n', 'p50', 'p95', 'p99', 'max'],
        r.levels.map((l) => [
          String(l.calls),
          String(l.excessOverNominalMs.n),
          ms(l.excessOverNominalMs.p50),
          ms(l.excessOverNominalMs.p95),
          ms(l.excessOverNominalMs.p99),
          ms(l.excessOverNominalMs.max),
        ]),
      ),
      '',
    );

    out.push('Engine overhead by who answered, ms (p50/p95/p99, n)');
    const tierNames = ['tier1', 'tier2', 'tier3', 'fallback'];
    out.push(
      table(
        ['calls', ...tierNames],
        r.levels.map((l) => [
          String(l.calls),
          ...tierNames.map((t) => {
            const v = l.engineOverheadByTierMs[t];
            return v === undefined || v.n === 0 ? '-' : `${ms(v.p50)}/${ms(v.p95)}/${ms(v.p99)} (${v.n})`;
          }),
        ]),
      ),
      '',
    );

    out.push('Calls sustained (measurement window after ramp-up)');
    out.push(
      table(
        [
          'calls',
          'window s',
          'live min/mean/max',
          'turns/s',
          'calls placed/done',
          'errors',
          'tech. fallbacks',
          'caller RTT p50/p95/p99 ms',
        ],
        r.levels.map((l) => [
          String(l.calls),
          l.windowS.toFixed(1),
          `${l.liveCalls.min}/${l.liveCalls.mean.toFixed(0)}/${l.liveCalls.max}`,
          l.turnsPerSec.toFixed(1),
          `${l.callsPlaced}/${l.callsCompleted}`,
          errorsText(l.errors),
          String(l.technicalFallbacks),
          `${ms(l.clientRoundTripMs.p50)}/${ms(l.clientRoundTripMs.p95)}/${ms(l.clientRoundTripMs.p99)}`,
        ]),
      ),
      '',
    );

    out.push('Who answered, warmup outcome, reconcile rate');
    out.push(
      table(
        ['calls', 'tiers', 'warmup', 'warmup skipped because', 'reconciled', 'reconciled because'],
        r.levels.map((l) => [
          String(l.calls),
          shares(l.tiers),
          shares(l.warmup),
          shares(l.warmupSkipReasons),
          pct(l.reconcileRate),
          shares(l.reconcileReasons),
        ]),
      ),
      '',
    );

    out.push('CPU during the window (share of one core; per-core machine load from /proc/stat)');
    out.push(
      table(
        ['calls', 'engine', 'fake LLM', 'fake req/s', 'callers', 'other processes', 'core busy', 'steal'],
        r.levels.map((l) => [
          String(l.calls),
          `${l.engineCpuCorePct.toFixed(0)}%`,
          `${l.fake.cpuCorePct.toFixed(0)}%`,
          l.fake.requestsPerSec.toFixed(0),
          `${l.loadGeneratorCpuCorePct.toFixed(0)}%`,
          l.machineCpu === null ? '-' : `${l.machineCpu.otherCorePct.toFixed(0)}%`,
          l.machineCpu === null ? '-' : l.machineCpu.busyPct.map((b) => `${b.toFixed(0)}%`).join(' / '),
          l.machineCpu === null ? '-' : l.machineCpu.stealPct.map((b) => `${b.toFixed(1)}%`).join(' / '),
        ]),
      ),
      '',
    );

    for (const l of r.levels) {
      out.push(`Per-stage latency at ${l.calls} calls, ms (engine onTurn, ${l.turns} turns)`);
      out.push(
        table(
          ['stage', 'n', 'p50', 'p95', 'p99', 'max'],
          STAGES.map((s) => {
            const v = l.stages[s];
            return [s, String(v.n), ms(v.p50), ms(v.p95), ms(v.p99), ms(v.max)];
          }),
        ),
        '',
      );
    }
  }

  if (r.memory !== null) {
    const mem = r.memory;
    out.push(
      `Memory per live call (engine process after forced GC; ${mem.connected} calls connected, ${mem.failed} failed, ${mem.turnsFailed} with failed turns)`,
    );
    out.push(
      table(
        ['state', 'live calls', 'heapUsed', 'rss', 'external'],
        [
          ['no calls', mem.before],
          ['half connected, idle', mem.halfway],
          ['all connected, idle', mem.idle],
          ['after two turns each', mem.afterTurns],
          ['after hang-up', mem.after],
        ].map(([name, s]) => {
          const sample = s as MemorySample;
          return [
            name as string,
            String(sample.liveCalls),
            mib(sample.heapUsed),
            mib(sample.rss),
            mib(sample.external),
          ];
        }),
      ),
      `per idle live call: heap ${kib(mem.perCallBytes.heapUsed)} (second half alone ${kib(mem.perCallSecondHalfBytes.heapUsed)}), ` +
        `RSS ${kib(mem.perCallBytes.rss)}, external ${kib(mem.perCallBytes.external)}`,
      `per live call after two turns: heap ${kib(mem.perCallAfterTurnsBytes.heapUsed)}; ` +
        `heap left right after hang-up: ${kib(mem.leftAfterHangupPerCallBytes.heapUsed)} per call`,
      '',
    );
  }

  if (r.ab !== null) {
    const ab = r.ab;
    const arm = (a: ArmResult, understanding: boolean) => [
      a.name,
      String(a.latencyMs.n),
      ms(a.latencyMs.p50),
      ms(a.latencyMs.p95),
      ms(a.latencyMs.p99),
      ...(understanding
        ? [
            ms(a.understandingMs.p50),
            ms(a.understandingMs.p95),
            ms(a.understandingMs.mean),
            pct(a.reconcileRate),
          ]
        : []),
      shares(a.warmup),
    ];
    out.push(
      `Side by side, same run (${ab.callersPerArm} callers per arm, all arms at once, ${ab.windowS.toFixed(0)} s; ` +
        `engine saw ${ab.engineTurns} turns, callers ${ab.clientTurns})`,
      '(a) Tier-3 turns, rule understanding: warmup on vs off — turn latency, ms',
      table(['arm', 'n', 'p50', 'p95', 'p99', 'warmup'], [arm(ab.warmupOn, false), arm(ab.warmupOff, false)]),
      `on/off: p50 ${x(ab.warmupRatio.p50)}, p95 ${x(ab.warmupRatio.p95)}`,
      '',
      '(b) LLM capture/detect: parallel with reconcile vs sequential — all turns, ms',
      table(
        [
          'arm',
          'n',
          'turn p50',
          'turn p95',
          'turn p99',
          'underst. p50',
          'underst. p95',
          'underst. mean',
          'reconciled',
          'warmup',
        ],
        [arm(ab.parallel, true), arm(ab.sequential, true)],
      ),
      `parallel/sequential: turn p50 ${x(ab.parallelRatio.turnP50)}, p95 ${x(ab.parallelRatio.turnP95)}; ` +
        `understanding p50 ${x(ab.parallelRatio.understandingP50)}, p95 ${x(ab.parallelRatio.understandingP95)}, ` +
        `mean ${x(ab.parallelRatio.understandingMean)}`,
      '',
    );
  }
  if (r.coldStart !== null) {
    const c = r.coldStart;
    const p50max = (v: Summary) => (v.n === 0 ? '-' : `${ms(v.p50)} (${ms(v.max)})`);
    const row = (a: ColdStartArm) => [
      a.name,
      `${a.runs}${a.failed > 0 ? ` (+${a.failed} failed)` : ''}`,
      p50max(a.readyMs),
      p50max(a.startupWarmupMs),
      p50max(a.connectMs),
      p50max(a.turn1Ms),
      p50max(a.turn2Ms),
      p50max(a.turn1OverNominalMs),
      p50max(a.turn2OverNominalMs),
      `${ms(a.turn1EngineMs.p50)} / ${ms(a.turn2EngineMs.p50)}`,
    ];
    out.push(
      `Cold start: a fresh engine per run and arm, one call to ${c.company}, two Tier 3 utterances; ` +
        `p50 across ${c.runsPerArm} runs (max), ms`,
      table(
        [
          'arm',
          'runs',
          'spawn → ready',
          'startup warmup',
          'call setup',
          'turn 1',
          'turn 2',
          'turn 1 over nominal',
          'turn 2 over nominal',
          'engine t1 / t2',
        ],
        [row(c.on), row(c.off)],
      ),
      `paths (tier/warmup, turn 1 → turn 2): on ${shares(c.on.paths)}; off ${shares(c.off.paths)}`,
      `first turn on/off: latency p50 ${x(c.turn1Ratio.latencyP50)}, over nominal p50 ${x(c.turn1Ratio.overNominalP50)}`,
      '',
    );
  }
  out.push(`total ${r.durationS.toFixed(0)} s`);
  return out.join('\n');
}
