// The live dashboard's client: reads /dashboard/stream (Server-Sent Events) with fetch, so that the
// reader key goes in the x-api-key header rather than the URL, and reconnects by itself.
/* global uPlot */

const READER_KEY = 'telemetry-bus.readerKey';
const ADMIN_KEY = 'telemetry-bus.adminKey';
/** Seconds of traffic the charts show. */
const HISTORY_SECONDS = 300;
/** A stream that sent nothing for this long is taken for dead and reopened, in ms. */
const SILENCE_MS = 5000;
const COLORS = ['#2563eb', '#16a34a', '#dc2626', '#9333ea', '#ea580c', '#0891b2', '#ca8a04', '#db2777'];

const $ = (id) => document.getElementById(id);
const state = {
  eventTypes: [],
  points: new Map(),
  charts: {},
  retryMs: 2000,
  lastSnapshotAt: 0,
  deadLetterCount: null,
};
// Tests and curious operators can look at what the charts hold.
window.dashboard = state;

// ---------- charts ----------

function chartSize(element) {
  const width = Math.max(200, element.clientWidth);
  return { width, height: Math.round(Math.min(260, Math.max(160, width * 0.45))) };
}

function makeChart(id, series, yLabel) {
  const element = $(id);
  const options = {
    ...chartSize(element),
    series: [
      {},
      ...series.map((s, i) => ({ stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: false, ...s })),
    ],
    axes: [{}, { label: yLabel, size: 50 }],
    scales: { x: { time: true } },
    legend: { live: true },
  };
  const chart = new uPlot(options, [[], ...series.map(() => [])], element);
  new ResizeObserver(() => chart.setSize(chartSize(element))).observe(element);
  return chart;
}

function createCharts() {
  for (const chart of Object.values(state.charts)) chart.destroy();
  state.charts = {
    events: makeChart(
      'chart-events',
      state.eventTypes.map((type) => ({ label: type })),
      'events/s',
    ),
    latency: makeChart('chart-latency', [{ label: 'p50' }, { label: 'p95' }, { label: 'p99' }], 'ms'),
    errors: makeChart('chart-errors', [{ label: '4xx %' }, { label: '5xx %' }], '%'),
  };
}

function mergePoints(points) {
  for (const point of points) state.points.set(point.t, point);
  const newest = Math.max(...state.points.keys());
  for (const t of state.points.keys()) if (t <= newest - HISTORY_SECONDS) state.points.delete(t);
}

function redrawCharts() {
  const points = [...state.points.values()].sort((a, b) => a.t - b.t);
  const t = points.map((p) => p.t);
  state.charts.events?.setData([
    t,
    ...state.eventTypes.map((type) => points.map((p) => p.events[type] ?? 0)),
  ]);
  state.charts.latency?.setData([
    t,
    points.map((p) => p.p50),
    points.map((p) => p.p95),
    points.map((p) => p.p99),
  ]);
  const rate = (count, p) => (p.requests === 0 ? null : (100 * count) / p.requests);
  state.charts.errors?.setData([
    t,
    points.map((p) => rate(p.errors4xx, p)),
    points.map((p) => rate(p.errors5xx, p)),
  ]);
}

// ---------- panels ----------

function text(value) {
  return value === null || value === undefined ? '–' : String(value);
}

/** The percentiles of a latency window (GET /health's form), or null when it holds nothing. */
function percentiles(window) {
  if (!window || window.count === 0) return null;
  const ms = (value) => (value < 10 ? value.toFixed(1) : value.toFixed(0));
  return `p50 ${ms(window.p50_ms)} · p95 ${ms(window.p95_ms)} · p99 ${ms(window.p99_ms)} ms`;
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 ** 2).toFixed(1)} MiB`;
}

function facts(dl, entries) {
  dl.replaceChildren(
    ...entries.flatMap(([term, value, className]) => {
      const dt = document.createElement('dt');
      dt.textContent = term;
      const dd = document.createElement('dd');
      dd.textContent = text(value);
      dd.dataset.fact = term;
      if (className) dd.className = className;
      return [dt, dd];
    }),
  );
}

function row(cells) {
  const tr = document.createElement('tr');
  for (const cell of cells) {
    const td = document.createElement('td');
    if (cell instanceof Node) td.append(cell);
    else td.textContent = text(cell);
    tr.append(td);
  }
  return tr;
}

function staleNote(element, reading) {
  if (reading.stale) {
    element.textContent = reading.updated_at
      ? `stale since ${new Date(reading.updated_at).toLocaleTimeString()}`
      : 'unavailable';
    element.className = 'stale';
    element.title = reading.error ?? '';
  } else {
    element.textContent = '';
    element.title = '';
  }
}

function setPill(id, label, value) {
  const pill = $(id);
  pill.dataset.state = value;
  pill.textContent = `${label}: ${value}`;
}

function renderBanner(checks) {
  const problems = [];
  if (checks.broker === 'down')
    problems.push('broker down: events wait in the spool and are sent when it is back');
  if (checks.broker === 'blocked') problems.push('broker blocked (resource alarm): events wait in the spool');
  if (checks.postgres === 'down')
    problems.push('database down: registry requests fail, stored figures are stale');
  const banner = $('banner');
  banner.hidden = problems.length === 0;
  banner.replaceChildren(
    ...problems.map((p) => Object.assign(document.createElement('div'), { textContent: p })),
  );
}

/** The threads' event-loop health: the request thread's delay and each thread's busy share. */
function eventLoopFacts(loop) {
  if (!loop) return [];
  const busy = (share) => `${(100 * share).toFixed(1)} % busy`;
  const request = loop.request_thread;
  return [
    [
      'request thread',
      `delay p50 ${request.delay_ms.p50} ms, p99 ${request.delay_ms.p99} ms; ${busy(request.utilization)}`,
      request.delay_ms.p99 > 50 ? 'bad' : '',
    ],
    ['publisher thread', loop.publisher_thread ? busy(loop.publisher_thread.utilization) : null],
  ];
}

function renderSnapshot(snapshot) {
  setPill('broker-state', 'broker', snapshot.checks.broker);
  setPill('database-state', 'database', snapshot.checks.postgres);
  renderBanner(snapshot.checks);
  mergePoints(snapshot.traffic);
  redrawCharts();

  const publisher = snapshot.publisher;
  const events = snapshot.events;
  facts($('publisher'), [
    ['state', publisher?.state ?? 'telemetry off', publisher && publisher.state !== 'connected' ? 'bad' : ''],
    ['since', publisher ? new Date(publisher.since).toLocaleTimeString() : null],
    ['last error', publisher?.last_error],
    [
      'spool',
      snapshot.spool ? `${bytes(snapshot.spool.bytes)} in ${snapshot.spool.segments} segment(s)` : null,
    ],
    ['unpublished', events?.unpublished],
    ['emitted', events?.emitted],
    [
      'dropped',
      events ? Object.values(events.dropped).reduce((a, b) => a + b, 0) : null,
      events && Object.values(events.dropped).some((n) => n > 0) ? 'bad' : '',
    ],
    ['confirmed', publisher?.confirmed],
    ['publish latency (1 min)', percentiles(publisher?.latency)],
    ...eventLoopFacts(snapshot.event_loop),
  ]);

  const queues = snapshot.queues;
  if (queues) {
    staleNote($('queues-note'), queues);
    if (queues.value) {
      $('queues').tBodies[0].replaceChildren(
        ...queues.value.queues.map((q) =>
          row([q.name, q.messages_ready, q.messages_unacknowledged, q.consumers]),
        ),
      );
    }
  } else {
    $('queues-note').textContent = 'telemetry off';
  }

  const dead = snapshot.dead_letters;
  staleNote($('dead-letters-note'), dead);
  $('dead-letters-count').textContent = text(dead.value);
  if (dead.value !== null && state.deadLetterCount !== null && dead.value !== state.deadLetterCount) {
    // The list is open: keep it in step with the count.
    if (!$('dead-letters').hidden) void loadDeadLetters();
  }
  state.deadLetterCount = dead.value;

  const ledger = snapshot.ledger;
  staleNote($('ledger-note'), ledger);
  if (ledger.value) {
    const l = ledger.value;
    facts($('ledger'), [
      ['emitted', l.emitted],
      ['spooled', l.spooled],
      ['dropped', l.dropped, l.dropped > 0 ? 'bad' : ''],
      ['confirmed', l.confirmed],
      ['unconfirmed', l.unconfirmed],
    ]);
    $('ledger-consumers').tBodies[0].replaceChildren(
      ...l.consumers.map((c) => row([`${c.consumer} (${c.queue})`, c.expected, c.applied, c.missing])),
    );
  }

  $('recent-errors').tBodies[0].replaceChildren(
    ...snapshot.recent_errors.map((e) => {
      const link = document.createElement('a');
      link.href = `/audit?correlation_id=${encodeURIComponent(e.correlation_id)}`;
      link.textContent = e.correlation_id;
      link.className = 'audit-link';
      link.dataset.correlationId = e.correlation_id;
      const tr = row([
        new Date(e.at).toLocaleTimeString(),
        e.status,
        e.code,
        `${e.method} ${e.route ?? '(no route)'}`,
        link,
      ]);
      tr.title = e.message;
      return tr;
    }),
  );
}

// ---------- the stream ----------

function showKeyForm(message) {
  $('key-form').hidden = false;
  $('key-error').textContent = message ?? '';
  $('reader-key').focus();
}

/** Parses a text/event-stream body, calling `onEvent(name, data)` per event (the SSE rules we use). */
async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let name = 'message';
  let data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let newline = buffer.search(/\r\n|\r|\n/);
    while (newline >= 0) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(
        buffer[newline] === '\r' && buffer[newline + 1] === '\n' ? newline + 2 : newline + 1,
      );
      if (line === '') {
        if (data.length > 0) onEvent(name, data.join('\n'));
        name = 'message';
        data = [];
      } else if (!line.startsWith(':')) {
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const fieldValue = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'event') name = fieldValue;
        else if (field === 'data') data.push(fieldValue);
        else if (field === 'retry' && /^\d+$/.test(fieldValue)) state.retryMs = Number(fieldValue);
      }
      newline = buffer.search(/\r\n|\r|\n/);
    }
  }
}

function onStreamEvent(name, data) {
  state.lastSnapshotAt = Date.now();
  const message = JSON.parse(data);
  if (name === 'history') {
    const types = message.event_types.join(',');
    if (types !== state.eventTypes.join(',') || Object.keys(state.charts).length === 0) {
      state.eventTypes = message.event_types;
      createCharts();
    }
    mergePoints(message.traffic);
    redrawCharts();
  } else if (name === 'snapshot') {
    setPill('stream-state', 'stream', 'live');
    renderSnapshot(message);
  }
}

let controller;
let reconnectTimer;

async function connect() {
  clearTimeout(reconnectTimer);
  controller?.abort();
  const key = localStorage.getItem(READER_KEY);
  if (!key) {
    setPill('stream-state', 'stream', 'unauthorized');
    showKeyForm();
    return;
  }
  const mine = new AbortController();
  controller = mine;
  setPill('stream-state', 'stream', 'connecting');
  try {
    const response = await fetch('/dashboard/stream', {
      headers: { 'x-api-key': key, accept: 'text/event-stream' },
      signal: mine.signal,
      cache: 'no-store',
    });
    if (response.status === 401 || response.status === 403) {
      const body = await response.json().catch(() => ({}));
      setPill('stream-state', 'stream', 'unauthorized');
      showKeyForm(body.error?.message ?? `HTTP ${response.status}`);
      return;
    }
    if (!response.ok || response.body === null) throw new Error(`HTTP ${response.status}`);
    $('key-form').hidden = true;
    state.lastSnapshotAt = Date.now();
    await readEvents(response.body, onStreamEvent);
  } catch {
    // The API is unreachable or the stream broke: retry below.
  }
  if (controller !== mine) return;
  setPill('stream-state', 'stream', 'reconnecting');
  reconnectTimer = setTimeout(connect, state.retryMs);
}

// A stream that went silent (a proxy that keeps the connection, an API that hangs) is reopened.
setInterval(() => {
  if ($('stream-state').dataset.state === 'live' && Date.now() - state.lastSnapshotAt > SILENCE_MS) {
    setPill('stream-state', 'stream', 'reconnecting');
    void connect();
  }
}, 1000);

$('key-form').addEventListener('submit', (event) => {
  event.preventDefault();
  localStorage.setItem(READER_KEY, $('reader-key').value.trim());
  $('reader-key').value = '';
  void connect();
});
$('change-key').addEventListener('click', () => showKeyForm());

// ---------- admin: dead letters and the audit trail ----------

function askAdminKey() {
  const saved = sessionStorage.getItem(ADMIN_KEY);
  if (saved) return Promise.resolve(saved);
  const dialog = $('admin-dialog');
  $('admin-key').value = '';
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener(
      'close',
      () => {
        const key = $('admin-key').value.trim();
        if (dialog.returnValue === 'ok' && key) {
          sessionStorage.setItem(ADMIN_KEY, key);
          resolve(key);
        } else {
          resolve(null);
        }
      },
      { once: true },
    );
  });
}
$('admin-cancel').addEventListener('click', () => $('admin-dialog').close(''));

/** An admin request; a refused key is forgotten, so the next click asks again. */
async function adminFetch(path, init = {}) {
  const key = await askAdminKey();
  if (!key) return null;
  const response = await fetch(path, {
    ...init,
    headers: { ...(init.headers ?? {}), 'x-api-key': key },
  });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401 || response.status === 403) sessionStorage.removeItem(ADMIN_KEY);
  if (!response.ok) throw new Error(body.error?.message ?? `HTTP ${response.status}`);
  return body;
}

function dlqStatus(message, bad = false) {
  $('dlq-status').textContent = message;
  $('dlq-status').className = bad ? 'hint bad' : 'hint';
}

async function loadDeadLetters() {
  try {
    const page = await adminFetch('/dlq?limit=20');
    if (page === null) return;
    $('dead-letters').hidden = false;
    $('replay-all').hidden = page.items.length === 0;
    $('dead-letters').tBodies[0].replaceChildren(
      ...page.items.map((d) => {
        const button = document.createElement('button');
        button.type = 'button';
        button.textContent = 'Replay';
        button.className = 'replay-one';
        button.addEventListener('click', () => replay({ ids: [d.id] }));
        const tr = row([
          new Date(d.last_failure_at).toLocaleTimeString(),
          d.original_queue,
          d.event_type,
          `${d.error_type}: ${d.error_message}`,
          button,
        ]);
        tr.children[3].className = 'message';
        tr.dataset.id = d.id;
        return tr;
      }),
    );
    // An empty list says so in the table: the status line keeps the result of the last replay.
    if (page.items.length === 0) $('dead-letters').tBodies[0].replaceChildren(row(['none', '', '', '', '']));
  } catch (error) {
    dlqStatus(`Could not list dead letters: ${error.message}`, true);
  }
}

async function replay(body) {
  try {
    dlqStatus('Replaying…');
    const result = await adminFetch('/dlq/replay', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    if (result === null) return dlqStatus('');
    const skipped = result.skipped.length > 0 ? `, ${result.skipped.length} skipped` : '';
    dlqStatus(
      `Replayed ${result.replayed} of ${result.matched}${skipped} (operation ${result.operation_id}).`,
    );
    await loadDeadLetters();
  } catch (error) {
    dlqStatus(`Replay failed: ${error.message}`, true);
  }
}

$('dlq-show').addEventListener('click', () => void loadDeadLetters());
$('replay-all').addEventListener('click', () => void replay({ filter: {} }));

$('recent-errors').addEventListener('click', async (event) => {
  const link = event.target.closest('a.audit-link');
  if (!link) return;
  event.preventDefault();
  const pre = $('audit');
  try {
    const page = await adminFetch(`/audit?correlation_id=${encodeURIComponent(link.dataset.correlationId)}`);
    if (page === null) return;
    pre.hidden = false;
    pre.textContent = JSON.stringify(page.items ?? page, null, 2);
  } catch (error) {
    pre.hidden = false;
    pre.textContent = `Could not read the audit trail: ${error.message}`;
  }
});

void connect();
