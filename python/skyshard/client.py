"""`skyshard.connect()` and the `Client`: ADQL into Arrow and pandas (over Flight SQL when its address is known,
else TAP sync in the Arrow IPC stream format), pyvo's TAPService with the token, lsdb over the service's HATS
collections, user tables, the WebDAV file space and the caller's async jobs."""

from __future__ import annotations

import os
import pathlib
import re
import secrets
import tempfile
import threading
import urllib.parse
import warnings
from typing import TYPE_CHECKING

import pyarrow as pa

from . import _files, _tables
from ._flight import Flight
from ._http import Session, call
from .errors import ServiceError
from .jobs import Job

if TYPE_CHECKING:
    import pandas
    import pyvo

DEFAULT_TIMEOUT = 300.0
ARROW_STREAM = "application/vnd.apache.arrow.stream"


def token_file() -> pathlib.Path:
    """Where `connect()` looks for a token when neither `token=` nor `SKYSHARD_TOKEN` gives one:
    `$XDG_CONFIG_HOME/skyshard/token`, by default `~/.config/skyshard/token`."""
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return pathlib.Path(config) / "skyshard" / "token"


def _find_token(token: str | None) -> str | None:
    if token is not None:
        return token.strip() or None
    if os.environ.get("SKYSHARD_TOKEN", "").strip():
        return os.environ["SKYSHARD_TOKEN"].strip()
    path = token_file()
    if path.is_file():
        words = path.read_text().split()
        return words[0] if words else None
    return None


def connect(url: str | None = None, token: str | None = None, flight: str | None = None,
            timeout: float = DEFAULT_TIMEOUT) -> Client:
    """A client of the skyshard service at `url`.

    Args:
        url: the service, as `http://HOST:PORT` or its TAP URL `http://HOST:PORT/tap`; by default the environment's
            `SKYSHARD_URL`.
        token: a token made by `skyshard token create`; by default `SKYSHARD_TOKEN`, then the first line of the
            token file (`~/.config/skyshard/token`, or under `$XDG_CONFIG_HOME`). `""`: none, call anonymously.
        flight: the Flight SQL address (`grpc://HOST:PORT`, from `skyshard serve --flight-sql-port`); by default
            `SKYSHARD_FLIGHT`, else the port the service names in `/api/v1/me`, on the host of `url`. `""`: TAP
            only. Without Flight SQL, queries go over TAP sync, still as Arrow.
        timeout: seconds any call may wait without a byte from the service.
    """
    url = url or os.environ.get("SKYSHARD_URL")
    if not url:
        raise ValueError("no service URL: pass url= or set SKYSHARD_URL (http://HOST:PORT)")
    if flight is None:
        flight = os.environ.get("SKYSHARD_FLIGHT") or None
    return Client(url, _find_token(token), flight, timeout)


class Client:
    """A connection to one skyshard service as one caller (the token's user, or anonymous). Made by `connect()`.

    Every failed call raises `ServiceError` with the HTTP status and the service's message.
    """

    def __init__(self, url: str, token: str | None, flight: str | None = None, timeout: float = DEFAULT_TIMEOUT):
        root = url.strip().rstrip("/")
        root = re.sub(r"/tap$", "", root)
        self.url = root
        self.tap_url = f"{root}/tap"
        self.timeout = timeout
        self._token = token
        self.session = Session(token, timeout)
        self._flight = Flight(flight, token, timeout) if flight else None
        # No address given: asked of the service once (`/api/v1/me` names its Flight SQL port); "" means TAP only.
        self._find_flight = flight is None
        self._lock = threading.Lock()
        self._me: dict | None = None
        self._hard_limit: int | None = None
        self._tap = None
        self._files = None

    def __repr__(self) -> str:
        over = f", flight={self._flight.uri!r}" if self._flight else ""
        return f"skyshard.Client({self.url!r}{over})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Closes the Flight SQL connection and the HTTP session."""
        if self._flight:
            self._flight.close()
        self.session.close()

    def _call(self, method: str, url: str, **kwargs):
        return call(self.session, method, url, **kwargs)

    # Who am I

    def whoami(self) -> dict:
        """What the service takes the caller for (`/api/v1/me`): `user`, `groups`, `scopes`, or `anonymous: True`;
        the shares in use and their limits, the table space used and its quota."""
        return self._call("GET", f"{self.url}/api/v1/me").json()

    def _user(self) -> str:
        """The caller's user name (asked once); a `ServiceError` 401 for an anonymous caller."""
        with self._lock:
            if self._me is None:
                self._me = self.whoami()
            me = self._me
        if me.get("anonymous", True):
            raise ServiceError(401, "this needs a named user: connect with a token (skyshard token create)",
                               f"{self.url}/api/v1/me")
        return me["user"]

    # Queries

    def query_arrow(self, adql: str) -> pa.Table:
        """Runs an ADQL query and returns its rows as a pyarrow Table.

        Over Flight SQL when the client knows its address, else TAP sync in the Arrow IPC stream format; either way
        Arrow from the engine to here. A result larger than the service allows (its `--max-maxrec`) is refused
        (`ServiceError` 400), never cut silently.
        """
        flight = self._flight_client()
        if flight:
            return flight.query(adql)
        return self._query_tap(adql)

    def _flight_client(self) -> Flight | None:
        """The Flight SQL client: the one given, or the port the service names on the host of its URL."""
        with self._lock:
            if self._find_flight:
                self._find_flight = False
                try:
                    port = self.whoami().get("flight_sql_port")
                except ServiceError:
                    port = None
                if port:
                    host = urllib.parse.urlsplit(self.url).hostname
                    host = f"[{host}]" if host and ":" in host else host
                    self._flight = Flight(f"grpc://{host}:{port}", self._token, self.timeout)
            return self._flight

    def query(self, adql: str) -> pandas.DataFrame:
        """Runs an ADQL query and returns its rows as a pandas DataFrame (see `query_arrow`)."""
        return self.query_arrow(adql).to_pandas()

    def _output_limit(self) -> int | None:
        """The most rows one result may have here (the hard output limit of `/tap/capabilities`)."""
        if self._hard_limit is None:
            text = self._call("GET", f"{self.tap_url}/capabilities").text
            found = re.search(r"<outputLimit>.*?<hard[^>]*>\s*(\d+)\s*</hard>", text, re.S)
            self._hard_limit = int(found.group(1)) if found else 0
        return self._hard_limit or None

    def _query_tap(self, adql: str) -> pa.Table:
        form = {"LANG": "ADQL", "QUERY": adql, "RESPONSEFORMAT": ARROW_STREAM}
        limit = self._output_limit()
        if limit:
            form["MAXREC"] = str(limit)
        url = f"{self.tap_url}/sync"
        response = self._call("POST", url, data=form, stream=True)
        try:
            response.raw.decode_content = True
            table = pa.ipc.open_stream(response.raw).read_all()
        except Exception as e:
            # A stream that broke off (the service failed mid-result, or the connection dropped) is no result.
            raise ServiceError(None, f"the result stream broke off: {e}", url) from e
        finally:
            response.close()
        status = (table.schema.metadata or {}).get(b"QUERY_STATUS", b"OK").decode()
        if status == "OVERFLOW":
            raise ServiceError(400, f"the result has more than {limit} rows, the most one result may have here (the "
                                    "service's --max-maxrec); narrow the query, or take it in parts (TOP, ranges of "
                                    "a column)", url)
        return table

    @property
    def tap(self) -> pyvo.dal.TAPService:
        """pyvo's TAPService for this service, calling with this client's token and timeouts (async jobs, uploads,
        `run_sync(...).to_table()`: everything pyvo does). Its errors are pyvo's."""
        if self._tap is None:
            import pyvo

            self._tap = pyvo.dal.TAPService(self.tap_url, session=self.session)
        return self._tap

    # HATS

    def open_catalog(self, name: str, **lsdb_kwargs):
        """The table `name` (`SCHEMA.TABLE`: a catalog or a user table you may read, with positions) as an lsdb
        Catalog, read from the service's HATS collection `URL/hats/NAME` with this client's token.

        `lsdb_kwargs` go to `lsdb.open_catalog` (`columns=`, `filters=`, `search_filter=`...); pushed-down columns
        and filters are evaluated by the service.
        """
        import lsdb

        base = f"{self.url}/hats/{name}"
        # Asked first so a table that is not there (or not yours) is the service's refusal, not a reader's error.
        self._call("GET", f"{base}/collection.properties")
        options = dict(lsdb_kwargs.pop("storage_options", None) or {})
        headers = dict(options.get("headers") or {})
        headers.update({k: v for k, v in self.session.headers.items() if k in ("Authorization", "User-Agent")})
        options["headers"] = headers
        if "client_kwargs" not in options:
            try:
                import aiohttp

                options["client_kwargs"] = {"timeout": aiohttp.ClientTimeout(
                    total=None, sock_connect=self.timeout, sock_read=self.timeout)}
            except ImportError:  # fsspec's HTTP filesystem without aiohttp: its own defaults
                pass
        return lsdb.open_catalog(base, storage_options=options, **lsdb_kwargs)

    # User tables

    def _qualified(self, name: str) -> str:
        return name if "." in name else f"user_{self._user()}.{name}"

    def table_exists(self, name: str) -> bool:
        """Whether the table `name` (`SCHEMA.TABLE`, or `TABLE` in your schema) exists for you."""
        try:
            self._call("GET", f"{self.tap_url}/tables/{self._qualified(name)}")
        except ServiceError as e:
            if e.status == 404:
                return False
            raise
        return True

    def drop_table(self, name: str) -> None:
        """Drops your table `name` (`SCHEMA.TABLE`, or `TABLE` in your schema)."""
        self._call("DELETE", f"{self.tap_url}/tables/{self._qualified(name)}")

    def save_table(self, data, name: str, *, ra: str | None = None, dec: str | None = None,
                   id: str | None = None, if_exists: str = "fail") -> str:
        """Saves rows as a user table, which ADQL then reads as `SCHEMA.TABLE`; returns that name.

        Args:
            data: a pandas DataFrame (its index is not saved: `reset_index()` first to keep it), a pyarrow Table
                (its fields' `unit`, `ucd` and `description` metadata are kept) or an lsdb Catalog (computed here).
            name: `TABLE` for your schema `user_NAME`, or `group_NAME.TABLE` for a group of yours.
            ra, dec, id: the columns of the position (degrees) and of a unique integer id. With all three (an lsdb
                Catalog gives ra and dec) the table is partitioned like the catalogs: cross-matches with them run
                chunk by chunk, and it is a HATS collection (`open_catalog`). Otherwise it is replicated.
            if_exists: "fail" (a `ServiceError` 409), "replace" (dropped, then saved again: for a moment it is
                absent) or "append" (the rows added, matched to its columns by name).

        The rows travel once, as Parquet, into your WebDAV space (a file removed afterwards), and the service makes
        the table from that file (`POST /tap/load/TABLE?source=/files/...`): the load lands whole or not at all,
        and counts against your table quota (and, while it runs, your file quota).
        """
        if if_exists not in ("fail", "replace", "append"):
            raise ValueError(f"if_exists={if_exists!r}: use 'fail', 'replace' or 'append'")
        table = _tables.to_arrow(data, ra, dec, id)
        qualified = self._qualified(name)
        if self.table_exists(qualified):
            if if_exists == "fail":
                raise ServiceError(409, f"{qualified} exists: save with if_exists='replace' or 'append', or drop it "
                                        "first", f"{self.tap_url}/tables/{qualified}")
            if if_exists == "replace":
                self.drop_table(qualified)
        import pyarrow.parquet as pq

        # In the caller's own space, whichever schema the table is in (a group's table loads from it too).
        path = f"/files/{self._user()}/.skyshard-save-{secrets.token_hex(8)}.parquet"
        with tempfile.TemporaryDirectory(prefix="skyshard-") as scratch:
            local = os.path.join(scratch, "rows.parquet")
            pq.write_table(table, local)
            with open(local, "rb") as f:
                self._call("PUT", self.url + urllib.parse.quote(path), data=f,
                           headers={"Content-Type": "application/vnd.apache.parquet"})
        try:
            self._call("POST", f"{self.tap_url}/load/{qualified}", params={"source": path})
        finally:
            try:
                self._call("DELETE", self.url + urllib.parse.quote(path))
            except ServiceError as e:
                warnings.warn(f"the uploaded rows could not be removed from your file space: {e}", stacklevel=2)
        return qualified

    # Files

    @property
    def files(self):
        """Your WebDAV file space (`URL/files/NAME/`) as an fsspec filesystem (webdav4's): `ls`, `put`, `get`,
        `open`, `rm`, `mkdir`... with paths relative to the space. Needs a token."""
        if self._files is None:
            user = self._user()
            self._files = _files.filesystem(f"{self.url}/files/{user}/", self._token, self.timeout)
        return self._files

    # Jobs

    def jobs(self) -> list[Job]:
        """Your async jobs, newest first (the latest 200): id, phase, query, created...; `job.result()` reads one's
        result as pandas."""
        return [Job.from_json(j, self.tap_url, self._get) for j in self._get(f"{self.url}/api/v1/jobs").json()]

    def job(self, id: str) -> Job:
        """One of your async jobs by its id."""
        return Job.from_json(self._get(f"{self.url}/api/v1/jobs/{urllib.parse.quote(id)}").json(), self.tap_url,
                             self._get)

    def _get(self, url: str):
        """GET `url` as this client (a job's result, its record)."""
        return self._call("GET", url)
