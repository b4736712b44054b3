// Vantage status page: polls /ui/api/state, draws the fleet and the targets on a world map (Natural Earth land
// and borders from the embedded world-atlas TopoJSON, projected with d3-geo), lists the applications, shows
// one application's page (its candidates, reasons and decision history from GET /v1/apps/{name}/history), draws
// the PoP mesh's RTTs (on the map, and as a PoP × PoP heat map with the mislocated PoPs) when the API serves
// GET /v1/mesh, and runs ad-hoc probes through the scheduler's API (POST /v1/probes, GET /v1/probes/{id}).
"use strict";

const SVGNS = "http://www.w3.org/2000/svg";
const W = 1000, H = 510;
const EARTH_KM = 6371.0088;
const STATE_POLL_MS = 3000;
const PROBE_POLL_MS = 500;
const HISTORY_POLL_MS = 15000; // an app's history changes at most once per recheck
const MESH_POLL_MS = 30000;    // the mesh is remeasured every few minutes
const MESH_POLL_EMPTY_MS = 5000; // until the first pairs arrive
const MESH_POLL_BIG_MS = 120000; // a large fleet's mesh is a large read (one entry per ordered pair)
const MESH_BIG_PAIRS = 20000;
const MESH_MAP_ALL_POPS = 12;  // a larger fleet's map draws only ...
const MESH_MAP_LINKS = 4;      // ... each PoP's fastest pairs (its neighbourhood): all n² would hide the map
const HEATMAP_MAX_POPS = 120;  // the heat map's rows and columns at most (120² cells)
const HISTORY_ROWS = 50;
const MAX_DISKS = 10;       // the smallest disks say where a target is; the big ones shade the whole map
const MAX_DISK_KM = 5000;  // nor is a disk wider than a continent drawn

let state = null;
let selected = null;      // app name whose page is shown and whose disks are drawn
let adhoc = null;         // latest ad-hoc probe status
let catalogue = [];
let world = null;         // the countries TopoJSON
let mesh = null;          // GET /v1/mesh's answer, when the API has it
let meshServed = false;   // the API documents GET /v1/mesh
let meshError = "";       // why the latest read of GET /v1/mesh failed
let meshGen = 0;          // counts the reads of GET /v1/mesh: the heat map is redrawn after each
let hist = { app: null, at: 0, rows: null, error: "" };

const projection = d3.geoNaturalEarth1().fitExtent([[8, 8], [W - 8, H - 8]], { type: "Sphere" });
const geoPath = d3.geoPath(projection);

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

// auth returns the Authorization header of the form's token.
const auth = () => ({ Authorization: "Bearer " + $("probe-token").value.trim() });

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

// drawDisk draws the geodesic circle of radiusKm about (lat, lon), cut at the antimeridian and closed along a
// pole it encloses by d3-geo.
function drawDisk(g, lat, lon, radiusKm, cls) {
  const deg = Math.min(radiusKm / EARTH_KM * 180 / Math.PI, 179);
  const d = geoPath(d3.geoCircle().center([lon, lat]).radius(deg).precision(2)());
  if (d) return el("path", { d, class: cls }, g);
  return null;
}

// arc draws the great-circle line between two [lon, lat] points.
function arc(g, a, b, cls) {
  const d = geoPath({ type: "LineString", coordinates: [a, b] });
  return d ? el("path", { d, class: cls }, g) : null;
}

function drawBase(svg) {
  const g = el("g", { id: "base" }, svg);
  el("path", { d: geoPath({ type: "Sphere" }), class: "sphere" }, g);
  el("path", { d: geoPath(d3.geoGraticule10()), class: "grat" }, g);
  const land = el("g", { id: "land" }, svg);
  if (world) {
    for (const f of topojson.feature(world, world.objects.countries).features) {
      const d = geoPath(f);
      if (!d) continue;
      const c = el("path", { d, class: "country" }, land);
      el("title", {}, c).textContent = f.properties.name;
    }
    el("path", { d: geoPath(topojson.mesh(world, world.objects.countries, (a, b) => a !== b)), class: "border" }, land);
  }
  el("path", { d: geoPath({ type: "Sphere" }), class: "outline" }, svg);
  const cat = el("g", { id: "catalogue" }, svg);
  for (const p of catalogue) {
    const xy = projection([p.lon, p.lat]);
    el("circle", { cx: xy[0].toFixed(1), cy: xy[1].toFixed(1), r: 1.1, class: "cat" }, cat);
  }
  el("g", { id: "mesh" }, svg);
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
    const [x, y] = projection([p.lon, p.lat]);
    const c = el("circle", { cx: x, cy: y, r: 4.5, class: "pop " + p.state }, g);
    c.dataset.pop = p.code;
    el("title", {}, c).textContent = `${p.code} ${p.city || ""}: ${p.state}, ${p.daemons} daemon(s)`;
    const lx = x + 6, ly = y - 6;
    if (placed.every(([a, b]) => Math.abs(a - lx) > 24 || Math.abs(b - ly) > 10)) {
      el("text", { x: lx, y: ly, class: "poplabel" }, g).textContent = p.code;
      placed.push([lx, ly]);
    }
  }
}

// rttColor maps an RTT to a colour from green (10 ms or less) to red (250 ms or more), on a log scale.
function rttColor(ms) {
  const t = Math.max(0, Math.min(1, Math.log(Math.max(ms, 1) / 10) / Math.log(25)));
  return `hsl(${Math.round(130 - 130 * t)}, 75%, 55%)`;
}

// drawMesh draws the PoP mesh's RTTs (the fastest direction of each pair; in a fleet of more than
// MESH_MAP_ALL_POPS, only each PoP's MESH_MAP_LINKS fastest pairs: the heat map has them all) and marks the
// PoPs it finds mislocated; nothing when the API has no mesh.
function drawMesh() {
  drawHeatmap();
  const g = clear("mesh");
  const pairs = (mesh && mesh.pairs) || [];
  $("lg-mesh").hidden = pairs.length === 0;
  if (!pairs.length) return;
  const pops = popByCode();
  const best = new Map();
  for (const p of pairs) {
    if (p.src === p.dst || !pops[p.src] || !pops[p.dst] || !(p.rtt_ms >= 0)) continue;
    const k = [p.src, p.dst].sort().join("-");
    if (!best.has(k) || p.rtt_ms < best.get(k).rtt_ms) best.set(k, p);
  }
  let lines = [...best.values()];
  const fleet = new Set(lines.flatMap((p) => [p.src, p.dst]));
  if (fleet.size > MESH_MAP_ALL_POPS) {
    const keep = new Set();
    for (const code of fleet) {
      lines.filter((p) => p.src === code || p.dst === code).sort((a, b) => a.rtt_ms - b.rtt_ms)
        .slice(0, MESH_MAP_LINKS).forEach((p) => keep.add(p));
    }
    lines = lines.filter((p) => keep.has(p));
  }
  $("lg-mesh-what").textContent = fleet.size > MESH_MAP_ALL_POPS ? `each PoP's ${MESH_MAP_LINKS} fastest links` : "PoP × PoP RTT";
  // Slow pairs first, so that the short fast ones are drawn on top.
  for (const p of lines.sort((a, b) => b.rtt_ms - a.rtt_ms)) {
    const a = pops[p.src], b = pops[p.dst];
    const l = arc(g, [a.lon, a.lat], [b.lon, b.lat], "meshline");
    if (!l) continue;
    l.setAttribute("stroke", rttColor(p.rtt_ms));
    el("title", {}, l).textContent = `${p.src} ↔ ${p.dst}: ${ms(p.rtt_ms)}`;
  }
  for (const m of (mesh.mislocated || [])) {
    const p = pops[m.pop];
    if (!p) continue;
    const [x, y] = projection([p.lon, p.lat]);
    const c = el("circle", { cx: x, cy: y, r: 9, class: "mislocated" }, g);
    el("title", {}, c).textContent = `${m.pop}: mislocated? ${m.reason}`;
    el("text", { x: x - 11, y: y + 18, class: "mislabel", "text-anchor": "end" }, g).textContent = `${m.pop} mislocated?`;
  }
}

// --- the PoP mesh's heat map ---

let heat = { key: "", hoverBound: false };

// meshPoPs lists the PoPs of the heat map, west to east (then the PoPs the catalogue cannot place, by code):
// the fleet's and every PoP of a measured pair or of the mislocated list.
function meshPoPs(pairs, mislocated) {
  const lon = {}, city = {};
  for (const p of (state ? state.pops : [])) {
    if (p.located) lon[p.code] = p.lon;
    if (p.city) city[p.code] = p.city;
  }
  const set = new Set((state ? state.pops : []).map((p) => p.code));
  for (const p of pairs) { set.add(p.src); set.add(p.dst); }
  for (const m of mislocated) set.add(m.pop);
  const codes = [...set].sort((a, b) => {
    const la = a in lon, lb = b in lon;
    if (la !== lb) return la ? -1 : 1;
    return (la ? lon[a] - lon[b] : 0) || a.localeCompare(b);
  });
  return { codes, city };
}

// drawHeatmap draws the mesh as a matrix, a row per measuring PoP and a column per measured one, each cell
// coloured by the pair's RTT (rttColor, as the map's lines), the mislocated PoPs' rows and columns outlined
// and listed with the mesh's reason; or says why there is nothing to draw.
function drawHeatmap() {
  const svg = $("heatmap");
  const pairs = (mesh && mesh.pairs) || [];
  const mislocated = (mesh && mesh.mislocated) || [];
  const { codes: all, city } = meshPoPs(pairs, mislocated);
  const codes = all.slice(0, HEATMAP_MAX_POPS);
  const n = codes.length;
  const status = $("mesh-status");
  drawMislocated(mislocated, city, pairs.length > 0);
  if (!meshServed) status.textContent = "This API does not serve GET /v1/mesh: there is no mesh to show.";
  else if (!$("probe-token").value.trim()) status.textContent = "A bearer token is needed to read the mesh: enter it in the Token field.";
  else if (meshError) status.textContent = "cannot read the mesh: " + meshError;
  else if (!mesh) status.textContent = "loading…";
  else if (!pairs.length) status.textContent = "No mesh measured yet: every PoP measures every other once per mesh interval " +
    "(the scheduler's --mesh-interval, 10 minutes by default), and the heat map fills as the results arrive.";
  else {
    const rtts = pairs.map((p) => p.rtt_ms).sort((a, b) => a - b);
    const newest = pairs.reduce((t, p) => (p.at > t ? p.at : t), "");
    status.textContent = `${pairs.length} of ${all.length * (all.length - 1)} ordered pairs measured among ${all.length} PoPs` +
      `, median ${ms(rtts[rtts.length >> 1])}, newest ${ago(newest, Math.max(Date.now(), Date.parse(newest)))}. ` +
      "Rows measure, columns are measured; PoPs west to east." +
      (all.length > n ? ` The first ${n} PoPs are drawn.` : "");
  }
  svg.toggleAttribute("hidden", pairs.length === 0); // an SVG element has no hidden property
  const key = pairs.length ? [meshGen, codes.join(","), mislocated.map((m) => m.pop).join(",")].join("|") : "";
  if (key === heat.key) return;
  heat.key = key;
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  if (!pairs.length) return;

  const cs = Math.max(6, Math.min(32, Math.floor(720 / n)));
  const font = Math.min(11, cs - 2);
  const L = font >= 6 ? 56 : 6, T = font >= 6 ? 46 : 6;
  const Wd = L + n * cs + 2, Ht = T + n * cs + 2;
  svg.setAttribute("viewBox", `0 0 ${Wd} ${Ht}`);
  svg.setAttribute("width", Wd);
  svg.setAttribute("height", Ht);
  const idx = new Map(codes.map((c, i) => [c, i]));
  const bad = new Map(mislocated.map((m) => [m.pop, m.reason]));
  const rtt = new Map(pairs.map((p) => [p.src + ">" + p.dst, p]));
  const grid = el("g", { class: "cells" }, svg);
  // The unmeasured background first: one rect per row, so that a large fleet is not n² empty rects.
  for (let i = 0; i < n; i++) el("rect", { x: L, y: T + i * cs, width: n * cs, height: cs - 1, class: "nocell" }, grid);
  for (let i = 0; i < n; i++) el("rect", { x: L + i * cs, y: T + i * cs, width: cs - 1, height: cs - 1, class: "diag" }, grid);
  for (const p of pairs) {
    const i = idx.get(p.src), j = idx.get(p.dst);
    if (i === undefined || j === undefined) continue;
    const r = el("rect", { x: L + j * cs, y: T + i * cs, width: cs - 1, height: cs - 1, class: "cell", fill: rttColor(p.rtt_ms) }, grid);
    r.dataset.src = p.src;
    r.dataset.dst = p.dst;
    el("title", {}, r).textContent = `${p.src} → ${p.dst}: ${ms(p.rtt_ms)}`;
    // A small mesh has room for the values themselves.
    if (cs >= 30) el("text", { x: L + j * cs + cs / 2 - 0.5, y: T + i * cs + cs / 2 + 3, class: "cellval", "text-anchor": "middle" }, grid)
      .textContent = p.rtt_ms < 10 ? p.rtt_ms.toFixed(1) : Math.round(p.rtt_ms);
  }
  if (font >= 6) {
    codes.forEach((c, i) => {
      const why = bad.get(c);
      const cls = why !== undefined ? "hlabel misloc" : "hlabel";
      const tip = `${c}${city[c] ? " " + city[c] : ""}` + (why !== undefined ? `: mislocated? ${why}` : "");
      const rl = el("text", { x: L - 4, y: T + i * cs + cs / 2 + font / 2 - 1, class: cls, "text-anchor": "end", "font-size": font }, svg);
      rl.textContent = why !== undefined ? "⚠ " + c : c;
      el("title", {}, rl).textContent = tip;
      const x = L + i * cs + cs / 2 + font / 2 - 1, y = T - 4;
      const cl = el("text", { x, y, class: cls, transform: `rotate(-90 ${x} ${y})`, "font-size": font }, svg);
      cl.textContent = why !== undefined ? "⚠ " + c : c;
      el("title", {}, cl).textContent = tip;
    });
  }
  for (const [c, why] of bad) {
    const i = idx.get(c);
    if (i === undefined) continue;
    const row = el("rect", { x: L - 0.5, y: T + i * cs - 0.5, width: n * cs, height: cs, class: "misband" }, svg);
    el("title", {}, row).textContent = `${c}: mislocated? ${why}`;
    el("rect", { x: L + i * cs - 0.5, y: T - 0.5, width: cs, height: n * cs, class: "misband" }, svg);
  }
  if (!heat.hoverBound) {
    heat.hoverBound = true;
    svg.addEventListener("mouseover", (ev) => {
      const d = ev.target.dataset || {};
      if (!d.src) return;
      const fwd = mesh && mesh.pairs.find((p) => p.src === d.src && p.dst === d.dst);
      const back = mesh && mesh.pairs.find((p) => p.src === d.dst && p.dst === d.src);
      if (!fwd) return;
      $("mesh-hover").textContent = `${fwd.src} → ${fwd.dst}: ${ms(fwd.rtt_ms)}` + (back ? ` (back: ${ms(back.rtt_ms)})` : "") +
        `, measured ${ago(fwd.at, new Date())}`;
    });
  }
}

// drawMislocated lists the PoPs the mesh finds mislocated, with the mesh's reason.
function drawMislocated(mislocated, city, measured) {
  const ul = $("mislocated");
  ul.textContent = "";
  const li = (text, cls) => { const e = document.createElement("li"); e.textContent = text; if (cls) e.className = cls; ul.appendChild(e); return e; };
  for (const m of mislocated) {
    const e = li("", "bad");
    e.dataset.pop = m.pop;
    const b = document.createElement("b");
    b.textContent = m.pop + (city[m.pop] ? ` (${city[m.pop]})` : "");
    e.append(b, `: ${m.reason}. Set aside (no location or anycast evidence from it) until the mesh agrees with its catalogue location.`);
  }
  if (!mislocated.length) li(measured ? "None: every PoP's catalogue location agrees with its mesh RTTs." : "None known: no mesh yet.", "pending");
}

function drawTargets() {
  const g = clear("targets");
  const disks = clear("disks");
  const pops = popByCode();
  let caption = "";
  const diamond = (x, y, r) => `M${x},${y - r}L${x + r},${y}L${x},${y + r}L${x - r},${y}Z`;
  // The selected application last, on top of the others.
  const apps = [...state.apps].sort((a, b) => (a.app === selected) - (b.app === selected));
  for (const a of apps) {
    const sel = a.app === selected;
    if (sel) {
      const all = a.disks || [];
      const ds = all.filter((d) => d.radius_km <= MAX_DISK_KM).slice(0, MAX_DISKS);
      for (const d of [...ds].reverse()) {
        const p = drawDisk(disks, d.lat, d.lon, d.radius_km, "disk");
        if (p) el("title", {}, p).textContent = `${d.pop}: ${ms(d.rtt_ms)}, so within ${d.radius_km} km`;
      }
      caption = `${a.app}: ${all.length} probe disk(s)` +
        (ds.length < all.length ? ` (${ds.length} smallest drawn)` : "") +
        (a.location ? `; estimated location ${a.location.lat.toFixed(2)}, ${a.location.lon.toFixed(2)}` +
          (a.location.radius_km ? ` ± ${a.location.radius_km} km` : "") : "") +
        (a.instances && a.instances.length ? `; ${a.instances.length} anycast instance(s): ` +
          a.instances.map((i) => i.city || i.vp).join(", ") : "") +
        (a.best_pop ? `; runs at ${a.best_pop}` : "; not placed (runs where requests enter)");
    }
    if (a.location) {
      if (sel && a.location.radius_km) drawDisk(g, a.location.lat, a.location.lon, a.location.radius_km, "locarea");
      const best = pops[a.best_pop];
      if (best) arc(g, [best.lon, best.lat], [a.location.lon, a.location.lat], sel ? "bestline" : "bestline dim");
      const [x, y] = projection([a.location.lon, a.location.lat]);
      const c = el("circle", { cx: x, cy: y, r: sel ? 5.5 : 3.5, class: sel ? "loc" : "loc dim" }, g);
      el("title", {}, c).textContent = `${a.app}: estimated location of ${a.target}`;
      if (sel) el("text", { x: x + 8, y: y + 13, class: "applabel" }, g).textContent = a.app;
    }
    (a.instances || []).forEach((i, n) => {
      const [x, y] = projection([i.lon, i.lat]);
      const d = el("path", { d: diamond(x, y, sel ? 10 : 8), class: sel ? "inst" : "inst dim" }, g);
      el("title", {}, d).textContent = `${a.app}: anycast instance near ${i.city || i.vp}`;
      if (sel) el("text", { x: x + 9, y: y + 17, class: "applabel" }, g).textContent = `${a.app} #${n + 1}`;
    });
    if (sel && pops[a.best_pop]) {
      const b = pops[a.best_pop];
      const [x, y] = projection([b.lon, b.lat]);
      el("circle", { cx: x, cy: y, r: 9, class: "bestring" }, g);
    }
  }
  if (adhoc) {
    for (const [pop, r] of Object.entries(adhoc.results || {})) {
      const p = pops[pop];
      const km = r.min_ms / 2 * 299.792458 * 2 / 3;
      if (p && r.samples > 0 && !r.class && km <= MAX_DISK_KM) drawDisk(disks, p.lat, p.lon, km, "disk adhoc");
    }
  }
  $("map-caption").textContent = caption;
}

// select shows app's page: the map's disks, the detail card, and the URL (#app=NAME) to come back to it.
function select(app) {
  selected = app;
  const q = new URLSearchParams(location.hash.replace(/^#/, ""));
  q.delete("token"); // never keep the token in the address bar
  q.delete("submit");
  q.set("app", app);
  history.replaceState(null, "", "#" + q.toString());
  render();
  loadHistory(true);
}

// loadHistory reads the selected application's decision history (every HISTORY_POLL_MS, or at once when forced).
async function loadHistory(force) {
  const app = selected;
  if (!app || !$("probe-token").value.trim()) return;
  if (!force && hist.app === app && Date.now() - hist.at < HISTORY_POLL_MS) return;
  hist.at = Date.now();
  try {
    const r = await getJSON("/v1/apps/" + encodeURIComponent(app) + "/history?limit=" + HISTORY_ROWS, { headers: auth() });
    if (app === selected) hist = { app, at: hist.at, rows: r.result.decisions || [], error: "" };
  } catch (e) {
    if (app === selected) hist = { app, at: hist.at, rows: null, error: e.message };
  }
  if (app === selected) drawDetail();
}

function row(tb, cells) {
  const tr = document.createElement("tr");
  for (const [text, cls] of cells) td(tr, text, cls);
  tb.appendChild(tr);
  return tr;
}

// drawDetail fills the selected application's page: what it is, why its status is what it is, its ranked
// candidates and its decisions over time.
function drawDetail() {
  const a = state && state.apps.find((x) => x.app === selected);
  $("app-card").hidden = !a;
  if (!a) return;
  const perRequest = a.mode === "smart";
  $("app-title").textContent = a.app;
  $("app-meta").textContent = `${a.mode} · ${a.target}` + (a.endpoint ? ` → ${a.endpoint}` : "") +
    ` · ${a.status || "no decision yet"}` + (a.verdict ? ` · ${a.verdict}` : "") +
    (a.best_pop ? ` · runs at ${a.best_pop}` + (a.estimated ? " (latency model)" : "") : " · not placed") +
    (a.confidence ? ` · confidence ${a.confidence.toFixed(2)}` : "") + ` · ${a.checks} check(s)`;

  const why = $("app-reasons");
  why.textContent = "";
  const reasons = [];
  if (a.reason) reasons.push([a.reason, "st-" + a.status]);
  else if (a.status === "SUCCESS") reasons.push([`${a.best_pop} is the fastest of ${(a.candidates || []).length} candidate(s)` +
    (a.estimated ? ", from the latency model" : ", as measured"), "st-SUCCESS"]);
  for (const n of (a.notes || [])) reasons.push([n, ""]);
  if (a.last_error) reasons.push(["last recheck: " + a.last_error, "bad"]);
  if (a.disks && a.disks.length) reasons.push([`${a.disks.length} PoP(s) measured it; the nearest, ${a.disks[0].pop}, at ${ms(a.disks[0].rtt_ms)}`, ""]);
  if (a.explanation) reasons.push([explainText(a.explanation), ""]); // the scheduler's own, stored with the decision
  for (const [text, cls] of reasons) {
    const li = document.createElement("li");
    li.textContent = text;
    if (cls) li.className = cls;
    why.appendChild(li);
  }

  const cb = $("candidates").tBodies[0];
  while (cb.firstChild) cb.removeChild(cb.firstChild);
  const cands = a.candidates || [];
  const worst = Math.max(1, ...cands.map((c) => c.rtt_ms));
  cands.slice(0, 12).forEach((c, i) => {
    const tr = row(cb, [[String(i + 1)], [c.pop, c.pop === a.best_pop ? "ok" : ""]]);
    const cell = td(tr, ms(c.rtt_ms) + (perRequest ? " per request" : ""));
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = Math.max(2, 110 * c.rtt_ms / worst) + "px";
    cell.appendChild(bar);
  });
  if (!cands.length) row(cb, [["—"], ["no candidates", "pending"], [""]]);

  const hb = $("history").tBodies[0];
  while (hb.firstChild) hb.removeChild(hb.firstChild);
  const rows = hist.app === a.app ? hist.rows : null;
  $("history-status").textContent = hist.app !== a.app ? "loading…" : hist.error ? "cannot read the history: " + hist.error :
    rows.length === 0 ? "no decision recorded yet" : `${rows.length} decision(s), newest first: every change, and the unchanged decision now and then`;
  for (const r of rows || []) {
    const tr = row(hb, [[new Date(r.at).toLocaleString()], ["v" + r.version], [r.changed ? "changed" : "same", r.changed ? "chg" : "pending"],
      [r.best_pop || "—"], [r.best_pop ? ms(r.rtt_ms) : "—"], [r.status || "—", "st-" + (r.status || "none")], [r.verdict || "—"],
      [r.confidence ? r.confidence.toFixed(2) : "—"], [r.reason || (r.candidates || []).map((c) => `${c.pop} ${ms(c.rtt_ms)}`).join(", ")]]);
    tr.lastChild.className = "why";
  }
  drawHistoryChart(rows || []);
}

// drawHistoryChart plots the best PoP's RTT of each recorded decision over time, labelling each change.
function drawHistoryChart(rows) {
  const svg = $("history-chart");
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const pts = rows.filter((r) => r.best_pop && r.rtt_ms > 0).map((r) => ({ t: new Date(r.at).getTime(), v: r.rtt_ms, r }))
    .sort((a, b) => a.t - b.t || a.r.version - b.r.version);
  svg.toggleAttribute("hidden", pts.length === 0); // an SVG element has no hidden property
  if (!pts.length) return;
  const CW = 700, CH = 120, L = 48, R = 12, T = 14, B = 22;
  // To now: the newest decision still holds.
  const t0 = pts[0].t, t1 = Math.max(pts[pts.length - 1].t, state ? new Date(state.now).getTime() : 0, t0 + 60000);
  const vmax = Math.max(...pts.map((p) => p.v)) * 1.15;
  const x = (t) => L + (CW - L - R) * (t - t0) / (t1 - t0);
  const y = (v) => CH - B - (CH - T - B) * v / vmax;
  el("line", { x1: L, y1: CH - B, x2: CW - R, y2: CH - B, class: "axis" }, svg);
  el("line", { x1: L, y1: T, x2: L, y2: CH - B, class: "axis" }, svg);
  el("text", { x: L - 6, y: T + 4, class: "tick", "text-anchor": "end" }, svg).textContent = ms(vmax);
  el("text", { x: L - 6, y: CH - B, class: "tick", "text-anchor": "end" }, svg).textContent = "0";
  el("text", { x: L, y: CH - 6, class: "tick" }, svg).textContent = new Date(t0).toLocaleTimeString();
  el("text", { x: CW - R, y: CH - 6, class: "tick", "text-anchor": "end" }, svg).textContent = new Date(t1).toLocaleTimeString();
  el("path", { d: pts.map((p, i) => (i ? "H" + x(p.t).toFixed(1) + "V" : "M" + x(p.t).toFixed(1) + ",") + y(p.v).toFixed(1)).join("") + "H" + (CW - R), class: "hline" }, svg);
  let prev = null;
  for (const p of pts) {
    const c = el("circle", { cx: x(p.t), cy: y(p.v), r: p.r.changed ? 3.5 : 2.5, class: p.r.changed ? "hdot chg" : "hdot" }, svg);
    el("title", {}, c).textContent = `${new Date(p.t).toLocaleString()}: ${p.r.best_pop} ${ms(p.v)} (v${p.r.version})`;
    if (p.r.best_pop !== prev) el("text", { x: x(p.t) + 4, y: y(p.v) - 5, class: "tick pop-at" }, svg).textContent = p.r.best_pop;
    prev = p.r.best_pop;
  }
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
    tr.addEventListener("click", () => select(a.app));
    tb.appendChild(tr);
    if (a.reason && a.status !== "SUCCESS") {
      // Why the status is not SUCCESS, in words, on a row of its own under the application.
      const why = document.createElement("tr");
      why.className = "reason";
      const c = td(why, a.reason, "st-" + a.status);
      c.colSpan = 10;
      why.addEventListener("click", () => select(a.app));
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
  drawMesh();
  drawPoPs();
  drawTargets();
  drawTable();
  drawSkipped();
  drawDetail();
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
      state = await getJSON("/ui/api/state", { headers: auth() });
      render();
      loadHistory(false);
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
  const path = location.pathname.match(/^\/ui\/app\/([^/]+)$/);
  if (path) selected = decodeURIComponent(path[1]);
  if (q.has("app")) selected = q.get("app");
  return q.get("submit") === "1";
}

// pollMesh reads the PoP mesh's RTTs when the API documents GET /v1/mesh (asked once, from /openapi.json, so
// that an API without it is never sent a request that would 404).
async function pollMesh() {
  if (meshServed && $("probe-token").value.trim()) {
    try {
      mesh = await getJSON("/v1/mesh", { headers: auth() });
      if (mesh && mesh.result && !mesh.pairs) mesh = mesh.result; // inside the API's envelope
      meshError = "";
      meshGen++;
    } catch (e) {
      mesh = null;
      meshError = e.message;
    }
  }
  if (state) drawMesh();
  else drawHeatmap();
  const n = mesh && mesh.pairs ? mesh.pairs.length : 0;
  setTimeout(pollMesh, n === 0 ? MESH_POLL_EMPTY_MS : n > MESH_BIG_PAIRS ? MESH_POLL_BIG_MS : MESH_POLL_MS);
}

async function main() {
  const svg = $("map");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  try { catalogue = await getJSON("/ui/api/catalogue"); } catch (e) { catalogue = []; }
  try { world = await getJSON("/ui/static/vendor/countries-110m.json"); } catch (e) { world = null; }
  try { meshServed = "/v1/mesh" in ((await getJSON("/openapi.json")).paths || {}); } catch (e) { meshServed = false; }
  drawBase(svg);
  const submit = fromFragment();
  $("probe-form").addEventListener("submit", runProbe);
  $("probe-token").addEventListener("change", () => sessionStorage.setItem("vantage-token", $("probe-token").value.trim()));
  await pollState();
  pollMesh();
  if (submit) runProbe();
}

main();
