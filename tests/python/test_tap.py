"""The TAP service as astronomers reach it: pyvo (sync, async, run_async, abort, errors, MAXREC, uploads with a
cross-match, every output format read back with astropy and pyarrow), Simple Cone Search, the examples, a czar
restart keeping a finished async job, and STILTS taplint (the IVOA validator) reporting no errors. Answers are
compared with DuckDB over the same Parquet files."""

import http.server
import io
import math
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.parse
import urllib.request
import warnings

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import pyvo
from astropy.io import ascii as astropy_ascii
from astropy.io.votable import parse_single_table
from astropy.table import Table

from skyshard_processes import SKYSHARD, haversine, run, start, wait_until, wait_until_idle

ROWS = 40000


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    base = tmp_path_factory.mktemp("tap")
    run("gen", "--rows", str(ROWS), "--out", str(base / "rel"))
    data = base / "data"
    run("ingest", "--data-dir", str(data), "--table", "sky.object", "--input", str(base / "rel/object.parquet"),
        "--ra", "ra", "--dec", "dec", "--id", "id", "--chunk-rows", "2000", "--quiet",
        "--description", "synthetic objects")
    run("ingest", "--data-dir", str(data), "--table", "sky.source", "--input", str(base / "rel/source.parquet"),
        "--director", "sky.object", "--director-key", "object_id", "--quiet")
    run("ingest", "--data-dir", str(data), "--table", "sky.xmatch", "--input", str(base / "rel/xmatch.parquet"),
        "--ra", "ra", "--dec", "dec", "--id", "xid", "--chunk-map-of", "sky.object", "--quiet")
    return base, data


def serve(data, *extra):
    return start(["serve", "--data-dir", str(data), "--port", "0", "--workers", "2", *extra])


PROCESSES = {}  # the process serving each URL the `service` fixture gives, for tests that watch its CPU


@pytest.fixture(scope="module")
def service(release):
    base, data = release
    proc, url = serve(data)
    PROCESSES[url] = proc
    yield url
    proc.kill()
    proc.wait()


@pytest.fixture(scope="module")
def duck(release):
    base, _ = release
    con = duckdb.connect()
    con.execute(f"CREATE VIEW object AS SELECT * FROM read_parquet('{base}/rel/object.parquet')")
    con.execute(f"CREATE VIEW source AS SELECT * FROM read_parquet('{base}/rel/source.parquet')")
    return con


def cone_ids(duck, a, d, r):
    return sorted(x[0] for x in duck.execute(f"SELECT id FROM object WHERE {haversine('ra', 'dec', a, d)} <= {r}").fetchall())


def post(url, fields, files=None):
    """A multipart POST like a browser's (or a non-pyvo client's)."""
    boundary = "skyshardtestboundary"
    body = io.BytesIO()
    for k, v in fields.items():
        body.write(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n".encode())
    for k, content in (files or {}).items():
        body.write(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"; filename=\"{k}.xml\"\r\n"
                   f"Content-Type: application/x-votable+xml\r\n\r\n".encode())
        body.write(content)
        body.write(b"\r\n")
    body.write(f"--{boundary}--\r\n".encode())
    req = urllib.request.Request(url, data=body.getvalue(),
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.headers.get("Content-Type"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=120) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# Each cone has rows (the release plants objects at both poles and across RA 0/360).
CONES = [(10.0, 20.0, 0.5), (0.05, -0.3, 0.7), (359.9, 60.0, 0.4), (123.0, 89.6, 1.0), (200.0, -89.7, 0.8)]


@pytest.mark.parametrize("a,d,r", CONES)
def test_sync_cones_through_pyvo(service, duck, a, d, r):
    svc = pyvo.dal.TAPService(service)
    result = svc.search(f"SELECT id, ra, dec FROM sky.object WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {a}, {d}, {r})) = 1")
    want = cone_ids(duck, a, d, r)
    assert len(want) > 0, "the reference is empty: this cone tests nothing"
    assert sorted(int(x) for x in result["id"]) == want
    table = result.to_table()
    assert str(table["ra"].unit) == "deg"
    assert {f.name: f.ucd for f in result.fielddescs}["ra"] == "pos.eq.ra;meta.main"


def test_async_run_and_submit(service, duck):
    svc = pyvo.dal.TAPService(service)
    query = "SELECT FLOOR(dec / 10) AS band, COUNT(*) AS n FROM sky.object GROUP BY FLOOR(dec / 10) ORDER BY band"
    want = duck.execute("SELECT FLOOR(dec / 10) AS band, COUNT(*) FROM object GROUP BY 1 ORDER BY 1").fetchall()
    result = svc.run_async(query)
    assert [(int(b), int(n)) for b, n in zip(result["band"], result["n"])] == [(int(b), n) for b, n in want]
    job = svc.submit_job("SELECT TOP 3 id FROM sky.object ORDER BY id", runid="mine")
    assert job.phase == "PENDING"
    job.run()
    job.wait(phases=["COMPLETED", "ERROR", "ABORTED"], timeout=60)
    assert job.phase == "COMPLETED"
    assert [int(x) for x in job.fetch_result()["id"]] == [x[0] for x in duck.execute("SELECT id FROM object ORDER BY id LIMIT 3").fetchall()]
    # The job list knows it, filtered by phase and LAST.
    status, body = get(service + "/async?PHASE=COMPLETED&LAST=1")
    assert status == 200 and job.job_id in body.decode()
    job.delete()
    status, body = get(f"{service}/async/{job.job_id}")
    assert status == 404 and b"QUERY_STATUS" in body


def test_async_errors_are_read_from_the_job(service):
    svc = pyvo.dal.TAPService(service)
    job = svc.submit_job("SELECT TOP 3 id FROM sky.object WHERE")
    job.run()
    job.wait(phases=["COMPLETED", "ERROR", "ABORTED"], timeout=60)
    assert job.phase == "ERROR"
    with pytest.raises(pyvo.dal.DALQueryError) as e:
        job.raise_if_error()
    assert "1:" in str(e.value) or "line" in str(e.value).lower(), str(e.value)
    job.delete()
    with pytest.raises(pyvo.dal.DALQueryError) as e:
        svc.search("SELECT nope FROM sky.object")
    assert "nope" in str(e.value)


def test_abort_stops_a_long_job(service):
    svc = pyvo.dal.TAPService(service)
    # A nested-loop self join of 40k x 40k rows: minutes of work unless stopped.
    job = svc.submit_job("SELECT COUNT(*) FROM sky.object AS a, sky.object AS b WHERE a.mag_g < b.mag_g - 0.0001 * b.dec")
    job.run()
    wait_until("the job past PENDING and QUEUED", lambda: job.phase not in ("PENDING", "QUEUED"), interval=0.1)
    assert job.phase == "EXECUTING", job.phase
    job.abort()
    assert job.phase == "ABORTED"
    # Its work stopped: the service's process goes idle (a join left running would keep both cores busy).
    wait_until_idle(PROCESSES[service], "the service idle after the job was aborted")
    assert job.phase == "ABORTED"
    # The service is free for the next query.
    assert len(svc.search("SELECT TOP 1 id FROM sky.object")) == 1
    job.delete()


def test_maxrec_and_overflow(service):
    svc = pyvo.dal.TAPService(service)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        cut = svc.search("SELECT id FROM sky.object", maxrec=10)
    assert len(cut) == 10 and cut.query_status == "OVERFLOW"
    exact = svc.search("SELECT TOP 10 id FROM sky.object ORDER BY id", maxrec=10)
    assert len(exact) == 10 and exact.query_status == "OK"
    status, body = get(service + "/sync?LANG=ADQL&MAXREC=0&QUERY=" + urllib.parse.quote("SELECT id, ra FROM sky.object"))
    table = parse_single_table(io.BytesIO(body)).to_table()
    assert status == 200 and len(table) == 0 and table.colnames == ["id", "ra"]
    caps = svc.capabilities
    tap_cap = [c for c in caps if c.standardid.lower() == "ivo://ivoa.net/std/tap"][0]
    assert tap_cap.outputlimit.hard.content == 10000000
    # Parquet results say whether they were cut: QUERY_STATUS and the VOParquet header in the footer.
    for maxrec, rows, status_expected in [(10, 10, "OVERFLOW"), (ROWS, ROWS, "OK")]:
        status, body = get(service + f"/sync?LANG=ADQL&RESPONSEFORMAT=parquet&MAXREC={maxrec}&QUERY="
                           + urllib.parse.quote("SELECT id, ra FROM sky.object"))
        meta = pq.read_metadata(io.BytesIO(body))
        assert status == 200 and meta.num_rows == rows
        assert meta.metadata[b"QUERY_STATUS"].decode() == status_expected
        assert meta.metadata[b"IVOA.VOTable-Parquet.version"] == b"1.0"
        header = parse_single_table(io.BytesIO(meta.metadata[b"IVOA.VOTable-Parquet.content"]))
        assert [f.name for f in header.fields] == ["id", "ra"] and header.fields[1].unit == "deg"
    # So do Arrow streams, in their schema's metadata (and each field has its unit and UCD).
    for maxrec, rows, status_expected in [(10, 10, "OVERFLOW"), (ROWS, ROWS, "OK")]:
        status, body = get(service + f"/sync?LANG=ADQL&RESPONSEFORMAT=arrow&MAXREC={maxrec}&QUERY="
                           + urllib.parse.quote("SELECT id, ra FROM sky.object"))
        t = pa.ipc.open_stream(body).read_all()
        assert status == 200 and t.num_rows == rows
        assert t.schema.metadata[b"QUERY_STATUS"].decode() == status_expected
        header = parse_single_table(io.BytesIO(t.schema.metadata[b"IVOA.VOTable.content"]))
        assert [f.name for f in header.fields] == ["id", "ra"] and header.fields[1].unit == "deg"


def test_every_format_reads_back(service, duck):
    query = "SELECT TOP 500 s.source_id, s.object_id, s.flux, o.ra, o.dec FROM sky.source AS s JOIN sky.object AS o ON s.object_id = o.id ORDER BY s.source_id"
    want = duck.execute("SELECT s.source_id, s.object_id, s.flux, o.ra, o.dec FROM source s JOIN object o ON s.object_id = o.id ORDER BY s.source_id LIMIT 500").fetchall()
    tables = {}
    for fmt in ["votable", "votable/b2", "csv", "tsv", "parquet", "application/vnd.apache.parquet", "arrow",
                "application/vnd.apache.arrow.stream"]:
        status, ctype, body = post(service + "/sync", {"LANG": "ADQL", "QUERY": query, "RESPONSEFORMAT": fmt})
        assert status == 200, body[:500]
        if fmt.startswith("votable"):
            t = parse_single_table(io.BytesIO(body)).to_table()
            assert str(t["ra"].unit) == "deg"
        elif fmt == "csv":
            t = astropy_ascii.read(body.decode(), format="csv")
        elif fmt == "tsv":
            t = astropy_ascii.read(body.decode(), format="tab")
        elif "parquet" in fmt:
            assert ctype == "application/vnd.apache.parquet"
            t = Table(pq.read_table(io.BytesIO(body)).to_pydict())
        else:
            assert ctype == "application/vnd.apache.arrow.stream"
            t = Table(pa.ipc.open_stream(body).read_all().to_pydict())
        tables[fmt] = t
        got = [(int(r["source_id"]), int(r["object_id"]), float(r["flux"]), float(r["ra"]), float(r["dec"])) for r in t]
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g[:2] == tuple(w[:2])
            assert math.isclose(g[2], w[2], rel_tol=1e-6) and math.isclose(g[3], w[3], rel_tol=1e-12)
    # Strings (the source's band) come through too.
    status, _, body = post(service + "/sync", {"LANG": "ADQL", "QUERY": "SELECT TOP 5 * FROM sky.source ORDER BY source_id",
                                               "RESPONSEFORMAT": "votable/b2"})
    assert status == 200 and len(parse_single_table(io.BytesIO(body)).to_table()) == 5
    assert b"BINARY2" in post(service + "/sync", {"LANG": "ADQL", "QUERY": "SELECT TOP 1 id FROM sky.object", "RESPONSEFORMAT": "votable/b2"})[2]


def test_big_result_streams_as_parquet(service, duck):
    status, ctype, body = post(service + "/sync", {"LANG": "ADQL", "QUERY": "SELECT id, ra, dec, mag_g FROM sky.object",
                                                   "RESPONSEFORMAT": "parquet", "MAXREC": "10000000"})
    assert status == 200
    t = pq.read_table(io.BytesIO(body))
    assert t.num_rows == ROWS
    assert sorted(t.column("id").to_pylist()) == [x[0] for x in duck.execute("SELECT id FROM object ORDER BY id").fetchall()]


def upload_table(duck, n=30):
    rows = duck.execute(f"SELECT id, ra, dec FROM object ORDER BY id LIMIT {n}").fetchall()
    t = Table()
    t["name"] = [f"star{r[0]}" for r in rows]
    # Offsets of 0.5 arcsec: the cross-match within 1 arcsec finds each object again.
    t["ra"] = np.array([r[1] for r in rows]) + 0.5 / 3600 / max(0.05, math.cos(math.radians(0)))
    t["dec"] = np.array([r[2] for r in rows])
    t["ra"].unit = "deg"
    return t, rows


def test_upload_cross_match(service, duck):
    t, rows = upload_table(duck)
    svc = pyvo.dal.TAPService(service)
    query = ("SELECT u.name, o.id, DISTANCE(POINT('ICRS', u.ra, u.dec), POINT('ICRS', o.ra, o.dec)) * 3600 AS sep "
             "FROM TAP_UPLOAD.mine AS u JOIN sky.object AS o "
             "ON 1 = CONTAINS(POINT('ICRS', o.ra, o.dec), CIRCLE('ICRS', u.ra, u.dec, 1.0 / 3600))")
    result = svc.search(query, uploads={"mine": t})
    pairs = {(str(n), int(i)) for n, i in zip(result["name"], result["id"])}
    # Every uploaded star finds its object; check with DuckDB over the same offsets.
    want = set()
    for name, ra, dec in zip(t["name"], t["ra"], t["dec"]):
        for (i,) in duck.execute(f"SELECT id FROM object WHERE {haversine('ra', 'dec', ra, dec)} <= {1 / 3600}").fetchall():
            want.add((str(name), i))
    assert pairs == want and len(pairs) >= len(rows)
    assert len(result) == len(pairs), "a pair was found twice"
    # Only the chunks the list's cones touch are read.
    buf = io.BytesIO()
    t.write(buf, format="votable")
    status, _, plan = post(service + "/explain", {"QUERY": query, "UPLOAD": "mine,param:mine"}, {"mine": buf.getvalue()})
    assert status == 200, plan
    touched = int(re.search(rb"fragment over (\d+) chunks", plan).group(1))
    status, _, full = post(service + "/explain", {"QUERY": "SELECT id FROM sky.object"})
    total = int(re.search(rb"fragment over (\d+) chunks", full).group(1))
    assert 1 <= touched <= len(t) and touched < total, plan.decode()
    # The list is broadcast: the join runs on the workers, inside the fragments, not at the czar.
    fragments, merge = plan.split(b"merge plan")
    assert b"NestedLoopJoinExec" in fragments and b"NestedLoopJoinExec" not in merge, plan.decode()
    # Two uploads at once, pyvo's a,param:a;b,param:b form; async too.
    result = svc.run_async("SELECT COUNT(*) AS n FROM TAP_UPLOAD.a AS a JOIN TAP_UPLOAD.b AS b ON a.name = b.name",
                           uploads={"a": t, "b": t[:7]})
    assert int(result["n"][0]) == 7


def test_bad_uploads_are_clear_errors(service, duck):
    status, _, body = post(service + "/sync", {"LANG": "ADQL", "QUERY": "SELECT * FROM TAP_UPLOAD.x", "UPLOAD": "x,param:x"},
                           {"x": b"<VOTABLE><RESOURCE><TABLE><FIELD name='a' datatype='int'/><DATA><TABLEDATA><TR><TD>zz</TD></TR>"})
    assert status == 400 and b"upload x" in body and b"QUERY_STATUS" in body
    status, _, body = post(service + "/sync", {"LANG": "ADQL", "QUERY": "SELECT * FROM TAP_UPLOAD.x", "UPLOAD": "x,param:missing"})
    assert status == 400 and b"missing" in body
    # The service does not fetch from its own network unless the operator allows it.
    status, _, body = post(service + "/sync", {"LANG": "ADQL", "QUERY": "SELECT * FROM TAP_UPLOAD.x",
                                               "UPLOAD": "x,http://127.0.0.1:9/t.xml"})
    assert status == 400 and b"private" in body


def test_upload_by_url_when_allowed(release, duck, tmp_path):
    base, data = release
    t, _ = upload_table(duck, 5)
    t.write(tmp_path / "list.xml", format="votable")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(tmp_path), **k)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    proc, url = serve(data, "--allow-private-uploads", "--jobs-dir", str(tmp_path / "jobs"))
    try:
        status, _, body = post(url + "/sync", {"LANG": "ADQL", "RESPONSEFORMAT": "csv",
                                               "QUERY": "SELECT name FROM TAP_UPLOAD.list ORDER BY name",
                                               "UPLOAD": f"list,http://127.0.0.1:{httpd.server_port}/list.xml"})
        assert status == 200, body
        assert body.decode().split() == ["name"] + sorted(str(n) for n in t["name"])
    finally:
        proc.kill()
        proc.wait()
        httpd.shutdown()


def test_simple_cone_search(service, duck):
    base = service.rsplit("/tap", 1)[0]
    scs = pyvo.dal.SCSService(base + "/scs/sky.object")
    result = scs.search(pos=(10.0, 20.0), radius=0.5)
    assert sorted(int(x) for x in result["id"]) == cone_ids(duck, 10.0, 20.0, 0.5)
    record = result[0]
    assert record.pos is not None and record.id is not None
    with pytest.raises(pyvo.dal.DALQueryError):
        scs.search(pos=(10.0, 20.0), radius=50)
    status, body = get(base + "/scs/sky.source?RA=1&DEC=2&SR=0.1")
    assert status == 200 and b"Error" in body


def test_tables_and_tap_schema_agree(service):
    svc = pyvo.dal.TAPService(service)
    names = {t.name for t in svc.tables}
    assert {"sky.object", "sky.source", "tap_schema.columns"} <= names
    cols = svc.search("SELECT column_name, unit, ucd, indexed FROM TAP_SCHEMA.columns WHERE table_name = 'sky.object'")
    by_name = {str(c): (str(u), int(i)) for c, u, i in zip(cols["column_name"], cols["unit"], cols["indexed"])}
    assert by_name["ra"] == ("deg", 1)
    keys = svc.search("SELECT k.from_table, c.from_column, c.target_column FROM TAP_SCHEMA.keys AS k "
                      "JOIN TAP_SCHEMA.key_columns AS c ON k.key_id = c.key_id WHERE k.target_table = 'sky.object'")
    assert [(str(a), str(b), str(c)) for a, b, c in zip(keys["from_table"], keys["from_column"], keys["target_column"])] == [("sky.source", "object_id", "id")]
    status, body = get(service + "/tables?detail=min")
    assert status == 200 and b"<column>" not in body and b"sky.object" in body
    status, body = get(service + "/tables/sky.object")
    assert status == 200 and b"<unit>deg</unit>" in body
    assert get(service + "/tables/sky.nothing")[0] == 404


def test_examples_run_and_answer_as_duckdb_does(service, duck):
    import html
    status, body = get(service + "/examples")
    assert status == 200
    examples = {i: html.unescape(q) for i, q in re.findall(
        r'<div typeof="example" id="([^"]+)".*?<pre property="query">(.*?)</pre>', body.decode(), re.S)}
    assert sorted(examples) == ["by-id", "columns", "cone", "count", "cross-match", "healpix-density", "join",
                                "tables"], sorted(examples)
    svc = pyvo.dal.TAPService(service)
    got = {i: svc.search(q).to_table() for i, q in examples.items()}
    one = lambda sql: duck.execute(sql).fetchall()[0][0]
    tables = got["tables"]
    assert tables.colnames == ["table_name", "description"]
    assert {"sky.object", "sky.source", "sky.xmatch", "tap_schema.tables"} <= set(tables["table_name"])
    cone = got["cone"]
    assert cone.colnames == ["id", "ra", "dec", "dist"]
    # Its radius is chosen for the table's density, so that it finds rows (0.1 degrees found none here).
    radius = float(re.search(r"CIRCLE\('ICRS', 10\.68, 41\.27, ([0-9.]+)\)", examples["cone"]).group(1))
    d = haversine('ra', 'dec', 10.68, 41.27)
    want = sorted(x[0] for x in duck.execute(
        f"SELECT id FROM object WHERE {d} <= {radius} ORDER BY {d} LIMIT 100").fetchall())
    assert want, "the example cone finds rows"
    assert sorted(cone["id"]) == want and list(cone["dist"]) == sorted(cone["dist"])
    assert list(got["count"]["n"]) == [one("SELECT COUNT(*) FROM object WHERE dec > 0")]
    density = got["healpix-density"]
    assert density.colnames == ["cell", "n"] and len(density) == 192 and sum(density["n"]) == ROWS
    assert list(density["n"]) == sorted(density["n"], reverse=True)
    by_id = got["by-id"]
    assert list(by_id["id"]) == [1] and by_id.colnames == [c[0] for c in duck.execute("DESCRIBE object").fetchall()]
    join = got["join"]
    assert join.colnames[:4] == ["director_id", "director_ra", "director_dec", "source_id"]
    assert len(join) == min(50, one("SELECT COUNT(*) FROM source s JOIN object o ON s.object_id = o.id "
                                    "WHERE o.ra BETWEEN 179.5 AND 180.5 AND o.dec BETWEEN -0.5 AND 0.5"))
    matches = got["cross-match"]
    assert matches.colnames == ["id", "xid", "sep_arcsec"] and len(matches) > 0
    assert all(s <= 1.0 for s in matches["sep_arcsec"])
    columns = got["columns"]
    assert len(columns) > 0 and not any(str(t).startswith("tap_schema.") for t in columns["table_name"])
    assert ("sky.object", "ra", "deg") in {(str(t), str(c), str(u)) for t, c, u in
                                           zip(columns["table_name"], columns["column_name"], columns["unit"])}


def test_a_finished_job_survives_a_restart(release, tmp_path):
    base, data = release
    jobs = tmp_path / "jobs"
    proc, url = serve(data, "--jobs-dir", str(jobs))
    try:
        svc = pyvo.dal.TAPService(url)
        job = svc.submit_job("SELECT TOP 20 id, ra FROM sky.object ORDER BY id")
        job.run()
        job.wait(phases=["COMPLETED", "ERROR"], timeout=60)
        before = get(job.result_uri)[1]
        job_id = job.job_id
    finally:
        proc.kill()
        proc.wait()
    proc, url = serve(data, "--jobs-dir", str(jobs))
    try:
        status, body = get(f"{url}/async/{job_id}")
        assert status == 200 and b"COMPLETED" in body
        status, after = get(f"{url}/async/{job_id}/results/result")
        assert status == 200 and after == before and after.count(b"<TR>") == 20
    finally:
        proc.kill()
        proc.wait()


def test_a_killed_czar_loses_no_job(release, tmp_path):
    """kill -9 of the czar while async jobs are EXECUTING and QUEUED: after the restart every one of them is queued
    again (never stuck, never lost); killed a second time while they run, they end in ERROR with a message saying why
    (a query that takes the service down is not re-run forever); a job that had COMPLETED keeps its result."""
    base, data = release
    jobs = tmp_path / "jobs"
    proc, url = serve(data, "--jobs-dir", str(jobs))
    slow = "SELECT COUNT(*) FROM sky.object AS a, sky.object AS b WHERE a.mag_g < b.mag_g - 0.0001 * b.dec"
    try:
        svc = pyvo.dal.TAPService(url)
        done = svc.submit_job("SELECT TOP 5 id FROM sky.object ORDER BY id")
        done.run()
        done.wait(phases=["COMPLETED", "ERROR"], timeout=60)
        assert done.phase == "COMPLETED"
        result = get(done.result_uri)[1]
        running = []
        for _ in range(6):
            job = svc.submit_job(slow)
            job.run()
            running.append(job.job_id)
        # Four execute at once, the others wait QUEUED.
        phases = lambda: [svc.get_job(j).phase for j in running]
        wait_until("four jobs EXECUTING and two QUEUED",
                   lambda: (now := phases()).count("EXECUTING") == 4 and now.count("QUEUED") == 2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    for restart in (1, 2):
        proc, url = serve(data, "--jobs-dir", str(jobs))
        try:
            svc = pyvo.dal.TAPService(url)
            phases = [svc.get_job(j).phase for j in running]
            if restart == 1:
                # Queued again: four execute, two wait, as before the kill.
                assert set(phases) <= {"QUEUED", "EXECUTING"} and "EXECUTING" in phases, phases
            else:
                for job_id in running:
                    assert svc.get_job(job_id).phase == "ERROR", (job_id, svc.get_job(job_id).phase)
                    status, body = get(f"{url}/async/{job_id}/error")
                    assert b"stopped twice" in body, body[:300]
            assert svc.get_job(done.job_id).phase == "COMPLETED"
            assert get(f"{url}/async/{done.job_id}/results/result")[1] == result
            listed = get(f"{url}/async")[1].decode()
            assert all(j in listed for j in running + [done.job_id])
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()


@pytest.mark.skipif(shutil.which("stilts") is None and not os.environ.get("CI"), reason="stilts is not installed")
def test_taplint_reports_no_errors(service):
    out = subprocess.run(["stilts", "taplint", f"tapurl={service}", "report=EW"], capture_output=True, text=True,
                         timeout=900)
    totals = re.search(r"Totals: Errors: (\d+); Warnings: (\d+)", out.stdout)
    assert totals, out.stdout[-3000:] + out.stderr[-3000:]
    assert totals.group(1) == "0", out.stdout


def test_demo_is_one_command(tmp_path):
    def demo():
        proc = subprocess.Popen([SKYSHARD, "demo", "--port", "0", "--rows", "20000", "--data-dir", str(tmp_path / "demo")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = []
        deadline = time.time() + 120
        while time.time() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            m = re.search(r"TAP service at (http://\S+/tap)", line)
            if m:
                # The instructions follow the address.
                for _ in range(9):
                    lines.append(proc.stdout.readline())
                return proc, m.group(1), "".join(lines)
            if proc.poll() is not None:
                raise AssertionError(proc.stderr.read())
        raise AssertionError("the demo did not start")

    proc, url, text = demo()
    try:
        assert "generated and loaded 20000 objects" in text and "pyvo.dal.TAPService" in text
        svc = pyvo.dal.TAPService(url)
        assert int(svc.search("SELECT COUNT(*) AS n FROM sky.object")["n"][0]) == 20000
        assert {"sky.object", "sky.source", "sky.xmatch"} <= {t.name for t in svc.tables}
        # Its images: 24 in ivoa.obscore, found by SIA around the object each is centred on.
        sia = pyvo.dal.SIA2Service(url.replace("/tap", "/sia"))
        assert len(sia.search(collection="demo")) == 24
        first = svc.search("SELECT TOP 1 s_ra, s_dec FROM ivoa.obscore ORDER BY obs_id").to_table()[0]
        assert len(sia.search(pos=(float(first["s_ra"]), float(first["s_dec"]), 0.001))) >= 1
    finally:
        proc.kill()
        proc.wait()
    # A second start reuses the catalog.
    proc, url, text = demo()
    try:
        assert "using the sample catalog already in" in text
    finally:
        proc.kill()
        proc.wait()


def test_a_broadcast_list_finds_every_pair_once_across_chunk_edges(service, duck):
    # 400 positions over the whole sky, cones of 0.4 degrees: many straddle chunk edges. The list travels to the
    # workers inside each chunk's fragment; every (list row, object) pair must come back exactly once.
    rng = np.random.default_rng(12)
    n = 400
    t = Table()
    t["k"] = np.arange(n)
    t["ra"] = rng.uniform(0, 360, n)
    t["dec"] = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    radius = 0.4
    query = ("SELECT u.k, o.id FROM TAP_UPLOAD.l AS u JOIN sky.object AS o "
             f"ON 1 = CONTAINS(POINT('ICRS', o.ra, o.dec), CIRCLE('ICRS', u.ra, u.dec, {radius}))")
    result = pyvo.dal.TAPService(service).search(query, uploads={"l": t}, maxrec=1_000_000)
    got = sorted((int(k), int(i)) for k, i in zip(result["k"], result["id"]))
    duck.register("l", t.to_pandas())
    want = sorted(duck.execute(f"SELECT l.k, o.id FROM l, object o "
                               f"WHERE {haversine('o.ra', 'o.dec', 'l.ra', 'l.dec')} <= {radius}").fetchall())
    duck.unregister("l")
    assert len(want) > 50
    assert got == want
