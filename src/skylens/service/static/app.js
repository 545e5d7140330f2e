// skylens web page: plain JavaScript, no build step, no internet. Talks to the /api routes.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const thumbUrls = [];
// errors that mean "the loaded model cannot do this", not "your input is wrong"
const UNAVAILABLE = new Set(["CapabilityError", "MissingDependencyError"]);

function authHeaders() {
  const token = $("token").value.trim();
  return token ? { Authorization: "Bearer " + token } : {};
}

class ApiError extends Error {
  constructor(type, message, status) {
    super(message);
    this.type = type;
    this.status = status;
  }
}

async function api(path, options = {}) {
  const res = await fetch(path, { ...options, headers: { ...authHeaders(), ...(options.headers || {}) } });
  const type = res.headers.get("content-type") || "";
  const body = type.includes("json") ? await res.json() : await res.blob();
  if (!res.ok) {
    const err = body && body.error ? body.error : { type: "HTTPError", message: res.statusText };
    throw new ApiError(err.type, err.message, res.status);
  }
  return body;
}

function say(id, text, kind = "") {
  const el = $(id);
  el.textContent = text;
  el.classList.toggle("error", kind === "error");
  el.classList.toggle("unavailable", kind === "unavailable");
}

// an API failure in a panel: "not available with this model" reads differently from bad input
function sayFailure(id, what, e) {
  if (e instanceof ApiError && UNAVAILABLE.has(e.type)) {
    say(id, `${what} is not available with the loaded model: ${e.message}`, "unavailable");
  } else {
    say(id, e.message, "error");
  }
}

async function loadStatus() {
  try {
    const health = await api("/api/health");
    if (!health.index) {
      say("status", "No index is loaded: searching is off. Start the service with `skylens serve --index DIR`. The image, change and localize views work.", "error");
      $("search-form").querySelector("button").disabled = true;
      return;
    }
    try {
      const stats = await api("/api/index");
      say("status", `Index: ${stats.rows} chips from ${stats.sources} source(s), model ${stats.model}.`);
    } catch (e) {
      say("status", `Model ${health.model}. ${e.message}`, health.token_required ? "error" : "");
    }
  } catch (e) {
    say("status", "The service does not answer: " + e.message, "error");
  }
}

// -- footprint panels ----------------------------------------------------------------------------
function centre(geometry) {
  const rings = polygonRings(geometry);
  if (!rings.length) return null;
  const ring = rings[0].slice(0, -1);
  const lon = ring.reduce((s, p) => s + p[0], 0) / ring.length;
  const lat = ring.reduce((s, p) => s + p[1], 0) / ring.length;
  return [lon, lat];
}

function polygonRings(geometry) {
  if (!geometry) return [];
  if (geometry.type === "Polygon") return [geometry.coordinates[0]];
  if (geometry.type === "MultiPolygon") return geometry.coordinates.map((poly) => poly[0]);
  return [];
}

// Draw the outer rings of [geometry, label] items on an SVG panel, true to shape (lon scaled by
// cos(lat)); `onHover(i)` is called when a shape is pointed at.
function drawFootprints(svgId, items, emptyText, onHover = null) {
  const svg = $(svgId);
  svg.replaceChildren();
  const shapes = items.map(([g, label], i) => [i, label, polygonRings(g)]).filter(([, , r]) => r.length);
  if (!shapes.length) {
    const t = document.createElementNS(SVG, "text");
    t.setAttribute("x", 20); t.setAttribute("y", 120);
    t.textContent = emptyText;
    svg.append(t);
    return;
  }
  const pts = shapes.flatMap(([, , rings]) => rings.flat());
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const kx = Math.cos(((y0 + y1) / 2) * Math.PI / 180);
  const s = Math.min(300 / Math.max((x1 - x0) * kx, 1e-9), 200 / Math.max(y1 - y0, 1e-9));
  for (const [i, label, rings] of shapes.reverse()) {
    for (const ring of rings) {
      const poly = document.createElementNS(SVG, "polygon");
      poly.setAttribute("points", ring.map((p) => `${(10 + (p[0] - x0) * kx * s).toFixed(1)},${(230 - (p[1] - y0) * s).toFixed(1)}`).join(" "));
      poly.dataset.i = i;
      const title = document.createElementNS(SVG, "title");
      title.textContent = label;
      poly.append(title);
      if (onHover) poly.addEventListener("mouseenter", () => onHover(i));
      svg.append(poly);
    }
  }
  const label = document.createElementNS(SVG, "text");
  label.setAttribute("x", 4); label.setAttribute("y", 12); label.setAttribute("font-size", 9);
  label.textContent = `lon ${x0.toFixed(4)}..${x1.toFixed(4)}, lat ${y0.toFixed(4)}..${y1.toFixed(4)}`;
  svg.append(label);
}

// -- search --------------------------------------------------------------------------------------
function highlight(i) {
  document.querySelectorAll("#grid li").forEach((li, j) => li.classList.toggle("active", i === j));
  document.querySelectorAll("#map polygon").forEach((p) => p.classList.toggle("active", Number(p.dataset.i) === i));
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
    li.setAttribute("role", "button");
    li.setAttribute("aria-label", `hit ${i + 1}: open details`);
    li.addEventListener("focus", () => highlight(i));
    li.addEventListener("mouseenter", () => highlight(i));
    li.addEventListener("click", () => openHit(f, i));
    li.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); openHit(f, i); }
    });
    grid.append(li);
    thumbnail(img, f.id);
  });
  drawFootprints("map", fc.features.map((f, i) => [f.geometry, `hit ${i + 1}`]), "No georeferenced hits to draw.", highlight);
}

// a hit, opened: the chip larger, everything the index knows of it, and its picture
async function openHit(f, i) {
  const p = f.properties;
  const c = centre(f.geometry);
  const rows = [
    ["score", p.score.toFixed(4)], ["source", p.path], ["window (x,y,w,h)", p.window.join(", ")],
    ["lon, lat", c ? `${c[0].toFixed(6)}, ${c[1].toFixed(6)}` : "not georeferenced"],
    ["CRS", p.crs || "none"], ["acquired", p.acquired || "unknown"], ["chip id", f.id],
  ];
  if (p.caption) rows.push(["caption", p.caption]);
  const dl = $("hit-details");
  dl.replaceChildren();
  for (const [k, v] of rows) {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v;
    dl.append(dt, dd);
  }
  $("hit-title").textContent = `Hit ${i + 1}`;
  $("hit-image").alt = `chip ${i + 1} from ${p.path.split("/").pop()}`;
  $("hit-open").removeAttribute("href");
  $("hit-dialog").showModal();
  try {
    const url = URL.createObjectURL(await api(`/api/chip/${f.id}/thumbnail.png?size=512`));
    thumbUrls.push(url);
    $("hit-image").src = url;
    $("hit-open").href = url;
  } catch (e) {
    $("hit-image").alt = "picture unavailable: " + e.message;
  }
}

// an uploaded file, shown: a browser decodes JPEG/PNG/WebP; a TIFF shows its name only
const previewUrls = {};
function preview(imgId, file) {
  const img = $(imgId);
  if (previewUrls[imgId]) URL.revokeObjectURL(previewUrls[imgId]);
  delete previewUrls[imgId];
  if (!file) { img.hidden = true; img.removeAttribute("src"); return; }
  previewUrls[imgId] = URL.createObjectURL(file);
  img.src = previewUrls[imgId];
  img.alt = `uploaded ${file.name}`;
  img.hidden = false;
  img.onerror = () => { img.hidden = true; };
}
for (const [input, img] of [["example", "example-preview"], ["before-file", "before-preview"],
  ["after-file", "after-preview"], ["scene-file", "scene-preview"]]) {
  $(input).addEventListener("change", () => preview(img, $(input).files[0]));
}

$("image-search-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const file = $("example").files[0];
  if (!file) { say("search-message", "Choose an example image first.", "error"); return; }
  const form = new FormData();
  form.append("image", file, file.name);
  const params = new URLSearchParams({ k: $("k").value, format: "geojson" });
  if ($("bbox").value.trim()) params.set("bbox", $("bbox").value.trim());
  say("search-message", "Searching by image…");
  try {
    const fc = await api("/api/search/image?" + params, { method: "POST", body: form });
    showHits(fc);
    say("search-message", fc.features.length ? `${fc.features.length} chip(s) like ${file.name}.` : "No hits.");
  } catch (e) {
    sayFailure("search-message", "Image search", e);
  }
});

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
    sayFailure("search-message", "Search", e);
  }
});

// -- one image: drop or choose, then classify / caption / ask ------------------------------------
let dropped = null;
const drop = $("drop");

function chosenImage() {
  return dropped || $("image").files[0] || null;
}

function showChosen() {
  const f = chosenImage();
  preview("image-preview", f);
  $("drop-name").textContent = f ? `Chosen: ${f.name}. Classify, caption or ask below.` : "";
}

function imageForm(messageId) {
  const file = chosenImage();
  if (!file) {
    say(messageId, "Choose or drop an image first.", "error");
    return null;
  }
  const form = new FormData();
  form.append("image", file, file.name);
  return form;
}

drop.addEventListener("dragenter", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (ev) => {
  ev.preventDefault();
  drop.classList.remove("over");
  const files = ev.dataTransfer ? ev.dataTransfer.files : [];
  if (files.length) {
    dropped = files[0];
    showChosen();
    // a dropped image is classified at once: dropping is the whole gesture
    $("classify-form").requestSubmit();
  }
});
// keyboard: Enter or Space on the drop zone opens the file chooser
drop.addEventListener("keydown", (ev) => {
  if ((ev.key === "Enter" || ev.key === " ") && ev.target === drop) {
    ev.preventDefault();
    $("image").click();
  }
});
$("image").addEventListener("change", () => { dropped = null; showChosen(); });

$("classify-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = imageForm("classify-message");
  if (!form) return;
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
    sayFailure("classify-message", "Classification", e);
  }
});

$("caption-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = imageForm("caption-message");
  if (!form) return;
  say("caption-message", "Captioning…");
  try {
    const r = await api("/api/caption", { method: "POST", body: form });
    say("caption-message", `${r.source}: “${r.caption}” (model ${r.model}).`);
  } catch (e) {
    sayFailure("caption-message", "Captioning", e);
  }
});

$("ask-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = imageForm("ask-message");
  if (!form) return;
  form.append("question", $("question").value);
  say("ask-message", "Thinking…");
  try {
    const r = await api("/api/ask", { method: "POST", body: form });
    if (r.supported) {
      const conf = r.confidence == null ? "" : `, confidence ${(100 * r.confidence).toFixed(0)}%`;
      say("ask-message", `${r.source}: ${r.text} (${r.kind} question${conf}; model ${r.model}).`);
    } else {
      say("ask-message", `${r.text}: ${r.reason}`, "unavailable");
    }
  } catch (e) {
    sayFailure("ask-message", "Question answering", e);
  }
});

// -- change and localize: uploads or server-side paths ------------------------------------------
// Put one raster in `form`: the chosen file as `fileField`, else the typed path as `pathField`.
function addRaster(form, fileInput, pathInput, fileField, pathField, what) {
  const file = $(fileInput).files[0];
  const path = $(pathInput).value.trim();
  if (file && path) throw new Error(`Give the ${what} as an upload or a path, not both.`);
  if (file) form.append(fileField, file, file.name);
  else if (path) form.append(pathField, path);
  else throw new Error(`Choose the ${what} image (upload or server-side path).`);
}

function regionItem(text) {
  const li = document.createElement("li");
  li.tabIndex = 0;
  li.textContent = text;
  return li;
}

function fmtArea(m2) {
  if (m2 == null) return "";
  return m2 >= 1e6 ? `${(m2 / 1e6).toFixed(2)} km²` : `${Math.round(m2)} m²`;
}

// The pair stays loaded (the form keeps its files and paths): a follow-up question re-posts it
// with the question, and the conversation grows below the result.
function changeForm(question) {
  const form = new FormData();
  addRaster(form, "before-file", "before-path", "before_image", "before", "before");
  addRaster(form, "after-file", "after-path", "after_image", "after", "after");
  form.append("tile", $("change-tile").value);
  if (question) form.append("question", question);
  else form.append("picture", "true");
  return form;
}

function showChange(r) {
  $("change-before").src = r.before_png;
  $("change-after").src = r.after_png;
  $("change-map").src = r.change_map_png;
  $("change-map").style.opacity = $("change-swipe").value / 100;
  $("change-caption").textContent = r.caption;
  const list = $("change-regions");
  list.replaceChildren(...r.regions.slice(0, 100).map((g) => regionItem(
    `Region ${g.id}: ${g.location}, ${(100 * g.share).toFixed(1)}% of the scene, ` +
    `${g.area_m2 != null ? fmtArea(g.area_m2) : g.pixels + " px"}, ` +
    `${g.class_before} → ${g.class_after} (score ${g.score.toFixed(3)})`)));
  if (!r.regions.length) list.append(regionItem("No changed regions."));
  $("change-warnings").replaceChildren(...r.warnings.map((w) => regionItem("Warning: " + w)));
  drawFootprints("change-footprints", r.regions.map((g) => [g.geometry, `region ${g.id}`]),
    "Not georeferenced: regions are drawn on the change map only.");
  $("change-conversation").replaceChildren();
  $("change-result").hidden = false;
  // the status line repeats the headline, so it can never contradict the warnings
  say("change-message", `${r.caption} (model ${r.model})`);
}

$("change-swipe").addEventListener("input", () => {
  $("change-map").style.opacity = $("change-swipe").value / 100;
});

$("change-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  let form;
  try {
    form = changeForm(null);
  } catch (e) {
    say("change-message", e.message, "error");
    return;
  }
  say("change-message", "Comparing…");
  try {
    showChange(await api("/api/change", { method: "POST", body: form }));
  } catch (e) {
    sayFailure("change-message", "Change detection", e);
  }
});

$("change-ask-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const q = $("change-question").value.trim();
  if (!q) return;
  const item = regionItem(`Q: ${q} — …`);
  $("change-conversation").append(item);
  try {
    const r = await api("/api/change", { method: "POST", body: changeForm(q) });
    item.textContent = `Q: ${q} — A: ${r.answer.text}`;
    $("change-question").value = "";
  } catch (e) {
    item.textContent = `Q: ${q} — failed: ${e.message}`;
  }
});

$("localize-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = new FormData();
  try {
    addRaster(form, "scene-file", "scene-path", "image", "path", "scene");
  } catch (e) {
    say("localize-message", e.message, "error");
    return;
  }
  form.append("phrase", $("phrase").value);
  form.append("tile", $("loc-tile").value);
  form.append("stride", $("loc-stride").value);
  form.append("top", $("loc-top").value);
  form.append("picture", "true");
  say("localize-message", "Localizing…");
  try {
    const r = await api("/api/localize", { method: "POST", body: form });
    $("heatmap").src = r.heatmap_png;
    $("heatmap-caption").textContent = `“${r.phrase}” in ${r.scene}: ${r.chips_scored} windows scored.`;
    $("localize-regions").replaceChildren(...r.regions.map((g) => regionItem(
      `#${g.rank}: window ${g.window.join(",")} (score ${g.score.toFixed(3)}, +${g.relative.toFixed(3)} over the scene mean)`)));
    drawFootprints("localize-footprints", r.regions.map((g) => [g.geometry, `region ${g.rank}`]),
      "Not georeferenced: regions are outlined on the heatmap only.");
    $("localize-result").hidden = false;
    say("localize-message", `${r.regions.length} best region(s) for “${r.phrase}” (model ${r.model}).` +
      (r.warnings.length ? " " + r.warnings.join(" ") : ""));
  } catch (e) {
    sayFailure("localize-message", "Localization", e);
  }
});

$("token").addEventListener("change", loadStatus);
$("token-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadStatus(); });
loadStatus();
