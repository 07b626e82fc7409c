// Plots of a result's columns: histogram, scatter and 2-D density, drawn on a canvas. A small result's rows are
// read from its stored pages; for a large one the binning runs in the engine, as an ADQL GROUP BY over the job's
// query: millions of rows are never shipped to the browser.
import * as api from "./api.js";
import { el, fmtNum } from "./dom.js";

/** Results at most this long are plotted from their rows; longer ones are binned by the engine. */
export const ROWS_IN_BROWSER = 5000;

export function ident(name) {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(name) ? name : `"${name.replace(/"/g, '""')}"`;
}

/** The job's query usable as a subquery: a final ORDER BY (which a subquery may not have) is dropped. */
export function asSubquery(query) {
  return query.trim().replace(/;\s*$/, "").replace(/\s+ORDER\s+BY\s+[^()]*$/i, "");
}

async function rowsOf(job, names) {
  const out = [];
  const first = await api.page(job.id, { offset: 0, limit: 1000 });
  const idx = names.map((n) => first.columns.findIndex((c) => c.name === n));
  const take = (page) => { for (const r of page.rows) out.push(idx.map((i) => (typeof r[i] === "number" ? r[i] : NaN))); };
  take(first);
  const pages = [];
  for (let o = 1000; o < Math.min(first.total, ROWS_IN_BROWSER); o += 1000) pages.push(api.page(job.id, { offset: o, limit: 1000 }));
  for (const p of await Promise.all(pages)) take(p);
  return out;
}

const small = (job) => job.rows != null && job.rows <= ROWS_IN_BROWSER && !job.overflow;

/** {lo, hi, counts[]} of column `x`, with `bins` bins. */
export async function histogram(job, x, bins = 50) {
  if (small(job)) {
    const values = (await rowsOf(job, [x])).map((r) => r[0]).filter(Number.isFinite);
    if (!values.length) return { lo: 0, hi: 1, counts: [], engine: false };
    let lo = Infinity, hi = -Infinity;
    for (const v of values) { if (v < lo) lo = v; if (v > hi) hi = v; }
    const w = hi > lo ? (hi - lo) / bins : 1;
    const counts = new Array(bins).fill(0);
    for (const v of values) counts[Math.min(bins - 1, Math.floor((v - lo) / w))]++;
    return { lo, hi: lo + w * bins, counts, engine: false };
  }
  const q = asSubquery(job.query), c = `t.${ident(x)}`;
  const stats = await api.syncRows(`SELECT MIN(${c}) AS lo, MAX(${c}) AS hi FROM (${q}) AS t`);
  const [lo, hi] = stats.rows[0] || [];
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return { lo: 0, hi: 1, counts: [], engine: true };
  const w = hi > lo ? (hi - lo) / bins : 1;
  const b = `FLOOR((${c} - (${lo})) / ${w})`;
  const r = await api.syncRows(`SELECT ${b} AS bin, COUNT(*) AS n FROM (${q}) AS t WHERE ${c} IS NOT NULL GROUP BY ${b}`);
  const counts = new Array(bins).fill(0);
  for (const [bin, n] of r.rows) counts[Math.max(0, Math.min(bins - 1, bin))] += n;
  return { lo, hi: lo + w * bins, counts, engine: true, adql: r };
}

/** Points (small results) or a 2-D grid of counts (large ones, binned by the engine). */
export async function scatter(job, x, y, bins = 120) {
  if (small(job)) return { points: (await rowsOf(job, [x, y])).filter(([a, b]) => Number.isFinite(a) && Number.isFinite(b)) };
  return density2d(job, x, y, bins);
}

export async function density2d(job, x, y, bins = 120) {
  const q = asSubquery(job.query), cx = `t.${ident(x)}`, cy = `t.${ident(y)}`;
  const stats = await api.syncRows(`SELECT MIN(${cx}) AS x0, MAX(${cx}) AS x1, MIN(${cy}) AS y0, MAX(${cy}) AS y1 FROM (${q}) AS t`);
  const [x0, x1, y0, y1] = stats.rows[0] || [];
  if (![x0, x1, y0, y1].every(Number.isFinite)) return { grid: null };
  const wx = x1 > x0 ? (x1 - x0) / bins : 1, wy = y1 > y0 ? (y1 - y0) / bins : 1;
  const bx = `FLOOR((${cx} - (${x0})) / ${wx})`, by = `FLOOR((${cy} - (${y0})) / ${wy})`;
  const r = await api.syncRows(`SELECT ${bx} AS bx, ${by} AS by_, COUNT(*) AS n FROM (${q}) AS t WHERE ${cx} IS NOT NULL AND ${cy} IS NOT NULL GROUP BY ${bx}, ${by}`, 1000000);
  const grid = new Float64Array(bins * bins);
  for (const [i, j, n] of r.rows) grid[Math.min(bins - 1, j) * bins + Math.min(bins - 1, i)] += n;
  return { grid, bins, x0, x1: x0 + wx * bins, y0, y1: y0 + wy * bins };
}

// ---- drawing ----

const PAD = { left: 64, right: 16, top: 16, bottom: 44 };

function ticks(lo, hi, n = 6) {
  const span = hi - lo || 1;
  const step0 = span / n, mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => span / s <= n) || 10 * mag;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return out;
}

/** Axes over [x0, x1] and [y0, y1]; `flip.x`/`flip.y` run an axis the other way (magnitudes: bright up). */
function frame(canvas, [x0, x1], [y0, y1], xLabel, yLabel, flip = {}) {
  if (flip.x) [x0, x1] = [x1, x0];
  if (flip.y) [y0, y1] = [y1, y0];
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height;
  ctx.clearRect(0, 0, W, H);
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, H);
  const px = (x) => PAD.left + ((x - x0) / (x1 - x0 || 1)) * (W - PAD.left - PAD.right);
  const py = (y) => H - PAD.bottom - ((y - y0) / (y1 - y0 || 1)) * (H - PAD.top - PAD.bottom);
  ctx.strokeStyle = "#444"; ctx.fillStyle = "#222"; ctx.font = "12px sans-serif"; ctx.lineWidth = 1;
  ctx.strokeRect(PAD.left, PAD.top, W - PAD.left - PAD.right, H - PAD.top - PAD.bottom);
  ctx.textAlign = "center"; ctx.textBaseline = "top";
  for (const t of ticks(Math.min(x0, x1), Math.max(x0, x1))) { const X = px(t); ctx.beginPath(); ctx.moveTo(X, H - PAD.bottom); ctx.lineTo(X, H - PAD.bottom + 4); ctx.stroke(); ctx.fillText(fmtNum(t), X, H - PAD.bottom + 6); }
  ctx.fillText(xLabel, (PAD.left + W - PAD.right) / 2, H - 18);
  ctx.textAlign = "right"; ctx.textBaseline = "middle";
  for (const t of ticks(Math.min(y0, y1), Math.max(y0, y1))) { const Y = py(t); ctx.beginPath(); ctx.moveTo(PAD.left - 4, Y); ctx.lineTo(PAD.left, Y); ctx.stroke(); ctx.fillText(fmtNum(t), PAD.left - 6, Y); }
  ctx.save(); ctx.translate(14, (PAD.top + H - PAD.bottom) / 2); ctx.rotate(-Math.PI / 2); ctx.textAlign = "center"; ctx.fillText(yLabel, 0, 0); ctx.restore();
  return { ctx, px, py };
}

export function drawHistogram(canvas, h, xLabel) {
  const max = Math.max(1, ...h.counts);
  const { ctx, px, py } = frame(canvas, [h.lo, h.hi], [0, max * 1.05], xLabel, "count");
  const w = (h.hi - h.lo) / (h.counts.length || 1);
  ctx.fillStyle = "#3b6ea8";
  h.counts.forEach((n, i) => { if (n) { const a = px(h.lo + i * w), b = px(h.lo + (i + 1) * w); ctx.fillRect(a, py(n), Math.max(1, b - a - 1), py(0) - py(n)); } });
}

export function drawScatter(canvas, s, xLabel, yLabel, flip = {}) {
  if (s.grid) return drawDensity(canvas, s, xLabel, yLabel, flip);
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const [x, y] of s.points) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
  if (!s.points.length) { x0 = y0 = 0; x1 = y1 = 1; }
  const { ctx, px, py } = frame(canvas, [x0, x1], [y0, y1], xLabel, yLabel, flip);
  ctx.fillStyle = "rgba(40, 80, 160, 0.6)";
  for (const [x, y] of s.points) ctx.fillRect(px(x) - 1.5, py(y) - 1.5, 3, 3);
}

export function drawDensity(canvas, d, xLabel, yLabel, flip = {}) {
  if (!d.grid) return frame(canvas, [0, 1], [0, 1], xLabel, yLabel, flip);
  const { ctx, px, py } = frame(canvas, [d.x0, d.x1], [d.y0, d.y1], xLabel, yLabel, flip);
  const max = Math.max(1, ...d.grid);
  const wx = (d.x1 - d.x0) / d.bins, wy = (d.y1 - d.y0) / d.bins;
  for (let j = 0; j < d.bins; j++) for (let i = 0; i < d.bins; i++) {
    const n = d.grid[j * d.bins + i];
    if (!n) continue;
    ctx.fillStyle = colour(Math.log1p(n) / Math.log1p(max));
    const a = px(d.x0 + i * wx), b = px(d.x0 + (i + 1) * wx), c = py(d.y0 + (j + 1) * wy), e = py(d.y0 + j * wy);
    ctx.fillRect(Math.min(a, b), Math.min(c, e), Math.ceil(Math.abs(b - a)), Math.ceil(Math.abs(e - c)));
  }
}

/** A perceptually ordered colour for t in [0, 1] (dark blue to yellow). */
export function colour(t) {
  const stops = [[13, 8, 135], [84, 2, 163], [139, 10, 165], [185, 50, 137], [219, 92, 104], [244, 136, 73], [254, 188, 43], [240, 249, 33]];
  const x = Math.max(0, Math.min(1, t)) * (stops.length - 1);
  const i = Math.min(stops.length - 2, Math.floor(x)), f = x - i;
  const [r, g, b] = stops[i].map((v, k) => Math.round(v + (stops[i + 1][k] - v) * f));
  return `rgb(${r},${g},${b})`;
}

/** An identifier column (by UCD, or named id / *_id): never a useful default axis. */
const isId = (c) => /^meta\.id/.test(c.ucd || "") || /(^|_)id$/i.test(c.name);
/** A magnitude column: its axis runs bright (small) to faint by default, as astronomers draw them. */
export const isMagnitude = (c) => /^phot\.mag/.test(c.ucd || "") || c.unit === "mag";

/** An axis label: the column's name and unit. */
export function axisLabel(columns, name) {
  const c = columns.find((x) => x.name === name);
  return c?.unit ? `${name} [${c.unit}]` : name;
}

/** The axis choosers (defaults skip identifier columns) and "reverse" boxes (on for a magnitude y axis). */
export function plotControls(columns) {
  const cols = columns.filter((c) => c.numeric);
  const numeric = cols.map((c) => c.name);
  const measured = cols.filter((c) => !isId(c)).map((c) => c.name);
  const xPick = measured[0] ?? numeric[0];
  const yPick = measured[1] ?? measured[0] ?? numeric[Math.min(1, numeric.length - 1)];
  const select = (id, label, pick) => el("label", {}, `${label} `, el("select", { id }, ...numeric.map((n) => el("option", { value: n, selected: n === pick ? "" : undefined }, n))));
  const box = (id, label) => el("label", { title: `Run the ${label} axis from high to low` }, el("input", { type: "checkbox", id }), ` reverse ${label}`);
  const x = select("plot-x", "x", xPick), y = select("plot-y", "y", yPick);
  const flipX = box("plot-flip-x", "x"), flipY = box("plot-flip-y", "y");
  const follow = (chooser, flip) => {
    const sync = () => { flip.querySelector("input").checked = isMagnitude(cols.find((c) => c.name === chooser.querySelector("select").value) || {}); };
    chooser.querySelector("select").addEventListener("change", sync);
    sync();
  };
  follow(y, flipY);
  return { numeric, x, y, flipX, flipY };
}
