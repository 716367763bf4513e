//! The command line: global flags, one subcommand per file. `--json` row structs live beside
//! each command and are part of the CLI contract.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod bench;
pub mod bench_search;
pub mod caption;
pub mod completions;
pub mod doctor;
pub mod export;
pub mod reprocess;
pub mod rescan;
pub mod retry;
pub mod run;
pub mod search;
pub mod service;
pub mod sidecars;
pub mod status;

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
    /// Queue photos again after the model, revision or tasks changed in the config; `--all`: every
    /// photo, captioned or not.
    Reprocess(reprocess::ReprocessArgs),
    /// Search captions, labels, text and paths; `--json`: one object per line.
    Search(search::SearchArgs),
    /// Libraries, queue, throughput, model and whether a daemon is running.
    Status(status::StatusArgs),
    /// Queue every failed photo again.
    Retry(retry::RetryArgs),
    /// Ask the running daemon to rescan PATH (or every library).
    Rescan(rescan::RescanArgs),
    /// Write every photo's captions, labels and boxes as Parquet, JSON Lines or CSV.
    Export(export::ExportArgs),
    /// Search and export speed on a synthetic catalog (BENCHMARKS.md).
    #[command(name = "bench-search", hide = true)]
    BenchSearch(bench_search::BenchSearchArgs),
    /// Check the setup (libraries, inotify limit, model, GPU, catalog, disk) and say how to fix
    /// each problem; exit 1 if any check fails.
    Doctor(doctor::DoctorArgs),
    /// Install, remove or inspect captiond as a background service (a systemd user unit on
    /// Linux, a launchd agent on macOS; --system: a system-wide unit).
    Service(service::ServiceArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::CompletionsArgs),
    /// Print the man page (roff), e.g. `captiond man > ~/.local/share/man/man1/captiond.1`.
    Man(completions::ManArgs),
    /// Regenerate XMP sidecars from the catalog (`rewrite [PATH]`).
    Sidecars(sidecars::SidecarsArgs),
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
        .with_writer(crate::progress::log_writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .with_span_events(span_events)
        .init();
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Sidecars(args) => sidecars::run(cli.config.as_deref(), args),
        Command::Caption(args) => caption::run(cli.config.as_deref(), args),
        Command::Bench(args) => bench::run(cli.config.as_deref(), args),
        Command::Run(args) => run::run(cli.config.as_deref(), args),
        Command::Reprocess(args) => reprocess::run(cli.config.as_deref(), args),
        Command::Search(args) => search::run(cli.config.as_deref(), args),
        Command::Status(args) => status::run(cli.config.as_deref(), args),
        Command::Retry(args) => retry::run(cli.config.as_deref(), args),
        Command::Rescan(args) => rescan::run(cli.config.as_deref(), args),
        Command::Export(args) => export::run(cli.config.as_deref(), args),
        Command::BenchSearch(args) => bench_search::run(args),
        Command::Doctor(args) => doctor::run(cli.config.as_deref(), args),
        Command::Service(args) => service::run(cli.config.as_deref(), args),
        Command::Completions(args) => completions::completions(args),
        Command::Man(args) => completions::man(args),
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
