"""Writes the seed corpus of the HTTP fuzz target into fuzz/http/seeds (committed; run again after changing it):

    python3 fuzz/http/seeds.py

Inputs that once found a bug are kept beside them as found-*. Each seed is one request: its first byte chooses the kind (see src/http.rs), the rest is the raw material.
The uploads are written by astropy in the three VOTable serializations."""

import io
import pathlib
import urllib.parse

from astropy.io.votable import from_table
from astropy.table import Table

OUT = pathlib.Path(__file__).parent / "seeds"


def form(**fields):
    return urllib.parse.urlencode(fields).encode()


def votable(serialization):
    t = Table({"ra": [10.0, 180.5, 359.9], "dec": [-89.9, 0.0, 45.0], "name": ["a", "bb", ""],
               "n": [1, 2, 3], "v": [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]})
    vt = from_table(t)
    vt.get_first_table().format = serialization
    out = io.BytesIO()
    vt.to_xml(out)
    return out.getvalue()


def multipart(*parts):
    body = b""
    for name, value in parts:
        body += b'--XyZzy\r\nContent-Disposition: form-data; name="' + name + b'"\r\n\r\n' + value + b"\r\n"
    return body + b"--XyZzy--\r\n"


SEEDS = {
    "sync-form": b"\x00" + form(LANG="ADQL", QUERY="SELECT TOP 3 id, ra, dec FROM sky.object ORDER BY id",
                                RESPONSEFORMAT="csv"),
    "sync-form-cone": b"\x00" + form(LANG="ADQL", QUERY="SELECT COUNT(*) FROM sky.object WHERE "
                                     "1 = CONTAINS(POINT(ra, dec), CIRCLE(180, 0, 5))", MAXREC="10"),
    "sync-form-votable": b"\x00" + form(LANG="ADQL-2.1", QUERY="SELECT * FROM TAP_SCHEMA.tables",
                                        RESPONSEFORMAT="votable/b2", MAXREC="2"),
    "sync-form-parquet": b"\x00" + form(LANG="ADQL", QUERY="SELECT TOP 10 * FROM sky.object",
                                        FORMAT="parquet", RUNID="x"),
    "sync-get": b"\x01" + form(LANG="ADQL", QUERY="SELECT id FROM sky.object WHERE id IN (1, 2, 3)",
                               RESPONSEFORMAT="tsv"),
    "sync-get-maxrec0": b"\x01" + form(LANG="ADQL", QUERY="SELECT * FROM sky.object", MAXREC="0"),
    "sync-multipart": b"\x02" + multipart((b"LANG", b"ADQL"), (b"QUERY", b"SELECT 1 AS one")),
    "scs": b"\x04" + form(RA="180", DEC="0", SR="1", VERB="3"),
    "scs-pole": b"\x04" + form(RA="0", DEC="-90", SR="0.5"),
    "content-type-form": b"\x05application/x-www-form-urlencoded; charset=utf-8\x00"
                         + form(LANG="ADQL", QUERY="SELECT 1"),
    "content-type-multipart": b"\x05multipart/form-data; boundary=XyZzy\x00"
                              + multipart((b"LANG", b"ADQL"), (b"QUERY", b"SELECT 2 AS two")),
    "path-tables": b"\x06tables/sky.object",
    "path-examples": b"\x06examples",
    "path-capabilities": b"\x06capabilities",
    "uws-create": b"\x07" + form(LANG="ADQL", QUERY="SELECT 1", EXECUTIONDURATION="60")
                  + b"\x00\x00" + form(MAXREC="5"),
    "uws-destruction": b"\x07" + form(LANG="ADQL", QUERY="SELECT 1") + b"\x00\x02"
                       + form(DESTRUCTION="2030-01-01T00:00:00Z"),
    "uws-phase": b"\x07" + form(LANG="ADQL", QUERY="SELECT 1") + b"\x00\x01" + form(PHASE="ABORT"),
}
SEEDS.update({
    "auth-bearer": b"\x08\x00Bearer TOKEN",
    "auth-basic": b"\x08\x00Basic eC1vYXV0aC1iYXNpYzpUT0tFTg==",
    "auth-cookie": b"\x08\x01a=b; SESSION=TOKEN",
    "auth-bad": b"\x08\x00Bearer sky_0000000000000000_" + b"0" * 64,
})
# Bob's private table and space, asked for by others (the oracle: no answer may hold his canary). A first byte of
# 128 or more asks as ada (132 is kind 0 again: kinds are the first byte modulo 11), below as an anonymous caller.
for who, first in (("anon", 0), ("ada", 132)):
    SEEDS.update({
        f"bob-table-{who}": bytes([first]) + form(LANG="ADQL", QUERY="SELECT * FROM user_bob.secret"),
        f"bob-table-join-{who}": bytes([first]) + form(
            LANG="ADQL", QUERY="SELECT o.id, s.label FROM sky.object AS o JOIN user_bob.secret AS s ON o.id = s.tid"),
        f"bob-table-sub-{who}": bytes([first + 1]) + form(
            LANG="ADQL", QUERY="SELECT id FROM sky.object WHERE id IN (SELECT tid FROM user_bob.secret)"),
        f"bob-schema-{who}": bytes([first]) + form(
            LANG="ADQL", QUERY="SELECT * FROM TAP_SCHEMA.columns WHERE table_name LIKE 'user_bob%'"),
        f"bob-vosi-{who}": bytes([first + 6]) + b"tables/user_bob.secret",
        f"bob-portal-{who}": bytes([first + 6]) + b"api/v1/tables",
    })
SEEDS.update({
    # dav's op byte: the method is op % 8, bob's space when (op / 8) % 4 == 3.
    "bob-file-get": b"\x0a\x19secret.txt",
    "bob-file-copy": b"\x0a\x1csecret.txt\x00stolen.txt",
    "bob-file-propfind": b"\x0a\x1a",
    "bob-index-job": b"\x09\x07" + form(TABLE="user_bob.secret", INDEX="label"),
})
for choice, serialization in enumerate(["tabledata", "binary", "binary2"]):
    for query in range(4):
        SEEDS[f"upload-{serialization}-{query}"] = b"\x03" + bytes([query]) + votable(serialization)

OUT.mkdir(exist_ok=True)
# Seeds are overwritten, never removed: inputs that once crashed the service (found-*) and seeds written by hand
# (dav-*, portal-*, user tables) stay.
for name, data in SEEDS.items():
    (OUT / name).write_bytes(data)
print(f"{len(SEEDS)} seeds in {OUT}")
