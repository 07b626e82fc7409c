"""Differential tests: `skyshard adql run` against DuckDB (an independent engine) over the same Parquet file.

Geometry has no DuckDB built-in here (the spatial extension needs a download), so the reference formulas are written
out in DuckDB SQL (haversine) and in numpy (point in convex spherical polygon by triple products): independent code
paths from skyshard's Rust kernels. Random points include both poles and RA exactly 0 and just below 360.
"""

import csv
import io
import subprocess

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from skyshard_processes import SKYSHARD

N = 20000


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    rng = np.random.default_rng(20261125)
    ra = rng.uniform(0, 360, N)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, N)))
    # Edge positions: the poles, RA 0 and just below 360, the equator.
    special = [(0, 90), (77, 90), (0, -90), (200, -90), (0, 0), (359.9999999, 0.1), (0.0000001, -0.1), (180, 0)]
    for i, (a, d) in enumerate(special):
        ra[i], dec[i] = a, d
    ra2 = rng.uniform(0, 360, N)
    dec2 = np.degrees(np.arcsin(rng.uniform(-1, 1, N)))
    # Some pairs very close together, where the haversine form matters.
    close = slice(100, 600)
    ra2[close] = (ra[close] + rng.normal(0, 1e-5, 500)) % 360
    dec2[close] = np.clip(dec[close] + rng.normal(0, 1e-5, 500), -90, 90)
    mag = rng.uniform(5, 20, N)
    band = rng.choice(["g", "r", "i"], N)
    table = pa.table({"id": np.arange(N), "ra": ra, "dec": dec, "ra2": ra2, "dec2": dec2, "mag": mag, "band": band})
    path = tmp_path_factory.mktemp("data") / "pts.parquet"
    pq.write_table(table, path)
    return path, table


def run_adql(path, query):
    out = subprocess.run(
        [SKYSHARD, "adql", "run", "--format", "csv", "--table", f"t.pts={path}", query],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return list(csv.DictReader(io.StringIO(out.stdout)))


def duck(path, sql):
    con = duckdb.connect()
    con.execute(f"CREATE VIEW pts AS SELECT * FROM read_parquet('{path}')")
    return con.execute(sql).fetchall()


HAVERSINE = (
    "degrees(2 * asin(sqrt(least(1.0, pow(sin(radians({d2} - {d1}) / 2), 2) "
    "+ cos(radians({d1})) * cos(radians({d2})) * pow(sin(radians({r2} - {r1}) / 2), 2)))))"
)


def test_distance_matches_duckdb(catalog):
    path, _ = catalog
    ours = run_adql(path, "SELECT id, DISTANCE(POINT(ra, dec), POINT(ra2, dec2)) AS d FROM t.pts ORDER BY id")
    expr = HAVERSINE.format(r1="ra", d1="dec", r2="ra2", d2="dec2")
    ref = duck(path, f"SELECT id, {expr} FROM pts ORDER BY id")
    assert len(ours) == len(ref) == N
    worst = max(abs(float(o["d"]) - r[1]) for o, r in zip(ours, ref))
    assert worst < 1e-9, worst


def test_distance_is_symmetric_and_four_argument_form_agrees(catalog):
    path, _ = catalog
    rows = run_adql(
        path,
        "SELECT DISTANCE(POINT(ra, dec), POINT(ra2, dec2)) AS a, DISTANCE(POINT(ra2, dec2), POINT(ra, dec)) AS b, "
        "DISTANCE(ra, dec, ra2, dec2) AS c FROM t.pts",
    )
    for r in rows:
        a, b, c = float(r["a"]), float(r["b"]), float(r["c"])
        assert abs(a - b) < 1e-12 and a == c
        assert 0 <= a <= 180


CONES = [
    (0.0, 90.0, 5.0),  # north pole
    (123.0, -90.0, 7.5),  # south pole
    (0.0, 0.0, 3.0),  # across RA 0/360
    (359.5, 30.0, 2.0),  # across RA 0/360 off the equator
    (180.0, 10.0, 2.5),
    (45.0, -45.0, 60.0),  # large
    (10.0, 20.0, 120.0),  # larger than a hemisphere
]


@pytest.mark.parametrize("cone", CONES)
def test_cone_contains_matches_duckdb(catalog, cone):
    path, _ = catalog
    cra, cdec, r = cone
    ours = {
        int(x["id"])
        for x in run_adql(path, f"SELECT id FROM t.pts WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {cra}, {cdec}, {r})) = 1")
    }
    expr = HAVERSINE.format(r1="ra", d1="dec", r2=cra, d2=cdec)
    ref = {row[0] for row in duck(path, f"SELECT id FROM pts WHERE {expr} <= {r}")}
    # Points within 1e-9 degrees of the edge may fall either way in floating point.
    edge = {row[0] for row in duck(path, f"SELECT id FROM pts WHERE abs({expr} - {r}) < 1e-9")}
    assert (ours ^ ref) <= edge
    assert len(ref) > 0


@pytest.mark.parametrize("cone", CONES[:4])
def test_distance_predicate_agrees_with_contains(catalog, cone):
    path, _ = catalog
    cra, cdec, r = cone
    a = run_adql(path, f"SELECT COUNT(*) AS n FROM t.pts WHERE DISTANCE(POINT(ra, dec), POINT({cra}, {cdec})) <= {r}")
    b = run_adql(path, f"SELECT COUNT(*) AS n FROM t.pts WHERE CONTAINS(POINT(ra, dec), CIRCLE({cra}, {cdec}, {r})) = 1")
    assert a == b


def unit(ra, dec):
    ra, dec = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=-1)


POLYGONS = [
    [(10, 10), (30, 10), (30, 30), (10, 30)],
    [(350, -5), (10, -5), (10, 5), (350, 5)],  # across RA 0/360
    [(0, 70), (120, 70), (240, 70)],  # around the north pole
    [(0, -60), (90, -60), (180, -60), (270, -60)],  # around the south pole
    [(100, -30), (140, -30), (120, 0)],
]


@pytest.mark.parametrize("poly", POLYGONS)
def test_polygon_contains_matches_numpy(catalog, poly):
    path, table = catalog
    args = ", ".join(f"{a}, {d}" for a, d in poly)
    ours = {int(x["id"]) for x in run_adql(path, f"SELECT id FROM t.pts WHERE CONTAINS(POINT(ra, dec), POLYGON({args})) = 1")}
    v = unit(np.array([p[0] for p in poly], float), np.array([p[1] for p in poly], float))
    normals = np.cross(v, np.roll(v, -1, axis=0))
    # The vertices are counter-clockwise here; the inside is left of every edge.
    if np.dot(normals[0], v[2 % len(v)]) < 0:
        normals = -normals
    p = unit(table["ra"].to_numpy(), table["dec"].to_numpy())
    side = p @ normals.T
    ref = set(np.nonzero((side >= 0).all(axis=1))[0].tolist())
    edge = set(np.nonzero((np.abs(side) < 1e-12).any(axis=1))[0].tolist())
    assert (ours ^ ref) <= edge
    assert len(ref) > 0


BOXES = [(20, 20, 10, 6), (0, 0, 8, 4), (359, -3, 6, 6), (45, 89, 10, 4), (300, -88, 20, 20), (180, 60, 30, 2)]


@pytest.mark.parametrize("box", BOXES)
def test_box_contains_matches_a_gnomonic_oracle(catalog, box):
    """BOX(ra, dec, w, h): the points whose gnomonic (tangent-plane) coordinates about the centre lie within
    tan(w/2) east-west and tan(h/2) north-south: the box's great-circle edges are straight lines in that projection,
    so this reference shares no code or construction with the engine's polygon test."""
    path, table = catalog
    a, d, w, h = box
    ours = {int(x["id"]) for x in run_adql(path, f"SELECT id FROM t.pts WHERE CONTAINS(POINT(ra, dec), BOX({a}, {d}, {w}, {h})) = 1")}
    c = unit(np.array(a, float), np.array(d, float))
    east = np.array([-np.sin(np.radians(a)), np.cos(np.radians(a)), 0.0])
    north = np.cross(c, east)
    p = unit(table["ra"].to_numpy(), table["dec"].to_numpy())
    depth = p @ c
    with np.errstate(divide="ignore", invalid="ignore"):
        x, y = (p @ east) / depth, (p @ north) / depth
    tx, ty = np.tan(np.radians(w / 2)), np.tan(np.radians(h / 2))
    inside = (depth > 0) & (np.abs(x) <= tx) & (np.abs(y) <= ty)
    ref = set(np.nonzero(inside)[0].tolist())
    edge = set(np.nonzero((depth > 0) & ((np.abs(np.abs(x) - tx) < 1e-9) | (np.abs(np.abs(y) - ty) < 1e-9)))[0].tolist())
    assert len(ref) > 0, "the reference is empty: this box tests nothing"
    assert (ours ^ ref) <= edge, sorted(ours ^ ref)[:10]


def test_aggregates_match_duckdb(catalog):
    path, _ = catalog
    ours = run_adql(
        path,
        "SELECT band, COUNT(*) AS n, MIN(mag) AS lo, MAX(mag) AS hi, AVG(mag) AS mean FROM t.pts "
        "WHERE dec > 0 GROUP BY band ORDER BY band",
    )
    ref = duck(path, "SELECT band, COUNT(*), MIN(mag), MAX(mag), AVG(mag) FROM pts WHERE dec > 0 GROUP BY band ORDER BY band")
    assert len(ours) == len(ref) == 3
    for o, r in zip(ours, ref):
        assert o["band"] == r[0] and int(o["n"]) == r[1]
        assert abs(float(o["lo"]) - r[2]) < 1e-12 and abs(float(o["hi"]) - r[3]) < 1e-12
        assert abs(float(o["mean"]) - r[4]) < 1e-9


def test_top_order_offset_match_duckdb(catalog):
    path, _ = catalog
    ours = run_adql(path, "SELECT TOP 7 id, mag FROM t.pts WHERE mag < 6 ORDER BY mag DESC OFFSET 3")
    ref = duck(path, "SELECT id, mag FROM pts WHERE mag < 6 ORDER BY mag DESC LIMIT 7 OFFSET 3")
    assert [int(o["id"]) for o in ours] == [r[0] for r in ref]


def test_subquery_and_set_operations_match_duckdb(catalog):
    path, _ = catalog
    ours = run_adql(
        path,
        "SELECT COUNT(*) AS n FROM t.pts WHERE id IN (SELECT id FROM t.pts WHERE mag < 7 "
        "INTERSECT SELECT id FROM t.pts WHERE dec > 0)",
    )
    ref = duck(path, "SELECT COUNT(*) FROM pts WHERE id IN (SELECT id FROM pts WHERE mag < 7 INTERSECT SELECT id FROM pts WHERE dec > 0)")
    assert int(ours[0]["n"]) == ref[0][0]


def check(query):
    return subprocess.run([SKYSHARD, "adql", "check"], input=query, capture_output=True, text=True, timeout=30)


def test_check_accepts_valid_adql():
    r = check("SELECT TOP 10 ra, dec FROM gaia.source WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', 10, 20, 1))")
    assert r.returncode == 0, r.stdout


@pytest.mark.parametrize(
    "query, position, words",
    [
        ("SELECT ra FROM t LIMIT 5", "1:18", "SELECT TOP"),
        ("SELECT ra,\n  dec\nFROM t\nWHERE ra > > 3", "4:12", "expected"),
        ("SELECT TOP 5 DISTINCT ra FROM t", "1:14", "DISTINCT TOP"),
        ("SELECT distance FROM t", "1:8", "reserved"),
        ("DROP TABLE t", "1:1", "only SELECT"),
        ("SELECT ra FROM t; SELECT 1 FROM t", "1:19", "one query"),
        ("SELECT ra::int FROM t", "1:10", "CAST"),
    ],
)
def test_check_positions_and_says_what_was_expected(query, position, words):
    r = check(query)
    assert r.returncode == 1
    assert r.stdout.startswith(position + ":"), r.stdout
    assert words in r.stdout, r.stdout
