// The panels beside the statechart: the context that matters, the event log and the per-turn
// latency waterfall. Caller words and slot values are data, so they only ever become text nodes.

import { h, relativeSource, relativeTarget, shortId } from './statechart.js';

const ms = (v) =>
  v === null || v === undefined ? '–' : v < 10 ? `${v.toFixed(1)} ms` : `${Math.round(v)} ms`;
const pct = (v) => (v === null || v === undefined ? '–' : v.toFixed(2));

export function clock(t) {
  const d = new Date(t);
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function row(label, ...value) {
  return h('div', { class: 'kv' }, h('dt', {}, label), h('dd', {}, ...value));
}

function tierRow(name, tier) {
  if (!tier) return row(name, h('span', { class: 'muted' }, 'not run'));
  const passed = tier.scenarioId !== null && tier.confidence >= tier.threshold;
  return row(
    name,
    h(
      'span',
      { class: passed ? 'ok' : 'miss' },
      `${pct(tier.confidence)} ${passed ? '≥' : '<'} ${pct(tier.threshold)}`,
    ),
    ' ',
    tier.scenarioId
      ? h('code', {}, `${tier.category ?? '?'}/${tier.scenarioId}`)
      : h('span', { class: 'muted' }, 'no scenario'),
    h('span', { class: 'muted' }, ` · ${ms(tier.durationMs)}`),
  );
}

/** Renders a context summary (see contextSummary.ts). */
export function renderContext(el, c) {
  if (!c) {
    el.replaceChildren(h('p', { class: 'muted' }, 'No context yet.'));
    return;
  }
  const slots = Object.entries(c.slots);
  const flags = c.situation
    ? Object.entries(c.situation.flags)
        .filter(([, on]) => on)
        .map(([name]) => name)
    : [];
  el.replaceChildren(
    h(
      'dl',
      { class: 'context' },
      row('turn', String(c.turn)),
      row('caller said', c.utterance ? h('q', {}, c.utterance) : h('span', { class: 'muted' }, '–')),
      c.heldUtterance ? row('held words', h('q', {}, c.heldUtterance)) : null,
      row(
        'slots',
        slots.length === 0
          ? h('span', { class: 'muted' }, 'none')
          : h(
              'span',
              { class: 'slots' },
              ...slots.map(([k, v]) => h('span', { class: 'slot' }, h('b', {}, k), ' ', v)),
            ),
      ),
      row(
        'situation',
        c.situation
          ? [
              h('code', {}, c.situation.category ?? 'no category'),
              ` ${pct(c.situation.confidence)} (${c.situation.source})`,
              flags.length ? h('span', { class: 'flags' }, ` ${flags.join(', ')}`) : null,
            ]
          : h('span', { class: 'muted' }, 'not detected'),
      ),
      tierRow('tier 1', c.tier1),
      tierRow('tier 2', c.tier2),
      row(
        'warmup',
        c.warmup.gate
          ? `${c.warmup.gate.warm ? 'started' : 'skipped'} (${c.warmup.gate.reason})`
          : 'not gated',
        h('span', { class: 'muted' }, ` · ${c.warmup.status} · outcome ${c.warmup.outcome}`),
      ),
      c.tier3
        ? row(
            'tier 3',
            `${c.tier3.provider}:${c.tier3.model}`,
            h(
              'span',
              { class: 'muted' },
              ` · first token ${ms(c.tier3.firstTokenMs)} · ${ms(c.tier3.durationMs)}`,
            ),
          )
        : null,
      c.fallbackKind ? row('fallback', c.fallbackKind) : null,
      c.failure ? row('failure', h('span', { class: 'miss' }, c.failure)) : null,
      row(
        'answered by',
        c.answeredBy === null
          ? h('span', { class: 'muted' }, '–')
          : String(c.answeredBy === 'fallback' ? 'fallback' : `tier ${c.answeredBy}`),
      ),
      row(
        'reply',
        c.reply
          ? [
              h('q', {}, c.reply.text),
              h(
                'span',
                { class: 'muted' },
                ` then ${c.reply.then}${c.reply.interruptible ? '' : ', not interruptible'}`,
              ),
            ]
          : h('span', { class: 'muted' }, '–'),
      ),
      row('reprompts', `${c.reprompts} · fallbacks in a row ${c.consecutiveFallbacks}`),
      c.endReason ? row('end', c.endReason) : null,
    ),
  );
}

/** The event log: one row per step (time, event, from → to). */
export function createLog(tbody, rootId, onSelect) {
  let startedAt = null;
  tbody.addEventListener('click', (e) => {
    const tr = e.target instanceof Element ? e.target.closest('tr[data-index]') : null;
    if (tr) onSelect(Number(tr.dataset.index));
  });
  return {
    clear(t0) {
      startedAt = t0;
      tbody.replaceChildren();
    },
    append(step, index) {
      const moves =
        step.transitions.length === 0
          ? h(
              'span',
              { class: 'muted' },
              index === 0 ? shortId(step.active.at(-1) ?? '', rootId) : 'no transition',
            )
          : step.transitions.map((t) =>
              h(
                'div',
                { title: `${t.source} → ${t.targets.join(', ') || '(no target)'}` },
                relativeSource(t.source, t.targets),
                ' → ',
                t.targets.length
                  ? t.targets.map((x) => relativeTarget(t.source, x)).join(', ')
                  : h('span', { class: 'muted' }, '(actions)'),
              ),
            );
      const since = startedAt === null ? '' : `+${((step.t - startedAt) / 1000).toFixed(3)} s`;
      const tr = h(
        'tr',
        { dataset: { index: String(index) }, class: step.inferred ? 'inferred' : '' },
        h('td', { class: 'time', title: since }, clock(step.t)),
        h(
          'td',
          { class: 'event' },
          step.label,
          step.inferred
            ? h(
                'span',
                {
                  class: 'badge',
                  title: `Inferred from the machine (calls are recorded without inspection, so events are not seen).${
                    step.alternatives.length ? `\nAlso possible: ${step.alternatives.join(', ')}` : ''
                  }`,
                },
                step.alternatives.length ? `≈ +${step.alternatives.length}` : '≈',
              )
            : null,
        ),
        h('td', { class: 'moves' }, moves),
      );
      tbody.append(tr);
      return tr;
    },
    highlight(index, scroll) {
      for (const tr of tbody.querySelectorAll('tr.selected')) tr.classList.remove('selected');
      const tr = tbody.querySelector(`tr[data-index="${index}"]`);
      if (!tr) return;
      tr.classList.add('selected');
      if (scroll) tr.scrollIntoView({ block: 'nearest' });
    },
  };
}

/** Stage bars of one turn, laid out as the machine runs them, from the TurnRecord's timings. */
export function stagesOf(entry) {
  const s = entry.record.timings;
  const bars = [];
  const capture = s.captureMs ?? 0;
  const detect = s.detectMs ?? 0;
  if (s.captureMs !== null) bars.push({ name: 'capture', start: 0, ms: capture });
  if (s.detectMs !== null) bars.push({ name: 'detect', start: entry.inOrder ? capture : 0, ms: detect });
  let t = entry.inOrder ? capture + detect : Math.max(capture, detect);
  const next = (name, v, kind) => {
    if (v === null) return;
    bars.push({ name, start: t, ms: v, kind });
    t += v;
  };
  next('redetect', s.redetectMs);
  next('tier 1', s.tier1Ms);
  next('warmup gate', s.warmupGateMs);
  const tier2Start = t;
  next('tier 2', s.tier2Ms);
  if (s.tier3Ms !== null) {
    if (entry.record.warmup === 'used') {
      bars.push({
        name: 'tier 3 (warmup)',
        start: tier2Start,
        ms: s.tier3Ms,
        kind: 'llm',
        firstToken: s.tier3FirstTokenMs,
      });
      t = Math.max(t, tier2Start + s.tier3Ms);
    } else {
      bars.push({ name: 'tier 3', start: t, ms: s.tier3Ms, kind: 'llm', firstToken: s.tier3FirstTokenMs });
      t += s.tier3Ms;
    }
  }
  next('fallback line', s.fallbackMs);
  return { bars, staged: t };
}

/** The per-turn latency waterfall, newest turn first; the turn in `focus` is marked. */
export function renderWaterfall(el, turns, focus) {
  if (turns.length === 0) {
    el.replaceChildren(h('p', { class: 'muted' }, 'No turn answered yet.'));
    return;
  }
  const blocks = [...turns].reverse().map((entry) => {
    const { bars, staged } = stagesOf(entry);
    const total = entry.latencyMs ?? staged;
    const scale = Math.max(total, staged, 1);
    const r = entry.record;
    const tier = r.tier === 'fallback' ? 'fallback' : `tier ${r.tier}`;
    const provider = r.timings.providerMs;
    const lane = (bar, cls) =>
      h(
        'div',
        { class: 'wf-row' },
        h('span', { class: 'wf-name' }, bar.name),
        h(
          'span',
          { class: 'wf-lane' },
          h('span', {
            class: `wf-bar ${cls ?? ''} ${bar.kind ?? ''}`,
            style: {
              left: `${(bar.start / scale) * 100}%`,
              width: `${Math.max(0.5, (bar.ms / scale) * 100)}%`,
            },
            title: `${bar.name}: starts ${ms(bar.start)}, lasts ${ms(bar.ms)}${bar.firstToken ? `, first token ${ms(bar.firstToken)}` : ''}`,
          }),
        ),
        h('span', { class: 'wf-ms' }, ms(bar.ms)),
      );
    return h(
      'div',
      { class: `wf-turn${focus === r.turn ? ' focus' : ''}`, dataset: { turn: String(r.turn) } },
      h(
        'div',
        { class: 'wf-head' },
        h('b', {}, `Turn ${r.turn}`),
        ` · ${tier}`,
        r.scenarioId ? h('code', {}, ` ${r.scenarioId}`) : null,
        ` · warmup ${r.warmup}`,
        h(
          'span',
          { class: 'muted' },
          ` · provider ${ms(provider)} · engine ${ms(Math.max(0, total - provider))}`,
        ),
      ),
      ...bars.map((bar) => lane(bar)),
      lane({ name: 'turn', start: 0, ms: total }, 'total'),
    );
  });
  el.replaceChildren(...blocks);
}
