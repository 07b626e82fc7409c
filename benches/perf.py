"""The performance table of issue 15, skyshard and DuckDB measured in one run on one machine:

    python3 benches/perf.py [--rows 10000000] [--skip-pyvo] [--skip-copartitioned]

Builds nothing: it runs SKYSHARD (default $CARGO_TARGET_DIR/release/skyshard; build it with
`cargo build --release --workspace --bins`). Generates a release (`skyshard gen --seed 1`: sky.object, and a second
catalog of 60 % of the objects again, offset by up to 1 arcsec), ingests the object table and the second catalog
twice (once as a user would, with its own chunk tree: sky.xfree; once with `--chunk-map-of sky.object`: sky.xmatch),
serves them with `skyshard serve --workers 2`, and measures through TAP over HTTP, against DuckDB over the same
Parquet files in the same run:

- cones of r = 0.1 deg at random positions (VOTable), from 1 client and from 100 concurrent clients;
- a filtered COUNT over the whole table, a GROUP BY of 1-degree cells written as Parquet (DuckDB: COPY TO Parquet);
- the 1 arcsec cross-match of the two catalogs, co-partitioned and independently loaded (DuckDB: a zone join);
- ingest rates;
- the notebook path: N rows into a pandas DataFrame through Flight SQL (ADBC's driver), through the Arrow stream
  result of /tap/sync, and through pyvo's VOTable.

`--skip-copartitioned` leaves out sky.xmatch (the second catalog loaded with `--chunk-map-of`): at 100 M rows its
chunk files would not fit beside the others on this machine's disk.

Raw output: benches/results/perf-COMMIT-ROWS.json; the table it prints goes to docs/benchmarks.md."""

import argparse
import http.client
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import duckdb
import pandas  # noqa: F401 (imported before any timing: a notebook has it loaded)
import pyarrow as pa

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benches", "peers"))
sys.path.insert(0, os.path.join(ROOT, "benches"))
from tap_bench import SKYSHARD, cone_form, cone_run, record, run  # noqa: E402
from zones import zone_join_count  # noqa: E402


def post(host, port, form):
    conn = http.client.HTTPConnection(host, port, timeout=3600)
    conn.request("POST", "/tap/sync", urllib.parse.urlencode(form),
                 {"Content-Type": "application/x-www-form-urlencoded"})
    r = conn.getresponse()
    body = r.read()
    conn.close()
    assert r.status == 200, (r.status, body[:300])
    return body


def best_of(fn, n):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--cones", type=int, default=400)
    p.add_argument("--skip-pyvo", action="store_true")
    p.add_argument("--skip-copartitioned", action="store_true")
    a = p.parse_args()
    commit, out = record(rows=a.rows, duckdb=duckdb.__version__)
    work = tempfile.mkdtemp(prefix="skyshard-perf.")
    print(f"commit {commit}, {a.rows} rows, work directory {work}", flush=True)
    gen = os.path.join(work, "g")
    data = os.path.join(work, "d")
    out["gen_s"] = run("gen", "--rows", str(a.rows), "--out", gen, "--seed", "1")
    obj, other = os.path.join(gen, "object.parquet"), os.path.join(gen, "xmatch.parquet")
    con = duckdb.connect()
    n_obj = con.execute(f"SELECT COUNT(*) FROM '{obj}'").fetchone()[0]
    n_other = con.execute(f"SELECT COUNT(*) FROM '{other}'").fetchone()[0]
    common = ["--ra", "ra", "--dec", "dec", "--quiet"]
    s1 = run("ingest", "--data-dir", data, "--table", "sky.object", "--input", obj, "--id", "id", *common)
    s2 = run("ingest", "--data-dir", data, "--table", "sky.xfree", "--input", other, "--id", "xid", *common)
    s3 = None if a.skip_copartitioned else run(
        "ingest", "--data-dir", data, "--table", "sky.xmatch", "--input", other, "--id", "xid",
        "--chunk-map-of", "sky.object", *common)
    out["ingest"] = {"object_s": s1, "object_rows": n_obj, "xfree_s": s2, "xmatch_s": s3, "other_rows": n_other,
                     "rows_per_s": (n_obj + n_other) / (s1 + s2)}
    print(f"ingest: {n_obj} rows in {s1:.2f} s, {n_other} rows in {s2:.2f} s "
          f"({out['ingest']['rows_per_s'] / 1e6:.2f} M rows/s)", flush=True)

    # The notebook path reads the whole object table: the service's row limit must let it.
    serve = subprocess.Popen([SKYSHARD, "serve", "--data-dir", data, "--port", "0", "--workers", "2",
                              "--caller-sync", "1000", "--flight-sql-port", "0",
                              "--max-maxrec", str(max(n_obj, 10_000_000))],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = grpc = None
        for line in serve.stdout:
            m = re.search(r"TAP service at (http://\S+/tap)", line)
            if m:
                url = m.group(1)
            m = re.search(r"Flight SQL at (grpc://\S+)", line)
            if m:
                grpc = m.group(1)
            if url and grpc:
                break
        assert url, "the service did not start"
        u = urllib.parse.urlparse(url)
        host, port = u.hostname, u.port
        tap = lambda q, **kw: post(host, port, {"LANG": "ADQL", "QUERY": q, **kw})
        rng = random.Random(7)
        post(host, port, cone_form(rng))  # warm up
        out["cones_1"] = cone_run(host, port, 1, a.cones, rng)
        out["cones_100"] = cone_run(host, port, 100, max(a.cones, 2000), rng)
        con.execute(f"CREATE VIEW o AS SELECT * FROM read_parquet('{obj}')")
        duck_cones = []
        for _ in range(10):
            x, y = rng.uniform(0, 360), rng.uniform(-80, 80)
            t = time.perf_counter()
            con.execute(f"""SELECT id, ra, dec, mag_g FROM o WHERE dec BETWEEN {y - 0.1} AND {y + 0.1} AND degrees(2 * asin(sqrt(
                pow(sin(radians(dec - {y}) / 2), 2) + cos(radians(dec)) * cos(radians({y})) * pow(sin(radians(ra - {x}) / 2), 2)))) <= 0.1""").fetchall()
            duck_cones.append(time.perf_counter() - t)
        out["cones_1"]["duckdb_p50_ms"] = statistics.median(duck_cones) * 1000
        print(f"cones: {out['cones_1']}, {out['cones_100']}", flush=True)

        body = tap("SELECT COUNT(*) FROM sky.object WHERE mag_g < 20", RESPONSEFORMAT="csv")
        want = con.execute("SELECT COUNT(*) FROM o WHERE mag_g < 20").fetchone()[0]
        assert want > 0 and int(body.split()[1]) == want
        out["count"] = {
            "skyshard_s": best_of(lambda: tap("SELECT COUNT(*) FROM sky.object WHERE mag_g < 20", RESPONSEFORMAT="csv"), 5),
            "duckdb_s": best_of(lambda: con.execute("SELECT COUNT(*) FROM o WHERE mag_g < 20").fetchall(), 5)}
        cells = os.path.join(work, "cells.parquet")
        group = ("SELECT FLOOR(ra) AS x, FLOOR(dec) AS y, COUNT(*) AS n, AVG(mag_g) AS m FROM sky.object "
                 "GROUP BY FLOOR(ra), FLOOR(dec)")
        groups = pa.ipc.open_stream(tap(group, RESPONSEFORMAT="arrow", MAXREC="10000000")).read_all().num_rows
        want = con.execute("SELECT COUNT(*) FROM (SELECT 1 FROM o GROUP BY FLOOR(ra), FLOOR(dec))").fetchone()[0]
        assert want > 0 and groups == want, (groups, want)
        out["group_by"] = {
            "groups": groups,
            "skyshard_s": best_of(lambda: tap(group, RESPONSEFORMAT="parquet", MAXREC="10000000"), 5),
            "duckdb_s": best_of(lambda: con.execute(
                f"COPY (SELECT FLOOR(ra) AS x, FLOOR(dec) AS y, COUNT(*) AS n, AVG(mag_g) AS m FROM o GROUP BY 1, 2) "
                f"TO '{cells}' (FORMAT parquet)"), 5)}
        print(f"scans: {out['count']}, {out['group_by']}", flush=True)

        r = 1 / 3600
        pairs, duck_s = zone_join_count(con, f"read_parquet('{obj}')",
                                        f"(SELECT xid AS id, ra, dec FROM read_parquet('{other}'))", r)
        assert pairs > 0
        out["xmatch"] = {"pairs": pairs, "duckdb_s": duck_s}
        for name in ["xfree"] if a.skip_copartitioned else ["xmatch", "xfree"]:
            q = (f"SELECT COUNT(*) FROM sky.object AS a JOIN sky.{name} AS b "
                 f"ON CONTAINS(POINT(b.ra, b.dec), CIRCLE(a.ra, a.dec, {r})) = 1")
            t = time.perf_counter()
            got = int(tap(q, RESPONSEFORMAT="csv").split()[1])
            out["xmatch"][f"{name}_s"] = time.perf_counter() - t
            assert got == pairs, (name, got, pairs)
        print(f"cross-match: {out['xmatch']}", flush=True)

        nb = "SELECT id, ra, dec, mag_g FROM sky.object"
        t = time.perf_counter()
        with urllib.request.urlopen(url + "/sync", data=urllib.parse.urlencode(
                {"LANG": "ADQL", "QUERY": nb, "RESPONSEFORMAT": "arrow", "MAXREC": str(n_obj)}).encode()) as resp:
            df = pa.ipc.open_stream(resp).read_pandas()
        arrow_s = time.perf_counter() - t
        assert len(df) == n_obj
        out["notebook"] = {"rows": n_obj, "arrow_s": arrow_s}
        del df
        import adbc_driver_flightsql.dbapi as flightsql
        t = time.perf_counter()
        with flightsql.connect(grpc, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(nb)
            df = cur.fetch_df()
        out["notebook"]["flight_sql_s"] = time.perf_counter() - t
        assert len(df) == n_obj
        del df
        if not a.skip_pyvo:
            import pyvo
            pyvo.dal.TAPService(url).run_sync("SELECT TOP 1 id FROM sky.object").to_table().to_pandas()
            t = time.perf_counter()
            df = pyvo.dal.TAPService(url).run_sync(nb, maxrec=n_obj).to_table().to_pandas()
            out["notebook"]["pyvo_votable_s"] = time.perf_counter() - t
            assert len(df) == n_obj
            del df
        print(f"notebook: {out['notebook']}", flush=True)
    finally:
        serve.kill()
        serve.wait()
        subprocess.run(["rm", "-rf", work])
    os.makedirs(os.path.join(ROOT, "benches", "results"), exist_ok=True)
    path = os.path.join(ROOT, "benches", "results", f"perf-{commit}-{a.rows}.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    table(out)
    print(f"raw output: {path}")


def table(o):
    c1, c100, cnt, grp, xm, ing, nb = (o["cones_1"], o["cones_100"], o["count"], o["group_by"], o["xmatch"],
                                       o["ingest"], o["notebook"])
    rows = [
        ("cone r=0.1 deg, one client", f"p50 {c1['p50_ms']:.1f} ms, p99 {c1['p99_ms']:.1f} ms",
         f"{c1['duckdb_p50_ms']:.0f} ms", "p50 < 3 ms"),
        ("cones, 100 concurrent clients", f"p50 {c100['p50_ms']:.0f} ms, p99 {c100['p99_ms']:.0f} ms, "
         f"{c100['per_s']:.0f} cones/s", "", "p99 < 50 ms, >= 1,000 cones/s"),
        ("filtered full-scan COUNT", f"{cnt['skyshard_s'] * 1000:.0f} ms", f"{cnt['duckdb_s'] * 1000:.0f} ms "
         f"(ratio {cnt['skyshard_s'] / cnt['duckdb_s']:.2f})", "<= 0.7x DuckDB"),
        (f"GROUP BY 1-degree cells ({grp['groups']} groups, Parquet out)", f"{grp['skyshard_s'] * 1000:.0f} ms",
         f"{grp['duckdb_s'] * 1000:.0f} ms (ratio {grp['skyshard_s'] / grp['duckdb_s']:.2f})", "<= 0.7x DuckDB"),
        (f"1\" cross-match ({xm['pairs']} pairs), second catalog with --chunk-map-of",
         f"{xm['xmatch_s']:.2f} s" if "xmatch_s" in xm else "not run",
         f"{xm['duckdb_s']:.2f} s (ratio {xm['xmatch_s'] / xm['duckdb_s']:.2f})" if "xmatch_s" in xm else
         f"{xm['duckdb_s']:.2f} s", "<= 0.25x DuckDB"),
        ("the same, catalogs loaded independently", f"{xm['xfree_s']:.2f} s",
         f"{xm['duckdb_s']:.2f} s (ratio {xm['xfree_s'] / xm['duckdb_s']:.2f})", "as fast as co-partitioned"),
        ("ingest (partition + index + publish), both catalogs", f"{ing['rows_per_s'] / 1e6:.2f} M rows/s", "",
         ">= 2 M rows/s"),
        (f"{nb['rows']} rows to pandas", f"Flight SQL (ADBC) {nb.get('flight_sql_s', float('nan')):.2f} s, "
         f"Arrow stream {nb['arrow_s']:.2f} s",
         f"pyvo VOTable {nb['pyvo_votable_s']:.2f} s" if "pyvo_votable_s" in nb else "", "< 2 s"),
    ]
    print("| measure | skyshard | peer (same run) | goal |\n|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    sys.exit(main())
