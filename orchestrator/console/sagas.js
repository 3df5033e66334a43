// The sagas page (#/sagas?state=&status=&reason=&customer_id=&older_than=&overdue=&q=&cursor=).
// The filters live in the hash, so a filtered list is a link and Back works; the cursor too.
// GET /api/sagas answers one page; `button#sagas-next` follows next_cursor.

import {
  api, h, fill, when, badge, toneOf, setState, showError, field, select, tableWrap, span,
  STATE_OPTIONS, STATUS_OPTIONS, REASON_OPTIONS, markInvalid,
} from './core.js';

const PAGE_SIZE = 50;
const FILTERS = ['state', 'status', 'reason', 'customer_id', 'older_than', 'overdue', 'q'];
const FIELD_IDS = {
  state: 'f-state', status: 'f-status', reason: 'f-reason', customer_id: 'f-customer',
  older_than: 'f-older', overdue: 'f-overdue', q: 'f-q', cursor: 'sagas-first',
};

export function sagasPage(ctx) {
  const q = ctx.query;
  const form = h('form', { id: 'saga-filters', class: 'card filters' },
    field('State', select('f-state', STATE_OPTIONS, q.get('state'))),
    field('Status', select('f-status', STATUS_OPTIONS, q.get('status'))),
    field('Failure reason', select('f-reason', REASON_OPTIONS, q.get('reason'))),
    field('Customer', h('input', { id: 'f-customer', type: 'text', value: q.get('customer_id') || '',
      autocomplete: 'off', placeholder: 'customer id' })),
    field('Older than', h('input', { id: 'f-older', type: 'text', value: q.get('older_than') || '',
      autocomplete: 'off', placeholder: 'e.g. 10m, 2h', size: 8 })),
    h('div', { class: 'field check' },
      h('input', { id: 'f-overdue', type: 'checkbox', checked: q.get('overdue') === 'true' }),
      h('label', { for: 'f-overdue' }, 'Overdue only')),
    field('Search', h('input', { id: 'f-q', type: 'search', value: q.get('q') || '',
      autocomplete: 'off', placeholder: 'order id or correlation id' })),
    h('div', { class: 'field buttons' },
      h('button', { id: 'f-apply', type: 'submit', class: 'primary' }, 'Apply filters'),
      h('a', { href: '#/sagas', class: 'button-link' }, 'Clear')));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    const values = {
      state: form.querySelector('#f-state').value,
      status: form.querySelector('#f-status').value,
      reason: form.querySelector('#f-reason').value,
      customer_id: form.querySelector('#f-customer').value.trim(),
      older_than: form.querySelector('#f-older').value.trim(),
      overdue: form.querySelector('#f-overdue').checked ? 'true' : '',
      q: form.querySelector('#f-q').value.trim(),
    };
    for (const [key, value] of Object.entries(values)) if (value) next.set(key, value);
    const hash = `#/sagas${next.toString() ? `?${next}` : ''}`;
    ctx.go(hash);
  });

  const alertSlot = h('div', { class: 'alert-slot' });
  const summary = h('p', { class: 'muted', id: 'sagas-summary' }, 'Loading…');
  const body = h('tbody');
  const first = h('button', { id: 'sagas-first', type: 'button', hidden: !q.get('cursor') },
    '« First page');
  const next = h('button', { id: 'sagas-next', type: 'button', hidden: true }, 'Next page »');
  ctx.main.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Sagas'), summary),
    form, alertSlot,
    h('section', { class: 'card' },
      tableWrap(h('table', { id: 'saga-table' },
        h('thead', {}, h('tr', {}, ['Order id', 'Customer', 'State', 'Status', 'Failure reason',
          'Age', 'Created', 'Updated'].map((t) => h('th', { scope: 'col' }, t)))),
        body)),
      h('div', { class: 'pager' }, first, next)));

  const base = new URLSearchParams();
  for (const key of FILTERS) if (q.get(key)) base.set(key, q.get(key));
  first.addEventListener('click', () => ctx.go(`#/sagas${base.toString() ? `?${base}` : ''}`));

  const query = { limit: PAGE_SIZE, cursor: q.get('cursor') };
  for (const key of FILTERS) query[key] = q.get(key);
  api('/api/sagas', { query }).then((page) => {
    if (!ctx.alive()) return;
    const items = page.items || [];
    fill(body, items.length ? items.map(row)
      : h('tr', {}, h('td', { colspan: 8, class: 'empty' }, 'No saga matches these filters.')));
    summary.textContent = `${items.length} saga${items.length === 1 ? '' : 's'} on this page` +
      (page.next_cursor ? ' · more on the next page' : '');
    if (page.next_cursor) {
      next.hidden = false;
      next.onclick = () => {
        const params = new URLSearchParams(base);
        params.set('cursor', page.next_cursor);
        ctx.go(`#/sagas?${params}`);
      };
    }
    setState('ready');
  }).catch((err) => {
    if (!ctx.alive()) return;
    summary.textContent = 'The list could not be read.';
    markInvalid(form, err, FIELD_IDS);
    showError(alertSlot, err);
  });
}

function row(saga) {
  const age = (Date.now() - new Date(saga.created_at).getTime()) / 1000;
  return h('tr', { 'data-order-id': saga.order_id },
    h('td', {}, h('a', { class: 'saga-link mono', href: `#/sagas/${saga.order_id}` }, saga.order_id)),
    h('td', {}, saga.customer_id),
    h('td', {}, badge(saga.state, toneOf(saga.state)),
      saga.stuck ? [' ', badge('overdue', 'warn')] : null),
    h('td', {}, badge(saga.status, toneOf(saga.status))),
    h('td', {}, saga.failure_reason || h('span', { class: 'muted' }, '—')),
    h('td', { class: 'num' }, span(age)),
    h('td', {}, when(saga.created_at)),
    h('td', {}, when(saga.updated_at)));
}
