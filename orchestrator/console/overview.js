// The overview page (#/overview): GET /api/console/overview every 5 s. Map:
// - overviewPage(): lays out fixed-size boxes once, then update() replaces their contents in
//   place, so a refresh moves nothing (no layout shift).
// - chart(): the SVG line chart of sagas started/completed/failed per second, 15 minutes.
// - services(): one row per service: readiness, checks, AMQP, outbox, dead letters.

import {
  api, h, s, fill, plural, ms, num, money, badge, toneOf, setState, showError, localTime, span,
  tableWrap,
} from './core.js';

const REFRESH_MS = 5000;
const SERVICES = ['orchestrator', 'payment', 'inventory', 'notification'];
const IN_FLIGHT = ['AWAITING_PAYMENT', 'AWAITING_STOCK', 'RELEASING_STOCK', 'REFUNDING_PAYMENT'];
const SERIES = [
  { key: 'started', label: 'Started', color: '#2563eb', dash: '' },
  { key: 'completed', label: 'Completed', color: '#15803d', dash: '6 4' },
  { key: 'failed', label: 'Failed', color: '#b91c1c', dash: '2 3' },
];

export function overviewPage(ctx) {
  const box = (id, title, extra = '') =>
    h('section', { class: `card stat ${extra}`, 'aria-labelledby': `${id}-h` },
      h('h2', { id: `${id}-h` }, title), h('div', { id }, h('p', { class: 'muted' }, 'Loading…')));
  const status = h('p', { class: 'refresh muted', 'aria-live': 'off' }, 'Loading…');
  const alertSlot = h('div', { class: 'alert-slot' });
  const serviceBody = h('tbody', {}, SERVICES.map((name) =>
    h('tr', { 'data-service': name }, h('th', { scope: 'row' }, name),
      ...Array.from({ length: 6 }, () => h('td', {}, '…')))));
  ctx.main.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Overview'), status),
    alertSlot,
    h('section', { class: 'card chart-card', 'aria-labelledby': 'chart-h' },
      h('h2', { id: 'chart-h' }, 'Sagas per second, last 15 minutes'),
      h('div', { id: 'overview-chart' })),
    h('div', { class: 'stats' },
      box('overview-duration', 'Saga duration (15 min)'),
      box('overview-in-flight', 'In flight by state'),
      box('overview-overdue', 'Overdue sagas'),
      box('overview-rejected', 'Orders turned away')),
    h('section', { class: 'card', 'aria-labelledby': 'services-h' },
      h('h2', { id: 'services-h' }, 'Services'),
      tableWrap(h('table', { id: 'overview-services' },
        h('thead', {}, h('tr', {}, ['Service', 'Ready', 'Checks', 'AMQP', 'Outbox pending',
          'Outbox oldest', 'Dead letters'].map((t) => h('th', { scope: 'col' }, t)))),
        serviceBody))),
    h('section', { class: 'card', 'aria-labelledby': 'today-h' },
      h('h2', { id: 'today-h' }, 'Today (UTC day)'),
      h('div', { id: 'overview-today' }, h('p', { class: 'muted' }, 'Loading…'))),
  );

  let busy = false;
  const load = async () => {
    if (busy) return;
    busy = true;
    try {
      const data = await api('/api/console/overview');
      if (!ctx.alive()) return;
      update(data);
      alertSlot.replaceChildren();
      status.textContent = `Updated ${localTime(data.generated_at || new Date().toISOString())}` +
        ' · refreshes every 5 s';
      setState('ready');
    } catch (err) {
      if (!ctx.alive()) return;
      status.textContent = 'Refresh failed; retrying every 5 s';
      showError(alertSlot, err);
    } finally {
      busy = false;
    }
  };
  // A tab in the background does not poll: an open console should cost the fleet nothing.
  const timer = setInterval(() => { if (!document.hidden) load(); }, REFRESH_MS);
  const onVisible = () => { if (!document.hidden) load(); };
  document.addEventListener('visibilitychange', onVisible);
  ctx.onLeave(() => {
    clearInterval(timer);
    document.removeEventListener('visibilitychange', onVisible);
  });
  load();
}

function update(data) {
  fill(document.getElementById('overview-chart'), chart(data.per_minute, data.generated_at));
  const d = data.duration || {};
  fill(document.getElementById('overview-duration'),
    h('dl', { class: 'kv' },
      h('dt', {}, 'p50'), h('dd', { class: 'big' }, under(d.p50_ms)),
      h('dt', {}, 'p99'), h('dd', { class: 'big' }, under(d.p99_ms))),
    h('p', { class: 'muted small' }, 'Bounds of the rollups\' duration buckets.'));
  const flight = data.in_flight || {};
  fill(document.getElementById('overview-in-flight'),
    h('dl', { class: 'kv' }, IN_FLIGHT.map((state) =>
      [h('dt', {}, state), h('dd', {}, plural(flight[state] ?? 0, 'saga'))])));
  const overdue = data.overdue ?? 0;
  fill(document.getElementById('overview-overdue'),
    h('p', { class: 'big' }, `${num(overdue)} `, h('span', { class: 'unit' }, 'sagas')),
    overdue > 0 ? [badge('Past their deadline', 'warn'), ' ',
      h('a', { href: '#/sagas?overdue=true' }, 'List them')]
      : badge('None past their deadline', 'ok'));
  const rejected = data.rejected || {};
  fill(document.getElementById('overview-rejected'),
    h('dl', { class: 'kv' },
      h('dt', {}, 'Shed (overloaded, 503)'), h('dd', {}, `${num(rejected.overloaded ?? 0)} orders`),
      h('dt', {}, 'Rate-limited (429)'), h('dd', {}, `${num(rejected.rate_limited ?? 0)} orders`)),
    h('p', { class: 'muted small' }, 'Since the orchestrator started.'));
  const byName = new Map((data.services || []).map((svc) => [svc.name, svc]));
  for (const name of SERVICES) {
    const row = document.querySelector(`#overview-services tr[data-service="${name}"]`);
    if (row) fill(row, h('th', { scope: 'row' }, name), serviceCells(byName.get(name)));
  }
  fill(document.getElementById('overview-today'), today(data.today));
}

function serviceCells(svc) {
  if (!svc) return [h('td', { colspan: 6 }, badge('Not reported', 'warn'))];
  const cells = [];
  cells.push(h('td', {}, svc.ready ? badge('Ready', 'ok') : badge('Not ready', 'bad'),
    svc.error ? h('div', { class: 'small error-text' }, svc.error) : null));
  const checks = Object.entries(svc.checks || {});
  cells.push(h('td', {}, checks.length
    ? checks.map(([check, value]) => h('span', { class: 'check' }, badge(`${check}: ${value}`,
      toneOf(value)), ' '))
    : h('span', { class: 'muted' }, '—')));
  cells.push(h('td', {}, svc.amqp_connected === null || svc.amqp_connected === undefined
    ? h('span', { class: 'muted' }, '—')
    : svc.amqp_connected ? badge('Connected', 'ok') : badge('Disconnected', 'bad')));
  const outbox = svc.outbox;
  cells.push(h('td', { class: 'num' }, outbox ? plural(outbox.pending, 'message') : '—'));
  cells.push(h('td', { class: 'num' },
    outbox && outbox.pending > 0 && outbox.oldest_age_seconds !== null
      ? span(outbox.oldest_age_seconds) : '—'));
  const letters = svc.dead_letters || [];
  const total = letters.reduce((sum, q) => sum + (q.count || 0), 0);
  cells.push(h('td', { class: 'dlq' },
    letters.length === 0 ? h('span', { class: 'muted' }, '—')
      : h('a', { href: '#/dead-letters', title: letters.map((q) => `${q.queue}: ${q.count}`).join(', ') },
        total > 0 ? badge(plural(total, 'message'), 'warn') : '0 messages'),
    // Every queue on its own line, zeros too, so a count changing never adds a line.
    letters.map((q) =>
      h('div', { class: 'small muted' }, `${q.queue}: ${num(q.count)}`))));
  return cells;
}

/** A percentile read from duration buckets: the bucket's upper bound. */
const under = (value) => (value === null || value === undefined ? '—' : `< ${ms(value)}`);

function today(t) {
  if (!t) return h('p', { class: 'muted' }, 'No summary.');
  const failed = t.failed || {};
  const failedTotal = (failed.payment_declined || 0) + (failed.out_of_stock || 0) +
    (failed.timed_out || 0);
  const item = (label, value) => h('div', { class: 'tile' },
    h('div', { class: 'tile-label' }, label), h('div', { class: 'tile-value' }, value));
  return h('div', { class: 'tiles' },
    item('Placed', `${num(t.placed)} orders`),
    item('Completed', `${num(t.completed)} orders`),
    item('Failed', `${num(failedTotal)} orders`),
    item('Failed by reason', `declined ${num(failed.payment_declined)} · out of stock ` +
      `${num(failed.out_of_stock)} · timed out ${num(failed.timed_out)}`),
    item('Success rate', t.success_rate === null || t.success_rate === undefined ? '—'
      : `${(t.success_rate * 100).toFixed(1)} %`),
    item('Revenue', money(t.revenue_cents)),
    item('Mean duration', ms(t.mean_duration_ms)),
    item('p95 duration', t.p95_duration_ms === null ? '— (none ended, or ≥ 10 min)'
      : under(t.p95_duration_ms)));
}

/** Rates per second: a whole minute's count / 60; the current minute's / its elapsed seconds. */
function rates(counts, from, generatedAt) {
  const start = new Date(from).getTime();
  const now = generatedAt ? new Date(generatedAt).getTime() : Date.now();
  return counts.map((count, i) => {
    const minuteStart = start + i * 60000;
    const seconds = Math.min(60, Math.max(1, (now - minuteStart) / 1000));
    return (count || 0) / (i === counts.length - 1 ? seconds : 60);
  });
}

export function chart(perMinute, generatedAt) {
  const W = 1000, H = 240, L = 60, R = 16, T = 16, B = 50;
  if (!perMinute || !perMinute.started) return h('p', { class: 'muted' }, 'No data.');
  const series = SERIES.map((def) => ({
    ...def, values: rates(perMinute[def.key] || [], perMinute.from, generatedAt),
  }));
  const n = series[0].values.length;
  const peak = Math.max(1, ...series.flatMap((x) => x.values));
  const top = niceCeil(peak);
  const x = (i) => L + (n <= 1 ? 0 : (i * (W - L - R)) / (n - 1));
  const y = (v) => T + (H - T - B) * (1 - v / top);
  const svg = s('svg', {
    viewBox: `0 0 ${W} ${H}`, role: 'img', class: 'chart',
    'aria-label': series.map((x2) =>
      `${x2.label} ${rate(x2.values[n - 1])} now`).join(', '),
  });
  for (const frac of [0, 0.5, 1]) {
    const v = top * frac;
    svg.append(s('line', { x1: L, x2: W - R, y1: y(v), y2: y(v), class: 'grid' }),
      s('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'axis' },
        `${v % 1 ? v.toFixed(1) : v}/s`));
  }
  const from = new Date(perMinute.from).getTime();
  for (let i = 0; i < n - 2; i += 5) {
    svg.append(s('text', { x: x(i), y: H - B + 16, 'text-anchor': 'middle', class: 'axis' },
      localTime(new Date(from + i * 60000).toISOString()).slice(0, 5)));
  }
  svg.append(s('text', { x: x(n - 1), y: H - B + 16, 'text-anchor': 'end', class: 'axis' }, 'now'));
  svg.append(s('line', { x1: L, x2: L, y1: T, y2: H - B, class: 'axis-line' }),
    s('line', { x1: L, x2: W - R, y1: H - B, y2: H - B, class: 'axis-line' }));
  for (const line of series) {
    svg.append(s('polyline', {
      points: line.values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' '),
      fill: 'none', stroke: line.color, 'stroke-width': 2.5, 'stroke-dasharray': line.dash || null,
      'data-series': line.key,
    }));
  }
  let lx = L;
  for (const line of series) {
    const last = line.values[n - 1] || 0;
    svg.append(s('line', { x1: lx, x2: lx + 26, y1: H - 14, y2: H - 14, stroke: line.color,
      'stroke-width': 3, 'stroke-dasharray': line.dash || null }),
    s('text', { x: lx + 32, y: H - 10, class: 'legend' }, `${line.label} (${rate(last)} now)`));
    lx += 220;
  }
  return svg;
}

/** Sagas per second with the precision that keeps small rates readable. */
function rate(value) {
  const digits = value === 0 || value >= 10 ? 0 : value >= 1 ? 1 : 2;
  return `${value.toFixed(digits)}/s`;
}

function niceCeil(value) {
  const exp = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (value <= step * exp) return step * exp;
  return 10 * exp;
}
