"""HATS next to the data (issue 30), skyshard against LSDB over a local HATS copy of the same rows, in one run:

    python3 benches/hats_bench.py [--rows 2000000]

Runs SKYSHARD (default $CARGO_TARGET_DIR/release/skyshard). Generates a release (`skyshard gen --seed 1`), writes
the object table as a local HATS catalog with lsdb's `to_hats` (the peer: LSDB reading files on this disk), and
measures:

- ingest: the Parquet file with skyshard's own partitioning, and the HATS catalog with `--format hats` (its
  partitions kept), in rows/s;
- `map_partitions` over the whole catalog (rows brighter than g = 20 in each partition, summed) through skyshard's
  `/hats` endpoint (one kept-alive HTTP session, as fsspec keeps) and through LSDB over the local copy;
- the bytes a selective `filters=` read moves against the full read of every partition.

Every answer is checked: both sides' counts equal DuckDB's over the source file. Raw output:
benches/results/hats-COMMIT-ROWS.json."""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.parse

import duckdb
import lsdb
import pandas as pd
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benches"))
from tap_bench import SKYSHARD, record, run  # noqa: E402


def timed(fn):
    t = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t


def bright(df):
    return pd.DataFrame({"n": [int((df["mag_g"] < 20).sum())]})


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=2_000_000)
    a = p.parse_args()
    commit, out = record(rows=a.rows, lsdb=lsdb.__version__)
    work = tempfile.mkdtemp(prefix="skyshard-hats.")
    gen, data, local = (os.path.join(work, d) for d in ("g", "d", "local"))
    run("gen", "--rows", str(a.rows), "--out", gen, "--seed", "1")
    source = os.path.join(gen, "object.parquet")
    want = duckdb.connect().execute(f"SELECT COUNT(*) FROM '{source}' WHERE mag_g < 20").fetchone()[0]
    assert want > 0

    df = pd.read_parquet(source)
    _, out["to_hats_s"] = timed(lambda: lsdb.from_dataframe(
        df, ra_column="ra", dec_column="dec", catalog_name="object", lowest_order=1, highest_order=7,
        partition_rows=100_000).to_hats(local))
    del df
    common = ["--id", "id", "--quiet"]
    _, parquet_s = timed(lambda: run("ingest", "--data-dir", data, "--table", "sky.object", "--input", source,
                                     "--ra", "ra", "--dec", "dec", *common))
    _, hats_s = timed(lambda: run("ingest", "--data-dir", data, "--table", "sky.hobject", "--input", local,
                                  "--format", "hats", *common))
    out["ingest"] = {"parquet_s": parquet_s, "parquet_rows_per_s": a.rows / parquet_s,
                     "hats_s": hats_s, "hats_rows_per_s": a.rows / hats_s}
    print(f"ingest: Parquet {a.rows / parquet_s / 1e6:.2f} M rows/s, HATS {a.rows / hats_s / 1e6:.2f} M rows/s",
          flush=True)

    serve = subprocess.Popen([SKYSHARD, "serve", "--data-dir", data, "--port", "0", "--workers", "2",
                              "--caller-sync", "1000"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = None
        for line in serve.stdout:
            m = re.search(r"TAP service at (http://\S+)/tap", line)
            if m:
                url = m.group(1)
                break
        assert url, "the service did not start"
        remote = f"{url}/hats/sky.hobject"

        def over(cat_url):
            cat = lsdb.open_catalog(cat_url, columns=["mag_g"])
            return int(cat.map_partitions(bright).compute()["n"].sum())

        over(remote)  # the partitions are made once (the service's cache), as a second reader would find them
        got_remote, remote_s = timed(lambda: over(remote))
        got_local, local_s = timed(lambda: over(local))
        assert got_remote == got_local == want, (got_remote, got_local, want)
        out["map_partitions"] = {"skyshard_s": remote_s, "local_lsdb_s": local_s, "ratio": remote_s / local_s}
        print(f"map_partitions: skyshard {remote_s:.2f} s, local LSDB {local_s:.2f} s", flush=True)

        # Bytes moved by a selective filter against the full read, over every partition.
        session = requests.Session()
        cells = [tuple(map(int, line.split(","))) for line in
                 session.get(f"{remote}/catalog/partition_info.csv", timeout=600).text.split()[1:]]
        full = pushed = 0
        query = urllib.parse.urlencode({"columns": "id,mag_g", "filters": "mag_g<16"})
        for order, pix in cells:
            part = f"{remote}/catalog/dataset/Norder={order}/Dir={pix // 10000 * 10000}/Npix={pix}.parquet"
            full += len(session.get(part, timeout=600).content)
            pushed += len(session.get(f"{part}?{query}", timeout=600).content)
        out["filtered_read"] = {"full_bytes": full, "pushed_bytes": pushed, "ratio": full / pushed}
        print(f"bytes: full {full}, columns+filters {pushed} ({full / pushed:.1f}x fewer)", flush=True)
    finally:
        serve.kill()
        serve.wait()
    path = os.path.join(ROOT, "benches", "results", f"hats-{commit}-{a.rows}.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps(out, indent=1))
    print(f"written {path}")


if __name__ == "__main__":
    main()
