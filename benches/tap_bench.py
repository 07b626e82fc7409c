"""TAP service benchmarks (issue: the TAP service), run against a live service:

    python3 benches/tap_bench.py cones URL [--clients 1,100] [--queries 400]
        sync cone searches (r = 0.1 deg at random positions, VOTable) from 1 and 100 concurrent clients:
        median and 99th percentile latency.
    python3 benches/tap_bench.py output URL --pid CZAR_PID [--rows 10000000]
        a 10-million-row result as VOTable BINARY2 and as Parquet: rows per second as the client reads them, and
        the czar's peak resident memory (VmHWM of CZAR_PID) after each.

Numbers go to docs/benchmarks.md."""

import argparse
import concurrent.futures
import http.client
import os
import random
import statistics
import subprocess
import time
import urllib.parse

# The release binary the benchmark scripts run (SKYSHARD overrides it).
SKYSHARD = os.environ.get("SKYSHARD") or os.path.join(
    os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/skyshard-target")), "release", "skyshard")


def record(**fields):
    """The short commit of HEAD and the start of a benchmark's raw output: that commit, `fields`, the cores, the
    date."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                            text=True).stdout.strip()
    return commit, {"commit": commit, **fields, "cores": os.cpu_count(),
                    "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def serve(data, *flags):
    """Starts `skyshard serve --data-dir DATA --port 0 --workers 2 FLAGS`: (process, root URL) once it prints its TAP
    address. Its log goes nowhere (a pipe nobody reads would fill and block it)."""
    import re
    proc = subprocess.Popen([SKYSHARD, "serve", "--data-dir", data, "--port", "0", "--workers", "2", *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        m = re.search(r"TAP service at (http://\S+)/tap", line)
        if m:
            return proc, m.group(1)
    raise SystemExit("serve printed no address")


def save(kind, commit, size, out):
    """Writes a benchmark's raw output to benches/results/KIND-COMMIT-SIZE.json and prints it; returns the path."""
    import json
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(root, "benches", "results", f"{kind}-{commit}-{size}.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps(out, indent=1))
    print(f"written {path}")
    return path


def run(*args):
    """Runs `skyshard ARGS` to the end; returns its wall time in seconds."""
    t = time.perf_counter()
    subprocess.run([SKYSHARD, *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def post(host, port, form, sink=None):
    conn = http.client.HTTPConnection(host, port, timeout=600)
    body = urllib.parse.urlencode(form)
    conn.request("POST", "/tap/sync", body, {"Content-Type": "application/x-www-form-urlencoded"})
    r = conn.getresponse()
    n = 0
    while True:
        chunk = r.read(1 << 20)
        if not chunk:
            break
        n += len(chunk)
    conn.close()
    assert r.status == 200, r.status
    return n


def cone_form(rng):
    a = rng.uniform(0, 360)
    d = rng.uniform(-80, 80)
    q = f"SELECT id, ra, dec, mag_g FROM sky.object WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {a}, {d}, 0.1)) = 1"
    return {"LANG": "ADQL", "QUERY": q}


def cone_run(host, port, clients, queries, rng):
    """`queries` cones from `clients` concurrent clients: median and 99th percentile latency, queries per second."""
    forms = [cone_form(rng) for _ in range(queries)]

    def one(form):
        t = time.perf_counter()
        post(host, port, form)
        return time.perf_counter() - t

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=clients) as pool:
        times = sorted(pool.map(one, forms))
    wall = time.perf_counter() - started
    return {"clients": clients, "queries": queries, "p50_ms": statistics.median(times) * 1000,
            "p99_ms": times[min(len(times) - 1, int(len(times) * 0.99))] * 1000, "per_s": queries / wall}


def cones(url, clients, queries):
    u = urllib.parse.urlparse(url)
    host, port = u.hostname, u.port
    rng = random.Random(7)
    post(host, port, cone_form(rng))  # warm up
    for c in clients:
        r = cone_run(host, port, c, queries, rng)
        print(f"{c:>4} clients: {queries} cones, median {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
              f"{r['per_s']:.0f} queries/s")


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    return float("nan")


def output(url, pid, rows):
    u = urllib.parse.urlparse(url)
    q = f"SELECT id, ra, dec, mag_g, mag_r, mag_i, pmra, pmdec FROM sky.object"
    for fmt in ["votable/b2", "parquet", "csv"]:
        t = time.perf_counter()
        n = post(u.hostname, u.port, {"LANG": "ADQL", "QUERY": q, "RESPONSEFORMAT": fmt, "MAXREC": str(rows)})
        s = time.perf_counter() - t
        print(f"{fmt:>11}: {rows} rows, {n / 1e6:.0f} MB in {s:.2f} s = {rows / s / 1e6:.2f} M rows/s; "
              f"czar peak RSS so far {peak_rss_mb(pid):.0f} MB")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["cones", "output"])
    p.add_argument("url")
    p.add_argument("--clients", default="1,100")
    p.add_argument("--queries", type=int, default=400)
    p.add_argument("--pid", type=int)
    p.add_argument("--rows", type=int, default=10_000_000)
    a = p.parse_args()
    if a.what == "cones":
        cones(a.url, [int(c) for c in a.clients.split(",")], a.queries)
    else:
        output(a.url, a.pid, a.rows)


if __name__ == "__main__":
    main()
