"""`skyshard ingest` of FITS and VOTable files written by astropy (an independent writer): every row arrives with
its values, NULLs and column metadata, whatever the serialization (FITS binary table, VOTable TABLEDATA, BINARY,
BINARY2), and a broken file is refused with its name."""

import subprocess

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.io import fits
from astropy.io.votable import from_table
from astropy.table import MaskedColumn, Table

from skyshard_processes import SKYSHARD

N = 5000


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(7)
    t = Table()
    t["id"] = np.arange(N, dtype=np.int64)
    t["ra"] = rng.uniform(0, 360, N)
    t["dec"] = np.degrees(np.arcsin(rng.uniform(-1, 1, N)))
    t["ra"][:4] = [0.0, 359.9999999, 180.0, 10.0]
    t["dec"][:4] = [90.0, -90.0, 0.0, -45.0]
    t["mag"] = MaskedColumn(rng.uniform(5, 20, N).astype(np.float32), mask=np.arange(N) % 17 == 0)
    t["flags"] = rng.integers(0, 30000, N).astype(np.int16)
    t["band"] = rng.choice(["g", "r", "i", "zz"], N)
    t["ra"].unit = "deg"
    t["ra"].description = "Right ascension (ICRS)"
    t["dec"].unit = "deg"
    t["mag"].unit = "mag"
    return t


def ingest(data, path, table, fmt=None):
    cmd = [SKYSHARD, "ingest", "--data-dir", str(data), "--table", table, "--input", str(path),
           "--ra", "ra", "--dec", "dec", "--id", "id", "--chunk-rows", "1000", "--quiet"]
    if fmt:
        cmd += ["--format", fmt]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def loaded(data, table):
    """Every row of a loaded table (chunk files, not overlap copies), sorted by id."""
    tdir = data / "tables" / table
    (load,) = list(tdir.iterdir())
    parts = [pq.read_table(p) for p in sorted((load / "chunks").glob("*.parquet")) if "overlap" not in p.name]
    return pa.concat_tables(parts).drop(["_hpx29"]).sort_by("id")


def columns(data, table):
    out = subprocess.run([SKYSHARD, "tables", "--data-dir", str(data), "--table", table], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return {line.split("\t")[0]: line.split("\t") for line in out.stdout.splitlines()}


def check_same(t, got):
    assert got.num_rows == N
    assert got["id"].to_pylist() == list(range(N))
    np.testing.assert_array_equal(got["ra"].to_numpy(), np.asarray(t["ra"]))
    np.testing.assert_array_equal(got["dec"].to_numpy(), np.asarray(t["dec"]))
    mag = got["mag"].to_pylist()
    for i in range(N):
        if t["mag"].mask[i]:
            assert mag[i] is None, i
        else:
            assert mag[i] == pytest.approx(float(t["mag"][i]), rel=1e-6)
    assert got["flags"].to_pylist() == [int(v) for v in t["flags"]]
    assert [s.strip() for s in got["band"].to_pylist()] == list(t["band"])


def test_fits(tmp_path, table):
    path = tmp_path / "cat.fits"
    table.write(path, format="fits")
    out = ingest(tmp_path / "data", path, "cat.fits_stars")
    assert out.returncode == 0, out.stderr
    check_same(table, loaded(tmp_path / "data", "cat.fits_stars"))
    cols = columns(tmp_path / "data", "cat.fits_stars")
    assert cols["ra"][2] == "deg" and cols["mag"][2] == "mag"


@pytest.mark.parametrize("serialization", ["tabledata", "binary", "binary2"])
def test_votable(tmp_path, table, serialization):
    path = tmp_path / "cat.vot"
    vot = from_table(table)
    vot.get_first_table().format = serialization
    vot.to_xml(str(path))
    out = ingest(tmp_path / "data", path, "cat.vot_stars")
    assert out.returncode == 0, out.stderr
    check_same(table, loaded(tmp_path / "data", "cat.vot_stars"))
    cols = columns(tmp_path / "data", "cat.vot_stars")
    assert cols["ra"][2] == "deg"
    assert cols["ra"][4] == "Right ascension (ICRS)"


def test_broken_files_are_refused_by_name(tmp_path, table):
    path = tmp_path / "cut.fits"
    table.write(path, format="fits")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    out = ingest(tmp_path / "data", path, "cat.cut")
    assert out.returncode != 0 and "cut.fits" in out.stderr and "ends before" in out.stderr, out.stderr
    vot = tmp_path / "bad.xml"
    vot.write_text("<VOTABLE><RESOURCE><TABLE><FIELD name='ra' datatype='double'/><DATA><TABLEDATA><TR><TD>x</TD></TR>")
    out = ingest(tmp_path / "data", vot, "cat.bad", "votable")
    assert out.returncode != 0 and "bad.xml" in out.stderr and "row 1" in out.stderr, out.stderr
    out = subprocess.run([SKYSHARD, "tables", "--data-dir", str(tmp_path / "data")], capture_output=True, text=True)
    assert out.stdout == ""
