// The sky view: an all-sky map (Hammer-Aitoff, Mollweide or HEALPix projection) drawn on a canvas, with pan and
// zoom; a HEALPix density map of any table or query computed by the engine as a GROUP BY on the HEALPix index; the
// result's positions; and drawing a circle or a polygon writes the CONTAINS(...) constraint into the query.
import * as api from "./api.js";
import { ang2pixNest, distanceDeg, PROJECTIONS } from "./healpix.js";
import { colour, ident, asSubquery } from "./plot.js";

const RAD = Math.PI / 180;

export class SkyView {
  constructor(canvas, { onRegion, onStatus }) {
    this.canvas = canvas;
    this.onRegion = onRegion;
    this.onStatus = onStatus || (() => {});
    this.projection = "Hammer-Aitoff";
    this.lon0 = 180; // the map's centre, RA in degrees
    this.zoom = 1;
    this.ox = 0;
    this.oy = 0;
    this.mode = "pan";
    this.density = null; // {order, counts: Map(index -> n), max}
    this.points = [];
    this.shape = null; // what is being drawn: {circle: {ra, dec, r}} or {polygon: [[ra, dec], ...]}
    this.listen();
    this.draw();
  }

  get scale() {
    const [ex, ey] = PROJECTIONS[this.projection].extent;
    return Math.min(this.canvas.width / (2 * ex), this.canvas.height / (2 * ey)) * 0.96 * this.zoom;
  }

  /** Screen -> [ra, dec] in degrees, or null off the map. */
  unproject(sx, sy) {
    const s = this.scale;
    const x = (sx - this.canvas.width / 2 - this.ox) / s;
    const y = -(sy - this.canvas.height / 2 - this.oy) / s;
    const lp = PROJECTIONS[this.projection].inverse(-x, y);
    if (!lp) return null;
    return [(((this.lon0 + lp[0] / RAD) % 360) + 360) % 360, lp[1] / RAD];
  }

  /** [ra, dec] in degrees -> screen. */
  project(ra, dec) {
    let l = ((ra - this.lon0) % 360 + 540) % 360 - 180;
    const [x, y] = PROJECTIONS[this.projection].forward(l * RAD, dec * RAD);
    const s = this.scale;
    return [this.canvas.width / 2 + this.ox - x * s, this.canvas.height / 2 + this.oy - y * s];
  }

  async loadDensity(from, raCol, decCol, order = 6) {
    const index = `ivo_healpix_index(${order}, ${raCol}, ${decCol})`;
    const query = `SELECT ${index} AS hpx, COUNT(*) AS n FROM ${from} GROUP BY ${index}`;
    const started = performance.now();
    const r = await api.syncRows(query, 12 * 4 ** order);
    const ms = performance.now() - started;
    const counts = new Map();
    let max = 0, rows = 0;
    for (const [hpx, n] of r.rows) { counts.set(hpx, n); max = Math.max(max, n); rows += n; }
    this.density = { order, counts, max, rows, ms, query };
    this.draw();
    return this.density;
  }

  densityOfTable(table, order) {
    return this.loadDensity(table.name, ident(table.position[0]), ident(table.position[1]), order);
  }

  densityOfQuery(query, raCol, decCol, order) {
    return this.loadDensity(`(${asSubquery(query)}) AS q`, `q.${ident(raCol)}`, `q.${ident(decCol)}`, order);
  }

  /** The coverage of a table: the HEALPix cells (order 3 or 4) that hold any of its rows, from the same GROUP BY;
   * the sky outside it is greyed. */
  async loadCoverage(table, order = 4) {
    const index = `ivo_healpix_index(${order}, ${ident(table.position[0])}, ${ident(table.position[1])})`;
    const r = await api.syncRows(`SELECT ${index} AS hpx, COUNT(*) AS n FROM ${table.name} GROUP BY ${index}`, 12 * 4 ** order);
    this.coverage = { order, cells: new Set(r.rows.map((row) => row[0])), table: table.name };
    this.draw();
    return this.coverage;
  }

  setPoints(points) { this.points = points; this.draw(); }

  draw() {
    const c = this.canvas, ctx = c.getContext("2d");
    const W = c.width, H = c.height;
    const img = ctx.createImageData(W, H);
    const d = this.density;
    const logMax = d ? Math.log1p(d.max) : 1;
    const palette = [];
    for (let i = 0; i < 256; i++) palette.push(colour(i / 255).match(/\d+/g).map(Number));
    for (let sy = 0; sy < H; sy++) {
      for (let sx = 0; sx < W; sx++) {
        const at = this.unproject(sx + 0.5, sy + 0.5);
        const o = 4 * (sy * W + sx);
        if (!at) { img.data[o] = img.data[o + 1] = img.data[o + 2] = 255; img.data[o + 3] = 255; continue; }
        let rgb = [236, 240, 245];
        if (d) {
          const n = d.counts.get(ang2pixNest(d.order, at[0], at[1]));
          if (n) rgb = palette[Math.min(255, Math.round((255 * Math.log1p(n)) / logMax))];
        }
        const cov = this.coverage;
        if (cov && !cov.cells.has(ang2pixNest(cov.order, at[0], at[1]))) rgb = [rgb[0] * 0.35 + 110, rgb[1] * 0.35 + 110, rgb[2] * 0.35 + 110];
        img.data[o] = rgb[0]; img.data[o + 1] = rgb[1]; img.data[o + 2] = rgb[2]; img.data[o + 3] = 255;
      }
    }
    ctx.putImageData(img, 0, 0);
    this.graticule(ctx);
    ctx.fillStyle = "rgba(220, 30, 30, 0.8)";
    for (const [ra, dec] of this.points) { const [x, y] = this.project(ra, dec); ctx.fillRect(x - 1.5, y - 1.5, 3, 3); }
    this.drawShape(ctx);
    this.drawTarget(ctx);
    this.drawColourBar(ctx);
  }

  /** The density's colour scale, bottom right: 1 to the densest cell's count, logarithmic as the cells are drawn. */
  drawColourBar(ctx) {
    const d = this.density;
    this.colourBar = null;
    if (!d || !d.max) return;
    const w = 160, h = 10, x = this.canvas.width - w - 16, y = this.canvas.height - 34;
    ctx.fillStyle = "rgba(255, 255, 255, 0.85)";
    ctx.fillRect(x - 8, y - 18, w + 16, h + 38);
    for (let i = 0; i < w; i++) { ctx.fillStyle = colour(i / (w - 1)); ctx.fillRect(x + i, y, 1, h); }
    ctx.strokeStyle = "#444";
    ctx.strokeRect(x, y, w, h);
    ctx.fillStyle = "#222";
    ctx.font = "11px sans-serif";
    ctx.textBaseline = "alphabetic";
    ctx.textAlign = "left";
    ctx.fillText(`rows per cell (order ${d.order}, log)`, x, y - 5);
    ctx.fillText("1", x, y + h + 13);
    ctx.textAlign = "right";
    ctx.fillText(d.max.toLocaleString("en"), x + w, y + h + 13);
    ctx.textAlign = "left";
    this.colourBar = { min: 1, max: d.max, order: d.order };
  }

  path(ctx, coords) {
    let prev = null;
    ctx.beginPath();
    for (const [ra, dec] of coords) {
      const p = this.project(ra, dec);
      // A jump across the map's edge is not a line on the sky.
      if (prev && Math.abs(p[0] - prev[0]) < this.canvas.width / 3) ctx.lineTo(p[0], p[1]); else ctx.moveTo(p[0], p[1]);
      prev = p;
    }
    ctx.stroke();
  }

  graticule(ctx) {
    ctx.strokeStyle = "rgba(60, 60, 60, 0.35)";
    ctx.lineWidth = 1;
    for (let ra = 0; ra < 360; ra += 30) this.path(ctx, Array.from({ length: 91 }, (_, i) => [ra, -90 + 2 * i]));
    for (let dec = -60; dec <= 60; dec += 30) this.path(ctx, Array.from({ length: 181 }, (_, i) => [this.lon0 - 180 + 2 * i + 1e-6, dec]));
    ctx.strokeStyle = "rgba(20, 20, 20, 0.8)";
    this.path(ctx, Array.from({ length: 91 }, (_, i) => [this.lon0 - 180 + 1e-6, -90 + 2 * i]));
    this.path(ctx, Array.from({ length: 91 }, (_, i) => [this.lon0 + 180 - 1e-6, -90 + 2 * i]));
    ctx.fillStyle = "#333";
    ctx.font = "11px sans-serif";
    // Labels on a pale ground, readable over dark density cells: RA every 30 degrees (in hours), Dec every 30.
    const label = (text, x, y) => {
      const w = ctx.measureText(text).width;
      ctx.fillStyle = "rgba(255, 255, 255, 0.75)";
      ctx.fillRect(x + 1, y - 12, w + 3, 13);
      ctx.fillStyle = "#222";
      ctx.fillText(text, x + 2, y - 2);
    };
    for (let ra = 0; ra < 360; ra += 30) { const [x, y] = this.project(ra, 0); label(`${ra / 15}h`, x, y); }
    for (let dec = -60; dec <= 60; dec += 30) {
      if (dec === 0) continue;
      const [x, y] = this.project(this.lon0 + 1e-6, dec);
      label(`${dec > 0 ? "+" : ""}${dec}°`, x, y);
    }
  }

  /** Centres the view on (ra, dec) at `zoom` and marks it. */
  goTo(ra, dec, zoom = 8) {
    this.lon0 = ra;
    this.zoom = zoom;
    this.ox = 0;
    this.oy = 0;
    const [, y] = this.project(ra, dec);
    this.oy = this.canvas.height / 2 - y;
    this.target = [ra, dec];
    this.draw();
  }

  drawTarget(ctx) {
    if (!this.target) return;
    const [x, y] = this.project(...this.target);
    ctx.strokeStyle = "#0a7";
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.arc(x, y, 8, 0, 2 * Math.PI);
    ctx.moveTo(x - 14, y); ctx.lineTo(x - 4, y); ctx.moveTo(x + 4, y); ctx.lineTo(x + 14, y);
    ctx.moveTo(x, y - 14); ctx.lineTo(x, y - 4); ctx.moveTo(x, y + 4); ctx.lineTo(x, y + 14);
    ctx.stroke();
  }

  drawShape(ctx) {
    if (!this.shape) return;
    ctx.strokeStyle = "#d00";
    ctx.lineWidth = 2;
    if (this.shape.circle) this.path(ctx, circlePoints(this.shape.circle));
    if (this.shape.polygon) this.path(ctx, [...this.shape.polygon, ...(this.shape.closed ? [this.shape.polygon[0]] : [])]);
  }

  listen() {
    const c = this.canvas;
    const at = (e) => { const r = c.getBoundingClientRect(); return [((e.clientX - r.left) * c.width) / r.width, ((e.clientY - r.top) * c.height) / r.height]; };
    let drag = null;
    c.addEventListener("pointerdown", (e) => {
      const [sx, sy] = at(e);
      if (this.mode === "circle") {
        const p = this.unproject(sx, sy);
        if (p) { drag = { circle: true }; this.shape = { circle: { ra: p[0], dec: p[1], r: 0 } }; }
      } else if (this.mode === "polygon") {
        const p = this.unproject(sx, sy);
        if (!p) return;
        if (!this.shape?.polygon || this.shape.closed) this.shape = { polygon: [] };
        this.shape.polygon.push(p);
        this.draw();
        return;
      } else drag = { pan: true, sx, sy, ox: this.ox, oy: this.oy };
      c.setPointerCapture(e.pointerId);
    });
    c.addEventListener("pointermove", (e) => {
      const [sx, sy] = at(e);
      const p = this.unproject(sx, sy);
      if (p) this.onStatus(readout(p[0], p[1]));
      if (!drag) return;
      if (drag.pan) { this.ox = drag.ox + sx - drag.sx; this.oy = drag.oy + sy - drag.sy; this.draw(); }
      if (drag.circle && p) { const k = this.shape.circle; k.r = distanceDeg(k.ra, k.dec, p[0], p[1]); this.draw(); }
    });
    c.addEventListener("pointerup", () => {
      if (drag?.circle && this.shape?.circle?.r > 0) this.onRegion(this.shape);
      drag = null;
    });
    c.addEventListener("dblclick", (e) => {
      if (this.mode === "polygon" && this.shape?.polygon?.length >= 3) {
        // The double click's own two clicks added the last vertex twice.
        const poly = this.shape.polygon;
        while (poly.length > 3 && distanceDeg(...poly[poly.length - 1], ...poly[poly.length - 2]) < 1e-6) poly.pop();
        this.shape.closed = true;
        this.draw();
        this.onRegion(this.shape);
      } else if (this.mode === "pan") {
        const p = this.unproject(...at(e));
        if (p) { this.lon0 = p[0]; this.ox = 0; this.oy = 0; this.draw(); }
      }
    });
    c.addEventListener("wheel", (e) => {
      e.preventDefault();
      this.zoomBy(e.deltaY < 0 ? 1.25 : 0.8, ...at(e));
    }, { passive: false });
    c.addEventListener("keydown", (e) => {
      const step = 40;
      const keys = { ArrowLeft: [step, 0], ArrowRight: [-step, 0], ArrowUp: [0, step], ArrowDown: [0, -step] };
      if (keys[e.key]) { this.ox += keys[e.key][0]; this.oy += keys[e.key][1]; this.draw(); e.preventDefault(); }
      if (e.key === "+" || e.key === "=") { this.zoomBy(1.25); e.preventDefault(); }
      if (e.key === "-") { this.zoomBy(0.8); e.preventDefault(); }
    });
  }

  zoomBy(f, sx = this.canvas.width / 2, sy = this.canvas.height / 2) {
    const cx = sx - this.canvas.width / 2, cy = sy - this.canvas.height / 2;
    this.ox = cx - (cx - this.ox) * f;
    this.oy = cy - (cy - this.oy) * f;
    this.zoom *= f;
    this.draw();
  }
}

/** Points on the small circle of radius r around (ra, dec), all in degrees. */
export function circlePoints({ ra, dec, r }, n = 120) {
  const out = [];
  const d = r * RAD, p1 = dec * RAD, l1 = ra * RAD;
  for (let i = 0; i <= n; i++) {
    const b = (2 * Math.PI * i) / n;
    const p2 = Math.asin(Math.sin(p1) * Math.cos(d) + Math.cos(p1) * Math.sin(d) * Math.cos(b));
    const l2 = l1 + Math.atan2(Math.sin(b) * Math.sin(d) * Math.cos(p1), Math.cos(d) - Math.sin(p1) * Math.sin(p2));
    out.push([((l2 / RAD) % 360 + 360) % 360, p2 / RAD]);
  }
  return out;
}

const f = (x) => Number(x.toFixed(6));

/** The ADQL constraint a drawn shape stands for, over the given position columns. */
export function constraint(shape, ra, dec) {
  if (shape.circle) {
    const { ra: a, dec: d, r } = shape.circle;
    return `CONTAINS(POINT('ICRS', ${ra}, ${dec}), CIRCLE('ICRS', ${f(a)}, ${f(d)}, ${f(r)})) = 1`;
  }
  const coords = shape.polygon.map(([a, d]) => `${f(a)}, ${f(d)}`).join(", ");
  return `CONTAINS(POINT('ICRS', ${ra}, ${dec}), POLYGON('ICRS', ${coords})) = 1`;
}

/** ra in hours, minutes, seconds; dec in degrees, arcminutes, arcseconds. */
export function sexagesimal(ra, dec) {
  const parts = (v, unit) => {
    const total = Math.round(v * unit * 3600 * 10) / 10; // tenths of a second
    const h = Math.floor(total / 3600), m = Math.floor((total - h * 3600) / 60), sec = total - h * 3600 - m * 60;
    return [h, m, sec];
  };
  const [h, m, s] = parts(((ra % 360) + 360) % 360, 1 / 15);
  const [d, am, as] = parts(Math.abs(dec), 1);
  const two = (n) => String(n).padStart(2, "0");
  return [`${two(h % 24)}h${two(m)}m${s.toFixed(1).padStart(4, "0")}s`,
    `${dec < 0 ? "-" : "+"}${two(d)}°${two(am)}'${Math.round(as).toString().padStart(2, "0")}"`];
}

/** The pointer's position as the status line shows it: sexagesimal and decimal. */
export function readout(ra, dec) {
  const [a, d] = sexagesimal(ra, dec);
  return `RA ${a} (${ra.toFixed(4)}°), Dec ${d} (${dec.toFixed(4)}°)`;
}

/** A few objects people go to by name (ICRS, degrees): no outside name resolver is asked. */
const NAMED = {
  "m1": [83.6331, 22.0145], "crab": [83.6331, 22.0145], "m8": [270.9042, -24.3867], "m13": [250.4217, 36.4613],
  "m16": [274.7, -13.8067], "m17": [275.1958, -16.1717], "m20": [270.6333, -23.03], "m27": [299.9017, 22.7211],
  "m31": [10.6847, 41.2690], "andromeda": [10.6847, 41.2690], "m33": [23.4621, 30.6599], "m42": [83.8221, -5.3911],
  "orion nebula": [83.8221, -5.3911], "m44": [130.1, 19.6667], "m45": [56.75, 24.1167], "pleiades": [56.75, 24.1167],
  "m51": [202.4696, 47.1952], "m57": [283.3962, 33.0292], "m81": [148.8882, 69.0653], "m82": [148.9685, 69.6797],
  "m87": [187.7059, 12.3911], "m101": [210.8024, 54.3488], "m104": [189.9976, -11.6231],
  "lmc": [80.8942, -69.7561], "smc": [13.1867, -72.8286], "ngc 253": [11.8881, -25.2883],
  "ngc 5128": [201.3651, -43.0191], "cen a": [201.3651, -43.0191], "omega cen": [201.6968, -47.4795],
  "47 tuc": [6.0236, -72.0813], "sgr a*": [266.4168, -29.0078], "galactic centre": [266.4051, -28.9362],
  "galactic center": [266.4051, -28.9362], "north galactic pole": [192.8595, 27.1283],
  "south galactic pole": [12.8595, -27.1283], "ncp": [0, 90], "scp": [0, -90],
  "sirius": [101.2872, -16.7161], "vega": [279.2347, 38.7837], "polaris": [37.9546, 89.2641],
  "betelgeuse": [88.7929, 7.4071], "rigel": [78.6345, -8.2016], "arcturus": [213.9153, 19.1824],
};

/** [ra, dec] of what a user typed: a name above, decimal degrees ("10.68 41.27", commas allowed), or sexagesimal
 * ("00:42:44.3 +41:16:09", "0h42m44s +41d16m9s"); null when it is none of these. */
export function parseTarget(text) {
  const t = text.trim().toLowerCase().replace(/\s+/g, " ");
  if (!t) return null;
  if (NAMED[t]) return NAMED[t];
  const compact = t.replace(/^messier\s*/, "m").replace(/^(m|ngc)\s*(\d+)$/, (_, a, b) => (a === "m" ? `m${b}` : `ngc ${b}`));
  if (NAMED[compact]) return NAMED[compact];
  const nums = t.split(/[\s,]+/);
  if (nums.length === 2 && nums.every((x) => /^[+-]?\d+(\.\d*)?$/.test(x))) {
    const [ra, dec] = nums.map(Number);
    return ra >= 0 && ra < 360 && Math.abs(dec) <= 90 ? [ra, dec] : null;
  }
  const m = t.match(/^(\d{1,2})[h: ](\d{1,2})[m: ](\d{1,2}(?:\.\d*)?)s? ?([+-]?)(\d{1,2})[d°: ](\d{1,2})['m: ](\d{1,2}(?:\.\d*)?)["s]?$/);
  if (!m) return null;
  const ra = 15 * (Number(m[1]) + Number(m[2]) / 60 + Number(m[3]) / 3600);
  const dec = (m[4] === "-" ? -1 : 1) * (Number(m[5]) + Number(m[6]) / 60 + Number(m[7]) / 3600);
  return ra < 360 && Math.abs(dec) <= 90 && Number(m[2]) < 60 && Number(m[6]) < 60 ? [ra, dec] : null;
}
