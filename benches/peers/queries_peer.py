"""Distributed query latencies against DuckDB over the same Parquet file, in the same run (issue: distributed
execution):

    python3 benches/peers/queries_peer.py TAP_URL OBJECT_PARQUET [--repeat 5] [--cones 40]

Queries: a 0.1-degree cone at random positions (median, p99), COUNT(*) WHERE mag_g < 20, and a GROUP BY over
1-degree cells. DuckDB answers the cone with a dec band and the haversine distance."""

import argparse
import random
import statistics
import time
import urllib.parse
import urllib.request

import duckdb


def tap(url, query):
    form = urllib.parse.urlencode({"LANG": "ADQL", "QUERY": query, "RESPONSEFORMAT": "csv", "MAXREC": "10000000"}).encode()
    t = time.perf_counter()
    with urllib.request.urlopen(url + "/sync", data=form, timeout=600) as r:
        body = r.read()
    return time.perf_counter() - t, body


def timed(fn, n):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("parquet")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--cones", type=int, default=40)
    a = p.parse_args()
    con = duckdb.connect()
    con.execute(f"CREATE VIEW o AS SELECT * FROM read_parquet('{a.parquet}')")
    rng = random.Random(3)
    cones = [(rng.uniform(0, 360), rng.uniform(-80, 80)) for _ in range(a.cones)]
    ours = sorted(tap(a.url, f"SELECT id, ra, dec FROM sky.object WHERE CONTAINS(POINT(ra, dec), CIRCLE({x}, {y}, 0.1)) = 1")[0]
                  for x, y in cones)
    theirs = []
    for x, y in cones[:10]:
        t = time.perf_counter()
        con.execute(f"""SELECT id, ra, dec FROM o WHERE dec BETWEEN {y - 0.1} AND {y + 0.1} AND degrees(2 * asin(sqrt(
            pow(sin(radians(dec - {y}) / 2), 2) + cos(radians(dec)) * cos(radians({y})) * pow(sin(radians(ra - {x}) / 2), 2)))) <= 0.1""").fetchall()
        theirs.append(time.perf_counter() - t)
    p99 = ours[min(len(ours) - 1, int(len(ours) * 0.99))]
    print(f"cone 0.1 deg: skyshard median {statistics.median(ours) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms; "
          f"DuckDB median {statistics.median(theirs) * 1000:.1f} ms")
    queries = [
        ("filtered COUNT", "SELECT COUNT(*) FROM sky.object WHERE mag_g < 20", "SELECT COUNT(*) FROM o WHERE mag_g < 20"),
        ("GROUP BY 1-degree cells",
         "SELECT FLOOR(ra) AS x, FLOOR(dec) AS y, COUNT(*) AS n, AVG(mag_g) AS m FROM sky.object GROUP BY FLOOR(ra), FLOOR(dec)",
         "SELECT FLOOR(ra), FLOOR(dec), COUNT(*), AVG(mag_g) FROM o GROUP BY 1, 2"),
    ]
    for name, adql, sql in queries:
        ours = sorted(tap(a.url, adql)[0] for _ in range(a.repeat))
        theirs = sorted(timed(lambda: con.execute(sql).fetchall(), a.repeat))
        m, d = statistics.median(ours), statistics.median(theirs)
        print(f"{name}: skyshard median {m * 1000:.0f} ms, DuckDB median {d * 1000:.0f} ms, ratio {m / d:.2f}")


if __name__ == "__main__":
    main()
