// The built-in dashboard of the webtrap collector.
//
// Every value shown comes from attacker-controlled records, so text reaches
// the page only through textContent and element attributes set from code;
// the page never parses strings as HTML. The Content-Security-Policy of the
// collector also forbids inline script.
'use strict';

const api = '/dashboard/api/';
const charts = {};
let refreshTimer = null;

function byId(id) {
  return document.getElementById(id);
}

// Reads the filters and the open event from the URL fragment, so a view
// can be bookmarked: #range=86400000&sensor=s1&oat=OAT-014&source=...&event=ID.
// `from` and `to` (ms since the epoch) set an explicit range, and `from`
// takes the place of `range`.
function hashParameters() {
  return new URLSearchParams(location.hash.slice(1));
}

function filterQuery() {
  const hash = hashParameters();
  const query = new URLSearchParams();
  const range = hash.get('range');
  if (range) {
    query.set('from', String(Date.now() - Number(range)));
  }
  for (const key of ['from', 'to']) {
    const value = hash.get(key);
    if (value && /^-?\d+$/.test(value)) {
      query.set(key, value);
    }
  }
  for (const key of ['sensor', 'oat', 'source']) {
    const value = hash.get(key);
    if (value) {
      query.set(key, value);
    }
  }
  return query;
}

class Unauthorized extends Error {}

// The collector responds to a query with 503 and Retry-After when its
// query workers are busy and their queue is full. A query then waits
// Retry-After seconds (at least 100 ms, at most busyMaxWaitMs) and is sent
// again, at most busyRetries times.
const busyRetries = 3;
const busyMaxWaitMs = 5000;
// Used when Retry-After is missing or an HTTP date instead of seconds.
const busyDefaultWaitMs = 1000;

function busyWaitMs(response) {
  const header = (response.headers.get('Retry-After') || '').trim();
  const seconds = /^\d+$/.test(header) ? Number(header) : NaN;
  const wait = Number.isFinite(seconds) ? seconds * 1000 : busyDefaultWaitMs;
  return Math.min(Math.max(wait, 100), busyMaxWaitMs);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// Fetches an API URL, retrying after 503 as described above. `name` labels
// the query in the status line and in errors. Throws Unauthorized for 401.
// Any other status proves a session, so the dashboard is shown, unless the
// login form went up meanwhile (a log out while the query ran).
async function fetchApi(name, url) {
  for (let attempt = 0; ; attempt++) {
    const response = await fetch(url, { credentials: 'same-origin', cache: 'no-store' });
    if (response.status === 401) {
      throw new Unauthorized();
    }
    if (document.body.dataset.state !== 'login') {
      setSignedIn(true);
    }
    if (response.status !== 503) {
      return response;
    }
    if (attempt >= busyRetries) {
      throw new Error(name + ': HTTP 503, the collector is busy with other queries; gave up ' +
                      'after ' + busyRetries + ' retries');
    }
    const wait = busyWaitMs(response);
    byId('status').textContent = 'The collector is busy; retrying ' + name + ' in ' +
      Math.ceil(wait / 1000) + ' s (retry ' + (attempt + 1) + ' of ' + busyRetries + ')';
    await sleep(wait);
  }
}

async function getJson(endpoint, extra) {
  const query = filterQuery();
  for (const [key, value] of Object.entries(extra || {})) {
    query.set(key, value);
  }
  const response = await fetchApi(endpoint, api + endpoint + '?' + query.toString());
  if (!response.ok) {
    throw new Error(endpoint + ': HTTP ' + response.status);
  }
  return response.json();
}

function cell(row, text, className) {
  const td = document.createElement('td');
  td.textContent = text === undefined || text === null ? '' : String(text);
  if (className) {
    td.className = className;
  }
  row.appendChild(td);
  return td;
}

function fillTable(id, rows, columns) {
  const body = byId(id).querySelector('tbody');
  body.replaceChildren();
  for (const item of rows) {
    const tr = document.createElement('tr');
    for (const column of columns) {
      cell(tr, column.value(item), column.className);
    }
    body.appendChild(tr);
  }
}

function formatTime(ms) {
  if (!ms) {
    return '';
  }
  return new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

function formatDuration(ms) {
  if (ms === null || ms === undefined) {
    return '';
  }
  const seconds = Math.round(ms / 1000);
  if (seconds < 120) {
    return seconds + ' s';
  }
  if (seconds < 7200) {
    return Math.round(seconds / 60) + ' min';
  }
  return Math.round(seconds / 3600) + ' h';
}

function barChart(id, items) {
  const labels = items.map((item) => item.value);
  const data = items.map((item) => item.count);
  if (charts[id]) {
    charts[id].data.labels = labels;
    charts[id].data.datasets[0].data = data;
    charts[id].update();
    return;
  }
  charts[id] = new Chart(byId(id), {
    type: 'bar',
    data: { labels, datasets: [{ label: 'events', data, backgroundColor: '#3b6fb6' }] },
    options: { animation: false, maintainAspectRatio: false, indexAxis: 'y',
               plugins: { legend: { display: false } } },
  });
}

function timelineChart(timeline) {
  const labels = timeline.points.map((point) => formatTime(point.t));
  const data = timeline.points.map((point) => point.count);
  if (charts.timeline) {
    charts.timeline.data.labels = labels;
    charts.timeline.data.datasets[0].data = data;
    charts.timeline.update();
    return;
  }
  charts.timeline = new Chart(byId('chart-timeline'), {
    type: 'bar',
    data: { labels, datasets: [{ label: 'events', data, backgroundColor: '#b6463b' }] },
    options: { animation: false, maintainAspectRatio: false,
               plugins: { legend: { display: false } } },
  });
}

// Appends to `note` a sentence on events left off the timeline and a link
// that sets `key` in the URL fragment to `value`, a range that takes them in.
function appendLeftOut(note, text, key, value) {
  const line = document.createElement('span');
  line.className = 'left-out';
  line.append(text + '; the counts, tables and live feed include them. ');
  const link = document.createElement('a');
  const hash = hashParameters();
  hash.set(key, String(value));
  link.href = '#' + hash.toString();
  link.textContent = 'Show them on the timeline';
  line.appendChild(link);
  note.appendChild(line);
}

// Shows how many events the timeline leaves out because they are dated
// outside a range without an end or a start, and links to ranges that
// take them in. The collector sets both ends, because record times come
// from the sensors. An open end is now plus a slack, and an open start is
// a slack before the collector received its oldest stored event.
function timelineNote(timeline, summary) {
  const note = byId('timeline-note');
  note.replaceChildren();
  if (timeline.earlier_events) {
    appendLeftOut(note, leftOutText(timeline.earlier_events, 'before', timeline.open_from_ms),
                  'from', summary.first_ms);
  }
  if (timeline.later_events) {
    appendLeftOut(note, leftOutText(timeline.later_events, 'after', timeline.to_ms),
                  'to', summary.last_ms + 1);
  }
}

function leftOutText(count, side, ms) {
  const events = count === 1 ? '1 event dated ' : count + ' events dated ';
  const verb = count === 1 ? ' is' : ' are';
  return events + side + ' ' + formatTime(ms) + verb + ' not on this timeline';
}

// Country polygons from Natural Earth, converted at build time by
// scripts/world_outline.py and served by the collector: a list of countries,
// each a list of rings [lon, lat, lon, lat, ...]. Null until loaded.
let worldOutline = null;

async function loadWorldOutline() {
  if (worldOutline) {
    return;
  }
  const response = await fetch('world-outline.json', { credentials: 'same-origin' });
  if (!response.ok) {
    throw new Error('world-outline.json: HTTP ' + response.status);
  }
  worldOutline = (await response.json()).countries;
}

// Draws the countries under the map's points, clipped to the plot area. It
// runs before the datasets draw, so the dots stay on top.
const worldOutlinePlugin = {
  id: 'worldOutline',
  beforeDatasetsDraw(chart) {
    if (!worldOutline) {
      return;
    }
    const { ctx, chartArea, scales } = chart;
    ctx.save();
    ctx.beginPath();
    ctx.rect(chartArea.left, chartArea.top, chartArea.right - chartArea.left,
             chartArea.bottom - chartArea.top);
    ctx.clip();
    ctx.fillStyle = 'rgba(120,135,155,0.25)';
    ctx.strokeStyle = '#7d8899';
    ctx.lineWidth = 0.75;
    for (const country of worldOutline) {
      ctx.beginPath();
      for (const ring of country) {
        ctx.moveTo(scales.x.getPixelForValue(ring[0]), scales.y.getPixelForValue(ring[1]));
        for (let i = 2; i < ring.length; i += 2) {
          ctx.lineTo(scales.x.getPixelForValue(ring[i]), scales.y.getPixelForValue(ring[i + 1]));
        }
        ctx.closePath();
      }
      // Holes are rings of the same country, so even-odd leaves them empty.
      ctx.fill('evenodd');
      ctx.stroke();
    }
    ctx.restore();
  },
};

// The map is a bubble chart on longitude and latitude axes with a grid every
// 30 degrees and the world outline underneath, drawn offline: no tiles are
// fetched.
function mapChart(geo, outlineError) {
  const data = geo.points.map((point) => ({ x: point.lon, y: point.lat, r: 3 + Math.min(12, Math.log2(point.count + 1) * 2), count: point.count }));
  let note = geo.points.length === 0
    ? 'No event in this view has a GeoIP location (the collector needs a GeoIP city database).'
    : geo.points.length + ' locations; dot size grows with the event count.';
  if (outlineError) {
    note += ' The world outline failed to load: ' + outlineError.message;
  }
  byId('map-note').textContent = note;
  if (charts.map) {
    charts.map.data.datasets[0].data = data;
    charts.map.update();
    return;
  }
  charts.map = new Chart(byId('chart-map'), {
    type: 'bubble',
    data: { datasets: [{ label: 'events', data, backgroundColor: 'rgba(182,70,59,0.6)' }] },
    plugins: [worldOutlinePlugin],
    options: {
      animation: false, maintainAspectRatio: false,
      plugins: { legend: { display: false },
                 tooltip: { callbacks: { label: (context) => context.raw.count + ' events at ' + context.raw.y + ', ' + context.raw.x } } },
      scales: {
        x: { min: -180, max: 180, ticks: { stepSize: 30 }, title: { display: true, text: 'longitude' } },
        y: { min: -90, max: 90, ticks: { stepSize: 30 }, title: { display: true, text: 'latitude' } },
      },
    },
  });
}

function setHash(changes) {
  const hash = hashParameters();
  for (const [key, value] of Object.entries(changes)) {
    if (value) {
      hash.set(key, value);
    } else {
      hash.delete(key);
    }
  }
  location.hash = hash.toString();
}

function fillFeed(feed) {
  const body = byId('table-feed').querySelector('tbody');
  body.replaceChildren();
  for (const event of feed.events) {
    const tr = document.createElement('tr');
    tr.dataset.eventId = event.event_id;
    cell(tr, formatTime(event.ts_ms));
    cell(tr, event.sensor);
    cell(tr, event.source);
    cell(tr, event.method);
    cell(tr, event.path);
    cell(tr, event.status || '');
    cell(tr, event.user_agent);
    cell(tr, event.oat.join(' '));
    cell(tr, event.event_id);
    tr.addEventListener('click', () => setHash({ event: event.event_id }));
    body.appendChild(tr);
  }
}

async function showDetail() {
  const id = hashParameters().get('event');
  const panel = byId('panel-detail');
  if (!id) {
    panel.hidden = true;
    return;
  }
  const response = await fetchApi('event', api + 'event?' + new URLSearchParams({ id }).toString());
  byId('detail-id').textContent = id;
  if (response.ok) {
    byId('detail-json').textContent = JSON.stringify(await response.json(), null, 2);
  } else {
    byId('detail-json').textContent = 'Not found: HTTP ' + response.status;
  }
  panel.hidden = false;
  panel.scrollIntoView();
}

// A sensor's newest event time, marked when it lies after the collector's
// clock (the last receipt from the sensor): that sensor's clock runs ahead,
// or the record was forged. Less than a second is ordinary clock skew.
function newestEventText(sensor) {
  const text = formatTime(sensor.newest_event_ms);
  if (!(sensor.newest_event_ahead_ms >= 1000)) {
    return text;
  }
  return text + ' (ahead of the collector\'s clock by ' +
    formatDuration(sensor.newest_event_ahead_ms) + ')';
}

async function loadLive() {
  const [health, feed] = await Promise.all([getJson('health'), getJson('feed', { limit: '50' })]);
  fillTable('table-sensors', health.sensors, [
    { value: (s) => s.sensor },
    { value: (s) => s.events, className: 'count' },
    { value: newestEventText },
    { value: (s) => formatTime(s.last_seen_ms) },
    { value: (s) => formatDuration(s.shipping_lag_ms), className: 'count' },
    { value: (s) => formatDuration(s.silent_ms), className: 'count' },
  ]);
  fillTable('table-outputs', health.outputs, [
    { value: (o) => o.output },
    { value: (o) => o.queue_depth, className: 'count' },
    { value: (o) => formatDuration(o.lag_ms), className: 'count' },
  ]);
  fillFeed(feed);
}

async function loadAll() {
  document.body.dataset.state = 'loading';
  // A missing outline leaves the map's points usable, so its error only
  // goes into the map's note.
  let outlineError = null;
  const outlineLoaded = loadWorldOutline().catch((error) => {
    outlineError = error;
  });
  const [summary, timeline, oat, crs, bait, sources, paths, agents, geo] = await Promise.all([
    getJson('summary'),
    getJson('timeline', { limit: '120' }),
    getJson('tags', { kind: 'oat' }),
    getJson('tags', { kind: 'crs' }),
    getJson('tags', { kind: 'bait' }),
    getJson('top', { field: 'source' }),
    getJson('top', { field: 'path' }),
    getJson('top', { field: 'user_agent' }),
    getJson('geo'),
  ]);
  byId('summary-events').textContent = String(summary.events);
  byId('summary-sources').textContent = String(summary.sources);
  timelineChart(timeline);
  timelineNote(timeline, summary);
  await outlineLoaded;
  mapChart(geo, outlineError);
  const counts = [{ value: (item) => item.value }, { value: (item) => item.count, className: 'count' }];
  barChart('chart-oat', oat.items);
  fillTable('table-oat', oat.items, counts);
  barChart('chart-crs', crs.items);
  fillTable('table-crs', crs.items, counts);
  fillTable('table-bait', bait.items, counts);
  fillTable('table-sources', sources.items, [
    { value: (s) => s.value },
    { value: (s) => s.country },
    { value: (s) => (s.asn ? 'AS' + s.asn + ' ' + s.as_org : '') },
    { value: (s) => s.count, className: 'count' },
  ]);
  fillTable('table-paths', paths.items, counts);
  fillTable('table-agents', agents.items, counts);
  await loadLive();
  await showDetail();
  // A log out while the queries ran leaves the login form up.
  if (document.body.dataset.state !== 'login') {
    document.body.dataset.state = 'ready';
  }
}

// The login form alone, with the filters and the log out button hidden:
// before a login, after a log out, and when the session ended (401).
function showLogin() {
  setSignedIn(false);
  document.body.dataset.state = 'login';
}

// Shows the panels, the filters and the log out button once a session
// exists, or else the login form alone.
function setSignedIn(signedIn) {
  byId('panels').hidden = !signedIn;
  byId('filters').hidden = !signedIn;
  byId('logout').hidden = !signedIn;
  byId('login').hidden = signedIn;
}

async function run(loader) {
  try {
    await loader();
    byId('status').textContent = 'Updated ' + formatTime(Date.now());
  } catch (error) {
    if (error instanceof Unauthorized) {
      showLogin();
      return;
    }
    if (document.body.dataset.state === 'login') {
      return;
    }
    const message = 'Loading failed: ' + error.message;
    if (byId('panels').hidden) {
      // No response proved a session (the collector is unreachable, for
      // example), so the login form stays the only view.
      showLogin();
      byId('login-error').textContent = message;
      return;
    }
    byId('status').textContent = message;
    document.body.dataset.state = 'error';
  }
}

function filtersFromHash() {
  const hash = hashParameters();
  byId('filter-range').value = hash.get('range') || '';
  byId('filter-sensor').value = hash.get('sensor') || '';
  byId('filter-oat').value = hash.get('oat') || '';
  byId('filter-source').value = hash.get('source') || '';
}

// Loads every panel. The dashboard shows once a query gets any status but
// 401 (see fetchApi), so a browser without a session gets the login form
// and nothing else.
function start() {
  document.body.dataset.state = 'loading';
  filtersFromHash();
  run(loadAll);
  clearInterval(refreshTimer);
  // Two queries every 2 s: the collector indexes a stored record for the
  // dashboard within about half a second, so the feed trails it by less
  // than 3 s.
  refreshTimer = setInterval(() => {
    if (document.body.dataset.state === 'ready') {
      run(loadLive);
    }
  }, 2000);
}

document.addEventListener('DOMContentLoaded', () => {
  byId('filters').addEventListener('submit', (event) => {
    event.preventDefault();
    setHash({
      range: byId('filter-range').value,
      sensor: byId('filter-sensor').value.trim(),
      oat: byId('filter-oat').value.trim(),
      source: byId('filter-source').value.trim(),
      event: '',
    });
  });
  byId('filter-clear').addEventListener('click', () => {
    location.hash = '';
  });
  byId('detail-close').addEventListener('click', () => setHash({ event: '' }));
  byId('login-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const body = new URLSearchParams({ token: byId('login-token').value });
    const response = await fetch('/dashboard/login', { method: 'POST', body, credentials: 'same-origin' });
    if (response.ok) {
      byId('login-token').value = '';
      byId('login-error').textContent = '';
      setSignedIn(true);
      start();
    } else if (response.status === 429) {
      byId('login-error').textContent = 'Too many wrong admin tokens from this address; try again in ' +
        (response.headers.get('Retry-After') || 'a few') + ' s.';
    } else {
      byId('login-error').textContent = 'Login failed: wrong token.';
    }
  });
  byId('logout').addEventListener('click', async () => {
    await fetch('/dashboard/logout', { method: 'POST', credentials: 'same-origin' });
    showLogin();
  });
  window.addEventListener('hashchange', () => {
    filtersFromHash();
    run(loadAll);
  });
  start();
});
