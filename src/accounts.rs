//! `skyshard user` and `skyshard token`: the accounts of a data directory, written while a czar serves it (it
//! reads them at each request).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use metastore::accounts::{Accounts, Quota};
use tap::jobs::now_ms;

use crate::failure;

#[derive(clap::Subcommand)]
pub enum UserCommand {
    /// Adds a user (names: lower-case letters, digits and _, as in the schema user_NAME).
    Add {
        #[arg(long)]
        data_dir: PathBuf,
        name: String,
        /// A group the user belongs to (repeat for several); groups share tables and files.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// May hold tokens with the admin scope (loads, drops, accounts over HTTP).
        #[arg(long)]
        admin: bool,
    },
    /// Lists the users.
    List {
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Sets a user's password for the login form (`POST /tap/login`), read from standard input (one line, at least
    /// 8 characters); only its Argon2id hash is kept.
    Passwd {
        #[arg(long)]
        data_dir: PathBuf,
        name: String,
    },
    /// Sets a user's limits, or a group's with --group (a group's bound the sum of its members' use); a limit not
    /// given stays as it was, 0 puts it back to the default (for a group: no limit). With no limit given, shows them.
    Quota {
        #[arg(long)]
        data_dir: PathBuf,
        /// The user (or, with --group, the group).
        name: String,
        /// NAME is a group.
        #[arg(long)]
        group: bool,
        /// Sync queries in flight at once.
        #[arg(long)]
        sync: Option<u64>,
        /// Async jobs queued or executing at once.
        #[arg(long)]
        jobs: Option<u64>,
        /// MiB of kept async results.
        #[arg(long)]
        results_mb: Option<u64>,
        /// MiB of user tables.
        #[arg(long)]
        tables_mb: Option<u64>,
        /// MiB of user files.
        #[arg(long)]
        files_mb: Option<u64>,
    },
    /// Deletes a user and everything of theirs through a running service: their tables (on every worker), their
    /// file space, their jobs and results, their account and tokens. Needs an admin's token in SKYSHARD_TOKEN.
    Delete {
        /// The TAP service of the czar.
        #[arg(long, default_value = "http://127.0.0.1:8080/tap")]
        url: String,
        name: String,
    },
    /// Removes a user and revokes every token of theirs (their jobs stay until their destruction time; their
    /// tables and files stay: `user delete` removes those too).
    Remove {
        #[arg(long)]
        data_dir: PathBuf,
        name: String,
    },
}

#[derive(clap::Subcommand)]
pub enum TokenCommand {
    /// Creates a token for a user and prints it: the only time it is shown (only its hash is kept).
    Create {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long)]
        user: String,
        /// What the token may do: read:tap, write:tables, write:files, admin (admins only).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "read:tap,write:tables,write:files"
        )]
        scopes: Vec<String>,
        /// How long it lasts: 90d, 12h, 30m, or never.
        #[arg(long, default_value = "90d")]
        expires: String,
    },
    /// Revokes a token, named by its id (as `token list` shows) or given whole; it stops working at once.
    Revoke {
        #[arg(long)]
        data_dir: PathBuf,
        token: String,
    },
    /// Lists the tokens: id, user, scopes, expiry (never the tokens themselves).
    List {
        #[arg(long)]
        data_dir: PathBuf,
    },
}

/// `90d`, `12h`, `30m`, `never` as milliseconds (None: never).
fn lifetime(text: &str) -> Result<Option<u64>, String> {
    if text == "never" {
        return Ok(None);
    }
    let bad = || {
        format!("--expires {text}: use a number of days, hours or minutes (90d, 12h, 30m) or never")
    };
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: u64 = number.parse().map_err(|_| bad())?;
    let ms = match unit {
        "d" => 86_400_000,
        "h" => 3_600_000,
        "m" => 60_000,
        _ => return Err(bad()),
    };
    n.checked_mul(ms)
        .filter(|&v| v > 0)
        .map(Some)
        .ok_or_else(bad)
}

/// A quota as `sync 4, jobs 2, results 100 MiB`, or `unset` when it sets nothing.
fn describe(q: &Quota, unset: &str) -> String {
    let parts: Vec<String> = [
        ("sync", q.sync, ""),
        ("jobs", q.jobs, ""),
        ("results", q.results_mb, " MiB"),
        ("tables", q.tables_mb, " MiB"),
        ("files", q.files_mb, " MiB"),
    ]
    .iter()
    .filter_map(|(name, v, unit)| v.map(|v| format!("{name} {v}{unit}")))
    .collect();
    if parts.is_empty() {
        unset.to_string()
    } else {
        parts.join(", ")
    }
}

fn date(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64).map_or_else(
        || ms.to_string(),
        |d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

fn accounts(data_dir: &Path) -> Result<Accounts, String> {
    if !data_dir.is_dir() {
        return Err(format!("{}: no such data directory", data_dir.display()));
    }
    Ok(Accounts::new(data_dir))
}

pub fn user(command: UserCommand) -> ExitCode {
    let result = (|| -> Result<(), String> {
        match command {
            UserCommand::Add {
                data_dir,
                name,
                groups,
                admin,
            } => {
                let writer = accounts(&data_dir)?.writer().map_err(|e| e.to_string())?;
                let user = writer
                    .add_user(&name, &groups, admin, now_ms())
                    .map_err(|e| e.to_string())?;
                println!(
                    "user {} added{}{}; next: skyshard token create --data-dir {} --user {}",
                    user.name,
                    if user.groups.is_empty() {
                        String::new()
                    } else {
                        format!(" (groups {})", user.groups.join(", "))
                    },
                    if user.admin { ", admin" } else { "" },
                    data_dir.display(),
                    user.name
                );
            }
            UserCommand::List { data_dir } => {
                let a = accounts(&data_dir)?;
                let tokens = a.tokens().map_err(|e| e.to_string())?;
                println!("user\tgroups\tadmin\ttokens\tcreated\tlimits");
                for u in a.users().map_err(|e| e.to_string())? {
                    let n = tokens.iter().filter(|t| t.user == u.name).count();
                    println!(
                        "{}\t{}\t{}\t{n}\t{}\t{}",
                        u.name,
                        u.groups.join(","),
                        u.admin,
                        date(u.created),
                        describe(&u.quota, "defaults")
                    );
                }
                for g in a.groups().map_err(|e| e.to_string())? {
                    println!("group {}: {}", g.name, describe(&g.quota, "no limit"));
                }
            }
            UserCommand::Passwd { data_dir, name } => {
                let mut line = String::new();
                std::io::stdin()
                    .read_line(&mut line)
                    .map_err(|e| format!("reading the password from standard input: {e}"))?;
                let password = line.trim_end_matches(['\r', '\n']);
                let writer = accounts(&data_dir)?.writer().map_err(|e| e.to_string())?;
                writer
                    .set_password(&name, password)
                    .map_err(|e| e.to_string())?;
                println!("password of {name} set");
            }
            UserCommand::Quota {
                data_dir,
                name,
                group,
                sync,
                jobs,
                results_mb,
                tables_mb,
                files_mb,
            } => {
                let change = Quota {
                    sync,
                    jobs,
                    results_mb,
                    tables_mb,
                    files_mb,
                };
                let writer = accounts(&data_dir)?.writer().map_err(|e| e.to_string())?;
                let now = if group {
                    writer.set_group_quota(&name, change)
                } else {
                    writer.set_user_quota(&name, change)
                }
                .map_err(|e| e.to_string())?;
                let what = if group { "group" } else { "user" };
                let unset = if group {
                    "no limit"
                } else {
                    "the service's default"
                };
                println!("{what} {name}: {}", describe(&now, unset));
            }
            UserCommand::Delete { url, name } => {
                let base = url.trim_end_matches('/').trim_end_matches("/tap");
                let (status, body) = crate::http::send(
                    "DELETE",
                    &format!("{base}/api/v1/users/{}", crate::http::encode(&name)),
                    "text/plain",
                    crate::http::Payload::Bytes(Vec::new()),
                )?;
                if status != 200 {
                    return Err(format!(
                        "the service refused ({status}): {}",
                        crate::http::error_text(&body)
                    ));
                }
                println!("{}", body.trim());
            }
            UserCommand::Remove { data_dir, name } => {
                let writer = accounts(&data_dir)?.writer().map_err(|e| e.to_string())?;
                writer.remove_user(&name).map_err(|e| e.to_string())?;
                println!(
                    "user {name} removed, and every token of theirs revoked; their tables, files and jobs remain, \
                     and the name stays taken until they are deleted (skyshard user delete --url URL {name})"
                );
            }
        }
        Ok(())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failure(e),
    }
}

pub fn token(command: TokenCommand) -> ExitCode {
    let result = (|| -> Result<(), String> {
        match command {
            TokenCommand::Create {
                data_dir,
                user,
                scopes,
                expires,
            } => {
                let now = now_ms();
                let expires = lifetime(&expires)?.map(|ms| now.saturating_add(ms));
                let writer = accounts(&data_dir)?.writer().map_err(|e| e.to_string())?;
                let (record, token) = writer
                    .create_token(&user, &scopes, expires, now)
                    .map_err(|e| e.to_string())?;
                eprintln!(
                    "token {} for {} ({}), {}; it is shown only now:",
                    record.id,
                    record.user,
                    record.scopes.join(","),
                    record
                        .expires
                        .map_or("never expires".to_string(), |e| format!(
                            "expires {}",
                            date(e)
                        ))
                );
                println!("{token}");
            }
            TokenCommand::Revoke { data_dir, token } => {
                let writer = accounts(&data_dir)?.writer().map_err(|e| e.to_string())?;
                writer.revoke(&token).map_err(|e| e.to_string())?;
                println!("revoked");
            }
            TokenCommand::List { data_dir } => {
                let a = accounts(&data_dir)?;
                println!("id\tuser\tscopes\tcreated\texpires");
                for t in a.tokens().map_err(|e| e.to_string())? {
                    println!(
                        "{}\t{}\t{}\t{}\t{}",
                        t.id,
                        t.user,
                        t.scopes.join(","),
                        date(t.created),
                        t.expires.map_or("never".into(), date)
                    );
                }
            }
        }
        Ok(())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failure(e),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lifetimes() {
        assert_eq!(super::lifetime("90d"), Ok(Some(90 * 86_400_000)));
        assert_eq!(super::lifetime("30m"), Ok(Some(1_800_000)));
        assert_eq!(super::lifetime("never"), Ok(None));
        for bad in ["", "d", "0d", "-1d", "5y", "99999999999999999d"] {
            assert!(super::lifetime(bad).is_err(), "{bad}");
        }
        assert_eq!(metastore::accounts::SCOPES.len(), 4);
    }
}
