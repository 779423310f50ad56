/**
 * Turns one call's inspection events into what the page draws: a step per microstep of the call
 * actor (the event, the transitions actually taken, the active states after it) and the context
 * whenever it changed. Events of the actors the call invokes are left out; their effect shows as
 * the call actor's `done`/`error` steps.
 */
import { performance } from 'node:perf_hooks';
import type { AnyActorRef, AnyStateMachine, InspectionEvent, StateValue } from 'xstate';
import type { CallContext } from '../../../machines/callMachine.ts';
import type { ContextSummary } from './contextSummary.ts';
import { summarizeContext } from './contextSummary.ts';
import type { Viewer } from './inspectHub.ts';
import type { Step } from './replay.ts';
import { labelOf } from './replay.ts';
import { activeStateIds, describeTransition } from './statechart.ts';

export type LiveMessage =
  | { readonly type: 'step'; readonly step: Step }
  | { readonly type: 'context'; readonly t: number; readonly context: ContextSummary };

/** A hub viewer that converts a call actor's inspection events into page messages. */
export function liveFeed(
  root: AnyActorRef,
  machine: AnyStateMachine,
  send: (message: LiveMessage) => void,
): Viewer {
  let lastContext: unknown = null;
  return {
    next(event: InspectionEvent) {
      if (event.actorRef !== root) return;
      if (event.type === '@xstate.microstep') {
        const snapshot = event.snapshot as { value?: StateValue; context?: CallContext };
        const transitions = event._transitions.map((t) => {
          const d = describeTransition(t);
          return { source: d.source, targets: d.targets, label: d.label };
        });
        const type = event.event.type;
        // Internal events no transition listens to (a region's done event) are noise in the log.
        if (transitions.length === 0 && type.startsWith('xstate.')) return;
        send({
          type: 'step',
          step: {
            t: performance.timeOrigin + performance.now(),
            event: type,
            label: transitions.length === 0 ? `${type} (ignored)` : labelOf(transitions),
            inferred: false,
            alternatives: [],
            transitions,
            active: snapshot.value === undefined ? [] : activeStateIds(machine, snapshot.value),
            context: null,
          },
        });
      } else if (event.type === '@xstate.snapshot') {
        const context = (event.snapshot as { context?: CallContext }).context;
        if (context === undefined || context === lastContext) return;
        lastContext = context;
        send({
          type: 'context',
          t: performance.timeOrigin + performance.now(),
          context: summarizeContext(context),
        });
      }
    },
  };
}
