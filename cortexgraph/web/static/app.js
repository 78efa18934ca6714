// cortexgraph serve: the mapping web app (docs/web-app.md). Plain JavaScript over the JSON API of
// cortexgraph.web; OpenSeadragon shows the sections, Annotorious edits polygons, niivue shows 3D.
"use strict";

const $ = (id) => document.getElementById(id);
const S = {
  cohort: null, brain: null, sections: [], index: -1, image: null, viewer: null, anno: null,
  overlays: [], overlayState: {}, annotation: null, dirty: false, job: null, poll: null,
  nv: null, suppress: false,
};
window.cortexgraph = S; // for tests and the console

// ---------------------------------------------------------------------------------------------- api
async function api(path, options = {}) {
  const init = Object.assign({ headers: {} }, options);
  if (init.method && init.method !== "GET") init.headers["X-Requested-With"] = "cortexgraph";
  if (init.json !== undefined) {
    init.body = JSON.stringify(init.json);
    init.headers["Content-Type"] = "application/json";
    delete init.json;
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (e) { body = { error: text }; }
  if (!response.ok) {
    const error = new Error((body && body.error) || response.statusText);
    error.status = response.status;
    error.body = body || {};
    throw error;
  }
  return body;
}

function say(text, isError = false) {
  const m = $("message");
  m.textContent = text;
  m.title = text;
  m.className = isError ? "error" : "";
}

function errorText(error) {
  const b = error.body || {};
  return [b.error || error.message, b.fix ? "Fix: " + b.fix : ""].filter(Boolean).join(" ");
}

const areaById = (id) => S.cohort.areas.find((a) => a.id === Number(id));
const brainUrl = () => `/api/brains/${encodeURIComponent(S.brain)}`;
const current = () => S.sections[S.index];

// -------------------------------------------------------------------------------------- start up
async function init() {
  S.cohort = await api("/api/cohort");
  $("cohort-name").textContent = S.cohort.name;
  for (const b of S.cohort.brains) $("brain").add(new Option(b, b));
  for (const a of S.cohort.areas) $("area").add(new Option(`${a.name} (${a.id})`, a.id));
  if (S.cohort.job_defaults && S.cohort.job_defaults.arch) $("arch").value = S.cohort.job_defaults.arch;
  if (S.cohort.job_defaults && S.cohort.job_defaults.iterations) $("iterations").value = S.cohort.job_defaults.iterations;
  const params = new URLSearchParams(location.search);
  if (params.get("brain")) $("brain").value = params.get("brain");
  if (params.get("area")) $("area").value = params.get("area");
  setupViewer();
  bind();
  updateSwatch();
  await loadBrain($("brain").value, params.get("section") ? Number(params.get("section")) : null);
}

function bind() {
  $("brain").onchange = () => confirmLeave() && loadBrain($("brain").value);
  $("prev").onclick = () => step(-1);
  $("next").onclick = () => step(1);
  document.addEventListener("keydown", (e) => {
    if (e.target.tagName === "INPUT" || e.target.tagName === "SELECT") return;
    if (e.key === "PageDown") { step(1); e.preventDefault(); }
    if (e.key === "PageUp") { step(-1); e.preventDefault(); }
    if (e.key === "s" && (e.ctrlKey || e.metaKey)) { save(); e.preventDefault(); }
  });
  $("area").onchange = () => { updateSwatch(); refreshSections(); updateExport(); };
  $("draw").onclick = toggleDraw;
  $("delete").onclick = deleteSelected;
  $("save").onclick = save;
  $("undo").onclick = undo;
  $("suggest").onclick = () => suggest(null);
  $("next-interval").onclick = () => suggest(Number($("t").value));
  $("start").onclick = startJob;
  $("cancel").onclick = cancelJob;
  $("tab-sections").onclick = () => showTab("sections");
  $("tab-3d").onclick = () => showTab("3d");
  $("show-surface").onclick = showSurface;
  $("check-status").onclick = checkStatus;
  window.addEventListener("beforeunload", (e) => { if (S.dirty) { e.preventDefault(); e.returnValue = ""; } });
}

function updateSwatch() {
  const a = areaById($("area").value);
  $("area-swatch").style.background = a ? a.color : "transparent";
  updateExport();
}

function updateExport() {
  const a = areaById($("area").value);
  if (a && S.brain) $("export").href = `${brainUrl()}/annotations/${encodeURIComponent(a.id)}.geojson`;
}

// ------------------------------------------------------------------------------------- sections
async function loadBrain(brain, section = null) {
  S.brain = brain;
  S.index = -1;
  updateExport();
  await refreshSections();
  const usable = S.sections.filter((r) => !r.missing && r.image);
  const wanted = section !== null ? S.sections.findIndex((r) => r.section === section) : -1;
  const first = wanted >= 0 ? wanted : S.sections.indexOf(usable.find((r) => r.annotated) || usable[0]);
  await showSection(first);
  await loadJobs();
  await load3dChoices();
}

async function refreshSections() {
  if (!S.brain) return;
  const area = $("area").value;
  const data = await api(`${brainUrl()}/sections?area=${encodeURIComponent(area)}`);
  S.sections = data.sections;
  S.spacing = data.spacing_um;
  const body = $("sections").tBodies[0];
  body.innerHTML = "";
  S.sections.forEach((r, i) => {
    const tr = body.insertRow();
    tr.dataset.section = r.section;
    tr.className = [r.missing ? "missing" : "", r.excluded ? "excluded" : "", i === S.index ? "current" : ""].join(" ");
    const flags = (r.annotated ? "A" : ".") + (r.predictions.length ? "P" : ".") + (r.missing ? "M" : ".") +
      (r.mirrored ? "R" : ".") + (r.excluded ? "X" : ".");
    tr.insertCell().textContent = r.section;
    const f = tr.insertCell(); f.className = "flags"; f.textContent = flags;
    tr.insertCell().textContent = (r.role || "") + (r.lsm_role ? ` [${r.lsm_role}]` : "");
    tr.onclick = () => { if (confirmLeave()) showSection(i); };
  });
}

function confirmLeave() {
  return !S.dirty || window.confirm("The annotation of this section has unsaved changes. Leave without saving?");
}

function step(delta) {
  if (!confirmLeave()) return;
  let i = S.index;
  do { i += delta; } while (i >= 0 && i < S.sections.length && (S.sections[i].missing || !S.sections[i].image));
  if (i >= 0 && i < S.sections.length) showSection(i);
}

async function showSection(index) {
  if (index < 0 || index >= S.sections.length) return;
  const row = S.sections[index];
  S.index = index;
  for (const tr of $("sections").tBodies[0].rows) tr.classList.toggle("current", Number(tr.dataset.section) === row.section);
  const tr = [...$("sections").tBodies[0].rows].find((t) => Number(t.dataset.section) === row.section);
  if (tr) tr.scrollIntoView({ block: "nearest" });
  $("section-title").textContent = `section ${row.section}` + (row.mirrored ? " (mirrored)" : "") +
    (row.excluded ? " (excluded)" : "") + (row.missing ? " (missing)" : "");
  S.dirty = false;
  setDirty(false);
  if (row.missing || !row.image) {
    S.viewer.close();
    say(`section ${row.section} has no image`);
    return;
  }
  S.image = await api(`${brainUrl()}/sections/${row.section}/image`);
  const bounds = S.viewer.world.getItemCount() ? S.viewer.viewport.getBounds() : null;
  await openImage(S.image, bounds);
  await loadOverlays();
  await loadAnnotation();
  say(`${S.brain} section ${row.section}: ${S.image.width} x ${S.image.height} px at ${S.image.spacing_um} µm`);
}

// ----------------------------------------------------------------------------------- the viewer
function tileSource(grid, url, version, ext) {
  return {
    width: grid.width, height: grid.height, tileSize: grid.tile_px, tileOverlap: 0,
    minLevel: 0, maxLevel: grid.max_level,
    getTileUrl: (level, x, y) => `${url}/${level}/${x}_${y}.${ext}?v=${version}`,
  };
}

function setupViewer() {
  S.viewer = OpenSeadragon({
    id: "viewer", prefixUrl: "/static/vendor/openseadragon/images/", showNavigator: true,
    navigatorPosition: "TOP_RIGHT", maxZoomPixelRatio: 8, visibilityRatio: 0.5, crossOriginPolicy: false,
    gestureSettingsMouse: { clickToZoom: false, dblClickToZoom: false }, imageSmoothingEnabled: false,
  });
  S.viewer.addHandler("animation", drawScaleBar);
  S.viewer.addHandler("open", drawScaleBar);
  S.anno = AnnotoriousOSD.createOSDAnnotator(S.viewer, { drawingEnabled: false, drawingMode: "click", autoSave: true });
  S.anno.setDrawingTool("polygon");
  S.anno.setStyle((a) => {
    const body = (a.bodies || [])[0];
    const area = body ? areaById(body.value) : null;
    const colour = area ? area.color : "#ffffff";
    return { fill: colour, fillOpacity: 0.25, stroke: colour, strokeWidth: 2, strokeOpacity: 1 };
  });
  S.anno.on("createAnnotation", (a) => {
    const area = Number($("area").value);
    S.anno.updateAnnotation(Object.assign({}, a, {
      bodies: [{ id: a.id + "-area", annotation: a.id, purpose: "classifying", value: String(area) }],
    }));
    setDirty(true);
  });
  S.anno.on("updateAnnotation", () => { if (!S.suppress) setDirty(true); });
  S.anno.on("deleteAnnotation", () => { if (!S.suppress) setDirty(true); });
}

function openImage(info, bounds) {
  return new Promise((resolve) => {
    const done = () => {
      S.viewer.removeHandler("open", done);
      if (bounds) S.viewer.viewport.fitBounds(bounds, true);
      resolve();
    };
    S.viewer.addHandler("open", done);
    S.viewer.open(tileSource(info, `${brainUrl()}/sections/${info.section}/image`, info.version, "jpg"));
  });
}

function drawScaleBar() {
  if (!S.image || !S.viewer.world.getItemCount()) return;
  const item = S.viewer.world.getItemAt(0);
  const zoom = item.viewportToImageZoom(S.viewer.viewport.getZoom(true)); // screen px per image px
  const mmPerPx = S.image.spacing_um / 1000 / zoom;
  const nice = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200];
  const length = nice.find((l) => l / mmPerPx >= 80) || nice[nice.length - 1];
  $("scalebar-bar").style.width = `${Math.round(length / mmPerPx)}px`;
  $("scalebar-label").textContent = length >= 1 ? `${length} mm` : `${Math.round(length * 1000)} µm`;
}

// ------------------------------------------------------------------------------------- overlays
async function loadOverlays() {
  const row = current();
  const data = await api(`${brainUrl()}/sections/${row.section}/overlays`);
  while (S.viewer.world.getItemCount() > 1) S.viewer.world.removeItem(S.viewer.world.getItemAt(1));
  S.overlays = data.overlays;
  const box = $("overlays");
  box.innerHTML = "";
  const scaleX = 1 / (S.image.width * S.image.spacing_um); // world units per µm (image width = 1)
  for (const o of S.overlays) {
    const remembered = S.overlayState[o.key] || S.overlayState[o.group] ||
      { on: o.group === "prediction" || o.group === "labels", opacity: 0.5 };
    const div = document.createElement("div");
    div.className = "overlay";
    div.dataset.key = o.key;
    div.innerHTML = `<label><input type="checkbox"> ${o.title}</label>
      <input type="range" min="0" max="1" step="0.05" title="opacity"><ul></ul>`;
    const [check, slider] = div.querySelectorAll("input");
    check.checked = remembered.on;
    slider.value = remembered.opacity;
    for (const entry of o.legend.slice(0, 24)) {
      const li = document.createElement("li");
      li.innerHTML = `<span class="swatch" style="background:${entry.color}"></span>${entry.name}`;
      div.querySelector("ul").appendChild(li);
    }
    if (o.group === "prediction") {
      const accept = document.createElement("button");
      accept.textContent = "Accept as annotation";
      accept.onclick = () => acceptPrediction(row.section, o.source, o.area_id);
      const reject = document.createElement("button");
      reject.textContent = "Reject";
      reject.onclick = () => rejectPrediction(row.section, o.source, o.area_id);
      const buttons = document.createElement("div");
      buttons.className = "buttons";
      buttons.append(accept, reject);
      div.appendChild(buttons);
    }
    box.appendChild(div);
    const url = `${brainUrl()}/sections/${row.section}/overlays/${encodeURIComponent(o.key)}`;
    S.viewer.addTiledImage({
      tileSource: tileSource(o.grid, url, o.version, "png"), x: 0, y: 0,
      width: o.grid.width * o.grid.spacing_um * scaleX, opacity: remembered.on ? Number(remembered.opacity) : 0,
      success: (event) => {
        o.item = event.item;
        const apply = () => {
          S.overlayState[o.key] = S.overlayState[o.group] = { on: check.checked, opacity: slider.value };
          event.item.setOpacity(check.checked ? Number(slider.value) : 0);
        };
        check.onchange = apply;
        slider.oninput = apply;
      },
    });
  }
  if (!S.overlays.length) box.textContent = "no overlays for this section";
}

// ---------------------------------------------------------------------------------- annotations
const pxPerMm = () => 1000 / S.image.spacing_um;

function bounds(points) {
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  return { minX: Math.min(...xs), minY: Math.min(...ys), maxX: Math.max(...xs), maxY: Math.max(...ys) };
}

let counter = 0;
const newId = () => (crypto.randomUUID ? crypto.randomUUID() : `a${Date.now()}-${counter++}`);

function featureToAnnotations(feature) {
  const k = pxPerMm();
  const polys = feature.geometry.type === "Polygon" ? [feature.geometry.coordinates] : feature.geometry.coordinates;
  const ring = (r) => r.slice(0, -1).map(([x, y]) => [x * k, y * k]);
  const out = [];
  for (const rings of polys) {
    const id = newId();
    let selector;
    if (rings.length === 1) {
      const points = ring(rings[0]);
      selector = { type: "POLYGON", geometry: { points, bounds: bounds(points) } };
    } else {
      const element = { rings: rings.map((r) => ({ points: ring(r) })), bounds: bounds(ring(rings[0])) };
      selector = { type: "MULTIPOLYGON", geometry: { polygons: [element], bounds: element.bounds } };
    }
    out.push({
      id, target: { annotation: id, selector },
      bodies: [{ id: id + "-area", annotation: id, purpose: "classifying", value: String(feature.properties.area_id) }],
    });
  }
  return out;
}

function annotationsToGeoJSON() {
  const k = pxPerMm();
  const close = (pts) => { const r = pts.map(([x, y]) => [x / k, y / k]); r.push(r[0]); return r; };
  const features = [];
  for (const a of S.anno.getAnnotations()) {
    const body = (a.bodies || [])[0];
    const area = body ? Number(body.value) : Number($("area").value);
    const sel = a.target.selector;
    let geometry = null;
    if (sel.type === "POLYGON") geometry = { type: "Polygon", coordinates: [close(sel.geometry.points)] };
    else if (sel.type === "MULTIPOLYGON") {
      geometry = { type: "MultiPolygon", coordinates: sel.geometry.polygons.map((p) => p.rings.map((r) => close(r.points))) };
    } else if (sel.type === "RECTANGLE") {
      const g = sel.geometry;
      geometry = { type: "Polygon", coordinates: [close([[g.x, g.y], [g.x + g.w, g.y], [g.x + g.w, g.y + g.h], [g.x, g.y + g.h]])] };
    }
    if (geometry) features.push({ type: "Feature", geometry, properties: { area_id: area } });
  }
  return { type: "FeatureCollection", features };
}

async function loadAnnotation() {
  const row = current();
  S.suppress = true;
  S.anno.clearAnnotations();
  S.annotation = await api(`${brainUrl()}/sections/${row.section}/annotation`);
  const list = S.annotation.geojson.features.flatMap(featureToAnnotations);
  if (list.length) S.anno.setAnnotations(list, true);
  S.suppress = false;
  setDirty(false);
  showAnnotationState();
  await loadHistory();
}

function showAnnotationState(text) {
  const state = $("annotation-state");
  const n = S.anno.getAnnotations().length;
  state.className = S.dirty ? "dirty" : "";
  state.textContent = text || (S.dirty ? `${n} polygon(s), unsaved changes` :
    `${n} polygon(s), saved (version ${S.annotation.version.slice(0, 8)})`);
}

function setDirty(value) {
  S.dirty = value;
  $("save").disabled = !value;
  if (S.annotation) showAnnotationState();
}

function toggleDraw() {
  const on = !S.anno.isDrawingEnabled();
  S.anno.setDrawingEnabled(on);
  $("draw").textContent = on ? "Stop drawing" : "Draw polygon";
  say(on ? "drawing: click the corners, double-click (or click the first corner) to close" : "drawing off");
}

function deleteSelected() {
  const selected = S.anno.getSelected();
  for (const a of selected) S.anno.removeAnnotation(a.id);
  if (selected.length) setDirty(true);
}

async function save() {
  if (!S.dirty) return;
  const row = current();
  try {
    const result = await api(`${brainUrl()}/sections/${row.section}/annotation`, {
      method: "PUT", json: annotationsToGeoJSON(), headers: { "If-Match": S.annotation.version },
    });
    say(`section ${row.section}: saved as version ${result.version.slice(0, 8)} (${result.history_entry})`);
    await afterAnnotationChange();
  } catch (error) {
    const state = $("annotation-state");
    state.className = "error";
    if (error.status === 409) {
      state.textContent = "Not saved: " + errorText(error);
    } else if (error.status === 422) {
      state.textContent = "Not saved: " + ((error.body.problems || []).join("; ") || errorText(error));
    } else {
      state.textContent = "Not saved: " + errorText(error);
    }
    say(state.textContent, true);
  }
}

async function afterAnnotationChange() {
  await Promise.all([loadAnnotation(), loadOverlays(), refreshSections()]);
}

async function loadHistory() {
  const row = current();
  const data = await api(`${brainUrl()}/sections/${row.section}/annotation/history`);
  const list = $("history");
  list.innerHTML = "";
  for (const v of data.versions) {
    const li = document.createElement("li");
    const when = new Date(v.created_unix * 1000).toLocaleString();
    li.textContent = `${v.id} ${when} ${v.origin}, ${v.features} polygon(s) `;
    const b = document.createElement("button");
    b.textContent = "restore";
    b.onclick = () => restore(v.id);
    li.appendChild(b);
    list.appendChild(li);
  }
  S.history = data.versions;
}

async function restore(id) {
  const row = current();
  try {
    const r = await api(`${brainUrl()}/sections/${row.section}/annotation/restore`, {
      method: "POST", json: { id }, headers: { "If-Match": S.annotation.version },
    });
    say(`section ${row.section}: restored ${id} as ${r.history_entry}`);
    await afterAnnotationChange();
  } catch (error) { say(errorText(error), true); }
}

async function undo() {
  const versions = S.history || [];
  const now = versions.findIndex((v) => v.version === S.annotation.version);
  const target = now > 0 ? versions[now - 1] : null;
  if (!target) { say("nothing to undo on this section", true); return; }
  await restore(target.id);
}

// ------------------------------------------------------------------------------------------ jobs
async function suggest(after) {
  const area = $("area").value;
  const q = after ? `&after=${after}` : "";
  const data = await api(`${brainUrl()}/intervals?area=${encodeURIComponent(area)}${q}`);
  if (!data.interval) { say(`no further interval: ${areaById(area).name} is annotated on ${data.annotated.join(", ") || "no section"}`, true); return; }
  [$("s").value, $("t").value] = data.interval;
  say(`interval ${data.interval[0]}-${data.interval[1]} of ${areaById(area).name}`);
}

async function startJob() {
  const body = { area: Number($("area").value), sections: [Number($("s").value), Number($("t").value)], arch: $("arch").value };
  if ($("iterations").value) body.iterations = Number($("iterations").value);
  try {
    const job = await api(`${brainUrl()}/jobs`, { method: "POST", json: body });
    say(`started job ${job.id}`);
    followJob(job.id);
  } catch (error) { $("job-state").className = "error"; $("job-state").textContent = errorText(error); say(errorText(error), true); }
}

function followJob(id) {
  S.job = { id, seen: new Set() };
  $("job-predictions").innerHTML = "";
  $("cancel").disabled = false;
  clearInterval(S.poll);
  S.poll = setInterval(pollJob, 1000);
  pollJob();
}

async function pollJob() {
  if (!S.job) return;
  let job;
  try { job = await api(`${brainUrl()}/jobs/${S.job.id}`); } catch (error) { say(errorText(error), true); return; }
  const progress = job.progress || {};
  const parts = Object.entries(progress).map(([k, [d, t]]) => `${k} ${d}/${t}`);
  $("job-state").className = job.state === "failed" ? "error" : "";
  $("job-state").textContent = `${job.id}: ${job.state}${parts.length ? " (" + parts.join(", ") + ")" : ""}${job.message ? " " + job.message : ""}`;
  const train = progress.train, predict = progress.predict;
  const fraction = predict ? 0.7 + 0.3 * predict[0] / Math.max(1, predict[1]) : train ? 0.7 * train[0] / Math.max(1, train[1]) : 0;
  $("job-progress").value = job.state === "done" ? 1 : fraction;
  const target = job.target;
  for (const section of job.predicted_sections || []) {
    if (S.job.seen.has(section)) continue;
    S.job.seen.add(section);
    addPredictionItem(section, target.source, target.area_id);
    if (current() && current().section === section) loadOverlays();
  }
  if (job.predicted_sections && job.predicted_sections.length) refreshSections();
  if (["done", "failed", "cancelled"].includes(job.state)) {
    clearInterval(S.poll);
    $("cancel").disabled = true;
    S.job.state = job.state;
    loadJobs();
  }
}

function addPredictionItem(section, source, areaId) {
  const li = document.createElement("li");
  li.dataset.section = section;
  li.innerHTML = `section ${section} `;
  const view = document.createElement("button");
  view.textContent = "view";
  view.onclick = () => { if (confirmLeave()) showSection(S.sections.findIndex((r) => r.section === section)); };
  const accept = document.createElement("button");
  accept.textContent = "accept";
  accept.onclick = () => acceptPrediction(section, source, areaId);
  const reject = document.createElement("button");
  reject.textContent = "reject";
  reject.onclick = () => rejectPrediction(section, source, areaId);
  li.append(view, accept, reject);
  $("job-predictions").appendChild(li);
}

async function acceptPrediction(section, source, areaId) {
  if (current() && current().section === section && !confirmLeave()) return;
  try {
    const annotation = await api(`${brainUrl()}/sections/${section}/annotation`);
    const r = await api(`${brainUrl()}/sections/${section}/predictions/${encodeURIComponent(source)}/${areaId}/accept`, {
      method: "POST", headers: { "If-Match": annotation.version },
    });
    say(`section ${section}: prediction accepted as annotation (${r.features_added} polygon(s), ${r.history_entry}); edit it and save`);
    markItem(section, "accepted");
    if (current() && current().section === section) await afterAnnotationChange(); else await refreshSections();
  } catch (error) { say(errorText(error), true); }
}

async function rejectPrediction(section, source, areaId) {
  try {
    await api(`${brainUrl()}/sections/${section}/predictions/${encodeURIComponent(source)}/${areaId}/reject`, { method: "POST" });
    markItem(section, "rejected");
    say(`section ${section}: prediction rejected`);
  } catch (error) { say(errorText(error), true); }
}

function markItem(section, state) {
  const li = [...$("job-predictions").children].find((l) => Number(l.dataset.section) === section);
  if (li) li.className = state;
}

async function cancelJob() {
  if (!S.job) return;
  $("cancel").disabled = true;
  try {
    const job = await api(`${brainUrl()}/jobs/${S.job.id}/cancel`, { method: "POST" });
    say(`job ${job.id}: ${job.state}`);
  } catch (error) { say(errorText(error), true); }
  pollJob();
}

async function loadJobs() {
  const data = await api(`${brainUrl()}/jobs`);
  const list = $("jobs");
  list.innerHTML = "";
  for (const job of data.jobs.slice().reverse()) {
    const li = document.createElement("li");
    li.textContent = `${job.id}: ${job.state} `;
    if (["queued", "running"].includes(job.state)) {
      const b = document.createElement("button");
      b.textContent = "follow";
      b.onclick = () => followJob(job.id);
      li.appendChild(b);
    }
    list.appendChild(li);
  }
}

// -------------------------------------------------------------------------------------------- 3D
function showTab(which) {
  const is3d = which === "3d";
  $("view3d").hidden = !is3d;
  $("tab-3d").classList.toggle("active", is3d);
  $("tab-sections").classList.toggle("active", !is3d);
  if (is3d) { $("inspect-panel").open = true; ensureNiivue(); }
}

async function ensureNiivue() {
  if (S.nv) return S.nv;
  S.nv = new niivue.Niivue({ backColor: [1, 1, 1, 1], show3Dcrosshair: false, isColorbar: false });
  await S.nv.attachToCanvas($("canvas3d"));
  S.nv.setSliceType(S.nv.sliceTypeRender);
  return S.nv;
}

async function load3dChoices() {
  const data = await api(`${brainUrl()}/surfaces`);
  for (const id of ["hemi", "colouring", "run"]) $(id).innerHTML = "";
  for (const h of data.hemispheres) $("hemi").add(new Option(h, h));
  const names = { none: "plain", y: "annotation", pred: "prediction", errors: "errors (vs annotation)" };
  for (const c of data.colourings) $("colouring").add(new Option(names[c] || c, c));
  for (const r of data.runs) $("run").add(new Option(r, r));
  if (data.colourings.includes("y")) $("colouring").value = "y";
  $("show-surface").disabled = !data.hemispheres.length;
  const maps = await api(`${brainUrl()}/maps3d`);
  const box = $("maps3d");
  box.innerHTML = data.message ? `<p>${data.message}. ${data.fix || ""}</p>` : "";
  if (maps.maps.length) box.appendChild(document.createTextNode("3D area maps: "));
  for (const m of maps.maps) {
    const b = document.createElement("button");
    b.textContent = `${m.area} (${m.source})`;
    b.onclick = () => showMap(m.source, m.area);
    box.appendChild(b);
  }
}

function decode(b64, Type) {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return new Type(bytes.buffer);
}

async function showMesh(data) {
  const nv = await ensureNiivue();
  for (const m of nv.meshes.slice()) nv.removeMesh(m);
  const mesh = new niivue.NVMesh(decode(data.positions, Float32Array), decode(data.faces, Uint32Array),
    data.title, decode(data.colours, Uint8Array), 1.0, true, nv.gl);
  nv.addMesh(mesh);
  nv.drawScene();
  const legend = $("legend3d");
  legend.innerHTML = `<strong>${data.title}</strong><ul>` + (data.legend || []).slice(0, 30).map((e) =>
    `<li><span class="swatch" style="background:${e.color}"></span>${e.name}</li>`).join("") + "</ul>";
  S.mesh = data;
}

async function showSurface() {
  showTab("3d");
  const colour = $("colouring").value;
  const q = new URLSearchParams({ colour });
  if (["pred", "errors"].includes(colour)) q.set("run", $("run").value);
  try {
    await showMesh(await api(`${brainUrl()}/surfaces/${$("hemi").value}?${q}`));
    say(`midsurface ${$("hemi").value} coloured by ${colour}`);
  } catch (error) { say(errorText(error), true); }
}

async function showMap(source, area) {
  showTab("3d");
  try {
    const data = await api(`${brainUrl()}/maps3d/${encodeURIComponent(source)}/${encodeURIComponent(area)}`);
    await showMesh(data);
    const table = $("stats");
    table.innerHTML = "";
    if (data.stats.length) {
      const cols = Object.keys(data.stats[0]);
      table.insertRow().innerHTML = cols.map((c) => `<th>${c}</th>`).join("");
      for (const row of data.stats) table.insertRow().innerHTML = cols.map((c) => `<td>${row[c]}</td>`).join("");
    }
    say(`3D map of ${area} from ${source}` + (data.map_stale ? " (stale: its inputs changed)" : ""));
  } catch (error) { say(errorText(error), true); }
}

// ---------------------------------------------------------------------------------------- status
async function checkStatus() {
  $("status").textContent = "checking...";
  try {
    const data = await api(`${brainUrl()}/status`);
    const rows = data.stages.map((s) => `<li class="${s.state}">${s.label}: ${s.state}` +
      (s.reasons.length ? ` (${s.reasons[0]})` : "") + (s.state !== "done" ? ` <code>${s.command}</code>` : "") + "</li>");
    $("status").innerHTML = `<p>${Object.entries(data.counts).map(([k, v]) => `${v} ${k}`).join(", ")}</p><ul>${rows.join("")}</ul>`;
  } catch (error) { $("status").textContent = errorText(error); }
}

init().catch((error) => say("could not start: " + errorText(error), true));
