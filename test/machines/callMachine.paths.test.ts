/**
 * Path coverage for the call machine, generated from the machine itself with xstate/graph.
 *
 * 1. `getShortestPaths` walks the real machine (pure `machine.transition`, nothing runs) with an
 *    explicit event list: the caller/Twilio lifecycle events, every armed timer, and a scripted set of
 *    done/error outcomes for every actor the current state has invoked. A state is identified by its
 *    value plus the few context fields the guards read, so guarded branches are explored too.
 * 2. Each generated path is replayed on a live actor (the harness's fakes are driven by hand: a done
 *    step resolves the pending fake request with the step's output, an error step rejects it or fails
 *    the speaker, a timer step fires that exact SimulatedClock timer). After every step the live state
 *    (value and guard-relevant context, as serialized for the graph) must equal the graph's, the actor
 *    must not have errored, and every in-flight request must belong to a running child and vice versa
 *    (nothing orphaned, nothing aborted too early); likewise for the speaker.
 *    Paths: one shortest path to every distinct state (replayed via the leaves of the shortest-path
 *    tree), plus one path ending in each machine transition (transition cover), for four policies.
 * 3. Coverage is measured on the live replays (microstep inspection, so transient `always` states
 *    count): every state node and every transition of the machine must be taken, and the transition
 *    table is pinned so that removing, adding or retargeting a transition fails here.
 */
import { describe, expect, it } from 'vitest';
import { createEmptyActor, SimulatedClock } from 'xstate';
import type { AnyStateMachine, AnyStateNode, AnyTransitionDefinition } from 'xstate';
import { getAdjacencyMap, getShortestPaths, getStateNodes } from 'xstate/graph';
import { callMachine } from '../../machines/callMachine.ts';
import type { CallEvent, CallPolicy } from '../../machines/callMachine.ts';
import type { CaptureResult, FallbackLine, WarmupDecision } from '../../machines/types.ts';
import {
  answer,
  Deferred,
  policy,
  settle,
  situation,
  SPEAKER_FAILED,
  startCall,
  tier,
  transitionKey,
} from './harness.ts';
import type { CallHarness, Script } from './harness.ts';

type CallSnapshot = ReturnType<typeof callMachine.transition>;
/** Graph steps carry the machine's internal events too (actor done/error, timers). */
type GraphEvent = { type: string; output?: unknown; error?: unknown; actorId?: string; outcome?: string };
type Adjacency = Record<
  string,
  { state: CallSnapshot; transitions: Record<string, { event: GraphEvent; state: CallSnapshot }> }
>;
interface GraphPath {
  steps: { state: CallSnapshot; event: GraphEvent }[];
  state: CallSnapshot;
}

// ---------------------------------------------------------------------------------------------------
// The machine's structure
// ---------------------------------------------------------------------------------------------------

const allNodes: AnyStateNode[] = [callMachine.root, ...getStateNodes(callMachine.root)];

/** Invoke id -> actor src name ('capture', 'llm', …). */
const srcByInvokeId = new Map<string, string>();
for (const node of allNodes) {
  for (const inv of node.invoke) srcByInvokeId.set(inv.id, typeof inv.src === 'string' ? inv.src : 'inline');
}

function transitionsOf(node: AnyStateNode): AnyTransitionDefinition[] {
  return [...[...node.transitions.values()].flat(), ...(node.always ?? [])];
}

const short = (id: string) => id.replace(/^call\./, '');

/** A readable event name: actor and timer events by src / delay instead of generated ids. */
function eventName(type: string): string {
  const actor = /^xstate\.(done|error)\.actor\.(.+)$/.exec(type);
  if (actor) return `${actor[1]}(${srcByInvokeId.get(actor[2]!) ?? actor[2]})`;
  const timer = /^xstate\.after\.([^.]+)\./.exec(type);
  if (timer) return `after(${timer[1]})`;
  if (type.startsWith('xstate.done.state.')) return 'done';
  return type === '' ? 'always' : type;
}

function describeTransition(t: AnyTransitionDefinition): string {
  const guard = typeof t.guard === 'string' ? ` [${t.guard}]` : t.guard === undefined ? '' : ' [inline]';
  const targets = (t.target ?? []).map((n: AnyStateNode) => short(n.id)).join(',') || '(stay)';
  const event = eventName(t.eventType as string);
  return `${short(t.source.id)} ${event}${guard} -> ${targets}${t.reenter ? ' (reenter)' : ''}`;
}

/**
 * The machine's transition table. Pinned on purpose: a transition removed, added or retargeted must
 * be a deliberate change to this list (and the coverage tests below then prove it is still taken).
 */
const TRANSITION_TABLE = [
  'call twilio.stop -> ended',
  'awaitingStart twilio.start -> greeting',
  'awaitingStart after(startTimeout) -> failed',
  'greeting playback.done -> conversation',
  'greeting caller.speechStarted -> conversation',
  'greeting caller.dtmf [asksForPerson] -> conversation.speaking',
  'greeting caller.dtmf [asksToHangUp] -> closing',
  'greeting caller.transcriptFinal -> conversation.thinking',
  'greeting error(speaker) -> failed',
  'conversation caller.dtmf [asksForPerson] -> conversation.speaking',
  'conversation caller.dtmf [asksToHangUp] -> closing',
  'conversation after(maxCallDuration) [replyThenTransfer] -> transferring',
  'conversation after(maxCallDuration) -> closing',
  'conversation.listening caller.transcriptFinal -> conversation.thinking',
  'conversation.listening caller.speechStarted -> conversation.listening (reenter)',
  'conversation.listening after(silenceTimeout) [repromptsExhausted] -> closing',
  'conversation.listening after(silenceTimeout) -> conversation.speaking',
  'conversation.thinking caller.speechStarted -> conversation.listening',
  'conversation.thinking caller.transcriptFinal -> conversation.thinking (reenter)',
  'conversation.thinking done -> conversation.speaking',
  'conversation.thinking after(turnTimeout) -> conversation.thinking.fallingBack',
  'conversation.thinking.understanding done -> conversation.thinking.reconciling',
  'conversation.thinking.understanding.capture.running done(capture) -> conversation.thinking.understanding.capture.done',
  'conversation.thinking.understanding.capture.running error(capture) -> conversation.thinking.understanding.capture.done',
  'conversation.thinking.understanding.detect.ordering always [understandsInOrder] -> conversation.thinking.understanding.detect.awaitingCapture',
  'conversation.thinking.understanding.detect.ordering always -> conversation.thinking.understanding.detect.running',
  'conversation.thinking.understanding.detect.awaitingCapture always [inline] -> conversation.thinking.understanding.detect.running',
  'conversation.thinking.understanding.detect.running done(detect) -> conversation.thinking.understanding.detect.done',
  'conversation.thinking.understanding.detect.running error(detect) -> conversation.thinking.understanding.detect.done',
  'conversation.thinking.reconciling always [needsRedetect] -> conversation.thinking.redetecting',
  'conversation.thinking.reconciling always -> conversation.thinking.routing',
  'conversation.thinking.redetecting done(detect) -> conversation.thinking.routing',
  'conversation.thinking.redetecting error(detect) -> conversation.thinking.routing',
  'conversation.thinking.routing.tier1 done(tier1) [inline] -> conversation.thinking.answered',
  'conversation.thinking.routing.tier1 done(tier1) -> conversation.thinking.routing.gatingWarmup',
  'conversation.thinking.routing.tier1 error(tier1) -> conversation.thinking.routing.gatingWarmup',
  'conversation.thinking.routing.gatingWarmup done(warmupGate) -> conversation.thinking.routing.deciding',
  'conversation.thinking.routing.gatingWarmup error(warmupGate) -> conversation.thinking.routing.cold',
  'conversation.thinking.routing.gatingWarmup always [warmupImpossible] -> conversation.thinking.routing.cold',
  'conversation.thinking.routing.deciding always [warmupApproved] -> conversation.thinking.routing.warm',
  'conversation.thinking.routing.deciding always -> conversation.thinking.routing.cold',
  'conversation.thinking.routing.warm done(llm) -> (stay)',
  'conversation.thinking.routing.warm error(llm) -> (stay)',
  'conversation.thinking.routing.warm.tier2 done(tier2) [inline] -> conversation.thinking.answered',
  'conversation.thinking.routing.warm.tier2 done(tier2) -> conversation.thinking.routing.warm.adoptingWarmup',
  'conversation.thinking.routing.warm.tier2 error(tier2) -> conversation.thinking.routing.warm.adoptingWarmup',
  'conversation.thinking.routing.warm.adoptingWarmup always [warmupAnswered] -> conversation.thinking.answered',
  'conversation.thinking.routing.warm.adoptingWarmup always [warmupFailed] -> conversation.thinking.fallingBack',
  'conversation.thinking.routing.cold.tier2 done(tier2) [inline] -> conversation.thinking.answered',
  'conversation.thinking.routing.cold.tier2 done(tier2) -> conversation.thinking.routing.cold.tier3',
  'conversation.thinking.routing.cold.tier2 error(tier2) -> conversation.thinking.routing.cold.tier3',
  'conversation.thinking.routing.cold.tier3 done(llm) -> conversation.thinking.answered',
  'conversation.thinking.routing.cold.tier3 error(llm) -> conversation.thinking.fallingBack',
  'conversation.thinking.routing.cold.tier3 always [llmDisabled] -> conversation.thinking.fallingBack',
  'conversation.thinking.fallingBack done(fallbackLine) -> conversation.thinking.answered',
  'conversation.thinking.fallingBack error(fallbackLine) -> conversation.thinking.answered',
  'conversation.thinking.fallingBack after(turnTimeout) -> conversation.thinking.answered',
  'conversation.thinking.fallingBack always [callerNeedsPerson] -> conversation.thinking.answered',
  'conversation.speaking playback.done [replyThenTransfer] -> transferring',
  'conversation.speaking playback.done [replyThenHangup] -> hangingUp',
  'conversation.speaking playback.done -> conversation.listening',
  'conversation.speaking caller.speechStarted [replyInterruptible] -> conversation.listening',
  'conversation.speaking caller.transcriptFinal [replyInterruptible] -> conversation.thinking',
  'conversation.speaking caller.transcriptFinal -> (stay)',
  'conversation.speaking error(speaker) -> failed',
  'closing playback.done -> hangingUp',
  'closing error(speaker) -> hangingUp',
  'transferring always -> ended',
  'hangingUp always -> ended',
];

/** Every way a call can end, as `<final state>:<endReason>`. */
const END_ROUTES = [
  'ended:caller-silent', // reprompts exhausted -> closing line -> hang-up
  'ended:completed', // a reply that ends the call -> hang-up
  'ended:dtmf-hangup', // the company's hang-up key -> closing line -> hang-up
  'ended:max-call-duration', // closing line -> hang-up
  'ended:stream-stopped', // twilio.stop from anywhere
  'ended:transfer', // dtmf 0, escalation, caller needs a person, scenario action
  'failed:speaker-failed',
  'failed:start-timeout',
];

// ---------------------------------------------------------------------------------------------------
// Traversal
// ---------------------------------------------------------------------------------------------------

const captured = (changed: string[]): CaptureResult => ({
  slots: Object.fromEntries(changed.map((name) => [name, `new ${name}`])),
  changed,
  source: 'fake',
  providerMs: 0,
  durationMs: 1,
});
const gate = (warm: boolean): WarmupDecision => ({ warm, reason: warm ? 'warm' : 'cold', durationMs: 0 });
const fallbackLine: FallbackLine = {
  kind: 'noMatchFound',
  text: 'Sorry, could you rephrase?',
  durationMs: 1,
};

/** What each actor may answer, by name. Every actor can also fail; the speaker only ever fails here. */
const OUTCOMES: Record<string, Record<string, unknown>> = {
  capture: { nothingNew: captured([]), newCriticalSlot: captured(['equipment']) },
  detect: {
    sure: situation('heating', 0.9),
    unsure: situation(null, 0.3),
    wantsHuman: situation('heating', 0.9, { wantsHuman: true }),
  },
  tier1: { hit: tier(0.9, 'scn-1'), miss: tier(0.3, null) },
  warmupGate: { warm: gate(true), cold: gate(false) },
  tier2: {
    hit: tier(0.9, 'scn-2'),
    hitTransfer: tier(0.9, 'scn-transfer', { action: 'transfer' }),
    hitEndsCall: tier(0.9, 'scn-bye', { endsCall: true }),
    miss: tier(0.2, null),
  },
  llm: { answer: answer('an llm answer') },
  fallbackLine: { line: fallbackLine },
  speaker: {},
};

const LIFECYCLE: CallEvent[] = [
  { type: 'twilio.start', callSid: 'CA-1' },
  { type: 'caller.transcriptFinal', text: 'my boiler is broken' },
  { type: 'caller.speechStarted' },
  { type: 'playback.done' },
  { type: 'caller.dtmf', digit: '0' },
  { type: 'caller.dtmf', digit: '9' },
  { type: 'twilio.stop' },
];

function eventsFor(snapshot: CallSnapshot): GraphEvent[] {
  const events: GraphEvent[] = [...LIFECYCLE];
  const timers = new Set(snapshot._nodes.flatMap((node) => node.after.map((t) => t.eventType)));
  for (const type of timers) events.push({ type });
  for (const id of Object.keys(snapshot.children)) {
    const src = srcByInvokeId.get(id);
    if (src === undefined) throw new Error(`unknown child ${id}`);
    // The warmup settles without leaving `warm`, so its child outlives its answer (and the graph's
    // unstarted children never settle): it can only answer while the machine records it as running.
    if (id === 'warmup' && snapshot.context.work.warmup.status !== 'running') continue;
    for (const [outcome, output] of Object.entries(OUTCOMES[src] ?? {})) {
      events.push({ type: `xstate.done.actor.${id}`, output, actorId: id, outcome });
    }
    events.push({ type: `xstate.error.actor.${id}`, error: new Error(`${src} failed`), actorId: id });
  }
  return events;
}

/**
 * The state value plus exactly the context the guards read, and only where they read it (a field is
 * always rewritten before it is read again elsewhere), bucketed so the space stays finite. Nothing
 * else may decide a transition, or a replay could legitimately diverge from its path.
 */
function serializeState(snapshot: CallSnapshot): string {
  const c = snapshot.context;
  const w = c.work;
  const inState = (value: object | string) => snapshot.matches(value as never);
  return JSON.stringify({
    value: snapshot.value,
    // how the call is ending (null until it does): tells the end routes apart
    endReason: c.endReason,
    // carried across turns
    reprompts: Math.min(c.reprompts, c.policy.maxReprompts + 1),
    fallbacks: Math.min(c.consecutiveFallbacks, c.policy.escalateAfterFallbacks),
    needsPerson: c.situation?.flags.wantsHuman === true || c.situation?.flags.emergency === true,
    // read by reconciling
    ...(inState({ conversation: { thinking: 'understanding' } }) && {
      newCriticalSlot: w.capture?.changed.some((name) => c.policy.criticalSlots.includes(name)) ?? false,
      sureDetect: (w.preDetect?.confidence ?? 0) >= c.policy.detectConfidenceThreshold,
    }),
    // read by adoptingWarmup
    ...(inState({ conversation: { thinking: { routing: 'warm' } } }) && { warmup: w.warmup.status }),
    // read when the reply has been spoken
    ...((inState({ conversation: 'speaking' }) || inState('closing')) && {
      then: c.reply?.then,
      interruptible: c.reply?.interruptible,
    }),
  });
}

function traversalOptions(p: CallPolicy) {
  return {
    input: { callId: 'call-1', companyId: 'acme', policy: p },
    events: (s: CallSnapshot) => eventsFor(s) as CallEvent[],
    // Caller and Twilio events only where the machine listens; timers and actor outcomes happen
    // whether it listens or not (an actor failure nobody handles must show up as an error state).
    filterEvents: (s: CallSnapshot, e: CallEvent) => e.type.startsWith('xstate.') || s.can(e),
    serializeState: (s: CallSnapshot) => serializeState(s),
    stopWhen: (s: CallSnapshot) => s.status !== 'active',
    // A state space that stops being finite (a counter no guard bounds any more) fails fast.
    limit: 50_000,
  };
}

/** The machine transitions (by `transitionKey`) one pure `machine.transition` takes, via inspection. */
function transitionsTakenBy(state: CallSnapshot, event: GraphEvent): string[] {
  const taken: string[] = [];
  const probe = createEmptyActor();
  const inspection = probe.system.inspect((ev) => {
    if (ev.type === '@xstate.microstep') for (const t of ev._transitions) taken.push(transitionKey(t));
  });
  const scope = {
    self: probe,
    id: '',
    sessionId: 'probe',
    logger: () => {},
    defer: () => {},
    emit: () => {},
    system: probe.system,
    stopChild: () => {},
    actionExecutor: () => {},
  } as unknown as Parameters<typeof callMachine.transition>[2];
  callMachine.transition(state, event as CallEvent, scope);
  inspection.unsubscribe();
  return taken;
}

/**
 * Two families of paths per policy:
 * - state cover: `getShortestPaths`, one shortest path to every distinct (serialized) state;
 * - transition cover: for every machine transition, the shortest path to a state from which some
 *   event takes it, plus that event (the shortest-path tree has only one way into each state).
 */
function generatePaths(p: CallPolicy): { stateCover: GraphPath[]; transitionCover: GraphPath[] } {
  const options = traversalOptions(p);
  const stateCover = getShortestPaths(callMachine, options) as unknown as GraphPath[];
  const shortestTo = new Map(stateCover.map((path) => [serializeState(path.state), path]));
  const logic: AnyStateMachine = callMachine;
  const adjacency = getAdjacencyMap(logic, options) as unknown as Adjacency;
  const byLength = [...Object.entries(adjacency)].sort(
    ([a], [b]) => shortestTo.get(a)!.steps.length - shortestTo.get(b)!.steps.length,
  );
  const transitionCover = new Map<string, GraphPath>();
  for (const [serial, { state, transitions }] of byLength) {
    for (const { event, state: next } of Object.values(transitions)) {
      for (const key of transitionsTakenBy(state, event)) {
        if (transitionCover.has(key)) continue;
        const head = shortestTo.get(serial)!;
        transitionCover.set(key, { state: next, steps: [...head.steps, { state: next, event }] });
      }
    }
  }
  return { stateCover, transitionCover: [...transitionCover.values()] };
}

const keyOf = (path: GraphPath) => path.steps.map((s) => JSON.stringify(s.event)).join(' > ');

/**
 * Shortest paths form a tree (each one extends its predecessor's by one step), so replaying the
 * leaves replays every path: each prefix is checked step by step on the way.
 */
function leaves(paths: GraphPath[]): GraphPath[] {
  const keys = paths.map(keyOf);
  const prefixes = new Set(
    paths.map((p) =>
      p.steps
        .slice(0, -1)
        .map((s) => JSON.stringify(s.event))
        .join(' > '),
    ),
  );
  return paths.filter((_, i) => !prefixes.has(keys[i]!));
}

/** `said`, `tier2:miss`, `llm!` (failed), `after(silenceTimeout)`… */
function label(e: GraphEvent): string {
  const actor = /^xstate\.(done|error)\.actor\.(.+)$/.exec(e.type);
  if (actor) {
    const src = srcByInvokeId.get(actor[2]!) ?? actor[2]!;
    return actor[1] === 'done' ? `${src}:${e.outcome}` : `${src}!`;
  }
  const names: Record<string, string> = {
    'twilio.start': 'start',
    'twilio.stop': 'stop',
    'caller.transcriptFinal': 'said',
    'caller.speechStarted': 'speech',
    'playback.done': 'played',
  };
  if (e.type === 'caller.dtmf') return `dtmf${String((e as { digit?: unknown }).digit)}`;
  return names[e.type] ?? eventName(e.type);
}

const describePath = (path: GraphPath) =>
  path.steps
    .slice(1)
    .map((s) => label(s.event))
    .join(' > ');

// ---------------------------------------------------------------------------------------------------
// Replay on a live actor
// ---------------------------------------------------------------------------------------------------

/** A SimulatedClock whose armed timers can be fired one by one (a graph step names one timer). */
class TimerClock extends SimulatedClock {
  private readonly armed = new Map<number, { ms: number; fn: () => void }>();
  override setTimeout(fn: () => void, ms: number): number {
    const run = () => {
      this.armed.delete(id);
      fn();
    };
    const id = super.setTimeout(run, ms);
    this.armed.set(id, { ms, fn: run });
    return id;
  }
  override clearTimeout(id: number): void {
    this.armed.delete(id);
    super.clearTimeout(id);
  }
  /**
   * Fires the one armed timer of that duration. The graph lets a timer elapse whenever its state is
   * active (which some policy and timing always allows), so the replay fires exactly that timer.
   */
  fire(ms: number): void {
    const matching = [...this.armed].filter(([, t]) => t.ms === ms);
    if (matching.length !== 1) throw new Error(`expected one armed ${ms}ms timer, found ${matching.length}`);
    const [id, timer] = matching[0]!;
    super.clearTimeout(id);
    timer.fn();
  }
}

interface Request {
  src: string;
  deferred: Deferred<unknown>;
  settled: boolean;
}

/** Fake actors that wait for the replay to resolve or reject them. */
function remoteScript(requests: Request[]): Script {
  const remote =
    <T>(src: string) =>
    (_input: unknown, signal: AbortSignal): Promise<T> => {
      const deferred = new Deferred<unknown>();
      deferred.signal = signal;
      requests.push({ src, deferred, settled: false });
      return deferred.promise as Promise<T>;
    };
  return {
    capture: remote('capture'),
    detect: remote('detect'),
    tier1: remote('tier1'),
    tier2: remote('tier2'),
    warmupGate: remote('warmupGate'),
    llm: remote('llm'),
    fallbackLine: remote('fallbackLine'),
    autoPlaybackDone: false,
  };
}

interface Replay {
  problems: string[];
  h: CallHarness;
}

async function replay(path: GraphPath, p: CallPolicy): Promise<Replay> {
  const requests: Request[] = [];
  const clock = new TimerClock();
  const h = startCall(remoteScript(requests), p, { clock });
  const problems: string[] = [];
  const inFlight = () => requests.filter((r) => !r.settled && !r.deferred.signal!.aborted);

  const perform = (event: GraphEvent) => {
    const actorEvent = /^xstate\.(done|error)\.actor\.(.+)$/.exec(event.type);
    if (actorEvent) {
      const [, kind, id] = actorEvent;
      const src = srcByInvokeId.get(id!)!;
      if (src === 'speaker') {
        h.actor.getSnapshot().children[id!]!.send(SPEAKER_FAILED);
        return;
      }
      const pending = inFlight().filter((r) => r.src === src);
      if (pending.length !== 1)
        throw new Error(`expected one in-flight ${src} request, found ${pending.length}`);
      const request = pending[0]!;
      request.settled = true;
      if (kind === 'done') request.deferred.resolve(event.output);
      else request.deferred.reject(event.error);
      return;
    }
    const timer = /^xstate\.after\.([^.]+)\./.exec(event.type);
    if (timer) {
      clock.fire(p[`${timer[1]}Ms` as keyof CallPolicy] as number);
      return;
    }
    h.actor.send(event as CallEvent);
  };

  const check = (expected: CallSnapshot, where: string) => {
    const live = h.actor.getSnapshot();
    if (h.errors.length > 0 || live.status === 'error') {
      problems.push(`${where}: actor errored: ${String(h.errors[0] ?? live.error)}`);
    }
    // The graph keeps one representative snapshot per serialized state, so compare what it serialized.
    if (serializeState(live) !== serializeState(expected)) {
      problems.push(`${where}: live ${serializeState(live)} != graph ${serializeState(expected)}`);
    }
    if (live.status !== expected.status)
      problems.push(`${where}: status ${live.status} != ${expected.status}`);
    // Nothing orphaned: every unsettled, unaborted request belongs to a live child, and vice versa.
    // A settled warmup stays a child until `warm` exits; only running children can hold a request.
    const children = Object.entries(live.children)
      .filter(([, child]) => child?.getSnapshot().status === 'active')
      .map(([id]) => srcByInvokeId.get(id));
    const promiseChildren = children.filter((src) => src !== 'speaker').sort();
    const open = inFlight()
      .map((r) => r.src)
      .sort();
    if (JSON.stringify(open) !== JSON.stringify(promiseChildren)) {
      problems.push(
        `${where}: in-flight requests [${open.join()}] != live children [${promiseChildren.join()}]`,
      );
    }
    const playing = h.spoken.length - h.disposed.length;
    const speakers = children.filter((src) => src === 'speaker').length;
    if (playing !== speakers)
      problems.push(`${where}: ${playing} speakers playing, ${speakers} speaker children`);
  };

  check(path.steps[0]!.state, 'start');
  for (const [i, step] of path.steps.entries()) {
    if (i === 0) continue; // xstate.init
    const where = `step ${i} ${label(step.event)}`;
    try {
      perform(step.event);
      await settle(2);
    } catch (err) {
      problems.push(`${where}: ${String(err)}`);
      break;
    }
    check(step.state, where);
    if (problems.length > 0) break;
  }
  return { problems, h };
}

// ---------------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------------

const VARIANTS: { name: string; policy: CallPolicy }[] = [
  { name: 'default policy', policy },
  { name: 'LLM disabled', policy: { ...policy, llmEnabled: false } },
  { name: 'warmup disabled', policy: { ...policy, warmupEnabled: false } },
  { name: 'no transfer', policy: { ...policy, canTransfer: false } },
  { name: 'capture before detect', policy: { ...policy, understandInOrder: true } },
];

interface Generated {
  name: string;
  policy: CallPolicy;
  stateCover: GraphPath[];
  replayed: GraphPath[];
}
let generatedPaths: Generated[] | undefined;
/** The paths of every policy variant (generated on first use, so a traversal error fails a test). */
function generated(): Generated[] {
  generatedPaths ??= VARIANTS.map((v) => {
    const { stateCover, transitionCover } = generatePaths(v.policy);
    return { ...v, stateCover, replayed: [...leaves(stateCover), ...transitionCover] };
  });
  return generatedPaths;
}

let replaysDone: Promise<{ path: GraphPath; policy: string; r: Replay }[]> | undefined;
/** Every generated path replayed once (sequentially); all tests below share the results. */
function allReplays() {
  replaysDone ??= (async () => {
    const out: { path: GraphPath; policy: string; r: Replay }[] = [];
    for (const g of generated()) {
      for (const path of g.replayed) out.push({ path, policy: g.name, r: await replay(path, g.policy) });
    }
    return out;
  })();
  return replaysDone;
}

describe('call machine transition table', () => {
  it('matches the pinned table (a removed, added or retargeted transition must be deliberate)', () => {
    expect(allNodes.flatMap((n) => transitionsOf(n).map(describeTransition))).toEqual(TRANSITION_TABLE);
  });
});

describe('generated paths', () => {
  it.each(VARIANTS)('are generated for the $name, and none leaves the machine in error', ({ name }) => {
    const g = generated().find((x) => x.name === name)!;
    expect(g.stateCover.length).toBeGreaterThan(50);
    expect(g.replayed.length).toBeGreaterThan(50);
    expect(g.stateCover.filter((p) => p.state.status === 'error').map(describePath)).toEqual([]);
  });

  it.each(VARIANTS)('replay on a live actor, step by step, for the $name', async ({ name }) => {
    const failures = (await allReplays())
      .filter((x) => x.policy === name && x.r.problems.length > 0)
      .map((x) => `${describePath(x.path)}\n    ${x.r.problems.join('\n    ')}`);
    expect(failures).toEqual([]);
  });
});

describe('coverage of the generated paths (live replays)', () => {
  it('reaches every state node of the machine', async () => {
    const visited = new Set<string>();
    for (const { r } of await allReplays()) for (const id of r.h.visited) visited.add(id);
    const all = allNodes.map((n) => n.id);
    expect(all.filter((id) => !visited.has(id))).toEqual([]);
    expect(visited.size).toBe(all.length);
  });

  it('takes every transition of the machine', async () => {
    const taken = new Set<string>();
    for (const { r } of await allReplays()) for (const key of r.h.taken) taken.add(key);
    const all = allNodes.flatMap((n) => transitionsOf(n));
    const missing = all.filter((t) => !taken.has(transitionKey(t))).map(describeTransition);
    expect(missing).toEqual([]);
  });

  it('ends calls only in ended or failed, by every expected route, announcing the end once', async () => {
    const routes = new Set<string>();
    for (const { path, r } of await allReplays()) {
      const live = r.h.actor.getSnapshot();
      const terminal = r.h.emitted.filter((e) => e.type === 'call.ended' || e.type === 'call.failed');
      if (live.status !== 'done') {
        expect(terminal, `no end announced before the end: ${describePath(path)}`).toEqual([]);
        continue;
      }
      expect(['ended', 'failed']).toContain(live.value);
      const reason = live.context.endReason ?? '';
      routes.add(`${live.value as string}:${reason}`);
      expect(terminal).toEqual([{ type: live.value === 'ended' ? 'call.ended' : 'call.failed', reason }]);
      expect(live.children).toEqual({});
      expect(r.h.spoken.length).toBe(r.h.disposed.length);
      if (reason === 'transfer') expect(r.h.emitted).toContainEqual({ type: 'call.transfer', reason });
      if (['completed', 'caller-silent', 'max-call-duration'].includes(reason)) {
        expect(r.h.emitted).toContainEqual({ type: 'call.hangup', reason });
      }
    }
    expect([...routes].sort()).toEqual(END_ROUTES);
  });
});
