import type { AnyStateNode } from 'xstate';
import { describe, expect, test } from 'vitest';
import { callMachine } from '../../machines/callMachine.ts';
import { activeStateIds, allStates, describeMachine } from '../../src/observability/inspect/statechart.ts';
import type { StateDescription } from '../../src/observability/inspect/statechart.ts';

function machineNodes(node: AnyStateNode): AnyStateNode[] {
  return [node, ...(Object.values(node.states) as AnyStateNode[]).flatMap(machineNodes)];
}

const description = describeMachine(callMachine);
const byId = new Map(allStates(description.root).map((s) => [s.id, s]));
const state = (id: string): StateDescription => {
  const s = byId.get(id);
  if (s === undefined) throw new Error(`no state ${id}`);
  return s;
};

describe('the statechart description, generated from the call machine', () => {
  test('covers every state node, with its type, and every transition of each', () => {
    const nodes = machineNodes(callMachine.root);
    expect([...byId.keys()].sort()).toEqual(nodes.map((n) => n.id).sort());
    for (const node of nodes) {
      const described = state(node.id);
      expect(described.type).toBe(node.type);
      expect(described.key).toBe(node.key);
      const transitions = [...node.transitions.values()].flat().length + (node.always?.length ?? 0);
      expect(described.transitions, node.id).toHaveLength(transitions);
      expect(described.states.map((s) => s.id)).toEqual(
        (Object.values(node.states) as AnyStateNode[]).map((c) => c.id),
      );
    }
  });

  test('nested and parallel states, initial children, final states and invoked actors', () => {
    expect(state('call').initial).toBe('call.awaitingStart');
    expect(state('call.conversation').initial).toBe('call.conversation.listening');
    expect(state('call.conversation.thinking.understanding').type).toBe('parallel');
    expect(state('call.conversation.thinking.understanding').states.map((s) => s.key)).toEqual([
      'capture',
      'detect',
    ]);
    expect(state('call.conversation.thinking.answered').type).toBe('final');
    expect(state('call.conversation.thinking.routing.warm').invoke).toEqual([{ id: 'warmup', src: 'llm' }]);
    expect(state('call.conversation.speaking').invoke.map((i) => i.src)).toEqual(['speaker']);
  });

  test('transitions are labelled with their events: sent, delayed, invoke done/error, state done, eventless', () => {
    const labels = (id: string) =>
      state(id).transitions.map(
        (t) => `${t.label}${t.guard ? ` [${t.guard}]` : ''} -> ${t.targets.join(',') || '(none)'}`,
      );
    expect(labels('call.conversation.listening')).toEqual([
      'caller.transcriptFinal -> call.conversation.thinking',
      'caller.speechStarted -> call.conversation.listening',
      'after silenceTimeout [repromptsExhausted] -> call.closing',
      'after silenceTimeout -> call.conversation.speaking',
    ]);
    expect(labels('call.conversation.thinking.routing.cold.tier2')).toEqual([
      'done tier2 [confident] -> call.conversation.thinking.answered',
      'done tier2 -> call.conversation.thinking.routing.cold.tier3',
      'error tier2 -> call.conversation.thinking.routing.cold.tier3',
    ]);
    expect(labels('call.conversation.thinking')).toContain('done -> call.conversation.speaking');
    expect(labels('call.transferring')).toEqual(['always -> call.ended']);
    expect(labels('call.conversation.thinking.understanding.detect.awaitingCapture')).toEqual([
      'always [in capture.done] -> call.conversation.thinking.understanding.detect.running',
    ]);
    const kinds = new Set(allStates(description.root).flatMap((s) => s.transitions.map((t) => t.kind)));
    expect([...kinds].sort()).toEqual([
      'after',
      'always',
      'done.actor',
      'done.state',
      'error.actor',
      'event',
    ]);
    const reenter = state('call.conversation.listening').transitions[1]!;
    expect(reenter.reenter).toBe(true);
    expect(
      state('call.conversation.speaking').transitions.find((t) => t.targets.length === 0)?.actions,
    ).toEqual(['keepWords']);
  });

  test('is plain JSON with a stable version', () => {
    expect(JSON.parse(JSON.stringify(description))).toEqual(description);
    expect(describeMachine(callMachine).version).toBe(description.version);
  });

  test('maps a state value to every active state id, parallel regions included', () => {
    const ids = activeStateIds(callMachine, {
      conversation: { thinking: { understanding: { capture: 'done', detect: 'running' } } },
    });
    expect(ids).toEqual([
      'call',
      'call.conversation',
      'call.conversation.thinking',
      'call.conversation.thinking.understanding',
      'call.conversation.thinking.understanding.capture',
      'call.conversation.thinking.understanding.capture.done',
      'call.conversation.thinking.understanding.detect',
      'call.conversation.thinking.understanding.detect.running',
    ]);
    expect(activeStateIds(callMachine, 'ended')).toEqual(['call', 'call.ended']);
  });
});
