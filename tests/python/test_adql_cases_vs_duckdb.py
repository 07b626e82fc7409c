"""The golden ADQL cases (adql/tests/cases/*.adql) against DuckDB, an independent engine.

The expectations in those files were first written from skyshard's own output; this test checks them a second way.
Every case DuckDB can express is translated to DuckDB SQL (TOP -> LIMIT, LOG -> LN, hexadecimal literals to decimal,
DISTANCE and circle CONTAINS to the haversine formula written out) and run over the same tables
(adql/tests/corpus/*.parquet, which a Rust test keeps equal to the tables the cases run on). Each answer must match
the expectation. A case DuckDB cannot express is skipped for a named reason; a case where the two engines
legitimately differ is listed in DIFFERENCES with the reason, and must still differ (so the list stays true).
"""

import math
import pathlib
import re
from datetime import datetime

import duckdb
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CASES = ROOT / "adql" / "tests" / "cases"
CORPUS = ROOT / "adql" / "tests" / "corpus"

# Constructs DuckDB has no equivalent of (or spells differently in a way a text rewrite cannot follow): a case that
# uses one is not run. Each is (pattern, reason).
INEXPRESSIBLE = [
    (r"\bIN_UNIT\s*\(", "IN_UNIT is ADQL's unit conversion"),
    (r"\bivo_healpix_", "the HEALPix functions are ADQL user-defined functions"),
    (r"\bRAND\s*\(", "random numbers"),
    (r"\b(BOX|POLYGON|REGION|AREA|CENTROID|INTERSECTS|COORD1|COORD2|COORDSYS)\s*\(", "no spherical geometry in DuckDB"),
    (r"\bfootprint\b|\bcenter\b", "geometry-valued columns"),
    (r"(?<![<>!])\^", "DuckDB's ^ is exponentiation, ADQL's is exclusive or"),
    (r"'\s+'", "adjacent string literals are one literal in ADQL"),
    (r"\bcat\.s\.", "a table alias qualified by a schema"),
    (r"\bSELECT\s+(?:\*\s+)?(?:TOP\s+\d+\s+)?\bPOINT\s*\(|\bCIRCLE\s*\(\s*'", "geometry values in the select list"),
]

# Cases where DuckDB's answer differs from the expectation for a reason that is not a skyshard bug.
DIFFERENCES = {
    "functions 13": "CAST of 3.7 to an integer: DuckDB rounds (4), skyshard truncates (3) as DataFusion does; SQL leaves it to the implementation",
    "functions 14": "CAST to VARCHAR(3) / CHAR(4): DuckDB ignores the length, skyshard truncates and pads as SQL says",
    "join 21": "JOIN without ON (ADQL's grammar makes the join specification optional): DuckDB's parser refuses it; skyshard joins every pair",
    "errors 28": "JOIN without ON, as join 21",
}

# Cases whose ORDER BY has ties, so more than one order (or, with TOP, more than one choice of rows) is right: compared
# as multisets of rows, or on the listed columns only (by position) when TOP may pick different tied rows.
TIES = {
    "order 2": ("ORDER BY mag DESC puts the NULLs first and there are more than five", [1]),
    "order 5": ("stars 0 and 1 are both at |dec| = 90", None),
    "geometry 14": ("stars 3 and 4 are both 0.5 degrees from (0, 0)", None),
}


def parse_cases():
    cases = []
    for path in sorted(CASES.glob("*.adql")):
        for block in path.read_text().split("\n== "):
            block = block.lstrip("= ")
            if not block.strip() or block.startswith("#"):
                continue
            name, rest = block.split("\n", 1)
            query, expected = rest.split("\n--- expect\n", 1)
            cases.append((name.strip(), query.strip(), expected.rstrip()))
    return cases


def call_args(text, start):
    """The top-level comma-separated arguments of the call whose '(' is at text[start], and the index after ')'."""
    depth, args, cur, i = 0, [], "", start
    in_str = False
    while i < len(text):
        c = text[i]
        if c == "'":
            in_str = not in_str
        if not in_str:
            if c == "(":
                depth += 1
                if depth == 1:
                    i += 1
                    continue
            elif c == ")":
                depth -= 1
                if depth == 0:
                    args.append(cur.strip())
                    return args, i + 1
            elif c == "," and depth == 1:
                args.append(cur.strip())
                cur = ""
                i += 1
                continue
        cur += c
        i += 1
    raise ValueError("unbalanced parentheses")


def haversine(ra1, dec1, ra2, dec2):
    return (
        f"degrees(2 * asin(sqrt(at_most_1(pow(sin(radians(({dec2}) - ({dec1})) / 2), 2) + "
        f"cos(radians({dec1})) * cos(radians({dec2})) * pow(sin(radians(({ra2}) - ({ra1})) / 2), 2)))))"
    )


def point(arg):
    """The two coordinates of a POINT(...) argument."""
    m = re.match(r"POINT\s*\(", arg, re.I)
    if not m:
        raise ValueError(f"not a point: {arg}")
    args, _ = call_args(arg, m.end() - 1)
    if len(args) == 3:
        args = args[1:]
    return args


def rewrite_calls(sql, name, build):
    """Replaces every call NAME(...) with build(args) (innermost calls first)."""
    pattern = re.compile(rf"\b{name}\s*\(", re.I)
    while True:
        m = pattern.search(sql)
        if not m:
            return sql
        args, end = call_args(sql, m.end() - 1)
        sql = sql[: m.start()] + build(args) + sql[end:]


def translate(query):
    """DuckDB SQL for an ADQL query, or raise ValueError naming what DuckDB cannot express."""
    for pattern, reason in INEXPRESSIBLE:
        if re.search(pattern, query, re.I):
            raise ValueError(reason)
    sql = query.rstrip().rstrip(";")
    tops = re.findall(r"\bTOP\s+(\d+)", sql, re.I)
    if len(tops) > 1 or (tops and not re.match(r"\s*SELECT\s+(DISTINCT\s+|ALL\s+)?TOP\b", sql, re.I)):
        raise ValueError("TOP inside a subquery or a set operation")
    limit = None
    if tops:
        limit = tops[0]
        sql = re.sub(r"\bTOP\s+\d+\s*", "", sql, count=1, flags=re.I)
    offset = None
    m = re.search(r"\s+OFFSET\s+(\d+)\s*$", sql, re.I)
    if m:
        offset = m.group(1)
        sql = sql[: m.start()]
    if limit is not None:
        sql += f" LIMIT {limit}"
    if offset is not None:
        sql += f" OFFSET {offset}"
    sql = re.sub(r"0x([0-9a-fA-F]+)", lambda m: str(int(m.group(1), 16)), sql)
    sql = re.sub(r"\bLOG\s*\(", "LN(", sql, flags=re.I)

    def distance(args):
        if len(args) == 4:
            return haversine(*args)
        (a, b), (c, d) = point(args[0]), point(args[1])
        return haversine(a, b, c, d)

    sql = rewrite_calls(sql, "DISTANCE", distance)

    def contains(args):
        ra, dec = point(args[0])
        m = re.match(r"CIRCLE\s*\(", args[1], re.I)
        if not m:
            raise ValueError("CONTAINS of a shape other than a circle")
        c = call_args(args[1], m.end() - 1)[0]
        if len(c) == 4 and c[0].startswith("'"):
            c = c[1:]
        if len(c) == 2:
            (cra, cdec), r = point(c[0]), c[1]
        else:
            cra, cdec, r = c
        return f"CAST(({haversine(ra, dec, cra, cdec)} <= ({r})) AS INTEGER)"

    sql = rewrite_calls(sql, "CONTAINS", contains)
    return sql


@pytest.fixture(scope="module")
def duck():
    con = duckdb.connect()
    con.execute("SET integer_division = true")
    # SQL leaves the place of NULLs to the implementation; skyshard (DataFusion) puts them last ascending, first
    # descending, as PostgreSQL does.
    con.execute("SET default_null_order = 'nulls_last_on_asc_first_on_desc'")
    con.execute("CREATE SCHEMA cat")
    for name in ["stars", "obs", "fields"]:
        path = CORPUS / f"{name}.parquet"
        assert path.exists(), path
        con.execute(f"CREATE TABLE cat.{name} AS SELECT * FROM read_parquet('{path}')")
    con.execute("SET search_path = 'cat'")
    con.execute("CREATE MACRO truncate(x, n := 0) AS trunc(x * pow(10, n)) / pow(10, n)")
    con.execute("CREATE MACRO cot(x) AS 1 / tan(x)")
    # Not least(1.0, x): DuckDB's least skips NULLs, and a NULL coordinate must give a NULL distance.
    con.execute("CREATE MACRO at_most_1(x) AS CASE WHEN x > 1.0 THEN 1.0 ELSE x END")
    return con


def cell_text(v):
    if v is None:
        return "NULL"
    if isinstance(v, datetime):
        return v.isoformat()
    return str(v)


def same_cell(expected, got):
    if expected == "NULL" or got is None:
        return expected == "NULL" and got is None
    if isinstance(got, list):
        if not (expected.startswith("(") and expected.endswith(")")):
            return False
        want = expected[1:-1].split()
        return len(want) == len(got) and all(same_cell(w, g) for w, g in zip(want, got))
    if isinstance(got, bool):
        return expected.lower() == str(got).lower()
    if isinstance(got, (int, float)):
        try:
            e = float(expected)
        except ValueError:
            return False
        g = float(got)
        if math.isnan(e) or math.isnan(g):
            return math.isnan(e) and math.isnan(g)
        return math.isclose(e, g, rel_tol=1e-7, abs_tol=1e-9)
    return expected.replace("T", " ") == cell_text(got).replace("T", " ")


def matches(expected, rows, ordered):
    lines = expected.split("\n")[1:]
    if lines == ["(no rows)"]:
        lines = []
    want = [line.split(" | ") for line in lines]
    if len(want) != len(rows) or any(len(w) != len(r) for w, r in zip(want, rows)):
        return False
    if not ordered:
        want = sorted(want, key=lambda r: [c for c in r])
        rows = sorted(rows, key=lambda r: [cell_text(c) for c in r])
        # Sorting by text may order numbers differently from their expectations; fall back to any matching.
        remaining = list(rows)
        for w in want:
            hit = next((r for r in remaining if all(same_cell(a, b) for a, b in zip(w, r))), None)
            if hit is None:
                return False
            remaining.remove(hit)
        return True
    return all(all(same_cell(a, b) for a, b in zip(w, r)) for w, r in zip(want, rows))


def test_golden_cases_agree_with_duckdb(duck):
    cases = parse_cases()
    assert len(cases) >= 300
    compared, skipped, failures, still_differ = [], {}, [], set()
    for name, query, expected in cases:
        if expected.startswith("ERROR"):
            continue
        try:
            sql = translate(query)
        except ValueError as e:
            skipped.setdefault(str(e), []).append(name)
            continue
        try:
            rows = duck.execute(sql).fetchall()
        except duckdb.Error as e:
            if name in DIFFERENCES:
                still_differ.add(name)
                continue
            failures.append(f"{name}: DuckDB refused the translation: {e}\n  adql: {query}\n  sql:  {sql}")
            continue
        ordered = re.search(r"\bORDER\s+BY\b", query, re.I) is not None
        if name in TIES:
            ordered, columns = False, TIES[name][1]
            if columns is not None:
                lines = expected.split("\n")
                expected = "\n".join(" | ".join(line.split(" | ")[c] for c in columns) for line in lines)
                rows = [tuple(r[c] for c in columns) for r in rows]
        if matches(expected, rows, ordered):
            compared.append(name)
            continue
        if name in DIFFERENCES:
            still_differ.add(name)
            continue
        failures.append(
            f"{name}: DuckDB disagrees\n  adql: {query}\n  sql:  {sql}\n  expected:\n    "
            + expected.replace("\n", "\n    ")
            + "\n  duckdb:\n    "
            + "\n    ".join(" | ".join(cell_text(c) for c in r) for r in rows)
        )
    summary = f"{len(compared)} cases agree with DuckDB; skipped: " + "; ".join(
        f"{reason} ({len(names)})" for reason, names in skipped.items()
    )
    print(summary)
    assert not failures, summary + "\n\n" + "\n\n".join(failures)
    assert still_differ == set(DIFFERENCES), f"listed differences that no longer differ: {set(DIFFERENCES) - still_differ}"
    assert len(compared) >= 150, summary
