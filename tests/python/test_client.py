"""The Python client (`python/`, `import skyshard`) against a real `skyshard serve --auth optional --flight-sql-port 0`,
as a notebook uses it: ADQL into Arrow and pandas over Flight SQL and over TAP (each answer against DuckDB over the
table's own chunk files), lsdb over the HATS collections, user tables saved from pandas, Arrow and lsdb and read back
by ADQL (and invisible to another user, through ADQL and /hats), the WebDAV file space, async jobs started through
pyvo, and refusals as `ServiceError`s with the service's status and message."""

import glob
import os
import subprocess
import time

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import requests

import skyshard
from skyshard_processes import SKYSHARD, haversine, run, wait_until

ROWS = 3000


def stop(proc):
    proc.kill()
    proc.wait()
    proc.stdout.close()


def serve(data, base, name, *extra):
    """A service with Flight SQL: (process, root URL, Flight SQL URI)."""
    proc = subprocess.Popen(
        [SKYSHARD, "serve", "--data-dir", str(data), "--port", "0", "--workers", "2", "--auth", "optional",
         "--flight-sql-port", "0", "--jobs-dir", str(base / f"jobs-{name}"), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    tap = uri = None
    deadline = time.monotonic() + 60
    while tap is None or uri is None:
        assert time.monotonic() < deadline, "the service printed no addresses"
        line = proc.stdout.readline()
        assert line or proc.poll() is None, "the service ended"
        if "TAP service at " in line:
            tap = line.split("TAP service at ")[1].split()[0]
        if "Flight SQL at " in line:
            uri = line.split("Flight SQL at ")[1].split()[0]
    return proc, tap.removesuffix("/tap"), uri


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    base = tmp_path_factory.mktemp("client")
    run("gen", "--rows", str(ROWS), "--out", str(base / "rel"), "--seed", "11")
    data = base / "data"
    run("ingest", "--data-dir", str(data), "--table", "sky.object", "--input", str(base / "rel/object.parquet"),
        "--ra", "ra", "--dec", "dec", "--id", "id", "--chunk-rows", "500", "--quiet")
    for user in ("ada", "bob"):
        run("user", "add", "--data-dir", str(data), user)
    tokens = {u: run("token", "create", "--data-dir", str(data), "--user", u).strip() for u in ("ada", "bob")}
    # A replaced load's files go at once (not after the 60 s default): the tests save one table several times.
    proc, url, uri = serve(data, base, "main", "--replaced-load-linger", "0")
    yield {"url": url, "flight": uri, "data": data, "base": base, "tokens": tokens}
    stop(proc)


def connect(site, user, over="tap"):
    """`user`'s client (None: anonymous), over Flight SQL or TAP."""
    token = site["tokens"][user] if user else ""
    return skyshard.connect(site["url"], token=token, flight=site["flight"] if over == "flight" else "",
                            timeout=120)


def test_the_flight_sql_port_is_found_from_the_http_url(site):
    # No address given: the client asks /api/v1/me, which names the port, and queries over Flight SQL.
    with skyshard.connect(site["url"], token=site["tokens"]["ada"], timeout=120) as client:
        got = client.query_arrow("SELECT COUNT(*) AS n, SUM(id) AS s FROM sky.object WHERE mag_g < 20")
        assert client._flight is not None and client._flight.uri.endswith(site["flight"].rsplit(":", 1)[1])
    n, total = duck(site, "SELECT COUNT(*), SUM(id) FROM t WHERE mag_g < 20").fetchone()
    assert n > 0 and got.column("n")[0].as_py() == n and got.column("s")[0].as_py() == total


@pytest.fixture(params=["flight", "tap"])
def ada(site, request):
    with connect(site, "ada", request.param) as client:
        yield client


def chunk_files(site, table):
    files = glob.glob(os.path.join(site["data"], "tables", table, "*", "chunks", "*.parquet"))
    return [f for f in files if not f.endswith((".overlap.parquet", "orphans.parquet"))]


def duck(site, sql, table="sky.object"):
    """`sql` over the view `t` of the table's own chunk files (each row once): the independent answer."""
    con = duckdb.connect()
    con.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet({chunk_files(site, table)!r})")
    return con.execute(sql)


def test_query_arrow_equals_duckdb(site, ada):
    got = ada.query_arrow("SELECT id, ra, dec, mag_g FROM sky.object WHERE mag_g < 22")
    assert isinstance(got, pa.Table)
    assert got.column_names == ["id", "ra", "dec", "mag_g"]
    assert got.schema.field("id").type == pa.int64() and got.schema.field("ra").type == pa.float64()
    want = duck(site, "SELECT id, ra, dec, mag_g FROM t WHERE mag_g < 22 ORDER BY id").fetchall()
    assert 100 < len(want) < ROWS
    assert sorted(zip(*(got.column(c).to_pylist() for c in got.column_names))) == want


def test_query_pandas_equals_duckdb(site, ada):
    a, d, r = 120.0, 20.0, 25.0
    got = ada.query("SELECT FLOOR(mag_g) AS m, COUNT(*) AS n, MIN(id) AS lo, MAX(dec) AS north FROM sky.object "
                    f"WHERE CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {a}, {d}, {r})) = 1 GROUP BY FLOOR(mag_g)")
    assert isinstance(got, pd.DataFrame) and list(got.columns) == ["m", "n", "lo", "north"]
    want = duck(site, f"SELECT FLOOR(mag_g) AS m, COUNT(*) AS n, MIN(id) AS lo, MAX(dec) AS north FROM t "
                      f"WHERE {haversine('ra', 'dec', a, d)} <= {r} GROUP BY 1 ORDER BY 1").df()
    assert want["n"].sum() > 50
    got = got.sort_values("m").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


def test_open_catalog_compute_equals_duckdb(site):
    ada = connect(site, "ada")
    cat = ada.open_catalog("sky.object", columns=["id", "ra", "dec", "mag_g"])
    df = cat.compute()
    want = duck(site, "SELECT id, ra, dec, mag_g, _hpx29 FROM t ORDER BY id").fetchall()
    assert len(want) == ROWS
    got = sorted(zip(df["id"], df["ra"], df["dec"], df["mag_g"], (int(h) for h in df.index)))
    assert got == [tuple(w) for w in want]
    # A filter pushed down: the rows DuckDB keeps.
    bright = ada.open_catalog("sky.object", columns=["id", "mag_g"], filters=[("mag_g", "<", 21)]).compute()
    assert sorted(bright["id"]) == [w[0] for w in duck(site, "SELECT id FROM t WHERE mag_g < 21 ORDER BY id").fetchall()]


def targets(n, seed):
    """A frame made here, not by the service: the oracle of a save and read-back."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "tid": np.arange(1000, 1000 + n, dtype=np.int64),
        "ra": rng.uniform(0, 360, n),
        "dec": np.degrees(np.arcsin(rng.uniform(-1, 1, n))),
        "flux": rng.uniform(0, 1, n).astype(np.float32),
        "label": [f"t{i}" for i in range(n)],
        "good": rng.uniform(0, 1, n) < 0.5,
    })


def read_back(client, name):
    return client.query(f"SELECT tid, ra, dec, flux, label, good FROM {name} ORDER BY tid").reset_index(drop=True)


def test_save_table_round_trip_and_privacy(site, ada):
    bob = connect(site, "bob")
    frame = targets(400, 1)
    name = ada.save_table(frame, "night", ra="ra", dec="dec", id="tid", if_exists="replace")
    assert name == "user_ada.night"
    pd.testing.assert_frame_equal(read_back(ada, name), frame, check_dtype=False)
    # With positions and an id it is partitioned like the catalogs.
    kind = ada.query(f"SELECT column_name, ucd FROM TAP_SCHEMA.columns WHERE table_name = '{name}'")
    assert dict(zip(kind["column_name"], kind["ucd"]))["ra"] == "pos.eq.ra;meta.main"
    # Refused while it exists, unless told; appended rows are matched by name.
    with pytest.raises(skyshard.ServiceError) as refused:
        ada.save_table(frame, "night")
    assert refused.value.status == 409 and "exists" in refused.value.message
    more = targets(50, 2)
    more["tid"] += 10_000
    ada.save_table(more[["label", "tid", "ra", "dec", "flux", "good"]], "night", if_exists="append")
    pd.testing.assert_frame_equal(read_back(ada, name), pd.concat([frame, more], ignore_index=True),
                                  check_dtype=False)
    ada.save_table(frame.head(10), "night", ra="ra", dec="dec", id="tid", if_exists="replace")
    pd.testing.assert_frame_equal(read_back(ada, name), frame.head(10), check_dtype=False)
    # The rows' trip through the file space left nothing there.
    assert not [f for f in ada.files.ls("", detail=False) if ".skyshard-save" in f]
    # Another user: no such table, through ADQL, the table list and its HATS collection.
    with pytest.raises(skyshard.ServiceError) as hidden:
        bob.query(f"SELECT COUNT(*) AS n FROM {name}")
    assert hidden.value.status == 400 and "not found" in hidden.value.message, hidden.value
    assert not bob.table_exists(name) and ada.table_exists(name)
    with pytest.raises(skyshard.ServiceError) as hidden:
        bob.open_catalog(name)
    assert hidden.value.status == 404 and f"no table {name}" in hidden.value.message, hidden.value
    with pytest.raises(skyshard.ServiceError) as refused:
        bob.save_table(frame, name, if_exists="append")
    assert refused.value.status == 403 and "that schema is user ada's" in refused.value.message, refused.value
    # Its owner reads it through lsdb: every row once.
    df = ada.open_catalog(name).compute()
    assert sorted(df["tid"]) == list(frame["tid"].head(10))
    ada.drop_table(name)
    assert not ada.table_exists(name)


def test_a_table_without_positions_is_saved_replicated_and_is_no_hats_catalog(site):
    ada = connect(site, "ada")
    frame = targets(30, 3).drop(columns=["ra", "dec"])
    name = ada.save_table(frame, "plain", if_exists="replace")
    got = ada.query(f"SELECT tid, flux, label, good FROM {name} ORDER BY tid")
    pd.testing.assert_frame_equal(got, frame, check_dtype=False)
    with pytest.raises(skyshard.ServiceError) as refused:
        ada.open_catalog(name)
    assert refused.value.status == 404 and "no positions" in refused.value.message, refused.value
    ada.drop_table(name)


def test_an_arrow_result_keeps_its_ucds_and_an_lsdb_catalog_saves_as_one(site):
    with connect(site, "ada", "flight") as ada:
        saves_an_arrow_result_and_an_lsdb_catalog(site, ada)


def saves_an_arrow_result_and_an_lsdb_catalog(site, ada):
    # A query result carries the catalog's units and UCDs: saved as it is, it is partitioned on its positions.
    top = ada.query_arrow("SELECT TOP 300 id, ra, dec, mag_g FROM sky.object ORDER BY id")
    name = ada.save_table(top, "first", if_exists="replace")
    want = duck(site, "SELECT id, ra, dec, mag_g FROM t ORDER BY id LIMIT 300").fetchall()
    got = ada.open_catalog(name).compute()
    assert sorted(zip(got["id"], got["ra"], got["dec"], got["mag_g"])) == want
    ucds = ada.query(f"SELECT column_name, unit FROM TAP_SCHEMA.columns WHERE table_name = '{name}'")
    assert dict(zip(ucds["column_name"], ucds["unit"]))["ra"] == "deg"
    ada.drop_table(name)
    # An lsdb Catalog (its ra and dec known to it), saved with its id.
    cat = ada.open_catalog("sky.object", columns=["id", "ra", "dec", "mag_g"], filters=[("mag_g", "<", 21)])
    name = ada.save_table(cat, "bright", id="id", if_exists="replace")
    got = ada.query(f"SELECT id, ra, dec, mag_g FROM {name} ORDER BY id")
    want = duck(site, "SELECT id, ra, dec, mag_g FROM t WHERE mag_g < 21 ORDER BY id").fetchall()
    assert len(want) > 10
    assert list(got.itertuples(index=False, name=None)) == want
    assert len(ada.open_catalog(name).compute()) == len(want)
    ada.drop_table(name)


def test_files_put_get_ls(site, tmp_path):
    ada = connect(site, "ada")
    payload = np.random.default_rng(4).bytes(300_000)
    (tmp_path / "blob.bin").write_bytes(payload)
    fs = ada.files
    fs.put(str(tmp_path / "blob.bin"), "runs/blob.bin")
    listed = {os.path.basename(e["name"]): e for e in fs.ls("runs", detail=True)}
    assert listed["blob.bin"]["size"] == len(payload) and listed["blob.bin"]["type"] == "file"
    fs.get("runs/blob.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == payload
    with fs.open("runs/notes.txt", "wb") as f:
        f.write(b"observing log\n")
    # Independently of the client: the bytes as the service serves them to a plain HTTP GET.
    raw = requests.get(f"{site['url']}/files/ada/runs/notes.txt", timeout=60,
                       headers={"Authorization": f"Bearer {site['tokens']['ada']}"})
    assert raw.status_code == 200 and raw.content == b"observing log\n"
    assert sorted(fs.ls("runs", detail=False)) == ["runs/blob.bin", "runs/notes.txt"]
    with pytest.raises(FileNotFoundError):
        fs.cat("runs/missing.txt")
    # Past the files quota the service's refusal (507) is a ServiceError with its message.
    run("user", "quota", "--data-dir", str(site["data"]), "ada", "--files-mb", "1")
    try:
        with pytest.raises(skyshard.ServiceError) as refused:
            fs.pipe("runs/big.bin", bytes(2_000_000))
        assert refused.value.status == 507 and "quota" in refused.value.message, refused.value
    finally:
        run("user", "quota", "--data-dir", str(site["data"]), "ada", "--files-mb", "0")
    fs.rm("runs", recursive=True)
    assert not fs.exists("runs")
    # Files need a named user.
    with pytest.raises(skyshard.ServiceError) as refused:
        connect(site, None).files
    assert refused.value.status == 401


def test_jobs_lists_an_async_job_started_through_pyvo(site):
    ada, bob = connect(site, "ada"), connect(site, "bob")
    query = "SELECT id, mag_g FROM sky.object WHERE mag_g > 24 ORDER BY id"
    started = ada.tap.submit_job(query)
    started.run()
    started.wait(phases={"COMPLETED", "ERROR", "ABORTED"}, timeout=120)
    [job] = [j for j in ada.jobs() if j.id == started.job_id]
    assert job.phase == "COMPLETED" and job.query == query and job.created is not None
    want = duck(site, "SELECT id, mag_g FROM t WHERE mag_g > 24 ORDER BY id").fetchall()
    assert len(want) > 10 and job.rows == len(want)
    got = job.result()
    assert list(zip(got["id"], got["mag_g"])) == [(i, pytest.approx(m, rel=1e-6)) for i, m in want]
    assert ada.job(job.id).phase == "COMPLETED"
    # Someone else's job: not in their list, and refused by id.
    assert job.id not in {j.id for j in bob.jobs()}
    with pytest.raises(skyshard.ServiceError) as refused:
        bob.job(job.id)
    assert refused.value.status == 403, refused.value


def test_refusals_are_service_errors(site, ada):
    with pytest.raises(skyshard.ServiceError) as bad:
        ada.query("SELECT ra FROM sky.object WHER dec > 0")
    assert bad.value.status == 400 and "1:32: expected end of query, found 'dec'" in bad.value.message, bad.value
    with pytest.raises(skyshard.ServiceError) as bad:
        ada.query_arrow("SELECT no_such_column FROM sky.object")
    assert bad.value.status == 400 and "1:8: column no_such_column not found" in bad.value.message, bad.value
    over = "flight" if ada._flight else "tap"
    with skyshard.connect(site["url"], token="sky_0000000000000000_" + "0" * 64,
                          flight=site["flight"] if over == "flight" else "", timeout=60) as wrong:
        with pytest.raises(skyshard.ServiceError) as unknown:
            wrong.query("SELECT TOP 1 id FROM sky.object")
        assert unknown.value.status == 401 and "not valid" in unknown.value.message, unknown.value
        with pytest.raises(skyshard.ServiceError) as unknown:
            wrong.whoami()
        assert unknown.value.status == 401
    with pytest.raises(skyshard.ServiceError) as anonymous:
        connect(site, None, over).save_table(targets(3, 5), "x")
    assert anonymous.value.status == 401


def test_a_result_past_the_row_limit_is_refused_either_way(site):
    proc, url, uri = serve(site["data"], site["base"], "limited", "--max-maxrec", "1000")
    try:
        for flight in (uri, ""):
            with skyshard.connect(url, token=site["tokens"]["ada"], flight=flight, timeout=60) as client:
                assert client.query_arrow("SELECT TOP 1000 id FROM sky.object").num_rows == 1000
                with pytest.raises(skyshard.ServiceError) as cut:
                    client.query_arrow("SELECT id FROM sky.object")
            assert cut.value.status == 400 and "more than 1000 rows" in cut.value.message, cut.value
    finally:
        stop(proc)


def test_connect_reads_the_environment_and_the_token_file(site, monkeypatch, tmp_path):
    monkeypatch.setenv("SKYSHARD_URL", site["url"] + "/tap")
    monkeypatch.setenv("SKYSHARD_TOKEN", site["tokens"]["bob"])
    monkeypatch.setenv("SKYSHARD_FLIGHT", site["flight"])
    with skyshard.connect() as client:
        assert client.whoami()["user"] == "bob" and client._flight is not None
        assert client.query("SELECT COUNT(*) AS n FROM sky.object WHERE ra >= 0")["n"][0] == ROWS
    monkeypatch.delenv("SKYSHARD_TOKEN")
    monkeypatch.delenv("SKYSHARD_FLIGHT")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert skyshard.token_file() == tmp_path / "skyshard" / "token"
    assert skyshard.connect().whoami()["anonymous"] is True
    (tmp_path / "skyshard").mkdir()
    (tmp_path / "skyshard" / "token").write_text(site["tokens"]["ada"] + "\n")
    me = skyshard.connect().whoami()
    assert me["user"] == "ada" and "write:tables" in me["scopes"]
    assert skyshard.connect(token="").whoami()["anonymous"] is True


def test_a_table_appended_to_within_the_linger_keeps_its_rows(site, tmp_path):
    data = tmp_path / "data"
    run("ingest", "--data-dir", str(data), "--table", "sky.object", "--input", str(site["base"] / "rel/object.parquet"),
        "--ra", "ra", "--dec", "dec", "--id", "id", "--chunk-rows", "500", "--quiet")
    run("user", "add", "--data-dir", str(data), "ada")
    token = run("token", "create", "--data-dir", str(data), "--user", "ada").strip()
    proc, url, _ = serve(data, tmp_path, "linger", "--replaced-load-linger", "1")
    try:
        ada = skyshard.connect(url, token=token, timeout=60)
        first, more = targets(20, 6), targets(5, 7)
        more["tid"] += 10_000
        name = ada.save_table(first, "twice")
        ada.save_table(more, "twice", if_exists="append")
        # The first load's cleanup ran (its files are gone; before the fix it removed the second load's instead).
        loads = data / "tables" / name
        wait_until("the first load's files removed by its cleanup", lambda: len(list(loads.iterdir())) == 1)
        pd.testing.assert_frame_equal(read_back(ada, name), pd.concat([first, more], ignore_index=True),
                                      check_dtype=False)
    finally:
        stop(proc)
