"""The image archive through the clients (issue 29, second part): `skyshard images add` (all or nothing), ObsCore in
TAP (`ivoa.obscore`, its utypes, INTERSECTS and CONTAINS over `s_region`, a join with the catalog), and SIAv2 at
`/sia` through pyvo's `SIA2Service`. The oracle is astropy: which images a circle meets, which catalog objects fall
on which image, computed from the images' own WCS; never the engine's earlier output."""

import io
import re
import shutil
import socket
import subprocess
import time

import numpy as np
import pytest
import pyvo
import requests
from astropy.io import fits
from astropy.io.votable import parse_single_table
from astropy.time import Time
from astropy.wcs import WCS

from skyshard_processes import SKYSHARD, run, start

# (name, ra, dec, filter, mjd, collection)
IMAGES = [
    ("a-g", 10.0, 20.0, "g", 60000.1, "deep"),
    ("a-r", 10.05, 20.02, "r", 60001.1, "deep"),
    ("b-g", 10.3, 20.0, "g", 60002.1, "deep"),
    ("ra0", 0.02, -5.0, "i", 60003.1, "wide"),
    ("pole", 45.0, 89.95, "z", 60004.1, "wide"),
    ("far", 200.0, -40.0, "y", 60005.1, "wide"),
    ("c-u", 10.15, 19.9, "u", 60006.1, "wide"),
]
SIZE = (200, 150)
SCALE = 0.0008  # degrees a pixel: an image is 0.16 x 0.12 degrees


def wcs_at(ra, dec, rot):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [SIZE[0] / 2 + 0.5, SIZE[1] / 2 + 0.5]
    c, s = np.cos(np.radians(rot)), np.sin(np.radians(rot))
    w.wcs.cd = np.array([[-SCALE * c, SCALE * s], [SCALE * s, SCALE * c]])
    return w


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    base = tmp_path_factory.mktemp("archive")
    run("gen", "--rows", "20000", "--out", str(base / "rel"))
    data = base / "data"
    run("ingest", "--data-dir", str(data), "--table", "sky.object", "--input", str(base / "rel/object.parquet"),
        "--ra", "ra", "--dec", "dec", "--id", "id", "--quiet")
    # Objects on and around the images (the generated sky is too sparse for 0.1-degree fields): sky.spots.
    rng = np.random.default_rng(3)
    spots = []
    for _, ra, dec, *_ in IMAGES:
        n = 60
        d = rng.uniform(-0.12, 0.12, (n, 2))
        spots += [((ra + dx / max(np.cos(np.radians(dec)), 0.05)) % 360, float(np.clip(dec + dy, -90, 90)))
                  for dx, dy in d]
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"id": np.arange(len(spots)), "ra": [p[0] for p in spots], "dec": [p[1] for p in spots]}),
                   base / "spots.parquet")
    run("ingest", "--data-dir", str(data), "--table", "sky.spots", "--input", str(base / "spots.parquet"),
        "--ra", "ra", "--dec", "dec", "--id", "id", "--quiet")
    files, wcses = {}, {}
    for i, (name, ra, dec, band, mjd, collection) in enumerate(IMAGES):
        w = wcs_at(ra, dec, rot=7 * i)
        h = w.to_header()
        h["FILTER"], h["MJD-OBS"], h["EXPTIME"], h["OBJECT"] = band, mjd, 30.0, name
        path = base / collection / f"{name}.fits"
        path.parent.mkdir(exist_ok=True)
        fits.PrimaryHDU(rng.normal(0, 1, (SIZE[1], SIZE[0])).astype(np.float32), header=h).writeto(path)
        files[name], wcses[name] = path, w
    # The service's address is known before it starts: the records' access_url names its DataLink endpoint.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for collection in ("deep", "wide"):
        out = run("images", "add", "--data-dir", str(data), "--collection", collection, "--base-url",
                  f"http://127.0.0.1:{port}", str(base / collection))
        assert "images added" in out, out
    proc, url = start(["serve", "--data-dir", str(data), "--port", str(port), "--workers", "1", "--jobs-dir",
                       str(base / "jobs")])
    yield {"tap": url, "root": url.replace("/tap", ""), "data": data, "base": base, "files": files, "wcs": wcses}
    proc.kill()
    proc.wait()


def separation(ra1, dec1, ra2, dec2):
    a1, d1, a2, d2 = map(np.radians, (ra1, dec1, ra2, dec2))
    c = np.sin(d1) * np.sin(d2) + np.cos(d1) * np.cos(d2) * np.cos(a1 - a2)
    return np.degrees(np.arccos(np.clip(c, -1, 1)))


def meets(w, ra, dec, r):
    """Whether the image of WCS `w` meets the circle: its centre falls on the image, or a point of the image's
    outer edge (sampled every tenth of a pixel) is within r. None when the answer is within 1e-4 degrees of the
    circle's edge (too close to call with sampling)."""
    x, y = w.all_world2pix([[ra, dec]], 0)[0]
    if -0.5 <= x <= SIZE[0] - 0.5 and -0.5 <= y <= SIZE[1] - 0.5:
        return True
    t = np.linspace(0, 1, 10 * max(SIZE))
    edge = np.concatenate([
        np.c_[-0.5 + t * SIZE[0], np.full_like(t, -0.5)], np.c_[np.full_like(t, SIZE[0] - 0.5), -0.5 + t * SIZE[1]],
        np.c_[-0.5 + t * SIZE[0], np.full_like(t, SIZE[1] - 0.5)], np.c_[np.full_like(t, -0.5), -0.5 + t * SIZE[1]],
    ])
    era, edec = w.all_pix2world(edge, 0).T
    d = separation(era, edec, ra, dec).min()
    if abs(d - r) < 1e-4:
        return None
    return d <= r


def sia(archive):
    return pyvo.dal.SIA2Service(archive["root"] + "/sia")


@pytest.mark.parametrize("circle", [(10.0, 20.0, 0.01), (10.1, 20.0, 0.12), (10.2, 19.95, 0.05), (0.0, -5.0, 0.1),
                                    (359.9, -5.05, 0.05), (0.0, 90.0, 0.2), (200.0, -40.0, 3), (100.0, 0.0, 1)])
def test_sia_finds_the_images_a_circle_meets_as_astropy_does(archive, circle):
    want = {}
    for name, w in archive["wcs"].items():
        m = meets(w, *circle)
        if m is not None:
            want[name] = m
    got = {r["obs_id"] for r in sia(archive).search(pos=circle)}
    assert {n for n, m in want.items() if m} == got & set(want), (circle, sorted(got), want)


def test_band_time_collection_and_maxrec_narrow_the_search(archive):
    s = sia(archive)
    everywhere = (10.1, 20.0, 1.0)
    assert {r["obs_id"] for r in s.search(pos=everywhere)} == {"a-g", "a-r", "b-g", "c-u"}
    # g is 400-552 nm: a band of 450-460 nm meets only the g images; r's starts at 552.
    assert {r["obs_id"] for r in s.search(pos=everywhere, band=(450e-9, 460e-9))} == {"a-g", "b-g"}
    assert {r["obs_id"] for r in s.search(pos=everywhere, time=(Time(60000.9, format="mjd"), Time(60002.0, format="mjd")))} == {"a-r"}
    assert {r["obs_id"] for r in s.search(pos=everywhere, collection="wide")} == {"c-u"}
    assert {r["obs_id"] for r in s.search(collection="wide")} == {"ra0", "pole", "far", "c-u"}
    # Repeated values of one parameter are OR-ed, different parameters AND-ed.
    url = archive["root"] + "/sia/query"
    r = requests.get(url, params=[("COLLECTION", "deep"), ("COLLECTION", "wide"), ("TARGET", "b-g"),
                                  ("TARGET", "far")])
    assert r.status_code == 200, r.text[:300]
    table = parse_single_table(io.BytesIO(r.content)).to_table()
    assert {str(x) for x in table["obs_id"]} == {"b-g", "far"}
    limited = s.search(collection="wide", maxrec=2)
    assert len(limited) == 2


def test_obscore_in_tap_meets_the_catalog(archive):
    tap = pyvo.dal.TAPService(archive["tap"])
    columns = tap.run_sync("SELECT column_name, utype, ucd, unit, xtype, datatype FROM TAP_SCHEMA.columns "
                           "WHERE table_name = 'ivoa.obscore'").to_table()
    by_name = {c["column_name"]: c for c in columns}
    for name in ("dataproduct_type", "calib_level", "obs_collection", "obs_id", "obs_publisher_did", "access_url",
                 "access_format", "access_estsize", "target_name", "s_ra", "s_dec", "s_fov", "s_region",
                 "s_resolution", "t_min", "t_max", "t_exptime", "t_resolution", "em_min", "em_max", "em_res_power",
                 "o_ucd", "pol_states", "facility_name", "instrument_name", "s_xel1", "s_xel2", "t_xel", "em_xel",
                 "pol_xel"):
        assert name in by_name, name
    assert by_name["s_region"]["utype"] == "obscore:Char.SpatialAxis.Coverage.Support.Area"
    # A region as ObsCore 1.1 and every other archive give it: STC-S text, `adql:REGION` (what taplint's ObsCore
    # stage and pyvo's records expect), still a geometry to ADQL.
    assert by_name["s_region"]["xtype"] == "adql:REGION" and by_name["s_region"]["datatype"] == "char"
    regions = tap.run_sync("SELECT obs_id, s_region, AREA(s_region) AS footprint_area FROM ivoa.obscore").to_table()
    seen = 0
    for r in regions:
        w = archive["wcs"].get(str(r["obs_id"]))
        if w is None:
            continue
        words = str(r["s_region"]).split()
        assert words[:2] == ["POLYGON", "ICRS"], r["s_region"]
        v = np.array(words[2:], float).reshape(-1, 2)
        x, y = w.all_world2pix(v, 0).T
        # Every vertex on the image's outer edge by astropy's WCS.
        edge = np.minimum.reduce([np.abs(x + 0.5), np.abs(x - (SIZE[0] - 0.5)), np.abs(y + 0.5),
                                  np.abs(y - (SIZE[1] - 0.5))])
        assert len(v) >= 4 and edge.max() < 1e-6, (r["obs_id"], edge.max())
        # AREA over the text region: the pixels' solid angle by astropy, within half a percent.
        want = SIZE[0] * SIZE[1] * w.proj_plane_pixel_area().value
        assert abs(r["footprint_area"] - want) < 5e-3 * want, (r["obs_id"], r["footprint_area"], want)
        seen += 1
    assert seen == len(IMAGES), seen
    # SIA's records carry the same text (pyvo hands the value as it came: a string, as from other archives).
    record = next(iter(sia(archive).search(pos=(10.0, 20.0, 0.01))))
    assert str(record["s_region"]).startswith("POLYGON ICRS "), record["s_region"]
    assert by_name["t_min"]["unit"] == "d" and by_name["em_min"]["unit"] == "m"
    # Which generated objects fall on which image: the join against astropy's pixel bounds.
    rows = tap.run_sync("SELECT o.id, i.obs_id FROM sky.spots AS o JOIN ivoa.obscore AS i "
                        "ON 1 = CONTAINS(POINT(o.ra, o.dec), i.s_region)").to_table()
    got = {(int(r["id"]), str(r["obs_id"])) for r in rows}
    objects = tap.run_sync("SELECT id, ra, dec FROM sky.spots").to_table()
    want = set()
    for name, w in archive["wcs"].items():
        x, y = w.all_world2pix(np.c_[objects["ra"], objects["dec"]], 0).T
        inside = (x > -0.5) & (x < SIZE[0] - 0.5) & (y > -0.5) & (y < SIZE[1] - 0.5)
        # Beyond 90 degrees a TAN projection wraps: keep only objects near the image.
        near = separation(objects["ra"], objects["dec"], *w.wcs.crval) < 1
        want |= {(int(i), name) for i in np.asarray(objects["id"])[inside & near]}
    assert len(want) > 100 and {name for _, name in want} == set(archive["wcs"]), len(want)
    assert got == want, (sorted(got - want)[:5], sorted(want - got)[:5])


def test_sia_refuses_bad_parameters_clearly(archive):
    url = archive["root"] + "/sia/query"
    for params, message in [({"POS": "CIRCLE 10 95 1"}, "POS=CIRCLE 10 95 1: a circle needs"),
                            ({"POS": "ELLIPSE 1 2 3"}, "a position is CIRCLE, RANGE or POLYGON"),
                            ({"BAND": "5e-7 4e-7"}, "BAND=5e-7 4e-7: lo is above hi"),
                            ({"CALIB": "two"}, "CALIB=two: not an integer"),
                            ({"POL": "X'); DROP"}, "not a polarization state"),
                            ({"RESPONSEFORMAT": "csv"}, "SIA answers in VOTable"),
                            ({"POS": "RANGE 1e308 -1e308 0 1"}, "a RANGE needs 0 &lt; ra2 - ra1 &lt; 180"),
                            ({"POS": "RANGE 10 190 0 1"}, "a RANGE needs 0 &lt; ra2 - ra1 &lt; 180"),
                            ({"POS": "RANGE 10 10 0 1"}, "a RANGE needs 0 &lt; ra2 - ra1 &lt; 180"),
                            ({"POS": "RANGE 0 10 -90 90"}, "a RANGE in ra needs -90 &lt; dec1 &lt; dec2 &lt; 90")]:
        r = requests.get(url, params=params)
        assert r.status_code == 400 and message in r.text and 'value="ERROR"' in r.text, (params, r.text[:300])
    # A quote in a value is a value: no rows, no error.
    r = requests.get(url, params={"COLLECTION": "x' OR '1'='1"})
    assert r.status_code == 200 and "<TR>" not in r.text, r.text[:300]
    caps = requests.get(archive["root"] + "/sia/capabilities").text
    assert 'standardID="ivo://ivoa.net/std/SIA#query-2.0"' in caps and "/sia/query</accessURL>" in caps


def test_adding_images_is_all_or_nothing(archive, tmp_path):
    data = archive["data"]
    good = tmp_path / "good.fits"
    fits.PrimaryHDU(np.zeros((10, 10), np.float32), header=wcs_at(50, 50, 0).to_header()).writeto(good)
    bad = tmp_path / "bad.fits"
    fits.PrimaryHDU(np.zeros((10, 10), np.float32)).writeto(bad)
    out = subprocess.run([SKYSHARD, "images", "add", "--data-dir", str(data), "--collection", "more", str(good),
                          str(bad)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "nothing was added" in out.stderr and "bad.fits" in out.stderr, out.stderr
    assert "no usable celestial WCS" in out.stderr
    assert not (data / "images" / "more").exists() or not any((data / "images" / "more").iterdir())
    # An OBS_ID that is a path is refused: nothing is written outside the archive.
    for obs_id in ("/tmp/escaped-absolute", "../../../escaped", "a/b", "it's"):
        hostile = tmp_path / "hostile.fits"
        h = wcs_at(50, 50, 0).to_header()
        h["OBS_ID"] = obs_id
        fits.PrimaryHDU(np.zeros((10, 10), np.float32), header=h).writeto(hostile, overwrite=True)
        out = subprocess.run([SKYSHARD, "images", "add", "--data-dir", str(data), "--collection", "more",
                              str(hostile)], capture_output=True, text=True, timeout=120)
        assert out.returncode == 1 and "is not a plain name" in out.stderr, (obs_id, out.stderr)
    assert not list(tmp_path.parent.glob("escaped*")) and not list(data.glob("**/escaped*"))
    # The same image twice in a collection, and a collection name that is not one.
    out = subprocess.run([SKYSHARD, "images", "add", "--data-dir", str(data), "--collection", "deep",
                          str(archive["files"]["a-g"])], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "already holds an image a-g" in out.stderr, out.stderr
    out = subprocess.run([SKYSHARD, "images", "add", "--data-dir", str(data), "--collection", "../x", str(good)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "not a collection name" in out.stderr, out.stderr


def test_datalink_gives_the_file_and_soda_cuts_it_as_pyvo_asks(archive, tmp_path):
    record = next(r for r in sia(archive).search(pos=(10.0, 20.0, 0.01)) if r["obs_id"] == "a-g")
    links = record.getdatalink()
    this = next(links.bysemantics("#this", include_narrower=False))
    whole = requests.get(this.access_url)
    assert whole.status_code == 200 and whole.content == archive["files"]["a-g"].read_bytes()
    assert whole.headers["Content-Type"] == "application/fits"
    # pyvo finds SODA through the #cutout row's service descriptor and calls it with a circle.
    cut = next(links.bysemantics("#cutout", include_narrower=False)).processed(circle=(10.0, 20.0, 0.01))
    out = tmp_path / "cut.fits"
    out.write_bytes(cut.read())
    w = archive["wcs"]["a-g"]
    original = fits.getdata(archive["files"]["a-g"])
    with fits.open(out) as hdul:
        wc = WCS(hdul[0].header)
        ny, nx = hdul[0].data.shape
        assert 0 < nx < SIZE[0] and 0 < ny < SIZE[1]
        ys, xs = np.mgrid[0:ny, 0:nx]
        ra, dec = wc.all_pix2world(xs.ravel(), ys.ravel(), 0)
        xo, yo = w.all_world2pix(ra, dec, 0, tolerance=1e-12)
        assert np.abs(xo - np.round(xo)).max() < 1e-6 and np.abs(yo - np.round(yo)).max() < 1e-6
        assert np.array_equal(original[np.round(yo).astype(int), np.round(xo).astype(int)], hdul[0].data.ravel())


def test_results_carry_a_datalink_service_descriptor(archive):
    # SIA and TAP results with publisher DIDs say where their links are (DataLink 1.1 section 4), so pyvo's
    # iter_datalinks asks DataLink for every row in batches, and TOPCAT offers the links, from the result alone.
    results = sia(archive).search(pos=(10.1, 20.0, 1.0))
    service = results.get_adhocservice_by_ivoid("ivo://ivoa.net/std/DataLink#links-1.1")
    access = next(p.value for p in service.params if p.name == "accessURL")
    assert access == archive["root"] + "/datalink/links", access
    by_did = {}
    for links in results.iter_datalinks():
        this = next(links.bysemantics("#this", include_narrower=False))
        by_did[str(this["ID"])] = this.access_url
    want = {str(r["obs_publisher_did"]): str(r["obs_id"]) for r in results}
    assert set(by_did) == set(want) and len(want) == 4, (sorted(by_did), want)
    for did, url in by_did.items():
        assert requests.get(url).content == archive["files"][want[did]].read_bytes(), did
    # The same from TAP, found by the column's utype whatever it is called; none without the column.
    tap = pyvo.dal.TAPService(archive["tap"])
    named = tap.run_sync("SELECT obs_id, obs_publisher_did AS did FROM ivoa.obscore WHERE obs_collection = 'deep'")
    assert len(list(named.iter_datalinks())) == len(named) == 3
    plain = tap.run_sync("SELECT obs_id FROM ivoa.obscore")
    with pytest.raises(pyvo.dal.DALServiceError):
        plain.get_adhocservice_by_ivoid("ivo://ivoa.net/std/DataLink")


def test_soda_answers_misses_and_mistakes_as_soda_says(archive):
    url = archive["root"] + "/soda/sync"
    did = next(r for r in sia(archive).search(pos=(10.0, 20.0, 0.01)) if r["obs_id"] == "a-g")["obs_publisher_did"]
    assert requests.get(url, params={"ID": did, "CIRCLE": "50 50 0.01"}).status_code == 204
    for params, status, start in [
        ({"ID": did}, 400, "UsageError: a cutout needs CIRCLE, POLYGON or POS"),
        ({"CIRCLE": "10 20 0.01"}, 400, "UsageError: ID is missing"),
        ({"ID": did, "CIRCLE": "10 95 1"}, 400, "UsageError:"),
        ({"ID": [did, did], "CIRCLE": "10 20 0.01"}, 400, "MultiValuedParamNotSupported: one ID"),
        ({"ID": did, "CIRCLE": "10 20 0.01", "POS": "CIRCLE 10 20 0.01"}, 400, "MultiValuedParamNotSupported"),
        ({"ID": "ivo://elsewhere/x", "CIRCLE": "10 20 0.01"}, 404, "NotFoundFault: no image ivo://elsewhere/x"),
        ({"ID": "x' OR '1'='1", "CIRCLE": "10 20 0.01"}, 404, "NotFoundFault"),
    ]:
        r = requests.get(url, params=params)
        assert r.status_code == status and r.text.startswith(start), (params, r.status_code, r.text[:200])
        assert r.headers["Content-Type"].startswith("text/plain")
    r = requests.get(url, params={"ID": did, "POS": "RANGE 9.99 10.01 19.99 20.01"})
    assert r.status_code == 200 and r.content[:6] == b"SIMPLE"
    # The download names only what exists: no climbing out of the archive.
    for path in ("/images/deep/a-g.fits", "/images/deep/..%2f..%2fmeta", "/images/deep/.incoming", "/images/x/a-g.fits"):
        r = requests.get(archive["root"] + path)
        assert r.status_code == (200 if path == "/images/deep/a-g.fits" else 404), (path, r.status_code)


def test_datalink_and_sia_bound_what_one_request_asks(archive):
    # Fourth attacker pass: DataLink took any number of IDs (one query each) outside any turn; infinite intervals
    # in SIA matched every row; NaN in a SODA range read as the whole range.
    url = archive["root"] + "/datalink/links"
    r = requests.get(url, params=[("ID", f"ivo://x/{i}") for i in range(101)])
    assert r.status_code == 400 and "at most 100 IDs per request (101 given)" in r.text, r.text[:300]
    r = requests.get(url, params={"ID": "ivo://x/\x01bad"})
    assert r.status_code == 200 and "\x01" not in r.text and "ivo://x/bad" in r.text
    parse_single_table(io.BytesIO(r.content))  # well-formed XML
    assert len(sia(archive).search(band=(1e309, 1e310))) == 0
    assert len(sia(archive).search(collection="wide", fov=(-np.inf, -np.inf))) == 0
    did = next(r for r in sia(archive).search(pos=(10.0, 20.0, 0.01)) if r["obs_id"] == "a-g")["obs_publisher_did"]
    r = requests.get(archive["root"] + "/soda/sync", params={"ID": did, "POS": "RANGE 9 11 NaN NaN"})
    assert r.status_code == 400 and r.text.startswith("UsageError:") and "NaN" in r.text, r.text[:200]


def test_adding_a_folder_does_not_follow_links_in_circles(tmp_path):
    # Into a data directory of its own: one a service is serving would see its ivoa.obscore reloaded meanwhile.
    folder = tmp_path / "loop"
    folder.mkdir()
    (folder / "up").symlink_to("..")
    (folder / "self").symlink_to(".")
    h = wcs_at(70, 10, 0).to_header()
    fits.PrimaryHDU(np.zeros((10, 10), np.float32), header=h).writeto(folder / "once.fits")
    out = subprocess.run([SKYSHARD, "images", "add", "--data-dir", str(tmp_path / "data"), "--collection", "looped",
                          str(folder)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "1 images added" in out.stdout, out.stdout + out.stderr


@pytest.mark.skipif(shutil.which("stilts") is None, reason="stilts is not installed (apt-get install stilts)")
def test_taplint_obscore_stage_finds_no_error(archive):
    # taplint's OBS stage checks ivoa.obscore's columns against ObsCore 1.1 (types, units, UCDs, utypes) and that
    # the capabilities declare the data model.
    out = subprocess.run(["stilts", "taplint", f"tapurl={archive['tap']}", "report=EWS"], capture_output=True,
                         text=True, timeout=900)
    assert "Section OBS" in out.stdout, out.stdout[-3000:]
    obs = out.stdout[out.stdout.index("Section OBS"):]
    obs = obs[:obs.index("Section ", 10)] if "Section " in obs[10:] else obs
    assert not [line for line in obs.splitlines() if line.startswith("E-")], obs[-3000:]
    # The stage really read the table: every mandatory column found.
    assert re.search(r"S-OBS-COLS-1 ivoa.ObsCore columns: 30/30 required", obs), obs[-3000:]
    totals = re.search(r"Totals: Errors: (\d+); Warnings: (\d+)", out.stdout)
    assert totals and totals.group(1) == "0", out.stdout[-5000:]


@pytest.mark.skipif(shutil.which("stilts") is None, reason="stilts is not installed (apt-get install stilts)")
def test_datalinklint_finds_no_error(archive):
    did = next(r for r in sia(archive).search(pos=(10.0, 20.0, 0.01)) if r["obs_id"] == "a-g")["obs_publisher_did"]
    for ids in ([did], ["ivo://elsewhere/none"], [did, "ivo://elsewhere/none"]):
        query = "&".join("ID=" + requests.utils.quote(i, safe="") for i in ids)
        out = subprocess.run(["stilts", "datalinklint", f"votable={archive['root']}/datalink/links?{query}"],
                             capture_output=True, text=True, timeout=300)
        assert "Totals: Errors: 0; Warnings: 0" in out.stdout, out.stdout[-2000:]


def test_generated_images_show_their_objects(tmp_path):
    # `skyshard gen --images N`: images of the generated sky, each centred on an object that astropy finds at the
    # brightest pixel of a SODA cutout around it.
    out = run("gen", "--rows", "3000", "--out", str(tmp_path / "rel"), "--images", "6")
    assert "wrote 6 images" in out, out
    files = sorted((tmp_path / "rel" / "images").glob("*.fits"))
    assert [f.name[-6:] for f in files] == ["u.fits", "g.fits", "r.fits", "i.fits", "z.fits", "y.fits"]
    data = tmp_path / "data"
    run("ingest", "--data-dir", str(data), "--table", "sky.object", "--input", str(tmp_path / "rel/object.parquet"),
        "--ra", "ra", "--dec", "dec", "--id", "id", "--quiet")
    run("images", "add", "--data-dir", str(data), "--collection", "synthetic", str(tmp_path / "rel" / "images"))
    proc, url = start(["serve", "--data-dir", str(data), "--port", "0", "--workers", "1", "--jobs-dir",
                       str(tmp_path / "jobs")])
    try:
        root = url.replace("/tap", "")
        tap = pyvo.dal.TAPService(url)
        joined = tap.run_sync("SELECT i.obs_id, o.ra, o.dec, o.mag_g FROM ivoa.obscore AS i JOIN sky.object AS o "
                              "ON 1 = CONTAINS(POINT(o.ra, o.dec), CIRCLE(i.s_ra, i.s_dec, 0.0003))").to_table()
        assert len(joined) >= 6, joined
        row = joined[0]
        did = tap.run_sync(f"SELECT obs_publisher_did FROM ivoa.obscore WHERE obs_id = '{row['obs_id']}'") \
            .to_table()[0][0]
        r = requests.get(root + "/soda/sync", params={"ID": did, "CIRCLE": f"{row['ra']} {row['dec']} 0.003"})
        assert r.status_code == 200, r.text[:300]
        cut = tmp_path / "cut.fits"
        cut.write_bytes(r.content)
        with fits.open(cut) as hdul:
            image = hdul[0].data
            w = WCS(hdul[0].header)
            y, x = np.unravel_index(np.argmax(image), image.shape)
            ra, dec = w.all_pix2world([[x, y]], 0)[0]
            assert separation(ra, dec, row["ra"], row["dec"]) < 2 / 3600, (ra, dec, row["ra"], row["dec"])
            assert image.max() > np.median(image) + 10 * np.std(image[:5, :5]), "the object stands out"
    finally:
        proc.kill()
        proc.wait()


def preview_oracle(data, side=512):
    """A preview as the service documents it, computed by numpy: means of f x f blocks (f the smallest that brings
    the longer side to `side` or less; NaN left out), black and white at the 0.5th and 99.5th percentiles (nearest
    rank), asinh(10 t) / asinh(10) between, FITS row 1 at the bottom."""
    ny, nx = data.shape
    f = -(-max(nx, ny) // side)
    h, w = -(-ny // f), -(-nx // f)
    pad = np.full((h * f, w * f), np.nan)
    pad[:ny, :nx] = data
    blocks = pad.reshape(h, f, w, f)
    good = np.isfinite(blocks)
    counts = good.sum(axis=(1, 3))
    means = np.where(counts > 0, np.where(good, blocks, 0).sum(axis=(1, 3)) / np.maximum(counts, 1), np.nan)
    finite = np.sort(means[np.isfinite(means)])
    lo, hi = (finite[int(np.floor((len(finite) - 1) * p + 0.5))] for p in (0.005, 0.995))
    t = np.clip((means - lo) / (hi - lo), 0, 1)
    grey = np.floor(np.arcsinh(10 * t) / np.arcsinh(10) * 255 + 0.5)
    grey[~np.isfinite(means)] = 0
    return grey[::-1].astype(np.uint8)


def test_datalink_previews_are_the_images_stretched(archive, tmp_path):
    # Two images of a collection of their own, far from the others: a float image larger than a preview (so it is
    # averaged down) with a NaN patch and a bright star, and a scaled 16-bit one with BLANK pixels.
    from PIL import Image as Picture
    rng = np.random.default_rng(11)
    folder = tmp_path / "previews"
    folder.mkdir()
    sky = rng.normal(100, 5, (700, 1100)).astype(np.float32)
    sky[300:320, 500:530] += 5000
    sky[50:60, 50:80] = np.nan
    h = wcs_at(300.0, -60.0, 0).to_header()
    fits.PrimaryHDU(sky, header=h).writeto(folder / "big.fits")
    counts = rng.integers(-3000, 3000, (150, 200)).astype(np.int16)
    counts[10:20, 10:20] = -32768
    h = wcs_at(300.5, -60.0, 0).to_header()
    h["BSCALE"], h["BZERO"], h["BLANK"] = 0.5, 100.0, -32768
    hdu = fits.PrimaryHDU(counts, header=h)
    hdu.header["BSCALE"], hdu.header["BZERO"], hdu.header["BLANK"] = 0.5, 100.0, -32768
    hdu.writeto(folder / "scaled.fits")
    out = run("images", "add", "--data-dir", str(archive["data"]), "--collection", "previews", "--base-url",
              archive["root"], str(folder))
    assert "2 images added" in out, out
    tap = pyvo.dal.TAPService(archive["tap"])
    # The serving process picks the new images up on its own: waited for. Until its worker holds the new load, a
    # query over ivoa.obscore is refused as "unavailable" (about 2 s here: the czar publishes a load found in its
    # data directory before shipping it; noticed in issue 29's work, left for the placement work of issue 32).
    deadline = time.monotonic() + 120
    while True:
        try:
            rows = tap.run_sync("SELECT obs_publisher_did, obs_id FROM ivoa.obscore WHERE obs_collection = 'previews'")
        except pyvo.dal.DALQueryError as e:
            assert "is unavailable" in str(e), e
            rows = []
        if len(rows) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(rows) == 2, "the new images were not seen within 120 s"
    with fits.open(folder / "scaled.fits") as f:
        scaled = f[0].data.astype(float)  # astropy applies BSCALE, BZERO and BLANK (NaN)
    want_of = {"big": sky.astype(float), "scaled": scaled}
    for r in rows:
        links = pyvo.dal.adhoc.DatalinkResults.from_result_url(
            archive["root"] + "/datalink/links?ID=" + requests.utils.quote(str(r["obs_publisher_did"]), safe=""))
        preview = next(links.bysemantics("#preview", include_narrower=False))
        assert preview.content_type == "image/png"
        got = requests.get(preview.access_url)
        assert got.status_code == 200 and got.headers["Content-Type"] == "image/png", got.status_code
        picture = np.asarray(Picture.open(io.BytesIO(got.content)))
        want = preview_oracle(want_of[str(r["obs_id"])])
        assert picture.shape == want.shape, (r["obs_id"], picture.shape, want.shape)
        diff = np.abs(picture.astype(int) - want.astype(int))
        assert diff.max() <= 1, (r["obs_id"], diff.max(), np.argwhere(diff > 1)[:5])
        # Made once: kept beside the images and served again as it was.
        assert (archive["data"] / "images" / ".previews" / "previews" / f"{r['obs_id']}.png").is_file()
        assert requests.get(preview.access_url).content == got.content
    # 1100 x 700 pixels in blocks of 3: 367 x 234.
    assert preview_oracle(want_of["big"]).shape == (234, 367)
    # The preview of something that is not an image of the archive does not exist.
    for path in ("/images/previews/none.png", "/images/previews/..%2fbig.png", "/images/.previews/big.png"):
        assert requests.get(archive["root"] + path).status_code == 404, path
