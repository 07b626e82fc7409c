#!/usr/bin/env python3
"""How fast the replica healer restores copies, gives a new worker its share and drains one, on this machine:
a czar and four workers as real processes on loopback (release build, replicas 2), a synthetic catalog loaded
through the czar. Measured:

- heal: from `kill -9` of a worker to every chunk having two live copies again, asked of the workers (grace 0,
  so the time is the census plus the copying), with the bytes copied;
- join: from `skyshard worker add` to the new worker holding its share (no chunk moved for 2 s);
- drain: `skyshard worker drain` until the worker has left;
and the queries answered meanwhile (a COUNT and a cone, each checked). Writes its raw output to
benches/results/heal-<commit>.json.

Usage: SKYSHARD=target/release/skyshard python3 benches/heal.py [--rows 2000000]
"""

import argparse
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "python"))
os.environ.setdefault("SKYSHARD", os.path.expanduser("~/.cache/skyshard-target/release/skyshard"))

from skyshard_processes import SKYSHARD, rows, run, start, tap  # noqa: E402
from test_operations import SECRET, census, copies, get, start_worker  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_000_000)
    args = parser.parse_args()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="skyshard-heal-"))
    procs = []
    out = {"rows": args.rows}
    try:
        run("gen", "--rows", str(args.rows), "--out", str(tmp / "rel"))
        workers = [start_worker(tmp, f"w{i}") for i in range(4)]
        procs += [p for p, _, _ in workers]
        addresses = [a for _, a, _ in workers]
        czar, url = start(["czar", "--port", "0", "--data-dir", str(tmp / "czar"), "--workers", ",".join(addresses),
                           "--replicas", "2", "--cluster-secret", SECRET, "--heal-interval", "0.5", "--heal-grace",
                           "0", "--move-linger", "1"], stderr=open(tmp / "czar.log", "w"))
        procs.append(czar)
        admin = url[: -len("/tap")]
        t = time.time()
        run("load", "--url", url, "--table", "sky.object", "--input", str(tmp / "rel/object.parquet"), "--ra", "ra",
            "--dec", "dec", "--id", "id", "--chunk-rows", "50000")
        out["load_seconds"] = round(time.time() - t, 2)
        want = rows(url, "SELECT COUNT(*) FROM sky.object WHERE mag_g < 99")
        assert want == [(str(args.rows),)], want
        before = copies(addresses, "sky.object")
        out["chunks"] = len(before)
        answered = {"n": 0, "wrong": 0}
        stop = threading.Event()

        def ask():
            while not stop.is_set():
                status, body = tap(url, "SELECT COUNT(*) FROM sky.object WHERE mag_g < 99")
                answered["n"] += 1
                if status != 200 or body.split()[1:] != [str(args.rows)]:
                    answered["wrong"] += 1
                    answered["last_wrong"] = (status, body[:200])

        asker = threading.Thread(target=ask, daemon=True)
        asker.start()

        def state():
            return json.loads(get(admin + "/admin/cluster")[1])

        # Heal.
        copied_before = state()["bytes_copied"]
        workers[0][0].send_signal(signal.SIGKILL)
        workers[0][0].wait()
        t = time.time()
        live = addresses[1:]
        while True:
            c = copies(live, "sky.object")
            if set(c) == set(before) and set(c.values()) == {2}:
                break
            time.sleep(0.2)
        out["heal_seconds"] = round(time.time() - t, 2)
        out["heal_bytes"] = state()["bytes_copied"] - copied_before
        out["heal_mb_per_s"] = round(out["heal_bytes"] / 1e6 / out["heal_seconds"], 1)

        # Join.
        new_proc, new, _ = start_worker(tmp, "w4")
        procs.append(new_proc)
        copied_before = state()["bytes_copied"]
        t = time.time()
        run("worker", "add", new, "--url", admin)
        last, still = None, time.time()
        while time.time() - still < 2:
            held = census(new) or {}
            n = sum(len(f) for f in held.values())
            if n != last:
                last, still = n, time.time()
            time.sleep(0.1)
        out["join_seconds"] = round(still - t, 2)
        out["join_bytes"] = state()["bytes_copied"] - copied_before
        out["join_chunk_files"] = sum(1 for (tb, _), f in (census(new) or {}).items() if tb == "sky.object"
                                      for n in f if ".overlap" not in n)

        # Drain.
        t = time.time()
        run("worker", "drain", addresses[1], "--url", admin)
        out["drain_seconds"] = round(time.time() - t, 2)

        stop.set()
        asker.join()
        out["queries_answered_meanwhile"] = answered["n"]
        out["queries_wrong"] = answered["wrong"]
        if answered.get("last_wrong"):
            out["last_wrong"] = answered["last_wrong"]
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        out["commit"] = commit
        results = pathlib.Path(__file__).resolve().parent / "results"
        results.mkdir(exist_ok=True)
        (results / f"heal-{commit}-{args.rows}.json").write_text(json.dumps(out, indent=1) + "\n")
        print(json.dumps(out, indent=1))
    finally:
        for p in procs:
            p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
