// The job list (every query runs as a UWS async job) and the live progress of the running one, streamed as
// server-sent events from /api/v1/jobs/ID/progress.
import * as api from "./api.js";
import { el, fmtCount, fmtMs } from "./dom.js";

const KEY = "skyshard.portal.jobs";

export function rememberJob(id) {
  const ids = knownIds().filter((x) => x !== id);
  ids.unshift(id);
  localStorage.setItem(KEY, JSON.stringify(ids.slice(0, 100)));
}

function knownIds() {
  try { return JSON.parse(localStorage.getItem(KEY) || "[]"); } catch (_) { return []; }
}

/** The caller's jobs: those the service lists to them, and those this browser started (anonymous jobs are listed
 * to nobody). */
export async function loadJobs() {
  const listed = await api.getJson("/api/v1/jobs").catch(() => []);
  const have = new Set(listed.map((j) => j.id));
  const extra = await Promise.all(knownIds().filter((id) => !have.has(id)).map((id) => api.job(id).catch(() => null)));
  const gone = knownIds().filter((id) => !have.has(id) && !extra.find((j) => j && j.id === id));
  if (gone.length) localStorage.setItem(KEY, JSON.stringify(knownIds().filter((id) => !gone.includes(id))));
  return [...listed, ...extra.filter(Boolean)].sort((a, b) => (b.creationTime || "").localeCompare(a.creationTime || ""));
}

export function renderJobs(container, jobs, { open, rerun, changed }) {
  const rows = jobs.map((j) => {
    const actions = el("td", { class: "actions" });
    const button = (label, action, title) => {
      const b = el("button", { type: "button", title }, label);
      b.addEventListener("click", action);
      actions.append(b);
    };
    button("Open", () => open(j), "Show this job's query and result");
    if (["PENDING", "QUEUED", "EXECUTING"].includes(j.phase)) button("Abort", async () => { await api.abortJob(j.id); changed(); }, "Stop the job");
    button("Re-run", () => rerun(j), "Run this query again as a new job");
    button("Delete", async () => { await api.deleteJob(j.id); changed(); }, "Delete the job and its result");
    return el("tr", { "data-job": j.id, "data-phase": j.phase },
      el("td", {}, el("code", {}, j.id.slice(0, 10))),
      el("td", {}, el("span", { class: `phase ${j.phase}` }, j.phase)),
      el("td", { class: "query", title: j.query || "" }, (j.query || "").replace(/\s+/g, " ").slice(0, 90)),
      el("td", { class: "num" }, j.elapsedMs != null ? fmtMs(j.elapsedMs) : ""),
      el("td", { class: "num" }, j.rows != null ? fmtCount(j.rows) + (j.overflow ? "+" : "") : ""),
      actions);
  });
  container.replaceChildren(jobs.length
    ? el("table", { class: "grid" },
      el("thead", {}, el("tr", {}, ...["job", "phase", "query", "time", "rows", ""].map((h) => el("th", {}, h)))),
      el("tbody", {}, ...rows))
    : el("p", { class: "muted" }, "No jobs yet: run a query."));
}

/** Follows a job's progress until it ends; `update(job)` gets each snapshot. Returns a function that stops. */
export function follow(id, update, ended) {
  const source = new EventSource(`/api/v1/jobs/${encodeURIComponent(id)}/progress`);
  let done = false;
  const finish = (job) => { if (done) return; done = true; source.close(); ended(job); };
  source.onmessage = (e) => update(JSON.parse(e.data));
  source.addEventListener("end", (e) => { const job = JSON.parse(e.data); update(job); finish(job); });
  source.onerror = async () => {
    // The stream broke (the service restarted, a proxy cut it): ask once where the job is.
    if (done) return;
    source.close();
    try { finish(await api.job(id)); } catch (err) { finish({ id, phase: "ERROR", error: err.message }); }
  };
  return () => { done = true; source.close(); };
}

export function renderProgress(container, job) {
  const p = job.progress || { chunks_total: 0, chunks_done: 0, rows_received: 0, rows_returned: 0, workers: {} };
  const total = p.chunks_total || 0;
  // A completed job is done, whatever it read: a TOP or MAXREC can end it before every chunk was asked.
  const pct = job.phase === "COMPLETED" ? 100 : total ? Math.round((100 * p.chunks_done) / total) : 0;
  const bar = el("progress", { max: "100", value: String(pct), "aria-label": "chunks done" });
  const workers = Object.entries(p.workers || {});
  // Abort beside the bar while the job can still be stopped.
  let abort = "";
  if (["PENDING", "QUEUED", "EXECUTING"].includes(job.phase) && job.id) {
    abort = el("button", { type: "button", id: "abort-job", title: "Stop this job" }, "Abort");
    abort.addEventListener("click", async () => {
      abort.disabled = true;
      try { await api.abortJob(job.id); } catch (e) { abort.disabled = false; abort.title = e.message; }
    });
  }
  container.replaceChildren(
    el("div", { class: "progress-line" },
      el("span", { class: `phase ${job.phase}` }, job.phase), " ", bar, " ",
      el("span", { class: "pct", "data-pct": String(pct) }, `${pct} %`), " ", abort, abort ? " " : "",
      el("span", {}, `${fmtCount(p.chunks_done)} of ${fmtCount(total)} chunks · ${fmtCount(p.rows_received)} rows from workers · ${fmtCount(p.rows_returned)} result rows`),
      job.elapsedMs != null ? el("span", { class: "muted" }, ` · ${fmtMs(job.elapsedMs)}`) : ""),
    workers.length ? el("table", { class: "grid workers" },
      el("thead", {}, el("tr", {}, el("th", {}, "worker"), el("th", {}, "chunks"), el("th", {}, "rows"))),
      el("tbody", {}, ...workers.map(([w, s]) => el("tr", {}, el("td", {}, w), el("td", { class: "num" }, fmtCount(s.chunks_done)), el("td", { class: "num" }, fmtCount(s.rows)))))) : "",
    job.phase === "COMPLETED" && job.overflow
      ? el("p", { class: "warning", role: "status", id: "overflow-note" },
        `The result was cut at MAXREC: the first ${fmtCount(job.rows ?? p.rows_returned)} rows are kept and more rows matched. `
        + "Sorting and the table cover the kept rows only; raise MAXREC or narrow the query for all of them.")
      : "",
    job.error ? el("pre", { class: "error", role: "alert" }, job.error) : "",
  );
}
