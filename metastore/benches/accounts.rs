//! What identity costs a request: checking a token (read the token record, hash the secret, compare, read the
//! user) against accounts on disk, as the czar does at every request with credentials.
//!
//! `cargo bench --workspace --profile dev --bench accounts` (numbers in docs/benchmarks.md#identity).

use criterion::{Criterion, criterion_group, criterion_main};
use metastore::accounts::Accounts;

fn check(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("skyshard-bench-accounts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let accounts = Accounts::new(&dir);
    let writer = accounts.writer().unwrap();
    // A service with a thousand users, each with a token.
    let mut tokens = Vec::new();
    for i in 0..1000 {
        let name = format!("user{i}");
        writer
            .add_user(&name, &["survey".into()], false, 0)
            .unwrap();
        tokens.push(
            writer
                .create_token(&name, &["read:tap".into()], None, 0)
                .unwrap()
                .1,
        );
    }
    drop(writer);
    let mut i = 0;
    c.bench_function("check a valid token (1,000 users)", |b| {
        b.iter(|| {
            i = (i + 1) % tokens.len();
            accounts.check(&tokens[i], 1).unwrap().unwrap()
        })
    });
    let wrong = format!("sky_{}_{}", "0".repeat(16), "0".repeat(64));
    c.bench_function("refuse an unknown token", |b| {
        b.iter(|| accounts.check(&wrong, 1).unwrap().unwrap_err())
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

criterion_group!(benches, check);
criterion_main!(benches);
