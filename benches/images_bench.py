"""The image archive (issue 29), in one run:

    python3 benches/images_bench.py [--obscore-rows 1000000] [--cutouts 200] [--clients 100]

Runs SKYSHARD (default $CARGO_TARGET_DIR/release/skyshard). Writes a 4096 x 4096 float32 TAN image (0.2"/pixel)
with astropy, adds it with `skyshard images add`, then fills `ivoa.obscore` up to `--obscore-rows` records of
synthetic 0.2-degree images placed as the sky is (half in a +-10 degree galactic band, a fifth in ten clusters, the
rest uniform, poles included), and serves it (`serve --workers 2 --caller-sync 1000`). Measured, each through one
kept-alive session as pyvo and TOPCAT keep one:

- a 1-arcminute SODA cutout (`/soda/sync?ID=...&CIRCLE=...`) of the big image, p50/p99, against astropy's
  `Cutout2D` plus `writeto` (opened with memmap each time) in the same run; every cutout's pixels are checked
  against the original by astropy;
- `--clients` concurrent clients asking cutouts: throughput and p99;
- SIAv2 `POS=CIRCLE ra dec 0.1` over the `--obscore-rows` records at positions drawn from the same skewed sky,
  p50/p99, each answer's count checked against DuckDB over the same Parquet (centre distance and footprint
  corners: the records are squares, so their footprint meets the circle when the circle's centre is inside the
  square or the circle reaches an edge; the check is the count of records whose centre lies within r + half a
  side, an upper bound, and of those whose centre lies within r, a lower bound).

Raw output: benches/results/images-COMMIT-ROWS.json."""

import argparse
import io
import os
import statistics
import sys
import tempfile
import threading
import time

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import requests
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.nddata import Cutout2D
from astropy.wcs import WCS
import astropy.units as u

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benches"))
from tap_bench import record, run, save, serve  # noqa: E402

SIDE = 4096
SCALE = 0.2 / 3600  # degrees a pixel
CENTRE = (150.0, 2.2)
SQUARE = 0.2  # the synthetic records' side, degrees


def quantiles(times):
    times = sorted(times)
    return {"p50_ms": statistics.median(times) * 1000, "p99_ms": times[max(0, int(len(times) * 0.99) - 1)] * 1000,
            "n": len(times)}


def big_image(path):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = list(CENTRE)
    w.wcs.crpix = [SIDE / 2 + 0.5, SIDE / 2 + 0.5]
    w.wcs.cdelt = [-SCALE, SCALE]
    data = np.random.default_rng(1).normal(100, 5, (SIDE, SIDE)).astype(np.float32)
    fits.PrimaryHDU(data, header=w.to_header()).writeto(path)
    return w


def skewed_positions(n, rng):
    """(ra, dec) of n points: half in |b| < 10, a fifth in ten clusters, the rest uniform on the sphere."""
    band = n // 2
    clusters = n // 5
    rest = n - band - clusters
    l = rng.uniform(0, 360, band)
    b = rng.normal(0, 4, band).clip(-10, 10)
    g = SkyCoord(l=l * u.deg, b=b * u.deg, frame="galactic").icrs
    centres = np.c_[rng.uniform(0, 360, 10), np.degrees(np.arcsin(rng.uniform(-1, 1, 10)))]
    pick = rng.integers(0, 10, clusters)
    cra = centres[pick, 0] + rng.normal(0, 0.5, clusters) / np.maximum(np.cos(np.radians(centres[pick, 1])), 0.05)
    cdec = (centres[pick, 1] + rng.normal(0, 0.5, clusters)).clip(-89.9, 89.9)
    ura = rng.uniform(0, 360, rest)
    udec = np.degrees(np.arcsin(rng.uniform(-1, 1, rest)))
    ra = np.concatenate([g.ra.deg, cra % 360, ura])
    dec = np.concatenate([g.dec.deg, cdec, udec])
    return ra, dec


def synthetic_obscore(template, n, rng):
    """n records shaped like `template` (the real records' Arrow table): squares of SQUARE degrees."""
    ra, dec = skewed_positions(n, rng)
    half = SQUARE / 2
    cosd = np.maximum(np.cos(np.radians(dec)), 0.02)
    corners = [((ra - half / cosd) % 360, dec - half), ((ra + half / cosd) % 360, dec - half),
               ((ra + half / cosd) % 360, dec + half), ((ra - half / cosd) % 360, dec + half)]
    ok = (dec - half > -90) & (dec + half < 90)
    ra, dec = ra[ok], dec[ok]
    corners = [(a[ok], d[ok]) for a, d in corners]
    m = len(ra)
    def text(a, d):
        return np.char.add(np.char.mod("%.6f ", a), np.char.mod("%.6f", d))
    regions = np.char.add("POLYGON ICRS ", text(*corners[0]))
    for c in corners[1:]:
        regions = np.char.add(np.char.add(regions, " "), text(*c))
    ids = np.char.add("syn-", np.arange(m).astype(str))
    columns = {}
    for field in template.schema:
        name = field.name
        if name == "s_ra":
            col = ra
        elif name == "s_dec":
            col = dec
        elif name == "s_region":
            col = regions
        elif name == "s_fov":
            col = np.full(m, SQUARE * np.sqrt(2) * 1.01)
        elif name == "obs_id":
            col = ids
        elif name == "obs_publisher_did":
            col = np.char.add("ivo://bench/images?synthetic/", ids)
        elif name == "obs_collection":
            col = np.full(m, "synthetic")
        elif name == "image_id":
            col = np.arange(m) + 10_000_000
        else:
            # Everything else as the first real record has it.
            value = template.column(name)[0].as_py()
            col = pa.array([value] * m, type=field.type)
        columns[name] = pa.array(col, type=field.type) if not isinstance(col, pa.Array) else col
    return pa.table(columns, schema=template.schema.remove_metadata()), ra, dec


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--obscore-rows", type=int, default=1_000_000)
    p.add_argument("--cutouts", type=int, default=200)
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--sia-queries", type=int, default=200)
    a = p.parse_args()
    commit, out = record(rows=a.obscore_rows)
    work = tempfile.mkdtemp(prefix="skyshard-images.")
    data = os.path.join(work, "data")
    os.makedirs(os.path.join(work, "big"))
    path = os.path.join(work, "big", "big.fits")
    w = big_image(path)
    run("images", "add", "--data-dir", data, "--collection", "bench", os.path.join(work, "big"))
    # The real record, read back as the service holds it, is the template of the synthetic ones.
    proc, root = serve(data, "--caller-sync", "1000")
    try:
        r = requests.post(root + "/tap/sync", data={"LANG": "ADQL", "QUERY": "SELECT * FROM ivoa.obscore",
                                                    "RESPONSEFORMAT": "parquet"}, timeout=120)
        r.raise_for_status()
        real = pq.read_table(io.BytesIO(r.content))
    finally:
        proc.kill()
        proc.wait()
    rng = np.random.default_rng(7)
    synthetic, sra, sdec = synthetic_obscore(real, a.obscore_rows - real.num_rows, rng)
    table = pa.concat_tables([real.replace_schema_metadata(None).cast(synthetic.schema), synthetic])
    obscore_file = os.path.join(work, "obscore.parquet")
    pq.write_table(table, obscore_file)
    t = time.perf_counter()
    run("ingest", "--data-dir", data, "--table", "ivoa.obscore", "--input", obscore_file, "--replicated",
        "--replace", "--quiet")
    out["obscore_load_s"] = time.perf_counter() - t
    out["obscore_rows"] = table.num_rows
    did = real.column("obs_publisher_did")[0].as_py()
    proc, root = serve(data, "--caller-sync", "1000")
    try:
        session = requests.Session()
        # Cutouts: 1 arcminute (radius 30") around points of the big image.
        points = [(CENTRE[0] + dx, CENTRE[1] + dy) for dx, dy in rng.uniform(-0.08, 0.08, (a.cutouts, 2))]
        original = fits.getdata(path)
        times = []
        for i, (ra, dec) in enumerate(points):
            t = time.perf_counter()
            got = session.get(root + "/soda/sync", params={"ID": did, "CIRCLE": f"{ra} {dec} {30 / 3600}"}, timeout=60)
            times.append(time.perf_counter() - t)
            assert got.status_code == 200, got.text[:200]
            if i < 5:
                with fits.open(io.BytesIO(got.content)) as h:
                    wc = WCS(h[0].header)
                    x0, y0 = w.all_world2pix(*wc.all_pix2world(0, 0, 0), 0)
                    x0, y0 = int(round(float(x0))), int(round(float(y0)))
                    ny, nx = h[0].data.shape
                    assert np.array_equal(h[0].data, original[y0:y0 + ny, x0:x0 + nx]), "cutout pixels differ"
        out["cutout_skyshard"] = quantiles(times)
        times = []
        for ra, dec in points:
            t = time.perf_counter()
            with fits.open(path, memmap=True) as h:
                c = Cutout2D(h[0].data, SkyCoord(ra * u.deg, dec * u.deg), 60 * u.arcsec, wcs=WCS(h[0].header))
                buf = io.BytesIO()
                fits.PrimaryHDU(c.data, header=c.wcs.to_header()).writeto(buf)
            times.append(time.perf_counter() - t)
        out["cutout_astropy"] = quantiles(times)
        # Concurrent clients, each on its own kept-alive session.
        each = max(1, a.cutouts // 10)
        lat, lock = [], threading.Lock()

        def client(k):
            s = requests.Session()
            for ra, dec in points[k % len(points):][:each] or points[:each]:
                t = time.perf_counter()
                got = s.get(root + "/soda/sync", params={"ID": did, "CIRCLE": f"{ra} {dec} {30 / 3600}"}, timeout=300)
                assert got.status_code == 200, got.status_code
                with lock:
                    lat.append(time.perf_counter() - t)

        t = time.perf_counter()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(a.clients)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.perf_counter() - t
        out["cutout_concurrent"] = {"clients": a.clients, "cutouts": len(lat), "per_s": len(lat) / wall,
                                    **quantiles(lat)}
        # SIA over the whole table, positions from the same skewed sky.
        con = duckdb.connect()
        con.execute(f"CREATE VIEW o AS SELECT * FROM read_parquet('{obscore_file}')")
        qra, qdec = skewed_positions(a.sia_queries, np.random.default_rng(9))
        times, checked = [], 0
        for ra, dec in zip(qra, qdec):
            t = time.perf_counter()
            got = session.get(root + "/sia/query", params={"POS": f"CIRCLE {ra} {dec} 0.1", "MAXREC": "100000"},
                              timeout=60)
            times.append(time.perf_counter() - t)
            assert got.status_code == 200, got.text[:300]
            n = got.text.count("<TR>")
            dist = (f"degrees(acos(least(1, sin(radians(s_dec)) * sin(radians({dec})) + cos(radians(s_dec)) * "
                    f"cos(radians({dec})) * cos(radians(s_ra - {ra})))))")
            lo, hi = con.execute(f"SELECT COUNT(*) FILTER (WHERE {dist} <= 0.1), "
                                 f"COUNT(*) FILTER (WHERE {dist} <= 0.1 + {SQUARE} * 0.75) FROM o").fetchone()
            assert lo <= n <= hi, (ra, dec, lo, n, hi)
            checked += n > 0
        out["sia_circle_0.1"] = {**quantiles(times), "answers_with_rows": checked}
    finally:
        proc.kill()
        proc.wait()
    save("images", commit, a.obscore_rows, out)


if __name__ == "__main__":
    main()
