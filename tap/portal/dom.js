// Small helpers for building the page: elements and number formats.

/** An element: `el("td", {class: "num"}, child, "text")`; attributes whose value is undefined are left out. */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (k === "open" || k === "disabled" || k === "selected" || k === "download") {
      if (v !== false) e.setAttribute(k, v === true ? "" : v);
    } else e.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined && c !== "") e.append(c);
  return e;
}

export function fmtCount(n) {
  return n == null ? "" : Number(n).toLocaleString("en-US");
}

export function fmtMs(ms) {
  return ms < 1000 ? `${Math.round(ms)} ms` : ms < 60000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

export function fmtNum(v) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  return a >= 1e5 || a < 1e-3 ? v.toExponential(1) : Number(v.toPrecision(4)).toString();
}
