"""Hostile input against a real `skyshard serve`: every request gets a 4xx (or a 503) with a DALI error document,
never a dropped connection or a 500, and the service answers a normal query after each. The catch-panic layer's
counter (`/health`) must stay at zero: a panic it caught is a bug even when the client got a clean answer."""

import http.client
import json
import urllib.parse

import pytest

from skyshard_processes import run, start

ROWS = 5000


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    run("gen", "--rows", str(ROWS), "--out", str(base / "rel"))
    data = base / "data"
    run("ingest", "--data-dir", str(data), "--table", "sky.object", "--input", str(base / "rel/object.parquet"),
        "--ra", "ra", "--dec", "dec", "--id", "id", "--chunk-rows", "500", "--quiet")
    proc, url = start(["serve", "--data-dir", str(data), "--port", "0", "--workers", "2",
                       "--header-timeout", "2", "--body-timeout", "2"])
    parts = urllib.parse.urlparse(url)
    yield parts.hostname, parts.port
    proc.kill()
    proc.wait()


def request(service, method, path, body=b"", headers=None):
    """One request on its own connection: (status, body). A dropped connection raises."""
    host, port = service
    conn = http.client.HTTPConnection(host, port, timeout=60)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


def form(fields):
    return urllib.parse.urlencode(fields).encode()


def sync(service, query, **extra):
    fields = {"LANG": "ADQL", "QUERY": query, **extra}
    return request(service, "POST", "/tap/sync", form(fields),
                   {"Content-Type": "application/x-www-form-urlencoded"})


def assert_refused(status, body, allowed=(400, 404, 413, 503)):
    assert status in allowed, (status, body[:300])
    assert b'<INFO name="QUERY_STATUS" value="ERROR">' in body, body[:300]


def assert_alive(service):
    status, body = sync(service, "SELECT COUNT(*) AS n FROM sky.object", RESPONSEFORMAT="csv")
    assert status == 200, body[:300]
    assert body.decode().splitlines()[1] == str(ROWS)


HOSTILE_QUERIES = [
    # Geometry off the sphere or out of range: refused before pruning (cdshealpix panics on such values).
    "SELECT id FROM sky.object WHERE CONTAINS(POINT(ra, dec), CIRCLE(10, 95, 1)) = 1",
    "SELECT id FROM sky.object WHERE CONTAINS(POINT(ra, dec), CIRCLE(10, -90.5, 1)) = 1",
    "SELECT id FROM sky.object WHERE CONTAINS(POINT(ra, dec), CIRCLE(10, 10, -1)) = 1",
    "SELECT id FROM sky.object WHERE CONTAINS(POINT(ra, dec), CIRCLE(10, 10, 1e308)) = 1",
    "SELECT id FROM sky.object WHERE CONTAINS(POINT(ra, dec), CIRCLE(1e400, 10, 1)) = 1",
    "SELECT id FROM sky.object WHERE DISTANCE(POINT(ra, dec), POINT(10, -100)) < 1",
    "SELECT id FROM sky.object WHERE CONTAINS(POINT(ra, dec), BOX(10, 91, 1, 1)) = 1",
    "SELECT id FROM sky.object WHERE CONTAINS(POINT(ra, dec), BOX(10, 0, -1, 1)) = 1",
    "SELECT id FROM sky.object WHERE CONTAINS(POINT(ra, dec), POLYGON(10, 95, 11, 96, 12, 97)) = 1",
    "SELECT id FROM sky.object WHERE CONTAINS(POINT(ra, dec), POLYGON(10, 10, 11)) = 1",
    "SELECT id FROM sky.object WHERE CONTAINS(POINT(ra, dec), POLYGON(POINT(1, 100), POINT(2, 0), POINT(3, 1))) = 1",
    "SELECT id FROM sky.object WHERE CONTAINS(CIRCLE(1, 2, 3), POINT(ra, dec)) = 'x'",
    # Size and depth.
    "SELECT id FROM sky.object WHERE id = " + "+".join(["1"] * 20000),
    "SELECT id FROM sky.object WHERE " + " OR ".join(f"id = {i}" for i in range(5000)),
    "SELECT id FROM sky.object WHERE " + " AND ".join("ra > 0" for _ in range(3000)),
    "SELECT " + "(" * 5000 + "1" + ")" * 5000 + " FROM sky.object",
    "SELECT id FROM sky.object WHERE id IN (" + ",".join(["(" * 300 + "1" + ")" * 300]) + ")",
    "SELECT id FROM " + " NATURAL JOIN ".join(["sky.object"] * 1500),
    "SELECT 1 FROM sky.object WHERE " + "NOT " * 5000 + "ra > 0",
    "SELECT id FROM sky.object WHERE id IN (SELECT id FROM sky.object WHERE id IN (" * 300 + "1" + "))" * 300,
    "SELECT '" + "x" * (2 << 20) + "' FROM sky.object",
    # Not ADQL, or wrong.
    "SELECT TOP 5 DISTINCT id FROM sky.object",
    "SELECT id FROM sky.object LIMIT 5",
    "SELECT id::int FROM sky.object",
    "DROP TABLE sky.object",
    "SELECT id FROM sky.object; DELETE FROM sky.object",
    "SELECT nosuch FROM sky.object",
    "SELECT id FROM nosuch.table",
    "SELECT id FROM sky.object WHERE ra = 'not a number'",
    "SELECT CAST('abc' AS INTEGER) FROM sky.object",
    "SELECT \x00 FROM sky.object",
    "SELECT id FROM sky.object WHERE ra \u2264 10",
    "\ufeffSELECT",
    "",
    "   ",
    "SELECT",
    "SELECT 1/0 FROM sky.object",
    "SELECT TOP -1 id FROM sky.object",
    "SELECT TOP 99999999999999999999999 id FROM sky.object",
    "SELECT id FROM sky.object ORDER BY 99",
    "SELECT ivo_healpix_index(99, ra, dec) FROM sky.object",
    "SELECT ivo_healpix_center(-1, 5) FROM sky.object",
    "SELECT ivo_nosuch(ra) FROM sky.object",
    "SELECT * FROM TAP_UPLOAD.nothing",
    "WITH a AS (SELECT * FROM a) SELECT * FROM a",
]


@pytest.mark.parametrize("query", HOSTILE_QUERIES, ids=range(len(HOSTILE_QUERIES)))
def test_hostile_queries_are_refused_cleanly(service, query):
    status, body = sync(service, query)
    assert_refused(status, body)
    assert_alive(service)


HOSTILE_PARAMETERS = [
    {"LANG": "ADQL"},
    {"QUERY": "SELECT 1"},
    {"LANG": "PQL", "QUERY": "SELECT 1"},
    {"LANG": "ADQL", "QUERY": "SELECT 1", "MAXREC": "-1"},
    {"LANG": "ADQL", "QUERY": "SELECT 1", "MAXREC": "1e3"},
    {"LANG": "ADQL", "QUERY": "SELECT 1", "MAXREC": "99999999999999999999999999"},
    {"LANG": "ADQL", "QUERY": "SELECT 1", "RESPONSEFORMAT": "application/x-nonsense"},
    {"LANG": "ADQL", "QUERY": "SELECT 1", "UPLOAD": "t"},
    {"LANG": "ADQL", "QUERY": "SELECT 1", "UPLOAD": "1t,param:x"},
    {"LANG": "ADQL", "QUERY": "SELECT 1", "UPLOAD": "t,param:missing"},
    {"LANG": "ADQL", "QUERY": "SELECT 1", "UPLOAD": "t,ftp://example.org/x"},
    {"LANG": "ADQL", "QUERY": "SELECT 1", "UPLOAD": "t,http://127.0.0.1:1/x"},
    {"LANG": "ADQL", "QUERY": "SELECT 1", "UPLOAD": "t,http://user:pw@example.org/x"},
    {"LANG": "ADQL", "QUERY": "SELECT 1", "UPLOAD": "t,http://[::1]/x"},
    {"LANG": "ADQL", "QUERY": "SELECT 1", "UPLOAD": "t,http://169.254.169.254/latest/meta-data"},
]


@pytest.mark.parametrize("fields", HOSTILE_PARAMETERS, ids=range(len(HOSTILE_PARAMETERS)))
def test_hostile_parameters_are_refused_cleanly(service, fields):
    status, body = request(service, "POST", "/tap/sync", form(fields),
                           {"Content-Type": "application/x-www-form-urlencoded"})
    assert_refused(status, body)
    assert_alive(service)


def multipart(parts, boundary="XyZzy"):
    out = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def votable(fields, rows, arraysize=None):
    head = "".join(f'<FIELD name="{n}" datatype="{t}"{(" arraysize=" + chr(34) + arraysize + chr(34)) if arraysize else ""}/>'
                   for n, t in fields)
    body = "".join("<TR>" + "".join(f"<TD>{v}</TD>" for v in r) + "</TR>" for r in rows)
    return (f'<?xml version="1.0"?><VOTABLE version="1.4"><RESOURCE><TABLE>{head}<DATA><TABLEDATA>{body}'
            f"</TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>").encode()


CROSS_MATCH = ("SELECT u.name, o.id FROM TAP_UPLOAD.t AS u JOIN sky.object AS o "
               "ON CONTAINS(POINT(o.ra, o.dec), CIRCLE(u.ra, u.dec, 0.5)) = 1")

HOSTILE_UPLOADS = [
    b"",
    b"not xml at all",
    b"<VOTABLE><RESOURCE><TABLE><FIELD name='a' datatype='int'/><DATA><TABLEDATA><TR><TD>1",
    votable([("name", "char"), ("ra", "double"), ("dec", "double")], [("a", 10, 120), ("b", 10, -95)], "*"),
    votable([("name", "char"), ("ra", "double"), ("dec", "double")], [("a", "NaN", "NaN"), ("b", "Inf", 0)], "*"),
    votable([("name", "char"), ("ra", "double"), ("dec", "double")], [("a", "x", "y")], "*"),
    votable([("x", "int")], [(1,)], "999999999999"),
    votable([("x", "double")], [(1,)], "4294967295x4294967295"),
    b"<?xml version='1.0'?><!DOCTYPE v [<!ENTITY a '" + b"x" * 1000 + b"'>]><VOTABLE>&a;&a;&a;</VOTABLE>",
    (b'<?xml version="1.0"?><VOTABLE version="1.4"><RESOURCE><TABLE><FIELD name="x" datatype="int"/>'
     b'<DATA><BINARY2><STREAM encoding="base64">!!!notbase64!!!</STREAM></BINARY2></DATA></TABLE></RESOURCE></VOTABLE>'),
    (b'<?xml version="1.0"?><VOTABLE version="1.4"><RESOURCE><TABLE><FIELD name="x" datatype="int"/>'
     b'<DATA><BINARY><STREAM encoding="base64">AAA=</STREAM></BINARY></DATA></TABLE></RESOURCE></VOTABLE>'),
]


@pytest.mark.parametrize("content", HOSTILE_UPLOADS, ids=range(len(HOSTILE_UPLOADS)))
def test_hostile_uploads_are_refused_or_answered(service, content):
    body = multipart([("LANG", None, b"ADQL"), ("QUERY", None, CROSS_MATCH.encode()),
                      ("UPLOAD", None, b"t,param:tab"), ("tab", "t.xml", content)])
    status, answer = request(service, "POST", "/tap/sync", body,
                             {"Content-Type": "multipart/form-data; boundary=XyZzy"})
    # A table whose positions are off the sphere matches nothing it could not match on one node; a broken one
    # is refused. Either way: a clean answer.
    if status != 200:
        assert_refused(status, answer)
    assert_alive(service)


HOSTILE_REQUESTS = [
    ("POST", "/tap/sync", b"--XyZzy\r\nContent-Disposition: form-data\r\n\r\nx\r\n--XyZzy--\r\n",
     {"Content-Type": "multipart/form-data; boundary=XyZzy"}),
    ("POST", "/tap/sync", b"--XyZzy\r\nContent-Disposition: form-data; name=\"LANG\"\r\n\r\nADQL",
     {"Content-Type": "multipart/form-data; boundary=XyZzy"}),
    ("POST", "/tap/sync", b"LANG=ADQL&QUERY=SELECT+1", {"Content-Type": "multipart/form-data"}),
    ("POST", "/tap/sync", b"\xff\xfe\x00garbage", {"Content-Type": "application/x-www-form-urlencoded"}),
    ("POST", "/tap/sync", b"LANG=ADQL&QUERY=%ZZ%", {"Content-Type": "application/x-www-form-urlencoded"}),
    ("GET", "/tap/sync?LANG=ADQL&QUERY=" + "%28" * 3000, b"", {}),
    ("POST", "/tap/sync", b"&".join([b"LANG=ADQL&QUERY=SELECT+1"] + [b"x=1"] * 5000),
     {"Content-Type": "application/x-www-form-urlencoded"}),
    ("POST", "/tap/sync", b"".join(b"--XyZzy\r\nContent-Disposition: form-data; name=\"p%d\"\r\n\r\nv\r\n" % i
                                   for i in range(3000)) + b"--XyZzy--\r\n",
     {"Content-Type": "multipart/form-data; boundary=XyZzy"}),
    ("GET", "/tap/async/../../etc/passwd", b"", {}),
    ("GET", "/tap/async/%00", b"", {}),
    ("GET", "/tap/tables/" + "x" * 5000, b"", {}),
    ("GET", "/tap/async/nosuchjob/results/result", b"", {}),
    ("POST", "/tap/async/nosuchjob/phase", b"PHASE=RUN", {"Content-Type": "application/x-www-form-urlencoded"}),
    ("GET", "/scs/sky.object?RA=10&DEC=95&SR=1", b"", {}),
    ("GET", "/scs/sky.object?RA=nan&DEC=0&SR=1", b"", {}),
    ("GET", "/scs/sky.object?RA=10&DEC=0&SR=-1", b"", {}),
    ("GET", "/scs/sky.object?RA=10&DEC=0&SR=1e999", b"", {}),
    ("GET", "/scs/nosuch.table?RA=10&DEC=0&SR=1", b"", {}),
]


@pytest.mark.parametrize("method,path,body,headers", HOSTILE_REQUESTS, ids=range(len(HOSTILE_REQUESTS)))
def test_hostile_requests_are_refused_cleanly(service, method, path, body, headers):
    status, answer = request(service, method, path, body, headers)
    if path.startswith("/scs"):
        # Simple Cone Search 1.03 reports errors in a VOTable with an INFO named Error, under HTTP 200.
        assert status == 200 and b'<INFO ID="Error" name="Error"' in answer, (status, answer[:300])
    else:
        assert status in (400, 404, 405, 413, 503), (status, answer[:300])
        assert b"QUERY_STATUS" in answer or status == 405, answer[:300]
    assert_alive(service)


def test_a_body_over_the_limit_is_refused_before_it_is_read(service):
    # 70 MiB announced (the limit is 64 MiB of uploads plus 1 MiB): refused on the announcement, with a DALI
    # document, without reading the body.
    import socket
    host, port = service
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(b"POST /tap/sync HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                     + f"Content-Length: {70 << 20}\r\nConnection: close\r\n\r\n".encode() + b"LANG=ADQL&QUERY=")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert b'<INFO name="QUERY_STATUS" value="ERROR">' in body, body[:300]
    assert_alive(service)


def raw_exchange(service, data, pause_after=None, pause=0.0):
    """Sends raw bytes (pausing `pause` seconds after the first `pause_after` bytes), then reads until the server
    closes: the answer, or b"" when the connection was dropped without one."""
    import socket
    import time
    host, port = service
    with socket.create_connection((host, port), timeout=30) as sock:
        if pause_after is not None:
            sock.sendall(data[:pause_after])
            time.sleep(pause)
            data = data[pause_after:]
        try:
            sock.sendall(data)
        except OSError:
            pass
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
    return answer


HEAD = b"GET /tap/availability HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"


@pytest.mark.parametrize("extra", [
    b"".join(b"X-Filler-%d: y\r\n" % i for i in range(150)),   # too many fields
    b"Cookie: " + b"a" * 40_000 + b"\r\n",                     # one field past the byte cap
], ids=["150 fields", "40 KB field"])
def test_oversized_headers_are_refused_with_a_dali_document(service, extra):
    answer = raw_exchange(service, HEAD + extra + b"\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431"), head[:200]
    assert b'<INFO name="QUERY_STATUS" value="ERROR">' in body, body[:300]
    assert_alive(service)


def test_a_header_section_past_the_buffer_is_refused(service):
    # 2 MB of headers: hyper's buffer limit answers before any handler (a bare 431), and nothing is kept.
    answer = raw_exchange(service, HEAD + b"Cookie: " + b"a" * 2_000_000 + b"\r\n\r\n")
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert_alive(service)


def test_a_client_trickling_its_headers_is_cut_off(service):
    # The fixture's --header-timeout is 2 s: a head still incomplete after 4 s is not waited for.
    import time
    t = time.monotonic()
    answer = raw_exchange(service, HEAD + b"X-Slow: 1\r\n\r\n", pause_after=len(HEAD), pause=4)
    assert time.monotonic() - t < 20
    assert not answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert_alive(service)


def test_a_body_that_stops_arriving_gets_408(service):
    # The fixture's --body-timeout is 2 s: the body announced 100 bytes and sent 16.
    head = (b"POST /tap/sync HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: 100\r\nConnection: close\r\n\r\n")
    answer = raw_exchange(service, head + b"LANG=ADQL&QUERY=" + b"x" * 84, pause_after=len(head) + 16, pause=5)
    status, _, body = answer.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 408"), status[:200]
    assert b'<INFO name="QUERY_STATUS" value="ERROR">' in body, body[:300]
    assert_alive(service)


HOSTILE_UWS = [
    {"DESTRUCTION": "not a date"},
    {"DESTRUCTION": "99999-01-01T00:00:00Z"},
    {"DESTRUCTION": "2001-02-29"},
    {"EXECUTIONDURATION": "-5"},
    {"EXECUTIONDURATION": "99999999999999999999999"},
    {"EXECUTIONDURATION": "ten"},
    {"PHASE": "EXPLODE"},
]


@pytest.mark.parametrize("fields", HOSTILE_UWS, ids=range(len(HOSTILE_UWS)))
def test_hostile_uws_parameters_never_break_a_job(service, fields):
    status, _ = request(service, "POST", "/tap/async",
                        form({"LANG": "ADQL", "QUERY": "SELECT 1 AS one", **fields}),
                        {"Content-Type": "application/x-www-form-urlencoded"})
    # Refused, or a job created with the value ignored or capped: never a 500.
    assert status in (303, 400), status
    assert_alive(service)


def test_no_panic_was_caught(service):
    status, body = request(service, "GET", "/health")
    assert status == 200
    assert json.loads(body)["panics_caught"] == 0
