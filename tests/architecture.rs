//! The invariants of docs/ARCHITECTURE.md that a machine can check, checked: which crates know HTTP (from `cargo
//! metadata`), that every place in a data directory is spelled in `partitioner::layout` (a scan of the sources), and
//! that no crate's modules import each other in a circle (from their `use crate::` and `crate::` paths), and that no
//! source file passes 800 lines without saying why at its top.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The workspace's library and binary crates with their source folders: (name, src dir).
const CRATES: [(&str, &str); 13] = [
    ("adql", "adql/src"),
    ("partitioner", "partitioner/src"),
    ("loader", "loader/src"),
    ("metastore", "metastore/src"),
    ("votable", "votable/src"),
    ("protocol", "protocol/src"),
    ("exec", "exec/src"),
    ("worker", "worker/src"),
    ("czar", "czar/src"),
    ("platform", "platform/src"),
    ("tap", "tap/src"),
    ("images", "images/src"),
    ("skyshard", "src"),
];

/// Every `.rs` file under `dir`, but test files (`*_tests.rs`).
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("a source folder").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                && !path.to_string_lossy().ends_with("_tests.rs")
            {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// A source file without its `#[cfg(test)]` module (the tests may spell anything).
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("a source file");
    match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

#[test]
fn only_tap_and_its_fuzz_harness_know_axum_and_the_domain_knows_no_http() {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let http = [
        "axum",
        "hyper",
        "hyper-util",
        "http-body-util",
        "tower",
        "multer",
    ];
    // Who may depend on which HTTP crate (normal dependencies), and why.
    let allowed: BTreeMap<&str, &[&str]> = BTreeMap::from([
        // The HTTP face: the router, its server loop and the upload client.
        (
            "tap",
            &[
                "axum",
                "hyper",
                "hyper-util",
                "http-body-util",
                "tower",
                "multer",
            ][..],
        ),
        // Drives tap's router in-process.
        ("http-fuzz", &["axum", "tower"][..]),
        // A worker's plain HTTP listener for /metrics, /health and /ready.
        ("worker", &["hyper", "hyper-util", "http-body-util"][..]),
        // The `query` and `load` commands' client.
        ("skyshard", &["hyper", "hyper-util", "http-body-util"][..]),
    ]);
    let mut seen = BTreeSet::new();
    for package in meta["packages"].as_array().expect("packages") {
        let name = package["name"].as_str().expect("a name");
        seen.insert(name.to_string());
        let may = allowed.get(name).copied().unwrap_or(&[]);
        for dep in package["dependencies"].as_array().expect("dependencies") {
            let dep_name = dep["name"].as_str().expect("a dependency name");
            let normal = dep["kind"].is_null();
            if normal && http.contains(&dep_name) {
                assert!(
                    may.contains(&dep_name),
                    "{name} depends on {dep_name}: only tap knows HTTP (see docs/ARCHITECTURE.md)"
                );
            }
            if name == "tap" && normal {
                assert_ne!(
                    dep_name, "loader",
                    "tap loads through czar::load, not the loader"
                );
            }
        }
    }
    for domain in ["platform", "czar", "exec", "adql", "metastore", "protocol"] {
        assert!(
            seen.contains(domain),
            "{domain} is a package of the workspace"
        );
    }
}

#[test]
fn every_place_in_a_data_directory_is_spelled_in_the_layout() {
    // The names of a data directory's top-level places and a load's sub-folders.
    let places = [
        "meta",
        "staging",
        "incoming",
        "jobs",
        "tables",
        "files",
        "usertables",
        "cluster",
        "chunks",
        "replicated",
        "templates",
        "grants.json",
        "workers.json",
    ];
    let layout = root().join("partitioner/src/layout.rs");
    let mut found = Vec::new();
    for (_, dir) in CRATES {
        for path in sources(&root().join(dir)) {
            if path == layout {
                continue;
            }
            for (n, line) in code(&path).lines().enumerate() {
                let line = line.trim_start();
                if line.starts_with("//") {
                    continue;
                }
                for place in places {
                    if line.contains(&format!(".join(\"{place}\")")) {
                        found.push(format!(
                            "{}:{}: {line}",
                            path.strip_prefix(root()).unwrap_or(&path).display(),
                            n + 1
                        ));
                    }
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "places in a data directory spelled outside partitioner/src/layout.rs:\n{}",
        found.join("\n")
    );
}

/// The module a source file is, as a path under its crate (`a`, `a::b`; the crate root is empty).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "lib" | "main" | "mod") {
        parts.push(stem.to_string());
    }
    parts
}

/// The modules a file names through `crate::` paths (in `use` lines and in code), as the longest module of the
/// crate each path starts with.
fn imports(text: &str, modules: &BTreeSet<Vec<String>>) -> BTreeSet<Vec<String>> {
    let mut out = BTreeSet::new();
    let mut add = |path: &str| {
        let segments: Vec<String> = path
            .split("::")
            .map(|s| s.trim().to_string())
            .take_while(|s| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_'))
            .collect();
        for len in (1..=segments.len()).rev() {
            if modules.contains(&segments[..len].to_vec()) {
                out.insert(segments[..len].to_vec());
                return;
            }
        }
    };
    for (i, _) in text.match_indices("crate::") {
        let before = text[..i].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue; // `skyshard_crate::`, `$crate::`
        }
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `use crate::{a::X, b};`
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                add(item);
            }
        } else {
            add(rest);
        }
    }
    out
}

#[test]
fn no_crate_has_an_import_circle() {
    let mut circles = Vec::new();
    for (name, dir) in CRATES {
        let src = root().join(dir);
        let files = sources(&src);
        let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(&src, f)).collect();
        let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
        for f in &files {
            let from = module_of(&src, f);
            // Comments name modules in doc links; only code imports.
            let text: String = code(f)
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            let to = imports(&text, &modules);
            // A module's own items, its parent (a `mod.rs` re-exporting) and its children are one room.
            let to = to
                .into_iter()
                .filter(|m| *m != from && !m.starts_with(&from) && !from.starts_with(m))
                .collect();
            edges.insert(from, to);
        }
        // Depth-first search for a cycle, reporting it as a path.
        fn visit(
            m: &Vec<String>,
            edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
            state: &mut BTreeMap<Vec<String>, u8>,
            stack: &mut Vec<Vec<String>>,
            found: &mut Option<Vec<Vec<String>>>,
        ) {
            if found.is_some() {
                return;
            }
            state.insert(m.clone(), 1);
            stack.push(m.clone());
            for next in edges.get(m).into_iter().flatten() {
                match state.get(next).copied().unwrap_or(0) {
                    0 => visit(next, edges, state, stack, found),
                    1 => {
                        let at = stack.iter().position(|s| s == next).unwrap_or(0);
                        let mut cycle = stack[at..].to_vec();
                        cycle.push(next.clone());
                        *found = Some(cycle);
                    }
                    _ => {}
                }
                if found.is_some() {
                    return;
                }
            }
            stack.pop();
            state.insert(m.clone(), 2);
        }
        let mut state = BTreeMap::new();
        let mut found = None;
        for m in edges.keys() {
            if state.get(m).copied().unwrap_or(0) == 0 {
                visit(m, &edges, &mut state, &mut Vec::new(), &mut found);
            }
        }
        if let Some(cycle) = found {
            let path: Vec<String> = cycle.iter().map(|m| m.join("::")).collect();
            circles.push(format!("{name}: {}", path.join(" -> ")));
        }
    }
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_import_check_finds_a_circle_it_is_shown() {
    // The checker itself: a made-up crate where a imports b and b imports a.
    let modules: BTreeSet<Vec<String>> = [vec!["a".to_string()], vec!["b".to_string()]].into();
    let a = imports("use crate::b::Thing;\nfn f() { crate::b::g() }", &modules);
    let b = imports("use crate::{a::X, b};", &modules);
    assert_eq!(a, [vec!["b".to_string()]].into());
    assert!(b.contains(&vec!["a".to_string()]));
}

#[test]
fn no_file_is_over_800_lines_without_a_reason_at_its_top() {
    let mut long = Vec::new();
    for (_, dir) in CRATES {
        for path in sources(&root().join(dir)) {
            let text = std::fs::read_to_string(&path).expect("a source file");
            let lines = text.lines().count();
            let head: String = text.lines().take(15).collect::<Vec<_>>().join("\n");
            if lines > 800 && !head.contains("Why one long") && !head.contains("longer than") {
                long.push(format!(
                    "{} ({lines} lines)",
                    path.strip_prefix(root()).unwrap_or(&path).display()
                ));
            }
        }
    }
    assert!(
        long.is_empty(),
        "files over 800 lines that do not say why at their top (\"Why one long ...\"):\n{}",
        long.join("\n")
    );
}
