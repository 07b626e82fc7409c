"""The caller's async (UWS) jobs as the service lists them (`/api/v1/jobs`), and their results as Arrow or pandas
whatever format the job wrote them in."""

from __future__ import annotations

import datetime
import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import pyarrow as pa

from .errors import ServiceError

if TYPE_CHECKING:
    import pandas
    import requests


def _time(value: str | None) -> datetime.datetime | None:
    if not value:
        return None
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass
class Job:
    """One async job of the caller's.

    Attributes:
        id: the UWS job id (its URL is `URL/tap/async/ID`).
        phase: PENDING, QUEUED, EXECUTING, COMPLETED, ERROR, ABORTED...
        query: its ADQL.
        created: when it was made (UTC).
        started, ended: when it ran, if it did.
        rows: how many rows its result has, once COMPLETED.
        error: the service's message, for a job in ERROR.
    """

    id: str
    phase: str
    query: str | None
    created: datetime.datetime | None
    started: datetime.datetime | None = None
    ended: datetime.datetime | None = None
    rows: int | None = None
    error: str | None = None
    # The job's URL, and a GET of a URL as the client that listed it (its token, its errors as ServiceError).
    url: str = field(default="", repr=False, compare=False)
    _get: Callable[[str], requests.Response] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_json(cls, value: dict, tap_url: str, get: Callable[[str], requests.Response]) -> Job:
        return cls(id=value["id"], phase=value.get("phase", ""), query=value.get("query"),
                   created=_time(value.get("creationTime")), started=_time(value.get("startTime")),
                   ended=_time(value.get("endTime")), rows=value.get("rows"), error=value.get("error"),
                   url=f"{tap_url}/async/{value['id']}", _get=get)

    def result_arrow(self) -> pa.Table:
        """The job's result as a pyarrow Table (raises `ServiceError` for a job that has none)."""
        if self.phase != "COMPLETED":
            raise ServiceError(404, f"job {self.id} is {self.phase}: it has no result"
                                    + (f" ({self.error})" if self.error else ""), self.url)
        response = self._get(f"{self.url}/results/result")
        return read_result(response.content, response.headers.get("Content-Type", ""), response.url)

    def result(self) -> pandas.DataFrame:
        """The job's result as a pandas DataFrame."""
        return self.result_arrow().to_pandas()


def read_result(body: bytes, content_type: str, url: str) -> pa.Table:
    """A TAP result in any format the service writes (tap/src/output.rs: VOTable TABLEDATA or BINARY2, CSV, TSV,
    Parquet, an Arrow IPC stream) as a pyarrow Table."""
    mime = content_type.split(";")[0].strip().lower()
    try:
        if mime in ("application/vnd.apache.parquet", "application/x-parquet"):
            import pyarrow.parquet as pq

            return pq.read_table(pa.BufferReader(body))
        if mime == "application/vnd.apache.arrow.stream":
            return pa.ipc.open_stream(body).read_all()
        if mime in ("text/csv", "text/tab-separated-values"):
            import pyarrow.csv

            delimiter = "\t" if "tab-separated" in mime else ","
            return pyarrow.csv.read_csv(pa.BufferReader(body), parse_options=pyarrow.csv.ParseOptions(
                delimiter=delimiter))
        from astropy.io.votable import parse_single_table

        return pa.Table.from_pandas(parse_single_table(io.BytesIO(body)).to_table().to_pandas(),
                                    preserve_index=False)
    except (pa.ArrowInvalid, ValueError, OSError) as e:
        raise ServiceError(None, f"the result ({mime or 'no Content-Type'}) cannot be read: {e}", url) from e
