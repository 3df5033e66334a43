// The saga detail page (#/sagas/{order_id}). Map:
// - sagaPage(): reads the saga (GET /api/sagas?q=id), the order, its timeline, and what the
//   participants hold (payment, reservation, notifications, through the console proxy); each
//   participant's section fails on its own. Retry / compensate go through dialog#confirm.
// - timeline(): the SVG sequence diagram, one g[data-step] per timeline entry.

import {
  api, h, s, fill, when, badge, toneOf, setState, showError, errorBox, confirmAction, tableWrap,
  money, num, localTime, ms, AuthError, ApiError, signOut,
} from './core.js';

const PROXY = '/api/console/services';

export function sagaPage(ctx, orderId) {
  const stateEl = h('span', { id: 'saga-state' }, '…');
  const retry = h('button', { id: 'action-retry', type: 'button', disabled: true },
    'Retry: resend the pending command');
  const compensate = h('button', { id: 'action-compensate', type: 'button', class: 'danger',
    disabled: true }, 'Compensate: undo and fail the saga');
  const result = h('div', { id: 'action-result', role: 'status', class: 'result' });
  const alertSlot = h('div', { class: 'alert-slot' });
  const facts = h('dl', { class: 'kv facts' });
  const timelineEl = h('div', { id: 'timeline', class: 'timeline' }, h('p', { class: 'muted' }, 'Loading…'));
  const lines = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const paymentView = h('div', { id: 'payment-view' }, h('p', { class: 'muted' }, 'Loading…'));
  const reservationView = h('div', { id: 'reservation-view' }, h('p', { class: 'muted' }, 'Loading…'));
  const notificationView = h('div', { id: 'notification-view' }, h('p', { class: 'muted' }, 'Loading…'));
  const section = (title, ...content) => h('section', { class: 'card' }, h('h2', {}, title), ...content);

  ctx.main.append(h('section', { id: 'saga-detail', 'data-order-id': orderId },
    h('p', {}, h('a', { href: '#/sagas' }, '« All sagas')),
    h('div', { class: 'page-head' }, h('h1', {}, 'Saga ', h('span', { class: 'mono' }, orderId)),
      h('p', {}, 'State: ', stateEl)),
    alertSlot,
    h('section', { class: 'card' }, facts,
      h('div', { class: 'actions' }, retry, compensate), result),
    section('Timeline', timelineEl),
    h('div', { class: 'two' },
      section('Order lines', lines),
      section('Payment (as the payment service holds it)', paymentView)),
    h('div', { class: 'two' },
      section('Reservation (as the inventory service holds it)', reservationView),
      section('Notifications', notificationView))));

  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(orderId)) {
    showError(alertSlot, new ApiError(422, 'validation_failed',
      `"${orderId}" is not an order id (a UUID such as 01a252af-d286-76aa-b5d3-2c0e12c5dbf4).`));
    for (const el of [timelineEl, lines, paymentView, reservationView, notificationView]) fill(el, '—');
    return;
  }
  let saga = null;
  const load = async () => {
    setState('loading');
    const side = (promise, el, render) => promise.then((data) => {
      if (ctx.alive()) fill(el, render(data));
    }).catch((err) => {
      if (!ctx.alive()) return;
      if (err instanceof AuthError) throw err;
      fill(el, errorBox(err, 'Could not read it:'));
    });
    try {
      await Promise.all([
        api('/api/sagas', { query: { q: orderId, limit: 1 } }).then((page) => {
          saga = (page.items || []).find((item) => item.order_id === orderId) || null;
        }),
        api(`/api/orders/${encodeURIComponent(orderId)}`).then((order) => {
          if (ctx.alive()) fill(lines, orderLines(order));
        }),
        api(`/api/orders/${encodeURIComponent(orderId)}/timeline`).then((t) => {
          if (ctx.alive()) fill(timelineEl, timeline(t.transitions || []));
        }),
        side(api(`${PROXY}/payment/api/payments`, { query: { order_id: orderId } }), paymentView, payments),
        side(api(`${PROXY}/inventory/api/reservations`, { query: { order_id: orderId } }),
          reservationView, reservations),
        side(api(`${PROXY}/notification/api/notifications`, { query: { order_id: orderId, limit: 20 } }),
          notificationView, (page) => notifications(page.items || [])),
      ]);
      if (!ctx.alive()) return;
      renderSaga();
      setState('ready');
    } catch (err) {
      if (ctx.alive()) showError(alertSlot, err);
    }
  };

  const renderSaga = () => {
    if (!saga) {
      stateEl.textContent = 'unknown';
      fill(facts, h('p', { class: 'muted' }, 'The saga list does not have this order.'));
      return;
    }
    fill(stateEl, saga.state);
    stateEl.className = `badge badge-${toneOf(saga.state)}`;
    const item = (label, value) => [h('dt', {}, label), h('dd', {}, value)];
    fill(facts,
      item('Status', badge(saga.status, toneOf(saga.status))),
      item('Failure reason', saga.failure_reason || '—'),
      item('Customer', saga.customer_id),
      item('Correlation id', h('span', { class: 'mono' }, saga.correlation_id)),
      item('Created', when(saga.created_at)),
      item('Updated', when(saga.updated_at)),
      item('Deadline', saga.deadline_at ? [when(saga.deadline_at),
        saga.stuck ? [' ', badge('overdue', 'warn')] : null] : '— (final)'),
      item('Resends of the pending command', String(saga.resends)),
      item('Pending command id', saga.pending_message_id
        ? h('span', { class: 'mono' }, saga.pending_message_id) : '—'),
      item('Version', String(saga.version)));
    const final = saga.status !== 'PENDING';
    retry.disabled = final;
    compensate.disabled = final;
    retry.title = final ? 'The saga has ended: nothing to retry.' : '';
    compensate.title = final ? 'The saga has ended: nothing to compensate.' : '';
  };

  const act = async (action) => {
    const text = action === 'retry'
      ? `Retry saga ${orderId}? The orchestrator resends the command it waits on (state ${saga?.state}) with its original message id.`
      : `Compensate saga ${orderId}? The orchestrator gives up on it now: what may have happened is undone (a charge refunded, stock released) and the order ends FAILED with reason timed_out.`;
    const ok = await confirmAction(text, action === 'retry' ? 'Retry the saga' : 'Compensate the saga');
    if (!ok || !ctx.alive()) return;
    fill(result, `Sending ${action}…`);
    try {
      const answer = await api(`/api/sagas/${encodeURIComponent(orderId)}/${action}`, { method: 'POST' });
      if (!ctx.alive()) return;
      const state = answer && (answer.state || answer.saga?.state);
      fill(result, badge('Done', 'ok'), ` ${action === 'retry' ? 'Retry' : 'Compensation'} accepted` +
        (state ? `: the saga is now ${state}.` : '.') + ` (${localTime(new Date().toISOString())})`);
    } catch (err) {
      if (err instanceof AuthError) { signOut(err.message); return; }
      if (!ctx.alive()) return;
      fill(result, badge('Refused', 'bad'), ' ', errorBox(err));
    }
    load();
  };
  retry.addEventListener('click', () => act('retry'));
  compensate.addEventListener('click', () => act('compensate'));
  load();
}

function orderLines(order) {
  const items = order.items || order.lines || [];
  return [tableWrap(h('table', { id: 'order-lines' },
    h('thead', {}, h('tr', {}, ['Product', 'Quantity', 'Unit price', 'Line total']
      .map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, items.map((line) => h('tr', {},
      h('td', { class: 'mono' }, line.product_id), h('td', { class: 'num' }, num(line.quantity)),
      h('td', { class: 'num' }, money(line.unit_price_cents)),
      h('td', { class: 'num' }, money(line.unit_price_cents * line.quantity))))),
    h('tfoot', {}, h('tr', {}, h('th', { scope: 'row', colspan: 3 }, 'Total'),
      h('td', { class: 'num' }, money(order.total_cents)))))),
  h('p', { class: 'muted small' }, `Order status ${order.status}`)];
}

function payments(list) {
  if (!list.length) return h('p', { class: 'muted' }, 'No payment for this order.');
  return list.map((p) => h('dl', { class: 'kv' },
    h('dt', {}, 'Status'), h('dd', {}, badge(p.status, toneOf(p.status))),
    h('dt', {}, 'Amount'), h('dd', {}, money(p.amount_cents)),
    h('dt', {}, 'Decline reason'), h('dd', {}, p.decline_reason || '—'),
    h('dt', {}, 'Payment id'), h('dd', { class: 'mono' }, p.payment_id),
    h('dt', {}, 'Created'), h('dd', {}, when(p.created_at)),
    h('dt', {}, 'Updated'), h('dd', {}, when(p.updated_at))));
}

function reservations(list) {
  if (!list.length) return h('p', { class: 'muted' }, 'No reservation for this order.');
  return tableWrap(h('table', {},
    h('thead', {}, h('tr', {}, ['Product', 'Quantity', 'Status'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, list.map((line) => h('tr', {}, h('td', { class: 'mono' }, line.product_id),
      h('td', { class: 'num' }, num(line.quantity)), h('td', {}, badge(line.status, toneOf(line.status))))))));
}

function notifications(list) {
  if (!list.length) return h('p', { class: 'muted' }, 'No notification for this order.');
  return tableWrap(h('table', {},
    h('thead', {}, h('tr', {}, ['Kind', 'Status', 'Recipient', 'Attempts', 'Sent', 'Last error']
      .map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, list.map((n) => h('tr', {}, h('td', {}, n.kind),
      h('td', {}, badge(n.status, toneOf(n.status))), h('td', {}, n.recipient || '—'),
      h('td', { class: 'num' }, num(n.attempts)), h('td', {}, when(n.sent_at)),
      h('td', {}, n.last_error || '—'))))));
}

// ---- the sequence diagram ------------------------------------------------------------------

const LANES = { client: 50, orchestrator: 300, payment: 540, inventory: 780, events: 990 };
const WIDTH = 1040;

function laneOf(type) {
  if (type === 'order.placed') return 'client';
  if (type.startsWith('payment.')) return 'payment';
  if (type.startsWith('inventory.')) return 'inventory';
  if (type.startsWith('order.')) return 'events';
  return 'orchestrator';
}

function arrow(g, from, to, y, label, kind) {
  const x1 = LANES[from], x2 = LANES[to];
  if (from === to) {
    const x = x1;
    g.append(s('path', { d: `M${x} ${y - 8} h40 v16 h-36`, class: `arrow ${kind}`,
      'marker-end': 'url(#arrowhead)' }),
    s('text', { x: x + 48, y: y + 4, class: 'arrow-label' }, label));
    return;
  }
  const dir = x2 > x1 ? 1 : -1;
  g.append(s('line', { x1, y1: y, x2: x2 - dir * 4, y2: y, class: `arrow ${kind}`,
    'marker-end': 'url(#arrowhead)' }),
  s('text', { x: (x1 + x2) / 2, y: y - 5, 'text-anchor': 'middle', class: 'arrow-label' }, label));
}

export function timeline(entries) {
  if (!entries.length) return h('p', { class: 'muted' }, 'No step recorded yet.');
  const HEAD = 46, ROW = 30, GAP = 22;
  const heights = entries.map((e) => GAP + 18 + ROW * (1 + (e.commands || []).length));
  const total = HEAD + heights.reduce((a, b) => a + b, 0) + 16;
  const svg = s('svg', { viewBox: `0 0 ${WIDTH} ${total}`, class: 'sequence', role: 'img',
    'aria-label': `Saga timeline, ${entries.length} steps` });
  svg.style.minWidth = '760px';
  svg.append(s('defs', {}, s('marker', { id: 'arrowhead', viewBox: '0 0 10 10', refX: 9, refY: 5,
    markerWidth: 8, markerHeight: 8, orient: 'auto-start-reverse' },
  s('path', { d: 'M0 0 L10 5 L0 10 z', class: 'arrowhead' }))));
  for (const [name, x] of Object.entries(LANES)) {
    const edge = name === 'client' || name === 'events';
    const attrs = edge ? { 'data-edge': name } : { 'data-lane': name };
    svg.append(s('g', attrs,
      s('text', { x, y: 20, 'text-anchor': 'middle', class: edge ? 'lane-title edge' : 'lane-title' },
        edge ? (name === 'client' ? 'client' : 'events out') : name),
      s('line', { x1: x, y1: 30, x2: x, y2: total - 8, class: edge ? 'lane edge' : 'lane' })));
  }
  let y = HEAD;
  let previous = null;
  entries.forEach((entry, i) => {
    const g = s('g', { 'data-step': i + 1, 'data-trigger': entry.trigger });
    const at = new Date(entry.occurred_at);
    const delta = previous ? `+${ms(Math.max(0, at - previous))}` : 'start';
    previous = at;
    const repeat = entry.repeat_count > 1
      ? ` · ×${entry.repeat_count} (last ${localTime(entry.last_repeated_at)})` : '';
    y += GAP;
    g.append(s('text', { x: 8, y, class: 'step-title' },
      `${i + 1}. ${localTime(entry.occurred_at)}.${String(at.getMilliseconds()).padStart(3, '0')}` +
      ` · ${delta}${repeat} · ${entry.from_state || 'new'} → ${entry.to_state}`));
    y += 18 + ROW / 2;
    const from = laneOf(entry.trigger);
    const triggerFrom = from === 'events' ? 'orchestrator' : from;
    arrow(g, triggerFrom, 'orchestrator', y, entry.trigger, 'trigger');
    for (const command of entry.commands || []) {
      y += ROW;
      arrow(g, 'orchestrator', laneOf(command) === 'client' ? 'orchestrator' : laneOf(command),
        y, command, command.startsWith('order.') ? 'event' : 'command');
    }
    y += ROW / 2;
    g.append(s('title', {}, `${entry.trigger} at ${at.toString()}; sent: ${(entry.commands || []).join(', ') || 'nothing'}`));
    svg.append(g);
  });
  return [h('div', { class: 'svg-wrap' }, svg),
    h('p', { class: 'muted small' },
      'Solid arrows: messages received; dashed: commands sent; dotted: events published. Times are local.')];
}
