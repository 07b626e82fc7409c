"""A user table cross-matched against the catalog (issue 14), timed through a running skyshard TAP service and with
DuckDB over the same rows, in the same run:

    python3 benches/peers/user_xmatch_peer.py TAP_URL TOKEN OBJECT_PARQUET WORKDIR [--arcsec 1]

The user table is made from a query on the catalog, as a user would: an async job (`SELECT id AS tid, ra, dec FROM
sky.object`, every row) whose Parquet result is loaded into `user_NAME.targets`, declared with the position and id
UCDs so that it is partitioned on the catalog's chunk map. Then every pair (target, object) within R arcsec is
counted: skyshard runs it chunk by chunk on the workers (the explain output is checked for it); DuckDB runs the
zone join of xmatch_peer.py between the job's result file and the catalog's Parquet file (loads into memory are not
timed). Creating the table (job, download, load) is timed too and reported apart."""

import argparse
import json
import time
import urllib.parse
import urllib.request

import duckdb
from zones import zone_join_count

DEFINITION = """<vosi:table xmlns:vosi="http://www.ivoa.net/xml/VOSITables/v1.0"
  xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <name>{name}</name><description>every object of the catalog, as a user's target list</description>
  <column><name>tid</name><ucd>meta.id;meta.main</ucd><dataType xsi:type="vs:TAPType">BIGINT</dataType></column>
  <column><name>ra</name><unit>deg</unit><ucd>pos.eq.ra;meta.main</ucd>
    <dataType xsi:type="vs:TAPType">DOUBLE</dataType></column>
  <column><name>dec</name><unit>deg</unit><ucd>pos.eq.dec;meta.main</ucd>
    <dataType xsi:type="vs:TAPType">DOUBLE</dataType></column>
</vosi:table>"""


def call(url, token, method="GET", data=None, content_type=None, timeout=7200):
    req = urllib.request.Request(url, data=data, method=method, headers={"Authorization": f"Bearer {token}"})
    if content_type:
        req.add_header("Content-Type", content_type)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("token")
    p.add_argument("parquet")
    p.add_argument("workdir")
    p.add_argument("--arcsec", type=float, default=1.0)
    a = p.parse_args()
    me = json.loads(call(a.url.replace("/tap", "/api/v1/me"), a.token)[1])
    name = f"user_{me['user']}.targets"
    r = a.arcsec / 3600

    t = time.perf_counter()
    call(f"{a.url}/tables/{name}", a.token, "PUT", DEFINITION.format(name=name).encode(), "text/xml")
    form = urllib.parse.urlencode({"LANG": "ADQL", "QUERY": "SELECT id AS tid, ra, dec FROM sky.object",
                                   "RESPONSEFORMAT": "parquet", "MAXREC": "100000000", "PHASE": "RUN"}).encode()
    opener = urllib.request.build_opener(NoRedirect)
    req = urllib.request.Request(a.url + "/async", data=form, headers={"Authorization": f"Bearer {a.token}"})
    try:
        opener.open(req)
        raise SystemExit("expected a redirect to the job")
    except urllib.error.HTTPError as e:
        job = e.headers["Location"]
    while call(job + "/phase", a.token)[1].decode().strip() in ("QUEUED", "EXECUTING"):
        time.sleep(0.2)
    result = f"{a.workdir}/targets.parquet"
    with open(result, "wb") as f:
        f.write(call(job + "/results/result", a.token)[1])
    with open(result, "rb") as f:
        call(f"{a.url}/load/{name}", a.token, "POST", f.read(), "application/vnd.apache.parquet")
    made_s = time.perf_counter() - t

    adql = (f"SELECT COUNT(*) AS n FROM {name} AS t JOIN sky.object AS o "
            f"ON 1 = CONTAINS(POINT(t.ra, t.dec), CIRCLE(o.ra, o.dec, {r}))")
    plan = call(f"{a.url}/explain", a.token, "POST",
                urllib.parse.urlencode({"LANG": "ADQL", "QUERY": adql}).encode())[1].decode()
    assert "fragment over" in plan and "ConeJoinExec" in plan, plan
    form = urllib.parse.urlencode({"LANG": "ADQL", "QUERY": adql, "RESPONSEFORMAT": "csv"}).encode()
    t = time.perf_counter()
    ours = int(call(a.url + "/sync", a.token, "POST", form)[1].decode().split()[1])
    ours_s = time.perf_counter() - t

    con = duckdb.connect()
    theirs, theirs_s = zone_join_count(con, f"(SELECT tid AS id, ra, dec FROM read_parquet('{result}'))",
                                       f"read_parquet('{a.parquet}')", r)
    rows = con.execute("SELECT COUNT(*) FROM zone_l").fetchall()[0][0]
    print(f"user table of {rows} rows made from a query (job, download, load) in {made_s:.2f} s")
    print(f"{a.arcsec} arcsec pairs, user table x catalog: skyshard {ours} in {ours_s:.2f} s (chunk-local on the "
          f"workers); DuckDB {theirs} in {theirs_s:.2f} s; ratio {theirs_s / ours_s:.2f}x")
    call(f"{a.url}/tables/{name}", a.token, "DELETE")
    assert rows > 0 and ours == theirs, "the answers differ"


if __name__ == "__main__":
    main()
