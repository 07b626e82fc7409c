//! `skyshard`: the one binary. Commands parse their arguments and call into the crates.

mod accounts;
mod client;
mod config;
mod demo;
mod http;
mod images;
mod obscore;
mod logging;
mod serve;
mod workers;

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use adql::{CatalogTable, Engine, MemoryCatalog};
use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::SessionContext;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "skyshard",
    version,
    about = "A distributed ADQL query engine for astronomical survey catalogs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// ADQL 2.1 on this machine: check a query, or run one over local Parquet or CSV files.
    Adql {
        #[command(subcommand)]
        command: AdqlCommand,
    },
    /// Writes a deterministic synthetic data release: object (director), source (child) and xmatch tables.
    Gen {
        #[arg(long, default_value_t = 100_000)]
        rows: u64,
        #[arg(long)]
        out: std::path::PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Also write this many FITS images of the same sky (OUT/images/, TAN WCS, 256 x 256 pixels of 1",
        /// the bands ugrizy in turn), each centred on a catalog object, with the objects drawn in.
        #[arg(long, default_value_t = 0)]
        images: usize,
    },
    /// Loads a table into a data directory, atomically: a failed or interrupted load leaves the catalog as it was.
    Ingest {
        #[arg(long)]
        data_dir: std::path::PathBuf,
        #[command(flatten)]
        load: loader::args::LoadArgs,
    },
    /// Loads a table through a running czar: uploads the inputs, the czar partitions them and ships the chunk files
    /// to the workers that hold them, then publishes the table in one step (a failure publishes nothing).
    Load {
        /// The czar (its TAP URL or its base URL).
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        #[command(flatten)]
        load: loader::args::LoadArgs,
    },
    /// Removes a table from a data directory (a director only after its child tables).
    Drop {
        #[arg(long)]
        data_dir: std::path::PathBuf,
        /// SCHEMA.TABLE
        #[arg(long)]
        table: String,
    },
    /// A sample catalog served by a local cluster, in one command: generates a data release, loads it, serves it
    /// over TAP and prints how to connect from TOPCAT, pyvo and curl.
    Demo {
        /// HTTP port of the TAP service (0: any free port, printed).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Objects in the sample catalog (with about 5 sources each and a 60 % cross-match catalog).
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Where the sample data lives (default: skyshard-demo in the system's temporary directory); reused when it
        /// already holds a demo catalog of the same size.
        #[arg(long)]
        data_dir: Option<std::path::PathBuf>,
    },
    /// Czar and K workers in one process (real Flight over loopback), serving what `skyshard ingest` loaded.
    Serve {
        #[arg(long)]
        data_dir: std::path::PathBuf,
        /// HTTP port of the TAP service (0: any free port, printed).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Copies of each chunk (workers that can answer for it).
        #[arg(long, default_value_t = 2)]
        replicas: usize,
        #[command(flatten)]
        service: serve::ServiceArgs,
        /// A TOML file of these flags' values (keys with `_`: `data_dir = "/data"`); flags given here win.
        #[arg(long)]
        config: Option<std::path::PathBuf>,
    },
    /// A worker: an Arrow Flight server over the chunk files of its data directory; or, with a subcommand, the
    /// czar's workers (list, add, drain).
    #[command(args_conflicts_with_subcommands = true)]
    Worker {
        #[command(subcommand)]
        action: Option<workers::WorkerAction>,
        #[command(flatten)]
        run: workers::WorkerArgs,
        /// A TOML file of these flags' values (keys with `_`: `data_dir = "/data"`); flags given here win.
        #[arg(long)]
        config: Option<std::path::PathBuf>,
    },
    /// A czar: the TAP service over workers that hold the data directory's chunks.
    Czar {
        /// HTTP port of the TAP service (0: any free port, printed).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// The czar's data directory: the metadata store, its copy of every loaded chunk file, async jobs, user
        /// tables and files, the workers it was given (`cluster/workers.json`).
        #[arg(long)]
        data_dir: std::path::PathBuf,
        /// HOST:PORT,HOST:PORT of the workers.
        #[arg(long, value_delimiter = ',', required = true)]
        workers: Vec<String>,
        /// Copies of each chunk on the workers' own disks (the replica healer keeps this many live).
        #[arg(long, default_value_t = 2)]
        replicas: usize,
        /// Seconds between rounds of the replica census (which worker holds which chunk, asked of the workers).
        #[arg(long, default_value_t = 10.0)]
        heal_interval: f64,
        /// Seconds a worker may be silent before its chunks are copied from their other replicas to other workers.
        #[arg(long, default_value_t = 300.0)]
        heal_grace: f64,
        /// Seconds a moved chunk copy stays on its old worker after queries have been sent elsewhere.
        #[arg(long, default_value_t = 10.0)]
        move_linger: f64,
        #[command(flatten)]
        service: serve::ServiceArgs,
        /// A TOML file of these flags' values (keys with `_`: `data_dir = "/data"`); flags given here win.
        #[arg(long)]
        config: Option<std::path::PathBuf>,
    },
    /// Runs an ADQL query through a czar and prints the result as CSV.
    Query {
        /// The TAP service.
        #[arg(long, default_value = "http://127.0.0.1:8080/tap")]
        url: String,
        /// Show the chunks touched, the per-chunk fragment and the merge plan instead of running it.
        #[arg(long)]
        explain: bool,
        /// The ADQL query; read from standard input when absent.
        query: Option<String>,
    },
    /// FITS images: the ObsCore record the archive makes of each, and cutouts with the original's exact pixels.
    Images {
        #[command(subcommand)]
        command: images::ImagesCommand,
    },
    /// The users of a data directory's TAP service (`--auth optional` or `required`).
    User {
        #[command(subcommand)]
        command: accounts::UserCommand,
    },
    /// API tokens: what pyvo, TOPCAT, astroquery, curl and `skyshard query` (SKYSHARD_TOKEN) present.
    Token {
        #[command(subcommand)]
        command: accounts::TokenCommand,
    },
    /// Lists the tables of a data directory, or with --table the columns of one (name, type, unit, UCD, description).
    Tables {
        #[arg(long)]
        data_dir: std::path::PathBuf,
        /// SCHEMA.TABLE whose columns to list.
        #[arg(long)]
        table: Option<String>,
    },
    /// Partitions files into HEALPix chunk files (offline, for a DBA) and prints chunk statistics.
    Partition {
        /// Input files, directories (their files) or quoted glob patterns.
        #[arg(long, required = true, num_args = 1..)]
        input: Vec<std::path::PathBuf>,
        /// Input format; by default each file's extension decides (.parquet, .csv, .fits, .vot/.xml).
        #[arg(long, value_parser = ["parquet", "csv", "fits", "votable"])]
        format: Option<String>,
        #[arg(long, default_value = "ra")]
        ra: String,
        #[arg(long, default_value = "dec")]
        dec: String,
        #[arg(long)]
        out: std::path::PathBuf,
        /// No chunk holds more rows, except where one cell of the deepest allowed depth (10) is denser.
        #[arg(long, default_value_t = 1_000_000)]
        chunk_rows: u64,
        #[arg(long, default_value_t = 60.0)]
        overlap_arcsec: f64,
        /// Rows held in memory before spilling to disk, in MiB of Arrow buffers.
        #[arg(long, default_value_t = 1024)]
        memory_mb: usize,
        /// Also draw a Mollweide map of rows per chunk into this PNG file.
        #[arg(long)]
        sky_map: Option<std::path::PathBuf>,
        /// No progress line.
        #[arg(long)]
        quiet: bool,
        /// Skip and count rows with a NULL, NaN or out-of-range position instead of refusing the input.
        #[arg(long)]
        skip_invalid: bool,
    },
}

#[derive(Subcommand)]
enum AdqlCommand {
    /// Reads one query on standard input; exits 0 when it is valid ADQL 2.1, else prints LINE:COL: message, exits 1.
    Check,
    /// Runs a query over local files: --table SCHEMA.TABLE=FILE (Parquet or CSV; repeat for more tables).
    Run {
        /// SCHEMA.TABLE=PATH of a Parquet file, a CSV file or a directory of Parquet files.
        #[arg(long = "table", value_name = "SCHEMA.TABLE=FILE", required = true)]
        tables: Vec<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// The ADQL query; read from standard input when absent.
        query: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Csv,
    Votable,
}

fn main() -> ExitCode {
    let args = match config::expand(
        std::env::args_os().collect(),
        &<Cli as clap::CommandFactory>::command(),
    ) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let cli = Cli::parse_from(args);
    match cli.command {
        Command::Adql {
            command: AdqlCommand::Check,
        } => adql_check(),
        Command::Gen {
            rows,
            out,
            seed,
            images,
        } => match loader::synth::generate(rows, &out, seed) {
            Ok(s) => {
                println!(
                    "wrote {} objects, {} sources and {} cross-match rows to {}",
                    s.objects,
                    s.sources,
                    s.xmatch,
                    out.display()
                );
                if images > 0 {
                    match crate::obscore::synthetic_images(&out, images, seed) {
                        Ok(n) => println!("wrote {n} images to {}", out.join("images").display()),
                        Err(e) => return failure(e),
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => failure(e),
        },
        Command::Load { url, load } => client::load(&url, load),
        Command::Ingest { data_dir, load } => {
            let opts = match load.options() {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            match loader::ingest::ingest(&data_dir, &load.input, &opts) {
                Ok(report) => {
                    let skipped = match (report.skipped, &report.record.kind) {
                        (0, _) => String::new(),
                        (n, metastore::TableKind::Child { .. }) => {
                            format!("; {n} rows whose key names no director object kept")
                        }
                        (n, _) => format!("; {n} rows with a bad position skipped"),
                    };
                    println!(
                        "{} {}: {} rows in {} chunks (load {}){skipped}",
                        if report.replaced {
                            if opts.append {
                                "appended to"
                            } else {
                                "replaced"
                            }
                        } else {
                            "loaded"
                        },
                        report.record.qualified_name(),
                        report.record.rows,
                        report.chunks_with_rows,
                        report.record.load_id,
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => failure(e),
            }
        }
        Command::Drop { data_dir, table } => match loader::ingest::drop_table(&data_dir, &table) {
            Ok(()) => {
                println!("dropped {}", table.to_lowercase());
                ExitCode::SUCCESS
            }
            Err(e) => failure(e),
        },
        Command::Tables { data_dir, table } => {
            let listing = loader::ingest::open_store(&data_dir)
                .and_then(|s| s.tables().map_err(loader::LoaderError::Meta));
            match listing {
                Ok(tables) => {
                    if let Some(name) = table {
                        let Some(t) = tables
                            .iter()
                            .find(|t| t.qualified_name().eq_ignore_ascii_case(&name))
                        else {
                            return failure(format!("no table {name} in {}", data_dir.display()));
                        };
                        for c in &t.columns {
                            let opt = |v: &Option<String>| v.clone().unwrap_or_default();
                            println!(
                                "{}\t{}\t{}\t{}\t{}",
                                c.name,
                                c.datatype,
                                opt(&c.unit),
                                opt(&c.ucd),
                                opt(&c.description)
                            );
                        }
                        return ExitCode::SUCCESS;
                    }
                    for t in tables {
                        let kind = match &t.kind {
                            metastore::TableKind::Director { .. } => "director",
                            metastore::TableKind::Child { .. } => "child",
                            metastore::TableKind::Replicated => "replicated",
                        };
                        println!(
                            "{}	{kind}	{} rows	{} chunks	load {}",
                            t.qualified_name(),
                            t.rows,
                            t.chunks.len(),
                            t.load_id
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => failure(e),
            }
        }
        Command::Partition {
            input,
            format,
            ra,
            dec,
            out,
            chunk_rows,
            overlap_arcsec,
            memory_mb,
            sky_map,
            quiet,
            skip_invalid,
        } => {
            let scratch = out.join("input");
            let format = format
                .as_deref()
                .and_then(loader::input::InputFormat::parse);
            let input = match loader::input::expand(&input)
                .and_then(|i| loader::input::prepare(&i, format, &scratch))
            {
                Ok(i) => i,
                Err(e) => return failure(e),
            };
            let opts = loader::partition::PartitionOptions {
                ra,
                dec,
                chunk_rows,
                overlap_arcsec,
                memory_bytes: memory_mb << 20,
                quiet,
                skip_invalid,
                ..Default::default()
            };
            let result = loader::partition::partition(&input, &out, &opts);
            let _ = std::fs::remove_dir_all(&scratch);
            match result {
                Ok(stats) => {
                    println!("{}", stats.summary());
                    if let Some(png) = sky_map {
                        if let Err(e) =
                            loader::skymap::write_sky_map(&png, &stats.map, &stats.chunk_rows, 1200)
                        {
                            return failure(e);
                        }
                        println!("sky map: {}", png.display());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => failure(e),
            }
        }
        Command::Images { command } => images::images(command),
        Command::User { command } => accounts::user(command),
        Command::Token { command } => accounts::token(command),
        Command::Demo {
            port,
            rows,
            workers,
            data_dir,
        } => demo::demo(port, rows, workers, data_dir),
        Command::Serve {
            data_dir,
            port,
            workers,
            replicas,
            service,
            ..
        } => serve::serve(&data_dir, port, workers, replicas, &service),
        Command::Worker {
            action: Some(action),
            ..
        } => workers::worker_action(action),
        Command::Worker { run, .. } => workers::worker(run),
        Command::Czar {
            port,
            data_dir,
            workers,
            replicas,
            heal_interval,
            heal_grace,
            move_linger,
            service,
            ..
        } => serve::czar(
            port,
            &data_dir,
            &workers,
            replicas,
            &service,
            czar::heal::HealOptions {
                every: std::time::Duration::from_secs_f64(heal_interval.max(0.1)),
                grace: std::time::Duration::from_secs_f64(heal_grace.max(0.0)),
                replicas,
                linger: std::time::Duration::from_secs_f64(move_linger.max(0.0)),
            },
        ),
        Command::Query {
            url,
            explain,
            query,
        } => client::query(&url, explain, query),
        Command::Adql {
            command:
                AdqlCommand::Run {
                    tables,
                    format,
                    query,
                },
        } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            match runtime.block_on(adql_run(tables, format, query)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Reports an error the way every command does, and fails.
fn failure(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::FAILURE
}

fn adql_check() -> ExitCode {
    let mut src = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut src) {
        eprintln!("error: cannot read the query from standard input: {e}");
        return ExitCode::from(2);
    }
    match adql::check(&src) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            println!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn adql_run(
    tables: Vec<String>,
    format: Format,
    query: Option<String>,
) -> anyhow::Result<()> {
    let query = match query {
        Some(q) => q,
        None => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the query from standard input")?;
            s
        }
    };
    let mut catalog = MemoryCatalog::new();
    for spec in &tables {
        let Some((name, path)) = spec.split_once('=') else {
            bail!("--table takes SCHEMA.TABLE=FILE, found '{spec}'");
        };
        let Some((schema, table)) = name.split_once('.') else {
            bail!("--table needs a schema-qualified name such as cat.obj, found '{name}'");
        };
        let provider = file_table(path)
            .await
            .with_context(|| format!("opening {path}"))?;
        catalog.add(CatalogTable::new(schema, table, provider)?);
    }
    let engine = Engine::new(Arc::new(catalog));
    let batches = match engine.collect(&query).await {
        Ok(b) => b,
        Err(e) => bail!("{e}"),
    };
    let schema = match batches.first() {
        Some(b) => b.schema(),
        None => {
            let state = engine.session();
            let plan = engine.plan(&query, &state)?;
            Arc::new(plan.schema().as_arrow().clone())
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match format {
        Format::Table => tap::format::write_table(&mut out, &schema, &batches)?,
        Format::Csv => tap::format::write_csv(&mut out, &schema, &batches)?,
        Format::Votable => tap::format::write_votable(&mut out, &schema, &batches, false)?,
    }
    out.flush()?;
    Ok(())
}

/// A table over a local Parquet file, directory of Parquet files, or CSV file with a header.
async fn file_table(path: &str) -> anyhow::Result<Arc<ListingTable>> {
    let p = Path::new(path);
    if !p.exists() {
        bail!("no such file or directory");
    }
    let abs = std::fs::canonicalize(p)?;
    let url = ListingTableUrl::parse(abs.to_string_lossy().as_ref())?;
    let options = if path.to_ascii_lowercase().ends_with(".csv") {
        ListingOptions::new(Arc::new(CsvFormat::default().with_has_header(true)))
            .with_file_extension(".csv")
    } else {
        ListingOptions::new(Arc::new(ParquetFormat::default().with_skip_metadata(false)))
            .with_file_extension(if p.is_dir() { ".parquet" } else { "" })
    };
    let ctx = SessionContext::new();
    let schema = options.infer_schema(&ctx.state(), &url).await?;
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema);
    Ok(Arc::new(ListingTable::try_new(config)?))
}
