"""User tables against a real `skyshard serve --auth optional`, through the clients that call them: pyvo with
`activate_features('cadc-tb-upload')` (create_table, load_table in CSV, TSV and FITS, create_index, remove_table)
and the `cadc-tap` command line; privacy (another user, an anonymous caller: the table does not exist for them),
sharing with a group and with everyone; refusals (someone else's schema, a catalog schema, bad rows, a column the
table lacks, the table quota) that leave the table as it was; a restart. Cross-match answers are checked against
numpy."""

import io
import os
import shutil
import subprocess
import urllib.parse

import numpy as np
import pytest
import pyvo
import requests
from astropy.table import Table
from pyvo.utils import prototype

from skyshard_processes import run, start

ROWS = 3000

DEFINITION = """<vosi:table xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0"
  xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <name>{name}</name>
  <description>targets for the night</description>
  <column><name>tid</name><ucd>meta.id;meta.main</ucd><dataType xsi:type="vs:TAPType">BIGINT</dataType></column>
  <column><name>ra</name><unit>deg</unit><ucd>pos.eq.ra;meta.main</ucd>
    <dataType xsi:type="vs:TAPType">DOUBLE</dataType></column>
  <column><name>dec</name><unit>deg</unit><ucd>pos.eq.dec;meta.main</ucd>
    <dataType xsi:type="vs:TAPType">DOUBLE</dataType></column>
  <column><name>label</name><description>what it is</description>
    <dataType xsi:type="vs:VOTableType" arraysize="*">char</dataType></column>
</vosi:table>"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    base = tmp_path_factory.mktemp("usertables")
    run("gen", "--rows", str(ROWS), "--out", str(base / "rel"))
    data = base / "data"
    run("ingest", "--data-dir", str(data), "--table", "sky.object", "--input", str(base / "rel/object.parquet"),
        "--ra", "ra", "--dec", "dec", "--id", "id", "--chunk-rows", "500", "--quiet")
    for name, groups in (("ada", ["optics"]), ("bob", []), ("cy", ["optics"])):
        run("user", "add", "--data-dir", str(data), name, *sum((["--group", g] for g in groups), []))
    tokens = {n: run("token", "create", "--data-dir", str(data), "--user", n).strip() for n in ("ada", "bob", "cy")}
    proc, url = serve(data, base)
    catalog = Table.read(base / "rel/object.parquet")
    site = {"url": url, "data": data, "base": base, "tokens": tokens, "catalog": catalog, "proc": proc}
    yield site
    # The service the tests restarted last, not the first one.
    site["proc"].kill()
    site["proc"].wait()


def serve(data, base):
    return start(["serve", "--data-dir", str(data), "--port", "0", "--workers", "2", "--auth", "optional",
                  "--jobs-dir", str(base / "jobs")])


def session(token):
    s = requests.Session()
    if token:
        s.headers["Authorization"] = f"Bearer {token}"
    return s


def service(site, user):
    return pyvo.dal.TAPService(site["url"], session=session(site["tokens"].get(user)))


def matches_within(targets, catalog, arcsec):
    """Pairs (target, catalog row) closer than `arcsec`, by numpy: the independent answer."""
    def xyz(ra, dec):
        ra, dec = np.radians(np.asarray(ra, float)), np.radians(np.asarray(dec, float))
        return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], 1)
    return int((xyz(targets["ra"], targets["dec"]) @ xyz(catalog["ra"], catalog["dec"]).T
                >= np.cos(np.radians(arcsec / 3600))).sum())


@pytest.fixture()
def features():
    prototype.activate_features("cadc-tb-upload")
    yield
    prototype.deactivate_features("cadc-tb-upload")


def csv_bytes(table):
    out = io.StringIO()
    table.write(out, format="ascii.csv")
    return out.getvalue().encode()


def targets(catalog, start_row, n, jitter_arcsec=0.3):
    rng = np.random.default_rng(start_row)
    rows = catalog[start_row:start_row + n]
    return Table({"tid": np.arange(start_row, start_row + n, dtype=np.int64),
                  "ra": (np.asarray(rows["ra"]) + rng.uniform(-1, 1, n) * jitter_arcsec / 3600) % 360,
                  "dec": np.clip(np.asarray(rows["dec"]) + rng.uniform(-1, 1, n) * jitter_arcsec / 3600, -90, 90),
                  "label": [f"t{i}" for i in range(start_row, start_row + n)]})


def test_pyvo_creates_loads_indexes_queries_and_removes_a_table(site, features, tmp_path):
    tap = service(site, "ada")
    name = "user_ada.targets"
    tap.create_table(name, io.BytesIO(DEFINITION.format(name=name).encode()))
    # CSV, then TSV, then FITS: each load adds its rows.
    first, second, third = (targets(site["catalog"], s, 150) for s in (0, 500, 1000))
    csv, tsv, fits = (tmp_path / "t.csv", tmp_path / "t.tsv", tmp_path / "t.fits")
    first.write(csv, format="ascii.csv")
    second.write(tsv, format="ascii.tab")
    third.write(fits)
    with open(csv, "rb") as f:
        tap.load_table(name, f, format="csv")
    with open(tsv, "rb") as f:
        tap.load_table(name, f, format="tsv")
    with open(fits, "rb") as f:
        tap.load_table(name, f, format="FITSTable")
    got = tap.run_sync(f"SELECT tid, label FROM {name} ORDER BY tid").to_table()
    assert list(got["tid"]) == list(first["tid"]) + list(second["tid"]) + list(third["tid"])
    assert got["label"][0] == "t0"
    # Its metadata, as declared.
    cols = tap.run_sync("SELECT column_name, unit, ucd, description, indexed FROM TAP_SCHEMA.columns "
                        f"WHERE table_name = '{name}'").to_table()
    by_name = {r["column_name"]: r for r in cols}
    assert by_name["ra"]["unit"] == "deg" and by_name["label"]["description"] == "what it is"
    # A unique index on tid (a UWS job pyvo runs and waits for) shows in TAP_SCHEMA.
    tap.create_index(name, "tid", unique=True)
    cols = tap.run_sync(f"SELECT column_name, indexed FROM TAP_SCHEMA.columns WHERE table_name = '{name}' "
                        "AND column_name = 'label'").to_table()
    assert cols["indexed"][0] == 0
    cols = tap.run_sync(f"SELECT indexed FROM TAP_SCHEMA.columns WHERE table_name = '{name}' "
                        "AND column_name = 'tid'").to_table()
    assert cols["indexed"][0] == 1
    # The cross-match with the catalog runs chunk by chunk on the workers, and agrees with numpy.
    all_targets = Table({k: np.concatenate([first[k], second[k], third[k]]) for k in ("ra", "dec")})
    expected = matches_within(all_targets, site["catalog"], 1.0)
    assert expected >= 450
    query = (f"SELECT COUNT(*) AS n FROM {name} AS t JOIN sky.object AS o "
             "ON 1 = CONTAINS(POINT('ICRS', t.ra, t.dec), CIRCLE('ICRS', o.ra, o.dec, 1.0/3600))")
    assert tap.run_sync(query).to_table()["n"][0] == expected
    plan = session(site["tokens"]["ada"]).post(site["url"] + "/explain", data={"LANG": "ADQL", "QUERY": query}).text
    assert "fragment over" in plan and "ChunkScanExec" in plan and "ConeJoinExec" in plan, plan
    tap.remove_table(name)
    r = session(site["tokens"]["ada"]).get(site["url"] + f"/tables/{name}")
    assert r.status_code == 404


def test_a_unique_index_on_repeated_values_fails_the_job(site, features):
    tap = service(site, "ada")
    name = "user_ada.repeats"
    tap.create_table(name, io.BytesIO(DEFINITION.format(name=name).encode()))
    t = targets(site["catalog"], 0, 10)
    t["label"] = ["same"] * 10
    tap.load_table(name, io.BytesIO(csv_bytes(t)), format="csv")
    with pytest.raises(Exception) as failed:
        tap.create_index(name, "label", unique=True)
    assert "not unique" in str(failed.value), failed.value
    tap.remove_table(name)


def test_a_user_table_is_private_until_shared(site, features):
    ada, bob, cy, anonymous = (session(site["tokens"].get(u)) for u in ("ada", "bob", "cy", None))
    url = site["url"]
    name = "user_ada.private"
    service(site, "ada").create_table(name, io.BytesIO(DEFINITION.format(name=name).encode()))
    rows = csv_bytes(targets(site["catalog"], 0, 20))
    r = ada.post(f"{url}/load/{name}", data=rows, headers={"Content-Type": "text/csv"})
    assert r.status_code == 200, r.text
    count = {"LANG": "ADQL", "QUERY": f"SELECT COUNT(*) AS n FROM {name}", "RESPONSEFORMAT": "csv"}
    assert ada.post(f"{url}/sync", data=count).text.split()[1] == "20"
    for who in (bob, cy, anonymous):
        # It does not exist for them: not in the query, /tables, its VOSI resource or TAP_SCHEMA.
        r = who.post(f"{url}/sync", data=count)
        assert r.status_code == 400 and "not found" in r.text and name not in r.text.split("known tables")[1], r.text
        assert name not in who.get(f"{url}/tables").text
        assert who.get(f"{url}/tables/{name}").status_code == 404
        ts = who.post(f"{url}/sync", data={"LANG": "ADQL", "RESPONSEFORMAT": "csv",
                                           "QUERY": "SELECT table_name FROM TAP_SCHEMA.tables"}).text
        assert "sky.object" in ts and name not in ts
    assert name in ada.get(f"{url}/tables").text
    # Shared with optics (cadctap's permissions form): cy reads it, bob still does not.
    r = ada.post(f"{url}/permissions/{name}", data="r-group=ivo://skyshard/gms?optics\n",
                 headers={"Content-Type": "text/plain"})
    assert r.status_code == 200 and "optics" in r.text, r.text
    assert cy.post(f"{url}/sync", data=count).text.split()[1] == "20"
    assert bob.post(f"{url}/sync", data=count).status_code == 400
    # Only the owner changes who reads it.
    assert cy.post(f"{url}/permissions/{name}", data="public=true\n").status_code == 403
    assert ada.post(f"{url}/permissions/{name}", data="public=true\n").status_code == 200
    assert anonymous.post(f"{url}/sync", data=count).text.split()[1] == "20"
    assert "public=true" in anonymous.get(f"{url}/permissions/{name}").text
    # Readers are not writers; a group given rw-group may add rows (and read), but not drop the table.
    r = cy.post(f"{url}/load/{name}", data=rows, headers={"Content-Type": "text/csv"})
    assert r.status_code == 403, r.text
    assert ada.post(f"{url}/permissions/{name}", data="rw-group=ivo://skyshard/gms?optics\n").status_code == 200
    more = csv_bytes(targets(site["catalog"], 100, 5))
    r = cy.post(f"{url}/load/{name}", data=more, headers={"Content-Type": "text/csv"})
    assert r.status_code == 200, r.text
    assert cy.delete(f"{url}/tables/{name}").status_code == 403
    assert bob.post(f"{url}/load/{name}", data=more, headers={"Content-Type": "text/csv"}).status_code == 403
    assert ada.post(f"{url}/sync", data=count).text.split()[1] == "25"
    assert ada.delete(f"{url}/tables/{name}").status_code == 200
    assert anonymous.post(f"{url}/sync", data=count).status_code == 400


def refusal(r, status):
    """The message of a refusal with this status (a DALI error document)."""
    import html
    import re
    assert r.status_code == status, (r.status_code, r.text[:500])
    found = re.search(r'<INFO name="QUERY_STATUS" value="ERROR">(.*?)</INFO>', r.text, re.S)
    assert found, r.text[:500]
    return html.unescape(found.group(1))


def test_writes_are_refused_clearly_and_change_nothing(site, features):
    ada, bob, anonymous = (session(site["tokens"].get(u)) for u in ("ada", "bob", None))
    url = site["url"]
    name = "user_ada.strict"
    definition = DEFINITION.format(name=name).encode()
    xml = {"Content-Type": "text/xml"}
    csv = {"Content-Type": "text/csv"}
    not_bobs = "that schema is user ada's: you may write only in user_bob and your groups' schemas"
    assert not_bobs in refusal(bob.put(f"{url}/tables/{name}", data=definition, headers=xml), 403)
    assert "user tables belong to named users: send a token or log in" in \
        refusal(anonymous.put(f"{url}/tables/{name}", data=definition, headers=xml), 401)
    assert "sky is a catalog schema, loaded by the operator" in \
        refusal(ada.put(f"{url}/tables/sky.mine", data=definition, headers=xml), 403)
    assert "the table document declares no column" in \
        refusal(ada.put(f"{url}/tables/{name}", data=b"<vosi:table><column>", headers=xml), 400)
    # The allowed path: ada in her own schema, with a whole definition.
    r = ada.put(f"{url}/tables/{name}", data=definition, headers=xml)
    assert r.status_code == 201 and f"created {name} (4 columns" in r.text, r.text
    assert f"{name} exists: DELETE it first" in refusal(ada.put(f"{url}/tables/{name}", data=definition, headers=xml), 409)
    good = b"tid,ra,dec,label\n1,10.0,20.0,a\n2,11.0,21.0,b\n"
    r = ada.post(f"{url}/load/{name}", data=good, headers=csv)
    assert r.status_code == 200 and f"loaded 2 rows into {name}; it has 2 rows" in r.text, r.text
    count = {"LANG": "ADQL", "QUERY": f"SELECT COUNT(*) AS n FROM {name}", "RESPONSEFORMAT": "csv"}
    # A bad value names its line; a column the table lacks is named; an unknown format is 415.
    message = refusal(ada.post(f"{url}/load/{name}", data=b"tid,ra,dec\n3,12.0,22.0\n4,not-a-number,23.0\n",
                               headers=csv), 400)
    assert "'not-a-number'" in message and "line 2" in message and "nothing was loaded" in message, message
    message = refusal(ada.post(f"{url}/load/{name}", data=b"tid,colour\n3,red\n", headers=csv), 400)
    assert 'column "colour" of its header is not in the table' in message and "nothing was loaded" in message, message
    message = refusal(ada.post(f"{url}/load/{name}", data=b"{}", headers={"Content-Type": "application/json"}), 415)
    assert 'Content-Type "application/json": load text/csv' in message, message
    # A row whose position is out of range is refused by the loader, naming it.
    message = refusal(ada.post(f"{url}/load/{name}", data=b"tid,ra,dec\n5,10.0,95.0\n", headers=csv), 400)
    assert "declination 95 is outside [-90, 90]" in message, message
    # In the upload's terms, not the service's: its row and CSV line, no path of the server's.
    assert "row 1 of the upload (line 2 of a CSV" in message and "incoming" not in message and "/" not in message.split(":")[0], message
    assert ada.post(f"{url}/sync", data=count).text.split()[1] == "2"
    # Someone else's table is not theirs to load or drop, nor an anonymous caller's.
    assert not_bobs in refusal(bob.post(f"{url}/load/{name}", data=good, headers=csv), 403)
    assert not_bobs in refusal(bob.delete(f"{url}/tables/{name}"), 403)
    assert "send a token or log in" in refusal(anonymous.post(f"{url}/load/{name}", data=good, headers=csv), 401)
    assert ada.post(f"{url}/sync", data=count).text.split()[1] == "2"
    r = ada.delete(f"{url}/tables/{name}")
    assert r.status_code == 200 and f"dropped {name}" in r.text, r.text


def test_a_load_past_the_table_quota_is_refused_whole(site, features):
    ada = session(site["tokens"]["ada"])
    url = site["url"]
    name = "user_ada.big"
    run("user", "quota", "--data-dir", str(site["data"]), "ada", "--tables-mb", "1")
    try:
        assert ada.put(f"{url}/tables/{name}", data=DEFINITION.format(name=name).encode(),
                       headers={"Content-Type": "text/xml"}).status_code == 201
        small = b"tid,ra,dec,label\n1,10.0,20.0,a\n"
        assert ada.post(f"{url}/load/{name}", data=small, headers={"Content-Type": "text/csv"}).status_code == 200
        rng = np.random.default_rng(7)
        n = 60_000
        big = Table({"tid": np.arange(10, 10 + n), "ra": rng.uniform(0, 360, n), "dec": rng.uniform(-90, 90, n),
                     "label": [os.urandom(12).hex() for _ in range(n)]})
        r = ada.post(f"{url}/load/{name}", data=csv_bytes(big), headers={"Content-Type": "text/csv"})
        assert r.status_code == 413 and "quota" in r.text and "nothing was changed" in r.text, r.text[:500]
        count = {"LANG": "ADQL", "QUERY": f"SELECT COUNT(*) AS n FROM {name}", "RESPONSEFORMAT": "csv"}
        assert ada.post(f"{url}/sync", data=count).text.split()[1] == "1"
        me = ada.get(url.replace("/tap", "/api/v1/me")).json()
        space = next(s for s in me["table_space"] if s["schema"] == "user_ada")
        assert space["limit"] == 1 << 20 and 0 < space["used"] < 1 << 20, me["table_space"]
    finally:
        run("user", "quota", "--data-dir", str(site["data"]), "ada", "--tables-mb", "0")
        ada.delete(f"{url}/tables/{name}")


def test_cadctap_command_line(site, tmp_path):
    cadc = shutil.which("cadc-tap")
    assert cadc, "cadc-tap is not installed (pip install -r tests/python/requirements.txt)"
    token = site["tokens"]["ada"]
    name = "user_ada.cadc"

    def cadc_tap(*args, answer=None):
        out = subprocess.run([cadc, args[0], "--token", token, "-s", site["url"], *args[1:]], capture_output=True,
                             text=True, timeout=120, input=answer)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    definition = tmp_path / "def.xml"
    definition.write_text(DEFINITION.format(name=name))
    cadc_tap("create", name, str(definition))
    t = targets(site["catalog"], 0, 25)
    t.write(tmp_path / "t.tsv", format="ascii.tab")
    cadc_tap("load", "-f", "tsv", name, str(tmp_path / "t.tsv"))
    cadc_tap("index", "-U", name, "tid")
    out = cadc_tap("query", f"SELECT COUNT(*) AS n FROM {name}")
    assert "25" in out.split(), out
    cadc_tap("delete", name, answer="yes\n")
    assert session(token).get(site["url"] + f"/tables/{name}").status_code == 404


def test_user_tables_survive_a_restart(site, features):
    name = "user_ada.kept"
    tap = service(site, "ada")
    tap.create_table(name, io.BytesIO(DEFINITION.format(name=name).encode()))
    tap.load_table(name, io.BytesIO(csv_bytes(targets(site["catalog"], 0, 30))), format="csv")
    ada = session(site["tokens"]["ada"])
    assert ada.post(site["url"] + f"/permissions/{name}", data="r-group=optics\n").status_code == 200
    site["proc"].kill()
    site["proc"].wait()
    site["proc"], site["url"] = serve(site["data"], site["base"])
    count = {"LANG": "ADQL", "QUERY": f"SELECT COUNT(*) AS n FROM {name}", "RESPONSEFORMAT": "csv"}
    assert session(site["tokens"]["cy"]).post(site["url"] + "/sync", data=count).text.split()[1] == "30"
    assert session(site["tokens"]["bob"]).post(site["url"] + "/sync", data=count).status_code == 400
    service(site, "ada").remove_table(name)


def test_astroquery_saves_a_job_result_as_a_table_shared_with_a_group(site):
    # As with ESA's Gaia archive: TapPlus logged in, an async job, upload_table_from_job. astroquery logs in over
    # HTTPS only; its secure connection is pointed at the plain-HTTP test server (as in test_auth.py).
    import http.client
    from astroquery.utils.tap.core import TapPlus
    parts = urllib.parse.urlparse(site["url"])
    tap = TapPlus(url=site["url"], upload_context="Upload", verbose=False)
    handler = tap._TapPlus__getconnhandler()._TapConn__connectionHandler
    handler.get_connection_secure = lambda verbose=False: http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    tap.login(user="ada", password=site["tokens"]["ada"])
    query = "SELECT TOP 50 id, ra, dec, mag_g FROM sky.object ORDER BY id"
    job = tap.launch_job_async(query, verbose=False)
    expected = job.get_results()
    assert len(expected) == 50
    tap.upload_table_from_job(job=job, table_name="saved", table_description="bright ones")
    name = "user_ada.saved"
    count = {"LANG": "ADQL", "QUERY": f"SELECT id, mag_g FROM {name} ORDER BY id", "RESPONSEFORMAT": "csv"}
    ada, bob, cy = (session(site["tokens"][u]) for u in ("ada", "bob", "cy"))
    rows = ada.post(site["url"] + "/sync", data=count).text.split()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(expected["id"])
    # Its description says where the rows came from; its columns keep their metadata (and so its layout).
    meta = ada.post(site["url"] + "/sync", data={"LANG": "ADQL", "RESPONSEFORMAT": "csv", "QUERY":
                    f"SELECT description FROM TAP_SCHEMA.tables WHERE table_name = '{name}'"}).text
    assert "bright ones" in meta and f"job {job.jobid}" in meta and "ORDER BY id" in meta, meta
    ucds = ada.post(site["url"] + "/sync", data={"LANG": "ADQL", "RESPONSEFORMAT": "csv", "QUERY":
                    f"SELECT ucd FROM TAP_SCHEMA.columns WHERE table_name = '{name}' AND column_name = 'ra'"}).text
    assert "pos.eq.ra" in ucds, ucds
    # Shared with optics: cy reads it; bob (not a member) is told there is no such table.
    assert ada.post(site["url"] + f"/permissions/{name}", data="r-group=optics\n").status_code == 200
    assert len(cy.post(site["url"] + "/sync", data=count).text.split()) == 51
    r = bob.post(site["url"] + "/sync", data=count)
    assert r.status_code == 400 and "not found" in r.text, r.text
    assert bob.get(site["url"] + f"/tables/{name}").status_code == 404
    # A job that is not yours cannot be saved.
    r = bob.post(site["url"] + "/Upload", data={"JOBID": job.jobid, "TABLE_NAME": "stolen"})
    assert r.status_code == 403, r.text
    assert ada.delete(site["url"] + f"/tables/{name}").status_code == 200


def scratch_files(data, known):
    """The files of the load scratch directories (DATA_DIR/incoming/user-*) not in `known`: {file name: bytes}.
    A load receives its body into `upload`, then converts it to `rows.parquet` for the loader."""
    found = {}
    for d in (data / "incoming").glob("user-*"):
        if d.name in known:
            continue
        for f in list(d.glob("*")):
            try:
                found[f.name] = max(found.get(f.name, 0), f.stat().st_size)
            except FileNotFoundError:
                pass  # the load ended and removed its scratch directory
    return found


def test_a_czar_killed_during_a_load_leaves_the_table_as_it_was(site, features):
    import threading
    import time
    name = "user_ada.crash"
    tap = service(site, "ada")
    tap.create_table(name, io.BytesIO(DEFINITION.format(name=name).encode()))
    tap.load_table(name, io.BytesIO(csv_bytes(targets(site["catalog"], 0, 100))), format="csv")
    rng = np.random.default_rng(5)
    n = 300_000
    big = Table({"tid": np.arange(1000, 1000 + n), "ra": rng.uniform(0, 360, n), "dec": rng.uniform(-90, 90, n),
                 "label": np.full(n, "bulk")})
    body = csv_bytes(big)
    count = {"LANG": "ADQL", "QUERY": f"SELECT COUNT(*) AS n FROM {name}", "RESPONSEFORMAT": "csv"}

    def kill_during(stage, data):
        """Posts the load, kills the service once `stage` says the load is in flight, restarts it; the sender's
        outcome (None: the connection broke) and whether the kill came first."""
        known = {d.name for d in (site["data"] / "incoming").glob("user-*")}
        answer = {}

        def send(url=site["url"]):
            try:
                answer["status"] = session(site["tokens"]["ada"]).post(
                    f"{url}/load/{name}", data=data, headers={"Content-Type": "text/csv"}).status_code
            except requests.exceptions.ConnectionError:
                answer["status"] = None  # the czar was killed under it
        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        deadline = time.monotonic() + 120
        while not stage(scratch_files(site["data"], known)) and sender.is_alive():
            assert time.monotonic() < deadline, f"the load never reached the awaited stage ({stage.__doc__})"
            time.sleep(0.001)
        landed = sender.is_alive()
        site["proc"].kill()
        site["proc"].wait()
        return sender, answer, landed

    def restart_and_count():
        site["proc"], site["url"] = serve(site["data"], site["base"])
        return int(session(site["tokens"]["ada"]).post(site["url"] + "/sync", data=count).text.split()[1])

    # 1. While the body arrives: half of it sent, the rest held back until the kill; the service had written
    # part of it to its scratch file. Nothing of it can be in the table.
    held = threading.Event()

    def half_then_wait():
        yield body[:len(body) // 2]
        held.wait(120)
        yield body[len(body) // 2:]

    def receiving(files):
        """part of the body written to the load's scratch file"""
        return files.get("upload", 0) > 0
    sender, answer, landed = kill_during(receiving, half_then_wait())
    held.set()
    sender.join(timeout=120)
    assert landed and answer["status"] is None, answer
    assert restart_and_count() == 100
    before = 100

    # 2. While the rows are loaded: the body received whole and converted for the loader, no answer yet. The
    # table is as it was, or has the load whole if it was published just before the kill: never between.
    for attempt in range(1, 6):
        big["tid"] += 10 * n  # new ids each time: a partitioned table's ids are unique
        load = csv_bytes(big)

        def loading(files, size=len(load)):
            """the whole body received and its rows converted for the loader (rows.parquet), before the answer"""
            return files.get("upload", 0) == size and "rows.parquet" in files
        sender, answer, landed = kill_during(loading, load)
        sender.join(timeout=120)
        got = restart_and_count()
        assert got in (before, before + n), (attempt, before, got)
        before = got
        if landed:
            assert answer["status"] is None, answer
            break
    assert landed, "in 5 loads the kill never came while the rows were being loaded: the test proved nothing"
    # The next load lands whole.
    big["tid"] += 10 * n
    r = session(site["tokens"]["ada"]).post(f"{site['url']}/load/{name}", data=csv_bytes(big),
                                            headers={"Content-Type": "text/csv"})
    assert r.status_code == 200, r.text
    assert session(site["tokens"]["ada"]).post(site["url"] + "/sync", data=count).text.split()[1] == str(before + n)
    service(site, "ada").remove_table(name)


def finished(s, job_url):
    """Waits (UWS WAIT, no wall-clock assertion) until the job at `job_url` leaves PENDING/QUEUED/EXECUTING."""
    for _ in range(120):
        phase = s.get(job_url + "/phase", timeout=30).text.strip()
        if phase not in ("PENDING", "QUEUED", "EXECUTING"):
            return phase
        s.get(job_url, params={"WAIT": "5", "PHASE": phase}, timeout=30)
    raise AssertionError(f"the job at {job_url} did not finish: still {phase}")


def test_request_parameters_cannot_make_a_job_an_index_job(site, features):
    """Issue 33, item 1: /tap/async with TABLE, INDEX and UNIQUE (no QUERY) ran the index job, which pasted them
    into SQL and ran it without the caller's visibility: anyone read any user table through the job's error and
    marked any catalog column indexed. A job's kind is set by the endpoint that makes it, never by a parameter."""
    ada, bob, anonymous = (session(site["tokens"].get(u)) for u in ("ada", "bob", None))
    url = site["url"]
    name = "user_ada.secret"
    service(site, "ada").create_table(name, io.BytesIO(DEFINITION.format(name=name).encode()))
    rows = b"tid,ra,dec,label\n1,10.0,20.0,public-ish\n2,11.0,21.0,hunter2\n"
    r = ada.post(f"{url}/load/{name}", data=rows, headers={"Content-Type": "text/csv"}, timeout=120)
    assert r.status_code == 200, r.text
    indexed = {"LANG": "ADQL", "RESPONSEFORMAT": "csv", "QUERY":
               "SELECT indexed FROM TAP_SCHEMA.columns WHERE table_name = 'sky.object' AND column_name = 'mag_g'"}
    assert ada.post(f"{url}/sync", data=indexed, timeout=60).text.split()[1] == "0"
    try:
        attacks = [
            {"TABLE": f"{name} WHERE tid = 2", "INDEX": "CAST(label AS INTEGER)", "UNIQUE": "true"},
            {"TABLE": "sky.object", "INDEX": "mag_g", "UNIQUE": "false"},
        ]
        for who in (anonymous, bob):
            for attack in attacks:
                r = who.post(f"{url}/async", data={**attack, "PHASE": "RUN"}, allow_redirects=False, timeout=60)
                assert r.status_code == 303, r.text
                job = r.headers["Location"]
                assert finished(who, job) == "ERROR"
                message = who.get(job + "/error", timeout=30).text
                # A query job without a query: it says so, and nothing of the table.
                assert "QUERY" in message and "hunter2" not in message, message
        assert ada.post(f"{url}/sync", data=indexed, timeout=60).text.split()[1] == "0"
        # The owner's own table-update job is PENDING; its table and column cannot be changed afterwards.
        r = ada.post(f"{url}/table-update", data={"table": name, "index": "tid", "unique": "true"},
                     allow_redirects=False, timeout=60)
        assert r.status_code == 303, r.text
        job = r.headers["Location"]
        for form, path in (({"TABLE": "sky.object", "INDEX": "ra"}, ""),
                           ({"TABLE": "sky.object"}, "/parameters")):
            r = ada.post(job + path, data=form, allow_redirects=False, timeout=60)
            assert r.status_code == 400 and "fixed when it is created" in r.text, r.text
        params = ada.get(job + "/parameters", timeout=30).text
        assert name in params and "sky.object" not in params, params
        # Run as created, it indexes ada's table and nothing else.
        r = ada.post(job + "/phase", data={"PHASE": "RUN"}, allow_redirects=False, timeout=60)
        assert r.status_code == 303, r.text
        assert finished(ada, job) == "COMPLETED", ada.get(job + "/error", timeout=30).text
        mine = {**indexed, "QUERY": f"SELECT indexed FROM TAP_SCHEMA.columns WHERE table_name = '{name}' "
                                    "AND column_name = 'tid'"}
        assert ada.post(f"{url}/sync", data=mine, timeout=60).text.split()[1] == "1"
        assert ada.post(f"{url}/sync", data=indexed, timeout=60).text.split()[1] == "0"
    finally:
        ada.delete(f"{url}/tables/{name}", timeout=120)
