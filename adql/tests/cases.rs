//! Data-driven tests: every `tests/cases/*.adql` file holds queries and their expected results (or errors) over
//! the small deterministic tables of [`corpus`]. `UPDATE_EXPECT=1 cargo test --workspace cases` rewrites the
//! expectations from the current output; review the diff before committing it.

mod corpus;

use std::fmt::Write as _;
use std::sync::Arc;

use adql::Engine;
use corpus::{catalog, parse_cases, render};

async fn run(engine: &Engine, query: &str) -> String {
    match engine.collect(query).await {
        Ok(batches) => render(&batches).trim_end().to_string(),
        Err(e) => format!("ERROR {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cases() {
    let engine = Engine::new(Arc::new(catalog()));
    let update = std::env::var("UPDATE_EXPECT").is_ok();
    // Read at run time: a test binary reused from a checkout at another path must read this checkout's cases.
    let manifest =
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    let dir = std::path::Path::new(&manifest).join("tests/cases");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut failures = Vec::new();
    let mut total = 0;
    for path in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "adql"))
    {
        let text = std::fs::read_to_string(path).unwrap();
        let cases = parse_cases(&text);
        let mut rewritten = String::new();
        for case in &cases {
            total += 1;
            let actual = run(&engine, &case.query).await;
            if update {
                write!(
                    rewritten,
                    "== {}\n{}\n--- expect\n{}\n\n",
                    case.name, case.query, actual
                )
                .unwrap();
            } else if actual != case.expected {
                failures.push(format!(
                    "{}: {}\n  query: {}\n  expected:\n{}\n  actual:\n{}",
                    path.file_name().unwrap().to_string_lossy(),
                    case.name,
                    case.query,
                    case.expected,
                    actual
                ));
            }
        }
        if update {
            std::fs::write(path, rewritten).unwrap();
        }
    }
    assert!(total >= 300, "expected at least 300 cases, found {total}");
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    println!("{total} ADQL cases passed");
}
