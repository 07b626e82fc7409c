"""Identity as the clients speak it, against a real `skyshard serve`: tokens made with `skyshard user add` and
`skyshard token create`, presented by pyvo (a requests session with a bearer header, and pyvo's AuthSession with
HTTP Basic), by plain HTTP Basic, and through the login cookie; per-user jobs (listed only to their owner, 403 to
another user, 401 to an anonymous caller); `--auth required` refusing everything but the capabilities,
availability and login with the standard challenges; a token revoked while the service runs stops at once; loads
need the admin scope; STILTS taplint stays clean with accounts."""

import base64
import json
import os
import re
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request

import pytest
import pyvo
import requests

from skyshard_processes import run, start

ROWS = 3000
# Reads the chunks (a bare COUNT(*) is answered from the table record without asking a worker).
COUNT = "SELECT COUNT(*) AS n FROM sky.object WHERE ra >= 0"
AUDIT = {}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("auth")
    run("gen", "--rows", str(ROWS), "--out", str(base / "rel"))
    data = base / "data"
    run("ingest", "--data-dir", str(data), "--table", "sky.object", "--input", str(base / "rel/object.parquet"),
        "--ra", "ra", "--dec", "dec", "--id", "id", "--chunk-rows", "500", "--quiet")
    run("user", "add", "--data-dir", str(data), "ada", "--group", "optics")
    run("user", "add", "--data-dir", str(data), "bob")
    run("user", "add", "--data-dir", str(data), "root", "--admin")
    tokens = {name: run("token", "create", "--data-dir", str(data), "--user", name).strip()
              for name in ("ada", "bob")}
    tokens["root"] = run("token", "create", "--data-dir", str(data), "--user", "root", "--scopes",
                         "read:tap,admin").strip()
    assert all(re.fullmatch(r"sky_[0-9a-f]{16}_[0-9a-f]{64}", t) for t in tokens.values()), tokens
    return data, tokens


def serve(data, tmp_path, policy):
    return start(["serve", "--data-dir", str(data), "--port", "0", "--workers", "2", "--auth", policy,
                  "--jobs-dir", str(tmp_path / f"jobs-{policy}"), "--audit-log", str(tmp_path / "audit.jsonl")])


@pytest.fixture(scope="module")
def optional(data, tmp_path_factory):
    base = tmp_path_factory.mktemp("optional")
    proc, url = serve(data[0], base, "optional")
    AUDIT["path"] = base / "audit.jsonl"
    yield url
    proc.kill()
    proc.wait()


def call(url, method="GET", body=None, headers=None):
    """(status, headers, body text) of one request; errors are answers too."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def basic(user, token):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()}


def sync_count(url, headers):
    form = urllib.parse.urlencode({"LANG": "ADQL", "QUERY": COUNT, "RESPONSEFORMAT": "csv"}).encode()
    return call(url + "/sync", "POST", form, headers)


def test_anonymous_callers_query_and_the_capabilities_name_every_way_in(optional):
    status, _, body = sync_count(optional, {})
    assert status == 200 and body.split()[1] == str(ROWS), body[:300]
    status, _, caps = call(optional + "/capabilities")
    assert status == 200
    for method in ("#BasicAA", "#cookie", "#OAuth"):
        assert f'standardID="ivo://ivoa.net/sso{method}"' in caps
    assert "<securityMethod/>" in caps  # anonymous access too


def test_pyvo_with_a_bearer_session_owns_its_jobs(optional, data):
    _, tokens = data
    session = requests.Session()
    session.headers.update(bearer(tokens["ada"]))
    service = pyvo.dal.TAPService(optional, session=session)
    assert service.run_sync(COUNT).to_table()["n"][0] == ROWS
    job = service.submit_job(COUNT)
    job.run()
    job.wait(timeout=60)
    job.raise_if_error()
    assert job.fetch_result().to_table()["n"][0] == ROWS
    assert job.owner == "ada"
    # Listed to ada, not to bob nor to an anonymous caller.
    base = optional + "/async"
    assert job.job_id in call(base, headers=bearer(tokens["ada"]))[2]
    assert job.job_id not in call(base, headers=bearer(tokens["bob"]))[2]
    assert job.job_id not in call(base)[2]
    # Another user: 403; anonymous: 401 with the challenges; the owner: 200.
    status, _, body = call(f"{base}/{job.job_id}", headers=bearer(tokens["bob"]))
    assert status == 403 and "another user" in body and 'value="ERROR"' in body, (status, body[:300])
    status, headers, body = call(f"{base}/{job.job_id}/results/result")
    assert status == 401, (status, body[:300])
    challenges = headers.get_all("WWW-Authenticate")
    assert any(c.startswith("Bearer") for c in challenges) and any(c.startswith("Basic") for c in challenges)
    assert any(c.startswith("ivoa_bearer") and "/tap/login" in c for c in challenges), challenges
    assert any(c.startswith("ivoa_cookie") for c in challenges), challenges
    status, _, _ = call(f"{base}/{job.job_id}", "DELETE", headers=bearer(tokens["bob"]))
    assert status == 403
    # The same job spelled with percent escapes is still ada's.
    escaped = "".join(f"%{ord(c):02X}" for c in job.job_id)
    for path in (f"{base}/{escaped}", f"{base}/{escaped}/results/result", f"{base}/%{ord(job.job_id[0]):02x}{job.job_id[1:]}/phase"):
        status, _, body = call(path, headers=bearer(tokens["bob"]))
        assert status == 403, (path, status, body[:200])
    assert call(f"{base}/{job.job_id}/phase", headers=bearer(tokens["ada"]))[2].strip() == "COMPLETED"
    job.delete()


def test_pyvo_auth_session_with_basic(optional, data):
    _, tokens = data
    from pyvo.auth import AuthSession
    session = AuthSession()
    session.credentials.set_password("bob", tokens["bob"])
    service = pyvo.dal.TAPService(optional, session=session)
    job = service.submit_job(COUNT)
    job.run()
    job.wait(timeout=60)
    assert job.owner == "bob"
    assert job.fetch_result().to_table()["n"][0] == ROWS
    job.delete()


def test_basic_with_any_user_name_and_the_cookie_of_a_login(optional, data):
    _, tokens = data
    status, headers, body = sync_count(optional, basic("x-oauth-basic", tokens["ada"]))
    assert status == 200 and headers["X-VO-Authenticated"] == "ada", (status, body[:200])
    # Login: the form of SSO's tls-with-password, a token as password.
    form = urllib.parse.urlencode({"username": "ada", "password": tokens["ada"]}).encode()
    status, headers, body = call(optional + "/login", "POST", form)
    assert status == 200 and headers["X-VO-Authenticated"] == "ada" and headers["X-VO-Bearer"] == tokens["ada"]
    cookie = headers["Set-Cookie"].split(";")[0]
    assert "HttpOnly" in headers["Set-Cookie"]
    status, _, me = call(optional.replace("/tap", "/api/v1/me"), headers={"Cookie": cookie})
    me = json.loads(me)
    assert status == 200 and me["user"] == "ada" and me["groups"] == ["optics"] and not me["anonymous"], me
    assert "admin" not in me["scopes"]
    assert me["shares"]["sync_in_flight"]["limit"] == 8 and me["shares"]["jobs_queued_or_executing"]["used"] == 0
    # Someone else's token under ada's name, a wrong token, a malformed header: 401, never anonymous.
    form = urllib.parse.urlencode({"username": "ada", "password": tokens["bob"]}).encode()
    assert call(optional + "/login", "POST", form)[0] == 401
    wrong = tokens["ada"][:-1] + ("0" if tokens["ada"][-1] != "0" else "1")
    for headers in (bearer(wrong), {"Authorization": "Digest abc"}, {"Authorization": "Basic !!"},
                    {"Cookie": "SESSION=nonsense"}):
        status, _, body = sync_count(optional, headers)
        assert status == 401 and 'value="ERROR"' in body, (headers, status, body[:200])
    assert call(optional + "/logout")[1]["Set-Cookie"].startswith("SESSION=;")


def test_login_with_a_password_opens_a_session(optional, data):
    from skyshard_processes import SKYSHARD
    data_dir, _ = data
    out = subprocess.run([SKYSHARD, "user", "passwd", "--data-dir", str(data_dir), "bob"], input="bobs long password\n",
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "bobs long password" not in (data_dir / "accounts/users/bob.json").read_text()
    login = lambda pw: call(optional + "/login", "POST", urllib.parse.urlencode({"username": "bob", "password": pw}).encode())
    status, _, body = login("bobs long passworD")
    assert status == 401 and "wrong user name or password" in body, body[:300]
    status, headers, _ = login("bobs long password")
    assert status == 200 and headers["X-VO-Authenticated"] == "bob"
    session = headers["X-VO-Bearer"]
    assert session.startswith("sky_") and headers["Set-Cookie"].startswith(f"SESSION={session};")
    status, headers, body = sync_count(optional, bearer(session))
    assert status == 200 and headers["X-VO-Authenticated"] == "bob", body[:300]
    # A session never carries the admin scope, and it is a token like the others: listed, revocable.
    assert "admin" not in json.loads(call(optional.replace("/tap", "/api/v1/me"), headers=bearer(session))[2])["scopes"]
    assert session[4:20] in run("token", "list", "--data-dir", str(data_dir))


def test_loads_need_the_admin_scope(optional, data):
    _, tokens = data
    for headers in ({}, bearer(tokens["ada"])):
        status, _, body = call(optional.replace("/tap", "/admin/loads/s1"), "POST", b"{}", headers)
        assert status == 403 and "admin scope" in body, (status, body)
    # An admin's token gets past the door (and then the load request itself is judged).
    status, _, body = call(optional.replace("/tap", "/admin/loads/s1"), "POST", b"{}", bearer(tokens["root"]))
    assert status == 400 and "admin" not in body, (status, body)


def test_required_refuses_anonymous_callers_and_revocation_is_immediate(data, tmp_path):
    data_dir, tokens = data
    proc, url = serve(data_dir, tmp_path, "required")
    try:
        for path in ("/sync?LANG=ADQL&QUERY=SELECT+1", "/tables", "/async", "/examples"):
            status, headers, body = call(url + path)
            assert status == 401 and 'value="ERROR"' in body, (path, status, body[:200])
            assert any(c.startswith("ivoa_bearer") for c in headers.get_all("WWW-Authenticate"))
        for path in ("/capabilities", "/availability"):
            assert call(url + path)[0] == 200, path
        status, _, caps = call(url + "/capabilities")
        assert "<securityMethod/>" not in caps and "sso#BasicAA" in caps
        token = run("token", "create", "--data-dir", str(data_dir), "--user", "bob", "--expires", "1d").strip()
        assert sync_count(url, bearer(token))[0] == 200
        # The command line's client presents SKYSHARD_TOKEN.
        from skyshard_processes import SKYSHARD
        query = [SKYSHARD, "query", "--url", url, COUNT]
        denied = subprocess.run(query, capture_output=True, text=True, env={**os.environ, "SKYSHARD_TOKEN": ""})
        assert denied.returncode != 0 and "identity" in denied.stderr + denied.stdout, denied
        served = subprocess.run(query, capture_output=True, text=True, env={**os.environ, "SKYSHARD_TOKEN": token})
        assert served.returncode == 0 and served.stdout.split()[1] == str(ROWS), served
        run("token", "revoke", "--data-dir", str(data_dir), token[4:20])
        status, _, body = sync_count(url, bearer(token))
        assert status == 401 and "not known" in body, body[:300]
        assert sync_count(url, bearer(tokens["bob"]))[0] == 200
    finally:
        proc.kill()
        proc.wait()


def test_every_request_leaves_an_audit_line(optional, data):
    _, tokens = data
    sync_count(optional, bearer(tokens["bob"]))
    call(optional + "/async/nosuchjob")
    bobs = lambda l: l["who"] == "user bob" and l.get("path") == "/tap/sync" and l["status"] == 200
    lines = wait_for_audit(bobs)
    assert any(bobs(l) for l in lines), lines[-5:]
    assert any(l["who"].startswith("address 127.0.0.1") and l.get("status") == 404 for l in lines), lines[-5:]
    assert all(l["ms"] >= 0 and l["time"].endswith("Z") for l in lines)


@pytest.mark.skipif(shutil.which("stilts") is None and not os.environ.get("CI"), reason="stilts is not installed")
def test_taplint_with_accounts(optional):
    out = subprocess.run(["stilts", "taplint", f"tapurl={optional}", "report=EW"], capture_output=True, text=True,
                         timeout=900)
    totals = re.search(r"Totals: Errors: (\d+); Warnings: (\d+)", out.stdout)
    assert totals, out.stdout[-3000:] + out.stderr[-3000:]
    assert totals.group(1) == "0" and totals.group(2) == "0", out.stdout[-5000:]


def test_workers_answer_only_their_czar(data, tmp_path):
    import pyarrow.flight as flight
    data_dir, tokens = data
    worker, address = start(["worker", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir), "--cluster-secret",
                             "s3cret-of-the-cluster"], r"worker at (\S+)")
    czars = []
    try:
        client = flight.connect(f"grpc://{address}")
        # A raw Flight client: refused without the secret or with a wrong one, served with it.
        for headers in ([], [(b"x-skyshard-cluster-secret", b"guess")]):
            with pytest.raises(flight.FlightUnauthenticatedError):
                list(client.do_action(flight.Action("health", b""), flight.FlightCallOptions(headers=headers)))
        with pytest.raises(flight.FlightUnauthenticatedError):
            list(client.do_get(flight.Ticket(b"anything")))
        right = flight.FlightCallOptions(headers=[(b"x-skyshard-cluster-secret", b"s3cret-of-the-cluster")])
        list(client.do_action(flight.Action("health", b""), right))
        # Its czar, given the secret, answers; a czar with a wrong one gets a clear refusal, not a result.
        for secret, expected in (("s3cret-of-the-cluster", 200), ("wrong", None)):
            proc, url = start(["czar", "--port", "0", "--data-dir", str(data_dir), "--workers", address,
                               "--replicas", "1", "--cluster-secret", secret, "--jobs-dir", str(tmp_path / secret)])
            czars.append(proc)
            status, _, body = sync_count(url, {})
            if expected:
                assert status == 200 and body.split()[1] == str(ROWS), body[:300]
            else:
                assert status in (403, 503) and 'value="ERROR"' in body and "cluster secret" in body, body[:400]
    finally:
        for p in [worker, *czars]:
            p.kill()
            p.wait()


def test_astroquery_tapplus_login(optional, data):
    # astroquery logs in over HTTPS only (a deployment puts TLS in front of skyshard); here its secure connection
    # is pointed at the plain-HTTP test server, and everything else is astroquery's own: the login form, the
    # SESSION cookie it keeps, the async job it runs with it.
    import http.client
    from astroquery.utils.tap.core import TapPlus
    _, tokens = data
    parts = urllib.parse.urlparse(optional)
    tap = TapPlus(url=optional, verbose=False)
    # Once logged in astroquery makes every connection a secure one: all of them go to the test server.
    handler = tap._TapPlus__getconnhandler()._TapConn__connectionHandler
    handler.get_connection_secure = lambda verbose=False: http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    tap.login(user="ada", password=tokens["ada"])
    job = tap.launch_job_async(COUNT, verbose=False)
    assert job.get_results()["n"][0] == ROWS
    status, _, body = call(f"{optional}/async/{job.jobid}", headers=bearer(tokens["ada"]))
    assert status == 200 and "<uws:ownerId>ada</uws:ownerId>" in body, body[:500]
    assert call(f"{optional}/async/{job.jobid}", headers=bearer(tokens["bob"]))[0] == 403


def test_cadctap_with_a_token(optional, data):
    # CADC's command line client (pip install cadctap) reads the capabilities' securityMethods and sends the token.
    _, tokens = data
    cadc = shutil.which("cadc-tap")
    assert cadc, "cadc-tap is not installed (pip install -r tests/python/requirements.txt)"
    query = [cadc, "query", "-s", optional, "SELECT COUNT(*) AS n FROM sky.object"]
    out = subprocess.run(query[:2] + ["--token", tokens["ada"]] + query[2:], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and str(ROWS) in out.stdout.split(), out.stdout + out.stderr
    wrong = tokens["ada"][:-1] + ("0" if tokens["ada"][-1] != "0" else "1")
    out = subprocess.run(query[:2] + ["--token", wrong] + query[2:], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "not valid" in out.stdout + out.stderr, out.stdout + out.stderr


def create_job(url, form, headers):
    """(status, job URL or None, body) of a job creation, without following its redirect."""
    r = requests.post(url + "/async", data=form, headers=headers, allow_redirects=False, timeout=60)
    return r.status_code, r.headers.get("Location"), r.text


def wait_for_audit(check, timeout=120):
    """The audit lines, once one passes `check` (a line is written when its response has been sent in full)."""
    import time
    deadline = time.time() + timeout
    while True:
        lines = [json.loads(line) for line in AUDIT["path"].read_text().splitlines()]
        if any(check(l) for l in lines) or time.time() > deadline:
            return lines
        time.sleep(0.1)


def test_audit_lines_count_rows_bytes_and_name_the_query(optional, data):
    import hashlib
    _, tokens = data
    status, _, body = sync_count(optional, bearer(tokens["ada"]))
    assert status == 200
    fingerprint = hashlib.sha256(COUNT.encode()).hexdigest()[:16]
    mine = lambda l: (l["who"] == "user ada" and l.get("path") == "/tap/sync" and l.get("query") == fingerprint
                      and l["bytes"] == len(body.encode()))
    lines = wait_for_audit(mine)
    line = next((l for l in lines if mine(l)), lines[-3:])
    assert line["rows"] == 1, line
    # An async job: the creating request names the job; its end gets a line of its own with rows and bytes.
    query = "SELECT TOP 7 id FROM sky.object"
    form = {"LANG": "ADQL", "QUERY": query, "PHASE": "RUN"}
    status, location, _ = create_job(optional, form, bearer(tokens["ada"]))
    assert status == 303
    job = location.rsplit("/", 1)[1]
    ended = lambda l: l.get("event") == "job ended" and l.get("job") == job
    lines = wait_for_audit(ended, timeout=60)
    end = next(l for l in lines if ended(l))
    assert end["who"] == "user ada" and end["phase"] == "COMPLETED" and end["rows"] == 7 and end["bytes"] > 0, end
    assert end["query"] == hashlib.sha256(query.encode()).hexdigest()[:16]
    created = [l for l in lines if l.get("job") == job and l.get("method") == "POST"]
    assert created and created[0]["status"] == 303, lines[-5:]
    assert query not in AUDIT["path"].read_text()  # fingerprints, never the text


def test_a_group_quota_bounds_its_members_together(optional, data):
    data_dir, tokens = data
    run("user", "add", "--data-dir", str(data_dir), "cy", "--group", "optics")
    cy = run("token", "create", "--data-dir", str(data_dir), "--user", "cy").strip()
    out = run("user", "quota", "--data-dir", str(data_dir), "--group", "optics", "--results-mb", "1")
    assert "group optics: results 1 MiB" in out, out
    # ada (of optics) keeps a result of more than 1 MiB: now the group's share of kept results is used up.
    big = "SELECT a.id, a.ra, a.dec, b.id AS b_id FROM sky.object AS a, sky.object AS b WHERE b.id < 20"
    form = lambda q: {"LANG": "ADQL", "QUERY": q, "PHASE": "RUN", "MAXREC": "1000000"}
    status, job, _ = create_job(optional, form(big), bearer(tokens["ada"]))
    assert status == 303
    for _ in range(120):
        status, _, phase = call(job + "/phase", headers=bearer(tokens["ada"]))
        if phase.strip() not in ("QUEUED", "EXECUTING"):
            break
        import time
        time.sleep(0.5)
    assert phase.strip() == "COMPLETED", phase
    me = json.loads(call(optional.replace("/tap", "/api/v1/me"), headers=bearer(cy))[2])
    group = me["group_shares"][0]
    assert group["counted_as"] == "group optics" and group["result_bytes"]["used"] > (1 << 20), me
    assert group["result_bytes"]["limit"] == 1 << 20 and me["shares"]["result_bytes"]["used"] == 0, me
    # cy, of the same group, is refused, naming the group; bob, of none, is served.
    small = form("SELECT TOP 1 id FROM sky.object")
    status, _, body = create_job(optional, small, bearer(cy))
    assert status == 429 and "group optics" in body and 'value="ERROR"' in body, (status, body[:400])
    assert create_job(optional, small, bearer(tokens["bob"]))[0] == 303
    # ada deletes her job: the group has room again.
    assert call(job, "DELETE", headers=bearer(tokens["ada"]))[0] in (200, 303)
    assert create_job(optional, small, bearer(cy))[0] == 303
    run("user", "quota", "--data-dir", str(data_dir), "--group", "optics", "--results-mb", "0")


def test_a_trusted_proxy_names_the_caller_and_nobody_else_can(data, tmp_path):
    import http.client
    data_dir, tokens = data
    proc, url = start(["serve", "--data-dir", str(data_dir), "--port", "0", "--workers", "1", "--auth", "required",
                       "--jobs-dir", str(tmp_path / "jobs"), "--trusted-proxy", "127.0.0.2"])
    try:
        parsed = urllib.parse.urlparse(url)

        def from_address(source, path, headers, method="GET", body=None):
            conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30,
                                              source_address=(source, 0))
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            out = (r.status, r.getheaders(), r.read().decode())
            conn.close()
            return out

        who = {"X-Auth-Request-User": "ada", "X-Forwarded-For": "198.51.100.1, 203.0.113.9"}
        # From the proxy's address its header is believed: ada, with her groups; never admin.
        status, _, body = from_address("127.0.0.2", "/api/v1/me", who)
        me = json.loads(body)
        assert status == 200 and me["user"] == "ada" and me["groups"] == ["optics"], body
        assert "admin" not in me["scopes"], me
        status, _, body = from_address("127.0.0.2", "/tap/sync?LANG=ADQL&RESPONSEFORMAT=csv&QUERY="
                                       + urllib.parse.quote(COUNT), who)
        assert status == 200 and body.split()[1] == str(ROWS), body[:300]
        # The same headers from anywhere else count for nothing: --auth required refuses them.
        status, _, body = from_address("127.0.0.1", "/api/v1/me", who)
        assert status == 401, (status, body[:300])
        # A name that is not a user name is refused, not taken.
        status, _, body = from_address("127.0.0.2", "/api/v1/me", {"X-Auth-Request-User": "../root"})
        assert status == 403 and 'value="ERROR"' in body, (status, body[:300])
        # Behind the proxy, a login over HTTPS sets a Secure cookie.
        form = urllib.parse.urlencode({"username": "bob", "password": tokens["bob"]})
        status, headers, _ = from_address("127.0.0.2", "/tap/login",
                                          {"Content-Type": "application/x-www-form-urlencoded",
                                           "X-Forwarded-Proto": "https"}, "POST", form)
        cookie = dict(headers)["Set-Cookie"] if "Set-Cookie" in dict(headers) else dict(headers).get("set-cookie")
        assert status == 200 and "Secure" in cookie, (status, headers)
    finally:
        proc.kill()
        proc.wait()


def test_anonymous_callers_behind_a_trusted_proxy_are_counted_by_their_own_address(data, tmp_path):
    import http.client
    proc, url = start(["serve", "--data-dir", str(data[0]), "--port", "0", "--workers", "1", "--auth", "optional",
                       "--jobs-dir", str(tmp_path / "jobs"), "--trusted-proxy", "127.0.0.2"])
    try:
        parsed = urllib.parse.urlparse(url)
        for source, expected in (("127.0.0.2", "address 203.0.113.9"), ("127.0.0.1", "address 127.0.0.1")):
            conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30, source_address=(source, 0))
            conn.request("GET", "/api/v1/me", headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.9"})
            me = json.loads(conn.getresponse().read())
            conn.close()
            assert me["anonymous"] and me["counted_as"] == expected, (source, me)
    finally:
        proc.kill()
        proc.wait()
