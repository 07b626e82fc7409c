"""What the Python tests share: the skyshard binary under test, running it, starting its servers, and the
haversine distance written as SQL for DuckDB references."""

import os
import re
import subprocess
import time

SKYSHARD = os.environ.get("SKYSHARD", os.path.expanduser("~/.cache/skyshard-target/debug/skyshard"))
TAP_ADDRESS = r"TAP service at (http://\S+/tap)"


def run(*args):
    """Runs a skyshard command that must succeed; its standard output."""
    out = subprocess.run([SKYSHARD, *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


def start(args, pattern=TAP_ADDRESS, stderr=subprocess.PIPE):
    """Starts a skyshard server; (process, the first group of `pattern` in what it prints). `stderr`: a file for its
    log when it writes much (a pipe nobody reads fills up and blocks it)."""
    proc = subprocess.Popen([SKYSHARD, *args], stdout=subprocess.PIPE, stderr=stderr, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        line = proc.stdout.readline()
        m = re.search(pattern, line)
        if m:
            return proc, m.group(1)
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read() if proc.stderr else "exited")
    raise AssertionError("no address printed")


def haversine(ra, dec, a, d):
    """The angular distance in degrees between (ra, dec) and (a, d), as a DuckDB expression."""
    return (f"degrees(2 * asin(sqrt(pow(sin(radians({dec} - ({d})) / 2), 2) + cos(radians({dec})) * "
            f"cos(radians({d})) * pow(sin(radians({ra} - ({a})) / 2), 2))))")
