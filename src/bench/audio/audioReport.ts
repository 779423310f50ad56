/** The Media Streams audio bench's result shape and its text rendering. */
import type { BenchMachine, CpuShares } from '../machineCpu.ts';
import type { MemorySample } from '../protocol.ts';
import { table } from '../report.ts';
import type { Summary } from '../stats.ts';
import type { CallersWindow } from './mediaCallers.ts';
import { TRACE_STAGES } from './mediaCallers.ts';
import type { ServerWindow } from './serverProbe.ts';

export type ArmName = 'relay' | 'engine';

/** "Sustained": the server's event loop kept up and so did the callers. */
export const SUSTAINED_LOOP_DELAY_P99_MS = 20;

export interface AudioLevelResult {
  readonly calls: number;
  readonly server: ServerWindow;
  /** Server CPU ÷ calls: percent of one core per call. */
  readonly cpuPerCallPct: number;
  /** Whole machine (every process, every core) busy time ÷ calls, percent of one core per call. */
  readonly machinePerCallPct: number | null;
  readonly machine: CpuShares | null;
  /**
   * Busy core time not used by the server, the callers or the fakes: other processes, and kernel
   * work not charged to any of them. A window with a large share is not comparable.
   */
  readonly otherCorePct: number | null;
  /** After a full collection: idle (no calls) before the level, and with the level's calls live. */
  readonly memory: {
    readonly idle: MemorySample;
    readonly loaded: MemorySample;
    readonly rssPerCallBytes: number;
    readonly heapPerCallBytes: number;
  };
  readonly callers: CallersWindow;
  readonly generatorCpuCorePct: number;
  /** The fake providers' processes (one, or two for the engine: audio fakes and LLM). */
  readonly fakesCpuCorePct: number;
  readonly sustained: boolean;
  /** Why the level was not sustained (empty when it was). */
  readonly reasons: readonly string[];
}

export interface AudioArmResult {
  readonly arm: ArmName;
  /** Which round of the bench (1-based; `--rounds`). */
  readonly round: number;
  /** False when the arm could not run (e.g. the engine has no Media Streams endpoint); see note. */
  readonly ran: boolean;
  readonly note: string | null;
  readonly levels: readonly AudioLevelResult[];
  /** The largest level sustained; null when none was. */
  readonly sustainedCalls: number | null;
  /** The server's upstream was served over TLS (the fakes answered on https:// or wss://; `--tls`). */
  readonly upstreamTls: boolean;
}

export interface AudioComparison {
  /**
   * Per level run by both arms: the engine's median CPU per call ÷ the relay's, over the rounds
   * (one round: the two figures), with each round's own ratio.
   */
  readonly cpuPerCallRatio: readonly {
    readonly calls: number;
    readonly ratio: number | null;
    readonly rounds: number;
    readonly engineCpuPerCallPct: number;
    readonly relayCpuPerCallPct: number;
    readonly roundRatios: readonly number[];
  }[];
  /** The largest level each arm sustained in every round. */
  readonly sustained: { readonly engine: number | null; readonly relay: number | null };
}

export interface AudioBenchResult {
  readonly machine: BenchMachine;
  readonly config: Record<string, unknown>;
  readonly arms: readonly AudioArmResult[];
  readonly comparison: AudioComparison | null;
  readonly durationS: number;
}

function num(x: number | null | undefined, digits = 1): string {
  return x === null || x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(digits);
}

function triple(s: Summary, digits = 0): string {
  return s.n === 0 ? '-' : `${num(s.p50, digits)}/${num(s.p95, digits)}/${num(s.p99, digits)}`;
}

function kib(bytes: number): string {
  return (bytes / 1024).toFixed(1);
}

const ARM_TITLES: Record<ArmName, string> = {
  relay: 'Bare relay (src/bench/audio/bareRelay.ts)',
  engine: 'Engine (Media Streams)',
};

function armText(arm: AudioArmResult, rounds: number): string {
  const out = [
    `## ${ARM_TITLES[arm.arm]}${arm.upstreamTls ? ', upstream over TLS' : ''}${rounds > 1 ? `, round ${arm.round} of ${rounds}` : ''}`,
    '',
  ];
  if (!arm.ran) return [...out, `not run: ${arm.note ?? 'unknown reason'}`].join('\n');
  if (arm.note !== null) out.push(arm.note, '');
  out.push(
    table(
      [
        'calls',
        'live',
        'CPU/call %core',
        'server CPU %',
        'loop p99 ms',
        'ELU',
        'RSS KiB/call',
        'heap KiB/call',
        'late frames',
        'speech end→audio p50/p95/p99 ms',
        'no reply',
        'jitter p50/p99 ms',
        'reply speed ×',
        'underruns',
        'gen CPU %',
        'fakes CPU %',
        'machine %/call',
        'others %',
        'sustained',
      ],
      arm.levels.map((l) => [
        String(l.calls),
        String(l.server.liveCalls),
        num(l.cpuPerCallPct, 3),
        num(l.server.cpuCorePct, 1),
        num(l.server.loopDelayMs.p99, 1),
        num(l.server.eventLoopUtilization, 2),
        kib(l.memory.rssPerCallBytes),
        kib(l.memory.heapPerCallBytes),
        `${l.callers.lateFrames}/${l.callers.framesSent}`,
        triple(l.callers.speechEndToFirstAudioMs),
        String(l.callers.noReply),
        l.callers.outboundJitterMs.n === 0
          ? '-'
          : `${num(l.callers.outboundJitterMs.p50, 1)}/${num(l.callers.outboundJitterMs.p99, 1)}`,
        num(l.callers.replySpeed.p50, 2),
        String(l.callers.underruns),
        num(l.generatorCpuCorePct, 0),
        num(l.fakesCpuCorePct, 0),
        num(l.machinePerCallPct, 3),
        num(l.otherCorePct, 0),
        l.sustained ? 'yes' : 'no',
      ]),
    ),
  );
  const withStages = arm.levels.filter((l) => l.callers.traces > 0);
  if (withStages.length > 0) {
    out.push('', 'Per stage, from the engine trace frames (p50/p95/p99 ms):', '');
    out.push(
      table(
        ['calls', 'traces (by audio source)', ...TRACE_STAGES],
        withStages.map((l) => [
          String(l.calls),
          `${l.callers.traces} (${Object.entries(l.callers.traceSources)
            .map(([k, n]) => `${k} ${n}`)
            .join(', ')})`,
          ...TRACE_STAGES.map((s) => triple(l.callers.stages[s])),
        ]),
      ),
    );
  }
  const notes = arm.levels.filter((l) => !l.sustained || Object.keys(l.callers.errors).length > 0);
  for (const l of notes) {
    const errors = Object.entries(l.callers.errors)
      .map(([k, n]) => `${n}× ${k}`)
      .join('; ');
    out.push(
      '',
      `${l.calls} calls: ${l.sustained ? 'sustained' : `not sustained (${l.reasons.join('; ')})`}` +
        (errors === '' ? '' : `; caller errors: ${errors}`),
    );
  }
  out.push('', `Sustained: ${arm.sustainedCalls === null ? 'no level' : `${arm.sustainedCalls} calls`}`);
  return out.join('\n');
}

export function formatAudioReport(r: AudioBenchResult): string {
  const m = r.machine;
  const out = [
    '# Media Streams audio bench',
    '',
    `${m.cpus} CPUs (${m.cpuModel}), ${m.memoryGiB.toFixed(1)} GiB, Node ${m.node}, ${m.platform}, ${m.date}`,
    `config: ${JSON.stringify(r.config)}`,
    '',
  ];
  const rounds = Math.max(1, ...r.arms.map((a) => a.round));
  for (const arm of r.arms) out.push(armText(arm, rounds), '');
  const c = r.comparison;
  if (c !== null) {
    out.push(`## Engine vs bare relay${rounds > 1 ? ` (medians of ${rounds} rounds)` : ''}`, '');
    for (const l of c.cpuPerCallRatio) {
      const spread =
        l.roundRatios.length > 1 ? `; rounds ${l.roundRatios.map((x) => `${x.toFixed(2)}×`).join(', ')}` : '';
      out.push(
        `- ${l.calls} calls: engine CPU per call ${num(l.engineCpuPerCallPct, 3)} against the relay's ${num(l.relayCpuPerCallPct, 3)} % of a core = ` +
          `${l.ratio === null ? '-' : `${l.ratio.toFixed(2)}×`} (target ≤ 1.10×${spread})`,
      );
    }
    out.push(
      `- calls sustained${rounds > 1 ? ' in every round' : ''}: engine ${c.sustained.engine ?? 'none'}, relay ${c.sustained.relay ?? 'none'}`,
      '',
    );
  }
  out.push(
    "CPU/call: the server process's CPU time ÷ wall time ÷ calls (percent of one core). Late frames: frames the",
    `callers sent > 10 ms after their due time (the generator fell behind). Sustained: loop p99 < ${SUSTAINED_LOOP_DELAY_P99_MS} ms,`,
    `late frames within ${String(r.config['lateFrameTolerance'])} of those sent, every call connected and live. Jitter: |arrival gap − audio duration of the previous frame| within a`,
    'reply; reply speed: audio ms delivered per wall ms (1 = paced in real time, higher = sent ahead, buffered by Twilio).',
    `Took ${r.durationS.toFixed(0)} s.`,
  );
  return out.join('\n');
}
