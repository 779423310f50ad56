/**
 * The call machine as data for the inspector page, generated from the machine definition at run
 * time (never drawn by hand, so it cannot drift): every state node with its type, initial child,
 * invoked actors and transitions (events, delays, invoke done/error, state done, eventless), each
 * with a readable label, its guard and its targets.
 */
import { createHash } from 'node:crypto';
import type { AnyStateMachine, AnyStateNode, AnyTransitionDefinition, StateValue } from 'xstate';

/** What kind of trigger a transition has; the page styles each differently. */
export type TransitionKind = 'event' | 'after' | 'done.actor' | 'error.actor' | 'done.state' | 'always';

export interface TransitionDescription {
  /** The raw event type (`''` for eventless transitions). */
  readonly event: string;
  /** What the page prints: `caller.transcriptFinal`, `after silenceTimeout`, `done tier2`, `always`. */
  readonly label: string;
  readonly kind: TransitionKind;
  readonly source: string;
  /** Target state ids; empty for a transition that only runs actions. */
  readonly targets: readonly string[];
  readonly guard: string | null;
  readonly reenter: boolean;
  readonly actions: readonly string[];
}

export interface StateDescription {
  readonly id: string;
  readonly key: string;
  readonly type: 'atomic' | 'compound' | 'parallel' | 'final' | 'history';
  /** The initial child's id (compound states). */
  readonly initial: string | null;
  readonly invoke: readonly { readonly id: string; readonly src: string }[];
  readonly entry: readonly string[];
  readonly exit: readonly string[];
  readonly tags: readonly string[];
  readonly transitions: readonly TransitionDescription[];
  /** Children in definition order. */
  readonly states: readonly StateDescription[];
}

export interface MachineDescription {
  readonly machineId: string;
  /** Changes whenever the definition changes, so a page can tell it is looking at another machine. */
  readonly version: string;
  readonly root: StateDescription;
}

function actionName(action: unknown): string {
  if (typeof action === 'string') return action;
  if (typeof action === 'function') return action.name || 'action';
  if (typeof action === 'object' && action !== null && 'type' in action) {
    const type = action.type;
    if (typeof type === 'string') return type === 'xstate.assign' ? 'assign' : type;
  }
  return 'action';
}

function guardName(guard: AnyTransitionDefinition['guard']): string | null {
  if (guard === undefined) return null;
  if (typeof guard === 'string') return guard;
  if (typeof guard === 'function') {
    // stateIn('#call.a.b.c'): the last two segments say enough; the page shows the id in full on hover.
    const stateValue = (guard as { stateValue?: unknown }).stateValue;
    if (typeof stateValue === 'string') return `in ${stateValue.split('.').slice(-2).join('.')}`;
    if (stateValue !== undefined) return `in ${JSON.stringify(stateValue).replaceAll('"', '')}`;
    return guard.name || 'guard';
  }
  if (typeof guard === 'object' && 'type' in guard && typeof guard.type === 'string') return guard.type;
  return 'guard';
}

function srcName(src: unknown): string {
  if (typeof src === 'string') return src;
  const id = (src as { id?: unknown } | null)?.id;
  return typeof id === 'string' ? id : 'actor';
}

/** Describes one transition definition (as found on a node, or taken in an inspected microstep). */
export function describeTransition(t: AnyTransitionDefinition): TransitionDescription {
  const node = t.source;
  const event = String(t.eventType ?? '');
  let kind: TransitionKind = 'event';
  let label = event;
  const delayed = node.after.find((a) => a.eventType === event);
  if (delayed !== undefined) {
    kind = 'after';
    label = `after ${String(delayed.delay)}`;
  } else if (event.startsWith('xstate.done.actor.') || event.startsWith('xstate.error.actor.')) {
    const done = event.startsWith('xstate.done.actor.');
    kind = done ? 'done.actor' : 'error.actor';
    const invokeId = event.slice(done ? 'xstate.done.actor.'.length : 'xstate.error.actor.'.length);
    const invoked = node.invoke.find((i) => i.id === invokeId);
    label = `${done ? 'done' : 'error'} ${invoked ? srcName(invoked.src) : invokeId}`;
  } else if (event === '') {
    kind = 'always';
    label = 'always';
  } else if (event.startsWith('xstate.done.state.')) {
    kind = 'done.state';
    const of = event.slice('xstate.done.state.'.length);
    label = of === node.id ? 'done' : `done ${of}`;
  }
  return {
    event,
    label,
    kind,
    source: node.id,
    targets: (t.target ?? []).map((s) => s.id),
    guard: guardName(t.guard),
    reenter: t.reenter,
    actions: t.actions.map(actionName),
  };
}

function describeNode(node: AnyStateNode): StateDescription {
  const transitions: TransitionDescription[] = [];
  for (const list of node.transitions.values()) for (const t of list) transitions.push(describeTransition(t));
  for (const t of node.always ?? []) transitions.push(describeTransition(t));
  const children = Object.values(node.states) as AnyStateNode[];
  return {
    id: node.id,
    key: node.key,
    type: node.type,
    initial: node.type === 'compound' ? (node.initial.target[0]?.id ?? null) : null,
    invoke: node.invoke.map((i) => ({ id: i.id, src: srcName(i.src) })),
    entry: node.entry.map(actionName),
    exit: node.exit.map(actionName),
    tags: [...node.tags],
    transitions,
    states: children.map(describeNode),
  };
}

/** Walks `machine.root` into a JSON-safe description of every state node and transition. */
export function describeMachine(machine: AnyStateMachine): MachineDescription {
  const root = describeNode(machine.root);
  const version = createHash('sha256').update(JSON.stringify(root)).digest('hex').slice(0, 12);
  return { machineId: machine.id, version, root };
}

/** Every state node of a description, depth first. */
export function allStates(root: StateDescription): StateDescription[] {
  const out: StateDescription[] = [];
  const visit = (s: StateDescription) => {
    out.push(s);
    s.states.forEach(visit);
  };
  visit(root);
  return out;
}

/** The ids of every active state node (ancestors included) for a state value, in document order. */
export function activeStateIds(machine: AnyStateMachine, value: StateValue): string[] {
  const ids: string[] = [machine.root.id];
  const visit = (node: AnyStateNode, v: StateValue) => {
    if (typeof v === 'string') {
      const child = node.states[v] as AnyStateNode | undefined;
      if (child !== undefined) ids.push(child.id);
      return;
    }
    for (const [key, sub] of Object.entries(v)) {
      const child = node.states[key] as AnyStateNode | undefined;
      if (child === undefined) continue;
      ids.push(child.id);
      if (sub !== undefined) visit(child, sub);
    }
  };
  visit(machine.root, value);
  return ids;
}
