// The admin console: polls the admin routes and tails the event log over
// the WebSocket. Plain DOM, no framework; every text from the service goes
// in through textContent, never as markup.
'use strict';

(() => {
  const POLL_MS = 2000;
  const WINDOW_MS = 5 * 60 * 1000;
  const TAIL_MAX = 500;
  const TOKEN_KEY = 'allframe.console.token';
  const SVG = 'http://www.w3.org/2000/svg';

  const $ = (id) => document.getElementById(id);

  // ---- small helpers ------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  // The token lives in sessionStorage (gone with the tab); where storage
  // is off, in this page only.
  let bearerToken = '';
  try { bearerToken = sessionStorage.getItem(TOKEN_KEY) || ''; } catch { /* storage off */ }

  function token() {
    return bearerToken;
  }

  function keepToken(value) {
    bearerToken = value;
    try {
      if (value) sessionStorage.setItem(TOKEN_KEY, value); else sessionStorage.removeItem(TOKEN_KEY);
    } catch { /* storage off: kept in this page only */ }
  }

  function showProblem(id, problem) {
    const box = $(id);
    if (!problem) { box.hidden = true; box.textContent = ''; return; }
    box.hidden = false;
    box.textContent = describe(problem);
  }

  // A problem+json body (or what stands in for one) as one line.
  function describe(problem) {
    const head = problem.status ? `${problem.status} ${problem.title || ''}` : (problem.title || 'Error');
    return problem.detail ? `${head.trim()}: ${problem.detail}` : head.trim();
  }

  // Calls a route relative to the page; never throws. Answers
  // { ok, status, body } or { ok: false, problem }.
  async function call(method, path) {
    const headers = { Accept: 'application/json' };
    const bearer = token();
    if (bearer) headers.Authorization = `Bearer ${bearer}`;
    let response;
    try {
      response = await fetch(path, { method, headers, cache: 'no-store' });
    } catch (error) {
      return { ok: false, problem: { title: 'The service did not answer', detail: String(error && error.message || error) } };
    }
    let body = null;
    try {
      const text = await response.text();
      body = text ? JSON.parse(text) : null;
    } catch {
      body = null;
    }
    if (!response.ok) {
      const problem = body && typeof body === 'object' ? body : {};
      return { ok: false, status: response.status, problem: { status: response.status, type: problem.type, title: problem.title || response.statusText || 'Error', detail: problem.detail } };
    }
    return { ok: true, status: response.status, body };
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return 'unknown';
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  }

  // ---- lag history and its chart -------------------------------------------

  const history = new Map(); // "projection:name" -> [{ t, lag }]

  function remember(key, lag, now) {
    let samples = history.get(key);
    if (!samples) history.set(key, (samples = []));
    samples.push({ t: now, lag });
    while (samples.length && samples[0].t < now - WINDOW_MS) samples.shift();
    return samples;
  }

  function chart(samples, now) {
    const width = 140, height = 26;
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('class', 'spark');
    svg.setAttribute('width', width);
    svg.setAttribute('height', height);
    svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
    const max = Math.max(1, ...samples.map((s) => s.lag));
    const base = document.createElementNS(SVG, 'line');
    base.setAttribute('x1', 0); base.setAttribute('x2', width);
    base.setAttribute('y1', height - 1); base.setAttribute('y2', height - 1);
    svg.appendChild(base);
    const line = document.createElementNS(SVG, 'polyline');
    line.setAttribute('points', samples.map((s) => {
      const x = width - ((now - s.t) / WINDOW_MS) * width;
      const y = height - 1 - (s.lag / max) * (height - 3);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    }).join(' '));
    svg.appendChild(line);
    const title = document.createElementNS(SVG, 'title');
    const minutes = Math.max(1, Math.round((now - samples[0].t) / 60000));
    title.textContent = `highest lag in the last ${minutes} min: ${Math.max(0, ...samples.map((s) => s.lag))}`;
    svg.appendChild(title);
    return svg;
  }

  // ---- tables --------------------------------------------------------------

  // Rows stay put between polls (keyed by name), so a click never lands on
  // a row being replaced.
  function upsertRow(tbody, rows, name, columns, build) {
    let row = rows.get(name);
    if (!row) {
      row = el('tr');
      row.dataset.name = name;
      const cells = columns.map((className) => row.appendChild(el('td', className)));
      if (build) build(row, cells);
      rows.set(name, row);
      tbody.appendChild(row);
    }
    return Array.from(row.cells);
  }

  function dropMissing(rows, names) {
    for (const [name, row] of rows) {
      if (!names.has(name)) { row.remove(); rows.delete(name); }
    }
  }

  function setState(cell, state) {
    cell.textContent = state;
    cell.className = `state-${String(state).replace(/[^a-z-]/g, '')}`;
  }

  function progressText(progress) {
    // Only while rebuilding or catching up; absent otherwise.
    if (!progress || typeof progress !== 'object') return '';
    const rate = Number(progress.events_per_second);
    return `${isFinite(rate) ? Math.round(rate) : '?'} ev/s, ETA ${duration(progress.eta_seconds)}`;
  }

  const projectionRows = new Map();
  const sagaRows = new Map();

  async function act(name, action) {
    const result = $('action-result');
    result.textContent = `${name}: ${action} requested…`;
    const answer = await call('POST', `admin/projections/${encodeURIComponent(name)}/${action}`);
    if (answer.ok) {
      const state = answer.body && answer.body.state ? ` (now ${answer.body.state})` : '';
      result.textContent = `${name}: ${action} accepted, ${answer.status}${state}`;
    } else {
      result.textContent = `${name}: ${action} refused — ${describe(answer.problem)}`;
    }
    poll();
  }

  function renderProjections(list, now) {
    const tbody = $('projections').tBodies[0];
    const names = new Set();
    for (const p of list) {
      names.add(p.name);
      const cells = upsertRow(tbody, projectionRows, p.name,
        ['', '', '', 'num', 'num', '', '', 'actions'],
        (row, c) => {
          for (const action of ['rebuild', 'restart']) {
            const button = el('button', '', action === 'rebuild' ? 'Rebuild' : 'Restart');
            button.type = 'button';
            button.dataset.action = action;
            button.addEventListener('click', async () => {
              button.disabled = true;
              try { await act(row.dataset.name, action); } finally { button.disabled = false; }
            });
            c[7].appendChild(button);
          }
        });
      cells[0].textContent = p.name;
      setState(cells[1], p.state);
      cells[1].title = p.error ? `${p.error}${p.failed_position ? ` (at position ${p.failed_position})` : ''}` : '';
      cells[2].textContent = p.owner || '—';
      cells[3].textContent = p.rebuild_checkpoint !== undefined && p.rebuild_checkpoint !== null
        ? `${p.checkpoint} (rebuild at ${p.rebuild_checkpoint})` : String(p.checkpoint);
      cells[4].textContent = String(p.lag);
      cells[5].replaceChildren(chart(remember(`projection:${p.name}`, p.lag, now), now));
      cells[6].textContent = progressText(p.progress);
      if (p.progress && p.progress.remaining_events !== undefined) cells[6].title = `${p.progress.remaining_events} events to go`;
    }
    dropMissing(projectionRows, names);
  }

  function renderSagas(list, head, now) {
    const tbody = $('sagas').tBodies[0];
    const names = new Set();
    for (const s of list) {
      names.add(s.name);
      const cells = upsertRow(tbody, sagaRows, s.name, ['', '', '', 'num', 'num', '', '', '']);
      // The saga status has no lag of its own: measured against the head.
      const lag = head === null ? null : Math.max(0, head - s.checkpoint);
      cells[0].textContent = s.name;
      setState(cells[1], s.state);
      cells[1].title = s.error || '';
      cells[2].textContent = s.owner || '—';
      cells[3].textContent = String(s.checkpoint);
      cells[4].textContent = lag === null ? '?' : String(lag);
      if (lag !== null) cells[5].replaceChildren(chart(remember(`saga:${s.name}`, lag, now), now));
      cells[6].textContent = Object.entries(s.counts || {}).map(([k, v]) => `${k} ${v}`).join(', ') || 'none';
      const overdue = Array.isArray(s.overdue) ? s.overdue : [];
      cells[7].textContent = overdue.length ? `${overdue.length}: ${overdue.slice(0, 3).join(', ')}${overdue.length > 3 ? '…' : ''}` : '—';
    }
    dropMissing(sagaRows, names);
  }

  // ---- polling ---------------------------------------------------------------

  let pollTimer = null;
  let polling = false;

  async function poll() {
    clearTimeout(pollTimer);
    if (polling) return;
    polling = true;
    try {
      const [health, projections, sagas] = await Promise.all([
        call('GET', 'health'), call('GET', 'admin/projections'), call('GET', 'admin/sagas'),
      ]);
      const now = Date.now();
      let head = null;
      if (health.ok && health.body) {
        head = health.body.head_position;
        $('node').textContent = health.body.node || '—';
        $('head').textContent = String(head);
        $('status').textContent = health.body.status || 'ok';
        showProblem('health-problem', null);
      } else {
        $('status').textContent = 'unavailable';
        showProblem('health-problem', health.problem);
      }
      if (projections.ok && Array.isArray(projections.body)) {
        renderProjections(projections.body, now);
        showProblem('projections-problem', null);
      } else {
        showProblem('projections-problem', projections.problem || { title: 'Unexpected answer' });
      }
      if (sagas.ok && Array.isArray(sagas.body)) {
        renderSagas(sagas.body, head, now);
        showProblem('sagas-problem', null);
      } else {
        showProblem('sagas-problem', sagas.problem || { title: 'Unexpected answer' });
      }
    } finally {
      polling = false;
      pollTimer = setTimeout(poll, POLL_MS);
    }
  }

  // ---- event tail ------------------------------------------------------------

  const tail = {
    socket: null,
    filters: new URLSearchParams(),
    last: null,        // the last position received, to resume after a drop
    events: [],        // ascending by arrival (and position), at most TAIL_MAX
    held: [],          // received while paused
    paused: false,
    retry: 1000,
    retryTimer: null,
    selected: null,
  };

  function tailStatus(text) {
    const held = tail.held.length ? `, ${tail.held.length} held while paused` : '';
    $('tail-status').textContent = `${text} · ${tail.events.length} of ${TAIL_MAX} kept${held}`;
  }

  function socketUrl() {
    const url = new URL('events/ws', document.baseURI);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    // stream, category and type are all filtered by the server (the
    // route's own parameters), so nothing is filtered again here.
    for (const [name, value] of tail.filters) url.searchParams.append(name, value);
    if (tail.last !== null) url.searchParams.set('after', String(tail.last));
    // Browsers cannot set headers on a WebSocket: the streams read the
    // token from here.
    if (token()) url.searchParams.set('access_token', token());
    return url;
  }

  // A WebSocket refused before it opens says nothing about why: ask the
  // same URL over plain HTTP, which answers the same problem for a bad
  // filter or missing credentials. A handshake that passes those checks
  // answers "not a WebSocket request" over HTTP, which explains nothing.
  async function explainRefusal(url) {
    const plain = new URL(url);
    plain.protocol = plain.protocol === 'wss:' ? 'https:' : 'http:';
    plain.searchParams.delete('access_token');
    const answer = await call('GET', plain.href);
    if (!answer.ok && !/not-a-websocket-request$/.test(answer.problem.type || '')) {
      showProblem('tail-problem', answer.problem);
    } else {
      showProblem('tail-problem', { title: 'The event stream refused the connection', detail: 'the token may not stream these events, or the server is at its connection limit' });
    }
  }

  function connect() {
    clearTimeout(tail.retryTimer);
    if (tail.socket) { tail.socket.onclose = null; tail.socket.close(1000); tail.socket = null; }
    const url = socketUrl();
    let opened = false;
    let socket;
    try {
      socket = new WebSocket(url);
    } catch (error) {
      showProblem('tail-problem', { title: 'Cannot open the event stream', detail: String(error.message || error) });
      return;
    }
    tail.socket = socket;
    tailStatus('connecting');
    socket.onopen = () => {
      opened = true;
      tail.retry = 1000;
      showProblem('tail-problem', null);
      tailStatus(tail.paused ? 'paused' : 'live');
    };
    socket.onmessage = (message) => {
      let event;
      try { event = JSON.parse(message.data); } catch { return; }
      if (!event || typeof event.position !== 'number') return;
      tail.last = event.position;
      if (tail.paused) {
        tail.held.push(event);
        if (tail.held.length > TAIL_MAX) tail.held.shift();
        tailStatus('paused');
      } else {
        add(event);
        tailStatus('live');
      }
    };
    socket.onerror = () => {}; // onclose follows and says what to do.
    socket.onclose = (close) => {
      if (tail.socket !== socket) return;
      tail.socket = null;
      if (!opened) explainRefusal(url);
      const wait = tail.retry;
      tail.retry = Math.min(tail.retry * 2, 15000);
      const why = close.code === 1000 || close.code === 1005 ? 'closed' : `closed (${close.code}${close.reason ? ` ${close.reason}` : ''})`;
      tailStatus(`${why}, retrying in ${Math.round(wait / 1000)} s`);
      tail.retryTimer = setTimeout(connect, wait);
    };
  }

  function add(event) {
    tail.events.push(event);
    const tbody = $('events').tBodies[0];
    tbody.insertBefore(eventRow(event), tbody.firstChild);
    while (tail.events.length > TAIL_MAX) {
      tail.events.shift();
      tbody.lastElementChild.remove();
    }
  }

  function meta(event) {
    return event.metadata && typeof event.metadata === 'object' ? event.metadata : {};
  }

  function eventRow(event) {
    const row = el('tr');
    row.tabIndex = 0;
    row.dataset.position = String(event.position);
    const recorded = event.recorded_at ? new Date(event.recorded_at) : null;
    row.append(
      el('td', 'num', event.position),
      el('td', '', recorded && !isNaN(recorded) ? recorded.toLocaleTimeString() : ''),
      el('td', '', event.stream_id),
      el('td', 'num', event.version),
      el('td', '', event.type),
      el('td', '', (meta(event).correlation_id || '').slice(-12)),
    );
    row.addEventListener('click', () => showDetail(event));
    row.addEventListener('keydown', (key) => { if (key.key === 'Enter') showDetail(event); });
    return row;
  }

  function showDetail(event) {
    tail.selected = event.position;
    for (const row of $('events').tBodies[0].rows) {
      row.classList.toggle('selected', row.dataset.position === String(event.position));
    }
    const m = meta(event);
    $('detail').hidden = false;
    $('detail-title').textContent = `#${event.position} ${event.type}`;
    const facts = $('detail-facts');
    facts.replaceChildren();
    for (const [name, value] of [
      ['stream', event.stream_id], ['version', event.version], ['schema', event.schema_version],
      ['recorded', event.recorded_at], ['event id', m.event_id], ['correlation', m.correlation_id],
      ['causation', m.causation_id], ['command', m.command], ['principal', m.principal],
    ]) {
      if (value === undefined || value === null) continue;
      facts.append(el('dt', '', name), el('dd', '', value));
    }
    $('detail-data').textContent = JSON.stringify(event.data, null, 2);
    $('detail-metadata').textContent = JSON.stringify(event.metadata, null, 2);
    renderChain(event);
  }

  // The events in the buffer that share the event's correlation id, by
  // position, each with the event that caused it when that one is here too.
  function renderChain(event) {
    const list = $('detail-chain');
    list.replaceChildren();
    const correlation = meta(event).correlation_id;
    if (!correlation) { list.append(el('li', 'note', 'This event has no correlation id.')); return; }
    const chain = tail.events.concat(tail.held)
      .filter((e) => meta(e).correlation_id === correlation)
      .sort((a, b) => a.position - b.position);
    const byId = new Map(chain.filter((e) => meta(e).event_id).map((e) => [meta(e).event_id, e]));
    for (const e of chain) {
      const item = el('li', e.position === event.position ? 'current' : '');
      const open = el('button', '', `#${e.position}`);
      open.type = 'button';
      open.addEventListener('click', () => showDetail(e));
      item.append(open, document.createTextNode(` ${e.type} on ${e.stream_id}`));
      const cause = meta(e).causation_id;
      if (cause) {
        const parent = byId.get(cause);
        item.append(el('span', 'note', parent ? ` ← caused by #${parent.position}` : ` ← caused by ${cause}`));
      }
      list.append(item);
    }
  }

  function togglePause() {
    tail.paused = !tail.paused;
    const button = $('pause');
    button.setAttribute('aria-pressed', String(tail.paused));
    button.textContent = tail.paused ? 'Resume' : 'Pause';
    if (!tail.paused) {
      for (const event of tail.held.splice(0)) add(event);
    }
    tailStatus(tail.paused ? 'paused' : (tail.socket && tail.socket.readyState === WebSocket.OPEN ? 'live' : 'connecting'));
  }

  function applyFilters(form) {
    const filters = new URLSearchParams();
    for (const name of ['stream', 'category', 'type']) {
      const value = form.elements[name].value.split(',').map((v) => v.trim()).filter(Boolean).join(',');
      if (value) filters.set(name, value);
    }
    const after = form.elements.after.value.trim();
    if (after && !/^\d+$/.test(after)) {
      showProblem('tail-problem', { title: 'After position', detail: 'must be a whole number from 0, or empty for live events only' });
      return;
    }
    tail.filters = filters;
    tail.last = after ? Number(after) : null;
    tail.events = [];
    tail.held = [];
    $('events').tBodies[0].replaceChildren();
    $('detail').hidden = true;
    showProblem('tail-problem', null);
    connect();
  }

  // ---- start -------------------------------------------------------------

  function start() {
    $('token').value = token();
    $('token-form').addEventListener('submit', (submit) => {
      submit.preventDefault();
      keepToken($('token').value.trim());
      poll();
      connect();
    });
    $('token-clear').addEventListener('click', () => {
      keepToken('');
      $('token').value = '';
      poll();
      connect();
    });
    $('filters').addEventListener('submit', (submit) => { submit.preventDefault(); applyFilters(submit.target); });
    $('pause').addEventListener('click', togglePause);
    poll();
    connect();
  }

  start();
})();
