// The portal's page: wires the schema browser, the editor, jobs and their progress, results, plots, the sky view
// and the notebook hand-off together. It speaks only the service's public APIs (TAP, UWS, VOSI and the JSON
// endpoints under /api/v1) and loads nothing from anywhere else.
import * as api from "./api.js";
import { el, fmtCount, fmtMs } from "./dom.js";
import { createEditor } from "./editor.js";
import { renderSchema } from "./schema.js";
import { loadJobs, renderJobs, follow, renderProgress, rememberJob } from "./jobs.js";
import { ResultView } from "./results.js";
import * as plot from "./plot.js";
import { SkyView, constraint, parseTarget, readout } from "./sky.js";
import * as handoff from "./handoff.js";

const $ = (id) => document.getElementById(id);

const state = {
  tables: [],
  uploads: [], // [{name, file}]
  job: null, // the job shown
  stopFollowing: null,
};
window.portal = state; // for the browser tests and the curious

const results = new ResultView($("tab-results"));

function showTab(name) {
  for (const b of document.querySelectorAll("#tabs button")) b.setAttribute("aria-selected", String(b.dataset.tab === name));
  for (const s of document.querySelectorAll("section[role=tabpanel]")) s.hidden = s.id !== `tab-${name}`;
  if (name === "jobs") refreshJobs();
  if (name === "python") showHandoff(state.job);
}
for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => showTab(b.dataset.tab));

const editor = createEditor($("editor"), {
  initial: "",
  onRun: () => run(),
  onCheck: (r) => {
    const s = $("check-status");
    s.className = !r ? "" : r.ok ? "ok" : "bad";
    s.textContent = !r ? "" : r.ok ? "✓ valid ADQL" : `✗ ${r.line ? `${r.line}:${r.col} ` : ""}${r.message}`;
  },
});
state.editor = editor;

// ---- identity ----

async function who() {
  const me = await api.me().catch(() => ({ anonymous: true, auth: "none" }));
  const box = $("who");
  box.replaceChildren();
  if (!me.anonymous) {
    const out = el("button", { type: "button" }, "Log out");
    out.addEventListener("click", async () => { await api.logout(); location.reload(); });
    box.append(`${me.user} `, out);
    $("login").hidden = true;
  } else if (me.auth !== "none") {
    // The browser still holds the cookie (HttpOnly: only the service can clear it).
    if (me.ended) await api.forgetSession();
    if (me.ended) box.append(el("p", { id: "session-ended", class: "error" }, "Your session has ended (logged out elsewhere, expired or revoked): log in again."));
    if (me.needsLogin) {
      box.append("This service needs you to log in.");
      $("login").hidden = false;
    } else {
      const open = el("button", { type: "button", id: "login-open" }, "Log in");
      open.addEventListener("click", () => { $("login").hidden = false; $("login").querySelector("input").focus(); });
      box.append("Anonymous ", open);
    }
  }
  return me;
}

$("login").addEventListener("submit", async (e) => {
  e.preventDefault();
  const f = new FormData(e.target);
  try {
    await api.login(f.get("username"), f.get("password"));
    location.reload();
  } catch (err) {
    $("login-error").textContent = err.message;
  }
});

// ---- schema ----

async function loadSchema() {
  try {
    state.tables = await api.getJson("/api/v1/tables");
  } catch (e) {
    $("schema-tree").replaceChildren(el("p", { class: "error" }, e.message));
    return;
  }
  const draw = () => renderSchema($("schema-tree"), state.tables, {
    insert: (t) => editor.insert(t),
    insertColumn: (table, column) => editor.insertColumn(columnReference(editor.getText(), table, column)),
    replace: (t) => editor.setText(t),
    filter: $("schema-filter").value,
  });
  $("schema-filter").addEventListener("input", draw);
  draw();
  const functions = await api.functions().catch(() => []);
  editor.setSchema(state.tables, functions);
  const source = $("sky-source");
  source.replaceChildren(...state.tables.filter((t) => t.position).map((t) => el("option", { value: t.name }, t.name)),
    el("option", { value: "" }, "the current result's query"));
}

async function loadExamples() {
  const list = await api.examples().catch(() => []);
  const select = $("examples");
  for (const [i, e] of list.entries()) select.append(el("option", { value: String(i) }, e.name));
  select.addEventListener("change", () => {
    const e = list[Number(select.value)];
    if (e) editor.setText(e.query);
    select.value = "";
  });
}

// ---- uploads ----

function addUpload(file) {
  let name = file.name.replace(/\.[^.]*$/, "").toLowerCase().replace(/[^a-z0-9_]/g, "_").replace(/^([^a-z])/, "t_$1") || "upload";
  while (state.uploads.some((u) => u.name === name)) name += "_2";
  state.uploads.push({ name, file });
  drawUploads();
}

function drawUploads() {
  $("uploads").replaceChildren(...state.uploads.map((u) => {
    const x = el("button", { type: "button", class: "link", "aria-label": `Remove ${u.name}` }, "×");
    x.addEventListener("click", () => { state.uploads = state.uploads.filter((v) => v !== u); drawUploads(); });
    const use = el("button", { type: "button", class: "link", title: "Insert the table's name" }, `TAP_UPLOAD.${u.name}`);
    use.addEventListener("click", () => editor.insert(`TAP_UPLOAD.${u.name}`));
    return el("span", { class: "chip" }, use, " ", x);
  }));
}

$("upload").addEventListener("change", (e) => { for (const f of e.target.files) addUpload(f); e.target.value = ""; });
const drop = $("editor");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("drop"); });
drop.addEventListener("dragleave", () => drop.classList.remove("drop"));
drop.addEventListener("drop", (e) => {
  drop.classList.remove("drop");
  if (e.dataTransfer?.files?.length) { e.preventDefault(); for (const f of e.dataTransfer.files) addUpload(f); }
});

/** How the query in the editor can name `column` of `table`: by the table's alias (`o.ra`), bare when the table
 * is the query's only one, else qualified (`sky.object.ra`). */
function columnReference(text, table, column) {
  const escaped = table.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const named = new RegExp(`\\b(?:FROM|JOIN)\\s+${escaped}\\b(?:\\s+(?:AS\\s+)?(?!(?:JOIN|WHERE|ON|GROUP|ORDER|LEFT|RIGHT|INNER|FULL|CROSS|NATURAL|UNION|HAVING|OFFSET)\\b)([A-Za-z_][A-Za-z0-9_]*))?`, "i").exec(text);
  if (named?.[1]) return `${named[1]}.${column}`;
  const tables = (text.match(/\b(?:FROM|JOIN)\s+[A-Za-z_"]/gi) || []).length;
  return named && tables <= 1 ? column : `${table}.${column}`;
}

// ---- running ----

/** The planner's warnings about a query (a join it would do at the czar over whole tables), or none when it cannot
 * plan it (the job then reports the error as usual). */
async function planWarnings(text) {
  try {
    return (await api.explain(text, state.uploads)).split("\n")
      .filter((l) => l.startsWith("warning: ")).map((l) => l.slice("warning: ".length));
  } catch (_) {
    return [];
  }
}

async function run(text = editor.getText(), { confirmed = false } = {}) {
  if (!text.trim()) return;
  const maxrec = Number($("maxrec").value) || undefined;
  $("progress").replaceChildren(el("span", { class: "muted" }, "Submitting…"));
  const warnings = confirmed ? [] : await planWarnings(text);
  if (warnings.length) {
    // Said before running, with the choice: a query the planner knows will gather whole tables at the czar.
    const go = el("button", { type: "button", id: "run-anyway" }, "Run anyway");
    const back = el("button", { type: "button", id: "run-cancel" }, "Cancel");
    go.addEventListener("click", () => run(text, { confirmed: true }));
    back.addEventListener("click", () => $("progress").replaceChildren());
    $("progress").replaceChildren(el("div", { class: "warning", role: "alert", id: "plan-warning" },
      el("p", {}, "This query may run for a very long time:"),
      ...warnings.map((w) => el("p", {}, w)),
      el("p", {}, go, " ", back)));
    return;
  }
  let id;
  try {
    id = await api.createJob(text, { maxrec, uploads: state.uploads });
  } catch (e) {
    $("progress").replaceChildren(el("pre", { class: "error", role: "alert" }, e.message));
    return;
  }
  rememberJob(id);
  await openJob({ id, query: text, phase: "QUEUED" });
}

async function openJob(job) {
  state.stopFollowing?.();
  state.job = job;
  if (job.query && editor.getText() !== job.query) editor.setText(job.query);
  history.replaceState(null, "", handoff.permalink(job.query, job.id).replace(location.origin, ""));
  showHandoff(job);
  results.clear(job.phase === "COMPLETED" ? "" : "The result appears here when the job has finished.");
  showTab("results");
  state.stopFollowing = follow(job.id, (j) => {
    state.job = { ...state.job, ...j };
    renderProgress($("progress"), state.job);
  }, (j) => {
    state.job = { ...state.job, ...j };
    renderProgress($("progress"), state.job);
    showHandoff(state.job);
    if (j.phase === "COMPLETED") {
      // The positions are drawn once the result's columns are known (they name the position columns).
      results.show(state.job).then(() => { plotAxes(); return showPositions(); });
    } else {
      results.clear(j.phase === "ERROR" ? "The job failed: see the message above." : `The job is ${j.phase}.`);
    }
  });
}

$("run").addEventListener("click", () => run());

$("explain").addEventListener("click", async () => {
  showTab("explain");
  $("explain-text").textContent = "Planning…";
  try {
    $("explain-text").textContent = await api.explain(editor.getText(), state.uploads);
    $("explain-text").className = "";
  } catch (e) {
    $("explain-text").textContent = e.message;
    $("explain-text").className = "error";
  }
});

$("permalink").addEventListener("click", async () => {
  const link = handoff.permalink(editor.getText(), state.job?.id);
  history.replaceState(null, "", link.replace(location.origin, ""));
  try { await navigator.clipboard.writeText(link); $("check-status").textContent = "link copied"; } catch (_) { $("check-status").textContent = link; }
});

// ---- jobs ----

async function refreshJobs() {
  const jobs = await loadJobs();
  renderJobs($("tab-jobs"), jobs, {
    open: (j) => openJob(j),
    rerun: (j) => run(j.query),
    changed: () => refreshJobs(),
  });
}
setInterval(() => { if (!$("tab-jobs").hidden) refreshJobs(); }, 3000);

// ---- hand-off ----

// A logged-in user's snippet carries a notebook token, made once per page when the Python tab is first opened
// (not for every job: a user holds a bounded number of them).
async function notebookToken() {
  if (!state.me || state.me.anonymous) return null;
  if (!state.notebookToken) {
    state.notebookToken = api.notebookToken().catch((e) => {
      state.notebookToken = null;
      $("python-status").textContent = `No token in the snippet: ${e.message}`;
      return null;
    });
  }
  return state.notebookToken;
}

async function showHandoff(job) {
  if (!job) return;
  const token = $("tab-python").hidden ? null : await notebookToken();
  $("python-snippet").textContent = handoff.snippet(job, token);
  const blob = new Blob([handoff.notebook(job, token)], { type: "application/x-ipynb+json" });
  const a = $("python-ipynb");
  if (a.dataset.url) URL.revokeObjectURL(a.dataset.url);
  a.dataset.url = URL.createObjectURL(blob);
  a.href = a.dataset.url;
  a.download = `skyshard-${job.id}.ipynb`;
}
$("python-copy").addEventListener("click", async () => {
  try { await navigator.clipboard.writeText($("python-snippet").textContent); $("python-copy").textContent = "Copied"; } catch (_) { /* the text is selectable */ }
});

// ---- plots ----

function plotAxes() {
  const cols = results.state?.columns || [];
  const { numeric, x, y, flipX, flipY } = plot.plotControls(cols);
  $("plot-axes").replaceChildren(x, " ", y, " ", flipX, " ", flipY);
  $("plot-status").textContent = numeric.length ? "" : "The result has no numeric columns.";
}

$("plot-draw").addEventListener("click", async () => {
  const job = state.job;
  if (!job || job.phase !== "COMPLETED") { $("plot-status").textContent = "Run a query first."; return; }
  const kind = $("plot-kind").value, x = $("plot-x")?.value, y = $("plot-y")?.value;
  if (!x) return;
  const canvas = $("plot-canvas");
  const columns = results.state?.columns || [];
  const xLabel = plot.axisLabel(columns, x), yLabel = plot.axisLabel(columns, y);
  const flip = { x: !!$("plot-flip-x")?.checked, y: !!$("plot-flip-y")?.checked };
  const started = performance.now();
  $("plot-status").textContent = "Binning…";
  try {
    if (kind === "histogram") {
      const h = await plot.histogram(job, x);
      state.lastPlot = { kind, x, ...h };
      plot.drawHistogram(canvas, h, xLabel);
      $("plot-status").textContent = `${h.engine ? "binned by the engine" : "binned here"} in ${fmtMs(performance.now() - started)}`;
    } else if (kind === "scatter") {
      const s = await plot.scatter(job, x, y);
      state.lastPlot = { kind, x, y, points: s.points?.length, xLabel, yLabel, flip };
      plot.drawScatter(canvas, s, xLabel, yLabel, flip);
      $("plot-status").textContent = s.grid ? `too many rows to draw: density binned by the engine in ${fmtMs(performance.now() - started)}` : `${fmtCount(s.points.length)} points`;
    } else {
      const d = await plot.density2d(job, x, y);
      state.lastPlot = { kind, x, y, total: d.grid ? d.grid.reduce((a, b) => a + b, 0) : 0, xLabel, yLabel, flip };
      plot.drawDensity(canvas, d, xLabel, yLabel, flip);
      $("plot-status").textContent = `binned by the engine in ${fmtMs(performance.now() - started)}`;
    }
    canvas.dataset.drawn = kind;
  } catch (e) {
    $("plot-status").textContent = e.message;
  }
});

// ---- sky ----

const sky = new SkyView($("sky-canvas"), {
  onStatus: (t) => { $("sky-where").textContent = t; },
  onRegion: (shape) => writeRegion(shape),
});
state.sky = sky;

$("sky-goto-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const typed = $("sky-goto").value;
  const target = parseTarget(typed);
  if (!target) {
    $("sky-status").textContent = `"${typed}" is not a position (degrees or hh:mm:ss ±dd:mm:ss) or a name this portal knows`;
    return;
  }
  sky.goTo(target[0], target[1]);
  $("sky-status").textContent = `Centred on ${typed.trim()}: ${readout(target[0], target[1])}`;
});

$("sky-projection").addEventListener("change", (e) => { sky.projection = e.target.value; sky.zoom = 1; sky.ox = sky.oy = 0; sky.draw(); });
for (const r of document.querySelectorAll("input[name=sky-mode]")) r.addEventListener("change", () => { sky.mode = r.value; });

/** The position columns of the shown result: by UCD, else by name. */
function resultPosition() {
  const cols = results.state?.columns || [];
  const find = (ucd, names) => (cols.find((c) => (c.ucd || "").toLowerCase().startsWith(ucd)) || cols.find((c) => names.includes(c.name.toLowerCase())))?.name;
  const ra = find("pos.eq.ra", ["ra", "ra_icrs", "raj2000"]), dec = find("pos.eq.dec", ["dec", "de", "dec_icrs", "dej2000"]);
  return ra && dec ? [ra, dec] : null;
}

$("sky-density").addEventListener("click", async () => {
  const name = $("sky-source").value, order = Number($("sky-order").value);
  $("sky-status").textContent = "Counting…";
  try {
    let d;
    if (name) d = await sky.densityOfTable(state.tables.find((t) => t.name === name), order);
    else {
      const pos = resultPosition();
      if (!state.job?.query || !pos) throw new Error("The current result has no RA and Dec columns to map.");
      d = await sky.densityOfQuery(state.job.query, pos[0], pos[1], order);
    }
    $("sky-status").textContent = `${fmtCount(d.rows)} rows in ${fmtCount(d.counts.size)} cells of order ${d.order}, counted by the engine in ${fmtMs(d.ms)}`;
    $("sky-canvas").dataset.densityMs = String(Math.round(d.ms));
  } catch (e) {
    $("sky-status").textContent = e.message;
  }
});

$("sky-coverage").addEventListener("click", async () => {
  const table = state.tables.find((t) => t.name === $("sky-source").value);
  if (!table) { $("sky-status").textContent = "Pick a table for its coverage."; return; }
  try {
    const c = await sky.loadCoverage(table);
    $("sky-status").textContent = `${table.name} covers ${fmtCount(c.cells.size)} of ${fmtCount(12 * 4 ** c.order)} cells of order ${c.order}`;
  } catch (e) {
    $("sky-status").textContent = e.message;
  }
});

async function showPositions() {
  const pos = resultPosition();
  if (!pos || !state.job) { sky.setPoints([]); return; }
  const pts = [];
  const first = await api.page(state.job.id, { limit: 1000 });
  const [i, j] = pos.map((p) => first.columns.findIndex((c) => c.name === p));
  for (const r of first.rows) if (typeof r[i] === "number" && typeof r[j] === "number") pts.push([r[i], r[j]]);
  sky.setPoints(pts);
}

/** Writes a drawn region into the query: over the shown table's (or the result's) position columns. */
function writeRegion(shape) {
  const text = editor.getText();
  const from = text.match(/\bFROM\s+([A-Za-z_][\w]*\.[A-Za-z_][\w]*)/i);
  let table = from && state.tables.find((t) => t.name.toLowerCase() === from[1].toLowerCase() && t.position);
  if (!table) table = state.tables.find((t) => t.name === $("sky-source").value) || state.tables.find((t) => t.position);
  if (!table) return;
  const c = constraint(shape, table.position[0], table.position[1]);
  const query = from && table.name.toLowerCase() === from[1].toLowerCase() && !/\bWHERE\b/i.test(text)
    ? `${text.trimEnd()}\nWHERE ${c}`
    : `SELECT TOP 1000 *\nFROM ${table.name}\nWHERE ${c}`;
  editor.setText(query);
  $("sky-status").textContent = "The region is in the query: Run to see its rows.";
}

// ---- start ----

async function start() {
  const started = performance.now();
  const me = await who();
  state.me = me;
  if (me.needsLogin) return;
  await Promise.all([loadSchema(), loadExamples()]);
  const { query, job } = handoff.fromHash();
  if (query) editor.setText(query);
  if (job) {
    try { await openJob(await api.job(job)); } catch (e) { $("progress").replaceChildren(el("pre", { class: "error" }, e.message)); }
  } else if (!query) {
    const director = state.tables.find((t) => t.position);
    // Near the Galactic centre, where every survey of the plane has rows.
    if (director) editor.setText(`SELECT TOP 100 *\nFROM ${director.name}\nWHERE CONTAINS(POINT('ICRS', ${director.position[0]}, ${director.position[1]}), CIRCLE('ICRS', 266.4, -29.0, 1)) = 1`);
  }
  fetch("/tap/availability").then((r) => r.text()).then((t) => {
    $("service").textContent = /<(\w+:)?available>\s*true/.test(t) ? "service available" : "service unavailable";
  }).catch(() => {});
  document.body.dataset.ready = String(Math.round(performance.now() - started));
}

start();
