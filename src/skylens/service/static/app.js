// skylens web page: plain JavaScript, no build step, no internet. Talks to the /api routes.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const thumbUrls = [];

function authHeaders() {
  const token = $("token").value.trim();
  return token ? { Authorization: "Bearer " + token } : {};
}

async function api(path, options = {}) {
  const res = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  const type = res.headers.get("content-type") || "";
  const body = type.includes("json") ? await res.json() : await res.blob();
  if (!res.ok) {
    const err = body && body.error ? body.error : { type: "HTTPError", message: res.statusText };
    throw new Error(err.message);
  }
  return body;
}

function say(id, text, isError = false) {
  const el = $(id);
  el.textContent = text;
  el.classList.toggle("error", isError);
}

async function loadStatus() {
  try {
    const health = await api("/api/health");
    if (!health.index) {
      say("status", "No index is loaded: searching is off. Start the service with `skylens serve --index DIR`. Classification works.", true);
      $("search-form").querySelector("button").disabled = true;
      return;
    }
    try {
      const stats = await api("/api/index");
      say("status", `Index: ${stats.rows} chips from ${stats.sources} source(s), model ${stats.model}.`);
    } catch (e) {
      say("status", `Model ${health.model}. ${e.message}`, health.token_required);
    }
  } catch (e) {
    say("status", "The service does not answer: " + e.message, true);
  }
}

function centre(geometry) {
  if (!geometry) return null;
  const ring = geometry.coordinates[0].slice(0, -1);
  const lon = ring.reduce((s, p) => s + p[0], 0) / ring.length;
  const lat = ring.reduce((s, p) => s + p[1], 0) / ring.length;
  return [lon, lat];
}

function highlight(i) {
  document.querySelectorAll("#grid li").forEach((li, j) => li.classList.toggle("active", i === j));
  document.querySelectorAll("#map polygon").forEach((p) => p.classList.toggle("active", Number(p.dataset.i) === i));
}

function drawMap(features) {
  const svg = $("map");
  svg.replaceChildren();
  const rings = features.map((f, i) => [i, f.geometry]).filter(([, g]) => g && g.type === "Polygon");
  if (!rings.length) {
    const t = document.createElementNS(SVG, "text");
    t.setAttribute("x", 20); t.setAttribute("y", 120);
    t.textContent = "No georeferenced hits to draw.";
    svg.append(t);
    return;
  }
  const pts = rings.flatMap(([, g]) => g.coordinates[0]);
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  // a degree of longitude is cos(latitude) as long as a degree of latitude: keep the shapes true
  const kx = Math.cos(((y0 + y1) / 2) * Math.PI / 180);
  const s = Math.min(300 / Math.max((x1 - x0) * kx, 1e-9), 200 / Math.max(y1 - y0, 1e-9));
  for (const [i, g] of rings.reverse()) {
    const poly = document.createElementNS(SVG, "polygon");
    poly.setAttribute("points", g.coordinates[0].map((p) => `${(10 + (p[0] - x0) * kx * s).toFixed(1)},${(230 - (p[1] - y0) * s).toFixed(1)}`).join(" "));
    poly.dataset.i = i;
    const title = document.createElementNS(SVG, "title");
    title.textContent = `hit ${i + 1}`;
    poly.append(title);
    poly.addEventListener("mouseenter", () => highlight(i));
    svg.append(poly);
  }
  const label = document.createElementNS(SVG, "text");
  label.setAttribute("x", 4); label.setAttribute("y", 12); label.setAttribute("font-size", 9);
  label.textContent = `lon ${x0.toFixed(4)}..${x1.toFixed(4)}, lat ${y0.toFixed(4)}..${y1.toFixed(4)}`;
  svg.append(label);
}

async function thumbnail(img, id) {
  try {
    const blob = await api(`/api/chip/${id}/thumbnail.png?size=192`);
    const url = URL.createObjectURL(blob);
    thumbUrls.push(url);
    img.src = url;
  } catch (e) {
    img.alt = "thumbnail unavailable: " + e.message;
  }
}

function showHits(fc) {
  thumbUrls.splice(0).forEach((u) => URL.revokeObjectURL(u));
  const grid = $("grid");
  grid.replaceChildren();
  fc.features.forEach((f, i) => {
    const p = f.properties;
    const li = document.createElement("li");
    li.tabIndex = 0;
    const img = document.createElement("img");
    img.alt = `chip ${i + 1} from ${p.path.split("/").pop()}`;
    const c = centre(f.geometry);
    const where = c ? `${c[0].toFixed(5)}, ${c[1].toFixed(5)}` : "not georeferenced";
    const text = document.createElement("div");
    text.title = p.path;
    const shortPath = p.path.split("/").slice(-2).join("/");
    for (const line of [`#${i + 1} score ${p.score.toFixed(3)}`, shortPath, `window ${p.window.join(",")}`, `lon/lat ${where}`]) {
      const d = document.createElement("div");
      d.textContent = line;
      text.append(d);
    }
    li.append(img, text);
    li.addEventListener("focus", () => highlight(i));
    li.addEventListener("mouseenter", () => highlight(i));
    grid.append(li);
    thumbnail(img, f.id);
  });
  drawMap(fc.features);
}

$("search-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const params = new URLSearchParams({ q: $("q").value, k: $("k").value, format: "geojson" });
  if ($("bbox").value.trim()) params.set("bbox", $("bbox").value.trim());
  say("search-message", "Searching…");
  try {
    const fc = await api("/api/search?" + params);
    showHits(fc);
    say("search-message", fc.features.length ? `${fc.features.length} hit(s) for “${fc.properties.query}”.` : "No hits.");
  } catch (e) {
    say("search-message", e.message, true);
  }
});

let dropped = null;
const drop = $("drop");
drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (ev) => {
  ev.preventDefault();
  drop.classList.remove("over");
  if (ev.dataTransfer.files.length) {
    dropped = ev.dataTransfer.files[0];
    say("classify-message", `Ready: ${dropped.name}. Press Classify.`);
  }
});
$("image").addEventListener("change", () => { dropped = null; });

$("classify-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const file = dropped || $("image").files[0];
  if (!file) { say("classify-message", "Choose or drop an image first.", true); return; }
  const form = new FormData();
  form.append("image", file, file.name);
  form.append("labels", $("labels").value);
  form.append("top", $("top").value);
  say("classify-message", "Classifying…");
  try {
    const r = await api("/api/classify", { method: "POST", body: form });
    const list = $("classes");
    list.replaceChildren();
    r.labels.forEach((label, i) => {
      const li = document.createElement("li");
      const meter = document.createElement("meter");
      meter.min = 0; meter.max = 1; meter.value = r.scores[i];
      const name = document.createElement("span");
      name.textContent = label;
      const pct = document.createElement("span");
      pct.textContent = `${(100 * r.scores[i]).toFixed(1)}%`;
      li.append(name, meter, pct);
      list.append(li);
    });
    say("classify-message", `${r.source}: ${r.labels[0]} (model ${r.model}).`);
  } catch (e) {
    say("classify-message", e.message, true);
  }
});

$("token").addEventListener("change", loadStatus);
$("token-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadStatus(); });
loadStatus();
