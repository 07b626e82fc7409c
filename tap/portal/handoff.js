// Hand-off to a notebook: a pyvo snippet that reattaches to the job's URL and reads the same rows, the same as a
// downloadable .ipynb, and a permalink that restores the query and its job.

export function jobUrl(id) {
  return `${location.origin}/tap/async/${id}`;
}

/** The Python that reads the job's rows; `token` ({token, expires}) for a logged-in user, none for anonymous. */
export function snippet(job, token = null) {
  const query = (job.query || "").replace(/\\/g, "\\\\").replace(/"""/g, '\\"\\"\\"');
  const auth = token
    ? `# Your notebook token, valid until ${token.expires}: keep it private (revoke it: skyshard token revoke).
session.headers["Authorization"] = "Bearer ${token.token}"
`
    : "";
  return `import io

import pyarrow.parquet as pq
import pyvo
import requests

session = requests.Session()
${auth}
# The portal's job: reattach to it by its URL (it keeps its result until it is destroyed).
job = pyvo.dal.AsyncTAPJob("${jobUrl(job.id)}", session=session)
job.wait()
# Its result is Parquet: read it as an Arrow table, then as pandas or astropy.
response = session.get(job.result_uri, timeout=600)
response.raise_for_status()
table = pq.read_table(io.BytesIO(response.content))
df = table.to_pandas()
print(len(df), "rows")

# The query, to run it again as a new job:
query = """${query}"""
# service = pyvo.dal.TAPService("${location.origin}/tap", session=session)
# result = service.run_async(query).to_table()
`;
}

export function notebook(job, token = null) {
  const lines = (text) => text.split("\n").map((l, i, all) => (i < all.length - 1 ? `${l}\n` : l));
  return JSON.stringify({
    cells: [
      { cell_type: "markdown", metadata: {}, source: lines(`# skyshard job ${job.id}\n\nReattaches to the portal's job and reads its rows.`) },
      { cell_type: "code", execution_count: null, metadata: {}, outputs: [], source: lines(snippet(job, token).trimEnd()) },
    ],
    metadata: { kernelspec: { display_name: "Python 3", language: "python", name: "python3" }, language_info: { name: "python" } },
    nbformat: 4,
    nbformat_minor: 5,
  }, null, 1);
}

function b64(text) {
  return btoa(String.fromCharCode(...new TextEncoder().encode(text))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function unb64(text) {
  const s = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  return new TextDecoder().decode(Uint8Array.from(s, (c) => c.charCodeAt(0)));
}

export function permalink(query, jobId) {
  const h = new URLSearchParams();
  if (query) h.set("q", b64(query));
  if (jobId) h.set("job", jobId);
  return `${location.origin}/portal/#${h}`;
}

export function fromHash() {
  const h = new URLSearchParams(location.hash.slice(1));
  let query = null;
  try { query = h.get("q") ? unb64(h.get("q")) : null; } catch (_) { query = null; }
  return { query, job: h.get("job") };
}
