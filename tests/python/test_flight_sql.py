"""Arrow Flight SQL (`--flight-sql-port`) against a real `skyshard serve`, through the clients a notebook uses: ADBC's
Flight SQL driver (`adbc_driver_flightsql`, its DB-API and its Arrow fetch) and `pyarrow.flight`. Answers are
checked against DuckDB over the generated input, not against the engine; identity, visibility, turns, the row limit
and the audit log are the TAP service's, and are checked as such."""

import json
import re
import subprocess

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager
import duckdb
import pyarrow as pa
import pyarrow.flight as flight
import pytest
import requests

from skyshard_processes import SKYSHARD, haversine, run

ROWS = 20_000
FLIGHT_ADDRESS = r"Flight SQL at (grpc://\S+)"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    base = tmp_path_factory.mktemp("flightsql")
    run("gen", "--rows", str(ROWS), "--out", str(base / "rel"))
    data = base / "data"
    run("ingest", "--data-dir", str(data), "--table", "sky.object", "--input", str(base / "rel/object.parquet"),
        "--ra", "ra", "--dec", "dec", "--id", "id", "--chunk-rows", "2000", "--quiet")
    run("user", "add", "--data-dir", str(data), "ada")
    run("user", "add", "--data-dir", str(data), "bob")
    tokens = {u: run("token", "create", "--data-dir", str(data), "--user", u).strip() for u in ("ada", "bob")}
    return {"base": base, "data": data, "tokens": tokens, "input": str(base / "rel/object.parquet")}


def serve(site, policy, *extra):
    """A service with Flight SQL; (process, TAP URL, Flight SQL URI)."""
    name = f"{policy}{'-'.join(extra)}"
    proc = subprocess.Popen(
        [SKYSHARD, "serve", "--data-dir", str(site["data"]), "--port", "0", "--workers", "2", "--auth", policy,
         "--flight-sql-port", "0", "--jobs-dir", str(site["base"] / f"jobs-{name}"),
         "--audit-log", str(site["base"] / f"audit-{name}.jsonl"), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    tap = uri = None
    while tap is None or uri is None:
        line = proc.stdout.readline()
        assert line or proc.poll() is None, "the service ended"
        if m := re.search(r"TAP service at (http://\S+/tap)", line):
            tap = m.group(1)
        if m := re.search(FLIGHT_ADDRESS, line):
            uri = m.group(1)
    return proc, tap, uri


@pytest.fixture(scope="module")
def optional(site):
    proc, tap, uri = serve(site, "optional")
    yield {"tap": tap, "uri": uri, "audit": site["base"] / "audit-optional.jsonl"}
    proc.kill()
    proc.wait()


@pytest.fixture(scope="module")
def required(site):
    proc, tap, uri = serve(site, "required", "--max-maxrec", "5000")
    yield {"tap": tap, "uri": uri}
    proc.kill()
    proc.wait()


def connect(uri, token=None, **kwargs):
    options = {}
    if token:
        options[adbc_driver_flightsql.DatabaseOptions.AUTHORIZATION_HEADER.value] = f"Bearer {token}"
    # Autocommit: the service is read-only and has no transactions to turn off.
    return flightsql.connect(uri, db_kwargs={**options, **kwargs}, autocommit=True)


def fetch(uri, query, token=None):
    with connect(uri, token) as conn, conn.cursor() as cur:
        cur.execute(query)
        return cur.fetch_arrow_table()


def test_adbc_fetches_a_filtered_scan_as_duckdb_reads_it(site, optional):
    got = fetch(optional["uri"], "SELECT id, ra, dec, mag_g FROM sky.object WHERE mag_g < 21")
    want = duckdb.sql(f"SELECT id, ra, dec, mag_g FROM '{site['input']}' WHERE mag_g < 21 ORDER BY id").fetchall()
    assert len(want) > 1000
    assert got.column_names == ["id", "ra", "dec", "mag_g"]
    assert str(got.schema.field("id").type) == "int64" and str(got.schema.field("ra").type) == "double"
    rows = sorted(zip(*(got.column(c).to_pylist() for c in got.column_names)))
    assert rows == want


def test_a_cone_and_an_aggregate_match_duckdb(site, optional):
    a, d, r = 45.0, 10.0, 5.0
    got = fetch(optional["uri"], f"SELECT id FROM sky.object WHERE CONTAINS(POINT('ICRS', ra, dec), "
                                 f"CIRCLE('ICRS', {a}, {d}, {r})) = 1")
    want = duckdb.sql(f"SELECT id FROM '{site['input']}' WHERE {haversine('ra', 'dec', a, d)} <= {r}").fetchall()
    assert len(want) > 10
    assert sorted(got.column("id").to_pylist()) == sorted(w[0] for w in want)
    got = fetch(optional["uri"], "SELECT FLOOR(dec / 30) AS band, COUNT(*) AS n FROM sky.object GROUP BY FLOOR(dec / 30)")
    want = dict(duckdb.sql(f"SELECT FLOOR(dec / 30), COUNT(*) FROM '{site['input']}' GROUP BY 1").fetchall())
    assert dict(zip(got.column("band").to_pylist(), got.column("n").to_pylist())) == want


def test_pandas_through_the_dbapi(site, optional):
    with connect(optional["uri"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT TOP 100 id, mag_g FROM sky.object ORDER BY mag_g")
        frame = cur.fetch_df()
    want = duckdb.sql(f"SELECT id FROM '{site['input']}' ORDER BY mag_g, id LIMIT 100").fetchall()
    assert len(frame) == 100 and list(frame["mag_g"]) == sorted(frame["mag_g"])
    assert set(frame["id"]) <= {w[0] for w in duckdb.sql(f"SELECT id FROM '{site['input']}'").fetchall()}
    assert frame["id"].iloc[0] == want[0][0]


def tables_listed(conn):
    """(schema, table) pairs of ADBC's get_objects."""
    objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
    return {(s["db_schema_name"], t["table_name"])
            for c in objects for s in c["catalog_db_schemas"] or [] for t in s["db_schema_tables"] or []}


def test_a_client_can_browse_schemas_tables_and_columns(site, optional):
    with connect(optional["uri"]) as conn:
        listed = tables_listed(conn)
        assert ("sky", "object") in listed and ("tap_schema", "columns") in listed, listed
        schema = conn.adbc_get_table_schema("object", db_schema_filter="sky")
        want = duckdb.sql(f"DESCRIBE SELECT * FROM '{site['input']}'").fetchall()
        assert [f.name for f in schema] == [w[0].lower() for w in want]
        assert str(schema.field("ra").type) == "double"
        assert conn.adbc_get_table_types() == ["TABLE"]


def invalid_argument(uri, query):
    """The message of the INVALID_ARGUMENT a statement is refused with (fails on any other outcome)."""
    with pytest.raises(adbc_driver_manager.ProgrammingError) as e:
        fetch(uri, query)
    message = str(e.value)
    assert message.startswith("INVALID_ARGUMENT: [FlightSQL] "), message
    return message


def test_bad_adql_is_an_invalid_argument_naming_the_problem(optional):
    uri = optional["uri"]
    assert "1:32: expected end of query, found 'dec'" in invalid_argument(uri, "SELECT ra FROM sky.object WHER dec > 0")
    assert "1:8: column no_such_column not found; columns here: sky.object.id" in \
        invalid_argument(uri, "SELECT no_such_column FROM sky.object")
    assert "the statement is empty: send an ADQL query" in invalid_argument(uri, "   ")
    # The same statements written right are answered.
    assert fetch(uri, "SELECT COUNT(*) AS n FROM sky.object WHERE dec > 0").column("n")[0].as_py() > 0
    assert fetch(uri, "SELECT TOP 1 id FROM sky.object").column_names == ["id"]


NOT_ISSUED = "the ticket is not one this service issued: get one from GetFlightInfo of an ADQL statement"


@pytest.mark.parametrize("ticket,message", [
    (b"", NOT_ISSUED),
    (b"\x0a\x05hello", NOT_ISSUED),
    pytest.param(b"\x00" * 64, NOT_ISSUED, marks=pytest.mark.xfail(
        strict=True, reason="a ticket that is no protobuf is answered with prost's Debug text (DecodeError { ... })")),
    pytest.param(b"garbage that is no protobuf", NOT_ISSUED, marks=pytest.mark.xfail(
        strict=True, reason="a ticket that is no protobuf is answered with prost's Debug text (DecodeError { ... })")),
], ids=["empty", "not issued", "zeros", "garbage"])
def test_a_ticket_not_issued_is_refused_saying_so(optional, ticket, message):
    client = flight.FlightClient(optional["uri"])
    with pytest.raises(pa.ArrowInvalid) as e:  # pyarrow's class for gRPC INVALID_ARGUMENT
        client.do_get(flight.Ticket(ticket)).read_all()
    assert f"INVALID_ARGUMENT:{message}" in str(e.value), e.value


def test_hostile_tickets_and_statements_are_refused_and_the_service_goes_on(optional):
    client = flight.FlightClient(optional["uri"])
    for ticket in [b"", b"\x00" * 64, b"garbage that is no protobuf", b"\x0a\x05hello"]:
        with pytest.raises(pa.ArrowInvalid) as e:
            client.do_get(flight.Ticket(ticket)).read_all()
        assert "INVALID_ARGUMENT:" in str(e.value), e.value
    # A statement of 2 MB of nonsense: refused as a statement for its size, not a crash.
    message = invalid_argument(optional["uri"], "SELECT " + "(" * 2_000_000)
    assert "1:1: the query text is 2000007 bytes; the limit is 1048576" in message, message
    assert fetch(optional["uri"], "SELECT COUNT(*) AS n FROM sky.object WHERE ra >= 0").column("n")[0].as_py() == ROWS


def test_identity_is_the_tap_services(site, required):
    uri, tokens = required["uri"], site["tokens"]
    with pytest.raises(adbc_driver_manager.Error) as e:
        fetch(uri, "SELECT TOP 1 id FROM sky.object")
    assert "UNAUTHENTICATED" in str(e.value) or "Unauthenticated" in str(e.value), e.value
    with pytest.raises(adbc_driver_manager.Error) as e:
        fetch(uri, "SELECT TOP 1 id FROM sky.object", token="sky_0000000000000000_" + "0" * 64)
    assert "not valid" in str(e.value), e.value
    assert fetch(uri, "SELECT TOP 3 id FROM sky.object", token=tokens["ada"]).num_rows == 3
    # A token without the read:tap scope (made for a file client) reads nothing (issue 33.8).
    files_only = run("token", "create", "--data-dir", str(site["data"]), "--user", "ada", "--scopes",
                     "write:files").strip()
    with pytest.raises(adbc_driver_manager.Error) as e:
        fetch(uri, "SELECT TOP 1 id FROM sky.object", token=files_only)
    assert "read:tap" in str(e.value), e.value
    # Basic credentials through the Flight handshake (any user name, the token as password), as ADBC does with
    # username and password.
    with connect(uri, username="ada", password=tokens["ada"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT TOP 2 id FROM sky.object")
        assert cur.fetch_arrow_table().num_rows == 2
    # pyarrow.flight's own Basic handshake hands back a Bearer header.
    client = flight.FlightClient(uri)
    header = client.authenticate_basic_token("whoever", tokens["bob"])
    assert header[0].lower() == b"authorization" and header[1] == f"Bearer {tokens['bob']}".encode()


def test_user_tables_are_seen_only_by_those_tap_shows_them_to(site, required):
    url, uri, tokens = required["tap"], required["uri"], site["tokens"]
    ada = requests.Session()
    ada.headers["Authorization"] = f"Bearer {tokens['ada']}"
    name = "user_ada.night"
    definition = f"""<vosi:table xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0"
      xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
      <name>{name}</name>
      <column><name>tid</name><dataType xsi:type="vs:TAPType">BIGINT</dataType></column>
      <column><name>ra</name><dataType xsi:type="vs:TAPType">DOUBLE</dataType></column>
      <column><name>dec</name><dataType xsi:type="vs:TAPType">DOUBLE</dataType></column>
    </vosi:table>"""
    assert ada.put(f"{url}/tables/{name}", data=definition.encode(),
                   headers={"Content-Type": "text/xml"}).status_code == 201
    r = ada.post(f"{url}/load/{name}", data=b"tid,ra,dec\n1,10.0,20.0\n2,11.0,21.0\n",
                 headers={"Content-Type": "text/csv"})
    assert r.status_code == 200, r.text
    try:
        got = fetch(uri, f"SELECT tid FROM {name} ORDER BY tid", token=tokens["ada"])
        assert got.column("tid").to_pylist() == [1, 2]
        with pytest.raises(adbc_driver_manager.Error) as e:
            fetch(uri, f"SELECT tid FROM {name}", token=tokens["bob"])
        assert "night" in str(e.value), e.value
        with connect(uri, tokens["ada"]) as conn:
            assert ("user_ada", "night") in tables_listed(conn)
        with connect(uri, tokens["bob"]) as conn:
            listed = tables_listed(conn)
            assert ("sky", "object") in listed and not any(s == "user_ada" for s, _ in listed), listed
    finally:
        assert ada.delete(f"{url}/tables/{name}").status_code == 200


def test_a_result_past_the_row_limit_ends_with_an_error_never_cut_silently(site, required):
    token = site["tokens"]["ada"]
    assert fetch(required["uri"], "SELECT TOP 5000 id FROM sky.object", token=token).num_rows == 5000
    with pytest.raises(adbc_driver_manager.Error) as e:
        fetch(required["uri"], "SELECT id FROM sky.object", token=token)
    assert "more than 5000 rows" in str(e.value), e.value


def test_queries_are_audited_with_their_caller(site, optional):
    fetch(optional["uri"], "SELECT TOP 7 id FROM sky.object", token=site["tokens"]["bob"])
    lines = [json.loads(line) for line in optional["audit"].read_text().splitlines()]
    mine = [x for x in lines if x.get("path") == "flight-sql" and x.get("who") == "user bob"]
    assert mine and mine[-1]["rows"] == 7 and mine[-1]["status"] == "Ok", lines[-3:]
