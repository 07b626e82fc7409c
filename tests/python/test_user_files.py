"""User files over WebDAV against a real `skyshard serve --auth optional`: the litmus suite (its basic and copymove
groups), rclone copying a tree in and out with a token, the owner-only rule, the files quota (507, nothing left
behind), and a file of the space registered as a user table without sending it again (checked against DuckDB)."""

import os
import re
import shutil
import subprocess

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from skyshard_processes import run, start


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    base = tmp_path_factory.mktemp("files")
    run("gen", "--rows", "2000", "--out", str(base / "rel"))
    data = base / "data"
    run("ingest", "--data-dir", str(data), "--table", "sky.object", "--input", str(base / "rel/object.parquet"),
        "--ra", "ra", "--dec", "dec", "--id", "id", "--chunk-rows", "500", "--quiet")
    run("user", "add", "--data-dir", str(data), "ada")
    run("user", "add", "--data-dir", str(data), "bob")
    run("user", "add", "--data-dir", str(data), "root", "--admin")
    tokens = {n: run("token", "create", "--data-dir", str(data), "--user", n).strip() for n in ("ada", "bob")}
    tokens["root"] = run("token", "create", "--data-dir", str(data), "--user", "root", "--scopes",
                         "read:tap,admin").strip()
    proc, url = start(["serve", "--data-dir", str(data), "--port", "0", "--workers", "1", "--auth", "optional",
                       "--jobs-dir", str(base / "jobs")])
    root = url.replace("/tap", "")
    yield {"tap": url, "root": root, "data": data, "tokens": tokens, "base": base}
    proc.kill()
    proc.wait()


def auth(site, user):
    return ("x-oauth-basic", site["tokens"][user])


@pytest.mark.skipif(shutil.which("litmus") is None and not os.environ.get("CI"), reason="litmus is not installed")
def test_litmus_basic_and_copymove(site, tmp_path):
    env = {**os.environ, "TESTS": "basic copymove"}
    # litmus writes debug.log and child.log where it runs: in a scratch directory, not the checkout.
    out = subprocess.run(["litmus", f"{site['root']}/files/ada/", "ada", site["tokens"]["ada"]], capture_output=True,
                         text=True, timeout=300, env=env, cwd=tmp_path)
    summaries = re.findall(r"summary for `(\w+)': of (\d+) tests run: (\d+) passed, (\d+) failed", out.stdout)
    assert {s[0] for s in summaries} == {"basic", "copymove"}, out.stdout[-3000:]
    for group, ran, passed, failed in summaries:
        assert failed == "0" and ran == passed and int(ran) >= 13, (group, out.stdout[-3000:])


@pytest.mark.skipif(shutil.which("rclone") is None and not os.environ.get("CI"), reason="rclone is not installed")
def test_rclone_copies_a_tree_in_and_out(site, tmp_path):
    src = tmp_path / "src"
    (src / "deep" / "er").mkdir(parents=True)
    rng = np.random.default_rng(3)
    (src / "big.bin").write_bytes(rng.bytes(3_000_000))
    (src / "deep" / "er" / "notes é.txt").write_text("ünïcode names travel too\n")
    obscured = subprocess.run(["rclone", "obscure", site["tokens"]["ada"]], capture_output=True, text=True,
                              check=True).stdout.strip()
    remote = ["--webdav-url", f"{site['root']}/files/ada/", "--webdav-user", "ada", "--webdav-pass", obscured,
              "--webdav-vendor", "other"]
    subprocess.run(["rclone", *remote, "copy", str(src), ":webdav:backup"], check=True, capture_output=True,
                   timeout=120)
    back = tmp_path / "back"
    subprocess.run(["rclone", *remote, "copy", ":webdav:backup", str(back)], check=True, capture_output=True,
                   timeout=120)
    assert (back / "big.bin").read_bytes() == (src / "big.bin").read_bytes()
    assert (back / "deep" / "er" / "notes é.txt").read_text() == "ünïcode names travel too\n"
    listing = subprocess.run(["rclone", *remote, "lsf", "-R", ":webdav:backup"], capture_output=True, text=True,
                             check=True).stdout.split()
    assert "big.bin" in listing and "deep/er/" in listing, listing


def test_a_space_is_its_owners_only(site):
    url = f"{site['root']}/files/ada/private.txt"
    assert requests.put(url, data=b"mine", auth=auth(site, "ada")).status_code == 201
    assert requests.put(url, data=b"mine again", auth=auth(site, "ada")).status_code == 204
    assert requests.get(url, auth=auth(site, "ada")).content == b"mine again"
    for method in ("GET", "PUT", "DELETE", "PROPFIND"):
        r = requests.request(method, url, auth=auth(site, "bob"), data=b"x" if method == "PUT" else None)
        assert r.status_code == 403 and 'value="ERROR"' in r.text, (method, r.status_code, r.text[:200])
    r = requests.get(url)
    assert r.status_code == 401 and any("Basic" in c for c in r.headers.get("WWW-Authenticate", "").split(",")), r.headers
    # Bearer works as well as Basic.
    bearer = {"Authorization": f"Bearer {site['tokens']['ada']}"}
    assert requests.get(url, headers=bearer).content == b"mine again"
    assert requests.delete(url, auth=auth(site, "ada")).status_code == 204


def raw_get(site, path, token):
    """A GET of `path` sent as it stands (requests and urllib would resolve its dot segments first): (status, body)."""
    import http.client
    import urllib.parse
    parts = urllib.parse.urlparse(site["root"])
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


@pytest.mark.parametrize("path,segment", [
    ("/files/ada/../bob/secret.txt", '".."'),
    ("/files/ada/%2e%2e/bob/secret.txt", '".."'),
    ("/files/ada/..%2fbob%2fsecret.txt", '"../bob/secret.txt"'),
    ("/files/ada/%2e%2e%2fbob%2fsecret.txt", '"../bob/secret.txt"'),
    ("/files/ada/..\\bob\\secret.txt", '"..\\\\bob\\\\secret.txt"'),
], ids=["dots", "encoded dots", "encoded slashes", "all encoded", "backslashes"])
def test_a_path_cannot_climb_into_another_space(site, path, segment):
    # The target exists: a traversal that worked would read bob's file.
    secret = f"{site['root']}/files/bob/secret.txt"
    assert requests.put(secret, data=b"bob's secret", auth=auth(site, "bob")).status_code == 201
    try:
        assert raw_get(site, "/files/bob/secret.txt", site["tokens"]["bob"]) == (200, b"bob's secret")
        status, body = raw_get(site, path, site["tokens"]["ada"])
        assert status == 400 and b"bob's secret" not in body, (status, body[:300])
        assert f"{segment}: not a valid name for a file".encode() in body.replace(b"&quot;", b'"'), body[:300]
        # Straight at bob's space: refused as not hers.
        status, body = raw_get(site, "/files/bob/secret.txt", site["tokens"]["ada"])
        assert status == 403 and b"/files/bob/ is not your sp" in body and b"bob's secret" not in body, body[:300]
    finally:
        assert requests.delete(secret, auth=auth(site, "bob")).status_code == 204


def test_the_files_quota_refuses_a_put_whole(site):
    requests.delete(f"{site['root']}/files/ada/backup/", auth=auth(site, "ada"))
    run("user", "quota", "--data-dir", str(site["data"]), "ada", "--files-mb", "1")
    try:
        url = f"{site['root']}/files/ada/too-big.bin"
        r = requests.put(url, data=os.urandom(2 << 20), auth=auth(site, "ada"))
        assert r.status_code == 507 and "quota" in r.text, (r.status_code, r.text[:300])
        assert requests.head(url, auth=auth(site, "ada")).status_code == 404
        # Nothing half-written lingers anywhere in the data directory.
        leftovers = [p for p in (site["data"] / "files").rglob("*") if p.is_file()]
        assert not leftovers, leftovers
        assert requests.put(url, data=b"small", auth=auth(site, "ada")).status_code == 201
        requests.delete(url, auth=auth(site, "ada"))
    finally:
        run("user", "quota", "--data-dir", str(site["data"]), "ada", "--files-mb", "0")


def test_a_file_of_the_space_becomes_a_table_without_sending_it_again(site, tmp_path):
    rng = np.random.default_rng(11)
    n = 5000
    table = pa.table({"oid": np.arange(n, dtype=np.int64), "ra": rng.uniform(0, 360, n),
                      "dec": np.degrees(np.arcsin(rng.uniform(-1, 1, n))), "flux": rng.lognormal(0, 1, n)})
    local = tmp_path / "mine.parquet"
    pq.write_table(table, local)
    url = f"{site['root']}/files/ada/lists/mine.parquet"
    assert requests.request("MKCOL", f"{site['root']}/files/ada/lists/", auth=auth(site, "ada")).status_code == 201
    assert requests.put(url, data=local.read_bytes(), auth=auth(site, "ada")).status_code == 201
    tap = site["tap"]
    r = requests.post(f"{tap}/load/user_ada.mine?source=/files/ada/lists/mine.parquet", auth=auth(site, "ada"))
    assert r.status_code == 201, r.text
    # Someone else cannot register ada's file.
    r = requests.post(f"{tap}/load/user_bob.stolen?source=/files/ada/lists/mine.parquet", auth=auth(site, "bob"))
    assert r.status_code == 403, r.text
    expected = duckdb.connect().execute(f"SELECT COUNT(*), SUM(flux) FROM '{local}' WHERE dec > 30").fetchall()[0]
    assert expected[0] > 0
    got = requests.post(f"{tap}/sync", auth=auth(site, "ada"), data={
        "LANG": "ADQL", "RESPONSEFORMAT": "csv",
        "QUERY": "SELECT COUNT(*) AS n, SUM(flux) AS s FROM user_ada.mine WHERE dec > 30"}).text.split()[1]
    n_got, s_got = got.split(",")
    assert int(n_got) == expected[0] and abs(float(s_got) - expected[1]) < 1e-9 * abs(expected[1])
    # A second registration of the same file appends its rows.
    r = requests.post(f"{tap}/load/user_ada.mine?source=/files/ada/lists/mine.parquet", auth=auth(site, "ada"))
    assert r.status_code == 200, r.text
    got = requests.post(f"{tap}/sync", auth=auth(site, "ada"), data={
        "LANG": "ADQL", "RESPONSEFORMAT": "csv", "QUERY": "SELECT COUNT(*) AS n FROM user_ada.mine"}).text.split()[1]
    assert int(got) == 2 * n
    assert requests.delete(f"{tap}/tables/user_ada.mine", auth=auth(site, "ada")).status_code == 200


def test_deleting_a_user_removes_their_tables_files_jobs_and_tokens(site):
    data, tap, root = site["data"], site["tap"], site["root"]
    run("user", "add", "--data-dir", str(data), "eve")
    eve = ("eve", run("token", "create", "--data-dir", str(data), "--user", "eve").strip())
    assert requests.put(f"{root}/files/eve/list.csv", data=b"oid,ra,dec\n1,10,20\n2,11,21\n", auth=eve).status_code == 201
    r = requests.post(f"{tap}/load/user_eve.list?source=/files/eve/list.csv", auth=eve)
    assert r.status_code == 201, r.text
    job = requests.post(f"{tap}/async", auth=eve, allow_redirects=False, data={
        "LANG": "ADQL", "QUERY": "SELECT COUNT(*) FROM user_eve.list", "PHASE": "RUN"}).headers["Location"]
    assert requests.get(job, auth=eve).status_code == 200
    # Not for anyone but an admin.
    r = requests.delete(f"{root}/api/v1/users/eve", auth=auth(site, "ada"))
    assert r.status_code == 403, r.text
    from skyshard_processes import SKYSHARD
    out = subprocess.run([SKYSHARD, "user", "delete", "--url", tap, "eve"], capture_output=True, text=True,
                         env={**os.environ, "SKYSHARD_TOKEN": site["tokens"]["root"]}, timeout=120)
    assert out.returncode == 0 and "user_eve.list" in out.stdout, out.stdout + out.stderr
    # Her token is refused, her table, files and job are gone; the admin sees no trace either.
    assert requests.get(f"{root}/api/v1/me", auth=eve).status_code == 401
    admin = {"Authorization": f"Bearer {site['tokens']['root']}"}
    tables = requests.get(f"{tap}/tables", headers=admin).text
    assert "user_eve" not in tables and "sky.object" in tables
    assert not (data / "files" / "eve").exists()
    assert requests.get(job, headers=admin).status_code == 404
    # No file of hers is left in the data directory: not her table's load (which serve's workers read in place),
    # not its template, not her file space.
    assert (data / "tables" / "sky.object").exists()
    left = [str(p) for p in data.rglob("*") if "user_eve" in p.name or "eve" == p.name]
    assert not left, left


def test_a_group_space_is_its_members(site):
    data, root = site["data"], site["root"]
    run("user", "add", "--data-dir", str(data), "gia", "--group", "optics")
    run("user", "add", "--data-dir", str(data), "hal", "--group", "optics")
    gia = ("gia", run("token", "create", "--data-dir", str(data), "--user", "gia").strip())
    hal = ("hal", run("token", "create", "--data-dir", str(data), "--user", "hal").strip())
    url = f"{root}/files/group_optics/shared.txt"
    assert requests.put(url, data=b"for the group", auth=gia).status_code == 201
    assert requests.get(url, auth=hal).content == b"for the group"
    assert requests.get(url, auth=auth(site, "ada")).status_code == 403
    # A group's quota bounds its space.
    run("user", "quota", "--data-dir", str(data), "--group", "optics", "--files-mb", "1")
    try:
        r = requests.put(f"{root}/files/group_optics/big.bin", data=os.urandom(2 << 20), auth=hal)
        assert r.status_code == 507, r.status_code
    finally:
        run("user", "quota", "--data-dir", str(data), "--group", "optics", "--files-mb", "0")
    assert requests.delete(url, auth=hal).status_code == 204
