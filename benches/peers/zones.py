"""The DuckDB peer of a cross-match, shared by the benchmarks: the classic zone join (the strongest formulation
found here), every pair of rows of two relations within R degrees.

Each relation is SQL with columns id, ra, dec (a table, a view or `read_parquet(...)`); both are loaded into memory
with their declination zone of height R (not timed), then each left row meets its own and the two neighbouring
zones of the right by equality, an RA window widened by 1 / cos(dec), and the exact haversine distance."""

import time


def zone_join_count(con, left, right, r, distinct_ids=False):
    """(pairs, seconds of the join alone); `distinct_ids`: leave out pairs of a row with itself (a self-join)."""
    con.execute(f"CREATE OR REPLACE TABLE zone_l AS SELECT id, ra, dec, CAST(floor(dec / {r}) AS BIGINT) AS zone "
                f"FROM {left}")
    con.execute(f"CREATE OR REPLACE TABLE zone_r AS SELECT id, ra, dec, CAST(floor(dec / {r}) AS BIGINT) AS zone "
                f"FROM {right}")
    sql = f"""
        WITH a AS (SELECT id, ra, dec, unnest([zone - 1, zone, zone + 1]) AS zz,
                          {r} / greatest(cos(radians(abs(dec) + {r})), 1e-9) AS w FROM zone_l)
        SELECT COUNT(*) FROM a JOIN zone_r b ON b.zone = a.zz
        WHERE {"a.id <> b.id AND " if distinct_ids else ""}abs(b.dec - a.dec) <= {r}
          AND (abs(b.ra - a.ra) <= a.w OR abs(b.ra - a.ra) >= 360 - a.w)
          AND degrees(2 * asin(sqrt(pow(sin(radians(b.dec - a.dec) / 2), 2)
              + cos(radians(a.dec)) * cos(radians(b.dec)) * pow(sin(radians(b.ra - a.ra) / 2), 2)))) <= {r}"""
    t = time.perf_counter()
    n = con.execute(sql).fetchone()[0]
    return n, time.perf_counter() - t
