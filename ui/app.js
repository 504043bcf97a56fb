/* loopforge console: a single page over the HTTP API (same origin).
 *
 * Routes (location.hash):
 *   #/            the board: one workflow's records, a column per state
 *   #/record/ID   a record's story: graph, timeline, forge facts, explain
 *   #/workflows   every workflow: its graph and its edges with their guards
 *   #/health      policy generation, counters from /metrics, checkpoint
 *
 * No framework, no build step. Every API call carries the bearer token kept
 * in sessionStorage (lf_token); a 401 anywhere shows the login form.
 * The board is live: /v1/events (Server-Sent Events, read with fetch so the
 * token can go in a header) names the records that changed; each is fetched
 * again and its card moved, at most one refresh per 200 ms.
 */
'use strict';

(function () {

const TOKEN_KEY = 'lf_token';
const PAGE = 1000;            // records per list request (the API's max)
const BATCH = 5000;           // records loaded before asking "load more"
const FLUSH_MS = 200;         // at most one live refresh per FLUSH_MS
const FULL_REFRESH_OVER = 200; // more changed records than this: reload all
const TIMER_IDS = 500;       // record ids per GET /v1/timers?records=

const $main = document.getElementById('main');
const $announce = document.getElementById('announce');
const $live = document.getElementById('live-status');
const $signout = document.getElementById('signout');

/* ---------------------------------------------------------------- util */

// h('a', {href: x, class: 'y'}, 'text', child...): an element.
function h(tag, props) {
  const el = document.createElement(tag);
  if (props) {
    for (const k in props) {
      const v = props[k];
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : v);
    }
  }
  for (let i = 2; i < arguments.length; i++) add(el, arguments[i]);
  return el;
}
function add(el, kid) {
  if (kid === null || kid === undefined || kid === false) return;
  if (Array.isArray(kid)) { for (const k of kid) add(el, k); return; }
  el.appendChild(typeof kid === 'object' ? kid : document.createTextNode(String(kid)));
}
function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); }
const enc = encodeURIComponent;

function parseTime(ts) {
  if (!ts) return NaN;
  const t = Date.parse(ts);
  return t;
}
function pad(n) { return n < 10 ? '0' + n : '' + n; }
function fmtTime(ts) {
  const t = parseTime(ts);
  if (isNaN(t)) return ts ? String(ts) : '';
  const d = new Date(t);
  return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' +
    pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
}
function fmtAge(ms) {
  if (isNaN(ms)) return '?';
  if (ms < 0) ms = 0;
  const s = Math.floor(ms / 1000);
  if (s < 60) return s + 's';
  const m = Math.floor(s / 60);
  if (m < 60) return m + 'm';
  const hr = Math.floor(m / 60);
  if (hr < 48) return hr + 'h ' + (m % 60) + 'm';
  return Math.floor(hr / 24) + 'd ' + (hr % 24) + 'h';
}
function fmtSeconds(s) { return typeof s === 'number' ? fmtAge(s * 1000) : String(s); }
function timeEl(ts, cls) {
  return h('time', { datetime: ts || null, class: cls || null }, fmtTime(ts));
}
function isObj(v) { return v !== null && typeof v === 'object' && !Array.isArray(v); }
function isEmpty(v) {
  return v === null || v === undefined || (Array.isArray(v) && !v.length) ||
    (isObj(v) && !Object.keys(v).length);
}
function safeUrl(u) { return typeof u === 'string' && /^https?:\/\//i.test(u) ? u : null; }

// A ref such as https://github.com/o/r/issues/5, shown as o/r#5.
function shortRef(ref) {
  const m = /^https?:\/\/[^/]+\/([^/]+\/[^/]+)\/(?:issues|pull)\/(\d+)\/?$/.exec(ref || '');
  return m ? m[1] + '#' + m[2] : (ref || '(no ref)');
}
function prLabel(rec) {
  if (rec.pr_number) return 'PR #' + rec.pr_number;
  const m = /\/pull\/(\d+)/.exec(rec.pr_url || '');
  return m ? 'PR #' + m[1] : 'PR';
}
function lastTransition(rec) {
  const t = rec.transitions;
  return Array.isArray(t) && t.length ? t[t.length - 1] : null;
}

// A value (requires, a forge fact, ...) as nested definition lists.
function valueEl(v, depth) {
  depth = depth || 0;
  if (isObj(v)) {
    const keys = Object.keys(v);
    if (!keys.length) return h('span', { class: 'muted' }, '{}');
    if (depth > 6) return h('code', null, JSON.stringify(v));
    const dl = h('dl', { class: 'kv' });
    for (const k of keys) dl.append(h('dt', null, k), h('dd', null, valueEl(v[k], depth + 1)));
    return dl;
  }
  if (Array.isArray(v)) {
    if (!v.length) return h('span', { class: 'muted' }, '[]');
    if (v.every(x => !isObj(x) && !Array.isArray(x))) return h('span', null, v.map(String).join(', '));
    return h('ol', { class: 'kv-list' }, v.map(x => h('li', null, valueEl(x, depth + 1))));
  }
  if (v === null) return h('span', { class: 'muted' }, 'null');
  const url = safeUrl(v);
  if (url) return h('a', { href: url, rel: 'noopener noreferrer' }, url);
  return h('span', null, String(v));
}
// requires as one line: "k: v, k2: v2" (objects inside as JSON).
function requiresText(req) {
  if (!isObj(req)) return JSON.stringify(req);
  return Object.keys(req).map(k => {
    const v = req[k];
    return k + ': ' + (typeof v === 'string' ? v : JSON.stringify(v));
  }).join(', ');
}

function announce(msg) {
  // Re-set so the same message twice is read twice.
  $announce.textContent = '';
  setTimeout(() => { $announce.textContent = msg; }, 30);
}

/* ----------------------------------------------------------------- api */

class ApiError extends Error {
  constructor(status, code, message) {
    super(message || ('HTTP ' + status));
    this.status = status;
    this.code = code || null;
  }
}

function token() { try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (e) { return ''; } }
function headers(extra) {
  const hd = Object.assign({}, extra || {});
  const t = token();
  if (t) hd['Authorization'] = 'Bearer ' + t;
  return hd;
}

// raw(path) -> Response, throwing ApiError for a status other than 2xx
// (401 also shows the login form).
async function raw(path, opts) {
  opts = opts || {};
  let res;
  try {
    res = await fetch(path, { headers: headers(opts.headers), cache: 'no-store', signal: opts.signal });
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', 'The server did not answer (' + e.message + ')');
  }
  if (res.ok) return res;
  let code = null, msg = null;
  try {
    const body = await res.text();
    try { const j = JSON.parse(body); code = j.code || null; msg = j.error || null; }
    catch (e) { msg = body.slice(0, 200) || null; }
  } catch (e) { /* no body */ }
  const err = new ApiError(res.status, code, msg || ('HTTP ' + res.status + ' for ' + path));
  if (res.status === 401) unauthorized();
  throw err;
}
async function api(path, opts) { return (await raw(path, opts)).json(); }
async function apiText(path, opts) { return (await raw(path, opts)).text(); }

/* ---------------------------------------------------------------- auth */

let needLogin = false;
let loginWaiters = [];

function unauthorized() {
  if (needLogin) return;
  needLogin = true;
  stopEvents();
  setLive('off', 'live: signed out');
  showLogin();
}
function showLogin() {
  view++;
  board.el = null;
  clear($main);
  const had = !!token();
  const input = h('input', { type: 'password', name: 'token', id: 'login-token', autocomplete: 'current-password', required: true });
  const form = h('form', { id: 'login', class: 'login' },
    h('h1', { tabindex: '-1' }, 'Sign in'),
    h('p', null, had ? 'The server refused that token. Paste another one.'
      : 'This server asks for a bearer token. Paste one (made with ',
      had ? null : h('code', null, 'loopforge token NAME read'), had ? null : ').'),
    h('p', null, h('label', { for: 'login-token' }, 'Token'), ' ', input),
    h('p', null, h('button', { type: 'submit' }, 'Sign in')),
    h('p', { class: 'muted' }, 'The token is kept in this tab only (sessionStorage).'));
  form.addEventListener('submit', ev => {
    ev.preventDefault();
    const v = input.value.trim();
    if (!v) return;
    try { sessionStorage.setItem(TOKEN_KEY, v); } catch (e) { /* private mode */ }
    needLogin = false;
    updateSignout();
    const w = loginWaiters; loginWaiters = [];
    w.forEach(f => f());
    board.records = null;
    route(true);
    startEvents();
  });
  $main.append(form);
  setNav(null);
  input.focus();
}
function updateSignout() { $signout.hidden = !token(); }
$signout.addEventListener('click', () => {
  try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* ignore */ }
  updateSignout();
  stopEvents();
  board.records = null;
  needLogin = false;
  route(true);
  startEvents();
});

/* -------------------------------------------------------------- router */

let view = 0;          // bumped on every render: stale async renders stop
let currentRoute = null;

function parseHash() {
  const hash = location.hash || '#/';
  const q = hash.indexOf('?');
  const path = (q < 0 ? hash : hash.slice(0, q)).replace(/^#/, '') || '/';
  const params = new URLSearchParams(q < 0 ? '' : hash.slice(q + 1));
  return { path, params };
}

function setNav(name) {
  for (const a of document.querySelectorAll('nav a[data-route]')) {
    if (a.dataset.route === name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

function route(keepFocus) {
  if (needLogin) { showLogin(); return; }
  const { path, params } = parseHash();
  const key = path;
  const changed = key !== currentRoute;
  currentRoute = key;
  let p;
  let m;
  if ((m = /^\/record\/(.+)$/.exec(path))) {
    setNav(null);
    p = showRecord(decodeURIComponent(m[1]), !changed);
  } else if (path === '/workflows') {
    setNav('workflows');
    p = showWorkflows();
  } else if (path === '/health') {
    setNav('health');
    p = showHealth();
  } else {
    setNav('board');
    p = showBoard(params);
  }
  Promise.resolve(p).then(() => {
    if (changed && !keepFocus) {
      const h1 = $main.querySelector('h1');
      if (h1) { h1.setAttribute('tabindex', '-1'); h1.focus({ preventScroll: true }); }
    }
  }).catch(err => showError(err));
}

function showError(err) {
  if (!err || err.name === 'AbortError') return;
  if (err instanceof ApiError && err.status === 401) return; // login shown
  console.error(err);
  const box = h('div', { class: 'error', role: 'alert' },
    h('h2', null, err.status === 403 ? 'Not allowed' : 'Something went wrong'),
    h('p', null, err.message || String(err)),
    h('p', null, h('button', { type: 'button', onclick: () => route(true) }, 'Try again')));
  if (!$main.querySelector('h1')) $main.prepend(h('h1', null, 'loopforge'));
  $main.append(box);
}

// Start a fresh view: clear main and return the view's id.
function beginView(title) {
  const id = ++view;
  board.el = null;
  clear($main);
  if (title) $main.append(h('h1', null, title));
  document.title = (title ? title + ' — ' : '') + 'loopforge console';
  return id;
}

/* ----------------------------------------------------------- workflows */

let workflowsCache = null; // Promise of [{name, initial, states, terminal, edges}]
function workflows() {
  if (!workflowsCache) {
    workflowsCache = api('/v1/workflows').then(j => j.workflows || [])
      .catch(err => { workflowsCache = null; throw err; });
  }
  return workflowsCache;
}
const svgCache = new Map(); // workflow name -> Promise of svg text
function graphSvg(name) {
  if (!svgCache.has(name)) {
    const p = apiText('/v1/workflows/' + enc(name) + '/graph.svg');
    p.catch(() => svgCache.delete(name));
    svgCache.set(name, p);
  }
  return svgCache.get(name);
}
// The SVG text as an element of this document, without anything active.
function importSvg(text) {
  const doc = new DOMParser().parseFromString(text, 'image/svg+xml');
  const root = doc.documentElement;
  if (!root || root.nodeName.toLowerCase() !== 'svg' || doc.getElementsByTagName('parsererror').length) {
    throw new Error('the graph is not an SVG document');
  }
  for (const bad of root.querySelectorAll('script, foreignObject')) bad.remove();
  for (const el of [root, ...root.querySelectorAll('*')]) {
    for (const a of Array.from(el.attributes)) {
      const n = a.name.toLowerCase();
      if (n.startsWith('on') || ((n === 'href' || n === 'xlink:href') && /^\s*javascript:/i.test(a.value))) {
        el.removeAttribute(a.name);
      }
    }
  }
  const svg = document.importNode(root, true);
  const w = svg.getAttribute('width'), hgt = svg.getAttribute('height');
  if (!svg.getAttribute('viewBox') && w && hgt) {
    svg.setAttribute('viewBox', '0 0 ' + parseFloat(w) + ' ' + parseFloat(hgt));
  }
  if (w) svg.style.maxWidth = /pt$/.test(w) ? (parseFloat(w) * 4 / 3) + 'px' : w;
  svg.removeAttribute('width');
  svg.removeAttribute('height');
  svg.setAttribute('class', 'graph');
  return svg;
}
function graphFigure(name, caption, mark) {
  const fig = h('figure', { class: 'graph-box' }, h('p', { class: 'muted' }, 'Loading the graph…'));
  graphSvg(name).then(text => {
    const svg = importSvg(text);
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', caption);
    if (mark) mark(svg);
    clear(fig);
    fig.append(svg, h('figcaption', null, caption));
  }).catch(err => {
    if (err instanceof ApiError && err.status === 401) return;
    clear(fig);
    fig.append(h('p', { class: 'muted' }, 'No graph: ' + (err.message || err)));
  });
  return fig;
}
function byId(svg, id) {
  // ids may repeat across inlined graphs: look inside this one only.
  return svg.querySelector('[id="' + id.replace(/["\\]/g, '\\$&') + '"]');
}

/* --------------------------------------------------------------- board */

const board = {
  records: null,      // Map id -> record (every workflow), null = not loaded
  cursor: null,       // next_cursor when we stopped at BATCH
  loading: null,      // Promise of the load in flight
  el: null,           // the board's column container, when shown
  cols: null,         // state -> {section, list, count}
  cards: new Map(),   // id -> card element shown
  filters: { workflow: 'loopforge', repo: '', actor: '', q: '' },
  wfs: null,          // workflows (array) or null when /v1/workflows is missing
  renderMs: null,
  lastFull: 0,
  due: new Map(),     // record id -> when its next timer is due (GET /v1/timers:
                      // the workflow's own timers too, which records do not carry)
};

// The next timer of each of these records, and only theirs (GET
// /v1/timers?records=, TIMER_IDS a request: the URL stays well under the
// server's limit); a board of a million records never asks for every timer.
async function loadTimers(ids) {
  for (const id of ids) board.due.delete(id);
  for (let i = 0; i < ids.length; i += TIMER_IDS) {
    try {
      const j = await api('/v1/timers?records=' + ids.slice(i, i + TIMER_IDS).map(enc).join(','));
      for (const t of j.timers || []) board.due.set(t.record_id, t.due);
    } catch (e) {
      if (e && e.status === 401) throw e;
    }
  }
}

async function loadRecords(more) {
  const map = more && board.records ? board.records : new Map();
  let cursor = more ? board.cursor : null;
  const ids = [];
  do {
    const j = await api('/v1/records?history=1&limit=' + PAGE + (cursor ? '&cursor=' + enc(cursor) : ''));
    for (const r of j.records || []) { map.set(r.record_id, r); ids.push(r.record_id); }
    cursor = j.next_cursor || null;
  } while (cursor && ids.length < BATCH);
  if (!more) board.due = new Map();
  await loadTimers(ids);
  board.records = map;
  board.cursor = cursor;
  board.lastFull = Date.now();
}

function boardStates(wfName) {
  const wf = board.wfs && board.wfs.find(w => w.name === wfName);
  const states = wf ? wf.states.slice() : [];
  const seen = new Set(states);
  // States a record is in that the workflow does not list (or no
  // /v1/workflows): a column each, after the workflow's own.
  if (board.records) {
    for (const r of board.records.values()) {
      if ((r.workflow || 'loopforge') === wfName && !seen.has(r.state)) { seen.add(r.state); states.push(r.state); }
    }
  }
  return { states, terminal: new Set(wf ? wf.terminal || [] : []) };
}

function matches(rec) {
  const f = board.filters;
  if ((rec.workflow || 'loopforge') !== f.workflow) return false;
  if (f.repo && rec.repo !== f.repo) return false;
  if (f.actor) {
    const t = lastTransition(rec);
    if (!t || t.actor !== f.actor) return false;
  }
  if (f.q) {
    const q = f.q.toLowerCase();
    const hay = [rec.ref, rec.record_id, rec.pr_url, rec.pr_number ? '#' + rec.pr_number : null]
      .filter(Boolean).join('\n').toLowerCase();
    if (hay.indexOf(q) < 0) return false;
  }
  return true;
}

function card(rec, now) {
  const t = lastTransition(rec);
  const since = t ? t.timestamp : rec.updated_at;
  const age = now - parseTime(since);
  const li = document.createElement('li');
  li.className = 'card';
  li.dataset.id = rec.record_id;
  const a = document.createElement('a');
  a.href = '#/record/' + enc(rec.record_id);
  a.className = 'ref';
  a.textContent = shortRef(rec.ref);
  if (rec.ref && a.textContent !== rec.ref) a.title = rec.ref;
  li.appendChild(a);
  const meta = document.createElement('p');
  meta.className = 'meta';
  const tm = document.createElement('time');
  tm.className = 'age';
  if (since) tm.dateTime = since;
  tm.dataset.since = since || '';
  tm.textContent = fmtAge(age);
  tm.title = 'in this state since ' + fmtTime(since);
  meta.append(tm, ' in state');
  if (t && t.actor) meta.append(' · ', h('span', { class: 'actor' }, t.actor));
  li.appendChild(meta);
  const pr = safeUrl(rec.pr_url);
  if (pr || rec.repo) {
    const p2 = document.createElement('p');
    p2.className = 'meta';
    if (rec.repo) p2.append(h('span', { class: 'repo' }, rec.repo));
    if (pr) {
      if (rec.repo) p2.append(' · ');
      p2.append(h('a', { href: pr, class: 'pr', rel: 'noopener noreferrer' }, prLabel(rec)));
    }
    li.appendChild(p2);
  }
  const badges = [];
  if (rec.violations > 0) badges.push(['violation', 'violation' + (rec.violations > 1 ? ' ×' + rec.violations : '')]);
  if (rec.overrides > 0) badges.push(['override', 'override' + (rec.overrides > 1 ? ' ×' + rec.overrides : '')]);
  const due = board.due.get(rec.record_id);
  if (due || (Array.isArray(rec.timers) && rec.timers.length)) badges.push(['timer', 'timer']);
  if (badges.length) {
    const ul = document.createElement('ul');
    ul.className = 'badges';
    ul.setAttribute('aria-label', 'flags');
    for (const [cls, text] of badges) ul.appendChild(h('li', { class: 'badge ' + cls, 'data-badge': cls }, text));
    li.appendChild(ul);
  }
  return li;
}

function sortNewest(a, b) {
  const x = a.updated_at || '', y = b.updated_at || '';
  return x < y ? 1 : x > y ? -1 : 0;
}

// Build every column from board.records, once, into a fragment.
function renderColumns() {
  if (!board.el) return;
  const t0 = performance.now();
  const wfName = board.filters.workflow;
  const { states, terminal } = boardStates(wfName);
  const groups = new Map(states.map(s => [s, []]));
  for (const r of board.records.values()) {
    if (!matches(r)) continue;
    let g = groups.get(r.state);
    if (!g) { g = []; groups.set(r.state, g); states.push(r.state); }
    g.push(r);
  }
  const now = Date.now();
  const frag = document.createDocumentFragment();
  board.cols = new Map();
  board.cards = new Map();
  let shown = 0;
  for (const s of states) {
    const recs = groups.get(s);
    recs.sort(sortNewest);
    const count = h('span', { class: 'count' }, String(recs.length));
    const hid = 'col-' + s;
    const list = h('ol', { class: 'cards', 'aria-labelledby': hid });
    for (const r of recs) {
      const c = card(r, now);
      board.cards.set(r.record_id, c);
      list.appendChild(c);
    }
    shown += recs.length;
    const sec = h('section', { class: 'column' + (terminal.has(s) ? ' terminal' : ''), 'data-state': s },
      h('h2', { id: hid }, h('span', { class: 'state-name' }, s), ' ', count), list);
    board.cols.set(s, { section: sec, list, count });
    frag.appendChild(sec);
  }
  clear(board.el);
  board.el.appendChild(frag);
  board.renderMs = performance.now() - t0;
  const sum = document.getElementById('board-summary');
  if (sum) {
    sum.textContent = shown + ' of ' + board.records.size + ' records shown' +
      ' (rendered in ' + Math.round(board.renderMs) + ' ms)';
  }
}

function updateCount(state) {
  const col = board.cols && board.cols.get(state);
  if (col) col.count.textContent = String(col.list.children.length);
}

function filterOptions() {
  const repos = new Set(), actors = new Set(), wfNames = new Set();
  for (const r of board.records.values()) {
    wfNames.add(r.workflow || 'loopforge');
    if ((r.workflow || 'loopforge') !== board.filters.workflow) continue;
    if (r.repo) repos.add(r.repo);
    const t = lastTransition(r);
    if (t && t.actor) actors.add(t.actor);
  }
  if (board.wfs) for (const w of board.wfs) wfNames.add(w.name);
  wfNames.add(board.filters.workflow);
  return {
    workflows: Array.from(wfNames).sort(),
    repos: Array.from(repos).sort(),
    actors: Array.from(actors).sort(),
  };
}

function fillSelect(sel, values, current, anyLabel) {
  clear(sel);
  if (anyLabel) sel.append(h('option', { value: '' }, anyLabel));
  for (const v of values) sel.append(h('option', { value: v }, v));
  if (current && values.indexOf(current) < 0) sel.append(h('option', { value: current }, current));
  sel.value = current || '';
}

function syncHash() {
  const f = board.filters;
  const qs = new URLSearchParams();
  if (f.workflow && f.workflow !== 'loopforge') qs.set('workflow', f.workflow);
  if (f.repo) qs.set('repo', f.repo);
  if (f.actor) qs.set('actor', f.actor);
  if (f.q) qs.set('q', f.q);
  const s = qs.toString();
  history.replaceState(null, '', '#/' + (s ? '?' + s : ''));
}

async function showBoard(params) {
  const f = board.filters;
  f.workflow = params.get('workflow') || 'loopforge';
  f.repo = params.get('repo') || '';
  f.actor = params.get('actor') || '';
  f.q = params.get('q') || '';
  const id = beginView('Board');
  const selWf = h('select', { id: 'f-workflow', name: 'workflow' });
  const selRepo = h('select', { id: 'f-repo', name: 'repo' });
  const selActor = h('select', { id: 'f-actor', name: 'actor' });
  const q = h('input', { type: 'search', id: 'f-q', name: 'q', value: f.q, placeholder: 'ref, record id or PR' });
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter the board' },
    h('label', { for: 'f-workflow' }, 'Workflow'), selWf,
    h('label', { for: 'f-repo' }, 'Repo'), selRepo,
    h('label', { for: 'f-actor' }, 'Actor'), selActor,
    h('label', { for: 'f-q' }, 'Search'), q,
    h('button', { type: 'button', id: 'refresh', onclick: () => refreshBoard(true) }, 'Refresh'));
  form.addEventListener('submit', ev => ev.preventDefault());
  const notice = h('div', { id: 'board-notice' });
  const summary = h('p', { id: 'board-summary', class: 'muted' }, 'Loading records…');
  const cols = h('div', { class: 'board', id: 'board', 'aria-busy': 'true' });
  $main.append(form, notice, summary, cols);

  if (!board.wfs) {
    try { board.wfs = await workflows(); }
    catch (err) {
      if (err instanceof ApiError && err.status === 401) return;
      board.wfs = null; // no /v1/workflows: columns from the records
    }
  }
  if (id !== view) return;
  if (!board.records || Date.now() - board.lastFull > 60000) {
    if (!board.loading) board.loading = loadRecords(false).finally(() => { board.loading = null; });
    await board.loading;
  }
  if (id !== view) return;
  board.el = cols;

  const fillAll = () => {
    const o = filterOptions();
    fillSelect(selWf, o.workflows, f.workflow, null);
    fillSelect(selRepo, o.repos, f.repo, 'any repo');
    fillSelect(selActor, o.actors, f.actor, 'any actor');
  };
  board.fill = fillAll;
  fillAll();
  const onChange = () => {
    f.workflow = selWf.value || 'loopforge';
    f.repo = selRepo.value;
    f.actor = selActor.value;
    f.q = q.value.trim();
    syncHash();
    renderColumns();
  };
  selWf.addEventListener('change', () => { f.repo = ''; f.actor = ''; selRepo.value = ''; selActor.value = ''; onChange(); fillAll(); });
  selRepo.addEventListener('change', onChange);
  selActor.addEventListener('change', onChange);
  let qt = null;
  q.addEventListener('input', () => { clearTimeout(qt); qt = setTimeout(onChange, 150); });
  renderNotice();
  renderColumns();
  cols.removeAttribute('aria-busy');
}

function renderNotice() {
  const el = document.getElementById('board-notice');
  if (!el) return;
  clear(el);
  if (board.cursor) {
    el.append(h('p', { class: 'notice', role: 'status' },
      'Showing the ' + board.records.size + ' most recently updated records; there are more. ',
      h('button', { type: 'button', id: 'load-more', onclick: loadMore }, 'Load more')));
  }
}
async function loadMore(ev) {
  const btn = ev && ev.target;
  if (btn) { btn.disabled = true; btn.textContent = 'Loading…'; }
  try {
    await loadRecords(true);
  } catch (err) { showError(err); return; }
  if (!board.el) return;
  if (board.fill) board.fill();
  renderNotice();
  renderColumns();
}

async function refreshBoard(user) {
  if (!board.el) { board.records = null; return; }
  if (user) { workflowsCache = null; svgCache.clear(); try { board.wfs = await workflows(); } catch (e) { /* keep */ } }
  const el = board.el;
  el.setAttribute('aria-busy', 'true');
  try {
    if (!board.loading) board.loading = loadRecords(false).finally(() => { board.loading = null; });
    await board.loading;
  } catch (err) { showError(err); return; }
  finally { el.removeAttribute('aria-busy'); }
  if (board.el !== el) return;
  if (board.fill) board.fill();
  renderNotice();
  renderColumns();
  if (user) announce('Board refreshed');
}

// One record fetched again: move or update its card.
function place(rec, id) {
  const old = board.cards.get(id);
  const oldState = old ? old.closest('.column').dataset.state : null;
  if (old) { old.remove(); board.cards.delete(id); }
  if (rec && matches(rec)) {
    let col = board.cols.get(rec.state);
    if (!col) { renderColumns(); return null; }
    const c = card(rec, Date.now());
    c.classList.add('flash');
    col.list.insertBefore(c, col.list.firstChild);
    board.cards.set(id, c);
    updateCount(rec.state);
  }
  if (oldState && (!rec || oldState !== rec.state)) updateCount(oldState);
  return oldState;
}

/* --------------------------------------------------------- live events */

const pending = new Set();   // record ids changed since the last flush
let flushTimer = null;
let lastFlush = 0;
let lastSeq = null;          // the newest seq seen on the stream
let eventsCtrl = null;
let eventsRunning = false;
let eventsGen = 0;
let lastEvent = null;        // the last entry, for the announcement
let connects = 0;            // streams opened so far

function setLive(status, text) {
  $live.dataset.status = status;
  $live.textContent = text || ('live: ' + status);
}

function onEntry(e) {
  if (!e) return;
  if (typeof e.seq === 'number' && (lastSeq === null || e.seq > lastSeq)) lastSeq = e.seq;
  if (e.kind === 'policy_loaded') { policiesChanged(); return; }
  if (!e.record_id) return;
  lastEvent = e;
  pending.add(e.record_id);
  scheduleFlush();
}
// A new policy generation may change the workflows: draw them again.
async function policiesChanged() {
  workflowsCache = null;
  svgCache.clear();
  if (!board.el) { board.wfs = null; return; }
  try { board.wfs = await workflows(); } catch (err) { return; }
  if (board.el) { if (board.fill) board.fill(); renderColumns(); }
}
function scheduleFlush() {
  if (flushTimer) return;
  const wait = Math.max(0, FLUSH_MS - (Date.now() - lastFlush));
  flushTimer = setTimeout(flush, wait);
}

async function flush() {
  flushTimer = null;
  lastFlush = Date.now();
  const ids = Array.from(pending);
  pending.clear();
  if (!ids.length) return;
  const { path } = parseHash();
  const rm = /^\/record\/(.+)$/.exec(path);
  if (rm && ids.indexOf(decodeURIComponent(rm[1])) >= 0) {
    route(true); // the record shown changed: show it again
  }
  if (!board.records) return; // nothing loaded: the next board load sees it
  if (ids.length > FULL_REFRESH_OVER) {
    if (board.el) await refreshBoard(false);
    else board.records = null;
    announce(ids.length + ' records changed');
    return;
  }
  const got = await fetchRecords(ids);
  await loadTimers(ids); // a move arms or ends its record's timers
  let moved = 0, msg = null;
  for (const id of ids) {
    if (!(id in got)) continue; // failed to fetch: keep what we have
    const rec = got[id];
    const before = board.records.get(id);
    if (rec) board.records.set(id, rec); else board.records.delete(id);
    if (board.el && board.cols) {
      place(rec, id);
      moved++;
      if (rec && before && before.state !== rec.state) {
        msg = shortRef(rec.ref) + ' moved from ' + before.state + ' to ' + rec.state;
      } else if (rec && !before) {
        msg = shortRef(rec.ref) + ' created in ' + rec.state;
      } else if (!rec && before) {
        msg = shortRef(before.ref) + ' was deleted';
      } else if (rec) {
        msg = shortRef(rec.ref) + ' updated';
      }
    }
  }
  if (board.el && moved) {
    if (board.fill) maybeAddOptions(ids.map(i => got[i]).filter(Boolean));
    const sum = document.getElementById('board-summary');
    if (sum) sum.textContent = countShown() + ' of ' + board.records.size + ' records shown (updated live ' + fmtTime(new Date().toISOString()) + ')';
    announce(moved === 1 && msg ? msg : moved + ' records updated');
  }
  if (pending.size) scheduleFlush();
}
function countShown() { return board.cards.size; }

function maybeAddOptions(recs) {
  const selRepo = document.getElementById('f-repo');
  const selActor = document.getElementById('f-actor');
  for (const r of recs) {
    if ((r.workflow || 'loopforge') !== board.filters.workflow) continue;
    if (selRepo && r.repo && !selRepo.querySelector('option[value="' + CSS.escape(r.repo) + '"]')) {
      selRepo.append(h('option', { value: r.repo }, r.repo));
    }
    const t = lastTransition(r);
    if (selActor && t && t.actor && !selActor.querySelector('option[value="' + CSS.escape(t.actor) + '"]')) {
      selActor.append(h('option', { value: t.actor }, t.actor));
    }
  }
}

// GET each record, 6 at a time (the board shows a record's last
// transition: ?history=1). -> {id: record | null (gone)}; an id whose
// fetch failed otherwise is left out.
async function fetchRecords(ids) {
  const out = {};
  let i = 0;
  async function worker() {
    while (i < ids.length) {
      const id = ids[i++];
      try { out[id] = await api('/v1/records/' + enc(id) + '?history=1'); }
      catch (err) { if (err instanceof ApiError && err.status === 404) out[id] = null; }
    }
  }
  const n = Math.min(6, ids.length);
  const ws = [];
  for (let k = 0; k < n; k++) ws.push(worker());
  await Promise.all(ws);
  return out;
}

// Read an SSE stream: calls onEvent(type, data, id) per event.
async function readSSE(body, onEvent, onRetry) {
  const reader = body.getReader();
  const dec = new TextDecoder('utf-8');
  let buf = '';
  let type = '', data = [], id = null;
  const line = l => {
    if (l === '') {
      if (data.length) onEvent(type || 'message', data.join('\n'), id);
      type = ''; data = [];
      return;
    }
    if (l[0] === ':') return; // a comment: keep-alive
    const c = l.indexOf(':');
    const field = c < 0 ? l : l.slice(0, c);
    let value = c < 0 ? '' : l.slice(c + 1);
    if (value[0] === ' ') value = value.slice(1);
    if (field === 'event') type = value;
    else if (field === 'data') data.push(value);
    else if (field === 'id') id = value;
    else if (field === 'retry' && /^\d+$/.test(value)) onRetry && onRetry(parseInt(value, 10));
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let start = 0;
    for (;;) {
      let i = start;
      while (i < buf.length && buf[i] !== '\n' && buf[i] !== '\r') i++;
      if (i >= buf.length) break;
      if (buf[i] === '\r' && i + 1 >= buf.length) break; // CR at the end: wait for a LF
      line(buf.slice(start, i));
      start = i + (buf[i] === '\r' && buf[i + 1] === '\n' ? 2 : 1);
    }
    buf = buf.slice(start);
  }
}

function sleep(ms) { return new Promise(r => setTimeout(r, ms)); }

function stopEvents() {
  eventsGen++;
  if (eventsCtrl) { try { eventsCtrl.abort(); } catch (e) { /* ignore */ } }
  eventsCtrl = null;
  eventsRunning = false;
}

function startEvents() {
  if (eventsRunning) return;
  eventsRunning = true;
  const gen = ++eventsGen;
  eventsLoop(gen);
}

async function eventsLoop(gen) {
  let delay = 1000;
  let connectedBefore = false;
  let serverRetry = null;
  while (gen === eventsGen) {
    if (needLogin) return;
    const ctrl = new AbortController();
    eventsCtrl = ctrl;
    let opened = false;
    try {
      const hd = headers({ Accept: 'text/event-stream' });
      if (lastSeq !== null) hd['Last-Event-ID'] = String(lastSeq);
      const res = await fetch('/v1/events', { headers: hd, cache: 'no-store', signal: ctrl.signal });
      if (gen !== eventsGen) { ctrl.abort(); return; }
      if (res.status === 401) { unauthorized(); return; }
      if (!res.ok || !res.body) {
        setLive('off', res.status === 404 ? 'live: not available' : 'live: error ' + res.status);
        if (res.status === 404) delay = Math.max(delay, 30000);
        throw new Error('HTTP ' + res.status);
      }
      opened = true;
      connects++;
      setLive('on', 'live');
      if (connectedBefore) catchUp();
      connectedBefore = true;
      delay = 1000;
      await readSSE(res.body, (type, data) => {
        if (type !== 'entry' && type !== 'message') return;
        let e;
        try { e = JSON.parse(data); } catch (err) { return; }
        onEntry(e);
      }, ms => { serverRetry = ms; });
    } catch (err) {
      if (gen !== eventsGen) return;
    }
    if (gen !== eventsGen) return;
    // A stream that ended cleanly is reopened at once and quietly; the
    // status says "reconnecting" only while attempts fail.
    if (!opened && $live.dataset.status === 'on') setLive('retry', 'live: reconnecting');
    const base = serverRetry !== null && opened ? Math.max(serverRetry, 250) : delay;
    await sleep(base + Math.random() * 250);
    if (!opened) delay = Math.min(delay * 2, 30000);
  }
}

// After a reconnect: what happened while the stream was down. With a seq
// seen, the audit log after it names the records; else reload the board.
// Without a seq, the records updated since the newest one we hold (the
// list is newest first) -- all but deletions; past a few pages, reload.
async function catchUp() {
  if (!board.records) return;
  try {
    if (lastSeq !== null) {
      const text = await apiText('/v1/audit?after=' + lastSeq + '&limit=' + (FULL_REFRESH_OVER + 1));
      for (const l of text.split('\n')) {
        if (!l) continue;
        try { onEntry(JSON.parse(l)); } catch (e) { /* skip */ }
      }
      return;
    }
    let mark = '';
    for (const r of board.records.values()) if ((r.updated_at || '') > mark) mark = r.updated_at;
    let cursor = null;
    for (let page = 0; page < 3; page++) {
      const j = await api('/v1/records?history=1&limit=100' + (cursor ? '&cursor=' + enc(cursor) : ''));
      for (const r of j.records || []) {
        if ((r.updated_at || '') < mark) return;
        const had = board.records.get(r.record_id);
        if (!had || had.version !== r.version) { pending.add(r.record_id); scheduleFlush(); }
      }
      cursor = j.next_cursor;
      if (!cursor) return;
    }
    if (board.el) refreshBoard(false); else board.records = null;
  } catch (err) { /* the next event will tell */ }
}

// Ages on the board move on by themselves.
setInterval(() => {
  if (!board.el || document.hidden) return;
  const now = Date.now();
  for (const t of board.el.querySelectorAll('time.age')) {
    t.textContent = fmtAge(now - parseTime(t.dataset.since));
  }
}, 30000);

/* -------------------------------------------------------------- record */

function parseNdjson(text) {
  const out = [];
  for (const l of text.split('\n')) {
    if (!l.trim()) continue;
    try { out.push(JSON.parse(l)); } catch (e) { /* a cut line: skip */ }
  }
  out.sort((a, b) => (a.seq || 0) - (b.seq || 0));
  return out;
}

async function showRecord(rid, rerender) {
  const id = ++view;
  const settle = p => p.then(v => ({ ok: true, v }), e => ({ ok: false, e }));
  const [r, a, x] = await Promise.all([
    settle(api('/v1/records/' + enc(rid))),
    settle(apiText('/v1/records/' + enc(rid) + '/audit')),
    settle(api('/v1/records/' + enc(rid) + '/explain')),
  ]);
  if (id !== view || needLogin) return;
  for (const s of [r, a, x]) if (!s.ok && s.e instanceof ApiError && s.e.status === 401) return;
  const scroll = rerender ? window.scrollY : 0;
  const rec = r.ok ? r.v : null;
  const entries = a.ok ? parseNdjson(a.v) : [];
  if (!rec && !entries.length) {
    beginView('Record ' + rid);
    throw (r.e || a.e);
  }
  const wfName = rec ? (rec.workflow || 'loopforge') : (entries[0] && entries[0].record && entries[0].record.workflow) || 'loopforge';
  const title = rec ? shortRef(rec.ref) : rid;
  beginView(null);
  document.title = title + ' — loopforge console';

  // ---- title
  const head = h('header', { class: 'record-head' },
    h('p', { class: 'crumbs' }, h('a', { href: '#/' + (wfName !== 'loopforge' ? '?workflow=' + enc(wfName) : '') }, '← Board')),
    h('h1', null, title, ' ', rec ? h('span', { class: 'state-pill', 'data-state': null }, rec.state) : h('span', { class: 'state-pill gone' }, 'deleted')));
  const facts = h('dl', { class: 'facts' });
  const fact = (k, v) => { if (v !== null && v !== undefined && v !== '') facts.append(h('dt', null, k), h('dd', null, v)); };
  if (rec) {
    fact('record', h('code', null, rec.record_id));
    if (rec.ref !== title) fact('ref', safeUrl(rec.ref) ? h('a', { href: rec.ref, rel: 'noopener noreferrer' }, rec.ref) : rec.ref);
    fact('state', rec.state);
    fact('workflow', h('a', { href: '#/workflows' }, wfName));
    fact('repo', rec.repo);
    if (safeUrl(rec.pr_url)) fact('pull request', h('a', { href: rec.pr_url, class: 'pr', rel: 'noopener noreferrer' }, prLabel(rec) + ' ', h('span', { class: 'muted' }, rec.pr_url)));
    fact('version', String(rec.version));
    fact('auto-merge', rec.auto_merge ? 'yes' : 'no');
    fact('created', timeEl(rec.created_at));
    fact('updated', timeEl(rec.updated_at));
    if (rec.closed_at) fact('closed', timeEl(rec.closed_at));
    if (rec.parent) fact('parent', h('a', { href: '#/record/' + enc(rec.parent) }, rec.parent));
    if (!isEmpty(rec.labels)) fact('labels', valueEl(rec.labels));
    if (!isEmpty(rec.metadata)) fact('metadata', valueEl(rec.metadata));
    if (rec.violations > 0) fact('violations', h('span', { class: 'badge violation' }, String(rec.violations)));
    if (rec.overrides > 0) fact('overrides', h('span', { class: 'badge override' }, String(rec.overrides)));
    if (Array.isArray(rec.timers) && rec.timers.length) fact('timers', valueEl(rec.timers));
  } else {
    fact('record', h('code', null, rid));
    fact('status', 'deleted: only its audit trail remains');
  }
  $main.append(head);
  const top = h('div', { class: 'record-top' },
    h('section', { class: 'panel', 'aria-labelledby': 'h-facts' }, h('h2', { id: 'h-facts' }, 'Record'), facts));
  $main.append(top);

  // ---- explain
  if (rec) top.append(explainPanel(x));

  // ---- graph
  const path = pathTaken(rec, entries);
  const graph = h('section', { class: 'panel', 'aria-labelledby': 'h-graph' },
    h('h2', { id: 'h-graph' }, 'Workflow ', h('code', null, wfName)),
    graphFigure(wfName, 'The ' + wfName + ' workflow' + (rec ? '; current state ' + rec.state : '') +
      '; the states and edges this record took are coloured', svg => markPath(svg, rec, path)),
    h('p', { class: 'legend' }, h('span', { class: 'key key-current' }), ' current state ',
      h('span', { class: 'key key-taken' }, ''), ' taken by this record'));
  $main.append(graph);

  // ---- forge
  if (rec && isObj(rec.forge) && Object.keys(rec.forge).length) {
    $main.append(h('section', { class: 'panel forge', 'aria-labelledby': 'h-forge' },
      h('h2', { id: 'h-forge' }, 'Forge facts'), forgeEl(rec.forge)));
  }

  // ---- timeline
  const tl = h('section', { class: 'panel', 'aria-labelledby': 'h-timeline' },
    h('h2', { id: 'h-timeline' }, 'Timeline ', h('span', { class: 'muted' }, '(' + entries.length + ' entries)')));
  if (!a.ok) tl.append(h('p', { class: 'error', role: 'alert' }, 'The audit trail did not load: ' + a.e.message));
  const ol = h('ol', { class: 'timeline' });
  for (const e of entries) ol.append(entryEl(e));
  tl.append(ol);
  $main.append(tl);
  if (scroll) window.scrollTo(0, scroll);
}

// The states and edges the record went through, oldest first.
function pathTaken(rec, entries) {
  const states = new Set(), edges = new Set();
  const moves = rec && Array.isArray(rec.transitions) ? rec.transitions : [];
  const steps = [];
  // The record carries its last N transitions; the audit log has them all.
  if (rec && rec.transitions_total && rec.transitions_total > moves.length) {
    for (const e of entries) {
      if (e.to_state && (e.kind === 'created' || e.kind === 'transition' || e.kind === 'observed') &&
          e.from_state !== e.to_state) steps.push(e);
    }
  }
  for (const t of steps.length ? steps : moves) {
    if (t.to_state) states.add(t.to_state);
    if (t.from_state) { states.add(t.from_state); if (t.to_state) edges.add(t.from_state + '-' + t.to_state); }
  }
  return { states, edges };
}
function markPath(svg, rec, path) {
  for (const s of path.states) { const n = byId(svg, 'state-' + s); if (n) n.classList.add('taken'); }
  for (const e of path.edges) { const n = byId(svg, 'edge-' + e); if (n) n.classList.add('taken'); }
  if (rec) {
    const cur = byId(svg, 'state-' + rec.state);
    if (cur) cur.classList.add('current');
  }
}

function decisionEl(d) {
  const deny = d.verdict === 'deny';
  const li = h('li', { class: 'decision verdict-' + (d.verdict || 'none') },
    h('strong', { class: 'policy' }, d.policy || '?'), ' ',
    h('span', { class: 'verdict' }, d.verdict || ''));
  if (d.reason) li.append(deny ? ': ' : ' — ', h('span', { class: 'reason' }, d.reason));
  if (!isEmpty(d.requires)) li.append(h('div', { class: 'requires' }, 'requires ', h('code', null, requiresText(d.requires))));
  return li;
}

const ENTRY_KEYS = new Set(['seq', 'record_id', 'kind', 'version', 'from_state', 'to_state', 'trigger', 'actor',
  'timestamp', 'decisions', 'violation', 'policy_set', 'prev', 'hash']);

function entryEl(e) {
  const kind = e.kind || 'entry';
  const override = e.authority && e.authority.override;
  const li = h('li', { class: 'entry kind-' + kind + (e.violation ? ' has-violation' : '') + (override ? ' has-override' : ''),
    'data-kind': kind, 'data-seq': e.seq });
  const move = e.from_state || e.to_state
    ? h('span', { class: 'move' }, e.from_state || '∅', ' → ', e.to_state || '∅') : null;
  li.append(h('div', { class: 'entry-head' },
    h('span', { class: 'seq' }, '#' + e.seq), ' ',
    timeEl(e.timestamp), ' ',
    h('span', { class: 'kind' }, kind), ' ',
    move, ' ',
    e.trigger ? h('span', { class: 'trigger' }, 'trigger ', h('code', null, e.trigger)) : null, ' ',
    e.actor ? h('span', { class: 'actor' }, 'by ', h('strong', null, e.actor)) : null));
  if (Array.isArray(e.decisions) && e.decisions.length) {
    li.append(h('ul', { class: 'decisions', 'aria-label': 'decisions' }, e.decisions.map(decisionEl)));
  }
  if (e.violation) {
    const v = e.violation;
    li.append(h('p', { class: 'violation' }, h('strong', null, 'Violation'),
      v.rule ? [' of ', h('code', null, v.rule)] : null, v.reason ? ': ' + v.reason : null));
  }
  if (override) {
    li.append(h('p', { class: 'override' }, h('strong', null, 'Break-glass override'),
      override.reason ? ': ' + override.reason : null,
      override.co_signer ? ' (co-signed by ' + override.co_signer + ')' : null,
      override.used === false ? ' (no guard denied: not used)' : null));
  }
  const rest = {};
  for (const k of Object.keys(e)) if (!ENTRY_KEYS.has(k) && !isEmpty(e[k])) rest[k] = e[k];
  if (Object.keys(rest).length) {
    li.append(h('details', { class: 'more' }, h('summary', null, 'details (' + Object.keys(rest).join(', ') + ')'),
      valueEl(rest)));
  }
  return li;
}

function explainPanel(x) {
  const sec = h('section', { class: 'panel explain', 'aria-labelledby': 'h-explain' },
    h('h2', { id: 'h-explain' }, 'Why it is here, and what unblocks it'));
  if (!x.ok) {
    sec.append(h('p', { class: 'muted' }, 'No explanation: ' + x.e.message));
    return sec;
  }
  const ex = x.v;
  if (ex.terminal) {
    sec.append(h('p', null, h('code', null, ex.state), ' is a terminal state: there is no way out.'));
  }
  const edges = Array.isArray(ex.edges) ? ex.edges : [];
  if (!ex.terminal && !edges.length) sec.append(h('p', { class: 'muted' }, 'No edge leaves ' + ex.state + '.'));
  if (edges.length) {
    sec.append(h('p', { class: 'muted' }, 'Each way out of ', h('code', null, ex.state),
      ', judged now as a dry run by ', h('strong', null, ex.actor || 'you'), ':'));
    const ul = h('ul', { class: 'ways' });
    for (const e of edges) {
      const li = h('li', { class: 'way ' + (e.allowed ? 'allowed' : 'denied'), 'data-to': e.to },
        h('span', { class: 'way-to' }, '→ ', h('strong', null, e.to)), ' ',
        h('span', { class: 'verdict-pill ' + (e.allowed ? 'ok' : 'no') }, e.allowed ? 'allowed' : 'blocked'),
        !e.allowed && e.code ? [' ', h('code', { class: 'muted' }, e.code)] : null);
      if (!e.allowed && e.error) li.append(h('p', { class: 'reason' }, e.error));
      const ds = (e.decisions || []).filter(d => !e.allowed ? true : d.verdict !== 'allow' || d.reason);
      if (ds.length) li.append(h('ul', { class: 'decisions' }, ds.map(decisionEl)));
      ul.append(li);
    }
    sec.append(ul);
  }
  const more = h('dl', { class: 'facts' });
  if (ex.leave_roles) more.append(h('dt', null, 'who may leave'), h('dd', null, valueEl(ex.leave_roles)));
  if (ex.timer) {
    const t = ex.timer;
    more.append(h('dt', null, 'next timer'), h('dd', null,
      '→ ', h('strong', null, t.to || '?'), t.trigger ? [' (', h('code', null, t.trigger), ')'] : null,
      t.due ? [' due ', timeEl(t.due)] : null));
  }
  if (Array.isArray(ex.budgets) && ex.budgets.length) {
    const tb = h('table', { class: 'data' },
      h('caption', null, 'Budgets'),
      h('thead', null, h('tr', null, ['into', 'per', 'who', 'used / max', 'window', 'frees up'].map(c => h('th', { scope: 'col' }, c)))),
      h('tbody', null, ex.budgets.map(b => h('tr', { class: b.used >= b.max ? 'spent' : null },
        h('td', null, b.to), h('td', null, b.per), h('td', null, b.who),
        h('td', null, b.used + ' / ' + b.max), h('td', null, fmtSeconds(b.within_s)),
        h('td', null, b.frees_up ? timeEl(b.frees_up) : '')))));
    sec.append(tb);
  }
  if (more.children.length) sec.append(more);
  return sec;
}

function forgeEl(f) {
  const dl = h('dl', { class: 'facts forge-facts' });
  const known = ['pr', 'issue', 'ci', 'reviews'];
  if (isObj(f.pr)) {
    const pr = f.pr;
    const url = safeUrl(pr.url);
    dl.append(h('dt', null, 'pull request'), h('dd', null,
      url ? h('a', { href: url, rel: 'noopener noreferrer' }, '#' + (pr.number || '?')) : '#' + (pr.number || '?'),
      pr.state ? [' ', h('span', { class: 'pill' }, pr.state)] : null,
      pr.head ? [' head ', h('code', { title: pr.head }, String(pr.head).slice(0, 12))] : null,
      pr.pushes !== undefined ? ' · ' + pr.pushes + ' push' + (pr.pushes === 1 ? '' : 'es') : null,
      pr.merged_by ? ' · merged by ' + pr.merged_by : null,
      pr.merged_at ? [' at ', timeEl(pr.merged_at)] : null));
  }
  if (isObj(f.issue)) dl.append(h('dt', null, 'issue'), h('dd', null, valueEl(f.issue)));
  if (isObj(f.ci)) {
    const head = isObj(f.pr) ? f.pr.head : null;
    const rows = [];
    for (const sha of Object.keys(f.ci)) {
      const checks = f.ci[sha];
      if (!isObj(checks)) continue;
      for (const key of Object.keys(checks)) {
        const c = checks[key] || {};
        rows.push(h('tr', { class: sha === head ? 'head' : null },
          h('td', null, h('code', { title: sha }, sha.slice(0, 12)), sha === head ? ' (head)' : ''),
          h('td', null, c.name || key), h('td', null, c.app || ''),
          h('td', null, c.status || ''),
          h('td', { class: 'concl-' + (c.conclusion || 'none') }, c.conclusion || ''),
          h('td', null, c.attempt !== undefined ? String(c.attempt) : ''),
          h('td', null, c.at ? timeEl(c.at) : '')));
      }
    }
    dl.append(h('dt', null, 'CI checks'), h('dd', null, rows.length ? h('table', { class: 'data' },
      h('thead', null, h('tr', null, ['commit', 'check', 'app', 'status', 'conclusion', 'attempt', 'at'].map(c => h('th', { scope: 'col' }, c)))),
      h('tbody', null, rows)) : h('span', { class: 'muted' }, 'none reported')));
  }
  if (isObj(f.reviews)) {
    const rows = Object.keys(f.reviews).map(who => {
      const r = f.reviews[who] || {};
      return h('tr', null, h('td', null, who), h('td', null, r.state || ''),
        h('td', null, r.commit ? h('code', { title: r.commit }, String(r.commit).slice(0, 12)) : ''),
        h('td', null, r.at ? timeEl(r.at) : ''));
    });
    dl.append(h('dt', null, 'reviews'), h('dd', null, rows.length ? h('table', { class: 'data' },
      h('thead', null, h('tr', null, ['reviewer', 'state', 'commit', 'at'].map(c => h('th', { scope: 'col' }, c)))),
      h('tbody', null, rows)) : h('span', { class: 'muted' }, 'none')));
  }
  for (const k of Object.keys(f)) {
    if (known.indexOf(k) >= 0 && isObj(f[k])) continue;
    dl.append(h('dt', null, k), h('dd', null, valueEl(f[k])));
  }
  return dl;
}

/* ----------------------------------------------------------- workflows */

async function showWorkflows() {
  const id = beginView('Workflows');
  const wfs = await workflows();
  if (id !== view) return;
  let guards = [];
  try { guards = (await api('/v1/policies')).guards || []; } catch (e) { /* names only */ }
  if (id !== view) return;
  const desc = new Map(guards.map(g => [g.name, g]));
  const toc = h('ul', { class: 'toc' }, wfs.map(w => h('li', null, h('a', { href: '#/workflows', 'data-target': 'wf-' + w.name,
    onclick: ev => { ev.preventDefault(); const t = document.getElementById('wf-' + w.name); if (t) { t.scrollIntoView(); t.querySelector('h2').focus(); } } }, w.name))));
  $main.append(h('nav', { 'aria-label': 'Workflows on this page' }, toc));
  for (const w of wfs) {
    const rows = (w.edges || []).map(e => h('tr', { class: e.engine ? 'engine' : null },
      h('td', null, e.from), h('td', null, e.to),
      h('td', null, e.engine ? 'engine' : 'request'),
      h('td', null, (e.guards && e.guards.length) ? h('ul', { class: 'guards' }, e.guards.map(g => h('li', null,
        h('code', null, g), desc.get(g) && desc.get(g).description ? [' — ', h('span', { class: 'muted' }, desc.get(g).description)] : null,
        desc.get(g) && desc.get(g).enabled === false ? ' (disabled)' : null))) : h('span', { class: 'muted' }, 'none'))));
    $main.append(h('section', { class: 'panel workflow', id: 'wf-' + w.name, 'aria-labelledby': 'h-wf-' + w.name, 'data-workflow': w.name },
      h('h2', { id: 'h-wf-' + w.name, tabindex: '-1' }, w.name),
      h('p', null, (w.states || []).length + ' states; starts in ', h('code', null, w.initial || '?'),
        (w.terminal && w.terminal.length) ? ['; ends in ', w.terminal.map((t, i) => [i ? ', ' : '', h('code', null, t)])] : null,
        ' · ', h('a', { href: '#/?workflow=' + enc(w.name) }, 'its board')),
      graphFigure(w.name, 'The ' + w.name + ' workflow'),
      h('table', { class: 'data edges' },
        h('caption', null, 'Edges of ' + w.name + ' and the guards on them'),
        h('thead', null, h('tr', null, ['from', 'to', 'taken by', 'guards'].map(c => h('th', { scope: 'col' }, c)))),
        h('tbody', null, rows))));
  }
}

/* -------------------------------------------------------------- health */

// Prometheus text -> Map name -> {name, type, help, samples:[{name, labels, value}]}
function parseMetrics(text) {
  const fams = new Map();
  const fam = n => {
    let f = fams.get(n);
    if (!f) { f = { name: n, type: '', help: '', samples: [] }; fams.set(n, f); }
    return f;
  };
  for (const l of text.split('\n')) {
    let m;
    if ((m = /^#\s+HELP\s+(\S+)\s?(.*)$/.exec(l))) { fam(m[1]).help = m[2]; continue; }
    if ((m = /^#\s+TYPE\s+(\S+)\s+(\S+)/.exec(l))) { fam(m[1]).type = m[2]; continue; }
    if (!l || l[0] === '#') continue;
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(l);
    if (!m) continue;
    const labels = {};
    if (m[2]) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
      let lm;
      while ((lm = re.exec(m[2]))) labels[lm[1]] = lm[2].replace(/\\n/g, '\n').replace(/\\(["\\])/g, '$1');
    }
    let name = m[1];
    let f = fams.get(name);
    if (!f) {
      const base = name.replace(/_(bucket|sum|count|total|created)$/, '');
      f = fams.get(base) || fam(name);
    }
    f.samples.push({ name, labels, value: m[3] });
  }
  return fams;
}

async function showHealth() {
  const id = beginView('Audit health');
  const settle = p => p.then(v => ({ ok: true, v }), e => ({ ok: false, e }));
  const [pol, met, cp] = await Promise.all([
    settle(api('/v1/policies')), settle(apiText('/metrics')), settle(api('/v1/checkpoints/latest'))]);
  if (id !== view || needLogin) return;
  for (const s of [pol, met, cp]) if (!s.ok && s.e instanceof ApiError && s.e.status === 401) return;

  const ps = h('section', { class: 'panel', 'aria-labelledby': 'h-pol' }, h('h2', { id: 'h-pol' }, 'Policy set'));
  if (pol.ok) {
    const p = pol.v;
    const n = k => Array.isArray(p[k]) ? p[k].length : 0;
    ps.append(h('dl', { class: 'facts' },
      h('dt', null, 'generation'), h('dd', null, h('code', { id: 'generation', class: 'hash' }, p.generation || '?')),
      p.loaded_at ? [h('dt', null, 'loaded'), h('dd', null, timeEl(p.loaded_at))] : null,
      h('dt', null, 'files'), h('dd', null, String(n('files'))),
      h('dt', null, 'workflows'), h('dd', null, (p.workflows || []).map((w, i) => [i ? ', ' : '', typeof w === 'string' ? w : w.name])),
      h('dt', null, 'hooks / routes'), h('dd', null, n('hooks') + ' / ' + n('routes'))));
    if (Array.isArray(p.guards) && p.guards.length) {
      ps.append(h('table', { class: 'data' }, h('caption', null, 'Guards'),
        h('thead', null, h('tr', null, ['guard', 'on', 'description', 'enabled'].map(c => h('th', { scope: 'col' }, c)))),
        h('tbody', null, p.guards.map(g => h('tr', { class: g.enabled === false ? 'disabled' : null },
          h('td', null, h('code', null, g.name)), h('td', null, h('code', null, g.on || '')),
          h('td', null, g.description || ''), h('td', null, g.enabled === false ? 'no' : 'yes'))))));
    }
  } else ps.append(h('p', { class: 'error', role: 'alert' }, 'The policy set did not load: ' + pol.e.message));
  $main.append(ps);

  const ms = h('section', { class: 'panel', 'aria-labelledby': 'h-met' }, h('h2', { id: 'h-met' }, 'Counters'));
  if (met.ok) {
    const fams = parseMetrics(met.v);
    const want = /transition|violation|denied|denial|guard|override/;
    const grid = h('div', { class: 'metrics' });
    ms.append(grid);
    let any = false;
    for (const f of fams.values()) {
      if (!want.test(f.name)) continue;
      any = true;
      const samples = f.samples.filter(s => !/_bucket$/.test(s.name));
      const labelKeys = [];
      for (const s of samples) for (const k of Object.keys(s.labels)) if (labelKeys.indexOf(k) < 0) labelKeys.push(k);
      const showName = samples.some(s => s.name !== f.name);
      grid.append(h('table', { class: 'data metric', 'data-metric': f.name },
        h('caption', null, h('code', null, f.name), f.type ? ' (' + f.type + ')' : '', f.help ? h('span', { class: 'help' }, ' — ' + f.help) : null),
        h('thead', null, h('tr', null, showName ? h('th', { scope: 'col' }, 'sample') : null,
          labelKeys.map(k => h('th', { scope: 'col' }, k)), h('th', { scope: 'col', class: 'num' }, 'value'))),
        h('tbody', null, samples.length ? samples.map(s => h('tr', null,
          showName ? h('td', null, h('code', null, s.name)) : null,
          labelKeys.map(k => h('td', null, s.labels[k] !== undefined ? s.labels[k] : '')),
          h('td', { class: 'num' }, s.value))) : h('tr', null, h('td', { colspan: String(labelKeys.length + 1 + (showName ? 1 : 0)) }, 'no samples')))));
    }
    if (!any) ms.append(h('p', { class: 'muted' }, 'No transition, violation, denial or guard counters in /metrics.'));
  } else ms.append(h('p', { class: 'error', role: 'alert' }, '/metrics did not load: ' + met.e.message));
  $main.append(ms);

  const cs = h('section', { class: 'panel', 'aria-labelledby': 'h-cp' }, h('h2', { id: 'h-cp' }, 'Latest checkpoint'));
  if (cp.ok) cs.append(valueEl(cp.v));
  else if (cp.e instanceof ApiError && cp.e.status === 404) cs.append(h('p', { class: 'muted' }, 'No checkpoint published.'));
  else cs.append(h('p', { class: 'muted' }, 'Checkpoint unavailable: ' + cp.e.message));
  $main.append(cs);
}

/* ---------------------------------------------------------------- boot */

document.querySelector('a.skip').addEventListener('click', ev => {
  ev.preventDefault();
  $main.focus();
});
window.addEventListener('hashchange', () => route(false));
updateSignout();
route(true);
startEvents();

// For tests and benchmarks: render N synthetic records, return the ms.
window.lfConsole = {
  benchRender(n, states) {
    states = states || (boardStates(board.filters.workflow).states);
    if (!states.length) states = ['a', 'b', 'c'];
    const map = new Map();
    const now = Date.now();
    for (let i = 0; i < n; i++) {
      const ts = new Date(now - i * 60000).toISOString();
      const id = 'bench-' + i;
      map.set(id, { record_id: id, ref: 'https://github.com/o/r' + (i % 7) + '/issues/' + i, repo: 'o/r' + (i % 7),
        state: states[i % states.length], workflow: board.filters.workflow, updated_at: ts,
        pr_url: i % 2 ? 'https://github.com/o/r/pull/' + i : null, violations: i % 13 === 0 ? 1 : 0,
        overrides: i % 29 === 0 ? 1 : 0, timers: i % 17 === 0 ? [{ to: 'x' }] : [],
        transitions: [{ to_state: states[i % states.length], timestamp: ts, actor: 'actor' + (i % 5) }] });
    }
    board.records = map;
    board.cursor = null;
    board.lastFull = Date.now();
    renderColumns();
    return board.renderMs;
  },
  get renderMs() { return board.renderMs; },
  get connects() { return connects; },
  // Cut the event stream as a server or proxy would: it reconnects.
  dropStream() { if (eventsCtrl) eventsCtrl.abort(); },
};

})();
