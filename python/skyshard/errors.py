"""What the service refused, as one exception: `ServiceError`, with the HTTP status and the service's own message.

The TAP service answers a refusal with a DALI error document (a VOTable whose `QUERY_STATUS` INFO is `ERROR` and
holds the message), some endpoints with plain text or JSON; Flight SQL answers with a gRPC status. Each is read
here into the same `ServiceError`, so a caller catches one class whichever way the call went.
"""

from __future__ import annotations

import html
import json
import re

_DALI_ERROR = re.compile(r"<INFO\b[^>]*\bname=\"QUERY_STATUS\"[^>]*\bvalue=\"ERROR\"[^>]*>(.*?)</INFO>", re.S)
_DALI_ERROR_VALUE_FIRST = re.compile(r"<INFO\b[^>]*\bvalue=\"ERROR\"[^>]*\bname=\"QUERY_STATUS\"[^>]*>(.*?)</INFO>",
                                     re.S)

# gRPC status codes (as ADBC names them at the end of a message: "(InvalidArgument; ExecuteQuery)") and the HTTP
# status the TAP service gives the same refusal (protocol/src/error.rs, tap/src/flight_sql.rs).
_GRPC_TO_HTTP = {
    "InvalidArgument": 400,
    "FailedPrecondition": 400,
    "OutOfRange": 400,
    "DeadlineExceeded": 400,
    "Unauthenticated": 401,
    "PermissionDenied": 403,
    "NotFound": 404,
    "AlreadyExists": 409,
    "Cancelled": 503,
    "Unavailable": 503,
    "Internal": 500,
    "Unknown": 500,
    "Unimplemented": 501,
}


class ServiceError(Exception):
    """A call the service refused, or that never reached it.

    Attributes:
        status: the HTTP status (400 bad ADQL, 401 no or a bad token, 403 not yours, 404 not there or not yours to
            see, 409 exists, 413 over a quota, 429 your share is used up, 503 busy); a Flight SQL refusal gets the
            status the TAP service gives the same refusal. None when no answer came (the service could not be
            reached, or a result stream broke off).
        message: what the service said (from its DALI error document, JSON or text), or what went wrong.
        url: what was called.
    """

    def __init__(self, status: int | None, message: str, url: str | None = None):
        super().__init__(status, message, url)
        self.status = status
        self.message = message
        self.url = url

    def __str__(self) -> str:
        where = f" ({self.url})" if self.url else ""
        if self.status is None:
            return f"{self.message}{where}"
        return f"{self.status}: {self.message}{where}"


def message_of(body: str, content_type: str = "", reason: str = "") -> str:
    """The service's message in the body of a refusal: the DALI error document's `QUERY_STATUS` text, a JSON
    `message` or `error`, or the text itself (shortened)."""
    found = _DALI_ERROR.search(body) or _DALI_ERROR_VALUE_FIRST.search(body)
    if found:
        return html.unescape(found.group(1)).strip()
    if "json" in content_type:
        try:
            value = json.loads(body)
        except ValueError:
            value = None
        if isinstance(value, dict):
            for key in ("message", "error", "detail"):
                if isinstance(value.get(key), str):
                    return value[key]
    text = body.strip()
    if not text:
        return reason or "no message"
    return text if len(text) <= 2000 else text[:2000] + " ..."


def from_response(response) -> ServiceError:
    """The `ServiceError` of a refused `requests` (or `httpx`) response; reads its body."""
    content_type = response.headers.get("Content-Type", "")
    try:
        body = response.text
    except Exception:  # a body that broke off: the status says enough
        body = ""
    reason = getattr(response, "reason", None) or getattr(response, "reason_phrase", "")
    return ServiceError(response.status_code, message_of(body, content_type, reason), str(response.url))


def from_flight(error: Exception, uri: str) -> ServiceError:
    """The `ServiceError` of an ADBC Flight SQL error: `ADBC_CODE: [FlightSQL] message (GrpcCode; Call...)`. The
    gRPC code at the end is the service's (ADBC's own code before the message may differ: a row limit ended in
    the stream is INTERNAL there)."""
    text = re.sub(r"^[A-Z_]+:\s*", "", str(error).strip().split("\n")[0])
    text = re.sub(r"^\[FlightSQL\]\s*", "", text)
    text = re.sub(r"\.? Vendor code: \d+$", "", text)
    status = 500
    grpc = re.search(r"\s*\((\w+); [^()]*\)$", text)
    if grpc:
        text = text[: grpc.start()].strip()
        if grpc.group(1) == "ResourceExhausted":
            # The service says ResourceExhausted both for a result past the row limit (TAP's 400) and for a
            # caller's used-up share (TAP's 429), whose message ends "wait for one to finish"
            # (tap/src/flight_sql.rs).
            status = 429 if "wait for" in text else 400
        else:
            status = _GRPC_TO_HTTP.get(grpc.group(1), 500)
    return ServiceError(status, text, uri)
