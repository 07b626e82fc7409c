"""The cluster as users reach it: `skyshard serve` (czar + workers over Arrow Flight on loopback) and separate
`skyshard worker` / `skyshard czar` processes, queried over HTTP (/tap/sync). Every answer is compared with DuckDB
over the same un-partitioned Parquet files: cones at the poles and across RA 0/360, aggregates (also of empty
results), TOP/ORDER BY/OFFSET, id lookups through the secondary index, a director-child join. A worker killed with
-9 is survived with two replicas and named in a clear error with one."""

import re
import signal
import subprocess
import urllib.parse
import urllib.request

import duckdb
import pytest
import requests

from skyshard_processes import SKYSHARD, haversine, rows, run, start, tap, wait_until, wait_until_idle

ROWS = 60000


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    base = tmp_path_factory.mktemp("cluster")
    run("gen", "--rows", str(ROWS), "--out", str(base / "rel"))
    data = base / "data"
    run("ingest", "--data-dir", str(data), "--table", "sky.object", "--input", str(base / "rel/object.parquet"),
        "--ra", "ra", "--dec", "dec", "--id", "id", "--chunk-rows", "2000", "--quiet")
    run("ingest", "--data-dir", str(data), "--table", "sky.source", "--input", str(base / "rel/source.parquet"),
        "--director", "sky.object", "--director-key", "object_id", "--quiet")
    run("ingest", "--data-dir", str(data), "--table", "sky.xmatch", "--input", str(base / "rel/xmatch.parquet"),
        "--ra", "ra", "--dec", "dec", "--id", "xid", "--chunk-map-of", "sky.object", "--quiet")
    # The same catalog loaded as a user would, without hints: its own, coarser chunk tree.
    run("ingest", "--data-dir", str(data), "--table", "sky.xfree", "--input", str(base / "rel/xmatch.parquet"),
        "--ra", "ra", "--dec", "dec", "--id", "xid", "--chunk-rows", "7000", "--quiet")
    (base / "bands.csv").write_text("band,lambda_nm\ng,480\nr,620\ni,750\nz,900\n")
    run("ingest", "--data-dir", str(data), "--table", "sky.bands", "--input", str(base / "bands.csv"), "--replicated",
        "--quiet")
    return base, data


@pytest.fixture(scope="module")
def served(release):
    base, data = release
    proc, url = start(["serve", "--data-dir", str(data), "--port", "0", "--workers", "3", "--replicas", "2"],
                      r"TAP service at (http://\S+/tap)")
    yield url
    proc.kill()
    proc.wait()


def duck(release, sql):
    base, _ = release
    con = duckdb.connect()
    con.execute(f"CREATE VIEW object AS SELECT * FROM read_parquet('{base}/rel/object.parquet')")
    con.execute(f"CREATE VIEW source AS SELECT * FROM read_parquet('{base}/rel/source.parquet')")
    con.execute(f"CREATE VIEW xmatch AS SELECT * FROM read_parquet('{base}/rel/xmatch.parquet')")
    con.execute("CREATE VIEW xfree AS SELECT * FROM xmatch")
    con.execute(f"CREATE VIEW bands AS SELECT * FROM read_csv_auto('{base}/bands.csv')")
    return con.execute(sql).fetchall()


# Each cone has rows (the release plants objects at both poles and across RA 0/360; the reference is checked).
CONES = [(45.0, 10.0, 1.5), (0.0, 0.0, 2.0), (359.9, -5.0, 3.0), (120.0, 89.5, 2.0), (300.0, -89.0, 3.0), (359.95, 60.0, 0.2)]


@pytest.mark.parametrize("cone", CONES)
def test_cones_match_duckdb(served, release, cone):
    a, d, r = cone
    got = rows(served, f"SELECT id FROM sky.object WHERE CONTAINS(POINT(ra, dec), CIRCLE({a}, {d}, {r})) = 1")
    want = duck(release, f"SELECT id FROM object WHERE {haversine('ra', 'dec', a, d)} <= {r}")
    assert len(want) > 0, "the reference is empty: this cone tests nothing"
    assert sorted(int(x[0]) for x in got) == sorted(x[0] for x in want)
    got = rows(served, f"SELECT COUNT(*) FROM sky.object WHERE DISTANCE(ra, dec, {a}, {d}) < {r}")
    assert int(got[0][0]) == len(want)


def close(a, b):
    if a in ("", None) or b in ("", None):
        return a in ("", None) and b in ("", None)
    if isinstance(b, str):
        return a == b
    # float32 columns print with 7 significant digits
    return abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(b)))


@pytest.mark.parametrize("adql,sql", [
    ("SELECT COUNT(*), SUM(mag_g), AVG(mag_r), MIN(dec), MAX(ra) FROM sky.object",
     "SELECT COUNT(*), SUM(mag_g), AVG(mag_r), MIN(dec), MAX(ra) FROM object"),
    ("SELECT COUNT(*), AVG(mag_g), MAX(mag_g) FROM sky.object WHERE mag_g > 99",
     "SELECT COUNT(*), AVG(mag_g), MAX(mag_g) FROM object WHERE mag_g > 99"),
    ("SELECT FLOOR(dec / 10) AS band, COUNT(*) AS n, AVG(mag_g) AS m FROM sky.object GROUP BY FLOOR(dec / 10) HAVING COUNT(*) > 100 ORDER BY band",
     "SELECT FLOOR(dec / 10) AS band, COUNT(*), AVG(mag_g) FROM object GROUP BY 1 HAVING COUNT(*) > 100 ORDER BY 1"),
    ("SELECT COUNT(DISTINCT object_id) FROM sky.source", "SELECT COUNT(DISTINCT object_id) FROM source"),
    ("SELECT TOP 7 id, mag_g FROM sky.object ORDER BY mag_g DESC, id", "SELECT id, mag_g FROM object ORDER BY mag_g DESC, id LIMIT 7"),
    ("SELECT id FROM sky.object ORDER BY id OFFSET 59990", "SELECT id FROM object ORDER BY id OFFSET 59990"),
    ("SELECT id, ra FROM sky.object WHERE id IN (5, 17, 40000, 123456789) ORDER BY id",
     "SELECT id, ra FROM object WHERE id IN (5, 17, 40000, 123456789) ORDER BY id"),
    ("SELECT COUNT(*) FROM sky.source AS s JOIN sky.object AS o ON s.object_id = o.id WHERE o.mag_g < 18",
     "SELECT COUNT(*) FROM source s JOIN object o ON s.object_id = o.id WHERE o.mag_g < 18"),
    ("SELECT COUNT(*) FROM sky.source WHERE object_id = 777", "SELECT COUNT(*) FROM source WHERE object_id = 777"),
])
def test_queries_match_duckdb(served, release, adql, sql):
    got = rows(served, adql)
    want = duck(release, sql)
    assert len(got) == len(want), (got[:5], want[:5])
    for g, w in zip(got, want):
        assert all(close(a, b) for a, b in zip(g, w)), (g, w)


def pairs_within(release, r, where=""):
    return sorted(duck(release, f"""SELECT a.id, b.id FROM object a JOIN object b
        ON b.dec BETWEEN a.dec - {r} AND a.dec + {r} AND a.id <> b.id AND {haversine('b.ra', 'b.dec', 'a.ra', 'a.dec')} <= {r}
        {where}"""))


def explain(served, adql):
    out = subprocess.run([SKYSHARD, "query", "--url", served, "--explain", adql], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.mark.parametrize("form", ["contains", "distance"])
def test_near_neighbours_run_chunk_local_and_match_duckdb(served, release, form):
    # Just inside the 60-arcsec overlap: every pair, across chunk edges, the poles and RA 0/360, exactly once.
    r = 0.0166
    on = (f"CONTAINS(POINT(b.ra, b.dec), CIRCLE(a.ra, a.dec, {r})) = 1" if form == "contains"
          else f"DISTANCE(POINT(a.ra, a.dec), POINT(b.ra, b.dec)) < {r}")
    adql = f"SELECT a.id, b.id AS bid FROM sky.object AS a JOIN sky.object AS b ON {on} WHERE a.id <> b.id"
    plan = explain(served, adql)
    assert "ConeJoinExec" in plan.split("merge plan")[0] and "with overlap" in plan, plan
    got = sorted((int(a), int(b)) for a, b in rows(served, adql))
    want = pairs_within(release, r)
    assert len(want) > 20 and got == want
    # Aggregated on the workers too.
    assert rows(served, f"SELECT COUNT(*) FROM sky.object AS a JOIN sky.object AS b ON {on} WHERE a.id <> b.id") == [(str(len(want)),)]


def test_wider_than_the_overlap_is_still_right(served, release):
    # 0.05 deg is three times the overlap: still chunk-local (each chunk meets the own rows of the chunks near it),
    # still complete.
    r = 0.05
    adql = (f"SELECT a.id, b.id AS bid FROM sky.object AS a JOIN sky.object AS b "
            f"ON CONTAINS(POINT(b.ra, b.dec), CIRCLE(a.ra, a.dec, {r})) = 1 "
            f"WHERE a.id <> b.id AND CONTAINS(POINT(a.ra, a.dec), CIRCLE(0, 0, 4)) = 1")
    assert "ConeJoinExec" in explain(served, adql).split("merge plan")[0]
    got = sorted((int(a), int(b)) for a, b in rows(served, adql))
    want = pairs_within(release, r, f"WHERE {haversine('a.ra', 'a.dec', 0, 0)} <= 4")
    assert len(want) > 0 and got == want


def test_a_whole_table_count_is_answered_from_its_record(served, release):
    # COUNT(*) of a whole table reads no chunk (its load's row count is exact); with a filter it runs on the workers.
    for table in ["object", "source", "xfree", "bands"]:
        adql = f"SELECT COUNT(*) AS n FROM sky.{table}"
        assert "RemoteExec" not in explain(served, adql)
        (want,), = duck(release, f"SELECT COUNT(*) FROM {table}")
        assert want > 0 and rows(served, adql) == [(str(want),)]
    assert "RemoteExec" in explain(served, "SELECT COUNT(*) FROM sky.object WHERE mag_g < 20")


def test_director_child_join_runs_chunk_local(served, release):
    adql = "SELECT o.id, COUNT(*) AS n, SUM(s.flux) AS f FROM sky.source AS s JOIN sky.object AS o ON s.object_id = o.id WHERE o.mag_g < 19 GROUP BY o.id ORDER BY o.id"
    assert "HashJoinExec: mode=Partitioned" in explain(served, adql).split("merge plan")[0]
    got = rows(served, adql)
    want = duck(release, "SELECT o.id, COUNT(*), SUM(s.flux) FROM source s JOIN object o ON s.object_id = o.id WHERE o.mag_g < 19 GROUP BY o.id ORDER BY o.id")
    assert len(got) == len(want) > 100
    for g, w in zip(got, want):
        assert all(close(a, b) for a, b in zip(g, w)), (g, w)


def test_errors_and_maxrec(served):
    status, body = tap(served, "SELECT ra FROM sky.object WHERE")
    assert status == 400 and 'value="ERROR"' in body and "1:" in body
    status, body = tap(served, "SELECT nosuch FROM sky.object")
    assert status == 400 and "nosuch" in body
    status, body = tap(served, "SELECT id FROM sky.object", fmt="votable", MAXREC="10")
    assert status == 200 and body.count("<TR>") == 10 and 'value="OVERFLOW"' in body
    status, body = tap(served, "SELECT TOP 3 id FROM sky.object", fmt="votable", MAXREC="10")
    assert status == 200 and body.count("<TR>") == 3 and "OVERFLOW" not in body
    out = subprocess.run([SKYSHARD, "query", "--url", served, "--explain",
                          "SELECT COUNT(*) FROM sky.object WHERE CONTAINS(POINT(ra, dec), CIRCLE(45, 10, 0.5)) = 1"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    m = re.search(r"fragment over (\d+) chunks", out.stdout)
    assert m and 1 <= int(m.group(1)) <= 4, out.stdout
    assert "ChunkScanExec" in out.stdout and "index ranges" in out.stdout, out.stdout
    out = subprocess.run([SKYSHARD, "query", "--url", served, "--explain", "SELECT COUNT(*) FROM sky.object WHERE mag_g < 99"], capture_output=True, text=True)
    assert "AggregateExec: mode=Partial" in out.stdout.split("merge plan")[0], out.stdout
    out = subprocess.run([SKYSHARD, "query", "--url", served, "SELECT COUNT(*) AS n FROM sky.object"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.split() == ["n", str(ROWS)], out.stdout + out.stderr


def test_a_killed_worker(release):
    base, data = release
    workers = [start(["worker", "--listen", "127.0.0.1:0", "--data-dir", str(data)], r"worker at (\S+)") for _ in range(3)]
    try:
        addresses = ",".join(a for _, a in workers)
        czar1, url1 = start(["czar", "--port", "0", "--data-dir", str(data), "--workers", addresses, "--replicas", "1",
                             "--jobs-dir", str(base / "jobs1")],
                            r"TAP service at (http://\S+/tap)")
        czar2, url2 = start(["czar", "--port", "0", "--data-dir", str(data), "--workers", addresses, "--replicas", "2",
                             "--jobs-dir", str(base / "jobs2")],
                            r"TAP service at (http://\S+/tap)")
        query = "SELECT COUNT(*), SUM(mag_g) FROM sky.object"
        before = rows(url1, query)
        workers[0][0].send_signal(signal.SIGKILL)
        workers[0][0].wait()
        status, body = tap(url1, query)
        assert status == 503 and "unavailable" in body and "chunk" in body, body
        try:
            assert rows(url2, query) == before
            assert rows(url2, "SELECT COUNT(*) FROM sky.source") == [(str(len(duck(release, "SELECT * FROM source"))),)]
        finally:
            czar1.kill()
            czar2.kill()
    finally:
        for p, _ in workers:
            p.kill()


def test_a_worker_that_rejoins_after_a_restart_serves_again(release, tmp_path):
    """One replica: while a worker is down its chunks fail the query (503 naming a chunk); restarted at the same
    address, it serves them again, with no czar restart, and the answer is the same as before."""
    base, data = release
    workers = [start(["worker", "--listen", "127.0.0.1:0", "--data-dir", str(data)], r"worker at (\S+)") for _ in range(2)]
    czar = None
    try:
        czar, url = start(["czar", "--port", "0", "--data-dir", str(data), "--workers", ",".join(a for _, a in workers),
                           "--replicas", "1", "--jobs-dir", str(tmp_path / "jobs")],
                          r"TAP service at (http://\S+/tap)")
        query = "SELECT COUNT(*), SUM(mag_g) FROM sky.object"
        before = rows(url, query)
        assert before and int(before[0][0]) > 0
        address = workers[0][1]
        workers[0][0].send_signal(signal.SIGKILL)
        workers[0][0].wait()
        status, body = tap(url, query)
        assert status == 503 and "chunk" in body, body
        workers[0] = start(["worker", "--listen", address, "--data-dir", str(data)], r"worker at (\S+)")
        assert workers[0][1] == address
        wait_until("the czar answers with the restarted worker", lambda: tap(url, query)[0] == 200, interval=0.5)
        assert rows(url, query) == before
    finally:
        if czar:
            czar.kill()
        for p, _ in workers:
            p.kill()


def test_limits_end_queries_clearly_and_free_the_service(release, tmp_path):
    base, data = release
    proc, url = start(["serve", "--data-dir", str(data), "--port", "0", "--workers", "2", "--query-memory-mb", "1",
                       "--sync-timeout", "3", "--jobs-dir", str(tmp_path / "jobs")], r"TAP service at (http://\S+/tap)")
    try:
        # A join gathered at the czar needs more than 1 MiB for its hash table.
        status, body = tap(url, "SELECT COUNT(*) FROM sky.source AS s JOIN sky.object AS o ON s.flux = o.mag_g")
        assert status == 400 and "more memory" in body and 'value="ERROR"' in body, body[:500]
        # A nested-loop join of 60k x 60k rows (minutes of work on both cores): as a sync query it is stopped at the
        # time limit, saying so, and the stopped query gives its cores back (the process goes idle).
        join = "SELECT COUNT(*) FROM sky.object AS a, sky.object AS b WHERE a.mag_g < b.mag_g - 0.0001 * b.dec"
        status, body = tap(url, join)
        assert "the query ran longer than the limit of 3 s" in body and 'value="ERROR"' in body, (status, body[:300])
        wait_until_idle(proc, "the service idle after its sync query was stopped at the time limit")
        # The same join as an async job (no sync limit): while it executes, a cone is answered, exactly; the job
        # is still executing after that answer, so the cone did not wait for it. On a service whose sync limit is
        # not 3 s: with both cores held by the join the cone may take longer than that on a slow build (it did, with
        # dependencies at opt-level 0: the sync limit cut its CSV answer), and how long it takes is a benchmark's
        # question, not this test's.
        proc.kill()
        proc.wait()
        proc, url = start(["serve", "--data-dir", str(data), "--port", "0", "--workers", "2",
                           "--sync-timeout", "600", "--jobs-dir", str(tmp_path / "jobs2")],
                          r"TAP service at (http://\S+/tap)")
        s = requests.Session()
        r = s.post(url + "/async", data={"LANG": "ADQL", "QUERY": join, "PHASE": "RUN", "EXECUTIONDURATION": "3600"},
                   allow_redirects=False)
        assert r.status_code == 303, r.text
        job = urllib.parse.urljoin(url + "/", r.headers["location"])
        phase = lambda: s.get(job + "/phase").text.strip()
        wait_until("the join job past PENDING and QUEUED", lambda: phase() not in ("PENDING", "QUEUED"))
        assert phase() == "EXECUTING", s.get(job).text[:500]
        cone = rows(url, "SELECT id FROM sky.object WHERE CONTAINS(POINT(ra, dec), CIRCLE(10, 10, 2)) = 1")
        want = duck(release, f"SELECT id FROM object WHERE {haversine('ra', 'dec', 10, 10)} <= 2")
        assert want and sorted(int(x[0]) for x in cone) == sorted(x[0] for x in want)
        assert phase() == "EXECUTING", "the join ended before the cone was answered: the cone proved nothing"
        # Aborted, the job ends ABORTED and its work stops: the process goes idle again.
        assert s.post(job + "/phase", data={"PHASE": "ABORT"}, allow_redirects=False).status_code == 303
        wait_until("the join job ABORTED", lambda: phase() == "ABORTED")
        wait_until_idle(proc, "the service idle after its async join was aborted")
    finally:
        proc.kill()
        proc.wait()


def test_a_worker_out_of_query_memory_fails_the_query_not_the_worker(tmp_path):
    # A million objects in the minimum 48 chunks: a director-child join's hash table needs about 1.4 MiB per
    # chunk on the worker, past --fragment-memory-mb 1; the czar's own limit is not the one reached.
    run("gen", "--rows", "1000000", "--out", str(tmp_path / "rel"), "--seed", "3")
    data = tmp_path / "data"
    run("ingest", "--data-dir", str(data), "--table", "sky.object", "--input", str(tmp_path / "rel/object.parquet"),
        "--ra", "ra", "--dec", "dec", "--id", "id", "--quiet")
    run("ingest", "--data-dir", str(data), "--table", "sky.source", "--input", str(tmp_path / "rel/source.parquet"),
        "--director", "sky.object", "--director-key", "object_id", "--quiet")
    proc, url = start(["serve", "--data-dir", str(data), "--port", "0", "--workers", "2", "--fragment-memory-mb", "1",
                       "--jobs-dir", str(tmp_path / "jobs")], r"TAP service at (http://\S+/tap)")
    try:
        join = "SELECT COUNT(*) FROM sky.object AS o JOIN sky.source AS s ON s.object_id = o.id"
        assert "HashJoinExec" in explain(url, join).split("merge plan at the czar")[0]
        status, body = tap(url, join)
        assert status == 400 and 'value="ERROR"' in body, body[:500]
        assert "more memory on a worker" in body and "--fragment-memory-mb" in body, body[:500]
        # The workers are fine: a query within the limit is answered, exactly.
        status, body = tap(url, "SELECT COUNT(*) FROM sky.object WHERE mag_g < 20")
        expected = duckdb.sql(f"SELECT COUNT(*) FROM '{tmp_path / 'rel/object.parquet'}' WHERE mag_g < 20").fetchall()[0][0]
        assert expected > 0 and status == 200 and body.split()[1] == str(expected), body[:300]
    finally:
        proc.kill()
        proc.wait()


def test_a_worker_killed_mid_query(release, tmp_path):
    """kill -9 a worker while a large result is streaming: with two replicas the result is complete and right,
    with one the document ends with an error naming the chunk, never silently short."""
    import http.client
    base, data = release
    want = sorted(r[0] for r in duck(release, "SELECT source_id FROM source"))
    for replicas in (2, 1):
        workers = [start(["worker", "--listen", "127.0.0.1:0", "--data-dir", str(data)], r"worker at (\S+)") for _ in range(3)]
        czar, url = start(["czar", "--port", "0", "--data-dir", str(data), "--workers", ",".join(a for _, a in workers),
                           "--replicas", str(replicas), "--jobs-dir", str(tmp_path / f"jobs{replicas}")],
                          r"TAP service at (http://\S+/tap)")
        try:
            u = urllib.parse.urlparse(url)
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
            form = urllib.parse.urlencode({"LANG": "ADQL", "QUERY": "SELECT source_id, object_id, flux, band, mjd, ra, dec FROM sky.source",
                                           "MAXREC": "10000000"})
            conn.request("POST", "/tap/sync", form, {"Content-Type": "application/x-www-form-urlencoded"})
            response = conn.getresponse()
            assert response.status == 200
            head = response.read(64 * 1024)
            workers[0][0].send_signal(signal.SIGKILL)
            workers[0][0].wait()
            body = (head + response.read()).decode()
            ids = [int(x) for x in re.findall(r"<TR><TD>(\d+)</TD>", body)]
            tail = body[-2000:]
            if replicas == 2 or 'value="ERROR"' not in tail:
                # Complete and right (with one replica only if the dead worker had already sent all it had).
                assert 'value="ERROR"' not in body and sorted(ids) == want
                if replicas == 2:
                    # The dead worker may have sent all it had before it died; a second query must move its chunks,
                    # and the czar must say which (its log) and how many (/health).
                    status, again = tap(url, "SELECT source_id FROM sky.source", MAXREC="10000000")
                    assert status == 200 and sorted(int(x) for x in again.split()[1:]) == want
                    health = urllib.request.urlopen(url.replace("/tap", "/health"), timeout=10).read().decode()
                    moved = int(re.search(r'"chunks_failed_over":(\d+)', health).group(1))
                    assert moved > 0, health
                    czar.kill()
                    log = czar.stderr.read()
                    lines = [line for line in log.splitlines() if " moved from " in line]
                    assert len(lines) == moved, log
                    assert all(re.match(rf"failover: \S+ chunk \d+ moved from {re.escape(workers[0][1])} to ", line)
                               for line in lines), log
            else:
                assert "unavailable" in tail and "chunk" in tail, tail
                assert len(ids) < len(want)
        finally:
            czar.kill()
            for p, _ in workers:
                p.kill()


REGIONS = [
    "CONTAINS(POINT(ra, dec), BOX(10, 10, 4, 3)) = 1",
    "CONTAINS(POINT(ra, dec), BOX(0, -20, 6, 4)) = 1",
    "CONTAINS(POINT(ra, dec), BOX(120, 88.5, 40, 2)) = 1",
    "CONTAINS(POINT(ra, dec), POLYGON(358, 1, 3, 1, 2, 5, 357, 4)) = 1",
    "CONTAINS(POINT(ra, dec), POLYGON(10, -80, 100, -80, 200, -80)) = 1",
    "CONTAINS(POINT(ra, dec), CIRCLE(10, 10, 2)) = 1 OR CONTAINS(POINT(ra, dec), CIRCLE(200, -40, 1.5)) = 1",
    "(CONTAINS(POINT(ra, dec), BOX(300, 30, 3, 3)) = 1 OR DISTANCE(ra, dec, 45, 45) < 2) AND mag_g < 21",
]


@pytest.mark.parametrize("where", REGIONS)
def test_regions_prune_chunks_and_match_single_node(served, release, where):
    base, _ = release
    adql = f"SELECT id FROM sky.object WHERE {where} ORDER BY id"
    plan = explain(served, adql)
    touched = int(re.search(r"fragment over (\d+) chunks", plan).group(1))
    total = int(rows(served, "SELECT COUNT(*) FROM TAP_SCHEMA.tables")[0][0])  # warm-up, and a sanity query
    assert total > 0
    all_chunks = int(re.search(r"fragment over (\d+) chunks", explain(served, "SELECT id FROM sky.object")).group(1))
    assert touched < all_chunks / 2, plan
    got = [int(r[0]) for r in rows(served, adql)]
    out = subprocess.run([SKYSHARD, "adql", "run", "--table", f"sky.object={base}/rel/object.parquet", "--format", "csv", adql],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    want = [int(x) for x in out.stdout.split()[1:]]
    assert got == want and len(want) > 0


def test_load_ships_chunks_to_workers_own_disks(release, tmp_path):
    """skyshard load through a czar: the czar partitions, ships each chunk to its workers (own data directories,
    two replicas) and publishes; a failed load publishes nothing."""
    base, _ = release
    workers = [start(["worker", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / f"w{i}")], r"worker at (\S+)")
               for i in range(3)]
    czar, url = start(["czar", "--port", "0", "--data-dir", str(tmp_path / "czar"), "--workers",
                       ",".join(a for _, a in workers), "--replicas", "2", "--replaced-load-linger", "0"], r"TAP service at (http://\S+/tap)")
    try:
        out = run("load", "--url", url, "--table", "sky.object", "--input", str(base / "rel/object.parquet"),
                  "--ra", "ra", "--dec", "dec", "--id", "id", "--chunk-rows", "5000")
        assert "loaded sky.object" in out and "files shipped" in out, out
        run("load", "--url", url, "--table", "sky.source", "--input", str(base / "rel/source.parquet"),
            "--director", "sky.object", "--director-key", "object_id")
        bands = tmp_path / "bands.csv"
        bands.write_text("band,lambda_nm\ng,480\nr,620\ni,750\n")
        run("load", "--url", url, "--table", "sky.bands", "--input", str(bands), "--replicated")
        # Every worker holds chunk files of its own, and each chunk file is on two workers.
        held = [sorted(p.name for p in (tmp_path / f"w{i}").rglob("*.parquet") if "sky.object" in str(p)) for i in range(3)]
        assert all(held)
        names = [n for h in held for n in h]
        assert all(names.count(n) == 2 for n in set(names))
        assert rows(url, "SELECT COUNT(*), SUM(mag_g) FROM sky.object")[0][0] == str(ROWS)
        got = rows(url, "SELECT COUNT(*) FROM sky.source AS s JOIN sky.object AS o ON s.object_id = o.id WHERE o.mag_g < 18")
        assert got == [tuple(str(x) for x in duck(release, "SELECT COUNT(*) FROM source s JOIN object o ON s.object_id = o.id WHERE o.mag_g < 18")[0])]
        assert rows(url, "SELECT COUNT(*) FROM sky.bands") == [("3",)]
        # Replacing a table leaves only its new load on the workers.
        bands.write_text("band,lambda_nm\ng,480\nr,620\n")
        run("load", "--url", url, "--table", "sky.bands", "--input", str(bands), "--replicated", "--replace")
        assert rows(url, "SELECT COUNT(*) FROM sky.bands") == [("2",)]
        # The old load is dropped after the publish, asynchronously (--replaced-load-linger 0).
        loads = lambda: [len(list((tmp_path / f"w{i}" / "tables" / "sky.bands").iterdir())) for i in range(3)]
        wait_until("one load of sky.bands left on each worker", lambda: loads() == [1, 1, 1], interval=0.05)
        # A bad input: refused, and the catalog is unchanged.
        bad = tmp_path / "bad.csv"
        bad.write_text("x,y\n1,2\n")
        out = subprocess.run([SKYSHARD, "load", "--url", url, "--table", "sky.extra", "--input", str(bad),
                              "--ra", "ra", "--dec", "dec", "--id", "id"], capture_output=True, text=True)
        assert out.returncode == 1 and "no column named ra (columns: x, y)" in out.stderr, out.stderr
        status, body = tap(url, "SELECT COUNT(*) FROM sky.extra")
        assert status == 400 and "1:22: table sky.extra not found" in body, body[-500:]
        # A dead worker: the load cannot be shipped, so it is not published.
        workers[2][0].kill()
        workers[2][0].wait()
        out = subprocess.run([SKYSHARD, "load", "--url", url, "--table", "sky.object2", "--input", str(base / "rel/object.parquet"),
                              "--ra", "ra", "--dec", "dec", "--id", "id", "--chunk-rows", "5000"], capture_output=True, text=True)
        dead = workers[2][1]
        assert out.returncode == 1, out.stderr
        assert f"the load was not published: shipping to worker {dead}: it does not answer" in out.stderr, out.stderr
        status, body = tap(url, "SELECT COUNT(*) FROM sky.object2")
        assert status == 400 and "1:22: table sky.object2 not found" in body, body[-500:]
        # Still served from the replicas.
        assert rows(url, "SELECT COUNT(*) FROM sky.object")[0][0] == str(ROWS)
        # A restarted czar with one more (empty) worker routes chunks where they were shipped (kept in the table record).
        czar.kill()
        czar.wait()
        workers.append(start(["worker", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "w3")], r"worker at (\S+)"))
        czar, url = start(["czar", "--port", "0", "--data-dir", str(tmp_path / "czar"), "--workers",
                           ",".join(a for _, a in workers[:2] + workers[3:]), "--replicas", "2"],
                          r"TAP service at (http://\S+/tap)")
        assert rows(url, "SELECT COUNT(*), SUM(mag_g) FROM sky.object")[0][0] == str(ROWS)
        assert rows(url, "SELECT COUNT(*) FROM sky.source AS s JOIN sky.object AS o ON s.object_id = o.id WHERE o.mag_g < 18") == got
        # A chunk file gone from every worker is an error naming the chunk, never an empty chunk.
        victim = [n for n in held[0] if ".overlap." not in n][0]
        for i in range(4):
            for p in (tmp_path / f"w{i}").rglob(victim):
                if "sky.object" in str(p):
                    p.unlink()
        status, body = tap(url, "SELECT COUNT(*) FROM sky.object WHERE mag_g < 99")
        assert status == 503 and "chunk " + victim.split(".")[0] in body, body[:800]
    finally:
        czar.kill()
        for p, _ in workers:
            p.kill()


@pytest.mark.parametrize("where", ["id BETWEEN 100 AND 140", "id >= 100 AND id < 141", "object_id BETWEEN 7 AND 9"])
def test_small_id_ranges_use_the_index(served, release, where):
    table = "source" if where.startswith("object_id") else "object"
    key = "source_id" if table == "source" else "id"
    adql = f"SELECT {key} FROM sky.{table} WHERE {where} ORDER BY {key}"
    touched = int(re.search(r"fragment over (\d+) chunks", explain(served, adql)).group(1))
    assert touched <= 41
    got = [int(r[0]) for r in rows(served, adql)]
    assert got == [r[0] for r in duck(release, f"SELECT {key} FROM {table} WHERE {where} ORDER BY {key}")] and got


@pytest.mark.parametrize("adql,sql", [
    ("SELECT s.band, COUNT(*) AS n, AVG(b.lambda_nm) AS l FROM sky.source AS s JOIN sky.bands AS b ON s.band = b.band GROUP BY s.band ORDER BY s.band",
     "SELECT s.band, COUNT(*), AVG(b.lambda_nm) FROM source s JOIN bands b ON s.band = b.band GROUP BY 1 ORDER BY 1"),
    ("SELECT COUNT(*) FROM sky.source AS s LEFT JOIN sky.bands AS b ON s.band = b.band AND b.lambda_nm > 500 WHERE b.band IS NULL",
     "SELECT COUNT(*) FROM source s LEFT JOIN bands b ON s.band = b.band AND b.lambda_nm > 500 WHERE b.band IS NULL"),
    ("SELECT b.band, COUNT(s.source_id) FROM sky.bands AS b LEFT JOIN sky.source AS s ON s.band = b.band GROUP BY b.band ORDER BY b.band",
     "SELECT b.band, COUNT(s.source_id) FROM bands b LEFT JOIN source s ON s.band = b.band GROUP BY 1 ORDER BY 1"),
])
def test_joins_with_a_replicated_table(served, release, adql, sql):
    got = rows(served, adql)
    want = duck(release, sql)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert all(close(a, b) for a, b in zip(g, w)), (g, w)


def test_cross_match_of_two_catalogs_on_one_chunk_map(served, release):
    # sky.xmatch was loaded with --chunk-map-of sky.object: the cross-match runs chunk by chunk.
    r = 1.5 / 3600
    adql = (f"SELECT o.id, x.xid FROM sky.object AS o JOIN sky.xmatch AS x "
            f"ON CONTAINS(POINT(x.ra, x.dec), CIRCLE(o.ra, o.dec, {r})) = 1")
    assert "ConeJoinExec" in explain(served, adql).split("merge plan")[0]
    got = sorted((int(a), int(b)) for a, b in rows(served, adql))
    want = sorted(duck(release, f"""SELECT o.id, x.xid FROM object o JOIN xmatch x
        ON x.dec BETWEEN o.dec - {r} AND o.dec + {r} AND {haversine('x.ra', 'x.dec', 'o.ra', 'o.dec')} <= {r}"""))
    assert len(want) > 1000 and got == want


def xmatch_pairs(release, r, table="xmatch", where=""):
    return sorted(duck(release, f"""SELECT o.id, x.xid FROM object o JOIN {table} x
        ON x.dec BETWEEN o.dec - {r} AND o.dec + {r} AND {haversine('x.ra', 'x.dec', 'o.ra', 'o.dec')} <= {r} {where}"""))


@pytest.mark.parametrize("order", ["object first", "catalog first"])
def test_cross_match_of_catalogs_loaded_independently(served, release, order):
    """sky.xfree has its own chunk tree (loaded without --chunk-map-of): the cross-match still runs chunk by chunk,
    each chunk of one tree meeting the chunks of the other that contain it or lie inside it, every pair once."""
    r = 1.5 / 3600
    tables = ("sky.object AS o", "sky.xfree AS x") if order == "object first" else ("sky.xfree AS x", "sky.object AS o")
    adql = (f"SELECT o.id, x.xid FROM {tables[0]} JOIN {tables[1]} "
            f"ON CONTAINS(POINT(x.ra, x.dec), CIRCLE(o.ra, o.dec, {r})) = 1")
    fragment = explain(served, adql).split("merge plan")[0]
    assert "ConeJoinExec" in fragment, fragment
    got = sorted((int(a), int(b)) for a, b in rows(served, adql))
    want = xmatch_pairs(release, r)
    assert len(want) > 1000 and got == want
    # Counted on the workers too.
    count = adql.replace("SELECT o.id, x.xid", "SELECT COUNT(*)")
    assert rows(served, count) == [(str(len(want)),)]


def test_cross_match_of_different_trees_wider_than_the_overlap(served, release):
    # 0.03 deg is wider than both overlaps (60"): each cell meets the own rows of the other table's chunks near it.
    r = 0.03
    adql = (f"SELECT o.id, x.xid FROM sky.object AS o JOIN sky.xfree AS x "
            f"ON DISTANCE(POINT(o.ra, o.dec), POINT(x.ra, x.dec)) < {r} "
            f"WHERE CONTAINS(POINT(o.ra, o.dec), CIRCLE(359.9, 0.5, 3)) = 1")
    assert "ConeJoinExec" in explain(served, adql).split("merge plan")[0]
    got = sorted((int(a), int(b)) for a, b in rows(served, adql))
    want = [p for p in xmatch_pairs(release, r, "xfree", f"WHERE {haversine('o.ra', 'o.dec', 359.9, 0.5)} <= 3")]
    assert len(want) > 100 and got == want


def test_independent_catalogs_cross_match_on_workers_with_their_own_disks(release, tmp_path):
    """Workers with their own data directories (`skyshard load` ships the chunks): chunks of both tables that share
    sky are placed on the same workers, so the cross-match runs there, and survives the loss of a worker."""
    base, _ = release
    workers = [start(["worker", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / f"w{i}")], r"worker at (\S+)")
               for i in range(3)]
    czar, url = start(["czar", "--port", "0", "--data-dir", str(tmp_path / "czar"), "--workers",
                       ",".join(a for _, a in workers), "--replicas", "2"], r"TAP service at (http://\S+/tap)")
    try:
        run("load", "--url", url, "--table", "sky.object", "--ra", "ra", "--dec", "dec", "--id", "id",
            "--chunk-rows", "2000", "--input", str(base / "rel/object.parquet"))
        run("load", "--url", url, "--table", "sky.xfree", "--ra", "ra", "--dec", "dec", "--id", "xid",
            "--chunk-rows", "7000", "--input", str(base / "rel/xmatch.parquet"))
        r = 1.5 / 3600
        adql = (f"SELECT o.id, x.xid FROM sky.object AS o JOIN sky.xfree AS x "
                f"ON CONTAINS(POINT(x.ra, x.dec), CIRCLE(o.ra, o.dec, {r})) = 1")
        assert "ConeJoinExec" in explain(url, adql).split("merge plan")[0]
        want = xmatch_pairs(release, r)
        assert len(want) > 1000
        assert sorted((int(a), int(b)) for a, b in rows(url, adql)) == want
        workers[1][0].kill()
        workers[1][0].wait()
        assert sorted((int(a), int(b)) for a, b in rows(url, adql)) == want
    finally:
        czar.kill()
        for p, _ in workers:
            p.kill()


def czar_metric(url, name, **labels):
    """A sample of the czar's /metrics (parsed by the Prometheus client's parser); None when absent."""
    from prometheus_client.parser import text_string_to_metric_families
    with urllib.request.urlopen(url[: -len("/tap")] + "/metrics", timeout=30) as r:
        families = text_string_to_metric_families(r.read().decode())
    for family in families:
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


def test_a_hung_worker_is_passed_over(release, tmp_path):
    """A worker that stops answering (SIGSTOP, not dead: its connections stay open) is given --worker-silence
    without a message (workers at work send keep-alives), then its chunks go to their replicas: the answer is
    complete and right, and no request hangs (each has the 120 s deadline of `tap`). An aggregate, whose partial
    answers travel as one call per worker for all of its chunks, is answered exactly with the worker passed over."""
    base, data = release
    workers = [start(["worker", "--listen", "127.0.0.1:0", "--data-dir", str(data)], r"worker at (\S+)") for _ in range(2)]
    czar, url = start(["czar", "--port", "0", "--data-dir", str(data), "--workers", ",".join(a for _, a in workers),
                       "--replicas", "2", "--worker-silence", "2", "--jobs-dir", str(tmp_path / "jobs")],
                      r"TAP service at (http://\S+/tap)")
    try:
        query = "SELECT id, mag_g FROM sky.object WHERE dec > 30"
        want = sorted(x[0] for x in duck(release, "SELECT id FROM object WHERE dec > 30"))
        assert len(want) > 0 and sorted(int(r[0]) for r in rows(url, query)) == want
        # Every chunk (about 15 a worker): silence x chunks would be 30 s or more.
        aggregate = "SELECT COUNT(*) AS n, SUM(mag_g) AS s FROM sky.object"
        plan = explain(url, aggregate)
        chunks = int(re.search(r"RemoteExec: (\d+) chunks", plan).group(1))
        assert ", 2 calls" in plan and chunks >= 20, plan  # grouped: one call per worker
        failovers = czar_metric(url, "skyshard_chunk_failovers_total")
        workers[0][0].send_signal(signal.SIGSTOP)
        (n, s), = [(int(r[0]), float(r[1])) for r in rows(url, aggregate)]
        (dn, ds), = duck(release, "SELECT COUNT(*), SUM(mag_g) FROM object")
        assert n == dn and abs(s - ds) < 1e-6 * abs(ds), (n, s, dn, ds)
        # Answered by passing over the silent worker: it is marked failed, and its chunks were served by their
        # other holder (the counter of chunk runs served by another worker than the chunk's first holder moved).
        assert czar_metric(url, "skyshard_workers", health="failed") == 1
        assert czar_metric(url, "skyshard_chunk_failovers_total") > failovers
        assert sorted(int(r[0]) for r in rows(url, query)) == want
    finally:
        workers[0][0].send_signal(signal.SIGCONT)
        czar.kill()
        for p, _ in workers:
            p.kill()


def test_a_czar_killed_during_a_load_publishes_nothing(release, tmp_path):
    """kill -9 of the czar while `skyshard load --replace` partitions and ships a bigger release: after the restart
    the table answers exactly as before (same rows, same sums), and loading again works."""
    base, _ = release
    big = tmp_path / "big"
    run("gen", "--rows", "400000", "--out", str(big))
    workers = [start(["worker", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / f"w{i}")], r"worker at (\S+)")
               for i in range(2)]
    addresses = ",".join(a for _, a in workers)
    czar_args = ["czar", "--port", "0", "--data-dir", str(tmp_path / "czar"), "--workers", addresses, "--replicas", "2"]
    czar, url = start(czar_args, r"TAP service at (http://\S+/tap)")
    load = ["load", "--url", url, "--table", "sky.object", "--ra", "ra", "--dec", "dec", "--id", "id",
            "--chunk-rows", "20000"]
    query = "SELECT COUNT(*), SUM(mag_g), MIN(id), MAX(id) FROM sky.object"
    try:
        run(*load, "--input", str(base / "rel/object.parquet"))
        before = rows(url, query)
        assert before[0][0] == str(ROWS)
        loading = subprocess.Popen([SKYSHARD, *load, "--replace", "--input", str(big / "object.parquet")],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Kill the czar while the load is under way: once it partitions into its staging directory (the inputs are
        # uploaded first, then partitioned, then shipped, then published).
        staging = tmp_path / "czar" / "staging"
        staged = lambda: staging.exists() and any(staging.iterdir())
        wait_until("the load partitioning into the czar's staging directory (or ending)",
                   lambda: staged() or loading.poll() is not None, interval=0.005)
        assert loading.poll() is None and staged(), "the load ended before the czar was killed: make it bigger"
        czar.send_signal(signal.SIGKILL)
        czar.wait()
        assert loading.wait(timeout=60) != 0
        czar, url = start([*czar_args[:2], "0", *czar_args[3:]], r"TAP service at (http://\S+/tap)")
        assert rows(url, query) == before
        # What the killed load left behind does not stop the next one.
        bands = tmp_path / "bands.csv"
        bands.write_text("band,lambda_nm\ng,480\n")
        run("load", "--url", url, "--table", "sky.bands", "--input", str(bands), "--replicated")
        assert rows(url, "SELECT COUNT(*) FROM sky.bands") == [("1",)]
        assert rows(url, query) == before
    finally:
        czar.kill()
        for p, _ in workers:
            p.kill()


THREE_WAY = [
    # A director-child join and a cross-match in one query, in both orders of writing, with filters on each table.
    ("SELECT COUNT(*) AS n, SUM(s.flux) AS f FROM sky.object AS o JOIN sky.xmatch AS x "
     "ON CONTAINS(POINT(x.ra, x.dec), CIRCLE(o.ra, o.dec, {r})) = 1 JOIN sky.source AS s ON s.object_id = o.id",
     "SELECT COUNT(*), SUM(s.flux) FROM object o JOIN xmatch x ON {pair} JOIN source s ON s.object_id = o.id"),
    ("SELECT COUNT(*) AS n, SUM(s.flux) AS f FROM sky.source AS s JOIN sky.object AS o ON s.object_id = o.id "
     "JOIN sky.xmatch AS x ON CONTAINS(POINT(x.ra, x.dec), CIRCLE(o.ra, o.dec, {r})) = 1 "
     "WHERE o.mag_g < 21 AND s.flux > 0 AND x.xid > 100",
     "SELECT COUNT(*), SUM(s.flux) FROM source s JOIN object o ON s.object_id = o.id JOIN xmatch x ON {pair} "
     "WHERE o.mag_g < 21 AND s.flux > 0 AND x.xid > 100"),
    # Four tables: a replicated one among them.
    ("SELECT s.band, COUNT(*) AS n FROM sky.object AS o JOIN sky.xmatch AS x "
     "ON CONTAINS(POINT(x.ra, x.dec), CIRCLE(o.ra, o.dec, {r})) = 1 JOIN sky.source AS s ON s.object_id = o.id "
     "JOIN sky.bands AS b ON s.band = b.band WHERE b.lambda_nm > 500 GROUP BY s.band ORDER BY s.band",
     "SELECT s.band, COUNT(*) FROM object o JOIN xmatch x ON {pair} JOIN source s ON s.object_id = o.id "
     "JOIN bands b ON s.band = b.band WHERE b.lambda_nm > 500 GROUP BY 1 ORDER BY 1"),
    # A region on the catalog only: its partners' chunks are read whatever the catalog's own pruning keeps.
    ("SELECT COUNT(*) AS n, SUM(s.flux) AS f FROM sky.source AS s JOIN sky.object AS o ON s.object_id = o.id "
     "JOIN sky.xmatch AS x ON CONTAINS(POINT(x.ra, x.dec), CIRCLE(o.ra, o.dec, {r})) = 1 "
     "WHERE CONTAINS(POINT(x.ra, x.dec), CIRCLE(10, 10, 15)) = 1",
     "SELECT COUNT(*), SUM(s.flux) FROM source s JOIN object o ON s.object_id = o.id JOIN xmatch x ON {pair} "
     "WHERE " + haversine("x.ra", "x.dec", 10, 10) + " <= 15"),
    # An outer join among them: answered right wherever it runs.
    ("SELECT COUNT(*) AS n, COUNT(s.source_id) AS m FROM sky.object AS o JOIN sky.xmatch AS x "
     "ON CONTAINS(POINT(x.ra, x.dec), CIRCLE(o.ra, o.dec, {r})) = 1 LEFT JOIN sky.source AS s "
     "ON s.object_id = o.id AND s.flux > 1000",
     "SELECT COUNT(*), COUNT(s.source_id) FROM object o JOIN xmatch x ON {pair} LEFT JOIN source s "
     "ON s.object_id = o.id AND s.flux > 1000"),
]


@pytest.mark.parametrize("adql,sql", THREE_WAY, ids=["xmatch-then-child", "child-then-xmatch", "four-tables", "catalog-region", "outer"])
def test_joins_of_three_and_four_tables(served, release, adql, sql):
    """A director-child join plus a cross-match in one query runs chunk by chunk (it was gathered at the czar into a
    nested-loop join that ran for minutes on the demo), and answers as DuckDB does."""
    r = 1.5 / 3600
    pair = f"x.dec BETWEEN o.dec - {r} AND o.dec + {r} AND {haversine('x.ra', 'x.dec', 'o.ra', 'o.dec')} <= {r}"
    adql, sql = adql.format(r=r), sql.format(pair=pair)
    plan = explain(served, adql)
    merge = plan.split("merge plan")[1] if "merge plan" in plan else plan
    if "LEFT JOIN" not in adql:
        assert "ConeJoinExec" in plan.split("merge plan")[0] and "NestedLoopJoinExec" not in merge, plan
    got = rows(served, adql)
    want = duck(release, sql)
    # A reference that found something (not zero pairs compared with zero pairs).
    assert want and len(got) == len(want) and any(v not in (0, None) for v in want[0]), (got, want)
    for g, w in zip(got, want):
        assert all(close(a, b) for a, b in zip(g, w)), (g, w)


@pytest.mark.parametrize("adql,sql", [
    # A TOP folded into the exchange above a subquery is one limit, not one per chunk: each source has one object.
    ("SELECT COUNT(*) FROM (SELECT TOP 10 object_id FROM sky.source) AS s JOIN sky.object AS o ON s.object_id = o.id",
     "SELECT 10"),
    ("SELECT COUNT(*) FROM (SELECT TOP 10 object_id FROM sky.source) AS s JOIN sky.object AS o ON s.object_id = o.id "
     "JOIN sky.xmatch AS x ON CONTAINS(POINT(x.ra, x.dec), CIRCLE(o.ra, o.dec, 1)) = 1",
     None),
    # A column renamed to the key's name is not the key.
    ("SELECT COUNT(*) FROM (SELECT source_id AS object_id FROM sky.source) AS s JOIN sky.object AS o "
     "ON s.object_id = o.id",
     "SELECT COUNT(*) FROM source s JOIN object o ON s.source_id = o.id"),
    # Nor is a computed value renamed to the position's.
    ("SELECT COUNT(*) FROM sky.object AS o JOIN (SELECT ra + 0.001 AS ra, dec FROM sky.xmatch WHERE dec > 60) AS x "
     "ON CONTAINS(POINT(x.ra, x.dec), CIRCLE(o.ra, o.dec, 0.002)) = 1 WHERE o.dec > 60",
     "SELECT COUNT(*) FROM object o JOIN (SELECT ra + 0.001 AS ra, dec FROM xmatch WHERE dec > 60) x "
     "ON x.dec BETWEEN o.dec - 0.002 AND o.dec + 0.002 AND {h} <= 0.002 WHERE o.dec > 60"),
], ids=["top-in-subquery", "top-in-subquery-3-tables", "renamed-key", "computed-position"])
def test_joins_that_only_look_chunk_local(served, release, adql, sql):
    """Found by a review of the three-table rewrite: shapes whose columns or limits must not be taken at face value."""
    got = rows(served, adql)
    if sql is None:
        # Ten sources, each with its object: at most a few partners within 1 degree each, and never per-chunk tens.
        n = int(got[0][0])
        assert 0 <= n < 1000, got
        return
    want = duck(release, sql.format(h=haversine("x.ra", "x.dec", "o.ra", "o.dec")))
    assert want[0][0] > 0 and int(float(got[0][0])) == want[0][0], (got, want)


def test_a_cross_match_read_with_the_other_overlap_is_not_joined_chunk_local(served, release, tmp_path):
    """A catalog whose overlap is narrower than the radius: the objects are read with their overlap, so their rows
    in a partition are not all of its chunk, and their sources must not be joined chunk by chunk."""
    base, data = release
    run("ingest", "--data-dir", str(data), "--table", "sky.xnarrow", "--input", str(base / "rel/xmatch.parquet"),
        "--ra", "ra", "--dec", "dec", "--id", "xid", "--chunk-map-of", "sky.object", "--overlap-arcsec", "1", "--quiet")
    wait_until("the service sees sky.xnarrow", lambda: tap(served, "SELECT TOP 1 xid FROM sky.xnarrow")[0] == 200)
    r = 5 / 3600
    adql = (f"SELECT COUNT(*) AS n, SUM(s.flux) AS f FROM sky.object AS o JOIN sky.xnarrow AS x "
            f"ON CONTAINS(POINT(x.ra, x.dec), CIRCLE(o.ra, o.dec, {r})) = 1 JOIN sky.source AS s ON s.object_id = o.id "
            f"WHERE o.dec > 60 AND x.dec > 59.99")
    pair = f"x.dec BETWEEN o.dec - {r} AND o.dec + {r} AND {haversine('x.ra', 'x.dec', 'o.ra', 'o.dec')} <= {r}"
    # A region: where the planner gathers this shape at the czar (the catalog too narrow for the radius), it is a
    # nested loop; the answer must be right either way.
    want = duck(release, f"SELECT COUNT(*), SUM(s.flux) FROM object o JOIN xmatch x ON {pair} "
                         "JOIN source s ON s.object_id = o.id WHERE o.dec > 60 AND x.dec > 59.99")
    got = rows(served, adql)
    assert want[0][0] > 0 and all(close(a, b) for a, b in zip(got[0], want[0])), (got, want)
