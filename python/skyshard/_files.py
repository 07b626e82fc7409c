"""The caller's WebDAV file space (`URL/files/NAME/`) as an fsspec filesystem, through webdav4, with the token and
a deadline on every request; the service's refusals are `ServiceError`s."""

from __future__ import annotations

from .errors import from_response

# Statuses webdav4 turns into what fsspec callers expect (404: FileNotFoundError; 405 to MKCOL: the folder exists;
# 409: no parent folder; 412: the target exists) are left to it; every other refusal is the service's to explain.
_LEFT_TO_WEBDAV4 = {404, 405, 409, 412}


def _refuse(response) -> None:
    if response.status_code >= 400 and response.status_code not in _LEFT_TO_WEBDAV4:
        response.read()
        raise from_response(response)


def _finite_depth(request) -> None:
    # webdav4 asks for one resource's properties with a PROPFIND without Depth, which RFC 4918 reads as infinity
    # and the service refuses (403, tap/src/files.rs): for one resource, Depth 0 is what is meant.
    if request.method == "PROPFIND" and "depth" not in request.headers:
        request.headers["Depth"] = "0"


def filesystem(base_url: str, token: str, timeout: float):
    """An fsspec filesystem rooted at `base_url` (a space's URL, ending in /)."""
    import httpx
    from webdav4.fsspec import WebdavFileSystem

    return WebdavFileSystem(base_url, headers={"Authorization": f"Bearer {token}"},
                            timeout=httpx.Timeout(timeout), event_hooks={"request": [_finite_depth], "response": [_refuse]})
