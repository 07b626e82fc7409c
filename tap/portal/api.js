// Calls to the service's public APIs: TAP (sync, UWS async, examples), the ADQL check and the portal's JSON
// endpoints. Everything goes to this page's own origin.

/** An error with the service's own message (a DALI error document's INFO, or the body's text). */
export class ServiceError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function messageOf(response) {
  const text = await response.text();
  const info = text.match(/<INFO[^>]*name="QUERY_STATUS"[^>]*>([\s\S]*?)<\/INFO>/);
  if (info) return decodeXml(info[1].trim());
  try {
    const j = JSON.parse(text);
    if (j && j.message) return j.message;
  } catch (_) { /* not JSON */ }
  return text.trim().slice(0, 500) || `${response.status} ${response.statusText}`;
}

function decodeXml(s) {
  return s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"').replace(/&apos;/g, "'").replace(/&amp;/g, "&");
}

async function checked(response) {
  if (!response.ok) throw new ServiceError(response.status, await messageOf(response));
  return response;
}

export async function getJson(path) {
  return (await checked(await fetch(path, { headers: { Accept: "application/json" } }))).json();
}

function form(fields) {
  const body = new URLSearchParams();
  for (const [k, v] of Object.entries(fields)) if (v !== undefined && v !== null) body.append(k, String(v));
  return body;
}

/** Runs a small query synchronously; returns {columns, rows} parsed from CSV (numbers as numbers). */
export async function syncRows(query, maxrec = 100000) {
  const response = await checked(await fetch("/tap/sync", {
    method: "POST",
    body: form({ LANG: "ADQL", RESPONSEFORMAT: "csv", MAXREC: maxrec, QUERY: query }),
  }));
  const table = parseCsv(await response.text());
  const columns = table.shift() || [];
  const rows = table.map((r) => r.map((v) => (v !== "" && !Number.isNaN(Number(v)) ? Number(v) : v)));
  return { columns, rows };
}

/** RFC 4180 CSV. */
export function parseCsv(text) {
  const rows = [];
  let row = [], field = "", quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"') {
        if (text[i + 1] === '"') { field += '"'; i++; } else quoted = false;
      } else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") { row.push(field); field = ""; }
    else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      row.push(field); rows.push(row); row = []; field = "";
    } else field += c;
  }
  if (field !== "" || row.length) { row.push(field); rows.push(row); }
  return rows;
}

/** An upload as TAP takes it: a CSV file (header line, then rows) becomes a VOTable whose columns are long,
 * double or text by what their values hold; a VOTable goes as it is. */
export async function uploadBody(file) {
  if (!/\.csv$/i.test(file.name || "") && file.type !== "text/csv") return file;
  const rows = parseCsv(await file.text()).filter((r) => r.length > 1 || r[0] !== "");
  const header = rows.shift() || [];
  if (!header.length) throw new ServiceError(0, `${file.name}: the CSV file has no header line`);
  const kinds = header.map((_, i) => {
    const values = rows.map((r) => r[i] ?? "").filter((v) => v !== "");
    if (values.length && values.every((v) => /^[+-]?\d{1,18}$/.test(v))) return ["long", ""];
    if (values.length && values.every((v) => v.trim() !== "" && !Number.isNaN(Number(v)))) return ["double", ""];
    return ["char", ' arraysize="*"'];
  });
  const esc = (v) => v.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
  const fields = header.map((h, i) => `<FIELD name="${esc(h.trim())}" datatype="${kinds[i][0]}"${kinds[i][1]}/>`).join("");
  const body = rows.map((r) => `<TR>${header.map((_, i) => `<TD>${esc(r[i] ?? "")}</TD>`).join("")}</TR>`).join("\n");
  const xml = `<?xml version="1.0" encoding="UTF-8"?>\n<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3"><RESOURCE><TABLE>${fields}<DATA><TABLEDATA>\n${body}\n</TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>\n`;
  return new File([xml], (file.name || "upload").replace(/\.csv$/i, ".xml"), { type: "application/x-votable+xml" });
}

async function appendUploads(body, uploads) {
  if (!uploads.length) return;
  body.append("UPLOAD", uploads.map((u) => `${u.name},param:${u.name}`).join(";"));
  for (const u of uploads) {
    const file = await uploadBody(u.file);
    body.append(u.name, file, file.name || u.name);
  }
}

/** Creates and starts an async job; returns its id. `uploads`: [{name, file}] sent as TAP_UPLOAD tables. */
export async function createJob(query, { maxrec, format = "parquet", uploads = [], runId = "portal" } = {}) {
  const body = new FormData();
  body.append("LANG", "ADQL");
  body.append("QUERY", query);
  body.append("RESPONSEFORMAT", format);
  body.append("PHASE", "RUN");
  body.append("RUNID", runId);
  if (maxrec) body.append("MAXREC", String(maxrec));
  await appendUploads(body, uploads);
  // The service answers 303 See Other to the job's URL, which fetch follows: the final URL names the job.
  const response = await fetch("/tap/async", { method: "POST", body });
  await checked(response);
  const id = response.url.match(/\/tap\/async\/([^/?#]+)/);
  if (id) return id[1];
  throw new ServiceError(0, "the service did not say where the job is");
}

export async function job(id) {
  return getJson(`/api/v1/jobs/${encodeURIComponent(id)}`);
}

export async function abortJob(id) {
  await checked(await fetch(`/tap/async/${encodeURIComponent(id)}/phase`, { method: "POST", body: form({ PHASE: "ABORT" }) }));
}

export async function deleteJob(id) {
  await checked(await fetch(`/tap/async/${encodeURIComponent(id)}`, { method: "POST", body: form({ ACTION: "DELETE" }) }));
}

export async function page(id, { offset = 0, limit = 100, sort = "", order = "asc" } = {}) {
  const q = new URLSearchParams({ offset, limit, order });
  if (sort) q.set("sort", sort);
  return getJson(`/api/v1/jobs/${encodeURIComponent(id)}/rows?${q}`);
}

export async function check(query) {
  return (await checked(await fetch("/api/v1/adql/check", { method: "POST", body: form({ QUERY: query }) }))).json();
}

export async function explain(query, uploads = []) {
  const body = new FormData();
  body.append("LANG", "ADQL");
  body.append("QUERY", query);
  await appendUploads(body, uploads);
  return (await checked(await fetch("/tap/explain", { method: "POST", body }))).text();
}

/** The DALI examples: [{name, query}]. */
export async function examples() {
  const response = await fetch("/tap/examples");
  if (!response.ok) return [];
  const doc = new DOMParser().parseFromString(await response.text(), "text/html");
  return [...doc.querySelectorAll('[typeof="example"]')].map((e) => ({
    name: (e.querySelector('[property="name"]') || e.querySelector("h2,h3") || {}).textContent?.trim() || e.id,
    query: (e.querySelector('[property="query"]') || {}).textContent?.trim() || "",
  })).filter((e) => e.query);
}

/** The ADQL functions the service declares in /capabilities: [{name, signature, description}]. */
export async function functions() {
  const response = await fetch("/tap/capabilities");
  if (!response.ok) return [];
  const doc = new DOMParser().parseFromString(await response.text(), "application/xml");
  return [...doc.getElementsByTagName("feature")].map((f) => {
    const form = f.getElementsByTagName("form")[0]?.textContent || "";
    const description = f.getElementsByTagName("description")[0]?.textContent || "";
    const name = (form.match(/^\s*([A-Za-z_][A-Za-z0-9_]*)\s*\(/) || [])[1];
    return name ? { name, signature: form, description } : null;
  }).filter(Boolean);
}

export async function me() {
  const response = await fetch("/api/v1/me");
  // The service went on without a session cookie that no longer works (logged out elsewhere, expired, revoked).
  const ended = response.headers.get("x-skyshard-session") === "ended";
  if (response.status === 401) return { anonymous: true, auth: "required", needsLogin: true, ended };
  return { ...(await (await checked(response)).json()), ended };
}

export async function login(username, password) {
  await checked(await fetch("/tap/login", { method: "POST", body: form({ USERNAME: username, PASSWORD: password }) }));
}

/** A token for a notebook (24 h, revocable with `skyshard token revoke`): {token, expires}. */
export async function notebookToken() {
  return (await checked(await fetch("/api/v1/tokens", { method: "POST" }))).json();
}

/** Clears a session cookie the service no longer takes, revoking nothing. */
export async function forgetSession() {
  await fetch("/tap/logout?forget", { method: "POST" });
}

export async function logout() {
  await fetch("/tap/logout", { method: "POST" });
}
