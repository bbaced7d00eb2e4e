// The signalgate admin dashboard: polls GET /admin/v1/stats every second,
// keeps the last five minutes in memory and draws them as SVG charts (no
// library, no build step; a chart spans what it has seen, half a minute at
// least); polls the calls' outcomes (GET /admin/v1/calls) every few
// seconds; lists sessions (GET /admin/v1/sessions), shows a
// uid's presence and kicks (POST /admin/v1/kick).
"use strict";

const HISTORY = 300; // samples (seconds) kept per series
const CALLS_EVERY = 5; // samples between two calls summaries
const COLORS = ["#2f6fed", "#1f8a4c", "#d9822b", "#8e44ad", "#c7372f", "#16a2b8", "#6b7385"];
const TOKEN_KEY = "signalgate.admin.token";

const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  samples: [], // {t, totals, calls}
  calls: null, // the latest GET /admin/v1/calls answer
  timer: null,
  lastStats: null,
  search: "",
};
// For tests and the curious: the dashboard's live state.
window.signalgateAdmin = state;

const $ = (id) => document.getElementById(id);

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: Object.assign(
      { Authorization: "Bearer " + state.token },
      body === undefined ? {} : { "Content-Type": "application/json" },
    ),
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  const text = await response.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { json = null; }
  if (!response.ok) {
    const error = new Error((json && json.message) || response.statusText);
    error.status = response.status;
    error.code = json && json.code;
    throw error;
  }
  return json;
}

function signIn(token) {
  state.token = token;
  sessionStorage.setItem(TOKEN_KEY, token);
  return api("GET", "/admin/v1/stats").then((stats) => {
    $("login").hidden = true;
    $("dashboard").hidden = false;
    record(stats);
    if (!state.timer) state.timer = setInterval(poll, 1000);
    refreshSessions();
    refreshCalls();
  });
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  clearInterval(state.timer);
  state.timer = null;
  $("dashboard").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("status").textContent = "not signed in";
}

async function poll() {
  try {
    record(await api("GET", "/admin/v1/stats"));
    if (state.samples.length % 2 === 0) refreshSessions();
    if (state.samples.length % CALLS_EVERY === 0) refreshCalls();
  } catch (error) {
    if (error.status === 401) signOut("The token was refused.");
    else $("status").textContent = "gateway unreachable: " + error.message;
  }
}

function record(stats) {
  state.lastStats = stats;
  state.samples.push({ t: Date.now(), totals: stats.totals, calls: state.calls });
  if (state.samples.length > HISTORY) state.samples.shift();
  const t = stats.totals;
  $("status").textContent = `${t.nodes_up} node${t.nodes_up === 1 ? "" : "s"} up` +
    (t.nodes_unreachable ? `, ${t.nodes_unreachable} unreachable` : "") +
    ` · updated ${new Date().toLocaleTimeString()}`;
  drawKpis(t);
  drawNodes(stats.nodes);
  drawCharts();
}

function fmt(n) {
  if (n >= 100 || Number.isInteger(n)) return String(Math.round(n));
  return n.toFixed(1);
}

function drawKpis(t) {
  const errors = Object.values(t.errors_per_s).reduce((a, b) => a + b, 0);
  const kpis = [
    ["WebSocket", t.sessions.ws], ["gRPC", t.sessions.grpc], ["Socket.IO", t.sessions.socketio],
    ["away", t.away], ["pairs", t.pairs], ["relays/s", t.relays_per_s], ["errors/s", errors],
  ];
  $("kpis").replaceChildren(...kpis.map(([label, value]) => {
    const div = document.createElement("div");
    div.className = "kpi";
    div.innerHTML = `<b>${fmt(value)}</b><span>${label}</span>`;
    return div;
  }));
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function uptime(seconds) {
  if (seconds < 120) return seconds + " s";
  if (seconds < 7200) return Math.round(seconds / 60) + " min";
  return (seconds / 3600).toFixed(1) + " h";
}

function drawNodes(nodes) {
  const body = $("nodes").tBodies[0];
  body.replaceChildren();
  for (const node of nodes) {
    const row = body.insertRow();
    cell(row, node.node);
    cell(row, node.health, node.health);
    cell(row, node.sessions.ws); cell(row, node.sessions.grpc); cell(row, node.sessions.socketio);
    cell(row, node.away); cell(row, node.pairs); cell(row, fmt(node.relays_per_s));
    cell(row, uptime(node.uptime_s));
  }
}

// The span a chart covers, in samples: what has been seen, at least half a
// minute and at most HISTORY.
function span() {
  return Math.min(HISTORY, Math.max(30, state.samples.length));
}

function ago(seconds) {
  return seconds < 120 ? `-${seconds} s` : `-${Math.round(seconds / 60)} min`;
}

// One chart: series = [{name, values: [number]}], the newest at the right
// (a series may be shorter than the samples: it starts when its data did).
function chart(svgId, legendId, series) {
  const svg = $(svgId);
  const width = svg.clientWidth || 420, height = svg.clientHeight || 160;
  const left = 34, right = 6, top = 6, bottom = 16;
  const slots = span();
  const max = Math.max(1, ...series.flatMap((s) => s.values));
  const x = (i, n) => left + ((slots - n + i) / (slots - 1)) * (width - left - right);
  const y = (v) => top + (1 - v / max) * (height - top - bottom);
  let out = "";
  for (const f of [0, 0.5, 1]) {
    const gy = y(max * f);
    out += `<line class="grid" x1="${left}" x2="${width - right}" y1="${gy}" y2="${gy}"/>`;
    out += `<text x="${left - 4}" y="${gy + 3}" text-anchor="end">${fmt(max * f)}</text>`;
  }
  out += `<text x="${left}" y="${height - 3}">${ago(slots)}</text>`;
  out += `<text x="${width - right}" y="${height - 3}" text-anchor="end">now</text>`;
  series.forEach((s, k) => {
    if (!s.values.length) return;
    const points = s.values.map((v, i) => `${x(i, s.values.length).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    out += `<polyline fill="none" stroke="${COLORS[k % COLORS.length]}" stroke-width="1.6" points="${points}"/>`;
  });
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.innerHTML = out;
  $(legendId).innerHTML = series.map((s) =>
    `<span><i></i>${s.name} ${fmt(s.values[s.values.length - 1] || 0)}</span>`,
  ).join("");
  // Colours through the DOM, not style attributes: the page's
  // Content-Security-Policy allows no inline style.
  $(legendId).querySelectorAll("i").forEach((swatch, k) => {
    swatch.style.background = COLORS[k % COLORS.length];
  });
}

function drawCharts() {
  const totals = state.samples.map((s) => s.totals);
  const pick = (f) => totals.map(f);
  chart("chart-sessions", "legend-sessions", [
    { name: "ws", values: pick((t) => t.sessions.ws) },
    { name: "grpc", values: pick((t) => t.sessions.grpc) },
    { name: "socketio", values: pick((t) => t.sessions.socketio) },
    { name: "away", values: pick((t) => t.away) },
  ]);
  chart("chart-pairs", "legend-pairs", [{ name: "pairs", values: pick((t) => t.pairs) }]);
  chart("chart-relays", "legend-relays", [{ name: "relays/s", values: pick((t) => t.relays_per_s) }]);
  const codes = [...new Set(totals.flatMap((t) => Object.keys(t.errors_per_s)))].sort();
  chart("chart-errors", "legend-errors", codes.length
    ? codes.map((code) => ({ name: code, values: pick((t) => t.errors_per_s[code] || 0) }))
    : [{ name: "none", values: pick(() => 0) }]);
  drawCallCharts();
}

async function refreshCalls() {
  try {
    state.calls = await api("GET", "/admin/v1/calls?window=1h");
    drawCalls(state.calls);
  } catch (error) {
    $("call-status").textContent = "calls unavailable: " + error.message;
  }
}

const percent = (part, whole) => (whole ? (100 * part) / whole : 0);

function drawCalls(calls) {
  const ms = (value) => (value === null || value === undefined ? "—" : `${value} ms`);
  const kpis = [
    ["calls", calls.total],
    ["connected", calls.total ? `${fmt(percent(calls.connected, calls.total))}%` : "—"],
    ["failed", calls.failed],
    ["via TURN relay", calls.total ? `${fmt(100 * calls.relayShare)}%` : "—"],
    ["connect p50", ms(calls.setupMs.p50)], ["connect p95", ms(calls.setupMs.p95)],
  ];
  $("call-kpis").replaceChildren(...kpis.map(([label, value]) => {
    const div = document.createElement("div");
    div.className = "kpi";
    const b = document.createElement("b");
    b.textContent = typeof value === "number" ? fmt(value) : value;
    const span = document.createElement("span");
    span.textContent = label;
    div.append(b, span);
    return div;
  }));
  const body = $("call-failures").tBodies[0];
  body.replaceChildren();
  for (const failure of calls.recentFailures) {
    const row = body.insertRow();
    cell(row, new Date(failure.at).toLocaleTimeString());
    cell(row, failure.uid); cell(row, failure.call); cell(row, failure.reason || "—");
  }
  const pairs = Object.entries(calls.byDoorPair).map(([pair, c]) => `${pair} ${c.connected}/${c.total}`);
  $("call-status").textContent = (calls.recentFailures.length ? "" : "no failed calls in the window. ") +
    (pairs.length ? `connected by door pair (web/app): ${pairs.join(", ")}` : "no calls reported yet");
  drawCallCharts();
}

function drawCallCharts() {
  // From the first summary on: no line is drawn for the time before it.
  const calls = state.samples.map((s) => s.calls).filter(Boolean);
  const pick = (f) => calls.map(f);
  chart("chart-calls", "legend-calls", [
    { name: "connected %", values: pick((c) => percent(c.connected, c.total)) },
    { name: "relay %", values: pick((c) => 100 * c.relayShare) },
  ]);
  chart("chart-setup", "legend-setup", [
    { name: "p50", values: pick((c) => c.setupMs.p50 || 0) },
    { name: "p95", values: pick((c) => c.setupMs.p95 || 0) },
  ]);
}

async function refreshSessions() {
  const prefix = state.search;
  try {
    const page = await api("GET", "/admin/v1/sessions?limit=100&uid_prefix=" + encodeURIComponent(prefix));
    drawSessions(page);
    if (prefix) {
      const presence = await api("GET", "/admin/v1/presence/" + encodeURIComponent(prefix));
      $("presence").textContent = `${presence.uid}: web ${presence.web.state}, app ${presence.app.state}` +
        (presence.paired ? " (paired)" : "");
    } else {
      $("presence").textContent = "";
    }
  } catch (error) {
    $("sessions-more").textContent = "listing failed: " + error.message;
  }
}

function drawSessions(page) {
  const body = $("sessions").tBodies[0];
  body.replaceChildren();
  for (const s of page.sessions) {
    const row = body.insertRow();
    row.dataset.uid = s.uid;
    row.dataset.role = s.role;
    cell(row, s.uid); cell(row, s.role); cell(row, s.state); cell(row, s.door || "—");
    cell(row, s.node); cell(row, new Date(s.since).toLocaleTimeString()); cell(row, s.remote_addr || "—");
    const button = document.createElement("button");
    button.className = "kick";
    button.textContent = "Kick";
    button.addEventListener("click", () => kick(s.uid, s.role));
    row.insertCell().append(button);
  }
  $("sessions-more").textContent = page.sessions.length === 0 ? "no sessions" :
    page.next_cursor ? `first ${page.sessions.length} shown; narrow the search for the rest` : "";
}

async function kick(uid, role) {
  try {
    const answer = await api("POST", "/admin/v1/kick", { uid, role, reason: "kicked from the admin dashboard" });
    $("kick-status").textContent = `kicked ${answer.kicked} session(s) of ${uid} (${role})`;
  } catch (error) {
    $("kick-status").textContent = "kick failed: " + error.message;
  }
  setTimeout(refreshSessions, 300);
}

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  signIn($("token").value.trim()).catch((error) =>
    signOut(error.status === 401 ? "The token was refused." : "Cannot reach the admin API: " + error.message));
});
$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.search = $("search").value.trim();
  refreshSessions();
});
if (state.token) signIn(state.token).catch(() => signOut(""));
