/**
 * A recording as the page steps through it. The recorder saw state values, not events (that would
 * need inspection on every call), so each step's transitions are inferred from the machine: the
 * transitions out of the states that were active whose targets lead, directly or through eventless
 * states, into the states that became active. Where several fit (e.g. `playback.done` and a
 * barge-in both lead from speaking to listening), all are listed and the step is marked inferred.
 */
import type { AnyStateMachine, StateValue } from 'xstate';
import type { CallRecording, TurnEntry } from './replayRecorder.ts';
import type { ContextSummary } from './contextSummary.ts';
import { summarizeContext } from './contextSummary.ts';
import type { MachineDescription, StateDescription, TransitionDescription } from './statechart.ts';
import { activeStateIds } from './statechart.ts';

/**
 * A transition as the page shows it: one actually taken (live), or for an inferred step an atomic
 * state left for those entered, labelled with the likeliest trigger.
 */
export interface StepTransition {
  readonly source: string;
  readonly targets: readonly string[];
  readonly label: string;
}

export interface Step {
  /** Epoch milliseconds. */
  readonly t: number;
  /** The event type when known (live inspection), else null. */
  readonly event: string | null;
  /** What the log prints for the trigger. */
  readonly label: string;
  /** True when the transitions were inferred from the machine rather than observed. */
  readonly inferred: boolean;
  /** Other triggers that fit an inferred step, likeliest first. */
  readonly alternatives: readonly string[];
  readonly transitions: readonly StepTransition[];
  /** Every active state id after the step. */
  readonly active: readonly string[];
  /** The context after the step; null when unchanged since the previous step. */
  readonly context: ContextSummary | null;
}

export interface CallMeta {
  readonly id: string;
  readonly companyId: string;
  readonly callSid: string | null;
  readonly startedAt: number;
  readonly endedAt: number | null;
  readonly endReason: string | null;
  readonly live: boolean;
  /** Active atomic states now (or at the end). */
  readonly state: readonly string[];
  readonly turns: number;
  readonly watchers: number;
}

export interface ReplayJson {
  readonly call: CallMeta;
  readonly steps: readonly Step[];
  readonly turns: readonly TurnEntry[];
  readonly droppedSteps: number;
}

const MAX_EVENTLESS_HOPS = 6;

/** Infers steps' transitions from a machine description. */
export class TransitionInference {
  readonly #states = new Map<string, StateDescription>();
  readonly #parents = new Map<string, StateDescription>();
  readonly #depth = new Map<string, number>();

  constructor(description: MachineDescription) {
    const visit = (state: StateDescription, depth: number) => {
      this.#states.set(state.id, state);
      this.#depth.set(state.id, depth);
      for (const child of state.states) {
        this.#parents.set(child.id, state);
        visit(child, depth + 1);
      }
    };
    visit(description.root, 0);
  }

  /**
   * The transitions that may explain going from one active set to the next, the likeliest first:
   * the most specific source (in XState a child's transition wins over its ancestors'), then the
   * fewest eventless hops. A state's `done` is left out when a transition inside it explains the
   * step, since it only follows from that one.
   */
  explain(from: ReadonlySet<string>, to: ReadonlySet<string>): TransitionDescription[] {
    const entered = new Set([...to].filter((id) => !from.has(id)));
    const found: { t: TransitionDescription; hops: number }[] = [];
    for (const id of from) {
      for (const t of this.#states.get(id)?.transitions ?? []) {
        if (entered.size === 0) {
          // Same states, new context: a transition that only ran actions.
          if (t.targets.length === 0 && t.kind !== 'always') found.push({ t, hops: 0 });
          continue;
        }
        const hops = this.#via(t, to, entered, 0);
        if (hops !== null) found.push({ t, hops });
      }
    }
    const depth = (id: string) => this.#depth.get(id) ?? 0;
    return found
      .filter(
        ({ t }) =>
          t.kind !== 'done.state' ||
          !found.some((other) => other.t.kind !== 'done.state' && other.t.source.startsWith(`${t.source}.`)),
      )
      .sort((a, b) => depth(b.t.source) - depth(a.t.source) || a.hops - b.hops)
      .map(({ t }) => t);
  }

  /** The eventless hops after `t` until the new configuration is entered, or null if it is not. */
  #via(
    t: TransitionDescription,
    to: ReadonlySet<string>,
    entered: ReadonlySet<string>,
    hops: number,
  ): number | null {
    let best: number | null = null;
    for (const target of t.targets) {
      const h = this.#reach(target, to, entered, hops);
      if (h !== null && (best === null || h < best)) best = h;
    }
    return best;
  }

  /**
   * Entering `target`: the hops until the new configuration, following eventless transitions and
   * the `done` of the compound (or parallel) state a final state completes.
   */
  #reach(target: string, to: ReadonlySet<string>, entered: ReadonlySet<string>, hops: number): number | null {
    if (entered.has(target)) return hops;
    if (to.has(target) || hops >= MAX_EVENTLESS_HOPS) return null;
    const state = this.#states.get(target);
    if (state === undefined) return null;
    const next: TransitionDescription[] = state.transitions.filter((t) => t.kind === 'always');
    const parent = this.#parents.get(target);
    if (state.type === 'final' && parent !== undefined) {
      const doneOf = (s: StateDescription) =>
        s.transitions.filter((t) => t.event === `xstate.done.state.${s.id}`);
      next.push(...doneOf(parent));
      const grand = this.#parents.get(parent.id);
      // A region's final state completes its parallel parent once the other regions are done.
      if (grand?.type === 'parallel') next.push(...doneOf(grand));
    }
    let best: number | null = null;
    for (const t of next) {
      const h = this.#via(t, to, entered, hops + 1);
      if (h !== null && (best === null || h < best)) best = h;
    }
    return best;
  }
}

/** The atomic states among a set of active ids (those with no active child). */
export function leafStates(active: readonly string[]): string[] {
  return active.filter((id) => !active.some((other) => other.startsWith(`${id}.`)));
}

/** The log's trigger text for transitions taken together (a microstep can take several). */
export function labelOf(transitions: readonly { label: string }[]): string {
  const labels = [...new Set(transitions.map((t) => t.label))];
  return labels.length === 0 ? '—' : labels.join(' + ');
}

/** Steps of a recording, with inferred transitions and the context where it changed. */
export function replaySteps(
  recording: CallRecording,
  machine: AnyStateMachine,
  inference: TransitionInference,
): Step[] {
  const steps: Step[] = [];
  let previous: ReadonlySet<string> | null = null;
  let previousContext: unknown = null;
  for (const step of recording.steps) {
    const active = activeStateIds(machine, JSON.parse(step.value) as StateValue);
    const now = new Set(active);
    const candidates = previous === null ? [] : inference.explain(previous, now);
    const likeliest = candidates[0];
    // What certainly happened: these atomic states were left for those. Only the trigger is a guess.
    const before = previous;
    const entered = before === null ? [] : leafStates(active).filter((id) => !before.has(id));
    const exited = before === null ? [] : leafStates([...before]).filter((id) => !now.has(id));
    steps.push({
      t: step.t,
      event: previous === null ? 'xstate.init' : null,
      label: previous === null ? 'start' : (likeliest?.label ?? '—'),
      inferred: previous !== null,
      alternatives: [...new Set(candidates.slice(1).map((t) => t.label))].filter(
        (l) => l !== likeliest?.label,
      ),
      transitions:
        entered.length === 0
          ? []
          : exited.map((source) => ({ source, targets: entered, label: likeliest?.label ?? '—' })),
      active,
      context: step.context === previousContext ? null : summarizeContext(step.context),
    });
    previous = now;
    previousContext = step.context;
  }
  return steps;
}

export function callMeta(
  recording: CallRecording,
  machine: AnyStateMachine,
  options: { live: boolean; watchers: number },
): CallMeta {
  const last = recording.steps.at(-1);
  const state = last ? leafStates(activeStateIds(machine, JSON.parse(last.value) as StateValue)) : [];
  return {
    id: recording.id,
    companyId: recording.companyId,
    callSid: recording.callSid,
    startedAt: recording.startedAt,
    endedAt: recording.endedAt,
    endReason: recording.endReason,
    live: options.live,
    state,
    turns: recording.turns.length,
    watchers: options.watchers,
  };
}

export function replayOf(
  recording: CallRecording,
  machine: AnyStateMachine,
  inference: TransitionInference,
  options: { live: boolean; watchers: number },
): ReplayJson {
  return {
    call: callMeta(recording, machine, options),
    steps: replaySteps(recording, machine, inference),
    turns: recording.turns,
    droppedSteps: recording.droppedSteps,
  };
}
