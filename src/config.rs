//! `--config FILE` for `skyshard czar`, `worker` and `serve`: a TOML file whose keys are the command's flags
//! (`data_dir = "/data"` is `--data-dir /data`; a list repeats the flag; `true` gives a switch). Flags on the
//! command line win over the file's keys; a key that is no flag of the command is an error naming it.

use std::ffi::OsString;

/// The command line with the config file's keys put in as flags, after the subcommand's name.
pub fn expand(args: Vec<OsString>, cli: &clap::Command) -> Result<Vec<OsString>, String> {
    let Some(name) = args.get(1).and_then(|a| a.to_str()).map(str::to_string) else {
        return Ok(args);
    };
    let Some(command) = cli.find_subcommand(&name) else {
        return Ok(args);
    };
    let given: Vec<String> = args
        .iter()
        .skip(2)
        .filter_map(|a| a.to_str())
        .map(str::to_string)
        .collect();
    let path = given.iter().enumerate().find_map(|(i, a)| {
        if a == "--config" {
            given.get(i + 1).cloned()
        } else {
            a.strip_prefix("--config=").map(str::to_string)
        }
    });
    let Some(path) = path else {
        return Ok(args);
    };
    let text = std::fs::read_to_string(&path).map_err(|e| format!("--config {path}: {e}"))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| format!("--config {path}: {}", e.message()))?;
    let flags: Vec<String> = command
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .filter(|l| l != "config" && l != "help")
        .collect();
    let mut extra: Vec<OsString> = Vec::new();
    for (key, value) in &table {
        let flag = key.replace('_', "-");
        if !flags.contains(&flag) {
            return Err(format!(
                "--config {path}: unknown key `{key}` (the keys of `skyshard {name}` are: {})",
                flags
                    .iter()
                    .map(|f| f.replace('-', "_"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let long = format!("--{flag}");
        if given
            .iter()
            .any(|a| *a == long || a.starts_with(&format!("{long}=")))
        {
            continue; // the command line wins
        }
        let values = match value {
            toml::Value::Array(items) => items.clone(),
            other => vec![other.clone()],
        };
        for v in values {
            match v {
                toml::Value::Boolean(true) => extra.push(long.clone().into()),
                toml::Value::Boolean(false) => {}
                toml::Value::String(s) => {
                    extra.push(long.clone().into());
                    extra.push(s.into());
                }
                toml::Value::Integer(n) => {
                    extra.push(long.clone().into());
                    extra.push(n.to_string().into());
                }
                toml::Value::Float(x) => {
                    extra.push(long.clone().into());
                    extra.push(x.to_string().into());
                }
                other => {
                    return Err(format!(
                        "--config {path}: key `{key}` must be a string, number, boolean or a list of them, not {}",
                        other.type_str()
                    ));
                }
            }
        }
    }
    let mut out: Vec<OsString> = args[..2].to_vec();
    out.extend(extra);
    out.extend(args[2..].iter().cloned());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn run(file: &str, line: &[&str]) -> Result<Vec<String>, String> {
        let dir = std::env::temp_dir().join(format!("skyshard-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}.toml", line.len()));
        std::fs::write(&path, file).unwrap();
        let mut args: Vec<OsString> = vec!["skyshard".into()];
        args.extend(line.iter().map(OsString::from));
        args.push("--config".into());
        args.push(path.clone().into());
        let out = expand(args, &crate::Cli::command());
        let _ = std::fs::remove_file(&path);
        out.map(|a| a.into_iter().map(|s| s.into_string().unwrap()).collect())
    }

    #[test]
    fn keys_become_flags_and_the_command_line_wins() {
        let out = run(
            "port = 9000\ndata_dir = \"/d\"\nworkers = [\"a:1\", \"b:2\"]\nallow_private_uploads = true\nreplicas = 3\n",
            &["czar", "--replicas", "1"],
        )
        .unwrap();
        let line = out.join(" ");
        assert!(line.contains("--port 9000"), "{line}");
        assert!(line.contains("--data-dir /d"), "{line}");
        assert!(line.contains("--workers a:1 --workers b:2"), "{line}");
        assert!(line.contains("--allow-private-uploads"), "{line}");
        assert!(!line.contains("--replicas 3"), "{line}");
        assert!(line.contains("--replicas 1"), "{line}");
        // What clap makes of it.
        let cli = <crate::Cli as clap::Parser>::try_parse_from(&out).unwrap();
        assert!(matches!(
            cli.command,
            crate::Command::Czar {
                port: 9000,
                replicas: 1,
                ..
            }
        ));
    }

    #[test]
    fn an_unknown_key_is_an_error_naming_it() {
        let e = run("prot = 9000\n", &["czar"]).unwrap_err();
        assert!(e.contains("unknown key `prot`"), "{e}");
        let e = run("listen = [[1]]\n", &["worker"]).unwrap_err();
        assert!(e.contains("listen"), "{e}");
        let e = run("port = \n", &["czar"]).unwrap_err();
        assert!(e.contains("--config"), "{e}");
    }
}
