"""Every HTTP call the tests make has a deadline, so a hung service fails its test instead of using up CI's time.

Tests pass `timeout=` themselves where they know better; this gives the calls that do not one anyway: requests
(`Session.request`, which `requests.get`/`post`, pyvo and the other clients built on requests go through) and
http.client (which urllib, astroquery and the raw-socket tests go through).
"""

import http.client
import inspect
import socket

import requests

HTTP_TIMEOUT = 120  # seconds without a byte: generous for a loaded 2-core machine, far below CI's 90 minutes

_session_request = requests.Session.request
_session_signature = inspect.signature(_session_request)


def _session_request_with_timeout(self, *args, **kwargs):
    call = _session_signature.bind(self, *args, **kwargs)
    if call.arguments.get("timeout") is None:
        call.arguments["timeout"] = HTTP_TIMEOUT
    return _session_request(*call.args, **call.kwargs)


requests.Session.request = _session_request_with_timeout

_connection_init = http.client.HTTPConnection.__init__


def _connection_init_with_timeout(self, host, port=None, timeout=socket._GLOBAL_DEFAULT_TIMEOUT, *args, **kwargs):
    if timeout is socket._GLOBAL_DEFAULT_TIMEOUT or timeout is None:
        timeout = HTTP_TIMEOUT
    _connection_init(self, host, port, timeout, *args, **kwargs)


# HTTPSConnection calls HTTPConnection.__init__ through super(), so it is covered too.
http.client.HTTPConnection.__init__ = _connection_init_with_timeout
