#!/usr/bin/env python3
"""The portal's budgets on a release build (docs/benchmarks.md#the-portal-issue-16):

- the HEALPix density map the sky view asks for (the exact ADQL it writes: a GROUP BY on ivo_healpix_index at
  order 6) over N rows, against numpy + cdshealpix counting the same cells from the same Parquet file in the same
  run (the counts must agree cell for cell);
- a page of a one-million-row result sorted by a column (/api/v1/jobs/ID/rows), as the result table asks for it;
- the first screen in headless Chromium (Debian's chromium, playwright-core from tests/browser/node_modules): time
  to a page whose schema browser is filled, and the JavaScript it shipped (gzipped bytes).

    python3 benches/portal.py --rows 10000000

Writes benches/results/portal-COMMIT-ROWS.json and prints a markdown table.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import numpy as np
import pyarrow.parquet as pq

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benches"))
from tap_bench import SKYSHARD, record, run  # noqa: E402


def http(url, data=None, timeout=600):
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=timeout) as r:
        return r.geturl(), r.read()


def timed(fn, n=5):
    times, result = [], None
    for _ in range(n):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--order", type=int, default=6)
    p.add_argument("--keep", action="store_true", help="keep the work directory (2.5 GB at 10 M rows)")
    a = p.parse_args()
    commit, out = record(rows=a.rows, order=a.order)
    work = tempfile.mkdtemp(prefix="skyshard-portal.")
    gen, data = os.path.join(work, "g"), os.path.join(work, "d")
    run("gen", "--rows", str(a.rows), "--out", gen, "--seed", "1")
    obj = os.path.join(gen, "object.parquet")
    run("ingest", "--data-dir", data, "--table", "sky.object", "--input", obj, "--ra", "ra", "--dec", "dec",
        "--id", "id", "--quiet")

    # The peer: numpy + cdshealpix over the same file.
    import astropy.units as u
    import cdshealpix

    t = time.perf_counter()
    table = pq.read_table(obj, columns=["ra", "dec"])
    ra, dec = table["ra"].to_numpy(), table["dec"].to_numpy()
    cells = cdshealpix.nested.lonlat_to_healpix(ra * u.deg, dec * u.deg, a.order)
    want = np.bincount(cells.astype(np.int64), minlength=12 * 4 ** a.order)
    out["numpy_cdshealpix_s"] = time.perf_counter() - t

    serve = subprocess.Popen([SKYSHARD, "serve", "--data-dir", data, "--port", "0", "--workers", "2"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = None
        for line in serve.stdout:
            m = re.search(r"TAP service at (http://\S+)/tap", line)
            if m:
                base = m.group(1)
                break
        assert base, "the service did not start"
        index = f"ivo_healpix_index({a.order}, ra, dec)"
        query = f"SELECT {index} AS hpx, COUNT(*) AS n FROM sky.object GROUP BY {index}"
        form = {"LANG": "ADQL", "RESPONSEFORMAT": "csv", "MAXREC": str(12 * 4 ** a.order), "QUERY": query}
        http(f"{base}/tap/sync", form)  # warm up
        density_s, (_, body) = timed(lambda: http(f"{base}/tap/sync", form))
        got = np.zeros_like(want)
        for line in body.decode().splitlines()[1:]:
            h, n = line.split(",")
            got[int(h)] = int(n)
        assert got.sum() == a.rows and (got == want).all(), "the density map differs from numpy's"
        out["density_s"] = density_s
        out["density_cells"] = int((got > 0).sum())
        print(f"density map: {a.rows} rows, {out['density_cells']} cells, {density_s * 1000:.0f} ms "
              f"(numpy+cdshealpix {out['numpy_cdshealpix_s'] * 1000:.0f} ms)", flush=True)

        # A one-million-row result, stored as the portal stores it (Parquet), paged sorted by a column.
        url, _ = http(f"{base}/tap/async", {"LANG": "ADQL", "RESPONSEFORMAT": "parquet", "PHASE": "RUN",
                                            "MAXREC": "1000000", "QUERY": "SELECT * FROM sky.object"})
        jid = url.rstrip("/").rsplit("/", 1)[1]
        for _ in range(600):
            info = json.loads(http(f"{base}/api/v1/jobs/{jid}")[1])
            if info["phase"] not in ("PENDING", "QUEUED", "EXECUTING"):
                break
            time.sleep(0.5)
        assert info["phase"] == "COMPLETED" and info["rows"] == min(a.rows, 1_000_000), info
        # A page from the middle (500,000 of a million rows; the middle of a smaller result).
        page_url = (f"{base}/api/v1/jobs/{jid}/rows?offset={min(500_000, info['rows'] // 2)}&limit=100"
                    f"&sort=mag_g&order=desc")
        # The first sorted page sorts the result (then kept for paging); the others are slices of it.
        first_sorted_s, _ = timed(lambda: http(page_url), n=1)
        page_s, (_, page) = timed(lambda: http(page_url))
        assert len(json.loads(page)["rows"]) == 100
        first_s, _ = timed(lambda: http(f"{base}/api/v1/jobs/{jid}/rows?offset=0&limit=100"))
        out["page_sorted_s"], out["page_unsorted_s"], out["result_rows"] = page_s, first_s, info["rows"]
        out["page_first_sorted_s"] = first_sorted_s
        print(f"page of a {info['rows']}-row result: first sorted {first_sorted_s * 1000:.0f} ms, then "
              f"{page_s * 1000:.0f} ms, unsorted {first_s * 1000:.0f} ms", flush=True)

        # The first screen in Chromium.
        page_js = os.path.join(ROOT, "benches", "portal_page.mjs")
        if os.path.exists("/usr/bin/chromium") and os.path.isdir(os.path.join(ROOT, "tests/browser/node_modules")):
            r = subprocess.run(["node", page_js, base], capture_output=True, text=True, timeout=120)
            out["first_screen"] = json.loads(r.stdout.strip().splitlines()[-1])
            print(f"first screen: {out['first_screen']}", flush=True)
    finally:
        serve.kill()
        serve.wait()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    os.makedirs(os.path.join(ROOT, "benches", "results"), exist_ok=True)
    path = os.path.join(ROOT, "benches", "results", f"portal-{commit}-{a.rows}.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    fs = out.get("first_screen", {})
    print(f"""
| measure | skyshard | peer | budget |
|---|---|---|---|
| density map, {a.rows:,} rows, order {a.order} | {out['density_s'] * 1000:.0f} ms | numpy+cdshealpix {out['numpy_cdshealpix_s'] * 1000:.0f} ms | < 1 s |
| page of a {out['result_rows']:,}-row result, sorted by a column | first {out['page_first_sorted_s'] * 1000:.0f} ms (the sort), then {out['page_sorted_s'] * 1000:.0f} ms; unsorted {out['page_unsorted_s'] * 1000:.0f} ms | | < 200 ms |
| first screen ready | {fs.get('ready_ms', '-')} ms | | < 1.5 s |
| JavaScript shipped, gzipped | {fs.get('js_bytes', '-')} bytes | | < 1 MB |
""")
    print(f"raw: {path}")


if __name__ == "__main__":
    main()
