"""The access table (platform/tests/access_table.json: caller x resource x action -> allowed) run through a real
`skyshard serve --auth optional` over HTTP, each action as the clients do it: a sync query, a load, a permissions
change, a table created and dropped, a job read, a WebDAV PROPFIND and PUT. The same table is run against the
platform's decisions by platform/tests/access.rs. An allowed action must succeed; a refused one must be refused
with 401 (anonymous), 403 (named, not allowed) or, where a table must not be seen to exist, 404 or a query's 400
"not found"."""

import json
import pathlib

import pytest
import requests

from skyshard_processes import run, start

TABLE = json.loads((pathlib.Path(__file__).resolve().parents[2] / "platform/tests/access_table.json").read_text())

DEFINITION = """<vosi:table xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0"
  xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <name>{name}</name>
  <column><name>tid</name><ucd>meta.id;meta.main</ucd><dataType xsi:type="vs:TAPType">BIGINT</dataType></column>
  <column><name>ra</name><unit>deg</unit><ucd>pos.eq.ra;meta.main</ucd>
    <dataType xsi:type="vs:TAPType">DOUBLE</dataType></column>
  <column><name>dec</name><unit>deg</unit><ucd>pos.eq.dec;meta.main</ucd>
    <dataType xsi:type="vs:TAPType">DOUBLE</dataType></column>
</vosi:table>"""
ROWS = b"tid,ra,dec\n1,10.0,20.0\n2,11.0,21.0\n"
TIMEOUT = 120
NEXT_ID = iter(range(1000, 10**9, 10))


def new_rows():
    """Rows whose ids no load has used yet (a director table's ids are unique)."""
    first = next(NEXT_ID)
    return f"tid,ra,dec\n{first},12.0,22.0\n{first + 1},13.0,23.0\n".encode()


def grant_body(spec):
    return (f"public={'true' if spec.get('public') else 'false'}\n"
            f"r-group={spec.get('r-group', '')}\nrw-group={spec.get('rw-group', '')}\n")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    base = tmp_path_factory.mktemp("access")
    run("gen", "--rows", "2000", "--out", str(base / "rel"))
    data = base / "data"
    run("ingest", "--data-dir", str(data), "--table", "sky.object", "--input", str(base / "rel/object.parquet"),
        "--ra", "ra", "--dec", "dec", "--id", "id", "--quiet")
    for name, groups, admin in (("ada", ["optics"], False), ("bob", [], False), ("cy", ["optics"], False),
                                ("root", [], True)):
        run("user", "add", "--data-dir", str(data), name, *sum((["--group", g] for g in groups), []),
            *(["--admin"] if admin else []))
    token = lambda user, *scopes: run("token", "create", "--data-dir", str(data), "--user", user,
                                      *(["--scopes", ",".join(scopes)] if scopes else [])).strip()
    tokens = {"ada": token("ada"), "bob": token("bob"), "cy": token("cy"),
              "root": token("root", "read:tap", "write:tables", "write:files", "admin"),
              "ada_ro": token("ada", "read:tap")}
    proc, url = start(["serve", "--data-dir", str(data), "--port", "0", "--workers", "1", "--auth", "optional",
                       "--jobs-dir", str(base / "jobs")])
    sessions = {"anonymous": requests.Session()}
    for who, t in tokens.items():
        sessions[who] = requests.Session()
        sessions[who].headers["Authorization"] = f"Bearer {t}"
    ada = sessions["ada"]
    for name, spec in TABLE["tables"].items():
        r = ada.put(f"{url}/tables/{name}", data=DEFINITION.format(name=name).encode(),
                    headers={"Content-Type": "text/xml"}, timeout=TIMEOUT)
        assert r.status_code == 201, r.text
        r = ada.post(f"{url}/load/{name}", data=ROWS, headers={"Content-Type": "text/csv"}, timeout=TIMEOUT)
        assert r.status_code == 200, r.text
        r = ada.post(f"{url}/permissions/{name}", data=grant_body(spec), timeout=TIMEOUT)
        assert r.status_code == 200, r.text
    jobs = {}
    for owner in ("ada", "anonymous"):
        r = sessions[owner].post(f"{url}/async", data={"LANG": "ADQL", "QUERY": "SELECT TOP 1 id FROM sky.object"},
                                 allow_redirects=False, timeout=TIMEOUT)
        assert r.status_code == 303, r.text
        jobs[owner] = r.headers["Location"]
    base_url = url[: -len("/tap")]
    for space, owner in (("ada", "ada"), ("group_optics", "ada"), ("bob", "bob")):
        r = sessions[owner].put(f"{base_url}/files/{space}/seed.txt", data=b"seed", timeout=TIMEOUT)
        assert r.status_code in (201, 204), r.text
    yield {"url": url, "base": base_url, "sessions": sessions, "jobs": jobs}
    proc.kill()
    proc.wait()


def act(site, who, action, resource):
    """Does `action` to `resource` as `who`: (status, body)."""
    s, url, base = site["sessions"][who], site["url"], site["base"]
    if action == "read":
        r = s.post(f"{url}/sync", data={"LANG": "ADQL", "RESPONSEFORMAT": "csv",
                                        "QUERY": f"SELECT COUNT(*) AS n FROM {resource}"}, timeout=TIMEOUT)
    elif action == "add_rows":
        r = s.post(f"{url}/load/{resource}", data=new_rows(), headers={"Content-Type": "text/csv"},
                   timeout=TIMEOUT)
    elif action == "change":
        spec = TABLE["tables"][resource]
        r = s.post(f"{url}/permissions/{resource}", data=grant_body(spec), timeout=TIMEOUT)
    elif action == "create_in":
        name = f"{resource}.probe_{who}"
        r = s.put(f"{url}/tables/{name}", data=DEFINITION.format(name=name).encode(),
                  headers={"Content-Type": "text/xml"}, timeout=TIMEOUT)
        if r.status_code == 201:
            gone = s.delete(f"{url}/tables/{name}", timeout=TIMEOUT)
            assert gone.status_code == 200, gone.text
    elif action == "job":
        r = s.get(site["jobs"][resource], timeout=TIMEOUT)
    elif action == "file_read":
        r = s.request("PROPFIND", f"{base}/files/{resource}/", headers={"Depth": "0"}, timeout=TIMEOUT)
    elif action == "file_write":
        r = s.put(f"{base}/files/{resource}/probe-{who}.txt", data=b"probe", timeout=TIMEOUT)
        if r.status_code in (201, 204):
            gone = s.delete(f"{base}/files/{resource}/probe-{who}.txt", timeout=TIMEOUT)
            assert gone.status_code in (200, 204), gone.text
    else:
        raise AssertionError(f"no action {action}")
    return r.status_code, r.text


ROWS_OF_TABLE = [(who, rule["action"], rule["resource"], who in rule["allowed"])
                 for rule in TABLE["rules"] for who in TABLE["callers"]]


def test_the_table_is_large_enough():
    assert len(ROWS_OF_TABLE) >= 40


@pytest.mark.parametrize("who,action,resource,allowed", ROWS_OF_TABLE,
                         ids=[f"{w}-{a}-{r}" for w, a, r, _ in ROWS_OF_TABLE])
def test_the_access_table_holds_over_http(site, who, action, resource, allowed):
    status, body = act(site, who, action, resource)
    if allowed:
        assert status in (200, 201, 204, 207), (status, body[:300])
        return
    if action == "read":
        # A table the caller may not read does not exist for them.
        assert status == 400 and "not found" in body, (status, body[:300])
    elif action == "create_in" and resource == "sky":
        # A catalog schema is the operator's, whoever asks.
        assert status == 403 and "catalog schema" in body, (status, body[:300])
    elif who == "anonymous":
        assert status == 401, (status, body[:300])
    else:
        assert status in (403, 404), (status, body[:300])
