"""What a pyvo or TOPCAT user sees on a kept-alive connection (issue 31, item 0):

    python3 benches/keepalive.py [--rows 1000000] [--queries 200]

Runs SKYSHARD (default $CARGO_TARGET_DIR/release/skyshard). Generates and ingests `--rows` objects, serves them with
`skyshard serve --workers 2`, and times, one query after another:

- pyvo `TAPService.run_sync` of an id lookup over pyvo's own session (one kept-alive connection, as in a notebook);
- the same lookup through `http.client` on one kept-alive connection, and on a new connection per request;
- a cone of r = 0.1 deg on one kept-alive connection.

Without TCP_NODELAY on the accepted socket, every answer after the first on a kept-alive connection waited for the
client's delayed ACK (~40 ms); on a new connection per request it did not: the ratio of the two is the check.
Every answer is checked (the id asked for comes back). Raw output: benches/results/keepalive-COMMIT-ROWS.json."""

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

import pyvo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benches"))
from tap_bench import SKYSHARD, record, run  # noqa: E402


def quantiles(times):
    times = sorted(times)
    return {"p50_ms": statistics.median(times) * 1000, "p99_ms": times[int(len(times) * 0.99) - 1] * 1000,
            "n": len(times)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--queries", type=int, default=200)
    a = p.parse_args()
    commit, out = record(rows=a.rows, pyvo=pyvo.__version__)
    work = tempfile.mkdtemp(prefix="skyshard-keepalive.")
    gen, data = os.path.join(work, "g"), os.path.join(work, "d")
    run("gen", "--rows", str(a.rows), "--out", gen, "--seed", "1")
    run("ingest", "--data-dir", data, "--table", "sky.object", "--input", os.path.join(gen, "object.parquet"),
        "--id", "id", "--ra", "ra", "--dec", "dec", "--quiet")
    serve = subprocess.Popen([SKYSHARD, "serve", "--data-dir", data, "--port", "0", "--workers", "2",
                              "--caller-sync", "1000"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = None
        for line in serve.stdout:
            m = re.search(r"TAP service at (http://\S+/tap)", line)
            if m:
                url = m.group(1)
                break
        assert url, "the service did not start"
        u = urllib.parse.urlparse(url)
        rng = random.Random(3)
        ids = [rng.randrange(1, a.rows) for _ in range(a.queries)]
        lookup = "SELECT id, ra, dec FROM sky.object WHERE id = {}"

        service = pyvo.dal.TAPService(url)
        service.run_sync(lookup.format(ids[0]))  # warm up (and open the session's connection)
        times = []
        for i in ids:
            t = time.perf_counter()
            table = service.run_sync(lookup.format(i)).to_table()
            times.append(time.perf_counter() - t)
            assert len(table) == 1 and int(table["id"][0]) == i, (i, table)
        out["pyvo_run_sync_id"] = quantiles(times)

        def form(q):
            return urllib.parse.urlencode({"LANG": "ADQL", "QUERY": q, "RESPONSEFORMAT": "csv"})

        headers = {"Content-Type": "application/x-www-form-urlencoded"}

        def ask(conn, q):
            conn.request("POST", "/tap/sync", form(q), headers)
            r = conn.getresponse()
            body = r.read()
            assert r.status == 200, (r.status, body[:300])
            return body.decode()

        kept = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
        ask(kept, lookup.format(ids[0]))
        times = []
        for i in ids:
            t = time.perf_counter()
            body = ask(kept, lookup.format(i))
            times.append(time.perf_counter() - t)
            assert body.splitlines()[1].split(",")[0] == str(i), body
        out["http_kept_alive_id"] = quantiles(times)

        times = []
        for i in ids:
            t = time.perf_counter()
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
            body = ask(conn, lookup.format(i))
            conn.close()
            times.append(time.perf_counter() - t)
            assert body.splitlines()[1].split(",")[0] == str(i), body
        out["http_new_connection_id"] = quantiles(times)

        times = []
        for _ in ids:
            x, y = rng.uniform(0, 360), rng.uniform(-80, 80)
            q = (f"SELECT id, ra, dec FROM sky.object WHERE CONTAINS(POINT('ICRS', ra, dec), "
                 f"CIRCLE('ICRS', {x}, {y}, 0.1)) = 1")
            t = time.perf_counter()
            ask(kept, q)
            times.append(time.perf_counter() - t)
        out["http_kept_alive_cone"] = quantiles(times)
        kept.close()
        out["kept_alive_over_new_connection"] = (out["http_kept_alive_id"]["p50_ms"]
                                                 / out["http_new_connection_id"]["p50_ms"])
    finally:
        serve.kill()
        serve.wait()
    for k, v in out.items():
        print(f"{k}: {v}")
    path = os.path.join(ROOT, "benches", "results", f"keepalive-{commit}-{a.rows}.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(f"written {path}")


if __name__ == "__main__":
    main()
