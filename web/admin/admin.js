// web/admin/admin.js: the admin console's logic, one ES module, no
// framework and no build step.  It signs an admin in through the client
// login API, keeps the access token in sessionStorage (gone when the tab
// closes) and drives Synapse's Admin API (/_synapse/admin/v1, /v2) as
// served by mxstack's admin module.  Every piece of server data reaches the
// page through textContent / attributes (never innerHTML), so nothing the
// server returns can run as script.

const A1 = '/_synapse/admin/v1';
const A2 = '/_synapse/admin/v2';
const SESSION_KEY = 'mxstack.admin.session';
const PAGE_SIZE = 25;
const POLL_MS = 1000;

const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;

// The signed-in session and what the page knows about the server.
const state = {
  hs: '',            // homeserver base URL, no trailing slash
  token: '',
  userId: '',
  serverName: '',
  config: {},        // config.json from the module
  timers: new Set(), // deletion polls, cancelled on sign-out
};

// ------------------------------------------------------------ helpers --

class ApiError extends Error {
  constructor(status, errcode, message) {
    super(message);
    this.status = status;
    this.errcode = errcode;
  }
}

// Builds an element: h('td', {class: 'id'}, 'text', child...).  Attributes
// starting with "on" are listeners; `false` / null attributes are left out.
function h(tag, attrs = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const kid of kids.flat()) {
    if (kid == null || kid === false) continue;
    el.append(kid instanceof Node ? kid : String(kid));
  }
  return el;
}

function trimSlash(u) {
  return String(u || '').replace(/\/+$/, '');
}

// Synapse gives creation_ts in seconds on old versions and milliseconds on
// new ones; anything below 10^11 is taken as seconds.
function fmtTs(ts) {
  if (ts == null || ts === 0) return '—';
  const ms = ts < 1e11 ? ts * 1000 : ts;
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? String(ts) : d.toLocaleString();
}

function fmtBytes(n) {
  if (!Number.isFinite(n)) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

function fmtDuration(ms) {
  if (!ms) return '—';
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${Math.round(s / 3600)} h`;
}

function badge(text, kind = '') {
  return h('span', { class: `badge ${kind}`.trim() }, text);
}

// Messages in the polite live region at the top of the page.
function say(text, kind = 'ok') {
  const box = $('status');
  box.replaceChildren(h('div', { class: `msg ${kind}` }, text));
}

function sayError(prefix, err) {
  const detail = err instanceof ApiError && err.errcode ? `${err.message} (${err.errcode})` : err.message;
  say(`${prefix}: ${detail}`, 'error');
}

function emptyRow(tbody, cols, text) {
  tbody.replaceChildren(h('tr', {}, h('td', { class: 'empty', colspan: cols }, text)));
}

// ---------------------------------------------------------------- API --

async function request(method, url, { body, token, expectText = false } = {}) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  let payload;
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(url, { method, headers, body: payload, cache: 'no-store', credentials: 'omit' });
  } catch (e) {
    throw new ApiError(0, 'M_NETWORK', `Cannot reach the homeserver (${e.message})`);
  }
  const text = await res.text();
  if (expectText && res.ok) return text;
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!res.ok) {
    throw new ApiError(res.status, data?.errcode || '', data?.error || `HTTP ${res.status}`);
  }
  return data ?? {};
}

// An authenticated call to the homeserver; a 401 ends the session.
async function api(method, path, body) {
  try {
    return await request(method, state.hs + path, { body, token: state.token });
  } catch (e) {
    if (e.status === 401) endSession('Your session has ended; sign in again.');
    throw e;
  }
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

// -------------------------------------------------------------- pager --

// Forward pagination with next tokens, and "previous" from a stack of the
// tokens that led to each page.
function makePager(id, load) {
  const root = $(id);
  const prev = root.querySelector('[data-page="prev"]');
  const next = root.querySelector('[data-page="next"]');
  const info = root.querySelector('.pager-info');
  const p = { from: undefined, next: undefined, stack: [] };
  p.reset = () => { p.from = undefined; p.next = undefined; p.stack = []; };
  p.update = (nextToken, text) => {
    p.next = nextToken ?? undefined;
    prev.disabled = p.stack.length === 0;
    next.disabled = p.next === undefined;
    info.textContent = text;
  };
  prev.addEventListener('click', () => {
    if (!p.stack.length) return;
    p.from = p.stack.pop();
    load();
  });
  next.addEventListener('click', () => {
    if (p.next === undefined) return;
    p.stack.push(p.from);
    p.from = p.next;
    load();
  });
  return p;
}

function pageInfo(pager, shown, total) {
  const start = Number(pager.from) || 0;
  if (!shown) return total ? `none of ${total}` : 'none';
  if (Number.isFinite(start) && total != null) return `${start + 1}–${start + shown} of ${total}`;
  return `${shown} shown`;
}

// ------------------------------------------------------------- dialog --

// Asks for confirmation; `checks` adds checkboxes [{id, label, checked}].
// Resolves to null (cancelled) or {checkboxId: bool...}.
function confirmDialog({ title, text, ok = 'Confirm', checks = [] }) {
  const dlg = $('confirm-dialog');
  $('confirm-title').textContent = title;
  $('confirm-text').textContent = text;
  $('confirm-ok').textContent = ok;
  const extra = $('confirm-extra');
  extra.replaceChildren(...checks.map((c) => h('label', { class: 'check' },
    h('input', { type: 'checkbox', id: `confirm-${c.id}`, checked: c.checked || false }), ` ${c.label}`)));
  extra.querySelectorAll('label.check').forEach((l) => l.after(h('br')));
  dlg.returnValue = '';
  return new Promise((resolve) => {
    dlg.addEventListener('close', () => {
      if (dlg.returnValue !== 'ok') return resolve(null);
      const out = {};
      for (const c of checks) out[c.id] = $(`confirm-${c.id}`).checked;
      resolve(out);
    }, { once: true });
    dlg.showModal();
    $('confirm-cancel').focus();
  });
}

// ------------------------------------------------------------ session --

function saveSession() {
  sessionStorage.setItem(SESSION_KEY, JSON.stringify({
    hs: state.hs, token: state.token, userId: state.userId, serverName: state.serverName,
  }));
}

function loadSession() {
  try {
    const s = JSON.parse(sessionStorage.getItem(SESSION_KEY) || 'null');
    if (s && s.token && s.hs) Object.assign(state, s);
    return Boolean(s && s.token);
  } catch {
    return false;
  }
}

function endSession(message) {
  for (const t of state.timers) clearTimeout(t);
  state.timers.clear();
  state.token = '';
  sessionStorage.removeItem(SESSION_KEY);
  showLogin(message);
}

function showLogin(message = '') {
  $('app-view').hidden = true;
  $('whoami').hidden = true;
  $('login-view').hidden = false;
  $('login-error').textContent = message;
  $('login-hs').value = state.hs || state.config.homeserver_url || location.origin;
  $('login-user').focus();
}

function showApp() {
  $('login-view').hidden = true;
  $('app-view').hidden = false;
  $('whoami').hidden = false;
  $('whoami-user').textContent = state.userId;
  $('whoami-server').textContent = state.serverName;
  route();
}

async function onLogin(ev) {
  ev.preventDefault();
  const err = $('login-error');
  err.textContent = '';
  const user = $('login-user').value.trim();
  const password = $('login-password').value;
  const hs = trimSlash($('login-hs').value.trim() || state.config.homeserver_url || location.origin);
  if (!user || !password) {
    err.textContent = 'Enter a user ID and a password.';
    return;
  }
  const btn = $('login-submit');
  btn.disabled = true;
  try {
    const res = await request('POST', `${hs}/_matrix/client/v3/login`, {
      body: {
        type: 'm.login.password',
        identifier: { type: 'm.id.user', user },
        password,
        initial_device_display_name: 'mxstack admin console',
      },
    });
    // Any admin route tells whether the token is an admin's.
    try {
      await request('GET', `${hs}${A2}/users${query({ limit: 1 })}`, { token: res.access_token });
    } catch (e) {
      await request('POST', `${hs}/_matrix/client/v3/logout`, { body: {}, token: res.access_token })
        .catch(() => {});
      if (e.status === 403) {
        err.textContent = 'This account is not a server admin.';
        return;
      }
      throw e;
    }
    state.hs = hs;
    state.token = res.access_token;
    state.userId = res.user_id;
    state.serverName = state.config.server_name || res.user_id.slice(res.user_id.indexOf(':') + 1);
    saveSession();
    $('login-password').value = '';
    say(`Signed in as ${state.userId}.`);
    if (!location.hash) location.hash = '#dashboard';
    showApp();
  } catch (e) {
    err.textContent = `Sign-in failed: ${e.message}`;
  } finally {
    btn.disabled = false;
  }
}

async function onLogout() {
  const token = state.token;
  const hs = state.hs;
  endSession('Signed out.');
  await request('POST', `${hs}/_matrix/client/v3/logout`, { body: {}, token }).catch(() => {});
}

// ------------------------------------------------------------- routing --

const VIEWS = {
  dashboard: () => loadDashboard(),
  users: () => loadUsers(),
  rooms: () => loadRooms(),
  tokens: () => loadTokens(),
  reports: () => loadReports(),
  federation: () => loadFederation(),
};

function currentView() {
  const v = location.hash.replace(/^#/, '');
  return Object.hasOwn(VIEWS, v) ? v : 'dashboard';
}

function route(focus = false) {
  if (!state.token) return;
  const view = currentView();
  for (const name of Object.keys(VIEWS)) $(`view-${name}`).hidden = name !== view;
  document.querySelectorAll('.tabs a').forEach((a) => {
    if (a.dataset.view === view) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  });
  const heading = document.querySelector(`#view-${view} h2`);
  if (focus && heading) {
    heading.tabIndex = -1;
    heading.focus();
  }
  VIEWS[view]();
}

// ----------------------------------------------------------- dashboard --

async function loadDashboard() {
  const set = (id, text) => { $(id).textContent = text; };
  const tasks = [
    api('GET', `${A1}/server_version`).then((r) => set('stat-version', r.server_version || '—')),
    request('GET', `${state.hs}/health`, { expectText: true })
      .then((t) => set('stat-health', t.trim() || 'OK')),
    api('GET', `${A2}/users${query({ limit: 1 })}`).then((r) => set('stat-users', String(r.total ?? '—'))),
    api('GET', `${A1}/rooms${query({ limit: 1 })}`).then((r) => set('stat-rooms', String(r.total_rooms ?? '—'))),
    api('GET', `${A1}/statistics/users/media${query({ limit: 1000 })}`).then((r) => {
      let count = 0;
      let bytes = 0;
      for (const u of r.users || []) {
        count += u.media_count || 0;
        bytes += u.media_length || 0;
      }
      set('stat-media', `${count} files, ${fmtBytes(bytes)}`);
    }),
  ];
  const ids = ['stat-version', 'stat-health', 'stat-users', 'stat-rooms', 'stat-media'];
  const results = await Promise.allSettled(tasks);
  results.forEach((r, i) => {
    if (r.status === 'rejected') set(ids[i], `unavailable (${r.reason.status || r.reason.message})`);
  });
}

// --------------------------------------------------------------- users --

const users = { pager: null, selected: null };

async function loadUsers() {
  const tbody = $('users-table').querySelector('tbody');
  const p = users.pager;
  try {
    const r = await api('GET', `${A2}/users${query({
      from: p.from,
      limit: PAGE_SIZE,
      name: $('users-name').value.trim(),
      deactivated: $('users-deactivated').checked ? 'true' : undefined,
    })}`);
    const list = r.users || [];
    if (!list.length) emptyRow(tbody, 6, 'No users match.');
    else tbody.replaceChildren(...list.map(userRow));
    p.update(r.next_token, pageInfo(p, list.length, r.total));
  } catch (e) {
    emptyRow(tbody, 6, 'Cannot list users.');
    p.update(undefined, '');
    sayError('Listing users failed', e);
  }
}

function userState(u) {
  const out = [];
  if (u.deactivated) out.push(badge('deactivated', 'bad'));
  if (u.locked) out.push(badge('locked', 'warn'));
  if (u.shadow_banned) out.push(badge('shadow-banned', 'warn'));
  if (u.is_guest) out.push(badge('guest'));
  if (!out.length) out.push(badge('active', 'good'));
  return out;
}

function userRow(u) {
  return h('tr', { 'data-user': u.name },
    h('td', { class: 'id' }, u.name),
    h('td', {}, u.displayname || ''),
    h('td', {}, u.admin ? badge('admin', 'good') : 'no'),
    h('td', {}, userState(u)),
    h('td', {}, fmtTs(u.creation_ts)),
    h('td', {}, h('button', {
      type: 'button', class: 'small secondary', 'aria-label': `Manage ${u.name}`,
      onclick: () => showUser(u.name),
    }, 'Manage')));
}

async function showUser(userId) {
  const box = $('user-detail');
  try {
    const u = await api('GET', `${A2}/users/${enc(userId)}`);
    users.selected = u;
    $('user-detail-title').textContent = u.name || userId;
    const rows = [
      ['User ID', u.name],
      ['Display name', u.displayname || '—'],
      ['Admin', u.admin ? 'yes' : 'no'],
      ['Deactivated', u.deactivated ? 'yes' : 'no'],
      ['Locked', u.locked ? 'yes' : 'no'],
      ['Shadow-banned', u.shadow_banned ? 'yes' : 'no'],
      ['User type', u.user_type || '—'],
      ['Created', fmtTs(u.creation_ts)],
      ['Last seen', fmtTs(u.last_seen_ts)],
      ['Third-party IDs', (u.threepids || []).map((t) => `${t.medium}: ${t.address}`).join(', ') || '—'],
    ];
    $('user-detail-kv').replaceChildren(...rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
    $('user-toggle-admin').textContent = u.admin ? 'Remove admin' : 'Make admin';
    $('user-toggle-lock').textContent = u.locked ? 'Unlock' : 'Lock';
    $('user-deactivate').disabled = Boolean(u.deactivated);
    box.hidden = false;
    $('user-detail-title').tabIndex = -1;
    $('user-detail-title').focus();
  } catch (e) {
    sayError(`Cannot load ${userId}`, e);
  }
}

async function userAction(label, fn) {
  const u = users.selected;
  if (!u) return;
  try {
    await fn(u);
    say(`${label}: ${u.name}`);
    await showUser(u.name);
    await loadUsers();
  } catch (e) {
    sayError(`${label} failed`, e);
  }
}

function fullUserId(input) {
  const s = input.trim();
  if (s.startsWith('@')) return s;
  return `@${s.toLowerCase()}:${state.serverName}`;
}

async function onCreateUser(ev) {
  ev.preventDefault();
  const userId = fullUserId($('create-user-id').value);
  const password = $('create-user-password').value;
  if (userId.length < 4 || !userId.includes(':') || !password) {
    say('Enter a user ID and a password.', 'error');
    return;
  }
  try {
    let exists = false;
    try {
      await api('GET', `${A2}/users/${enc(userId)}`);
      exists = true;
    } catch (e) {
      if (e.status !== 404) throw e;
    }
    if (exists) {
      say(`${userId} already exists.`, 'error');
      return;
    }
    const body = { password, admin: $('create-user-admin').checked };
    const dn = $('create-user-displayname').value.trim();
    if (dn) body.displayname = dn;
    await api('PUT', `${A2}/users/${enc(userId)}`, body);
    $('user-create-form').reset();
    say(`Created ${userId}.`);
    users.pager.reset();
    await loadUsers();
  } catch (e) {
    sayError(`Creating ${userId} failed`, e);
  }
}

function initUsers() {
  users.pager = makePager('users-pager', loadUsers);
  $('users-search').addEventListener('submit', (ev) => {
    ev.preventDefault();
    users.pager.reset();
    loadUsers();
  });
  $('user-create-form').addEventListener('submit', onCreateUser);
  $('user-toggle-admin').addEventListener('click', () => userAction(
    users.selected?.admin ? 'Admin rights removed' : 'Admin rights granted',
    (u) => api('PUT', `${A1}/users/${enc(u.name)}/admin`, { admin: !u.admin })));
  $('user-toggle-lock').addEventListener('click', () => userAction(
    users.selected?.locked ? 'Unlocked' : 'Locked',
    (u) => api('PUT', `${A2}/users/${enc(u.name)}`, { locked: !u.locked })));
  $('user-deactivate').addEventListener('click', async () => {
    const u = users.selected;
    if (!u) return;
    const ans = await confirmDialog({
      title: 'Deactivate user',
      text: `Deactivate ${u.name}? The account can no longer sign in and leaves its rooms.`,
      ok: 'Deactivate',
      checks: [{ id: 'erase', label: 'Also erase (forget its messages for new users)' }],
    });
    if (!ans) return;
    await userAction('Deactivated', (x) => api('POST', `${A1}/deactivate/${enc(x.name)}`, { erase: ans.erase }));
  });
  $('user-password-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const pw = $('user-new-password').value;
    if (!pw) return;
    await userAction('Password reset', (u) => api('POST', `${A1}/reset_password/${enc(u.name)}`, {
      new_password: pw, logout_devices: $('user-logout-devices').checked,
    }));
    $('user-new-password').value = '';
  });
}

// --------------------------------------------------------------- rooms --

const rooms = { pager: null };

async function loadRooms() {
  const tbody = $('rooms-table').querySelector('tbody');
  const p = rooms.pager;
  try {
    const r = await api('GET', `${A1}/rooms${query({
      from: p.from, limit: PAGE_SIZE, search_term: $('rooms-term').value.trim(),
    })}`);
    const list = r.rooms || [];
    if (!list.length) emptyRow(tbody, 7, 'No rooms.');
    else tbody.replaceChildren(...list.map(roomRow));
    p.update(r.next_batch, pageInfo(p, list.length, r.total_rooms));
  } catch (e) {
    emptyRow(tbody, 7, 'Cannot list rooms.');
    p.update(undefined, '');
    sayError('Listing rooms failed', e);
  }
}

function roomLabel(r) {
  return r.name || r.canonical_alias || r.room_id;
}

function roomRow(r) {
  const label = roomLabel(r);
  return h('tr', { 'data-room': r.room_id },
    h('td', {}, r.name || h('span', { class: 'empty' }, r.canonical_alias || '(no name)')),
    h('td', { class: 'id' }, r.room_id),
    h('td', {}, String(r.joined_members ?? '—')),
    h('td', {}, String(r.joined_local_members ?? '—')),
    h('td', { class: 'id' }, r.creator || '—'),
    h('td', {}, r.public ? 'yes' : 'no'),
    h('td', {},
      h('button', {
        type: 'button', class: 'small secondary', 'aria-label': `Details of ${label}`,
        onclick: () => showRoom(r.room_id),
      }, 'Details'),
      h('button', {
        type: 'button', class: 'small danger', 'aria-label': `Delete ${label}`,
        onclick: () => deleteRoom(r),
      }, 'Delete')));
}

async function showRoom(roomId) {
  try {
    const [d, m] = await Promise.all([
      api('GET', `${A1}/rooms/${enc(roomId)}`),
      api('GET', `${A1}/rooms/${enc(roomId)}/members`).catch(() => ({ members: [] })),
    ]);
    $('room-detail-title').textContent = roomLabel(d);
    const rows = [
      ['Room ID', d.room_id],
      ['Name', d.name || '—'],
      ['Topic', d.topic || '—'],
      ['Alias', d.canonical_alias || '—'],
      ['Version', d.version || '—'],
      ['Creator', d.creator || '—'],
      ['Members', `${d.joined_members ?? '—'} joined, ${d.joined_local_members ?? '—'} local`],
      ['Encryption', d.encryption || 'none'],
      ['Join rules', d.join_rules || '—'],
      ['Public', d.public ? 'yes' : 'no'],
      ['Federatable', d.federatable === false ? 'no' : 'yes'],
      ['State events', String(d.state_events ?? '—')],
    ];
    $('room-detail-kv').replaceChildren(...rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
    const members = m.members || [];
    $('room-members').replaceChildren(...(members.length
      ? members.map((id) => h('li', { class: 'mono' }, typeof id === 'string' ? id : JSON.stringify(id)))
      : [h('li', { class: 'empty' }, 'No members.')]));
    $('room-detail').dataset.room = d.room_id;
    $('room-detail').hidden = false;
    $('room-detail-title').tabIndex = -1;
    $('room-detail-title').focus();
  } catch (e) {
    sayError(`Cannot load ${roomId}`, e);
  }
}

// Deletion status words → progress steps.
const DELETE_STEPS = { scheduled: 0, shutting_down: 1, purging: 2, complete: 3, failed: 3 };

async function deleteRoom(r) {
  const label = roomLabel(r);
  const ans = await confirmDialog({
    title: 'Delete room',
    text: `Delete ${label} (${r.room_id})? Every local member is removed.`,
    ok: 'Delete room',
    checks: [
      { id: 'purge', label: 'Purge its history from the database', checked: true },
      { id: 'block', label: 'Block the room (refuse future joins)' },
    ],
  });
  if (!ans) return;
  let res;
  try {
    res = await api('DELETE', `${A2}/rooms/${enc(r.room_id)}`, { purge: ans.purge, block: ans.block });
  } catch (e) {
    sayError(`Deleting ${label} failed`, e);
    return;
  }
  const progress = h('progress', { max: 3, value: 0, 'aria-label': `Deletion of ${label}` });
  const stateText = h('span', { class: 'state' }, 'scheduled');
  const item = h('li', { class: 'deletion', 'data-room': r.room_id, 'data-delete-id': res.delete_id || '' },
    h('span', {}, `${label} `), h('span', { class: 'mono' }, r.room_id), progress, stateText);
  $('room-deletions-list').prepend(item);
  $('room-deletions').hidden = false;
  say(`Deleting ${label}…`);
  pollDeletion(res.delete_id, r.room_id, label, progress, stateText, 0);
}

function pollDeletion(deleteId, roomId, label, progress, stateText, misses) {
  const t = setTimeout(async () => {
    state.timers.delete(t);
    let st;
    try {
      const path = deleteId
        ? `${A2}/rooms/delete_status/${enc(deleteId)}`
        : `${A2}/rooms/${enc(roomId)}/delete_status`;
      const d = await api('GET', path);
      st = d.results ? d.results.find((x) => !deleteId || x.delete_id === deleteId) || d.results[0] : d;
    } catch (e) {
      if (!state.token) return;
      if (misses < 5) {
        pollDeletion(deleteId, roomId, label, progress, stateText, misses + 1);
        return;
      }
      stateText.textContent = `unknown (${e.message})`;
      stateText.className = 'state failed';
      return;
    }
    const status = st?.status || 'scheduled';
    progress.value = DELETE_STEPS[status] ?? 0;
    stateText.textContent = status === 'failed' ? `failed: ${st.error || 'unknown error'}` : status;
    stateText.className = `state ${status}`;
    if (status === 'complete') {
      const kicked = st.shutdown_room?.kicked_users?.length;
      const removed = kicked == null ? '' : ` (${kicked} member${kicked === 1 ? '' : 's'} removed)`;
      say(`Room ${label} deleted${removed}.`);
      if ($('room-detail').dataset.room === roomId) $('room-detail').hidden = true;
      if (currentView() === 'rooms') loadRooms();
    } else if (status === 'failed') {
      say(`Deleting ${label} failed: ${st.error || 'unknown error'}`, 'error');
    } else {
      pollDeletion(deleteId, roomId, label, progress, stateText, 0);
    }
  }, POLL_MS);
  state.timers.add(t);
}

function initRooms() {
  rooms.pager = makePager('rooms-pager', loadRooms);
  $('rooms-search').addEventListener('submit', (ev) => {
    ev.preventDefault();
    rooms.pager.reset();
    loadRooms();
  });
}

// ------------------------------------------------- registration tokens --

async function loadTokens() {
  const tbody = $('tokens-table').querySelector('tbody');
  try {
    const r = await api('GET', `${A1}/registration_tokens`);
    const list = r.registration_tokens || [];
    if (!list.length) emptyRow(tbody, 6, 'No registration tokens.');
    else tbody.replaceChildren(...list.map(tokenRow));
  } catch (e) {
    emptyRow(tbody, 6, 'Cannot list registration tokens.');
    sayError('Listing registration tokens failed', e);
  }
}

function tokenRow(t) {
  return h('tr', { 'data-token': t.token },
    h('td', { class: 'id' }, t.token),
    h('td', {}, t.uses_allowed == null ? 'unlimited' : String(t.uses_allowed)),
    h('td', {}, String(t.pending ?? 0)),
    h('td', {}, String(t.completed ?? 0)),
    h('td', {}, t.expiry_time ? fmtTs(t.expiry_time) : 'never'),
    h('td', {}, h('button', {
      type: 'button', class: 'small danger', 'aria-label': `Delete token ${t.token}`,
      onclick: async () => {
        const ans = await confirmDialog({
          title: 'Delete registration token', text: `Delete the token ${t.token}?`, ok: 'Delete token',
        });
        if (!ans) return;
        try {
          await api('DELETE', `${A1}/registration_tokens/${enc(t.token)}`);
          say(`Deleted token ${t.token}.`);
          loadTokens();
        } catch (e) {
          sayError('Deleting the token failed', e);
        }
      },
    }, 'Delete')));
}

async function onCreateToken(ev) {
  ev.preventDefault();
  const body = {};
  const tok = $('token-value').value.trim();
  if (tok) body.token = tok;
  const uses = $('token-uses').value;
  if (uses !== '') body.uses_allowed = Number.parseInt(uses, 10);
  const exp = $('token-expiry').value;
  if (exp) {
    const ms = new Date(exp).getTime();
    if (Number.isNaN(ms)) {
      say('The expiry date is not valid.', 'error');
      return;
    }
    body.expiry_time = ms;
  }
  try {
    const t = await api('POST', `${A1}/registration_tokens/new`, body);
    $('token-create-form').reset();
    say(`Created token ${t.token}.`);
    loadTokens();
  } catch (e) {
    sayError('Creating the token failed', e);
  }
}

// ------------------------------------------------------- event reports --

const reports = { pager: null };

async function loadReports() {
  const tbody = $('reports-table').querySelector('tbody');
  const p = reports.pager;
  try {
    const r = await api('GET', `${A1}/event_reports${query({ from: p.from, limit: PAGE_SIZE })}`);
    const list = r.event_reports || [];
    if (!list.length) emptyRow(tbody, 7, 'No event reports.');
    else tbody.replaceChildren(...list.map(reportRow));
    p.update(r.next_token, pageInfo(p, list.length, r.total));
  } catch (e) {
    emptyRow(tbody, 7, 'Cannot list event reports.');
    p.update(undefined, '');
    sayError('Listing event reports failed', e);
  }
}

function reportRow(r) {
  return h('tr', { 'data-report': r.id },
    h('td', {}, String(r.id)),
    h('td', {}, fmtTs(r.received_ts)),
    h('td', {}, r.name || h('span', { class: 'mono' }, r.room_id)),
    h('td', { class: 'id' }, r.user_id || '—'),
    h('td', {}, r.reason || '—'),
    h('td', {}, r.score == null ? '—' : String(r.score)),
    h('td', {},
      h('button', {
        type: 'button', class: 'small secondary', 'aria-label': `Details of report ${r.id}`,
        onclick: async () => {
          try {
            const d = await api('GET', `${A1}/event_reports/${enc(r.id)}`);
            $('report-detail-title').textContent = `Report ${r.id}`;
            $('report-detail-json').textContent = JSON.stringify(d, null, 2);
            $('report-detail').hidden = false;
          } catch (e) {
            sayError(`Cannot load report ${r.id}`, e);
          }
        },
      }, 'Details'),
      h('button', {
        type: 'button', class: 'small danger', 'aria-label': `Delete report ${r.id}`,
        onclick: async () => {
          const ans = await confirmDialog({
            title: 'Delete event report', text: `Delete report ${r.id}? The event itself stays.`, ok: 'Delete report',
          });
          if (!ans) return;
          try {
            await api('DELETE', `${A1}/event_reports/${enc(r.id)}`);
            say(`Deleted report ${r.id}.`);
            $('report-detail').hidden = true;
            loadReports();
          } catch (e) {
            sayError('Deleting the report failed', e);
          }
        },
      }, 'Delete')));
}

// ---------------------------------------------------------- federation --

const federation = { pager: null };

async function loadFederation() {
  const tbody = $('federation-table').querySelector('tbody');
  const p = federation.pager;
  try {
    const r = await api('GET', `${A1}/federation/destinations${query({ from: p.from, limit: PAGE_SIZE })}`);
    const list = r.destinations || [];
    if (!list.length) emptyRow(tbody, 5, 'No federation destinations.');
    else {
      tbody.replaceChildren(...list.map((d) => h('tr', {},
        h('td', { class: 'id' }, d.destination),
        h('td', {}, fmtTs(d.retry_last_ts)),
        h('td', {}, fmtDuration(d.retry_interval)),
        h('td', {}, d.failure_ts ? fmtTs(d.failure_ts) : 'not failing'),
        h('td', {}, d.retry_last_ts || d.retry_interval || d.failure_ts
          ? h('button', {
            type: 'button', class: 'small secondary', 'aria-label': `Reset connection to ${d.destination}`,
            onclick: async () => {
              try {
                await api('POST', `${A1}/federation/destinations/${enc(d.destination)}/reset_connection`, {});
                say(`Retrying ${d.destination} now.`);
                loadFederation();
              } catch (e) {
                sayError('Resetting the connection failed', e);
              }
            },
          }, 'Reset connection')
          : ''))));
    }
    p.update(r.next_token, pageInfo(p, list.length, r.total));
  } catch (e) {
    p.update(undefined, '');
    if (e.status === 404 || e.status === 405) {
      emptyRow(tbody, 5, 'This server does not list federation destinations.');
    } else {
      emptyRow(tbody, 5, 'Cannot list federation destinations.');
      sayError('Listing federation destinations failed', e);
    }
  }
}

// ---------------------------------------------------------------- start --

async function loadConfig() {
  try {
    const res = await fetch('config.json', { cache: 'no-store' });
    if (res.ok) {
      const c = await res.json();
      state.config = {
        homeserver_url: trimSlash(c.homeserver || ''),
        server_name: c.server_name || '',
      };
    }
  } catch {
    state.config = {};
  }
}

async function main() {
  await loadConfig();
  $('login-form').addEventListener('submit', onLogin);
  $('logout').addEventListener('click', onLogout);
  $('dashboard-refresh').addEventListener('click', loadDashboard);
  $('token-create-form').addEventListener('submit', onCreateToken);
  document.querySelectorAll('.tabs a').forEach((a) => a.addEventListener('click', () => {
    // hashchange does the work; remember to move focus once it has.
    state.focusNext = true;
  }));
  window.addEventListener('hashchange', () => {
    route(Boolean(state.focusNext));
    state.focusNext = false;
  });
  initUsers();
  initRooms();
  reports.pager = makePager('reports-pager', loadReports);
  federation.pager = makePager('federation-pager', loadFederation);
  if (loadSession()) showApp();
  else showLogin();
}

main();
