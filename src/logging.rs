//! The process's log lines on standard error, through `tracing`: every crate writes events with `tracing`'s macros
//! (an `event` field naming the kind: query, failover, heal, join, drain, shutdown, job, ...; and the ids an
//! operator searches by: query_id, job, worker, table, chunk), and tonic's and hyper's own events arrive the same
//! way. `--log-format text` writes `warning: ...` and `error: ...` lines, and notices as they are; the per-query
//! `query` events only from `--log-level debug` on. `--log-format json` writes one object per line with every
//! field, the fields of the spans the event happened in (a query's, a job's) included, for a log collector.
//! `--log-level` (error, warn, info, debug, trace) sets how much: `debug` also collects tonic's and hyper's.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Writes log lines from now on (once a process; a second call changes nothing).
pub fn init(format: &str, level: &str) -> Result<(), String> {
    // The demo's service arguments are made in code, not parsed: an empty level is the default.
    let level = if level.is_empty() { "info" } else { level };
    let level: Level = level
        .parse()
        .map_err(|_| format!("--log-level {level}: use error, warn, info, debug or trace"))?;
    // Our crates at the level asked; the libraries below them only from debug on (hyper and tonic are chatty).
    let libraries = if level >= Level::DEBUG {
        level.as_str().to_ascii_lowercase()
    } else {
        "warn".to_string()
    };
    let ours = level.as_str().to_ascii_lowercase();
    let mut directives = format!("{libraries}");
    for target in [
        "skyshard",
        "czar",
        "worker",
        "tap",
        "platform",
        "loader",
        "metastore",
        "exec",
        "adql",
    ] {
        directives.push_str(&format!(",{target}={ours}"));
    }
    if format == "text" && level < Level::DEBUG {
        // One line per query is for log collectors; a terminal shows what an operator acts on.
        directives.push_str(",czar::plan=warn");
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&directives).map_err(|e| e.to_string())?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = if format == "json" {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.event_format(Text).try_init()
    };
    // Already installed (a test, a second command in one process): keep the first.
    let _ = installed;
    Ok(())
}

/// The text lines: `warning: MESSAGE`, `error: MESSAGE`, a notice's `MESSAGE`, and a library's debug lines with
/// their target.
struct Text;

impl<S, N> FormatEvent<S, N> for Text
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        match *meta.level() {
            Level::ERROR => write!(writer, "error: ")?,
            Level::WARN => write!(writer, "warning: ")?,
            Level::INFO => {}
            Level::DEBUG => write!(writer, "debug: {}: ", meta.target())?,
            Level::TRACE => write!(writer, "trace: {}: ", meta.target())?,
        }
        let mut message = MessageOnly(String::new());
        event.record(&mut message);
        write!(writer, "{}", message.0)?;
        let _ = ctx;
        writeln!(writer)
    }
}

/// The `message` of an event, without its other fields (they are for the JSON lines).
struct MessageOnly(String);

impl tracing::field::Visit for MessageOnly {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_string();
        }
    }
}
