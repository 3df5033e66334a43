// The dead-letters page (#/dead-letters). Map:
// - groups: every service's DLQ grouped by reason (GET …/api/admin/dead-letters/groups; the
//   orchestrator's own directly, the participants' through /api/console/services/{service}/).
// - messages: one group's messages (GET …/api/admin/dead-letters, filtered by reason here),
//   one message's headers, body and failure history.
// - replay (a group, one message) and delete: confirmed in dialog#confirm, reported in
//   #dl-result, then both lists reload.

import {
  api, h, fill, plural, when, badge, setState, showError, errorBox, confirmAction, tableWrap, num,
  AuthError, signOut,
} from './core.js';

const SERVICES = ['orchestrator', 'payment', 'inventory', 'notification'];
const PAGE_SIZE = 100;

const base = (service) =>
  (service === 'orchestrator' ? '/api/admin/dead-letters'
    : `/api/console/services/${service}/api/admin/dead-letters`);

export function deadLettersPage(ctx) {
  const alertSlot = h('div', { class: 'alert-slot' });
  const result = h('div', { id: 'dl-result', role: 'status', class: 'result' });
  const groupsBody = h('tbody', {}, h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'Loading…')));
  const messagesEl = h('div', { id: 'dl-messages' },
    h('p', { class: 'muted' }, 'Choose a group above to list its messages.'));
  const messageEl = h('div', { id: 'dl-message' },
    h('p', { class: 'muted' }, 'Press View on a message to see its headers, body and failure history.'));
  const refresh = h('button', { type: 'button' }, 'Reload');
  ctx.main.append(
    h('div', { class: 'page-head' }, h('h1', {}, 'Dead letters'), refresh),
    alertSlot, result,
    h('section', { class: 'card' }, h('h2', {}, 'Groups by queue and reason'),
      tableWrap(h('table', { id: 'dl-groups' },
        h('thead', {}, h('tr', {}, ['Queue', 'Reason', 'Count', 'First seen', 'Last seen', 'Actions']
          .map((t) => h('th', { scope: 'col' }, t)))),
        groupsBody))),
    h('section', { class: 'card' }, h('h2', {}, 'Messages'), messagesEl),
    h('section', { class: 'card' }, h('h2', {}, 'Message'), messageEl));

  let selected = null; // {service, queue, reason}
  let offset = 0;

  const report = (kind, ...content) => fill(result, badge(kind === 'ok' ? 'Done' : 'Refused',
    kind === 'ok' ? 'ok' : 'bad'), ' ', ...content);

  const failed = (err) => {
    if (err instanceof AuthError) { signOut(err.message); return true; }
    return false;
  };

  const loadGroups = async () => {
    const answers = await Promise.all(SERVICES.map((service) =>
      api(`${base(service)}/groups`).then((data) => ({ service, data }),
        (err) => { if (err instanceof AuthError) throw err; return { service, err }; })));
    if (!ctx.alive()) return;
    const rows = [];
    for (const { service, data, err } of answers) {
      if (err) {
        rows.push(h('tr', { 'data-service': service }, h('td', {}, service),
          h('td', { colspan: 5 }, errorBox(err, `${service}: could not read its dead letters.`))));
        continue;
      }
      const groups = data.groups || [];
      if (!groups.length) {
        rows.push(h('tr', { 'data-service': service, class: 'quiet' },
          h('td', { class: 'mono' }, data.queue), h('td', { colspan: 5, class: 'muted' },
            `${service}: no dead letters`)));
        continue;
      }
      for (const group of groups) {
        const pick = { service, queue: data.queue, reason: group.reason, count: group.count };
        const show = h('button', { type: 'button', class: 'dl-show' }, 'Show messages');
        const replay = h('button', { type: 'button', class: 'dl-replay-group' },
          `Replay ${plural(group.count, 'message')}`);
        show.addEventListener('click', () => { select(pick); });
        replay.addEventListener('click', () => replayGroup(pick));
        const tr = h('tr', { 'data-service': service, 'data-reason': group.reason ?? '',
          class: selected && selected.service === service && selected.reason === group.reason
            ? 'selected' : null },
        h('td', { class: 'mono' }, data.queue), h('td', {}, group.reason ?? '(none)'),
        h('td', { class: 'num' }, plural(group.count, 'message')),
        h('td', {}, when(group.first_seen)), h('td', {}, when(group.last_seen)),
        h('td', { class: 'row-actions' }, show, replay));
        // The whole row picks the group too (the buttons stay the keyboard's way in).
        tr.addEventListener('click', (event) => { if (!event.target.closest('button, a')) select(pick); });
        tr.classList.add('pickable');
        rows.push(tr);
      }
      if (data.scanned !== undefined && data.total !== undefined && data.scanned < data.total) {
        rows.push(h('tr', { 'data-service': service }, h('td', { colspan: 6, class: 'muted small' },
          `${data.queue}: grouped the first ${num(data.scanned)} of ${num(data.total)} messages.`)));
      }
    }
    fill(groupsBody, rows);
  };

  const select = (pick) => {
    selected = pick;
    offset = 0;
    fill(messageEl, h('p', { class: 'muted' }, 'Press View on a message to see its headers, body and failure history.'));
    for (const tr of groupsBody.querySelectorAll('tr')) {
      tr.classList.toggle('selected',
        tr.dataset.service === pick.service && tr.dataset.reason === (pick.reason ?? ''));
    }
    loadMessages().catch((err) => { if (!failed(err)) fill(messagesEl, errorBox(err)); });
  };

  const loadMessages = async () => {
    if (!selected) return;
    const pick = selected;
    const page = await api(base(pick.service), { query: { offset, limit: PAGE_SIZE } });
    if (!ctx.alive() || pick !== selected) return;
    const items = (page.items || []).filter((m) => (m.reason ?? null) === (pick.reason ?? null));
    const table = h('table', {},
      h('thead', {}, h('tr', {}, ['Message id', 'Type', 'Error', 'Attempts', 'Last failed', 'Actions']
        .map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, items.length ? items.map((m) => messageRow(pick, m))
        : h('tr', {}, h('td', { colspan: 6, class: 'empty' }, 'None of this reason on this page.'))));
    const pager = h('div', { class: 'pager' });
    if (offset > 0) {
      const prev = h('button', { type: 'button' }, '« Previous messages');
      prev.addEventListener('click', () => { offset = Math.max(0, offset - PAGE_SIZE); select2(); });
      pager.append(prev);
    }
    if (page.next_offset !== null && page.next_offset !== undefined) {
      const more = h('button', { type: 'button' }, 'Next messages »');
      more.addEventListener('click', () => { offset = page.next_offset; select2(); });
      pager.append(more);
    }
    fill(messagesEl,
      h('p', {}, `${pick.queue}, reason `, h('code', {}, pick.reason ?? '(none)'),
        `: messages ${num(offset + 1)}–${num(offset + (page.items || []).length)} of ` +
        `${num(page.total)} in the queue, ${items.length} of this reason.`),
      tableWrap(table), pager);
  };
  const select2 = () => loadMessages().catch((err) => { if (!failed(err)) fill(messagesEl, errorBox(err)); });

  const messageRow = (pick, m) => {
    const id = m.message_id;
    const view = h('button', { type: 'button', class: 'dl-view' }, 'View');
    const replay = h('button', { type: 'button', class: 'dl-replay', disabled: !id }, 'Replay');
    const del = h('button', { type: 'button', class: 'dl-delete danger', disabled: !id }, 'Delete');
    view.addEventListener('click', () => fill(messageEl, messageDetail(pick, m)));
    replay.addEventListener('click', () => replayOne(pick, m));
    del.addEventListener('click', () => deleteOne(pick, m));
    return h('tr', { 'data-message-id': id ?? '' },
      h('td', { class: 'mono' }, id ?? '(no id)'), h('td', {}, m.type ?? m.message_type ?? '—'),
      h('td', { class: 'wrap' }, m.error ?? '—'), h('td', { class: 'num' }, num(m.attempts)),
      h('td', {}, when(m.last_failed_at)), h('td', { class: 'row-actions' }, view, replay, del));
  };

  const after = async () => {
    await Promise.all([loadGroups(), loadMessages()]);
  };

  const replayReport = (answer) => {
    const parts = [`Replayed ${num(answer.replayed)} message${answer.replayed === 1 ? '' : 's'}.`];
    if (answer.not_found?.length) parts.push(` Not found: ${answer.not_found.join(', ')}.`);
    if (answer.failed?.length) parts.push(` Failed: ${answer.failed.map((f) => (typeof f === 'string' ? f : JSON.stringify(f))).join(', ')}.`);
    const refused = answer.refused || [];
    return [parts.join(''), refused.length ? h('ul', {}, refused.map((r) =>
      h('li', {}, `Refused ${r.message_id}: ${r.reason}${r.detail ? ` (${r.detail})` : ''}`))) : null];
  };

  const run = async (text, yes, call, describe) => {
    if (!(await confirmAction(text, yes)) || !ctx.alive()) return;
    fill(result, 'Working…');
    try {
      const answer = await call();
      if (!ctx.alive()) return;
      report('ok', describe(answer));
    } catch (err) {
      if (failed(err) || !ctx.alive()) return;
      report('bad', errorBox(err));
    }
    after().catch((err) => { if (!failed(err)) showError(alertSlot, err); });
  };

  const replayGroup = (pick) => run(
    `Replay ${plural(pick.count, 'message')} of reason ${pick.reason ?? '(none)'} from ${pick.queue}? ` +
    `Each is published again to the exchange and routing key it was first sent to, and leaves ${pick.queue}.`,
    `Replay ${plural(pick.count, 'message')}`,
    () => api(`${base(pick.service)}/replay`, { method: 'POST', body: { reason: pick.reason } }),
    replayReport);

  const replayOne = (pick, m) => run(
    `Replay message ${m.message_id} (${m.type ?? 'unknown type'}) from ${pick.queue}? It is published again to ` +
    `${m.exchange ? `exchange ${m.exchange}` : 'the default exchange'} with routing key ${m.routing_key}, and leaves ${pick.queue}.`,
    'Replay the message',
    () => api(`${base(pick.service)}/replay`, { method: 'POST', body: { message_ids: [m.message_id] } }),
    replayReport);

  const deleteOne = (pick, m) => run(
    `Delete message ${m.message_id} (${m.type ?? 'unknown type'}) from ${pick.queue} for good? It will not be processed; this cannot be undone.`,
    'Delete the message',
    () => api(`${base(pick.service)}/${encodeURIComponent(m.message_id)}`, { method: 'DELETE' }),
    (answer) => `Deleted ${num(answer?.deleted ?? 1)} message (${m.message_id}) from ${pick.queue}.`);

  refresh.addEventListener('click', () => {
    setState('loading');
    after().then(() => { if (ctx.alive()) setState('ready'); },
      (err) => { if (!failed(err) && ctx.alive()) showError(alertSlot, err); });
  });

  loadGroups().then(() => { if (ctx.alive()) setState('ready'); },
    (err) => { if (ctx.alive()) showError(alertSlot, err); });
}

function messageDetail(pick, m) {
  const headers = Object.entries(m.headers || {});
  const deaths = Array.isArray(m.headers?.['x-death']) ? m.headers['x-death'] : [];
  const body = m.payload_format === 'json' ? JSON.stringify(m.payload, null, 2) : String(m.payload ?? '');
  return [
    h('h3', {}, 'Message ', h('span', { class: 'mono' }, m.message_id ?? '(no id)'), ` in ${pick.queue}`),
    h('dl', { class: 'kv' },
      h('dt', {}, 'Type'), h('dd', {}, m.type ?? m.message_type ?? '—'),
      h('dt', {}, 'Reason'), h('dd', {}, m.reason ?? '—'),
      h('dt', {}, 'Last error'), h('dd', { class: 'wrap' }, m.error ?? '—'),
      h('dt', {}, 'Attempts'), h('dd', {}, num(m.attempts)),
      h('dt', {}, 'First failed'), h('dd', {}, when(m.first_failed_at)),
      h('dt', {}, 'Last failed'), h('dd', {}, when(m.last_failed_at)),
      h('dt', {}, 'Replays to'), h('dd', {}, `exchange "${m.exchange}", routing key "${m.routing_key}"`)),
    h('h4', {}, 'Failure history (x-death)'),
    deaths.length ? tableWrap(h('table', {},
      h('thead', {}, h('tr', {}, ['Queue', 'Reason', 'Count', 'Time', 'Exchange', 'Routing keys']
        .map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, deaths.map((d) => h('tr', {}, h('td', { class: 'mono' }, d.queue ?? '—'),
        h('td', {}, d.reason ?? '—'), h('td', { class: 'num' }, num(d.count)),
        h('td', {}, d.time ? when(typeof d.time === 'number' ? new Date(d.time * 1000).toISOString() : d.time) : '—'),
        h('td', {}, d.exchange ?? '—'),
        h('td', {}, Array.isArray(d['routing-keys']) ? d['routing-keys'].join(', ') : '—'))))))
      : h('p', { class: 'muted' }, 'No x-death header: dead-lettered by the consumer (see attempts above).'),
    h('h4', {}, `Headers (${headers.length})`),
    tableWrap(h('table', { class: 'headers' }, h('tbody', {}, headers.map(([key, value]) =>
      h('tr', {}, h('th', { scope: 'row', class: 'mono' }, key),
        h('td', {}, h('pre', {}, typeof value === 'string' ? value : JSON.stringify(value, null, 1)))))))),
    h('h4', {}, `Body (${m.payload_format})`),
    h('pre', { class: 'body' }, body),
  ];
}
