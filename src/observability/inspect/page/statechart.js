// The statechart, drawn from the machine description the engine generates from its definition:
// compound states are boxes holding their children, parallel regions sit side by side behind
// dashed separators, each state lists its transitions (event [guard] → target), and arrows are
// drawn for the transitions just taken and for the one under the pointer.

const SVG = 'http://www.w3.org/2000/svg';

/** Creates an element with attributes and children (strings become text, never HTML). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') el.className = value;
    else if (name === 'dataset') Object.assign(el.dataset, value);
    // Through the CSSOM: the page's CSP forbids style attributes.
    else if (name === 'style') Object.assign(el.style, value);
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** A state id shown relative to the machine root: `call.conversation.thinking` → `conversation.thinking`. */
export function shortId(id, rootId) {
  return id === rootId ? rootId : id.startsWith(`${rootId}.`) ? id.slice(rootId.length + 1) : id;
}

/** How many leading segments two state ids share, short of either one's last. */
function commonDepth(source, target) {
  const a = source.split('.');
  const b = target.split('.');
  let common = 0;
  while (common < a.length - 1 && common < b.length - 1 && a[common] === b[common]) common++;
  return common;
}

/** A target named from the closest state the source and target share, so siblings read as keys. */
export function relativeTarget(source, target) {
  return target.split('.').slice(commonDepth(source, target)).join('.');
}

/** A source named from the closest state it shares with its targets. */
export function relativeSource(source, targets) {
  const depth = Math.min(...targets.map((t) => commonDepth(source, t)));
  return source
    .split('.')
    .slice(Number.isFinite(depth) ? depth : 1)
    .join('.');
}

function transitionRow(t) {
  const targets =
    t.targets.length === 0 ? '(actions only)' : t.targets.map((x) => relativeTarget(t.source, x)).join(', ');
  const title = [
    t.event === '' ? 'eventless (always)' : t.event,
    t.guard ? `guard: ${t.guard}` : null,
    t.targets.length ? `target: ${t.targets.join(', ')}` : 'no target',
    t.reenter ? 're-enters' : null,
    t.actions.length ? `actions: ${t.actions.join(', ')}` : null,
  ]
    .filter(Boolean)
    .join('\n');
  return h(
    'li',
    {
      class: `sc-t sc-t-${t.kind.replace('.', '-')}`,
      title,
      dataset: { source: t.source, targets: t.targets.join(' ') },
    },
    h('span', { class: 'sc-ev' }, t.label),
    t.guard ? h('span', { class: 'sc-guard' }, `[${t.guard}]`) : null,
    h('span', { class: 'sc-arrow' }, '→'),
    h('span', { class: 'sc-target' }, targets),
  );
}

function stateBox(state, parent, nodes) {
  const isInitial = parent !== null && parent.initial === state.id;
  const title = h(
    'div',
    { class: 'sc-title' },
    isInitial ? h('span', { class: 'sc-initial', title: 'initial state' }, '●→') : null,
    h('span', { class: 'sc-key' }, state.key),
    state.type === 'parallel' ? h('span', { class: 'sc-badge' }, 'parallel') : null,
    state.type === 'final' ? h('span', { class: 'sc-badge' }, 'final') : null,
    ...state.invoke.map((i) =>
      h('span', { class: 'sc-invoke', title: `invokes ${i.src} (${i.id})` }, `⟳ ${i.src}`),
    ),
  );
  const box = h(
    'div',
    { class: `sc-state sc-${state.type}`, dataset: { id: state.id, type: state.type }, title: state.id },
    title,
  );
  if (state.transitions.length > 0)
    box.append(h('ul', { class: 'sc-transitions' }, state.transitions.map(transitionRow)));
  if (state.states.length > 0) {
    const children = h('div', { class: state.type === 'parallel' ? 'sc-regions' : 'sc-children' });
    for (const child of state.states) children.append(stateBox(child, state, nodes));
    box.append(children);
  }
  nodes.set(state.id, box);
  return box;
}

/**
 * Renders the machine into `container`. Returns controls to highlight the active configuration
 * and to draw the transitions of a step.
 */
export function createStatechart(container, description) {
  const nodes = new Map();
  container.replaceChildren();
  container.classList.add('sc');
  const root = stateBox(description.root, null, nodes);
  const overlay = document.createElementNS(SVG, 'svg');
  overlay.classList.add('sc-overlay');
  overlay.innerHTML =
    '<defs>' +
    '<marker id="sc-head-taken" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="sc-head-taken"/></marker>' +
    '<marker id="sc-head-hover" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="sc-head-hover"/></marker>' +
    '</defs><g class="sc-taken"></g><g class="sc-hover"></g>';
  container.append(root, overlay);
  const takenLayer = overlay.querySelector('.sc-taken');
  const hoverLayer = overlay.querySelector('.sc-hover');
  let taken = [];

  const box = (el) => {
    const c = container.getBoundingClientRect();
    const r = el.getBoundingClientRect();
    return {
      x: r.left - c.left + container.scrollLeft,
      y: r.top - c.top + container.scrollTop,
      w: r.width,
      h: r.height,
    };
  };

  /** A curve from the source (a transition row or a state) to the facing side of the target. */
  function arrow(layer, fromEl, toEl, kind) {
    const a = box(fromEl);
    const b = box(toEl);
    const start = { x: a.x + a.w, y: a.y + a.h / 2 };
    const cx = b.x + b.w / 2;
    const cy = b.y + b.h / 2;
    let end;
    if (fromEl === toEl || (Math.abs(cx - start.x) < b.w / 2 && start.y > b.y && start.y < b.y + b.h)) {
      end = { x: b.x + b.w, y: b.y + Math.min(14, b.h / 2) };
    } else if (Math.abs(cy - start.y) > Math.abs(cx - start.x) / 2) {
      end = { x: cx, y: cy > start.y ? b.y : b.y + b.h };
    } else {
      end = { x: cx > start.x ? b.x : b.x + b.w, y: cy };
    }
    const dx = Math.max(40, Math.abs(end.x - start.x) / 2);
    const vertical = end.y === b.y || end.y === b.y + b.h;
    const c2 = vertical
      ? { x: end.x, y: end.y + (end.y === b.y ? -60 : 60) }
      : { x: end.x + (end.x === b.x ? -dx : dx), y: end.y };
    const path = document.createElementNS(SVG, 'path');
    path.setAttribute(
      'd',
      `M${start.x},${start.y} C${start.x + dx},${start.y} ${c2.x},${c2.y} ${end.x},${end.y}`,
    );
    path.setAttribute('class', `sc-edge sc-edge-${kind}`);
    path.setAttribute('marker-end', `url(#sc-head-${kind})`);
    layer.append(path);
  }

  function rowFor(t) {
    const source = nodes.get(t.source);
    if (!source) return null;
    for (const li of source.querySelectorAll(':scope > .sc-transitions > li')) {
      if (li.dataset.targets === t.targets.join(' ') && li.querySelector('.sc-ev')?.textContent === t.label)
        return li;
    }
    return source;
  }

  function drawTaken() {
    takenLayer.replaceChildren();
    for (const li of container.querySelectorAll('.sc-t.taken')) li.classList.remove('taken');
    for (const t of taken) {
      const from = rowFor(t);
      if (!from) continue;
      from.classList.add('taken');
      for (const target of t.targets) {
        const to = nodes.get(target);
        if (to) arrow(takenLayer, from, to, 'taken');
      }
    }
  }

  container.addEventListener('pointerover', (e) => {
    const li = e.target instanceof Element ? e.target.closest('.sc-t') : null;
    hoverLayer.replaceChildren();
    if (!li) return;
    for (const target of (li.dataset.targets || '').split(' ').filter(Boolean)) {
      const to = nodes.get(target);
      if (to) arrow(hoverLayer, li, to, 'hover');
    }
  });
  container.addEventListener('pointerleave', () => hoverLayer.replaceChildren());

  const resize = () => {
    overlay.setAttribute('width', String(container.scrollWidth));
    overlay.setAttribute('height', String(container.scrollHeight));
    drawTaken();
  };
  const observer = new ResizeObserver(resize);
  observer.observe(container);
  observer.observe(root);

  return {
    /**
     * Highlights every active state; the atomic ones (the current states) most. With `reveal`, the
     * chart scrolls (itself, not the page) to bring the first current state into view.
     */
    setActive(active, { reveal = false } = {}) {
      const set = new Set(active);
      for (const [id, el] of nodes) {
        const on = set.has(id);
        el.classList.toggle('active', on);
        el.classList.toggle('current', on && !active.some((other) => other.startsWith(`${id}.`)));
      }
      const leaves = active.filter((id) => !active.some((other) => other.startsWith(`${id}.`)));
      container.dataset.current = leaves.map((id) => shortId(id, description.root.id)).join(' ');
      const first = nodes.get(leaves[0]);
      if (reveal && first) {
        const b = box(first);
        const margin = 24;
        if (b.y < container.scrollTop || b.y + b.h > container.scrollTop + container.clientHeight) {
          container.scrollTop = Math.max(0, b.y - margin);
        }
        if (b.x < container.scrollLeft || b.x + b.w > container.scrollLeft + container.clientWidth) {
          container.scrollLeft = Math.max(0, b.x - margin);
        }
      }
    },
    /** Draws the transitions of the step being shown. */
    setTaken(transitions) {
      taken = transitions.filter((t) => t.targets.length > 0 || nodes.has(t.source));
      drawTaken();
    },
    destroy() {
      observer.disconnect();
      container.replaceChildren();
    },
  };
}
