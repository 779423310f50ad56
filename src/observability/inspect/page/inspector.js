// The inspector page: lists live and recent calls, draws the call machine, and for the chosen call
// follows its steps live (server-sent events; the engine inspects the call only while someone
// watches) or steps through its recording once it has ended.

import { createLog, renderContext, renderWaterfall, clock } from './panels.js';
import { createStatechart, h, shortId } from './statechart.js';

const $ = (selector) => document.querySelector(selector);
const CALLS_REFRESH_MS = 2000;

async function api(path) {
  const res = await fetch(`/inspect/api/${path}`, { credentials: 'same-origin', cache: 'no-store' });
  if (res.status === 401) {
    // Signed out (session expired): the page itself shows the sign-in form.
    location.reload();
    throw new Error('signed out');
  }
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
  return res.json();
}

const view = {
  description: null,
  chart: null,
  log: null,
  callId: null,
  /** 'live' while the stream is open, 'ended' once the call ended under our eyes, 'replay' for a recording. */
  mode: null,
  call: null,
  steps: [],
  /** The context after each step, carried forward where a step did not change it. */
  contexts: [],
  turns: [],
  /** The step shown; null follows the latest. */
  cursor: null,
  pendingContextFrom: 0,
  source: null,
  player: null,
  knownCalls: new Map(),
};

function rootId() {
  return view.description.root.id;
}

function leaves(active) {
  return active.filter((id) => !active.some((other) => other.startsWith(`${id}.`)));
}

function ago(t) {
  const s = Math.max(0, Math.round((Date.now() - t) / 1000));
  return s < 60 ? `${s}s` : s < 3600 ? `${Math.floor(s / 60)}m ${s % 60}s` : `${Math.floor(s / 3600)}h`;
}

function callItem(meta) {
  const state = meta.state.map((id) => shortId(id, rootId()).split('.').at(-1)).join(' ∥ ');
  const button = h(
    'button',
    { type: 'button', class: `call${meta.id === view.callId ? ' selected' : ''}`, dataset: { id: meta.id } },
    h('span', { class: 'call-id' }, meta.id.slice(0, 8)),
    h(
      'span',
      { class: `call-state${meta.live ? ' live' : ''}` },
      meta.live ? state || '…' : (meta.endReason ?? 'ended'),
    ),
    h(
      'span',
      { class: 'call-meta' },
      `${meta.companyId} · ${meta.turns} turn${meta.turns === 1 ? '' : 's'} · ${meta.live ? `${ago(meta.startedAt)}` : `ended ${ago(meta.endedAt)} ago`}`,
      meta.watchers > 0 ? ` · ${meta.watchers} watching` : '',
    ),
  );
  button.addEventListener('click', () => openCall(meta.id));
  return h('li', {}, button);
}

async function refreshCalls() {
  try {
    const { live, recent } = await api('calls');
    view.knownCalls = new Map([...live, ...recent].map((m) => [m.id, m]));
    $('#live-calls').replaceChildren(
      ...(live.length ? live.map(callItem) : [h('li', { class: 'muted' }, 'No live call.')]),
    );
    $('#recent-calls').replaceChildren(
      ...(recent.length ? recent.map(callItem) : [h('li', { class: 'muted' }, 'None yet.')]),
    );
  } catch (err) {
    $('#status').textContent = `calls: ${err.message}`;
  }
}

function stopPlayer() {
  if (view.player !== null) clearTimeout(view.player);
  view.player = null;
  $('#play').textContent = '▶';
  $('#play').title = 'Play from here';
}

function closeStream() {
  view.source?.close();
  view.source = null;
}

function load(data) {
  view.call = data.call;
  view.steps = [];
  view.contexts = [];
  view.turns = [...data.turns];
  view.log.clear(data.call.startedAt);
  let context = null;
  for (const step of data.steps) {
    context = step.context ?? context;
    pushStep(step, context);
  }
  view.pendingContextFrom = view.steps.length;
  $('#dropped').textContent =
    data.droppedSteps > 0 ? `${data.droppedSteps} earlier steps were not kept.` : '';
}

function pushStep(step, context) {
  const index = view.steps.length;
  view.steps.push(step);
  view.contexts.push(context);
  view.log.append(step, index);
}

function setMode(mode) {
  view.mode = mode;
  document.body.dataset.mode = mode;
  if (mode !== 'live') view.cursor = view.cursor ?? Math.max(0, view.steps.length - 1);
  render();
}

function openCall(id) {
  stopPlayer();
  closeStream();
  view.callId = id;
  view.cursor = null;
  view.mode = null;
  history.replaceState(null, '', `#call=${encodeURIComponent(id)}`);
  for (const b of document.querySelectorAll('button.call'))
    b.classList.toggle('selected', b.dataset.id === id);
  $('#call-header').textContent = `Loading ${id}…`;
  const source = new EventSource(`/inspect/api/calls/${encodeURIComponent(id)}/stream`);
  view.source = source;
  let greeted = false;
  source.addEventListener('hello', (e) => {
    greeted = true;
    const data = JSON.parse(e.data);
    load(data);
    if (data.call.live) setMode('live');
    else {
      closeStream();
      setMode('replay');
    }
  });
  source.addEventListener('step', (e) => {
    const { step } = JSON.parse(e.data);
    pushStep(step, view.contexts.at(-1) ?? null);
    if (view.cursor === null) render();
    else renderControls();
  });
  source.addEventListener('context', (e) => {
    const { context } = JSON.parse(e.data);
    // The context follows the microsteps of its macrostep: it is theirs.
    for (let i = view.pendingContextFrom; i < view.contexts.length; i++) view.contexts[i] = context;
    if (view.pendingContextFrom === view.contexts.length && view.contexts.length > 0)
      view.contexts[view.contexts.length - 1] = context;
    view.pendingContextFrom = view.contexts.length;
    if (view.cursor === null) render();
  });
  source.addEventListener('turn', (e) => {
    view.turns.push(JSON.parse(e.data));
    render();
  });
  source.addEventListener('ended', (e) => {
    const { call } = JSON.parse(e.data);
    if (call) view.call = call;
    closeStream();
    setMode('ended');
    void refreshCalls();
  });
  source.onerror = () => {
    if (view.source !== source) return;
    closeStream();
    if (!greeted) {
      $('#call-header').textContent = `No live or recent call ${id}.`;
      return;
    }
    // The stream broke (engine restarting?): keep what we have and let the user step through it.
    setMode('ended');
  };
}

function renderControls() {
  const n = view.steps.length;
  const index = view.cursor ?? n - 1;
  const range = $('#cursor');
  range.max = String(Math.max(0, n - 1));
  range.value = String(Math.max(0, index));
  $('#position').textContent =
    n === 0 ? '' : `step ${index + 1} / ${n}${view.steps[index] ? ` · ${clock(view.steps[index].t)}` : ''}`;
  $('#follow').hidden = !(view.mode === 'live' && view.cursor !== null);
}

function render() {
  renderControls();
  const n = view.steps.length;
  const index = view.cursor ?? n - 1;
  const step = view.steps[index];
  const call = view.call;
  if (!call || !step) return;
  const live = view.mode === 'live';
  const header = [
    h(
      'span',
      { class: `mode mode-${view.mode}` },
      live ? 'LIVE · inspection attached' : view.mode === 'ended' ? 'ENDED · replay' : 'REPLAY',
    ),
    h('code', { class: 'call-full-id' }, call.id),
    h(
      'span',
      { class: 'muted' },
      ` ${call.companyId}${call.callSid ? ` · ${call.callSid}` : ''} · started ${clock(call.startedAt)}`,
    ),
    call.endReason ? h('span', { class: 'muted' }, ` · ended: ${call.endReason}`) : null,
    h(
      'span',
      { class: 'current-state' },
      leaves(step.active)
        .map((id) => shortId(id, rootId()))
        .join(' ∥ '),
    ),
  ];
  $('#call-header').replaceChildren(...header.filter(Boolean));
  view.chart.setActive(step.active, { reveal: view.cursor === null });
  view.chart.setTaken(step.transitions);
  const context = view.contexts[index] ?? null;
  renderContext($('#context'), context);
  view.log.highlight(index, true);
  // A replay shows the turns answered by the step shown; live shows all.
  const turns = view.cursor === null ? view.turns : view.turns.filter((t) => t.t <= step.t + 1);
  renderWaterfall($('#waterfall'), turns, context?.turn ?? null);
}

function select(index) {
  if (view.steps.length === 0) return;
  stopPlayer();
  view.cursor = Math.max(0, Math.min(view.steps.length - 1, index));
  render();
}

function play() {
  if (view.player !== null) return stopPlayer();
  if (view.steps.length === 0) return;
  if ((view.cursor ?? view.steps.length - 1) >= view.steps.length - 1) view.cursor = 0;
  $('#play').textContent = '||';
  $('#play').title = 'Pause';
  const tick = () => {
    const i = view.cursor ?? 0;
    if (i >= view.steps.length - 1) return stopPlayer();
    view.cursor = i + 1;
    render();
    // Real time between steps, within reason, so a replay reads like the call.
    const gap = view.steps[i + 2] ? view.steps[i + 2].t - view.steps[i + 1].t : 0;
    view.player = setTimeout(tick, Math.min(1200, Math.max(150, gap)));
  };
  view.player = setTimeout(tick, 150);
}

function bindControls() {
  $('#first').addEventListener('click', () => select(0));
  $('#prev').addEventListener('click', () => select((view.cursor ?? view.steps.length - 1) - 1));
  $('#next').addEventListener('click', () => select((view.cursor ?? view.steps.length - 1) + 1));
  $('#last').addEventListener('click', () => select(view.steps.length - 1));
  $('#play').addEventListener('click', play);
  $('#cursor').addEventListener('input', (e) => select(Number(e.target.value)));
  $('#follow').addEventListener('click', () => {
    view.cursor = null;
    render();
  });
  document.addEventListener('keydown', (e) => {
    if (e.target instanceof HTMLInputElement && e.target.type !== 'range') return;
    const at = view.cursor ?? view.steps.length - 1;
    if (e.key === 'ArrowLeft') select(at - 1);
    else if (e.key === 'ArrowRight') select(at + 1);
    else return;
    e.preventDefault();
  });
}

async function main() {
  try {
    view.description = await api('machine');
  } catch (err) {
    $('#status').textContent = `machine: ${err.message}`;
    return;
  }
  view.chart = createStatechart($('#chart'), view.description);
  view.log = createLog($('#log tbody'), rootId(), select);
  $('#status').textContent = `machine ${view.description.machineId} · ${view.description.version}`;
  bindControls();
  await refreshCalls();
  setInterval(refreshCalls, CALLS_REFRESH_MS);
  const wanted = new URLSearchParams(location.hash.slice(1)).get('call');
  if (wanted) openCall(wanted);
}

void main();
