"""The HTTP side of the client: one `requests` session carrying the token, with a deadline on every call, and the
one place a response becomes a `ServiceError`."""

from __future__ import annotations

import requests

from . import __version__
from .errors import ServiceError, from_response

# `requests.Session.request(method, url, params, data, headers, cookies, files, auth, timeout, ...)`: where timeout
# falls among the positional arguments after the URL.
_TIMEOUT_POSITION = 7


class Session(requests.Session):
    """A `requests.Session` whose every request has a deadline (`timeout` seconds without a byte, unless the call
    gives its own) and the token as a Bearer header: pyvo and the client's own calls go through it."""

    def __init__(self, token: str | None, timeout: float):
        super().__init__()
        self.timeout = timeout
        self.headers["User-Agent"] = f"skyshard-python/{__version__} {self.headers.get('User-Agent', '')}".strip()
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def request(self, method, url, *args, **kwargs):
        if len(args) <= _TIMEOUT_POSITION and kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        return super().request(method, url, *args, **kwargs)


def call(session: Session, method: str, url: str, **kwargs) -> requests.Response:
    """One request; its response when the status is below 400, else the service's refusal as a `ServiceError`
    (and a `ServiceError` without a status when no answer came)."""
    try:
        response = session.request(method, url, **kwargs)
    except requests.RequestException as e:
        raise ServiceError(None, f"no answer from the service: {e}", url) from e
    if response.status_code >= 400:
        raise from_response(response)
    return response
