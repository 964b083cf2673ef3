// The tidemark admin console: plain DOM, no framework, no build step. It reads and drives the
// admin JSON API. Every URL is relative to the page (…/admin/), so the console works behind a
// reverse proxy at a sub-path. Text from the API is only ever set as text, never as HTML.

const API = '../v1/admin/';
/** sessionStorage: the admin key (this tab only), or PROXY_AUTH when a reverse proxy adds it. */
const KEY_ITEM = 'tidemark.adminKey';
const PROXY_AUTH = 'proxy';
/** Polling periods (ms): faster while a resync is asked for or running. */
const POLL_FLEET_MS = 10_000;
const POLL_DATABASE_MS = 5_000;
const POLL_ACTIVE_MS = 1_000;
/** Fleet rows drawn at most (worst first, so the ones that matter): the filter narrows the rest. */
const MAX_ROWS = 500;
/** Fleet states, worst first (the order the fleet API sorts by). */
const STATES = ['never', 'silent', 'error', 'quarantine', 'behind', 'resyncing', 'ok'];

const view = document.getElementById('view');
const banner = document.getElementById('banner');
const signOut = document.getElementById('sign-out');

class AuthRequired extends Error {}

// --- DOM and formatting ---------------------------------------------------------------------

/** `h('td', { class: 'num', 'data-x': 1, onclick: f }, child, …)`: strings become text nodes. */
function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = String(v);
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

const dash = '–';
const num = (n) => (n === null || n === undefined ? dash : Number(n).toLocaleString('en'));
const text = (s) => (s === null || s === undefined || s === '' ? dash : String(s));

function duration(seconds) {
  if (seconds === null || seconds === undefined) return dash;
  const s = Math.max(0, Math.round(seconds));
  if (s < 90) return `${s} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172_800) return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
  return `${Math.round(s / 86_400)} d`;
}

/** "5 min ago", with the exact time in a tooltip. */
function ago(iso) {
  if (!iso) return h('span', { class: 'muted' }, 'never');
  const at = new Date(iso);
  return h('time', { datetime: iso, title: at.toLocaleString() }, `${duration((Date.now() - at.getTime()) / 1000)} ago`);
}

/** The local date and time (a run at 03:12 last night), with how long ago in a tooltip. */
function when(iso) {
  const at = new Date(iso);
  const pad = (n) => String(n).padStart(2, '0');
  const local = `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())} ${pad(at.getHours())}:${pad(at.getMinutes())}:${pad(at.getSeconds())}`;
  return h('time', { datetime: iso, title: `${duration((Date.now() - at.getTime()) / 1000)} ago` }, local);
}

const badge = (state) => h('span', { class: `state state-${state}` }, state);

function showError(e) {
  banner.textContent = e instanceof Error ? e.message : String(e);
  banner.hidden = false;
}

// --- API --------------------------------------------------------------------------------------

const seg = encodeURIComponent;
const databasePath = (c, d) => `customers/${seg(c)}/databases/${seg(d)}`;

async function api(method, path, body) {
  const key = sessionStorage.getItem(KEY_ITEM);
  if (key === null) throw new AuthRequired('Enter the admin key.');
  const headers = { accept: 'application/json' };
  if (key !== PROXY_AUTH) headers.authorization = `Bearer ${key}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(API + path, { method, headers, cache: 'no-store', body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await res.json().catch(() => null);
  if (res.status === 401) {
    sessionStorage.removeItem(KEY_ITEM);
    throw new AuthRequired('The server refused the admin key: enter it again.');
  }
  if (!res.ok) {
    const err = data?.error;
    throw new Error(err ? `${err.code}: ${err.message} (request ${err.requestId})` : `${method} ${path}: HTTP ${res.status}`);
  }
  return data;
}

// --- views ------------------------------------------------------------------------------------

/** Bumped on every navigation: a poll of a view that is gone stops. */
let generation = 0;
let timer;

/** Runs `load` now and then every `periodMs(result)` while the view is current. */
function poll(load, periodMs) {
  const mine = generation;
  let loaded = false;
  const tick = async () => {
    if (mine !== generation) return;
    let next = POLL_FLEET_MS;
    // A tab in the background asks the server for nothing.
    if (loaded && document.hidden) {
      timer = setTimeout(tick, next);
      return;
    }
    loaded = true;
    try {
      const result = await load();
      if (mine !== generation) return;
      banner.hidden = true;
      next = periodMs(result);
    } catch (e) {
      if (mine !== generation) return;
      if (e instanceof AuthRequired) return renderLogin(e.message);
      showError(e);
    }
    timer = setTimeout(tick, next);
  };
  return tick();
}

function renderLogin(message) {
  generation++;
  clearTimeout(timer);
  signOut.hidden = true;
  const input = h('input', { type: 'password', name: 'key', autocomplete: 'off', size: 40 });
  const form = h(
    'form',
    {
      class: 'stack',
      onsubmit: (ev) => {
        ev.preventDefault();
        sessionStorage.setItem(KEY_ITEM, input.value === '' ? PROXY_AUTH : input.value);
        route();
      },
    },
    h('label', {}, 'Admin key', input),
    h('button', { type: 'submit' }, 'Sign in'),
    h(
      'p',
      { class: 'muted' },
      'The key stays in this browser tab (sessionStorage) and is sent only to this server, as Authorization: Bearer. ',
      'Leave it empty when a reverse proxy in front of the server signs you in and adds the key.',
    ),
  );
  view.replaceChildren(h('h1', {}, 'Sign in'), message ? h('p', { role: 'status' }, message) : '', form);
  input.focus();
}

/** A table whose columns sort on a click of their header; `columns`: { key, label, value, cell, num }. */
function sortableTable(columns, initial) {
  let sort = initial;
  const tbody = h('tbody');
  const head = h('tr');
  let rows = [];
  const draw = () => {
    for (const th of head.children) th.setAttribute('aria-sort', th.dataset.key === sort?.key ? sort.dir : 'none');
    let shown = rows;
    if (sort) {
      const col = columns.find((c) => c.key === sort.key);
      const sign = sort.dir === 'ascending' ? 1 : -1;
      shown = [...rows].sort((a, b) => {
        const x = col.value(a);
        const y = col.value(b);
        if (x === y) return 0;
        if (x === null || x === undefined) return 1;
        if (y === null || y === undefined) return -1;
        return (x < y ? -1 : 1) * sign;
      });
    }
    tbody.replaceChildren(
      ...shown
        .slice(0, MAX_ROWS)
        .map((r) => h('tr', { 'data-database': r.databaseId }, ...columns.map((c) => h('td', { class: c.num ? 'num' : undefined }, c.cell(r))))),
    );
  };
  for (const c of columns) {
    const flip = () => {
      sort = { key: c.key, dir: sort?.key === c.key && sort.dir === 'ascending' ? 'descending' : 'ascending' };
      draw();
    };
    head.append(
      h('th', { 'data-key': c.key, class: c.num ? 'num' : undefined, scope: 'col' }, h('button', { type: 'button', class: 'sort', onclick: flip }, c.label)),
    );
  }
  return {
    table: h('table', {}, h('thead', {}, head), tbody),
    show(list) {
      rows = list;
      draw();
    },
  };
}

function renderFleet() {
  const filter = h('input', { type: 'search', placeholder: 'Filter: client, name, id, version, error', size: 36, 'aria-label': 'Filter' });
  const state = h('select', { 'aria-label': 'State' }, h('option', { value: '' }, 'All states'), ...STATES.map((s) => h('option', { value: s }, s)));
  const count = h('span', { class: 'muted' });
  const rank = (s) => STATES.indexOf(s);
  const t = sortableTable(
    [
      { key: 'state', label: 'State', value: (r) => rank(r.state), cell: (r) => badge(r.state) },
      { key: 'client', label: 'Client', value: (r) => r.clientId, cell: (r) => r.clientId },
      {
        key: 'name',
        label: 'Database',
        value: (r) => r.name.toLowerCase(),
        cell: (r) => [h('a', { href: `#/db/${seg(r.clientId)}/${seg(r.databaseId)}` }, r.name), h('br'), h('small', { class: 'mono' }, r.databaseId)],
      },
      { key: 'agent', label: 'Agent', value: (r) => r.agentVersion, cell: (r) => text(r.agentVersion) },
      { key: 'sync', label: 'Last sync', value: (r) => r.lastSuccessAt ?? '', cell: (r) => ago(r.lastSuccessAt) },
      { key: 'lag', label: 'Lag', num: true, value: (r) => r.lagSeconds, cell: (r) => duration(r.lagSeconds) },
      { key: 'behind', label: 'Rows behind', num: true, value: (r) => r.rowsBehind, cell: (r) => num(r.rowsBehind) },
      { key: 'quarantine', label: 'Quarantined', num: true, value: (r) => r.quarantinedRows, cell: (r) => num(r.quarantinedRows) },
      { key: 'tables', label: 'Tables', num: true, value: (r) => r.tables, cell: (r) => num(r.tables) },
      { key: 'error', label: 'Error', value: (r) => r.errorCode, cell: (r) => h('span', { class: 'mono' }, text(r.errorCode)) },
    ],
    null,
  );
  let all = [];
  const draw = () => {
    const q = filter.value.trim().toLowerCase();
    const shown = all.filter(
      (r) =>
        (!state.value || r.state === state.value) &&
        (!q || [r.clientId, r.name, r.databaseId, r.agentVersion, r.errorCode].some((v) => v && String(v).toLowerCase().includes(q))),
    );
    count.textContent = `${shown.length} of ${all.length} databases${shown.length > MAX_ROWS ? ` (the first ${MAX_ROWS} shown: filter to see others)` : ''}`;
    t.show(shown);
  };
  filter.addEventListener('input', draw);
  state.addEventListener('change', draw);
  view.replaceChildren(h('h1', {}, 'Fleet'), h('div', { class: 'toolbar' }, filter, state, count), t.table);
  return poll(
    async () => {
      all = (await api('GET', 'fleet')).databases;
      draw();
    },
    () => POLL_FLEET_MS,
  );
}

function resyncCell(r) {
  if (!r) return h('span', { class: 'muted' }, dash);
  const parts = [badge(r.status)];
  if (r.status === 'running') parts.push(' ', h('progress', { max: 1, value: r.progress }), ` ${Math.floor(r.progress * 100)} %`);
  if (r.status === 'done') parts.push(` ${num(r.rowsRepaired)} rows repaired `, ago(r.finishedAt));
  if (r.status === 'requested') parts.push(' ', ago(r.requestedAt));
  if (r.status === 'failed') parts.push(' ', h('span', { class: 'mono' }, text(r.error)));
  return parts;
}

function renderDatabase(clientId, databaseId) {
  const selected = new Set();
  const title = h('h1', {}, `${clientId} / …`);
  const facts = h('dl', { class: 'facts' });
  const tbody = h('tbody');
  const quarantine = h('div');
  const runs = h('tbody', { id: 'runs' });
  const resyncSelected = h('button', { type: 'button', disabled: true }, 'Resync selected tables…');
  let detail = null;

  const resync = async (tables) => {
    const what = tables ? `${tables.length} table(s): ${tables.join(', ')}` : `every table (${detail.tables.length})`;
    const ok = window.confirm(
      `Force a full resync of ${what} of ${clientId} / ${detail.database.name}?\n\nOn its next run the agent compares every row with the cloud copy and repairs the differences; the copy stays readable meanwhile.`,
    );
    if (!ok) return;
    try {
      await api('POST', `${databasePath(clientId, databaseId)}/resync`, tables ? { tables } : {});
      selected.clear();
      await refresh();
    } catch (e) {
      if (e instanceof AuthRequired) renderLogin(e.message);
      else showError(e);
    }
  };
  resyncSelected.addEventListener('click', () => resync([...selected]));
  const resyncAll = h('button', { type: 'button', onclick: () => resync(null) }, 'Force resync of all tables…');

  const newKey = h('div');
  const revoke = async () => {
    const ok = window.confirm(
      `Revoke every API key of ${clientId} / ${detail.database.name} and issue a new one?\n\nIts agent is refused at once, until its configuration holds the new key (shown next, once). To replace a key without an interruption, run \`tidemark rotate-key\` on the agent's host instead.`,
    );
    if (!ok) return;
    try {
      const r = await api('POST', `${databasePath(clientId, databaseId)}/keys/revoke`, {});
      newKey.replaceChildren(
        h(
          'div',
          { class: 'secret', role: 'status' },
          h('strong', {}, `${num(r.keysRevoked)} key(s) revoked. The new API key, shown once: put it in the agent's configuration (apiKey).`),
          h('code', { class: 'mono', id: 'api-key' }, r.apiKey),
        ),
      );
    } catch (e) {
      if (e instanceof AuthRequired) renderLogin(e.message);
      else showError(e);
    }
  };
  const revokeButton = h('button', { type: 'button', class: 'danger', onclick: revoke }, 'Revoke keys and issue a new one…');

  const draw = () => {
    const d = detail.database;
    title.textContent = `${d.clientId} / ${d.name}`;
    const fact = (label, value) => [h('dt', {}, label), h('dd', {}, value)];
    facts.replaceChildren(
      ...fact('State', badge(d.state)),
      ...fact('Database id', h('span', { class: 'mono' }, d.databaseId)),
      ...fact('Agent', text(d.agentVersion)),
      ...fact('Last report', ago(d.lastReportAt)),
      ...fact('Last success', ago(d.lastSuccessAt)),
      ...fact('Lag', duration(d.lagSeconds)),
      ...fact('Rows behind', num(d.rowsBehind)),
      ...fact('Quarantined rows', num(d.quarantinedRows)),
      ...fact('Error', h('span', { class: 'mono' }, text(d.errorCode))),
    );
    for (const name of selected) if (!detail.tables.some((t) => t.table === name)) selected.delete(name);
    resyncSelected.disabled = selected.size === 0;
    tbody.replaceChildren(
      ...detail.tables.map((t) => {
        const box = h('input', {
          type: 'checkbox',
          'aria-label': `Select ${t.table}`,
          checked: selected.has(t.table),
          onchange: (ev) => {
            if (ev.target.checked) selected.add(t.table);
            else selected.delete(t.table);
            resyncSelected.disabled = selected.size === 0;
          },
        });
        const schema = t.schemaState ? h('span', { title: t.schemaState.reason ?? '' }, badge(t.schemaState.state)) : dash;
        const outcome = [
          t.lastOutcome ? badge(t.lastOutcome) : dash,
          t.errorCode ? [' ', h('span', { class: 'mono' }, t.errorCode)] : '',
          t.errorMessage ? h('div', { class: 'message' }, t.errorMessage) : '',
        ];
        return h(
          'tr',
          { 'data-table': t.table },
          h('td', {}, box),
          h('td', { class: 'mono' }, t.table),
          h('td', { class: 'num' }, num(t.localCount)),
          h('td', { class: 'num mono' }, text(t.localMaxVersion)),
          h('td', { class: 'num' }, num(t.remoteCount)),
          h('td', { class: 'num mono' }, text(t.remoteMaxVersion)),
          h('td', { class: 'num' }, duration(t.lagSeconds)),
          h('td', {}, outcome),
          h('td', {}, schema),
          h('td', { class: 'resync' }, resyncCell(t.resync)),
        );
      }),
    );
    const held = detail.tables.filter((t) => t.quarantined?.length);
    quarantine.replaceChildren(
      ...(held.length === 0
        ? [h('p', { class: 'muted' }, 'No quarantined rows.')]
        : held.map((t) =>
            h(
              'table',
              { 'data-quarantine': t.table },
              h('caption', { class: 'mono' }, t.table),
              h('thead', {}, h('tr', {}, h('th', {}, 'Key'), h('th', {}, 'Error'), h('th', { class: 'num' }, 'Attempts'))),
              h(
                'tbody',
                {},
                t.quarantined.map((q) =>
                  h('tr', {}, h('td', { class: 'mono' }, q.key.join(', ')), h('td', { class: 'mono' }, q.error), h('td', { class: 'num' }, num(q.attempts))),
                ),
              ),
            ),
          )),
    );
    runs.replaceChildren(
      ...(detail.runs ?? []).map((r) =>
        h(
          'tr',
          {},
          h('td', {}, when(r.at)),
          h('td', { class: 'num' }, duration(r.durationSeconds)),
          h('td', {}, badge(r.outcome)),
          h('td', { class: 'num' }, num(r.tables.length)),
          h('td', { class: 'num' }, num(r.tables.reduce((n, t) => n + t.rowsUploaded, 0))),
          h('td', { class: 'num' }, num(r.tables.reduce((n, t) => n + t.rowsDeleted, 0))),
          h(
            'td',
            { class: 'mono' },
            r.tables
              .filter((t) => t.errorCode)
              .map((t) => `${t.table}: ${t.errorCode}`)
              .join(', '),
          ),
        ),
      ),
    );
  };
  const refresh = async () => {
    detail = await api('GET', `${databasePath(clientId, databaseId)}/detail`);
    draw();
    return detail;
  };

  const th = (label, cls) => h('th', { scope: 'col', class: cls }, label);
  view.replaceChildren(
    h('p', {}, h('a', { href: '#/' }, '← Fleet')),
    title,
    facts,
    h('div', { class: 'actions' }, resyncAll, resyncSelected, revokeButton),
    newKey,
    h('h2', {}, 'Tables'),
    h(
      'table',
      { id: 'tables' },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          th(''),
          th('Table'),
          th('Local rows', 'num'),
          th('Local max version', 'num'),
          th('Cloud rows', 'num'),
          th('Cloud max version', 'num'),
          th('Lag', 'num'),
          th('Last outcome'),
          th('Schema'),
          th('Resync'),
        ),
      ),
      tbody,
    ),
    h('h2', {}, 'Quarantine'),
    quarantine,
    h('h2', {}, 'Runs'),
    h(
      'table',
      {},
      h(
        'thead',
        {},
        h('tr', {}, th('Started'), th('Duration', 'num'), th('Outcome'), th('Tables', 'num'), th('Rows sent', 'num'), th('Rows deleted', 'num'), th('Errors')),
      ),
      runs,
    ),
  );
  const active = (d) => d.tables.some((t) => t.resync && (t.resync.status === 'requested' || t.resync.status === 'running'));
  return poll(refresh, (d) => (active(d) ? POLL_ACTIVE_MS : POLL_DATABASE_MS));
}

function renderRegister() {
  const client = h('input', { name: 'client', required: true, pattern: '[a-z0-9][a-z0-9_\\-]{0,62}', autocomplete: 'off' });
  const name = h('input', { name: 'name', required: true, maxlength: 200, autocomplete: 'off' });
  const result = h('div');
  const form = h(
    'form',
    {
      class: 'stack',
      onsubmit: async (ev) => {
        ev.preventDefault();
        try {
          const r = await api('POST', `customers/${seg(client.value)}/databases`, { name: name.value });
          banner.hidden = true;
          form.reset();
          result.replaceChildren(
            h(
              'div',
              { class: 'secret', role: 'status' },
              h('strong', {}, 'Registered. Copy the API key now: it is shown once, the server keeps only its hash.'),
              h('code', { class: 'mono', id: 'api-key' }, r.apiKey),
              h('div', { class: 'mono' }, `TIDEMARK_CLIENT_ID=${r.clientId} TIDEMARK_DATABASE_ID=${r.databaseId}`),
              h('p', {}, h('a', { href: `#/db/${seg(r.clientId)}/${seg(r.databaseId)}` }, 'Open the database')),
            ),
          );
        } catch (e) {
          if (e instanceof AuthRequired) renderLogin(e.message);
          else showError(e);
        }
      },
    },
    h('label', {}, 'Client id (lower-case letters, digits, - and _)', client),
    h('label', {}, 'Database name', name),
    h('button', { type: 'submit' }, 'Register'),
  );
  view.replaceChildren(h('h1', {}, 'Register a database'), form, result);
}

function route() {
  generation++;
  clearTimeout(timer);
  banner.hidden = true;
  if (sessionStorage.getItem(KEY_ITEM) === null) return renderLogin('');
  signOut.hidden = false;
  const [, page, a, b] = location.hash.split('/');
  if (page === 'db' && a && b) void renderDatabase(decodeURIComponent(a), decodeURIComponent(b));
  else if (page === 'register') renderRegister();
  else void renderFleet();
}

signOut.addEventListener('click', () => {
  sessionStorage.removeItem(KEY_ITEM);
  route();
});
window.addEventListener('hashchange', route);
route();
