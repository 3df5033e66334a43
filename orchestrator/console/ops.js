// Two operator pages. Map:
// - bulkPage() (#/bulk): retry or compensate every saga matching a filter. A dry run
//   (POST /api/sagas/bulk/{action}, dry_run true) shows how many and which; only then is
//   `button#bulk-run` enabled, and any change of the form disables it again.
// - notificationsPage() (#/notifications?status=&kind=&order_id=&cursor=): the notification
//   service's list (through /api/console/services/notification/) with resend.

import {
  api, h, fill, when, badge, toneOf, setState, showError, errorBox, confirmAction, field, select,
  tableWrap, num, plural, AuthError, signOut, STATE_OPTIONS, STATUS_OPTIONS, REASON_OPTIONS, markInvalid,
} from './core.js';

const BULK_IDS = {
  'filter.state': 'b-state', 'filter.status': 'b-status', 'filter.reason': 'b-reason',
  'filter.customer_id': 'b-customer', 'filter.older_than': 'b-older', 'filter.overdue': 'b-overdue',
  'filter.q': 'b-q', limit: 'b-limit', state: 'b-state', status: 'b-status', reason: 'b-reason',
  customer_id: 'b-customer', older_than: 'b-older', q: 'b-q', filter: 'b-state',
};

export function bulkPage(ctx) {
  const input = (id, attrs = {}) => h('input', { id, type: 'text', autocomplete: 'off', ...attrs });
  const dry = h('button', { id: 'bulk-dry-run', type: 'submit', class: 'primary' }, 'Dry run: list the matching sagas');
  const runBtn = h('button', { id: 'bulk-run', type: 'button', class: 'danger', disabled: true },
    'Run for real');
  const form = h('form', { id: 'bulk-form', class: 'card filters' },
    field('State', select('b-state', STATE_OPTIONS, '')),
    field('Status', select('b-status', STATUS_OPTIONS, '')),
    field('Failure reason', select('b-reason', REASON_OPTIONS, '')),
    field('Customer', input('b-customer', { placeholder: 'customer id' })),
    field('Older than', input('b-older', { placeholder: 'e.g. 10m, 2h', size: 8 })),
    h('div', { class: 'field check' }, h('input', { id: 'b-overdue', type: 'checkbox' }),
      h('label', { for: 'b-overdue' }, 'Overdue only')),
    field('Search', input('b-q', { type: 'search', placeholder: 'order id or correlation id' })),
    field('Action', select('b-action', [['retry', 'Retry (resend the pending command)'],
      ['compensate', 'Compensate (undo and fail)']], 'retry')),
    field('At most (1–1000)', input('b-limit', { type: 'number', min: 1, max: 1000, value: '100', size: 6 })),
    h('div', { class: 'field buttons' }, dry, runBtn));
  const alertSlot = h('div', { class: 'alert-slot' });
  const result = h('div', { id: 'bulk-result', role: 'status', class: 'card result' },
    h('p', { class: 'muted' }, 'Start with a dry run: it changes nothing and lists the sagas a real run would act on.'));
  ctx.main.append(h('div', { class: 'page-head' }, h('h1', {}, 'Bulk repair')), form, alertSlot, result);

  const read = () => {
    const value = (id) => form.querySelector(`#${id}`).value.trim();
    const filter = {};
    if (value('b-state')) filter.state = value('b-state');
    if (value('b-status')) filter.status = value('b-status');
    if (value('b-reason')) filter.reason = value('b-reason');
    if (value('b-customer')) filter.customer_id = value('b-customer');
    if (value('b-older')) filter.older_than = value('b-older');
    if (form.querySelector('#b-overdue').checked) filter.overdue = true;
    if (value('b-q')) filter.q = value('b-q');
    const limit = value('b-limit') ? Number(value('b-limit')) : undefined;
    return { filter, action: value('b-action'), limit };
  };
  const describe = (filter) => {
    const parts = Object.entries(filter).map(([k, v]) => `${k}=${v}`);
    return parts.length ? parts.join(', ') : 'no filter (every saga)';
  };

  let checked = null; // the JSON of the request the last successful dry run was for
  let planned = 0; // how many sagas that dry run named
  const disarm = () => {
    checked = null;
    runBtn.disabled = true;
    runBtn.textContent = 'Run for real';
  };
  form.addEventListener('input', disarm);
  form.addEventListener('change', disarm);

  const call = (request, dryRun) => api(`/api/sagas/bulk/${request.action}`, {
    method: 'POST', body: { filter: request.filter, dry_run: dryRun, limit: request.limit },
  });

  const idList = (ids) => h('ul', { id: 'bulk-ids' }, ids.map((id) =>
    h('li', {}, h('a', { href: `#/sagas/${id}`, class: 'mono' }, id))));

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    disarm();
    const request = read();
    alertSlot.replaceChildren();
    setState('loading');
    dry.disabled = true;
    try {
      const answer = await call(request, true);
      if (!ctx.alive()) return;
      markInvalid(form, null, BULK_IDS);
      const ids = answer.order_ids || [];
      fill(result, h('h2', {}, `Dry run: ${request.action}`),
        h('p', {}, h('strong', { id: 'bulk-matched' }, num(answer.matched)),
          ` ${answer.matched === 1 ? 'saga matches' : 'sagas match'} ${describe(request.filter)}` +
          (answer.matched_capped ? ' (counting stopped at 10,000: there may be more)' : '') + '.'),
        ids.length ? [h('p', {}, `A run acts on the newest ${plural(ids.length, 'saga')}, listed here:`),
          idList(ids)] : h('p', { class: 'muted' }, 'Nothing to do.'),
        h('p', { class: 'muted small' }, 'Nothing was changed. "Run for real" acts on the sagas matching at that moment.'));
      checked = JSON.stringify(request);
      planned = ids.length;
      runBtn.disabled = ids.length === 0;
      runBtn.textContent = `Run: ${request.action} ${plural(ids.length, 'saga')}`;
      setState('ready');
    } catch (err) {
      if (!ctx.alive()) return;
      markInvalid(form, err, BULK_IDS);
      fill(result, h('p', { class: 'muted' }, 'The dry run was refused; nothing changed.'));
      showError(alertSlot, err);
    } finally {
      dry.disabled = false;
    }
  });

  runBtn.addEventListener('click', async () => {
    const request = read();
    if (JSON.stringify(request) !== checked) { disarm(); return; }
    const verb = request.action === 'retry'
      ? 'Retry (resend the pending command of)'
      : 'Compensate (undo and fail with reason timed_out)';
    const ok = await confirmAction(`${verb} up to ${plural(planned, 'saga')} matching ` +
      `${describe(request.filter)}? The newest matching now are taken; those that ended in the ` +
      'meantime are skipped and reported.', `${request.action === 'retry' ? 'Retry' : 'Compensate'} ${plural(planned, 'saga')}`);
    if (!ok || !ctx.alive()) return;
    runBtn.disabled = true;
    setState('loading');
    try {
      const answer = await call(request, false);
      if (!ctx.alive()) return;
      const results = answer.results || [];
      fill(result, h('h2', {}, `Done: ${request.action}`),
        h('p', {}, h('strong', { id: 'bulk-matched' }, num(answer.matched)), ' matched · ',
          badge(`${num(answer.done ?? 0)} done`, 'ok'), ' ',
          badge(`${num(answer.skipped ?? 0)} skipped`, (answer.skipped ?? 0) ? 'warn' : 'info')),
        answer.matched > (answer.order_ids || []).length
          ? h('p', {}, `${num(answer.matched - (answer.order_ids || []).length)} more matched beyond the limit: ` +
            'run a dry run again to take the next ones.') : null,
        results.length ? tableWrap(h('table', { id: 'bulk-results' },
          h('thead', {}, h('tr', {}, ['Order id', 'Outcome', 'Reason'].map((t) => h('th', { scope: 'col' }, t)))),
          h('tbody', {}, results.map((r) => h('tr', {},
            h('td', {}, h('a', { href: `#/sagas/${r.order_id}`, class: 'mono' }, r.order_id)),
            h('td', {}, badge(r.outcome, r.outcome === 'done' ? 'ok' : 'warn')),
            h('td', {}, r.reason ?? '—')))))) : null);
      disarm();
      setState('ready');
    } catch (err) {
      if (!ctx.alive()) return;
      fill(result, h('p', {}, badge('Refused', 'bad'), ' The run was refused; see the message above.'));
      showError(alertSlot, err);
    }
  });
  setState('ready');
}

// ---- notifications --------------------------------------------------------------------------

const NOTIFY = '/api/console/services/notification/api/notifications';

export function notificationsPage(ctx) {
  const q = ctx.query;
  const form = h('form', { id: 'notification-filters', class: 'card filters' },
    field('Status', select('n-status', [['', 'Any status'], ['PENDING', 'PENDING'], ['SENT', 'SENT'],
      ['FAILED', 'FAILED'], ['SKIPPED', 'SKIPPED']], q.get('status'))),
    field('Kind', select('n-kind', [['', 'Any kind'], ['order_confirmed', 'order_confirmed'],
      ['order_failed', 'order_failed'], ['low_stock', 'low_stock']], q.get('kind'))),
    field('Order id', h('input', { id: 'n-order', type: 'text', autocomplete: 'off',
      value: q.get('order_id') || '', placeholder: 'order uuid' })),
    h('div', { class: 'field buttons' },
      h('button', { id: 'n-apply', type: 'submit', class: 'primary' }, 'Apply filters'),
      h('a', { href: '#/notifications', class: 'button-link' }, 'Clear')));
  const alertSlot = h('div', { class: 'alert-slot' });
  const result = h('div', { id: 'notification-result', role: 'status', class: 'result' });
  const body = h('tbody', {}, h('tr', {}, h('td', { colspan: 9, class: 'muted' }, 'Loading…')));
  const next = h('button', { id: 'notifications-next', type: 'button', hidden: true }, 'Next page »');
  const first = h('button', { id: 'notifications-first', type: 'button', hidden: !q.get('cursor') }, '« First page');
  ctx.main.append(h('div', { class: 'page-head' }, h('h1', {}, 'Notifications')), form, alertSlot, result,
    h('section', { class: 'card' }, tableWrap(h('table', { id: 'notification-table' },
      h('thead', {}, h('tr', {}, ['Kind', 'Status', 'Recipient', 'Order', 'Attempts', 'Created', 'Sent',
        'Last error', 'Action'].map((t) => h('th', { scope: 'col' }, t)))), body)),
    h('div', { class: 'pager' }, first, next)));

  const filters = new URLSearchParams();
  for (const key of ['status', 'kind', 'order_id']) if (q.get(key)) filters.set(key, q.get(key));
  const hashFor = (params) => `#/notifications${params.toString() ? `?${params}` : ''}`;
  first.addEventListener('click', () => ctx.go(hashFor(filters)));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const params = new URLSearchParams();
    const set = (key, id) => {
      const value = form.querySelector(`#${id}`).value.trim();
      if (value) params.set(key, value);
    };
    set('status', 'n-status'); set('kind', 'n-kind'); set('order_id', 'n-order');
    ctx.go(hashFor(params));
  });

  // A picked status or kind applies at once (the order id on Enter or the button).
  for (const id of ['n-status', 'n-kind']) {
    form.querySelector(`#${id}`).addEventListener('change', () => form.requestSubmit());
  }

  const resend = async (n) => {
    const ok = await confirmAction(`Resend the ${n.kind} notification to ${n.recipient ?? 'its recipient'}` +
      `${n.order_id ? ` for order ${n.order_id}` : ''}? It becomes PENDING and the notification service sends it again.`,
    'Resend it');
    if (!ok || !ctx.alive()) return;
    try {
      const answer = await api(`${NOTIFY}/${encodeURIComponent(n.id)}/resend`, { method: 'POST' });
      if (!ctx.alive()) return;
      fill(result, badge('Done', 'ok'), ` Notification ${n.id} queued again: now ${answer?.status ?? 'PENDING'}.`);
    } catch (err) {
      if (err instanceof AuthError) { signOut(err.message); return; }
      if (!ctx.alive()) return;
      fill(result, badge('Refused', 'bad'), ' ', errorBox(err));
    }
    load();
  };

  const load = () => api(NOTIFY, {
    query: { status: q.get('status'), kind: q.get('kind'), order_id: q.get('order_id'),
      cursor: q.get('cursor'), limit: 50 },
  }).then((page) => {
    if (!ctx.alive()) return;
    const items = page.items || [];
    fill(body, items.length ? items.map((n) => {
      const button = h('button', { type: 'button', class: 'resend',
        disabled: n.status === 'PENDING',
        title: n.status === 'PENDING' ? 'Already waiting to be sent' : null }, 'Resend');
      button.addEventListener('click', () => resend(n));
      return h('tr', { 'data-notification-id': n.id },
        h('td', {}, n.kind), h('td', {}, badge(n.status, toneOf(n.status))),
        h('td', {}, n.recipient ?? h('span', { class: 'muted' }, 'none')),
        h('td', {}, n.order_id ? h('a', { href: `#/sagas/${n.order_id}`, class: 'mono' }, n.order_id)
          : h('span', { class: 'mono' }, n.subject)),
        h('td', { class: 'num' }, num(n.attempts)), h('td', {}, when(n.created_at)),
        h('td', {}, when(n.sent_at)), h('td', { class: 'wrap' }, n.last_error ?? '—'),
        h('td', {}, button));
    }) : h('tr', {}, h('td', { colspan: 9, class: 'empty' }, 'No notification matches these filters.')));
    next.hidden = !page.next_cursor;
    next.onclick = page.next_cursor ? () => {
      const params = new URLSearchParams(filters);
      params.set('cursor', page.next_cursor);
      ctx.go(hashFor(params));
    } : null;
    setState('ready');
  }).catch((err) => {
    if (!ctx.alive()) return;
    markInvalid(form, err, { status: 'n-status', kind: 'n-kind', order_id: 'n-order' });
    showError(alertSlot, err);
  });
  load();
}
