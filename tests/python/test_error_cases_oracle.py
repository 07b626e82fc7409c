"""The golden ADQL error cases (adql/tests/cases/*.adql whose expectation starts with ERROR) checked against an
independent oracle written here by hand (issue 28, item 4).

The expectations in the case files (`ERROR line:col: message`) were written from skyshard's own output. ORACLE below
was written from the queries alone, from the ADQL 2.1 grammar (IVOA REC 2023-12-15, its BNF appendix and text) and
the corpus tables' schemas (adql/tests/corpus/mod.rs): for each case, the line and column where the error must be
reported (the first character of the offending token, 1-based; for "found end of query", the position just after the
last character), the CLASS of message a correct report must have (a regex of CLASSES), and words the message must
contain (the unknown name, the operator and the ADQL type, the ADQL way to write it...). No message may use the
engine's words for types or its internals (ENGINE_WORDS): users write ADQL, not DataFusion.

Conventions of the oracle (where ADQL fixes no position itself):
- a name that is unknown, reserved or malformed: the name's first character;
- a token the grammar cannot take there: that token (the end of the query when the query stops too early);
- a value where ADQL needs a condition (WHERE mag), or a condition where it needs a value (a comparison in the
  select list: ADQL has no boolean type): the first character of that expression, as for an operand of a wrong type;
- a construct that is not ADQL (LIMIT, '::', '==', '%', FLOAT, INT, TRUE, NULLS FIRST, DELETE): its first character;
- an operand or argument of the wrong type, or a value out of its domain (a coordinate, a radius, a HEALPix order,
  a divisor, a unit): that operand or argument; a wrong number of arguments: the function's name;
- one trailing ';' is tolerated (as a terminator, like trailing blanks): what follows it is the second query.

Where the oracle and the engine disagree and the oracle is believed right, the case is marked xfail(strict=True) with
both answers in the reason: the test then fails the day the engine changes, so the mark is removed on purpose.

Three checks: (1) every error case of the files has an ORACLE entry, and every entry names a case; (2) each case's
query through the real binary (`skyshard adql run` over the corpus Parquet files: `adql check` alone has no tables,
and most of these errors need the corpus schema) and the case file's own expectation give the oracle's position and
class; (3) a sample spanning every class through a running server's TAP /sync endpoint (the corpus tables ingested
as tests/corpus_cluster.rs does): HTTP 400 and a DALI error VOTable whose QUERY_STATUS=ERROR text reads the same.
"""

import re
import subprocess
import xml.etree.ElementTree as ET
from collections import namedtuple

import pytest

from skyshard_processes import SKYSHARD, run, start, tap
from test_adql_cases_vs_duckdb import CORPUS, parse_cases

TIMEOUT = 60  # seconds for one query through the binary or over HTTP: a hang fails instead of waiting forever

# The classes of messages. A correct message of a class matches its regex (case-insensitive).
CLASSES = {
    # The grammar cannot take this token here: says what was expected (or needed) and what was found.
    "syntax": r"\b(expected|needs)\b.*\bfound\b",
    # Valid SQL (or another dialect) but not ADQL: says so, and (in the case's words) how ADQL writes it.
    "not_adql": r"\bnot (an? )?ADQL\b",
    # A clause in the wrong place: says where it belongs (or, as a syntax error, what was expected there).
    "placement": r"\b(before|after|parenthes\w*|only|not allowed|must)\b|\bexpected\b.*\bfound\b",
    # A reserved word used as a name: says it is reserved, and how to quote it ("name", in the case's words).
    "reserved_word": r"\breserved (key)?word\b",
    # A malformed identifier.
    "identifier": r"\bidentifier\b",
    # A name of more parts than catalog.schema.table.column.
    "name_parts": r"\b(parts?|too many|at most|qualifi\w*)\b",
    "unknown_column": r"\bcolumn\b.*\b(not found|unknown|does not exist|no such)\b|\b(unknown|no such) column\b",
    "unknown_table": r"\btable\b.*\b(not found|unknown|does not exist|no such)\b|\b(unknown|no such) table\b",
    "unknown_function": r"\bfunction\b.*\b(not found|unknown|does not exist|no such|neither|not available|"
                        r"not known|not defined)\b"
                        r"|\b(unknown|no such) function\b",
    # A wrong number of arguments: the function's name (in the case's words) and what it takes.
    "arity": r"\b(arguments?|argument\(s\)|at least|at most|takes)\b",
    # An operand of the wrong type: the operator or function and the ADQL type (in the case's words).
    "type": r"\b(must be|cannot be|can ?not be|expects?|takes|needs|found|is not)\b",
    # A value out of its domain: names the value or what is wrong with it (in the case's words).
    "value": r"\b(out of (range|bounds)|range|must|invalid|cannot|can ?not|negative|zero|greater|less|between|"
             r"exceeds?|not)\b",
    # IN_UNIT: an unknown unit, or a conversion that cannot be made.
    "unit": r"\bunits?\b|\bconver(t|sion)\b",
    # A value where ADQL needs a condition (a predicate), or a condition where it needs a value.
    "condition": r"\bcondition\b",
    # A column neither grouped nor aggregated.
    "grouping": r"\bGROUP BY\b|\baggregat\w*",
    # TOP and OFFSET take an unsigned integer.
    "unsigned_integer": r"\bunsigned integer\b|\bnon-negative integer\b|\bwhole number\b",
    "unterminated": r"\bunterminated\b|\bnot closed\b|\bclosing\b",
    "one_query": r"\bonly one\b|\bone query\b|\bsingle query\b",
    "empty": r"\bempty\b|\bno query\b|\bend of query\b",
    # Valid ADQL the service does not support (a REGION shape or frame it does not know).
    "unsupported": r"\b(not supported|unsupported|unknown|cannot|can ?not|only)\b",
    # Not an error at all: the query is valid ADQL and must run.
    "valid": None,
}

# The engine's names of types and of its internals: a message about ADQL must not use them.
ENGINE_WORDS = re.compile(
    r"\b(Float(16|32|64)|U?Int(8|16|32|64)|(Large)?Utf8(View)?|FixedSizeList|LargeList|List\(|Boolean|Decimal128|"
    r"DataFusion|Arrow|arrow|panicked|Internal error|Schema error|Execution error|Plan\()")

Oracle = namedtuple("Oracle", "line col cls words xfail")


def E(line, col, cls, *words, xfail=None):
    """An oracle entry. `words`: each a string (contained, case-insensitive), a tuple of strings (one of them), or
    a compiled regex (found). `xfail`: the reason, when the engine answers otherwise and the oracle is kept."""
    assert cls in CLASSES, cls
    return Oracle(line, col, cls, words, xfail)


def word(pattern):
    return re.compile(pattern, re.I)


# Written from the queries and the ADQL 2.1 standard, not from the expectations (see the module's docstring).
ORACLE = {
    # `%` is no ADQL operator (the BNF has none; MOD(x, y) is the remainder); the standard's WITH example using
    # `id % 10` is not backed by its grammar.
    "aggregate 11": E(1, 14, "not_adql", "%", "MOD"),
    # ZONE is an SQL-92 reserved word, so `AS zone` needs "zone".
    "aggregate 18": E(1, 27, "reserved_word", "zone", '"zone"'),
    # ALL_MAG_HELPER is one regular identifier (ADQL has no quantified comparison `< ALL (...)` anyway): no column.
    "subquery 16": E(1, 40, "unknown_column", "ALL_MAG_HELPER"),
    # An operand of UNION may not have ORDER BY unless in parentheses: the UNION after it cannot follow.
    "setops 9": E(1, 44, "placement", ("UNION", "ORDER BY")),
    # ra is in deg: a valid VOUnit, but deg cannot become s: the unit argument. The message names both units, as
    # the standard's own example does ("Impossible conversion (deg -> kg)").
    "functions 22": E(1, 26, "unit", "deg", word(r"(?<!\w)s(?!\w)"), xfail=(
        "engine reports 1:26 \"cannot convert to 's': the value measures something else\", naming not the value's "
        "unit (deg); ADQL's example of this error names both units (deg -> kg)")),
    # furlong is not a VOUnit ("Incorrect unit definition"): the unit argument.
    "functions 23": E(1, 26, "unit", "furlong"),
    # flags has no unit: a unitless value cannot be converted: the value argument.
    "functions 24": E(1, 22, "unit", word(r"unitless|no unit|unit\b.*\bnot known|unknown unit|without (a )?unit")),
    # A comparison is not a value_expression (no boolean type): the comparison in the select list.
    "functions 25": E(1, 14, "condition"),
    # HEALPix orders go from 0 to 29: the order argument.
    "functions 30": E(1, 33, "value", "30", xfail=(
        "engine reports no position ('query failed: a HEALPix depth must be between 0 and 29, found 30'); the "
        "order is a literal argument at 1:33, known before the query runs")),
    # Division by zero (an SQL data exception): the divisor.
    "functions 33": E(1, 18, "value", "zero", xfail=(
        "engine reports no position ('query failed: Divide by zero error'); the divisor is the literal 0 at 1:18")),
    # No real square root of a negative number: the argument.
    "functions 34": E(1, 19, "value", ("negative", "-1"), xfail=(
        "engine reports no position and its internals ('query failed: Compute error: Execution error: cannot take "
        "square root of a negative number'); the argument is the literal -1 at 1:19")),
    # ivo_ is a prefix for IVOA-defined functions; ivo_foo is none of them.
    "functions 36": E(1, 14, "unknown_function", "ivo_foo"),
    # REGION's STC-S literal: a GALACTIC frame the service does not convert.
    "geometry 5": E(1, 21, "unsupported", "GALACTIC"),
    # REGION's STC-S literal: an ELLIPSE shape the service does not have.
    "geometry 6": E(1, 21, "unsupported", "ELLIPSE"),
    # `AREA(...) > 0` is a comparison in the select list (CONTAINS(...) before it is a valid numeric value).
    "geometry 40": E(1, 44, "condition"),
    # BOX(0, 0, 0, 1): a box of zero width: the width argument.
    "geometry 52": E(1, 24, "value", ("width", "size"), xfail=(
        "engine reports no position ('query failed: BOX width and height must be between 0 and 180 degrees, found "
        "0 and 1', which also contradicts itself: 0 is between 0 and 180); the width is the literal 0 at 1:24")),
    "errors 1": E(1, 26, "not_adql", "LIMIT", "TOP"),
    # The grammar is SELECT [set_quantifier] [set_limit]: DISTINCT after TOP.
    "errors 2": E(1, 14, "placement", "DISTINCT", "TOP"),
    "errors 3": E(1, 40, "one_query"),
    "errors 4": E(1, 1, "not_adql", "DELETE", "SELECT"),
    "errors 5": E(1, 8, "syntax", "FROM"),
    "errors 6": E(1, 31, "syntax", "end of query"),
    "errors 7": E(4, 12, "syntax", ">"),
    "errors 8": E(1, 8, "reserved_word", "distance", '"distance"'),
    # Identifiers MUST begin with a letter; "_x" is the way to write it.
    "errors 9": E(1, 8, "identifier", "letter", '"'),
    "errors 10": E(1, 10, "not_adql", "::", "CAST"),
    "errors 11": E(1, 8, "unknown_column", "nosuchcolumn"),
    "errors 12": E(1, 16, "unknown_table", "cat.nosuchtable"),
    "errors 13": E(1, 16, "unknown_table", "nosuchschema.stars"),
    # CONTAINS is a numeric function; WHERE needs a predicate: the value given instead.
    "errors 14": E(1, 32, "condition"),
    "errors 15": E(1, 32, "condition"),
    "errors 16": E(1, 8, "unknown_function", "nosuchfunction"),
    "errors 17": E(1, 8, "arity", "ABS"),
    # FLOAT is an SQL type, not an ADQL cast target (REAL, DOUBLE PRECISION).
    "errors 18": E(1, 19, "not_adql", "FLOAT", ("REAL", "DOUBLE PRECISION")),
    # || concatenates character values: the POINT operand.
    "errors 19": E(1, 8, "type", "||", "POINT"),
    # A derived table needs its correlation name: the query ends where it should be.
    "errors 20": E(1, 42, "syntax", "end of query"),
    "errors 21": E(1, 39, "unterminated"),
    "errors 22": E(1, 12, "unsigned_integer", "TOP"),
    "errors 23": E(1, 33, "unsigned_integer", "OFFSET"),
    "errors 24": E(1, 35, "not_adql", "=="),
    "errors 25": E(1, 37, "not_adql", "TRUE"),
    # Three numbers are not three vertices (six numbers, or three points).
    "errors 26": E(1, 8, "arity", "POLYGON"),
    # Two arguments are CIRCLE(centre, radius): the centre must be a POINT, not a number.
    "errors 27": E(1, 15, "type", "CIRCLE", "POINT"),
    # ADQL's BNF: <table_reference> [NATURAL] [<join_type>] JOIN <table_reference> [<join_specification>]: the
    # join specification is optional after INNER JOIN as after JOIN (case errors 28, which runs as a cross join).
    "errors 29": E(None, None, "valid", xfail=(
        "engine reports 1:44 'expected ON or USING after INNER JOIN ..., found end of query'; ADQL's BNF makes the "
        "join specification optional for every join type, and the engine itself runs `JOIN cat.obs o` without ON "
        "(case errors 28): INNER JOIN without ON is the same valid query")),
    "errors 30": E(1, 8, "grouping", word(r"\bid\b")),
    # + takes numbers: the character string operand.
    "errors 31": E(1, 13, "type", "+", ("string", "character", "text"), xfail=(
        "engine reports no position and the engine's types ('Cannot coerce arithmetic expression Float64 + Utf8 to "
        "valid types'); ADQL says: + takes numbers, the character string 'x' at 1:13 is not one")),
    "errors 32": E(1, 38, "not_adql", "NULLS"),
    # A subquery is no value_expression in ADQL (only IN, EXISTS and FROM take one).
    "errors 33": E(1, 9, "syntax", "SELECT", xfail=(
        "engine runs scalar subqueries (an extension: 06_subquery uses them) and reports, without a position, "
        "'query failed: Scalar subquery returned more than one row'; in ADQL 2.1's BNF no value_expression is a "
        "subquery, so the inner SELECT at 1:9 is where the query stops being ADQL")),
    # id, star_id, mag and band each exist in exactly one of the two tables; x in neither.
    "errors 34": E(1, 129, "unknown_column", word(r"\bx\b")),
    "errors 35": E(1, 38, "syntax", ")"),
    "errors 36": E(1, 34, "syntax", "end of query"),
    # "Common table expressions can be defined only in the main query": the inner WITH.
    "errors 37": E(1, 52, "placement", "WITH"),
    "errors 38": E(1, 29, "reserved_word", "select", '"select"'),
    "errors 39": E(1, 41, "type", "CONTAINS", ("number", "numeric")),
    "errors 40": E(1, 15, "type", "COORD1", "POINT", "CIRCLE"),
    # REGION takes a string literal, not a column.
    "errors 41": E(1, 15, "type", "REGION", "literal"),
    # EXISTS takes a parenthesised subquery.
    "errors 42": E(1, 39, "syntax", "cat"),
    "errors 43": E(1, 18, "not_adql", "INT", "INTEGER"),
    "errors 44": E(1, 34, "syntax", "end of query"),
    # At most catalog.schema.table.column.
    "errors 45": E(1, 8, "name_parts"),
    "errors 46": E(1, 1, "empty"),
    # A comment stands for whitespace: nothing but the end of the query.
    "errors 47": E(1, 18, "empty"),
    "errors 48": E(1, 44, "syntax", ")"),
    # A delimited identifier has at least one character.
    "errors 49": E(1, 8, "identifier", "empty"),
    # DALI: declinations in [-90, 90]; a radius is not negative; a box no wider than 180 degrees.
    "errors values 1": E(1, 68, "value", "95"),
    "errors values 2": E(1, 72, "value", "-0.5"),
    "errors values 3": E(1, 67, "value", "-90.01"),
    "errors values 4": E(1, 68, "value", "181"),
    "errors values 5": E(1, 81, "value", "91"),
}

# Through a running server: at least one case of every class (the empty query is refused by the TAP layer before
# ADQL sees it, so errors 47 stands for the empty class).
SAMPLE = [
    "errors 7", "errors 20", "errors 1", "aggregate 11", "errors 2", "errors 37", "errors 8", "errors 9",
    "errors 45", "errors 11", "errors 34", "errors 12", "functions 36", "errors 17", "errors 19", "errors 40",
    "errors values 1", "functions 23", "errors 15", "errors 30", "errors 23", "errors 21", "errors 3", "errors 47",
    "geometry 6", "errors 29",
]

CASES = {name: (query, expected) for name, query, expected in parse_cases()}
ERROR_CASES = {name for name, (_, expected) in CASES.items() if expected.startswith("ERROR")}
POSITIONED = re.compile(r"(\d+):(\d+): (.*)", re.S)


def params(names):
    out = []
    for name in sorted(names):
        o = ORACLE[name]
        marks = [pytest.mark.xfail(strict=True, reason=o.xfail)] if o.xfail else []
        out.append(pytest.param(name, marks=marks, id=name))
    return out


def check_message(name, line, col, message):
    """Asserts a reported error (its position and text) is what ORACLE says of case `name`."""
    o = ORACLE[name]
    what = f"{name}: {CASES[name][0]!r}\n  reported {line}:{col}: {message}\n  oracle {o.line}:{o.col} {o.cls}"
    assert (line, col) == (o.line, o.col), what
    assert re.search(CLASSES[o.cls], message, re.I), f"not a '{o.cls}' message: {what}"
    for w in o.words:
        if isinstance(w, tuple):
            assert any(x.lower() in message.lower() for x in w), f"names none of {w}: {what}"
        elif isinstance(w, re.Pattern):
            assert w.search(message), f"has no {w.pattern}: {what}"
        else:
            assert w.lower() in message.lower(), f"does not name {w!r}: {what}"
    bad = ENGINE_WORDS.search(message)
    assert not bad, f"speaks the engine's words ({bad.group(0)}), not ADQL's: {what}"


def test_every_error_case_has_an_oracle_entry():
    missing = sorted(ERROR_CASES - set(ORACLE))
    assert not missing, f"error cases without an ORACLE entry (write one from the query and the standard): {missing}"
    unknown = sorted(set(ORACLE) - set(CASES))
    assert not unknown, f"ORACLE entries for no case: {unknown}"
    # A case the oracle calls valid may only be in the files as an error while the engine is known to be wrong.
    for name, o in ORACLE.items():
        if name not in ERROR_CASES:
            assert o.cls == "valid" and not o.xfail, f"{name} is no error case now: update its ORACLE entry"
    assert len(ERROR_CASES) >= 60, len(ERROR_CASES)


def test_the_sample_spans_every_class():
    assert len(SAMPLE) >= 15
    assert set(SAMPLE) <= set(ORACLE)
    missing = {o.cls for o in ORACLE.values()} - {ORACLE[n].cls for n in SAMPLE}
    assert not missing, f"classes with no case sent to the server: {missing}"


@pytest.mark.parametrize("name", params(ORACLE))
def test_case_file_expectation_agrees_with_the_oracle(name):
    _, expected = CASES[name]
    o = ORACLE[name]
    if o.cls == "valid":
        assert not expected.startswith("ERROR"), f"{name}: the file expects {expected!r} of a valid query"
        return
    m = POSITIONED.fullmatch(expected.removeprefix("ERROR ").strip())
    assert m, f"{name}: the expectation has no LINE:COL: {expected!r}"
    check_message(name, int(m.group(1)), int(m.group(2)), m.group(3))


def run_query(query):
    """(exit code, stderr) of the query through `skyshard adql run` over the corpus tables."""
    tables = [f"--table=cat.{t}={CORPUS / (t + '.parquet')}" for t in ("stars", "obs", "fields")]
    out = subprocess.run([SKYSHARD, "adql", "run", *tables, "--format", "csv", "--", query],
                         capture_output=True, text=True, timeout=TIMEOUT)
    return out.returncode, out.stderr


@pytest.mark.parametrize("name", params(ORACLE))
def test_binary_reports_the_oracle_position_and_class(name):
    query, _ = CASES[name]
    code, stderr = run_query(query)
    o = ORACLE[name]
    if o.cls == "valid":
        assert code == 0, f"{name}: {query!r} is valid ADQL, yet: {stderr}"
        return
    assert code == 1, f"{name}: exit {code}: {stderr}"
    m = POSITIONED.fullmatch(stderr.strip().removeprefix("error: "))
    assert m, f"{name}: no LINE:COL: in {stderr!r}"
    check_message(name, int(m.group(1)), int(m.group(2)), m.group(3).strip())


def test_the_oracle_can_catch_a_wrong_position():
    """The check is not vacuous: a position one column off is refused."""
    name = "errors 11"
    o = ORACLE[name]
    with pytest.raises(AssertionError):
        check_message(name, o.line, o.col + 1, "column nosuchcolumn not found")
    with pytest.raises(AssertionError):
        check_message(name, o.line, o.col, "Schema error: No field named nosuchcolumn. Valid fields are Int64.")
    check_message(name, o.line, o.col, "column nosuchcolumn not found")


@pytest.fixture(scope="module")
def corpus_service(tmp_path_factory):
    """`skyshard serve` over the corpus tables, loaded as tests/corpus_cluster.rs loads them: cat.stars a director in
    small chunks, cat.obs its child, cat.fields replicated."""
    base = tmp_path_factory.mktemp("error-oracle")
    data = base / "data"
    run("ingest", "--quiet", "--data-dir", str(data), "--table", "cat.stars", "--input", str(CORPUS / "stars.parquet"),
        "--ra", "ra", "--dec", "dec", "--id", "id", "--chunk-rows", "8")
    run("ingest", "--quiet", "--data-dir", str(data), "--table", "cat.obs", "--input", str(CORPUS / "obs.parquet"),
        "--director", "cat.stars", "--director-key", "star_id")
    run("ingest", "--quiet", "--data-dir", str(data), "--table", "cat.fields", "--input",
        str(CORPUS / "fields.parquet"), "--replicated")
    with open(base / "serve.log", "w") as log:
        proc, url = start(["serve", "--data-dir", str(data), "--port", "0", "--workers", "2"], stderr=log)
        try:
            yield url
        finally:
            proc.kill()
            proc.wait(timeout=TIMEOUT)


@pytest.mark.parametrize("name", params(SAMPLE))
def test_tap_sync_reports_the_oracle_position_and_class(corpus_service, name):
    query, _ = CASES[name]
    status, body = tap(corpus_service, query, fmt="votable", timeout=TIMEOUT)
    o = ORACLE[name]
    if o.cls == "valid":
        assert status == 200, f"{name}: {query!r} is valid ADQL, yet HTTP {status}: {body}"
        return
    assert status == 400, f"{name}: HTTP {status}: {body}"
    root = ET.fromstring(body)
    infos = [e for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "INFO" and e.get("name") == "QUERY_STATUS"]
    assert len(infos) == 1 and infos[0].get("value") == "ERROR", f"{name}: {body}"
    text = (infos[0].text or "").strip()
    m = POSITIONED.search(text)
    assert m, f"{name}: no LINE:COL: in the error document's text {text!r}"
    check_message(name, int(m.group(1)), int(m.group(2)), m.group(3).strip())
