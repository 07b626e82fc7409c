"""10M x 10M cross-match (every pair of objects within R arcsec, a self-join of the object table), timed through
a running skyshard TAP service and with DuckDB over the same Parquet file, in the same run:

    python3 benches/peers/xmatch_peer.py TAP_URL OBJECT_PARQUET [--arcsec 2]

DuckDB runs the classic zone join: declination zones of height R, each row matched against its own and the two
neighbouring zones, an RA window, then the exact haversine distance (its load into memory is not timed)."""

import argparse
import time
import urllib.parse
import urllib.request

import duckdb
from zones import zone_join_count


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("parquet")
    p.add_argument("--arcsec", type=float, default=2.0)
    a = p.parse_args()
    r = a.arcsec / 3600
    adql = (f"SELECT COUNT(*) AS n FROM sky.object AS a JOIN sky.object AS b "
            f"ON CONTAINS(POINT(b.ra, b.dec), CIRCLE(a.ra, a.dec, {r})) = 1 WHERE a.id <> b.id")
    form = urllib.parse.urlencode({"LANG": "ADQL", "QUERY": adql, "RESPONSEFORMAT": "csv"}).encode()
    t = time.perf_counter()
    with urllib.request.urlopen(a.url + "/sync", data=form, timeout=3600) as resp:
        ours = int(resp.read().decode().split()[1])
    ours_s = time.perf_counter() - t
    theirs, theirs_s = zone_join_count(duckdb.connect(), f"read_parquet('{a.parquet}')",
                                       f"read_parquet('{a.parquet}')", r, distinct_ids=True)
    print(f"{a.arcsec} arcsec pairs: skyshard {ours} in {ours_s:.2f} s; DuckDB {theirs} in {theirs_s:.2f} s; "
          f"ratio {theirs_s / ours_s:.2f}x")
    assert ours == theirs, "the answers differ"


if __name__ == "__main__":
    main()
