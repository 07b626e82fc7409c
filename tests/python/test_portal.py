"""The portal's HTTP side against a real `skyshard serve --auth optional` (the page itself is tested in Chromium by
tests/browser): the embedded files (redirect from /, ETag revalidation, gzip, a Content-Security-Policy, nothing
outside the compiled-in list), the ADQL check, and the job endpoints the page uses (JSON, progress as server-sent
events, pages sorted by any column, a result in another format) with the same owner rules as UWS, and clear 400s for
bad parameters. Rows are compared with DuckDB over the generated catalog."""

import gzip
import json
import os
import re

import duckdb
import pytest
import requests

from skyshard_processes import run, start

ROWS = 4000


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    base = tmp_path_factory.mktemp("portal")
    run("gen", "--rows", str(ROWS), "--out", str(base / "rel"))
    data = base / "data"
    run("ingest", "--data-dir", str(data), "--table", "sky.object", "--input", str(base / "rel/object.parquet"),
        "--ra", "ra", "--dec", "dec", "--id", "id", "--chunk-rows", "500", "--quiet")
    for name in ("ada", "bob"):
        run("user", "add", "--data-dir", str(data), name)
    tokens = {n: run("token", "create", "--data-dir", str(data), "--user", n).strip() for n in ("ada", "bob")}
    proc, url = start(["serve", "--data-dir", str(data), "--port", "0", "--workers", "2", "--auth", "optional",
                       "--jobs-dir", str(base / "jobs")])
    root = url.rsplit("/tap", 1)[0]
    yield root, tokens, base / "rel/object.parquet"
    proc.kill()
    proc.wait()


def as_user(token):
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {token}"
    return s


def job(session, root, query, fmt="parquet", maxrec=None):
    data = {"LANG": "ADQL", "QUERY": query, "RESPONSEFORMAT": fmt, "PHASE": "RUN"}
    if maxrec:
        data["MAXREC"] = str(maxrec)
    r = session.post(f"{root}/tap/async", data=data)
    assert r.status_code == 200, r.text
    jid = re.search(r"/tap/async/([^/?]+)$", r.url).group(1)
    r = session.get(f"{root}/tap/async/{jid}", params={"WAIT": "30", "PHASE": "EXECUTING"})
    info = session.get(f"{root}/api/v1/jobs/{jid}").json()
    for _ in range(60):
        if info["phase"] not in ("PENDING", "QUEUED", "EXECUTING"):
            break
        session.get(f"{root}/tap/async/{jid}", params={"WAIT": "5", "PHASE": info["phase"]})
        info = session.get(f"{root}/api/v1/jobs/{jid}").json()
    assert info["phase"] == "COMPLETED", info
    return jid, info


def test_the_page_is_served_from_the_binary(service):
    root, _, _ = service
    r = requests.get(f"{root}/", allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"] == "/portal/"
    page = requests.get(f"{root}/portal/")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert '<script type="module" src="app.js">' in page.text
    csp = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    # Every script the page loads is there, as JavaScript.
    for src in ["app.js", "api.js", "editor.js", "vendor/codemirror.js"]:
        r = requests.get(f"{root}/portal/{src}")
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/javascript"), src
    # Compressed when asked, and the same bytes once inflated; revalidated by ETag.
    raw = requests.get(f"{root}/portal/vendor/codemirror.js", headers={"Accept-Encoding": "identity"})
    zipped = requests.get(f"{root}/portal/vendor/codemirror.js", headers={"Accept-Encoding": "gzip"}, stream=True)
    body = zipped.raw.read()
    assert zipped.headers["Content-Encoding"] == "gzip" and len(body) * 2 < len(raw.content)
    assert gzip.decompress(body) == raw.content
    assert "Content-Encoding" not in raw.headers
    etag = raw.headers["ETag"]
    again = requests.get(f"{root}/portal/vendor/codemirror.js", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert requests.get(f"{root}/portal/app.js").headers["ETag"] != etag
    # Only the compiled-in files: no file system behind the path. Sent as they stand (requests would resolve the
    # dot segments first); the targets exist beside the service (it runs in the checkout, where Cargo.toml is),
    # so a path that reached the file system would answer with them.
    import http.client
    import urllib.parse
    assert os.path.exists("Cargo.toml") and os.path.exists("tap/src/lib.rs"), os.getcwd()
    parts = urllib.parse.urlparse(root)
    for path in ["nope.js", "../Cargo.toml", "../../Cargo.toml", "..%2f..%2fCargo.toml", "%2e%2e/%2e%2e/Cargo.toml",
                 "vendor-src/package.json", "%2e%2e/lib.rs", "../../tap/src/lib.rs", "/Cargo.toml"]:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        conn.request("GET", f"/portal/{path}")
        r = conn.getresponse()
        body = r.read()
        conn.close()
        assert r.status == 404, (path, r.status, body[:200])
        assert b"[workspace]" not in body and b"[package]" not in body and b"pub fn" not in body, (path, body[:200])


def test_the_check_says_where_a_query_is_wrong(service):
    root, _, _ = service
    check = lambda q: requests.post(f"{root}/api/v1/adql/check", data={"QUERY": q})
    assert check("SELECT TOP 3 ra FROM sky.object").json() == {"ok": True}
    bad = check("SELECT ra\nFROM sky.object\nWHERE dec >").json()
    assert bad["ok"] is False and bad["line"] == 3 and bad["col"] >= 11, bad
    unknown = check("SELECT nope FROM sky.object").json()
    assert unknown["ok"] is False and "nope" in unknown["message"] and (unknown["line"], unknown["col"]) == (1, 8)
    assert check("SELECT * FROM TAP_UPLOAD.mine").json() == {"ok": True}  # names of uploads are not known yet
    assert check("SELECT * FROM TAP_UPLOAD.mine WHERE").json()["ok"] is False
    huge = check("SELECT " + "1 + " * 400000 + "1 FROM sky.object")
    assert huge.status_code == 200 and huge.json()["ok"] is False
    missing = requests.post(f"{root}/api/v1/adql/check", data={})
    assert missing.status_code == 400 and "QUERY" in missing.text


def test_jobs_are_their_owners_and_pages_match_duckdb(service):
    root, tokens, parquet = service
    ada, bob = as_user(tokens["ada"]), as_user(tokens["bob"])
    jid, info = job(ada, root, "SELECT id, ra, dec, mag_g FROM sky.object WHERE mag_g < 22")
    want = duckdb.connect().execute(
        f"SELECT id, mag_g FROM read_parquet('{parquet}') WHERE mag_g < 22 ORDER BY mag_g DESC, id LIMIT 50"
    ).fetchall()
    (total,) = duckdb.connect().execute(
        f"SELECT COUNT(*) FROM read_parquet('{parquet}') WHERE mag_g < 22").fetchone()
    assert total > 100 and info["rows"] == total
    assert info["progress"]["chunks_done"] == info["progress"]["chunks_total"] > 1
    assert sum(w["rows"] for w in info["progress"]["workers"].values()) == total
    page = ada.get(f"{root}/api/v1/jobs/{jid}/rows", params={"limit": 50, "sort": "mag_g", "order": "desc"}).json()
    assert page["total"] == total and page["overflow"] is False
    assert [c["name"] for c in page["columns"]] == ["id", "ra", "dec", "mag_g"]
    assert page["columns"][1]["unit"] == "deg" and page["columns"][1]["ucd"].startswith("pos.eq.ra")
    got = [(r[0], r[3]) for r in page["rows"]]
    assert [g[1] for g in got] == pytest.approx([w[1] for w in want], rel=1e-6)
    # The next page comes from the result as sorted once (kept for paging): it continues where the first ended.
    want2 = duckdb.connect().execute(
        f"SELECT mag_g FROM read_parquet('{parquet}') WHERE mag_g < 22 ORDER BY mag_g DESC LIMIT 50 OFFSET 50"
    ).fetchall()
    page2 = ada.get(f"{root}/api/v1/jobs/{jid}/rows",
                    params={"offset": 50, "limit": 50, "sort": "mag_g", "order": "desc"}).json()
    assert [r[3] for r in page2["rows"]] == pytest.approx([w[0] for w in want2], rel=1e-6)
    asc = ada.get(f"{root}/api/v1/jobs/{jid}/rows", params={"limit": 3, "sort": "mag_g"}).json()
    assert asc["rows"][0][3] <= asc["rows"][1][3] <= asc["rows"][2][3]
    last = ada.get(f"{root}/api/v1/jobs/{jid}/rows", params={"offset": total - 2, "limit": 10}).json()
    assert len(last["rows"]) == 2
    # Someone else's job is not theirs to read, in any of the portal's views of it; anonymous callers are asked
    # to log in.
    for path in ["", "/rows", "/progress", "/result"]:
        assert bob.get(f"{root}/api/v1/jobs/{jid}{path}").status_code == 403, path
        assert requests.get(f"{root}/api/v1/jobs/{jid}{path}").status_code == 401, path
    assert jid in [j["id"] for j in ada.get(f"{root}/api/v1/jobs").json()]
    assert jid not in [j["id"] for j in bob.get(f"{root}/api/v1/jobs").json()]
    # Bad parameters are 400s that say what was wrong.
    for params, word in [({"offset": "-1"}, "OFFSET"), ({"limit": "many"}, "LIMIT"), ({"sort": "nope"}, "nope"),
                         ({"order": "sideways"}, "asc or desc")]:
        r = ada.get(f"{root}/api/v1/jobs/{jid}/rows", params=params)
        assert r.status_code == 400 and word in r.text, (params, r.text)
    assert ada.get(f"{root}/api/v1/jobs/{jid}/rows", params={"limit": 5000}).json()["rows"].__len__() == 1000
    r = ada.get(f"{root}/api/v1/jobs/{jid}/result", params={"RESPONSEFORMAT": "bogus"})
    assert r.status_code == 400
    assert ada.get(f"{root}/api/v1/jobs/jnope/rows").status_code == 404


def test_progress_streams_until_the_job_ends(service):
    root, tokens, _ = service
    ada = as_user(tokens["ada"])
    jid, info = job(ada, root, "SELECT COUNT(*) AS n FROM sky.object WHERE ra >= 0")
    r = ada.get(f"{root}/api/v1/jobs/{jid}/progress", stream=True, timeout=30)
    assert r.headers["Content-Type"] == "text/event-stream"
    text = r.text
    assert text.startswith("event: end\ndata: ")
    event = json.loads(text.split("data: ", 1)[1])
    assert event["phase"] == "COMPLETED" and event["progress"]["chunks_done"] == event["progress"]["chunks_total"]
    assert ada.get(f"{root}/api/v1/jobs/jnope/progress").status_code == 404


def test_a_cut_result_says_overflow_in_every_format(service):
    root, tokens, _ = service
    ada = as_user(tokens["ada"])
    jid, info = job(ada, root, "SELECT id, ra FROM sky.object", maxrec=100)
    assert info["rows"] == 100 and info["overflow"] is True
    vot = ada.get(f"{root}/api/v1/jobs/{jid}/result", params={"RESPONSEFORMAT": "votable"})
    assert vot.status_code == 200 and 'name="QUERY_STATUS" value="OVERFLOW"' in vot.text
    assert vot.text.count("<TR>") == 100
    assert "attachment" in vot.headers["Content-Disposition"]
    whole, _ = job(ada, root, "SELECT id FROM sky.object WHERE id < 10")
    ok = ada.get(f"{root}/api/v1/jobs/{whole}/result", params={"RESPONSEFORMAT": "votable"}).text
    assert 'value="OVERFLOW"' not in ok and 'name="QUERY_STATUS" value="OK"' in ok
    # A VOTable job has no pages: the portal's jobs are Parquet.
    vjob, _ = job(ada, root, "SELECT id FROM sky.object WHERE id < 10", fmt="votable")
    r = ada.get(f"{root}/api/v1/jobs/{vjob}/rows")
    assert r.status_code == 400 and "RESPONSEFORMAT=parquet" in r.text


def test_tables_for_the_schema_browser(service):
    root, _, parquet = service
    tables = {t["name"]: t for t in requests.get(f"{root}/api/v1/tables").json()}
    (n,) = duckdb.connect().execute(f"SELECT COUNT(*) FROM read_parquet('{parquet}')").fetchone()
    obj = tables["sky.object"]
    assert obj["rows"] == n == ROWS and obj["position"] == ["ra", "dec"]
    assert {"id", "ra", "dec"} <= {c["name"] for c in obj["columns"]}
    assert "tap_schema.columns" in tables
