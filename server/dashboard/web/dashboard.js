// The seqkv admin dashboard: polls the admin API and keeps the page current.
// Every number shown also sits in a data-value attribute, so it can be
// checked against /v1/stats.
'use strict';

const POLL_MS = 5000;
const HIT_RATE_WINDOW_MS = 60000;
const TOP_PREFIXES = 15;
const TOKEN_KEY = 'seqkv-admin-token';
const PALETTE = ['#4fc3f7', '#ffb74d', '#81c784', '#f06292', '#ba68c8',
                 '#fff176', '#4db6ac', '#ff8a65', '#90a4ae', '#aed581'];

const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || '',
  samples: [],
  capacity: 720,
  lastSample: 0,
  charts: {},
  tenantColors: new Map(),
  prefixTenant: '',
};

class AuthError extends Error {}

async function api(path, asText = false) {
  const headers = state.token ? {Authorization: 'Bearer ' + state.token} : {};
  const response = await fetch(path, {headers, cache: 'no-store'});
  if (response.status === 401) throw new AuthError('admin token required');
  if (!response.ok) {
    throw new Error(path + ': HTTP ' + response.status + ' ' + (await response.text()));
  }
  return asText ? response.text() : response.json();
}

// --- formatting --------------------------------------------------------

function fmtCount(n) { return Number(n).toLocaleString('en-US'); }
function fmtPercent(x) { return (100 * x).toFixed(1) + '%'; }
function fmtRatio(x) { return x > 0 ? x.toFixed(2) + '×' : '–'; }
function fmtBytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = Number(n);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; ++unit; }
  return unit === 0 ? value + ' B' : value.toFixed(value < 10 ? 2 : 1) + ' ' + units[unit];
}
function fmtTime(ms) {
  return new Date(ms).toLocaleTimeString('en-GB', {hour12: false});
}
function fmtAgo(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return s + ' s ago';
  if (s < 3600) return Math.round(s / 60) + ' min ago';
  if (s < 86400) return Math.round(s / 3600) + ' h ago';
  return Math.round(s / 86400) + ' d ago';
}

// Sets text and the raw value of the element `id` (if the page has it).
function show(id, text, value) {
  const element = document.getElementById(id);
  if (!element) return;
  element.textContent = text;
  if (value !== undefined) element.dataset.value = String(value);
}

function cell(row, text, className, id, value) {
  const td = document.createElement('td');
  td.textContent = text;
  if (className) td.className = className;
  if (id) td.id = id;
  if (value !== undefined) td.dataset.value = String(value);
  row.appendChild(td);
  return td;
}

function colorFor(tenant) {
  if (tenant === '') return '#e0e0e0';
  if (!state.tenantColors.has(tenant)) {
    state.tenantColors.set(tenant, PALETTE[state.tenantColors.size % PALETTE.length]);
  }
  return state.tenantColors.get(tenant);
}

// --- stats -------------------------------------------------------------

function renderGlobal(g) {
  show('global-hit-rate', fmtPercent(g.hit_rate), g.hit_rate);
  show('global-hit-detail', fmtCount(g.hit_tokens) + ' of ' + fmtCount(g.lookup_tokens) + ' tokens');
  show('global-dedup-ratio', fmtRatio(g.dedup_ratio), g.dedup_ratio);
  show('global-compression-ratio', fmtRatio(g.compression_ratio), g.compression_ratio);
  show('global-bytes-stored', fmtBytes(g.bytes_stored), g.bytes_stored);
  show('global-bytes-detail', fmtBytes(g.bytes_logical) + ' logical' +
       (g.capacity_bytes > 0 ? ' · capacity ' + fmtBytes(g.capacity_bytes) : ''));
  show('global-chunks-stored', fmtCount(g.chunks_stored), g.chunks_stored);
  show('global-chunks-detail', fmtCount(g.chunks_deduped) + ' deduped on put');
  show('global-lookups', fmtCount(g.lookups), g.lookups);
  show('global-lookup-detail', fmtCount(g.lookup_tokens) + ' tokens');
  show('global-puts', fmtCount(g.puts), g.puts);
  show('global-put-detail', fmtCount(g.put_tokens) + ' tokens');
  show('global-evictions', fmtCount(g.evictions), g.evictions);
}

// Resident size stays near its peak while requests run (freed memory is
// kept for reuse) and drops once the server has been idle a while.
function renderMemory(m) {
  if (!m) return;
  show('memory-resident-bytes', fmtBytes(m.resident_bytes), m.resident_bytes);
  show('memory-detail', fmtBytes(m.chunk_buffers_idle_bytes) + ' in idle buffers');
}

function quotaCell(row, name, t) {
  const td = cell(row, '');
  const usage = document.createElement('span');
  usage.id = 'tenant-' + name + '-usage-bytes';
  usage.dataset.value = String(t.usage_bytes);
  const quota = document.createElement('span');
  quota.id = 'tenant-' + name + '-quota-bytes';
  quota.dataset.value = String(t.quota_bytes || 0);
  if (t.quota_bytes > 0) {
    const fraction = t.usage_bytes / t.quota_bytes;
    const bar = document.createElement('span');
    bar.className = 'bar' + (fraction >= 0.95 ? ' bad' : fraction >= 0.8 ? ' warn' : '');
    const fill = document.createElement('span');
    fill.style.width = Math.min(100, 100 * fraction).toFixed(1) + '%';
    bar.appendChild(fill);
    td.appendChild(bar);
    usage.textContent = fmtBytes(t.usage_bytes);
    quota.textContent = ' of ' + fmtBytes(t.quota_bytes) + ' (' + fmtPercent(fraction) + ')';
  } else {
    usage.textContent = fmtBytes(t.usage_bytes);
    quota.textContent = ' · no quota';
  }
  td.appendChild(usage);
  td.appendChild(quota);
}

function renderTenants(tenants) {
  const body = document.getElementById('tenant-rows');
  const names = Object.keys(tenants).sort();
  body.replaceChildren();
  if (names.length === 0) {
    const row = document.createElement('tr');
    cell(row, 'no tenant has stored or looked up anything yet', 'muted').colSpan = 12;
    body.appendChild(row);
    return;
  }
  for (const name of names) {
    const t = tenants[name];
    const id = (field) => 'tenant-' + name + '-' + field;
    const row = document.createElement('tr');
    const label = cell(row, name);
    label.style.borderLeft = '3px solid ' + colorFor(name);
    cell(row, fmtCount(t.lookups), 'num', id('lookups'), t.lookups);
    cell(row, fmtPercent(t.hit_rate), 'num', id('hit-rate'), t.hit_rate);
    cell(row, fmtCount(t.puts), 'num', id('puts'), t.puts);
    cell(row, fmtCount(t.chunks_stored), 'num', id('chunks-stored'), t.chunks_stored);
    cell(row, fmtCount(t.chunks_deduped), 'num', id('chunks-deduped'), t.chunks_deduped);
    cell(row, fmtBytes(t.bytes_logical), 'num', id('bytes-logical'), t.bytes_logical);
    cell(row, fmtBytes(t.bytes_stored), 'num', id('bytes-stored'), t.bytes_stored);
    cell(row, fmtRatio(t.dedup_ratio), 'num', id('dedup-ratio'), t.dedup_ratio);
    cell(row, fmtRatio(t.compression_ratio), 'num', id('compression-ratio'), t.compression_ratio);
    cell(row, fmtCount(t.evictions), 'num', id('evictions'), t.evictions);
    quotaCell(row, name, t);
    body.appendChild(row);
  }
  const select = document.getElementById('prefix-tenant');
  const known = new Set(Array.from(select.options, (o) => o.value));
  for (const name of names) {
    if (!known.has(name)) select.add(new Option(name, name));
  }
}

// --- cluster -----------------------------------------------------------

// The members as this node sees them (/v1/cluster); the card stays hidden
// on a node that is not in a cluster (404).
async function refreshCluster() {
  const headers = state.token ? {Authorization: 'Bearer ' + state.token} : {};
  const response = await fetch('/v1/cluster', {headers, cache: 'no-store'});
  const card = document.getElementById('cluster-card');
  if (response.status === 404) {
    card.hidden = true;
    return;
  }
  if (response.status === 401) throw new AuthError('admin token required');
  if (!response.ok) {
    // 503: not registered yet; shown, the rest of the page stays current.
    card.hidden = false;
    show('cluster-summary', '· ' + (await response.text()));
    return;
  }
  renderCluster(await response.json());
  card.hidden = false;
}

function renderCluster(c) {
  const stale = c.membership_stale ? ' · etcd unreachable: last membership seen' : '';
  show('cluster-summary',
       c.cluster + ' · ' + c.members.length + ' members · hot prefixes on ' +
       c.replicas_hot + (c.replicas_hot === 1 ? ' node' : ' nodes') + stale,
       c.members.length);
  const body = document.getElementById('cluster-rows');
  body.replaceChildren();
  for (const m of c.members) {
    const id = (field) => 'member-' + m.id + '-' + field;
    const row = document.createElement('tr');
    cell(row, m.id + (m.self ? ' (this node)' : ''));
    cell(row, m.address);
    cell(row, m.state, '', id('state'), m.state);
    cell(row, fmtBytes(m.bytes_stored), 'num', id('bytes-stored'), m.bytes_stored);
    cell(row, fmtPercent(m.bytes_share), 'num', id('bytes-share'), m.bytes_share);
    cell(row, fmtCount(m.chunks_stored), 'num', id('chunks-stored'), m.chunks_stored);
    cell(row, fmtCount(m.lookups), 'num', id('lookups'), m.lookups);
    cell(row, fmtPercent(m.hit_rate), 'num', id('hit-rate'), m.hit_rate);
    body.appendChild(row);
  }
}

// --- history charts ----------------------------------------------------

function makeChart(id, yTick, yMax) {
  return new Chart(document.getElementById(id), {
    type: 'line',
    data: {datasets: []},
    options: {
      animation: false,
      parsing: false,
      normalized: true,
      maintainAspectRatio: false,
      spanGaps: true,
      interaction: {mode: 'nearest', axis: 'x', intersect: false},
      elements: {
        line: {borderWidth: 2, tension: 0.2},
        point: {radius: (ctx) => (ctx.dataset.data.length < 40 ? 2 : 0)},
      },
      scales: {
        x: {type: 'linear', ticks: {maxTicksLimit: 5, callback: (v) => fmtTime(v)}},
        y: {beginAtZero: true, suggestedMax: yMax, ticks: {maxTicksLimit: 5, callback: yTick}},
      },
      plugins: {
        legend: {labels: {boxWidth: 10, boxHeight: 2}},
        tooltip: {callbacks: {
          title: (items) => (items.length ? fmtTime(items[0].parsed.x) : ''),
          label: (item) => item.dataset.label + ': ' + yTick(item.parsed.y),
        }},
      },
    },
  });
}

function setupCharts() {
  Chart.defaults.color = '#8a99a8';
  Chart.defaults.borderColor = '#2a3540';
  Chart.defaults.font.family = '"DejaVu Sans", Arial, sans-serif';
  Chart.defaults.font.size = 11;
  state.charts.hitRate = makeChart('chart-hit-rate', (v) => (100 * v).toFixed(0) + '%', 1);
  state.charts.dedup = makeChart('chart-dedup-ratio', (v) => Number(v).toFixed(2) + '×', 1);
  state.charts.compression = makeChart('chart-compression-ratio', (v) => Number(v).toFixed(2) + '×', 1);
  state.charts.usage = makeChart('chart-usage-bytes', (v) => fmtBytes(v), undefined);
}

// One dataset per tenant (and the total when there are several tenants).
function series(field, withGlobal) {
  const byTenant = new Map();
  for (const sample of state.samples) {
    for (const [name, point] of Object.entries(sample.tenants)) {
      if (!byTenant.has(name)) byTenant.set(name, []);
      byTenant.get(name).push({x: sample.t, y: point[field]});
    }
  }
  const names = Array.from(byTenant.keys()).sort();
  const datasets = names.map((name) => ({
    label: name, data: byTenant.get(name),
    borderColor: colorFor(name), backgroundColor: colorFor(name),
  }));
  if (withGlobal && names.length > 1) {
    datasets.push({
      label: 'all tenants', borderDash: [4, 3],
      data: state.samples.map((s) => ({x: s.t, y: s.global[field]})),
      borderColor: colorFor(''), backgroundColor: colorFor(''),
    });
  }
  return datasets;
}

// Hit rate over the minute before each sample, from the cumulative token
// counters: steadier than per interval, and current unlike the lifetime
// average. No point where the window saw no lookups.
function windowedHitRate(points) {
  const out = [];
  let start = 0;
  for (let i = 0; i < points.length; ++i) {
    // The baseline: the last sample at or before the window's start.
    while (start + 1 < i && points[start + 1].t <= points[i].t - HIT_RATE_WINDOW_MS) ++start;
    const from = points[Math.min(start, i)];
    const tokens = points[i].lookup_tokens - from.lookup_tokens;
    out.push({x: points[i].t,
              y: tokens > 0 ? (points[i].hit_tokens - from.hit_tokens) / tokens : null});
  }
  return out;
}

function hitRateSeries() {
  const byTenant = new Map();
  for (const sample of state.samples) {
    for (const [name, point] of Object.entries(sample.tenants)) {
      if (!byTenant.has(name)) byTenant.set(name, []);
      byTenant.get(name).push(Object.assign({t: sample.t}, point));
    }
  }
  const names = Array.from(byTenant.keys()).sort();
  const datasets = names.map((name) => ({
    label: name, data: windowedHitRate(byTenant.get(name)),
    borderColor: colorFor(name), backgroundColor: colorFor(name),
  }));
  if (names.length > 1) {
    datasets.push({
      label: 'all tenants', borderDash: [4, 3],
      data: windowedHitRate(state.samples.map((s) => Object.assign({t: s.t}, s.global))),
      borderColor: colorFor(''), backgroundColor: colorFor(''),
    });
  }
  return datasets;
}

// The top of the stored-bytes axis: a round number of KiB, MiB... (1, 2,
// 2.5 or 5 times a power of ten) a little above the largest value, so that
// small stores fill the chart however large their quota.
function bytesAxisMax(largest) {
  if (!(largest > 0)) return undefined;
  let unit = 1;
  while (largest * 1.05 / unit >= 1024) unit *= 1024;
  const value = largest * 1.05 / unit;
  const power = Math.pow(10, Math.floor(Math.log10(value)));
  const step = [1, 2, 2.5, 5, 10].find((m) => m * power >= value);
  return step * power * unit;
}

// Dashed quota lines; one above the axis stays in the legend with its size.
function quotaSeries(axisMax) {
  const out = [];
  for (const name of state.tenantColors.keys()) {
    const data = state.samples
      .filter((s) => s.tenants[name] && s.tenants[name].quota_bytes > 0)
      .map((s) => ({x: s.t, y: s.tenants[name].quota_bytes}));
    if (data.length) {
      const quota = data[data.length - 1].y;
      const above = axisMax !== undefined && quota > axisMax ? ', above the chart' : '';
      out.push({label: name + ' quota (' + fmtBytes(quota) + above + ')', data,
                borderDash: [6, 4], borderWidth: 1,
                borderColor: colorFor(name), backgroundColor: colorFor(name),
                pointRadius: 0});
    }
  }
  return out;
}

function renderCharts() {
  // The time axis spans the samples kept, no more.
  const first = state.samples.length ? state.samples[0].t : undefined;
  const last = state.samples.length ? state.samples[state.samples.length - 1].t : undefined;
  const update = (chart, datasets) => {
    chart.data.datasets = datasets;
    chart.options.scales.x.min = first;
    chart.options.scales.x.max = last;
    chart.update('none');
  };
  update(state.charts.hitRate, hitRateSeries());
  update(state.charts.dedup, series('dedup_ratio', true));
  update(state.charts.compression, series('compression_ratio', true));
  const usage = series('usage_bytes', true);
  const largest = Math.max(0, ...usage.flatMap((d) => d.data.map((p) => p.y || 0)));
  const axisMax = bytesAxisMax(largest);
  const y = state.charts.usage.options.scales.y;
  y.max = axisMax;
  y.ticks.stepSize = axisMax === undefined ? undefined : axisMax / 4;
  document.getElementById('chart-usage-bytes').dataset.yMax = String(axisMax || 0);
  update(state.charts.usage, usage.concat(quotaSeries(axisMax)));
}

async function refreshHistory() {
  const history = await api('/v1/history?since=' + state.lastSample);
  state.capacity = history.capacity;
  for (const sample of history.samples) {
    state.samples.push(sample);
    state.lastSample = Math.max(state.lastSample, sample.t);
  }
  if (state.samples.length > state.capacity) {
    state.samples.splice(0, state.samples.length - state.capacity);
  }
  document.body.dataset.samples = String(state.samples.length);
  if (window.Chart) renderCharts();
}

// --- top prefixes ------------------------------------------------------

async function refreshPrefixes() {
  const query = '/v1/trie?top=' + TOP_PREFIXES +
      (state.prefixTenant ? '&tenant=' + encodeURIComponent(state.prefixTenant) : '');
  const report = await api(query);
  const body = document.getElementById('prefix-rows');
  body.replaceChildren();
  if (report.prefixes.length === 0) {
    const row = document.createElement('tr');
    cell(row, 'no prefix has been looked up yet', 'muted').colSpan = 11;
    body.appendChild(row);
    renderTrie([]);
    return;
  }
  report.prefixes.forEach((p, i) => {
    const rank = i + 1;
    const row = document.createElement('tr');
    row.id = 'prefix-' + rank;
    row.dataset.node = p.node;
    cell(row, String(rank), 'num');
    cell(row, p.namespace, '', 'prefix-' + rank + '-tenant', p.namespace);
    cell(row, p.model);
    cell(row, fmtCount(p.depth), 'num', 'prefix-' + rank + '-depth', p.depth);
    cell(row, fmtCount(p.prefix_tokens), 'num', 'prefix-' + rank + '-prefix-tokens', p.prefix_tokens);
    const more = p.tokens > p.first_tokens.length ? ', …' : '';
    cell(row, '[' + p.first_tokens.join(', ') + more + '] ' + p.tokens +
         (p.tokens === 1 ? ' token' : ' tokens'), 'tokens');
    cell(row, fmtCount(p.visits), 'num', 'prefix-' + rank + '-visits', p.visits);
    cell(row, fmtAgo(p.last_used_unix_ms));
    cell(row, fmtBytes(p.bytes_stored), 'num', 'prefix-' + rank + '-bytes-stored', p.bytes_stored);
    cell(row, p.codec);
    cell(row, fmtProbability(p.probability), 'num', 'prefix-' + rank + '-probability', p.probability);
    body.appendChild(row);
  });
  renderTrie(report.prefixes);
}

function fmtProbability(p) { return p > 0 ? p.toFixed(3) : '–'; }

// The server's fidelity tier (exact, lossy_1, lossy_2, tokens_only);
// servers before tiers send none: exact unless the codec is lossy.
function tierOf(p) {
  if (p.tier) return p.tier;
  return p.codec === 'raw' || p.codec === 'lossless' ? 'exact' : 'lossy';
}

// The same nodes as a tree: a node whose parent is listed nests under it,
// the others are roots (their ancestors were visited less). Native
// <details> elements fold and unfold.
function renderTrie(prefixes) {
  const box = document.getElementById('trie-tree');
  box.replaceChildren();
  box.dataset.nodes = String(prefixes.length);
  const byNode = new Map(prefixes.map((p) => [p.node, p]));
  const children = new Map();
  const roots = [];
  for (const p of prefixes) {
    if (byNode.has(p.parent)) {
      if (!children.has(p.parent)) children.set(p.parent, []);
      children.get(p.parent).push(p);
    } else {
      roots.push(p);
    }
  }
  const render = (p) => {
    const node = document.createElement('details');
    node.open = true;
    node.id = 'trie-node-' + p.node;
    node.dataset.probability = String(p.probability);
    const summary = document.createElement('summary');
    const more = p.tokens > p.first_tokens.length ? ', …' : '';
    summary.textContent =
        'depth ' + p.depth + ' · [' + p.first_tokens.join(', ') + more + '] ' +
        p.tokens + ' tokens · P̂ ' + fmtProbability(p.probability) +
        (p.d_T === null ? '' : ' (d_T ' + p.d_T.toFixed(2) + ')') + ' · ' +
        fmtBytes(p.bytes_stored) + ' · ' + tierOf(p) + ' (' + p.codec +
        ') · ' + p.namespace;
    node.appendChild(summary);
    for (const child of children.get(p.node) || []) node.appendChild(render(child));
    return node;
  };
  if (roots.length === 0) {
    box.textContent = 'no prefix has been looked up yet';
    box.className = 'trie muted';
    return;
  }
  box.className = 'trie';
  for (const p of roots) box.appendChild(render(p));
}

// --- loop --------------------------------------------------------------

function showError(message) {
  const box = document.getElementById('error');
  box.hidden = !message;
  box.textContent = message || '';
}

async function refreshState() {
  const pill = document.getElementById('server-state');
  try {
    const response = await fetch('/readyz', {cache: 'no-store'});
    pill.textContent = response.ok ? 'ready' : 'starting';
    pill.className = 'pill' + (response.ok ? ' ready' : '');
  } catch (e) {
    pill.textContent = 'unreachable';
    pill.className = 'pill down';
  }
}

let tick = 0;
async function refresh() {
  refreshState();
  try {
    const stats = await api('/v1/stats');
    renderGlobal(stats.global);
    renderMemory(stats.memory);
    renderTenants(stats.tenants);
    await refreshHistory();
    await refreshCluster();
    // The prefix scan reads every node's stats: every third poll is plenty.
    if (tick % 3 === 0) await refreshPrefixes();
    ++tick;
    showError('');
    document.getElementById('token-form').hidden = true;
    show('updated', 'updated ' + fmtTime(Date.now()));
    document.body.dataset.loaded = 'true';
  } catch (e) {
    if (e instanceof AuthError) {
      document.getElementById('token-form').hidden = false;
      showError(state.token ? 'the admin token was refused' : '');
    } else {
      showError(String(e.message || e));
    }
  }
}

function start() {
  document.getElementById('poll-seconds').textContent = String(POLL_MS / 1000);
  if (window.Chart) {
    setupCharts();
  } else {
    showError('/static/chart.min.js did not load: charts are off');
  }
  document.getElementById('token-form').addEventListener('submit', (event) => {
    event.preventDefault();
    state.token = document.getElementById('token-input').value.trim();
    sessionStorage.setItem(TOKEN_KEY, state.token);
    refresh();
  });
  document.getElementById('prefix-tenant').addEventListener('change', (event) => {
    state.prefixTenant = event.target.value;
    refreshPrefixes().catch((e) => showError(String(e.message || e)));
  });
  refresh();
  setInterval(refresh, POLL_MS);
}

start();
