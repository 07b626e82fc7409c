//! The whole ADQL corpus (`adql/tests/cases/*.adql`) through a cluster: the corpus tables are written to Parquet,
//! ingested (`cat.stars` a director cut into many small chunks, `cat.obs` its child, `cat.fields` replicated) and
//! served by `skyshard serve` with two workers; every case is asked over HTTP (Parquet results) and must give the
//! single-node answer its file records. Rows are compared as sorted sets when the query has no ORDER BY; a TOP
//! without ORDER BY may pick any rows, so its rows must be that many rows of the whole answer (the query without its
//! TOP, run on one node); queries using RAND are skipped.

#[path = "../adql/tests/corpus/mod.rs"]
mod corpus;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use arrow::array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn skyshard() -> Command {
    Command::new(env!("CARGO_BIN_EXE_skyshard"))
}

fn write_parquet(path: &Path, batch: &RecordBatch) {
    let file = std::fs::File::create(path).unwrap();
    let mut w = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

fn ingest(data: &Path, table: &str, input: &Path, kind: &[&str]) {
    let out = skyshard()
        .args(["ingest", "--quiet", "--data-dir"])
        .arg(data)
        .args(["--table", table, "--input"])
        .arg(input)
        .args(kind)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// How a message reads inside a DALI error document.
fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// POSTs a sync query; (status, body).
fn sync(address: &str, query: &str) -> (u16, Vec<u8>) {
    let encode = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let form = format!(
        "LANG=ADQL&RESPONSEFORMAT=parquet&MAXREC=10000000&QUERY={}",
        encode(query)
    );
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "POST /tap/sync HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
        form.len()
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let end = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&response[..end]).to_lowercase();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut body = response[end + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap().trim(), 16)
                    .unwrap();
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
            rest = &rest[line_end + 2 + size + 2..];
        }
        body = out;
    }
    (status, body)
}

/// Cases with more than one right answer, compared by row count only, and why.
const AMBIGUOUS: &[(&str, &str)] = &[
    (
        "order 1",
        "TOP 5 ... ORDER BY mag: the 5th and 6th stars have the same magnitude",
    ),
    (
        "order 2",
        "TOP 5 ... ORDER BY mag DESC: NULLs first, and there are more than five",
    ),
    ("order 3", "as order 1, with an alias"),
    ("order 16", "ORDER BY ra: stars 0 and 2 both sit at RA 0"),
    (
        "setops 14",
        "each branch's TOP 1 has no ORDER BY of its own: any row",
    ),
    (
        "with 1",
        "AVG(flux) = (SELECT MAX(f) ...): float equality between two evaluations of an average whose partial sums \
         arrive from the chunks in a different order each time",
    ),
];

/// The query without the TOP of its outermost SELECT, when that is its only TOP.
fn without_top(query: &str) -> Option<String> {
    let upper = query.to_uppercase();
    if upper.matches("TOP ").count() != 1 {
        return None;
    }
    let at = upper.find("TOP ")?;
    let head = upper[..at].split_whitespace().collect::<Vec<_>>();
    if !matches!(
        head.as_slice(),
        ["SELECT"] | ["SELECT", "DISTINCT"] | ["SELECT", "ALL"]
    ) {
        return None;
    }
    let rest = &query[at + 4..];
    let digits = rest.trim_start();
    let n = digits.find(|c: char| !c.is_ascii_digit())?;
    Some(format!("{}{}", &query[..at], &digits[n..]))
}

/// True when `part` has `whole`'s header and each of its rows is a distinct row of `whole` (with multiplicity).
fn rows_within(part: &str, whole: &str) -> bool {
    if part.trim() == "(no rows)" {
        return true;
    }
    let (mut p, mut w) = (part.lines(), whole.lines());
    if p.next() != w.next() {
        return false;
    }
    let mut pool: Vec<&str> = w.collect();
    p.all(|row| match pool.iter().position(|r| *r == row) {
        Some(i) => {
            pool.swap_remove(i);
            true
        }
        None => row == "(no rows)",
    })
}

/// Rendered rows of a case answer, sorted unless the order is part of the answer.
fn normalize(text: &str, ordered: bool) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    if !ordered && lines.len() > 1 {
        lines[1..].sort();
    }
    lines
}

#[test]
fn every_corpus_query_gives_the_single_node_answer_through_a_cluster() {
    let dir = std::env::temp_dir().join(format!("skyshard-corpus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    write_parquet(&dir.join("stars.parquet"), &corpus::stars());
    write_parquet(&dir.join("obs.parquet"), &corpus::obs());
    write_parquet(&dir.join("fields.parquet"), &corpus::fields());
    let data = dir.join("data");
    // 200 stars in chunks of at most 8 rows: dozens of chunks, so joins and aggregates cross chunk boundaries.
    ingest(
        &data,
        "cat.stars",
        &dir.join("stars.parquet"),
        &[
            "--ra",
            "ra",
            "--dec",
            "dec",
            "--id",
            "id",
            "--chunk-rows",
            "8",
        ],
    );
    ingest(
        &data,
        "cat.obs",
        &dir.join("obs.parquet"),
        &["--director", "cat.stars", "--director-key", "star_id"],
    );
    ingest(
        &data,
        "cat.fields",
        &dir.join("fields.parquet"),
        &["--replicated"],
    );
    let mut child = skyshard()
        .args(["serve", "--port", "0", "--workers", "2", "--data-dir"])
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    let mut address = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.split("TAP service at http://").nth(1) {
            address = Some(rest.split("/tap").next().unwrap().to_string());
            break;
        }
    }
    let address = address.expect("the service started");
    let manifest =
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    let cases_dir = Path::new(&manifest).join("adql/tests/cases");
    let mut files: Vec<_> = std::fs::read_dir(&cases_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let engine = adql::Engine::new(std::sync::Arc::new(corpus::catalog()));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (mut compared, mut skipped, mut tops_by_value) = (0, 0, 0);
    let mut failures = Vec::new();
    for path in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "adql"))
    {
        for case in corpus::parse_cases(&std::fs::read_to_string(path).unwrap()) {
            let upper = case.query.to_uppercase();
            if upper.contains("RAND(") {
                skipped += 1;
                continue;
            }
            let (status, body) = sync(&address, &case.query);
            let expected_error = case.expected.starts_with("ERROR");
            let actual = if status == 200 {
                let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(body))
                    .unwrap()
                    .build()
                    .unwrap();
                let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
                if batches.is_empty() {
                    "(no rows)".to_string()
                } else {
                    corpus::render(&batches).trim_end().to_string()
                }
            } else {
                format!("ERROR {}", String::from_utf8_lossy(&body))
            };
            compared += 1;
            let same = if expected_error {
                // The user's mistake is a 400 through the cluster too (never a 500 or a 503), and an error the
                // front end finds (positioned, `LINE:COL: ...`) reads the same.
                // (The service also knows TAP_SCHEMA, so a list of known tables is compared up to its start; an
                // empty query is refused by the TAP layer before ADQL sees it.)
                let message = case.expected.trim_start_matches("ERROR").trim();
                let message = message.split(" (known tables:").next().unwrap_or(message);
                let positioned = message.split_once(':').is_some_and(|(line, rest)| {
                    line.parse::<u32>().is_ok() && rest.split_once(':').is_some()
                });
                let reads_the_same = if case.query.trim().is_empty() {
                    actual.contains("QUERY is missing")
                } else {
                    !positioned || actual.contains(&xml_escape(message))
                };
                status == 400 && reads_the_same
            } else if upper.contains("TOP ") && !upper.contains("ORDER BY") {
                // Any N rows of the answer are right: the rows must be N rows of the whole answer (the same query
                // without its TOP, run on one node), counted with multiplicity.
                let same_count = actual.lines().count() == case.expected.lines().count();
                match without_top(&case.query) {
                    Some(all) => {
                        let whole = runtime.block_on(corpus::answer(&engine, &all));
                        tops_by_value += (!whole.contains("(no rows)")) as usize;
                        same_count && rows_within(&actual, &whole)
                    }
                    None => same_count,
                }
            } else if AMBIGUOUS.iter().any(|(name, _)| *name == case.name) {
                actual.lines().count() == case.expected.lines().count()
            } else {
                let ordered = upper.contains("ORDER BY");
                normalize(&actual, ordered) == normalize(&case.expected, ordered)
            };
            if !same {
                failures.push(format!(
                    "{}: {}\n  query: {}\n  expected:\n{}\n  through the cluster (HTTP {status}):\n{}",
                    path.file_name().unwrap().to_string_lossy(),
                    case.name,
                    case.query,
                    case.expected,
                    actual
                ));
            }
        }
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        compared >= 300,
        "compared only {compared} cases ({skipped} skipped)"
    );
    assert!(
        tops_by_value >= 40,
        "only {tops_by_value} TOP cases without ORDER BY were checked against a non-empty whole answer"
    );
    assert!(
        failures.is_empty(),
        "{} of {compared} cases differ:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
