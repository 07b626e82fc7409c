"""Hostile input against a real `skyshard serve`: every request gets its 4xx with a DALI error document that says
what is wrong, never a dropped connection, a 503 or a 500, and the service answers a normal query after each. The catch-panic layer's
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


def error_message(body):
    """The message of a DALI error document (the INFO named QUERY_STATUS), unescaped."""
    import html
    import re
    found = re.search(rb'<INFO name="QUERY_STATUS" value="ERROR">(.*?)</INFO>', body, re.S)
    assert found, body[:300]
    return html.unescape(found.group(1).decode())


def assert_refused(status, body, want_status, want_message):
    """Refused with this status and a DALI error document that says this (the part of the message a user acts on)."""
    assert status == want_status, (status, body[:300])
    message = error_message(body)
    assert want_message in message, message[:300]


def assert_alive(service):
    status, body = sync(service, "SELECT COUNT(*) AS n FROM sky.object", RESPONSEFORMAT="csv")
    assert status == 200, body[:300]
    assert body.decode().splitlines()[1] == str(ROWS)


OUT_OF_RANGE_DEC = "it must be between -90 and 90 degrees"
TOO_LONG = "the query chains more than 1000 operators"
TOO_DEEP = "the query nests deeper than 200 levels"

# Each query with the status and the part of the message that says what is wrong (with the position where the
# parser knows one). All are the client's fault: 400, never a 503 or a 500.
HOSTILE_QUERIES = [
    # Geometry off the sphere or out of range: refused before pruning (cdshealpix panics on such values).
    ("SELECT id FROM sky.object WHERE CONTAINS(POINT(ra, dec), CIRCLE(10, 95, 1)) = 1",
     "1:69: the declination of the centre of CIRCLE is 95; " + OUT_OF_RANGE_DEC),
    ("SELECT id FROM sky.object WHERE CONTAINS(POINT(ra, dec), CIRCLE(10, -90.5, 1)) = 1",
     "1:69: the declination of the centre of CIRCLE is -90.5; " + OUT_OF_RANGE_DEC),
    ("SELECT id FROM sky.object WHERE CONTAINS(POINT(ra, dec), CIRCLE(10, 10, -1)) = 1",
     "1:73: the radius of CIRCLE is -1; it must be between 0 and 180 degrees"),
    ("SELECT id FROM sky.object WHERE CONTAINS(POINT(ra, dec), CIRCLE(10, 10, 1e308)) = 1",
     "1:73: the radius of CIRCLE is 1e308; it must be between 0 and 180 degrees"),
    ("SELECT id FROM sky.object WHERE CONTAINS(POINT(ra, dec), CIRCLE(1e400, 10, 1)) = 1",
     "1:65: the number 1e400 is beyond the range of a double"),
    ("SELECT id FROM sky.object WHERE DISTANCE(POINT(ra, dec), POINT(10, -100)) < 1",
     "1:68: the declination of POINT is -100; " + OUT_OF_RANGE_DEC),
    ("SELECT id FROM sky.object WHERE CONTAINS(POINT(ra, dec), BOX(10, 91, 1, 1)) = 1",
     "1:66: the declination of the centre of BOX is 91; " + OUT_OF_RANGE_DEC),
    ("SELECT id FROM sky.object WHERE CONTAINS(POINT(ra, dec), BOX(10, 0, -1, 1)) = 1",
     "1:69: the width of BOX is -1; it must be between 0 and 180 degrees"),
    ("SELECT id FROM sky.object WHERE CONTAINS(POINT(ra, dec), POLYGON(10, 95, 11, 96, 12, 97)) = 1",
     "1:70: the declination of vertex 1 of POLYGON is 95; " + OUT_OF_RANGE_DEC),
    ("SELECT id FROM sky.object WHERE CONTAINS(POINT(ra, dec), POLYGON(10, 10, 11)) = 1",
     "1:58: POLYGON takes pairs of coordinates for at least three vertices, found 3"),
    ("SELECT id FROM sky.object WHERE CONTAINS(POINT(ra, dec), POLYGON(POINT(1, 100), POINT(2, 0), POINT(3, 1))) = 1",
     "1:75: the declination of POINT is 100; " + OUT_OF_RANGE_DEC),
    ("SELECT id FROM sky.object WHERE CONTAINS(CIRCLE(1, 2, 3), POINT(ra, dec)) = 'x'",
     "Cannot cast string 'x' to value of Int32 type"),
    # Size and depth.
    ("SELECT id FROM sky.object WHERE id = " + "+".join(["1"] * 20000), "1:2041: " + TOO_LONG),
    ("SELECT id FROM sky.object WHERE " + " OR ".join(f"id = {i}" for i in range(5000)), "1:11946: " + TOO_LONG),
    ("SELECT id FROM sky.object WHERE " + " AND ".join("ra > 0" for _ in range(3000)), "1:11051: " + TOO_LONG),
    ("SELECT " + "(" * 5000 + "1" + ")" * 5000 + " FROM sky.object", "1:108: " + TOO_DEEP),
    ("SELECT id FROM sky.object WHERE id IN (" + ",".join(["(" * 300 + "1" + ")" * 300]) + ")", "1:140: " + TOO_DEEP),
    ("SELECT id FROM " + " NATURAL JOIN ".join(["sky.object"] * 1500), "1:24051: " + TOO_LONG),
    ("SELECT 1 FROM sky.object WHERE " + "NOT " * 5000 + "ra > 0", "1:828: " + TOO_DEEP),
    ("SELECT id FROM sky.object WHERE id IN (SELECT id FROM sky.object WHERE id IN (" * 300 + "1" + "))" * 300,
     "1:3901: " + TOO_DEEP),
    ("SELECT '" + "x" * (2 << 20) + "' FROM sky.object",
     "1:1: the query text is 2097177 bytes; the limit is 1048576"),
    # Not ADQL, or wrong.
    ("SELECT TOP 5 DISTINCT id FROM sky.object", "1:14: DISTINCT goes before TOP in ADQL"),
    ("SELECT id FROM sky.object LIMIT 5", "1:27: LIMIT is not ADQL: use SELECT TOP n"),
    ("SELECT id::int FROM sky.object", "1:10: '::' casts are not ADQL: use CAST(value AS type)"),
    ("DROP TABLE sky.object", "1:1: DROP is not ADQL"),
    ("SELECT id FROM sky.object; DELETE FROM sky.object", "1:28: only one query is allowed"),
    ("SELECT nosuch FROM sky.object", "1:8: column nosuch not found; columns here: sky.object.id"),
    ("SELECT id FROM nosuch.table", "1:23: expected a table name after '.', found the reserved word TABLE"),
    ("SELECT id FROM sky.object WHERE ra = 'not a number'", "Cannot cast string 'not a number' to value of Float64"),
    ("SELECT CAST('abc' AS INTEGER) FROM sky.object", "Cannot cast string 'abc' to value of Int32"),
    ("SELECT \x00 FROM sky.object", "1:8: unexpected character '\x00'"),
    ("SELECT id FROM sky.object WHERE ra \u2264 10", "1:36: unexpected character '\u2264'"),
    ("\ufeffSELECT", "1:1: unexpected character '\ufeff'"),
    ("", "QUERY is missing"),
    ("   ", "QUERY is missing"),
    ("SELECT", "1:7: expected a value: a column, a number, a string, a function call or '(', found end of query"),
    ("SELECT 1/0 FROM sky.object", "Divide by zero"),
    ("SELECT TOP -1 id FROM sky.object", "1:12: TOP takes an unsigned integer"),
    ("SELECT TOP 99999999999999999999999 id FROM sky.object", "1:12: 99999999999999999999999 is too large"),
    ("SELECT id FROM sky.object ORDER BY 99", "Order by column out of bounds, specified: 99, max: 1"),
    ("SELECT ivo_healpix_index(99, ra, dec) FROM sky.object", "a HEALPix depth must be between 0 and 29, found 99"),
    ("SELECT ivo_healpix_center(-1, 5) FROM sky.object", "a HEALPix depth must be between 0 and 29, found -1"),
    ("SELECT ivo_nosuch(ra) FROM sky.object", "1:8: function ivo_nosuch is not available on this service"),
    ("SELECT * FROM TAP_UPLOAD.nothing", "1:15: table TAP_UPLOAD.nothing not found (known tables: sky.object"),
    ("WITH a AS (SELECT * FROM a) SELECT * FROM a", "1:26: table a not found"),
]


@pytest.mark.parametrize("query,message", HOSTILE_QUERIES, ids=range(len(HOSTILE_QUERIES)))
def test_hostile_queries_are_refused_cleanly(service, query, message):
    status, body = sync(service, query)
    assert_refused(status, body, 400, message)
    assert_alive(service)


HOSTILE_PARAMETERS = [
    ({"LANG": "ADQL"}, "QUERY is missing"),
    ({"QUERY": "SELECT 1"}, "LANG is missing: this service speaks LANG=ADQL"),
    ({"LANG": "PQL", "QUERY": "SELECT 1"}, "LANG=PQL is not supported: this service speaks ADQL"),
    ({"LANG": "ADQL", "QUERY": "SELECT 1", "MAXREC": "-1"}, "MAXREC=-1 is not a non-negative integer"),
    ({"LANG": "ADQL", "QUERY": "SELECT 1", "MAXREC": "1e3"}, "MAXREC=1e3 is not a non-negative integer"),
    ({"LANG": "ADQL", "QUERY": "SELECT 1", "MAXREC": "99999999999999999999999999"},
     "MAXREC=99999999999999999999999999 is not a non-negative integer"),
    ({"LANG": "ADQL", "QUERY": "SELECT 1", "RESPONSEFORMAT": "application/x-nonsense"},
     "RESPONSEFORMAT=application/x-nonsense is not supported; this service writes application/x-votable+xml"),
    ({"LANG": "ADQL", "QUERY": "SELECT 1", "UPLOAD": "t"}, "UPLOAD=t must be NAME,URI"),
    ({"LANG": "ADQL", "QUERY": "SELECT 1", "UPLOAD": "1t,param:x"}, 'upload name "1t" is not an ADQL identifier'),
    ({"LANG": "ADQL", "QUERY": "SELECT 1", "UPLOAD": "t,param:missing"},
     "UPLOAD t names param:missing but the request has no part called missing"),
    ({"LANG": "ADQL", "QUERY": "SELECT 1", "UPLOAD": "t,ftp://example.org/x"},
     "upload t: ftp://example.org/x is neither param:PART nor an http URL"),
    ({"LANG": "ADQL", "QUERY": "SELECT 1", "UPLOAD": "t,http://127.0.0.1:1/x"},
     "upload t: 127.0.0.1:1 is a loopback or private address"),
    ({"LANG": "ADQL", "QUERY": "SELECT 1", "UPLOAD": "t,http://user:pw@example.org/x"},
     "upload t: URLs with credentials are not fetched"),
    ({"LANG": "ADQL", "QUERY": "SELECT 1", "UPLOAD": "t,http://[::1]/x"},
     "upload t: [::1] is a loopback or private address"),
    ({"LANG": "ADQL", "QUERY": "SELECT 1", "UPLOAD": "t,http://169.254.169.254/latest/meta-data"},
     "upload t: 169.254.169.254 is a loopback or private address"),
]


@pytest.mark.parametrize("fields,message", HOSTILE_PARAMETERS, ids=range(len(HOSTILE_PARAMETERS)))
def test_hostile_parameters_are_refused_cleanly(service, fields, message):
    status, body = request(service, "POST", "/tap/sync", form(fields),
                           {"Content-Type": "application/x-www-form-urlencoded"})
    assert_refused(status, body, 400, message)
    assert_alive(service)


def multipart(parts, boundary="XyZzy"):
    out = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def votable(fields, rows):
    """A TABLEDATA VOTable; `fields` are (name, datatype) or (name, datatype, arraysize)."""
    def field(name, datatype, arraysize=None):
        size = f' arraysize="{arraysize}"' if arraysize else ""
        return f'<FIELD name="{name}" datatype="{datatype}"{size}/>'
    head = "".join(field(*f) for f in fields)
    body = "".join("<TR>" + "".join(f"<TD>{v}</TD>" for v in r) + "</TR>" for r in rows)
    return (f'<?xml version="1.0"?><VOTABLE version="1.4"><RESOURCE><TABLE>{head}<DATA><TABLEDATA>{body}'
            f"</TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>").encode()


CROSS_MATCH = ("SELECT u.name, o.id FROM TAP_UPLOAD.t AS u JOIN sky.object AS o "
               "ON CONTAINS(POINT(o.ra, o.dec), CIRCLE(u.ra, u.dec, 0.5)) = 1")
POSITIONS = [("name", "char", "*"), ("ra", "double"), ("dec", "double")]
NOT_READABLE = "upload t: upload t is not a readable VOTable: "

# Each broken table with the part of the refusal that says what is broken.
HOSTILE_UPLOADS = [
    (b"", NOT_READABLE + "not a readable VOTable: no VOTABLE element"),
    (b"not xml at all", NOT_READABLE + "not a readable VOTable: no VOTABLE element"),
    (b"<VOTABLE><RESOURCE><TABLE><FIELD name='a' datatype='int'/><DATA><TABLEDATA><TR><TD>1",
     NOT_READABLE + "not a readable VOTable: the document ends inside its TABLEDATA"),
    (votable(POSITIONS, [("a", "x", "y")]), NOT_READABLE + 'VOTable row 1, field ra: "x" is not a Double'),
    (votable([("x", "int", "999999999999")], [(1,)]),
     NOT_READABLE + "VOTable field x: arraysize 999999999999 is more than the 1048576 elements one value may have"),
    (votable([("x", "double", "4294967295x4294967295")], [(1,)]),
     NOT_READABLE + "VOTable field x: arraysize 4294967295x4294967295 is more than the 1048576 elements"),
    (b"<?xml version='1.0'?><!DOCTYPE v [<!ENTITY a '" + b"x" * 1000 + b"'>]><VOTABLE>&a;&a;&a;</VOTABLE>",
     NOT_READABLE + "not a readable VOTable: the document has no TABLE"),
    ((b'<?xml version="1.0"?><VOTABLE version="1.4"><RESOURCE><TABLE><FIELD name="x" datatype="int"/>'
      b'<DATA><BINARY2><STREAM encoding="base64">!!!notbase64!!!</STREAM></BINARY2></DATA></TABLE></RESOURCE></VOTABLE>'),
     NOT_READABLE + "not a readable VOTable: the STREAM is not valid base64"),
    ((b'<?xml version="1.0"?><VOTABLE version="1.4"><RESOURCE><TABLE><FIELD name="x" datatype="int"/>'
      b'<DATA><BINARY><STREAM encoding="base64">AAA=</STREAM></BINARY></DATA></TABLE></RESOURCE></VOTABLE>'),
     NOT_READABLE + "not a readable VOTable: the binary stream ends inside row 1"),
]


def cross_match(service, table):
    body = multipart([("LANG", None, b"ADQL"), ("QUERY", None, CROSS_MATCH.encode()), ("RESPONSEFORMAT", None, b"csv"),
                      ("UPLOAD", None, b"t,param:tab"), ("tab", "t.xml", table)])
    return request(service, "POST", "/tap/sync", body, {"Content-Type": "multipart/form-data; boundary=XyZzy"})


@pytest.mark.parametrize("content,message", HOSTILE_UPLOADS, ids=range(len(HOSTILE_UPLOADS)))
def test_hostile_uploads_are_refused(service, content, message):
    status, answer = cross_match(service, content)
    assert_refused(status, answer, 400, message)
    assert_alive(service)


def test_uploaded_positions_off_the_sphere_match_nothing(service):
    # The same cross-match with a readable table: a real position matches, and positions off the sphere (a
    # declination past the pole, NaN, infinity) match nothing, as on one node; neither breaks the query.
    status, answer = sync(service, "SELECT TOP 1 id, ra, dec FROM sky.object ORDER BY id", RESPONSEFORMAT="csv")
    assert status == 200, answer[:300]
    object_id, ra, dec = answer.decode().splitlines()[1].split(",")
    status, answer = cross_match(service, votable(POSITIONS, [("real", ra, dec)]))
    assert status == 200, answer[:300]
    matched = answer.decode().splitlines()[1:]
    assert f"real,{object_id}" in matched, matched[:5]
    hostile = [("real", ra, dec), ("pole", 10, -95), ("north", 10, 120), ("nan", "NaN", "NaN"), ("inf", "Inf", 0)]
    status, answer = cross_match(service, votable(POSITIONS, hostile))
    assert status == 200, answer[:300]
    assert answer.decode().splitlines()[1:] == matched
    assert_alive(service)


MULTIPART = {"Content-Type": "multipart/form-data; boundary=XyZzy"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}

# Each request with the status and the part of the message that matters.
HOSTILE_REQUESTS = [
    ("POST", "/tap/sync", b"--XyZzy\r\nContent-Disposition: form-data\r\n\r\nx\r\n--XyZzy--\r\n", MULTIPART,
     400, "a multipart part has no name"),
    ("POST", "/tap/sync", b"--XyZzy\r\nContent-Disposition: form-data; name=\"LANG\"\r\n\r\nADQL", MULTIPART,
     400, 'the multipart/form-data body cannot be read: field "LANG" received with incomplete data'),
    ("POST", "/tap/sync", b"LANG=ADQL&QUERY=SELECT+1", {"Content-Type": "multipart/form-data"},
     400, "a multipart/form-data body needs a boundary"),
    # Not form data at all: no LANG found in it.
    ("POST", "/tap/sync", b"\xff\xfe\x00garbage", FORM, 400, "LANG is missing"),
    # A bad percent escape is kept as it stands (as browsers do): the query is the text "%ZZ%".
    ("POST", "/tap/sync", b"LANG=ADQL&QUERY=%ZZ%", FORM, 400, "1:1: '%' is not an ADQL operator"),
    ("GET", "/tap/sync?LANG=ADQL&QUERY=" + "%28" * 3000, b"", {}, 400, "1:201: the query nests deeper than 200 levels"),
    ("POST", "/tap/sync", b"&".join([b"LANG=ADQL&QUERY=SELECT+1"] + [b"x=1"] * 5000), FORM,
     400, "the request has 5002 parameters and parts; this service takes at most 1000"),
    ("POST", "/tap/sync", b"".join(b"--XyZzy\r\nContent-Disposition: form-data; name=\"p%d\"\r\n\r\nv\r\n" % i
                                   for i in range(3000)) + b"--XyZzy--\r\n", MULTIPART,
     400, "the request has 3000 parameters and parts; this service takes at most 1000"),
    # Sent as it stands (http.client does not normalise the path): no route matches it.
    ("GET", "/tap/async/../../etc/passwd", b"", {}, 404, "no such resource: the TAP service is at /tap"),
    ("GET", "/tap/async/%00", b"", {}, 404, "no job \x00 (it may have been destroyed)"),
    ("GET", "/tap/tables/" + "x" * 5000, b"", {}, 404, "no table named " + "x" * 100),
    ("GET", "/tap/async/nosuchjob/results/result", b"", {}, 404, "no job nosuchjob (it may have been destroyed)"),
    ("POST", "/tap/async/nosuchjob/phase", b"PHASE=RUN", FORM, 404, "no job nosuchjob (it may have been destroyed)"),
]


@pytest.mark.parametrize("method,path,body,headers,want_status,message", HOSTILE_REQUESTS,
                         ids=range(len(HOSTILE_REQUESTS)))
def test_hostile_requests_are_refused_cleanly(service, method, path, body, headers, want_status, message):
    status, answer = request(service, method, path, body, headers)
    assert_refused(status, answer, want_status, message)
    assert_alive(service)


def test_async_routes_answer_a_real_job(service):
    # The allowed path next to the 404s above: a job that exists is found by the same routes.
    status, headers = post_form(service, "/tap/async", {"LANG": "ADQL", "QUERY": "SELECT 1 AS one"})
    assert status == 303, (status, headers)
    job = urllib.parse.urlparse(headers["location"]).path
    status, answer = request(service, "GET", job + "/phase")
    assert status == 200 and answer.strip() == b"PENDING", (status, answer[:300])
    status, answer = request(service, "GET", "/tap/tables/sky.object")
    assert status == 200 and b"<name>ra</name>" in answer, answer[:300]


def post_form(service, path, fields):
    """POSTs a form: (status, the response's headers by lower-case name)."""
    host, port = service
    conn = http.client.HTTPConnection(host, port, timeout=60)
    conn.request("POST", path, body=form(fields), headers=FORM)
    response = conn.getresponse()
    response.read()
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}


# Simple Cone Search 1.03 reports errors in a VOTable with an INFO named Error, under HTTP 200.
HOSTILE_CONES = [
    ("RA=10&DEC=95&SR=1", "DEC=95 is outside -90..90"),
    ("RA=nan&DEC=0&SR=1", "RA=nan is not a number"),
    ("RA=10&DEC=0&SR=-1", "SR=-1 must be between 0 and 10 degrees"),
    ("RA=10&DEC=0&SR=1e999", "SR=1e999 is not a number"),
]


@pytest.mark.parametrize("params,message", HOSTILE_CONES, ids=range(len(HOSTILE_CONES)))
def test_hostile_cone_searches_are_refused_cleanly(service, params, message):
    status, answer = request(service, "GET", "/scs/sky.object?" + params)
    assert status == 200 and f'<INFO ID="Error" name="Error" value="{message}"'.encode() in answer, (status, answer[:300])
    assert b"<TR>" not in answer, answer[:300]
    assert_alive(service)


def test_a_cone_search_of_a_missing_table_is_refused_and_of_a_real_one_answered(service):
    status, answer = request(service, "GET", "/scs/nosuch.table?RA=10&DEC=0&SR=1")
    assert status == 200 and b'<INFO ID="Error" name="Error" value="no table named nosuch.table here"' in answer, \
        answer[:300]
    status, answer = request(service, "GET", "/scs/sky.object?RA=10&DEC=0&SR=10")
    assert status == 200 and b'name="Error"' not in answer and b"<TR>" in answer, answer[:300]


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
        except TimeoutError:
            raise AssertionError(f"the server neither answered nor closed the connection in 30 s ({answer[:200]})")
        except OSError:
            pass  # reset by the server: it dropped the connection
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
    # The fixture's --header-timeout is 2 s: a head still incomplete after 4 s is not waited for. The server
    # ends the connection (raw_exchange fails if it is still open 30 s later) and never serves the request.
    answer = raw_exchange(service, HEAD + b"X-Slow: 1\r\n\r\n", pause_after=len(HEAD), pause=4)
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
    ({"DESTRUCTION": "not a date"}, "DESTRUCTION=not a date is not an ISO 8601 time"),
    ({"DESTRUCTION": "99999-01-01T00:00:00Z"}, "DESTRUCTION=99999-01-01T00:00:00Z is not an ISO 8601 time"),
    ({"DESTRUCTION": "2001-02-29"}, "DESTRUCTION=2001-02-29 is not an ISO 8601 time"),
    ({"EXECUTIONDURATION": "-5"}, "EXECUTIONDURATION=-5 is not a number of seconds"),
    ({"EXECUTIONDURATION": "99999999999999999999999"},
     "EXECUTIONDURATION=99999999999999999999999 is not a number of seconds"),
    ({"EXECUTIONDURATION": "ten"}, "EXECUTIONDURATION=ten is not a number of seconds"),
    ({"PHASE": "EXPLODE"}, "PHASE=EXPLODE: a new job may be given PHASE=RUN"),
]


@pytest.mark.parametrize("fields,message", HOSTILE_UWS, ids=range(len(HOSTILE_UWS)))
def test_hostile_uws_parameters_are_refused(service, fields, message):
    status, body = request(service, "POST", "/tap/async", form({"LANG": "ADQL", "QUERY": "SELECT 1 AS one", **fields}),
                           FORM)
    assert_refused(status, body, 400, message)
    assert_alive(service)


def test_uws_parameters_in_range_make_a_job_that_runs(service):
    fields = {"LANG": "ADQL", "QUERY": "SELECT COUNT(*) AS n FROM sky.object", "RESPONSEFORMAT": "csv",
              "EXECUTIONDURATION": "60",
              "DESTRUCTION": "2999-01-01T00:00:00Z", "PHASE": "RUN"}
    status, headers = post_form(service, "/tap/async", fields)
    assert status == 303, (status, headers)
    job = urllib.parse.urlparse(headers["location"]).path
    status, phase = request(service, "GET", job + "/phase")
    for _ in range(60):
        if phase.strip() not in (b"QUEUED", b"EXECUTING"):
            break
        request(service, "GET", job + f"?WAIT=5&PHASE={phase.strip().decode()}")
        status, phase = request(service, "GET", job + "/phase")
    assert phase.strip() == b"COMPLETED", (phase, request(service, "GET", job + "/error")[1][:300])
    assert request(service, "GET", job + "/executionduration")[1].strip() == b"60"
    status, result = request(service, "GET", job + "/results/result")
    assert status == 200 and result.decode().splitlines() == ["n", str(ROWS)], result[:300]
    # The same phase word refused at creation is refused on the job's /phase too.
    status, body = request(service, "POST", job + "/phase", b"PHASE=EXPLODE", FORM)
    assert status == 400, (status, body[:300])


def test_no_panic_was_caught(service):
    status, body = request(service, "GET", "/health")
    assert status == 200
    assert json.loads(body)["panics_caught"] == 0
