"""The Python client of skyshard: ADQL into pandas and Arrow, lsdb over its HATS collections, user tables, the
WebDAV file space and async jobs, with one token.

    import skyshard
    sky = skyshard.connect("http://localhost:8080", token="sky_...")
    df = sky.query("SELECT TOP 10 * FROM sky.object")

See docs/python.md in the repository.
"""

__version__ = "0.1.0"

from .client import Client, connect, token_file  # noqa: E402
from .errors import ServiceError  # noqa: E402
from .jobs import Job  # noqa: E402

__all__ = ["Client", "Job", "ServiceError", "connect", "token_file", "__version__"]
