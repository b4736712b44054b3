// Vantage status page: polls /ui/api/state, draws the fleet and the targets on an equirectangular map, lists
// the applications, and runs ad-hoc probes through the scheduler's API (POST /v1/probes, GET /v1/probes/{id}).
"use strict";

const SVGNS = "http://www.w3.org/2000/svg";
const W = 1000, H = 500;
const EARTH_KM = 6371.0088;
const STATE_POLL_MS = 3000;
const PROBE_POLL_MS = 500;
const MAX_DISKS = 10;       // the smallest disks say where a target is; the big ones shade the whole map
const MAX_DISK_KM = 5000;  // nor is a disk wider than a continent drawn

let state = null;
let selected = null;      // app name whose disks are drawn
let adhoc = null;         // latest ad-hoc probe status
let catalogue = [];

const $ = (id) => document.getElementById(id);

function el(name, attrs, parent) {
  const e = document.createElementNS(SVGNS, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

function td(tr, text, cls) {
  const c = document.createElement("td");
  c.textContent = text;
  if (cls) c.className = cls;
  tr.appendChild(c);
  return c;
}

const px = (lon) => (lon + 180) / 360 * W;
const py = (lat) => (90 - lat) / 180 * H;

function ago(t, now) {
  if (!t) return "—";
  const s = Math.round((new Date(now) - new Date(t)) / 1000);
  if (s < -1) return "in " + dur(-s);
  return dur(s) + " ago";
}

function until(t, now) {
  if (!t) return "—";
  const s = Math.round((new Date(t) - new Date(now)) / 1000);
  return s <= 0 ? "due" : "in " + dur(s);
}

function dur(s) {
  if (s < 90) return s + " s";
  if (s < 5400) return Math.round(s / 60) + " min";
  return Math.round(s / 3600) + " h";
}

const ms = (v) => (v === undefined || v === null) ? "—" : (v < 10 ? v.toFixed(2) : v.toFixed(1)) + " ms";

// ring returns the geodesic circle of radiusKm about (lat, lon) as [lon, lat] points with continuous longitudes,
// closed along the pole when the circle encloses one.
function ring(lat, lon, radiusKm) {
  const d = Math.min(radiusKm / EARTH_KM, Math.PI * 0.999);
  const p1 = lat * Math.PI / 180, l1 = lon * Math.PI / 180;
  const pts = [];
  let prev = null;
  for (let i = 0; i <= 96; i++) {
    const th = i / 96 * 2 * Math.PI;
    const p2 = Math.asin(Math.sin(p1) * Math.cos(d) + Math.cos(p1) * Math.sin(d) * Math.cos(th));
    let l2 = l1 + Math.atan2(Math.sin(th) * Math.sin(d) * Math.cos(p1), Math.cos(d) - Math.sin(p1) * Math.sin(p2));
    let lo = l2 * 180 / Math.PI;
    if (prev !== null) {
      while (lo - prev > 180) lo -= 360;
      while (lo - prev < -180) lo += 360;
    }
    pts.push([lo, p2 * 180 / Math.PI]);
    prev = lo;
  }
  const span = pts[pts.length - 1][0] - pts[0][0];
  if (Math.abs(span) > 180) { // encloses a pole: close the polygon along it
    const pole = (90 - lat) * Math.PI / 180 * EARTH_KM < radiusKm ? 90 : -90;
    pts.push([pts[pts.length - 1][0], pole], [pts[0][0], pole]);
  }
  return pts;
}

function drawRing(g, lat, lon, radiusKm, cls) {
  const pts = ring(lat, lon, radiusKm);
  for (const shift of [-360, 0, 360]) {
    const d = pts.map((p, i) => (i ? "L" : "M") + px(p[0] + shift).toFixed(1) + "," + py(p[1]).toFixed(1)).join("") + "Z";
    el("path", { d, class: cls }, g);
  }
}

function drawBase(svg) {
  const g = el("g", { id: "base" }, svg);
  for (let lon = -180; lon <= 180; lon += 30) el("line", { x1: px(lon), y1: 0, x2: px(lon), y2: H, class: "grat" }, g);
  for (let lat = -60; lat <= 60; lat += 30) el("line", { x1: 0, y1: py(lat), x2: W, y2: py(lat), class: lat === 0 ? "grat equator" : "grat" }, g);
  const cat = el("g", { id: "catalogue" }, svg);
  for (const p of catalogue) el("circle", { cx: px(p.lon).toFixed(1), cy: py(p.lat).toFixed(1), r: 1.3, class: "cat" }, cat);
  el("g", { id: "disks" }, svg);
  el("g", { id: "targets" }, svg);
  el("g", { id: "pops" }, svg);
}

function clear(id) {
  const g = $(id);
  while (g.firstChild) g.removeChild(g.firstChild);
  return g;
}

function popByCode() {
  const m = {};
  for (const p of (state ? state.pops : [])) if (p.located) m[p.code] = p;
  return m;
}

function drawPoPs() {
  const g = clear("pops");
  const placed = [];
  const sorted = [...state.pops].filter((p) => p.located).sort((a, b) => a.code.localeCompare(b.code));
  for (const p of sorted) {
    const c = el("circle", { cx: px(p.lon), cy: py(p.lat), r: 4, class: "pop " + p.state }, g);
    const t = el("title", {}, c);
    t.textContent = `${p.code} ${p.city || ""}: ${p.state}, ${p.daemons} daemon(s)`;
    const x = px(p.lon) + 5, y = py(p.lat) - 5;
    if (placed.every(([a, b]) => Math.abs(a - x) > 22 || Math.abs(b - y) > 9)) {
      const l = el("text", { x, y, class: "poplabel" }, g);
      l.textContent = p.code;
      placed.push([x, y]);
    }
  }
}

function drawTargets() {
  const g = clear("targets");
  const disks = clear("disks");
  const pops = popByCode();
  let caption = "";
  for (const a of state.apps) {
    const sel = a.app === selected;
    if (sel) {
      const all = a.disks || [];
      const ds = all.filter((d) => d.radius_km <= MAX_DISK_KM).slice(0, MAX_DISKS);
      for (const d of [...ds].reverse()) drawRing(disks, d.lat, d.lon, d.radius_km, "disk");
      caption = `${a.app}: ${all.length} probe disk(s)` +
        (ds.length < all.length ? ` (${ds.length} smallest drawn)` : "") +
        (a.location ? `; estimated location ${a.location.lat.toFixed(2)}, ${a.location.lon.toFixed(2)}` +
          (a.location.radius_km ? ` ± ${a.location.radius_km} km` : "") : "") +
        (a.instances && a.instances.length ? `; ${a.instances.length} anycast instance(s): ` +
          a.instances.map((i) => i.city || i.vp).join(", ") : "") +
        (a.best_pop ? `; runs at ${a.best_pop}` : "; not placed (runs where requests enter)");
    }
    if (a.location) {
      if (sel && a.location.radius_km) drawRing(g, a.location.lat, a.location.lon, a.location.radius_km, "locarea");
      const best = pops[a.best_pop];
      if (best) el("line", { x1: px(best.lon), y1: py(best.lat), x2: px(a.location.lon), y2: py(a.location.lat), class: "bestline" }, g);
      const c = el("circle", { cx: px(a.location.lon), cy: py(a.location.lat), r: sel ? 5 : 3.5, class: sel ? "loc" : "loc dim" }, g);
      el("title", {}, c).textContent = `${a.app}: estimated location of ${a.target}`;
      if (sel) el("text", { x: px(a.location.lon) + 7, y: py(a.location.lat) + 12, class: "applabel" }, g).textContent = a.app;
    }
    for (const i of (a.instances || [])) {
      const x = px(i.lon), y = py(i.lat), r = sel ? 5 : 3.5;
      const d = el("path", { d: `M${x},${y - r}L${x + r},${y}L${x},${y + r}L${x - r},${y}Z`, class: "inst" }, g);
      if (!sel) d.setAttribute("opacity", "0.45");
      el("title", {}, d).textContent = `${a.app}: anycast instance near ${i.city || i.vp}`;
    }
    if (sel && pops[a.best_pop]) {
      const b = pops[a.best_pop];
      el("circle", { cx: px(b.lon), cy: py(b.lat), r: 8, class: "bestring" }, g);
    }
  }
  if (adhoc) {
    for (const [pop, r] of Object.entries(adhoc.results || {})) {
      const p = pops[pop];
      if (p && r.samples > 0 && !r.class && r.min_ms / 2 * 299.792458 * 2 / 3 <= MAX_DISK_KM) drawRing(disks, p.lat, p.lon, r.min_ms / 2 * 299.792458 * 2 / 3, "disk adhoc");
    }
  }
  $("map-caption").textContent = caption;
}

function drawTable() {
  const tb = $("apps").tBodies[0];
  while (tb.firstChild) tb.removeChild(tb.firstChild);
  for (const a of state.apps) {
    const tr = document.createElement("tr");
    tr.dataset.app = a.app;
    if (a.app === selected) tr.className = "sel";
    td(tr, a.app);
    td(tr, a.mode);
    td(tr, a.target + (a.endpoint ? " → " + a.endpoint : ""));
    td(tr, a.status || "(none yet)", "st-" + (a.status || "none"));
    td(tr, a.verdict || "—");
    td(tr, a.best_pop ? a.best_pop + (a.estimated ? " (model)" : "") : "—");
    // A smart decision ranks PoPs by the estimated mean request duration, not by an RTT.
    td(tr, a.best_pop ? (a.mode === "smart" ? ms(a.best_rtt_ms) + " per request" : ms(a.best_rtt_ms)) : "—");
    td(tr, a.confidence ? a.confidence.toFixed(2) : "—");
    td(tr, ago(a.last_recheck, state.now) + (a.last_error ? " ⚠" : "")).title = a.last_error || "";
    td(tr, until(a.next_recheck, state.now));
    tr.addEventListener("click", () => { selected = a.app; render(); });
    tb.appendChild(tr);
    if (a.reason && a.status !== "SUCCESS") {
      // Why the status is not SUCCESS, in words, on a row of its own under the application.
      const why = document.createElement("tr");
      why.className = "reason";
      const c = td(why, a.reason, "st-" + a.status);
      c.colSpan = 10;
      why.addEventListener("click", () => { selected = a.app; render(); });
      tb.appendChild(why);
    }
    if (a.app === selected && a.explanation) {
      // The selected application's explanation: the engine's notes, the PoPs set aside, the calibration and
      // the history window of its decision.
      const ex = document.createElement("tr");
      ex.className = "explain";
      const c = td(ex, explainText(a.explanation));
      c.colSpan = 10;
      tb.appendChild(ex);
    }
  }
}

function explainText(e) {
  const parts = [];
  const cal = e.calibration || {};
  parts.push(cal.kind === "calibrated" ? `disks: calibrated per PoP (${cal.pops || 0} lines` +
    (cal.suspects && cal.suspects.length ? `; mislocated: ${cal.suspects.join(", ")}` : "") + ")" : "disks: fibre bound (2/3 c)");
  const w = e.window || {};
  parts.push(`RTTs: each PoP's minimum over its last ${w.rounds} results within ${Math.round((w.seconds || 0) / 60)} min`);
  for (const s of (e.set_aside || [])) parts.push(`set aside ${s.pop}: ${s.reason}`);
  if (e.chaos) parts.push("CHAOS: " + Object.entries(e.chaos).map(([p, id]) => `${p}=${id}`).join(", "));
  for (const n of (e.notes || [])) parts.push(n);
  for (const i of (e.instances || [])) parts.push(`instance ${i.city || i.pop || (i.lat.toFixed(1) + "," + i.lon.toFixed(1))} (± ${Math.round(i.radius_km)} km)`);
  return "Why: " + parts.join("; ");
}

function drawSkipped() {
  const files = state.skipped_configs || [];
  $("skipped").hidden = files.length === 0;
  const tb = $("skipped-files").tBodies[0];
  while (tb.firstChild) tb.removeChild(tb.firstChild);
  for (const f of files) {
    const tr = document.createElement("tr");
    td(tr, f.path);
    td(tr, f.error, "bad");
    tb.appendChild(tr);
  }
}

function drawSummary() {
  const n = { up: 0, down: 0, drained: 0 };
  for (const p of state.pops) n[p.state] = (n[p.state] || 0) + 1;
  const placed = state.apps.filter((a) => a.best_pop).length;
  const s = $("summary");
  s.textContent = "";
  const add = (b, t) => { const e = document.createElement("b"); e.textContent = b; s.append(e, " " + t + "  "); };
  add(n.up, "PoPs up");
  add(n.down, "down");
  add(n.drained, "drained");
  add(state.total_apps, "apps" + (state.total_apps > state.apps.length ? ` (${state.apps.length} shown)` : ""));
  add(placed, "placed");
  s.append("updated " + new Date(state.now).toLocaleTimeString());
}

function render() {
  if (!state) return;
  if (!selected || !state.apps.some((a) => a.app === selected)) selected = state.apps.length ? state.apps[0].app : null;
  drawSummary();
  drawPoPs();
  drawTargets();
  drawTable();
  drawSkipped();
}

async function getJSON(url, opts) {
  const r = await fetch(url, opts);
  const body = await r.json().catch(() => null);
  if (!r.ok) {
    const msg = body && body.errors && body.errors.length ? body.errors[0].message : r.status + " " + r.statusText;
    throw new Error(msg);
  }
  return body;
}

// The state needs a bearer token too: the one of the form's Token field (kept for the tab's session).
async function pollState() {
  const token = $("probe-token").value.trim();
  if (!token) {
    $("summary").textContent = "A bearer token is needed to read the state: enter it in the Token field, or open the page with #token=…";
  } else {
    try {
      state = await getJSON("/ui/api/state", { headers: { Authorization: "Bearer " + token } });
      render();
    } catch (e) {
      $("summary").textContent = "cannot read the state: " + e.message;
    }
  }
  setTimeout(pollState, STATE_POLL_MS);
}

// --- ad-hoc probes ---

function probeStatus(text, st) {
  const s = $("probe-status");
  s.textContent = text;
  s.dataset.state = st;
}

function drawProbe(st) {
  const tb = $("probe-results").tBodies[0];
  while (tb.firstChild) tb.removeChild(tb.firstChild);
  const rows = Object.entries(st.results || {}).map(([pop, r]) => ({ pop, r, ok: !r.class && !r.error && r.samples > 0 }));
  rows.sort((a, b) => (a.ok !== b.ok) ? (a.ok ? -1 : 1) : (a.ok ? a.r.min_ms - b.r.min_ms : a.pop.localeCompare(b.pop)));
  const worst = Math.max(1, ...rows.filter((x) => x.ok).map((x) => x.r.min_ms));
  rows.forEach((x, i) => {
    const tr = document.createElement("tr");
    tr.dataset.pop = x.pop;
    td(tr, x.ok ? String(i + 1) : "—");
    td(tr, x.pop);
    const c = td(tr, x.ok ? ms(x.r.min_ms) : "—");
    if (x.ok) {
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = Math.max(2, 120 * x.r.min_ms / worst) + "px";
      c.appendChild(bar);
    }
    td(tr, x.ok ? ms(x.r.median_ms) : "—");
    td(tr, x.ok ? Math.round(100 * x.r.loss) + " %" : "—");
    td(tr, x.ok ? "ok" : (x.r.class || "failed") + (x.r.error ? ": " + x.r.error : ""), x.ok ? "ok" : "bad");
    tb.appendChild(tr);
  });
  for (const pop of (st.pending || [])) {
    const tr = document.createElement("tr");
    td(tr, "…"); td(tr, pop); td(tr, "—"); td(tr, "—"); td(tr, "—"); td(tr, "waiting", "pending");
    tb.appendChild(tr);
  }
  const v = $("probe-verdict");
  v.textContent = "";
  if (st.verdict) {
    const b = st.verdict;
    v.textContent = `Verdict: ${b.verdict}` + (b.best_pop ? `, best PoP ${b.best_pop}` : "") +
      `, confidence ${(b.confidence || 0).toFixed(2)}` +
      (b.location ? `, located near ${b.location.Lat.toFixed(2)}, ${b.location.Lon.toFixed(2)}` + (b.radius_km ? ` ± ${Math.round(b.radius_km)} km` : "") : "") +
      (b.notes && b.notes.length ? ` (${b.notes.join("; ")})` : "");
  }
}

async function runProbe(ev) {
  if (ev) ev.preventDefault();
  const token = $("probe-token").value.trim();
  const pops = $("probe-pops").value.trim();
  const req = { kind: $("probe-kind").value, target: $("probe-target").value.trim(), count: Number($("probe-count").value) || 0,
    pops: pops === "" || pops.toLowerCase() === "all" ? "all" : pops.split(/[\s,]+/).filter(Boolean).map((p) => p.toUpperCase()) };
  if (!req.target) { probeStatus("Give a target to probe.", "error"); return; }
  if (!token) { probeStatus("A bearer token is needed to start probes.", "error"); return; }
  sessionStorage.setItem("vantage-token", token);
  const auth = { Authorization: "Bearer " + token };
  $("probe-submit").disabled = true;
  adhoc = null;
  try {
    const rec = (await getJSON("/v1/probes", { method: "POST", headers: { ...auth, "Content-Type": "application/json" }, body: JSON.stringify(req) })).result;
    probeStatus(`Probe ${rec.id}: ${req.kind} ${rec.target} from ${rec.pops.length} PoP(s)…`, "running");
    for (;;) {
      const st = (await getJSON("/v1/probes/" + encodeURIComponent(rec.id), { headers: auth })).result;
      adhoc = st;
      drawProbe(st);
      if (state) drawTargets();
      const n = Object.keys(st.results || {}).length;
      if (st.done) {
        const best = st.verdict && st.verdict.best_pop ? `; best ${st.verdict.best_pop}` : "";
        probeStatus(`Done: ${n} of ${rec.pops.length} PoP(s) answered${best}.`, "done");
        break;
      }
      probeStatus(`Probe ${rec.id}: ${n} of ${rec.pops.length} PoP(s) answered…`, "running");
      await new Promise((r) => setTimeout(r, PROBE_POLL_MS));
    }
  } catch (e) {
    probeStatus("Probe failed: " + e.message, "error");
  } finally {
    $("probe-submit").disabled = false;
  }
}

// The fragment may preset the form (#token=...&kind=tcp&target=db:5432&pops=all&count=3) and submit it
// (&submit=1). A fragment never reaches the server, so the token stays in the browser.
function fromFragment() {
  const q = new URLSearchParams(location.hash.replace(/^#/, ""));
  const set = (id, k) => { if (q.has(k)) $(id).value = q.get(k); };
  set("probe-token", "token");
  set("probe-kind", "kind");
  set("probe-target", "target");
  set("probe-pops", "pops");
  set("probe-count", "count");
  if (!$("probe-token").value) $("probe-token").value = sessionStorage.getItem("vantage-token") || "";
  if (q.has("app")) selected = q.get("app");
  return q.get("submit") === "1";
}

async function main() {
  const svg = $("map");
  try { catalogue = await getJSON("/ui/api/catalogue"); } catch (e) { catalogue = []; }
  drawBase(svg);
  const submit = fromFragment();
  $("probe-form").addEventListener("submit", runProbe);
  $("probe-token").addEventListener("change", () => sessionStorage.setItem("vantage-token", $("probe-token").value.trim()));
  await pollState();
  if (submit) runProbe();
}

main();
