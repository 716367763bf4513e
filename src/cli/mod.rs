//! The command line: global flags, one subcommand per file. `--json` row structs live beside
//! each command and are part of the CLI contract.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod bench;
pub mod caption;
pub mod reprocess;
pub mod run;

#[derive(Debug, Parser)]
#[command(
    name = "captiond",
    version,
    about = "Captions a photo library with Florence-2, into a searchable catalog and XMP sidecars"
)]
pub struct Cli {
    /// Config file (TOML). Default: the platform config folder's captiond/config.toml, if it exists.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// More log output (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Caption images once and print the results; touches no catalog or sidecar.
    Caption(caption::CaptionArgs),
    /// Measure model throughput on synthetic images (see BENCHMARKS.md).
    Bench(bench::BenchArgs),
    /// Watch the libraries and caption new photos (the daemon, in the foreground); `--once`: one pass.
    Run(run::RunArgs),
    /// Queue photos again after the model, revision or tasks changed in the config.
    Reprocess(reprocess::ReprocessArgs),
}

pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "captiond=info",
        1 => "captiond=debug",
        _ => "captiond=trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // CAPTIOND_SPAN_TIMES=1 logs each span's busy/idle time when it closes (profiling aid).
    let span_events = if std::env::var_os("CAPTIOND_SPAN_TIMES").is_some() {
        tracing_subscriber::fmt::format::FmtSpan::CLOSE
    } else {
        tracing_subscriber::fmt::format::FmtSpan::NONE
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_span_events(span_events)
        .init();
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Caption(args) => caption::run(cli.config.as_deref(), args),
        Command::Bench(args) => bench::run(cli.config.as_deref(), args),
        Command::Run(args) => run::run(cli.config.as_deref(), args),
        Command::Reprocess(args) => reprocess::run(cli.config.as_deref(), args),
    }
}

/// Prints an error and its causes, one per line, never as Debug output.
pub fn report(err: &anyhow::Error) {
    if is_broken_pipe(err) {
        return;
    }
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "captiond: error: {err}");
    for cause in err.chain().skip(1) {
        let _ = writeln!(stderr, "  caused by: {cause}");
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
