"""What the Python tests share: the skyshard binary under test, running it, starting its servers, and the
haversine distance written as SQL for DuckDB references."""

import csv
import io
import os
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

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


def tap(url, query, fmt="csv", timeout=120, **extra):
    """A sync query to the TAP service at `url`: (status, body)."""
    form = urllib.parse.urlencode({"LANG": "ADQL", "QUERY": query, "RESPONSEFORMAT": fmt, **extra}).encode()
    try:
        with urllib.request.urlopen(url + "/sync", data=form, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def rows(url, query):
    """The rows of a sync query that must succeed, as tuples of CSV strings."""
    status, body = tap(url, query)
    assert status == 200, body
    return [tuple(r) for r in list(csv.reader(io.StringIO(body)))[1:]]


def haversine(ra, dec, a, d):
    """The angular distance in degrees between (ra, dec) and (a, d), as a DuckDB expression."""
    return (f"degrees(2 * asin(sqrt(pow(sin(radians({dec} - ({d})) / 2), 2) + cos(radians({dec})) * "
            f"cos(radians({d})) * pow(sin(radians({ra} - ({a})) / 2), 2))))")


def wait_until(what, check, timeout=120, interval=0.2):
    """Waits for `check()` to return something true, and returns it; fails naming `what` after `timeout` seconds
    (generous: a deadline for a hang on a loaded 2-core machine, not a measure of speed)."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what} (last: {got!r})")
        time.sleep(interval)


def cpu_seconds(pid):
    """User plus system CPU time a process has used, in seconds (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until_idle(proc, what, timeout=120):
    """Waits until `proc` spends a whole second with under 0.3 s of CPU: work that kept running (a query not
    stopped) would burn its cores in every second, and fails this after `timeout` seconds, naming `what`."""
    def idle_second():
        before = cpu_seconds(proc.pid)
        time.sleep(1.0)
        return cpu_seconds(proc.pid) - before < 0.3
    wait_until(what, idle_second, timeout=timeout, interval=0)
