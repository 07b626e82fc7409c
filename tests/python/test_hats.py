"""Every director table as a HATS collection over HTTP (issue 30, item 1), against a real `skyshard serve --auth
required`, read by lsdb and hats as a notebook would (`lsdb.open_catalog(URL, storage_options=...)` with a Bearer
token): the rows of every partition against DuckDB over the table's own chunk files, each row in the partition its
`_healpix_29` names, the margin against the overlap files, lsdb's cross-match of two independently loaded catalogs
against astropy's nearest-neighbour match, lsdb's push-down (columns, filters) evaluated by the service, byte ranges
as fsspec asks for them, and refusals (no token, an unknown table, a wrong path)."""

import glob
import os
import subprocess
import urllib.parse

import duckdb
import lsdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from astropy import units as u
from astropy.coordinates import SkyCoord, match_coordinates_sky

from skyshard_processes import SKYSHARD, run, start


ROWS = 20000


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    base = tmp_path_factory.mktemp("hats")
    run("gen", "--rows", str(ROWS), "--out", str(base / "rel"), "--seed", "5")
    data = base / "data"
    run("ingest", "--data-dir", str(data), "--table", "sky.object", "--input", str(base / "rel/object.parquet"),
        "--ra", "ra", "--dec", "dec", "--id", "id", "--chunk-rows", "2000", "--quiet")
    # The second catalog with its own chunk tree (a user's own release), as a HATS reader would get it.
    run("ingest", "--data-dir", str(data), "--table", "sky.xfree", "--input", str(base / "rel/xmatch.parquet"),
        "--ra", "ra", "--dec", "dec", "--id", "xid", "--chunk-rows", "700", "--quiet")
    run("user", "add", "--data-dir", str(data), "ada")
    token = run("token", "create", "--data-dir", str(data), "--user", "ada").strip()
    proc, url = start(["serve", "--data-dir", str(data), "--port", "0", "--workers", "2", "--auth", "required",
                       "--jobs-dir", str(base / "jobs")])
    root = url.removesuffix("/tap")
    yield {"root": root, "data": data, "token": token, "headers": {"Authorization": f"Bearer {token}"}}
    proc.kill()
    proc.wait()


def chunk_files(site, table, overlap=False):
    files = glob.glob(os.path.join(site["data"], "tables", table, "*", "chunks", "*.parquet"))
    return [f for f in files if f.endswith(".overlap.parquet") == overlap and not f.endswith("orphans.parquet")]


def duck(files, sql):
    con = duckdb.connect()
    con.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet({files!r})")
    return con.execute(sql).fetchall()


def open_catalog(site, table, **kw):
    return lsdb.open_catalog(f"{site['root']}/hats/{table}", storage_options={"headers": site["headers"]}, **kw)


def test_lsdb_reads_every_row_once_each_in_the_partition_its_index_names(site):
    cat = open_catalog(site, "sky.object")
    df = cat.compute()
    files = chunk_files(site, "sky.object")
    [(n, ids, hpx)] = duck(files, "SELECT COUNT(*), SUM(id), SUM(_hpx29 % 1000003) FROM t")
    assert n == ROWS and len(df) == n
    assert int(df["id"].sum()) == ids
    # The index is the stored depth-29 HEALPix index of each row (independently: the chunk files' own _hpx29).
    assert df.index.name == "_healpix_29"
    assert int(sum(int(h) % 1000003 for h in df.index)) == hpx
    assert df["id"].is_unique
    # Every partition holds only rows of its own cell.
    for pixel in cat.get_healpix_pixels()[:12]:
        part = cat.get_partition(pixel.order, pixel.pixel).compute()
        assert len(part) > 0
        assert all(int(h) >> (2 * (29 - pixel.order)) == pixel.pixel for h in part.index), pixel
    # The properties say what the data is.
    props = requests.get(f"{site['root']}/hats/sky.object/catalog/hats.properties", headers=site["headers"],
                         timeout=60).text
    assert f"hats_nrows={ROWS}" in props and "hats_col_ra=ra" in props and "dataproduct_type=object" in props


def test_the_margin_is_the_overlap_files(site):
    cat = open_catalog(site, "sky.object")
    assert cat.margin is not None
    margin = cat.margin.compute()
    overlap = chunk_files(site, "sky.object", overlap=True)
    [(n, ids)] = duck(overlap, "SELECT COUNT(*), SUM(id) FROM t")
    assert n > 0 and len(margin) == n and int(margin["id"].sum()) == ids
    threshold = float(cat.margin.hc_structure.catalog_info.margin_threshold)
    assert threshold > 1


def test_lsdb_cross_match_equals_astropy(site):
    left = open_catalog(site, "sky.object", columns=["id", "ra", "dec"])
    right = open_catalog(site, "sky.xfree", columns=["xid", "ra", "dec"])
    pairs = left.crossmatch(right, radius_arcsec=1.0, suffixes=("_o", "_x"), suffix_method="all_columns").compute()
    got = set(zip(pairs["id_o"].astype(int), pairs["xid_x"].astype(int)))
    # The oracle: astropy's nearest neighbour of each object among the second catalog, kept within 1".
    o = pq.read_table(glob.glob(os.path.join(site["data"], "..", "rel", "object.parquet"))[0]).to_pandas()
    x = pq.read_table(glob.glob(os.path.join(site["data"], "..", "rel", "xmatch.parquet"))[0]).to_pandas()
    idx, sep, _ = match_coordinates_sky(SkyCoord(o["ra"].values * u.deg, o["dec"].values * u.deg),
                                        SkyCoord(x["ra"].values * u.deg, x["dec"].values * u.deg))
    keep = sep.arcsec <= 1.0
    want = set(zip(o["id"].values[keep].astype(int), x["xid"].values[idx[keep]].astype(int)))
    assert len(want) > 1000
    assert got == want


def test_push_down_is_evaluated_by_the_service(site):
    cat = open_catalog(site, "sky.object")
    pixel = max(cat.get_healpix_pixels(), key=lambda p: p.order)
    url = (f"{site['root']}/hats/sky.object/catalog/dataset/Norder={pixel.order}/Dir={pixel.pixel // 10000 * 10000}"
           f"/Npix={pixel.pixel}.parquet")
    whole = pq.read_table(pa.BufferReader(requests.get(url, headers=site["headers"], timeout=60).content))
    query = urllib.parse.urlencode({"columns": "id,mag_g", "filters": "mag_g<20;mag_g>23,id!=0"})
    pushed = pq.read_table(pa.BufferReader(requests.get(f"{url}?{query}", headers=site["headers"], timeout=60).content))
    # Only the columns asked for, with the position and the index lsdb needs.
    assert pushed.column_names == ["id", "ra", "dec", "mag_g", "_healpix_29"]
    m = whole.column("mag_g").to_numpy(zero_copy_only=False)
    ids = whole.column("id").to_numpy()
    want = sorted(ids[(m < 20) | ((m > 23) & (ids != 0))].tolist())
    assert 0 < len(want) < len(ids)
    assert sorted(pushed.column("id").to_pylist()) == want
    # Through lsdb: the same rows as DuckDB over the chunk files.
    filtered = open_catalog(site, "sky.object", columns=["id", "mag_g"], filters=[("mag_g", "<", 20)]).compute()
    [(n,)] = duck(chunk_files(site, "sky.object"), "SELECT COUNT(*) FROM t WHERE mag_g < 20")
    assert n > 0 and len(filtered) == n
    # Terms it does not understand are left out (a wider answer, which lsdb filters again), never an error.
    odd = urllib.parse.urlencode({"filters": "mag_g<20;x'); DROP TABLE t; --<1,idin[1, 2]"})
    r = requests.get(f"{url}?{odd}", headers=site["headers"], timeout=60)
    assert r.status_code == 200 and pq.read_table(pa.BufferReader(r.content)).num_rows == len(ids)


def test_byte_ranges_come_from_the_same_bytes(site):
    cat = open_catalog(site, "sky.object")
    pixel = cat.get_healpix_pixels()[0]
    url = (f"{site['root']}/hats/sky.object/catalog/dataset/Norder={pixel.order}/Dir={pixel.pixel // 10000 * 10000}"
           f"/Npix={pixel.pixel}.parquet")
    h = site["headers"]
    whole = requests.get(url, headers=h, timeout=60).content
    head = requests.head(url, headers=h, timeout=60)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(whole)
    assert head.headers["Accept-Ranges"] == "bytes"
    for spec, want in (("bytes=0-3", whole[:4]), ("bytes=-8", whole[-8:]), ("bytes=100-", whole[100:]),
                       ("bytes=10-19", whole[10:20])):
        r = requests.get(url, headers={**h, "Range": spec}, timeout=60)
        assert r.status_code == 206 and r.content == want, spec
        assert r.headers["Content-Range"].endswith(f"/{len(whole)}")
    r = requests.get(url, headers={**h, "Range": f"bytes={len(whole) + 10}-"}, timeout=60)
    assert r.status_code == 416 and r.headers["Content-Range"] == f"bytes */{len(whole)}"
    # Several ranges are not taken: the whole file, as RFC 9110 allows.
    r = requests.get(url, headers={**h, "Range": "bytes=0-1,5-6"}, timeout=60)
    assert r.status_code == 200 and r.content == whole


def test_refusals_say_what_is_wrong(site):
    root, h = site["root"], site["headers"]
    r = requests.get(f"{root}/hats/sky.object/collection.properties", timeout=60)
    assert r.status_code == 401 and "needs identity" in r.text
    assert requests.get(f"{root}/hats/sky.object/collection.properties", headers=h, timeout=60).status_code == 200
    r = requests.get(f"{root}/hats/sky.nothing/collection.properties", headers=h, timeout=60)
    assert r.status_code == 404 and "no table sky.nothing" in r.text
    # The collection's root is not itself a catalog (hats probes for one there first).
    for path in ("hats.properties", "properties", "catalog/point_map.fits", "catalog/dataset/Norder=1/Dir=0/Npix=99.parquet",
                 "catalog/dataset/Norder=4/Dir=10000/Npix=5.parquet", "other/hats.properties"):
        r = requests.get(f"{root}/hats/sky.object/{path}", headers=h, timeout=60)
        assert r.status_code == 404, (path, r.status_code, r.text[:200])
    # A cell that is not one of the table's partitions (a child of one) is not there (hats reads
    # partition_info.csv, never guesses).
    listed = requests.get(f"{root}/hats/sky.object/catalog/partition_info.csv", headers=h, timeout=60).text
    order, pixel = map(int, listed.split()[1].split(","))
    r = requests.get(f"{root}/hats/sky.object/catalog/dataset/Norder={order + 1}/Dir=0/Npix={pixel * 4}.parquet",
                     headers=h, timeout=60)
    assert r.status_code == 404 and "no " in r.text


def test_a_hats_catalog_loads_with_its_own_partitioning(site, tmp_path):
    """HATS in (issue 30, item 2): a catalog written by lsdb's to_hats loads with `ingest --format hats`, keeps its
    partitions as the table's chunks, answers ADQL as DuckDB does over the source file, and cross-matches chunk by
    chunk with a table of another chunk tree as astropy says."""
    from astropy.coordinates import search_around_sky

    from skyshard_processes import wait_until

    rel = site["data"].parent / "rel"
    source = pd_read(rel / "object.parquet")
    hats_dir = tmp_path / "hats"
    lsdb.from_dataframe(source, ra_column="ra", dec_column="dec", catalog_name="obj", lowest_order=1,
                        highest_order=6, partition_rows=700).to_hats(str(hats_dir))
    theirs = {tuple(map(int, line.split(",")[:2]))
              for line in (hats_dir / "obj" / "partition_info.csv").read_text().split()[1:]}
    assert len({o for o, _ in theirs}) > 1, "a partitioning of more than one order"
    out = run("ingest", "--data-dir", str(site["data"]), "--table", "sky.hobj", "--input", str(hats_dir),
              "--format", "hats", "--id", "id", "--quiet")
    assert f"{len(source)} rows in {len(theirs)} chunks" in out, out
    h = site["headers"]
    tap = site["root"] + "/tap/sync"

    def ask(q):
        r = requests.post(tap, data={"LANG": "ADQL", "QUERY": q, "RESPONSEFORMAT": "csv"}, headers=h, timeout=120)
        return r.status_code, r.text

    wait_until("the service sees sky.hobj", lambda: ask("SELECT COUNT(*) AS n FROM sky.hobj WHERE id >= 0")[0] == 200)
    status, body = ask("SELECT COUNT(*) AS n, SUM(id) AS s FROM sky.hobj WHERE mag_g < 21")
    con = duckdb.connect()
    n, s = con.execute(f"SELECT COUNT(*), SUM(id) FROM read_parquet('{rel / 'object.parquet'}') WHERE mag_g < 21").fetchone()
    assert status == 200 and n > 0 and body.split()[1] == f"{n},{s}", body
    # Its partitions are the table's chunks (served back as the same HATS partitions).
    ours = requests.get(f"{site['root']}/hats/sky.hobj/catalog/partition_info.csv", headers=h, timeout=60).text
    assert {tuple(map(int, line.split(","))) for line in ours.split()[1:]} == theirs
    # A cross-match with a table of another chunk tree, every pair within 1": astropy's search_around_sky.
    status, body = ask("SELECT COUNT(*) AS n FROM sky.hobj AS o JOIN sky.xfree AS x "
                       "ON 1 = CONTAINS(POINT('ICRS', o.ra, o.dec), CIRCLE('ICRS', x.ra, x.dec, 1.0/3600))")
    x = pd_read(rel / "xmatch.parquet")
    i, _, _, _ = search_around_sky(SkyCoord(source["ra"].values * u.deg, source["dec"].values * u.deg),
                                   SkyCoord(x["ra"].values * u.deg, x["dec"].values * u.deg), 1 * u.arcsec)
    assert status == 200 and len(i) > 1000 and body.split()[1] == str(len(i)), body
    # What is not a table is refused, saying why.
    for bad, message in ((hats_dir / "obj_5arcs", "dataproduct_type is margin"),
                         (rel / "object.parquet", "not a directory")):
        r = subprocess.run([SKYSHARD, "ingest", "--data-dir", str(site["data"]), "--table", "sky.bad", "--input",
                            str(bad), "--format", "hats", "--id", "id", "--quiet"], capture_output=True, text=True)
        assert r.returncode != 0 and message in r.stderr, r.stderr


def pd_read(path):
    return pq.read_table(path).to_pandas()
