// A job's result as a table: pages and sorting done by the service over the stored result
// (/api/v1/jobs/ID/rows), units and UCDs in the headers, and downloads in every result format.
import * as api from "./api.js";
import { el, fmtCount } from "./dom.js";

const FORMATS = [
  ["VOTable", "votable"], ["VOTable BINARY2", "votable/b2"], ["CSV", "csv"], ["TSV", "tsv"], ["Parquet", "parquet"],
  ["Arrow", "arrow"],
];

export class ResultView {
  constructor(container) {
    this.container = container;
    this.state = null;
  }

  async show(job, { pageSize = 100 } = {}) {
    this.state = { job, offset: 0, limit: pageSize, sort: "", order: "asc" };
    await this.load();
  }

  clear(message = "") {
    this.state = null;
    this.container.replaceChildren(message ? el("p", { class: "muted" }, message) : "");
  }

  async load() {
    const s = this.state;
    if (!s) return;
    const started = performance.now();
    let data;
    try {
      data = await api.page(s.job.id, s);
    } catch (e) {
      this.container.replaceChildren(el("pre", { class: "error", role: "alert" }, e.message));
      return;
    }
    s.total = data.total;
    s.columns = data.columns;
    this.lastMs = performance.now() - started;
    this.render(data);
  }

  render(data) {
    const s = this.state;
    const head = el("tr", {}, ...data.columns.map((c) => {
      const sorted = s.sort === c.name ? (s.order === "asc" ? " ▲" : " ▼") : "";
      const b = el("button", { type: "button", class: "sort", title: [c.description, c.ucd && `UCD ${c.ucd}`, c.datatype].filter(Boolean).join("\n") },
        c.name, sorted);
      b.addEventListener("click", () => {
        s.order = s.sort === c.name && s.order === "asc" ? "desc" : "asc";
        s.sort = c.name;
        s.offset = 0;
        this.load();
      });
      return el("th", { "aria-sort": s.sort === c.name ? (s.order === "asc" ? "ascending" : "descending") : "none" },
        b, c.unit ? el("div", { class: "unit" }, c.unit) : "", c.ucd ? el("div", { class: "ucd" }, c.ucd) : "");
    }));
    const body = el("tbody", {}, ...data.rows.map((r) => el("tr", {}, ...r.map((v, i) =>
      el("td", { class: data.columns[i].numeric ? "num" : "" }, v === null ? el("span", { class: "null" }, "null") : String(v))))));
    const last = Math.max(0, Math.floor((s.total - 1) / s.limit) * s.limit);
    const nav = (label, offset, disabled, name) => {
      const b = el("button", { type: "button", "data-nav": name, disabled: disabled ? "" : undefined }, label);
      b.addEventListener("click", () => { s.offset = offset; this.load(); });
      return b;
    };
    const downloads = el("span", { class: "downloads" }, "Download: ", ...FORMATS.map(([label, f]) =>
      el("a", { href: `/api/v1/jobs/${encodeURIComponent(s.job.id)}/result?RESPONSEFORMAT=${encodeURIComponent(f)}`, download: "", "data-format": f }, label)));
    if (!s.total) {
      // Nothing matched: say so in words, with what was asked, rather than an empty grid.
      this.container.replaceChildren(el("p", { class: "empty", role: "status", id: "no-rows" },
        "No rows matched: the query ran to the end and found nothing. Widen the region or loosen the conditions ",
        el("code", {}, (s.job.query || "").replace(/\s+/g, " ").slice(0, 200))));
      return;
    }
    const from = s.total ? s.offset + 1 : 0;
    const to = Math.min(s.total, s.offset + data.rows.length);
    this.container.replaceChildren(
      el("div", { class: "pager" },
        nav("First", 0, s.offset === 0, "first"), nav("Previous", Math.max(0, s.offset - s.limit), s.offset === 0, "prev"),
        el("span", { class: "range", role: "status" }, `rows ${fmtCount(from)}–${fmtCount(to)} of ${fmtCount(s.total)}${data.overflow ? " (cut at MAXREC: OVERFLOW)" : ""}`),
        nav("Next", s.offset + s.limit, to >= s.total, "next"), nav("Last", last, to >= s.total, "last"),
        downloads),
      el("div", { class: "table-wrap" }, el("table", { class: "grid results" }, el("thead", {}, head), body)));
  }
}
