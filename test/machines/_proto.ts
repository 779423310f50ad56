import { getShortestPaths, getStateNodes } from 'xstate/graph';
import type { AnyStateNode } from 'xstate';
import { callMachine } from '../../machines/callMachine.ts';
import { policy, situation, tier, answer } from './harness.ts';

const srcById = new Map<string, string>();
const allNodes: AnyStateNode[] = [callMachine.root, ...getStateNodes(callMachine.root)];
for (const n of allNodes) for (const inv of n.invoke) srcById.set(inv.id, String(inv.src));
const done = (id: string, output: unknown) => ({ type: `xstate.done.actor.${id}`, output, actorId: id });
const fail = (id: string) => ({ type: `xstate.error.actor.${id}`, error: new Error('boom'), actorId: id });
const outcomes: Record<string, unknown[]> = {
  capture: [{ slots: {}, changed: [], source: 'f', providerMs: 0, durationMs: 1 }, { slots: { equipment: 'x' }, changed: ['equipment'], source: 'f', providerMs: 0, durationMs: 1 }],
  detect: [situation('cat', 0.9), situation(null, 0.3), situation('cat', 0.9, { wantsHuman: true })],
  tier1: [tier(0.9, 'scn-1'), tier(0.3, null)],
  warmupGate: [{ warm: true, reason: 'r', durationMs: 0 }, { warm: false, reason: 'r', durationMs: 0 }],
  tier2: [tier(0.9, 'scn-2'), tier(0.9, 'scn-x', { action: 'transfer' }), tier(0.9, 'scn-e', { endsCall: true }), tier(0.2, null)],
  llm: [answer('llm')],
  fallbackLine: [{ kind: 'noMatchFound', text: 'fb', durationMs: 1 }],
  speaker: [],
};
const lifecycle = [
  { type: 'twilio.start', callSid: 'CA1' },
  { type: 'caller.transcriptFinal', text: 'hello' },
  { type: 'caller.speechStarted' },
  { type: 'playback.done' },
  { type: 'caller.dtmf', digit: '0' },
  { type: 'twilio.stop' },
];
function events(s: any): any[] {
  const evs: any[] = [...lifecycle];
  for (const n of s._nodes as AnyStateNode[]) for (const a of n.after) if (!evs.some((e) => e.type === a.eventType)) evs.push({ type: a.eventType });
  for (const id of Object.keys(s.children)) {
    const src = srcById.get(id)!;
    for (const o of outcomes[src] ?? []) evs.push(done(id, o));
    evs.push(fail(id));
  }
  return evs;
}
function ser(s: any): string {
  const c = s.context;
  return JSON.stringify([s.value, c.reply?.then ?? null, c.reply?.interruptible ?? null, c.reprompts, Math.min(c.consecutiveFallbacks, c.policy.escalateAfterFallbacks), c.work.warmup.status, !!(c.situation?.flags.wantsHuman || c.situation?.flags.emergency)]);
}
for (const variant of [{}, { llmEnabled: false }, { warmupEnabled: false }, { canTransfer: false }]) {
  const t0 = performance.now();
  const paths = getShortestPaths(callMachine as any, {
    input: { callId: 'c', companyId: 'a', policy: { ...policy, ...variant } },
    events: events as any,
    filterEvents: (s: any, e: any) => s.can(e),
    serializeState: ser as any,
    stopWhen: (s: any) => s.status !== 'active',
  });
  const steps = new Set<string>();
  const prefixes = new Set<string>();
  for (const p of paths) { const k = p.steps.map(st=>st.event.type).join('>'); steps.add(k); }
  const keys = paths.map(p=>p.steps.map(st=>JSON.stringify(st.event)).join('>'));
  const leaves = keys.filter(k => !keys.some(o => o !== k && o.startsWith(k + '>')) );
  console.log(JSON.stringify(variant), paths.length, 'leaves', leaves.length, 'maxlen', Math.max(...paths.map(p=>p.steps.length)), Math.round(performance.now()-t0),'ms');
  const vals = new Set(paths.map(p=>JSON.stringify(p.state.value)));
  console.log(' distinct values', vals.size);
}
