//! `captiond export --format parquet|jsonl|csv [--out FILE]`: every present photo with its
//! captions, labels and boxes as a dataset file (columns: see [`crate::export`]). JSONL and CSV go
//! to stdout without `--out`; Parquet needs `--out`. A file is written beside its destination and
//! renamed into place when complete, so a failed export never leaves half a file. Reads the
//! catalog read-only: it works while the daemon writes, from one consistent snapshot.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, CommandFactory};

use crate::config::Settings;
use crate::export::{export, Format};

use super::status::open_catalog;

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Output format. Default: from the --out file's extension (.parquet, .jsonl, .csv).
    #[arg(long, value_enum)]
    pub format: Option<Format>,

    /// Write to FILE (replaced when the export is complete) instead of stdout. Required for
    /// parquet.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// A usage error: clap's message and exit status 2.
fn usage(message: &str) -> ! {
    super::Cli::command()
        .error(clap::error::ErrorKind::ArgumentConflict, message)
        .exit()
}

/// Removes the temporary file unless the export completed.
struct Partial(Option<PathBuf>);

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

pub fn run(config: Option<&Path>, args: ExportArgs) -> anyhow::Result<ExitCode> {
    let format = match (args.format, &args.out) {
        (Some(f), _) => f,
        (None, Some(out)) => Format::from_extension(out).unwrap_or_else(|| {
            usage(
                "cannot tell the format from the --out file name; pass --format parquet|jsonl|csv",
            )
        }),
        (None, None) => usage("pass --format parquet|jsonl|csv"),
    };
    if format == Format::Parquet && args.out.is_none() {
        usage("--format parquet needs --out FILE (Parquet is not written to stdout)");
    }
    let settings = Settings::load(config)?;
    let catalog = open_catalog(&settings.database, true)?;
    let start = Instant::now();
    let Some(out) = args.out else {
        let stdout = std::io::stdout();
        export(&catalog, format, Box::new(stdout))?;
        return Ok(ExitCode::SUCCESS);
    };
    let dir = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut temp_name = out.file_name().unwrap_or_default().to_os_string();
    temp_name.push(format!(".partial-{}", std::process::id()));
    let temp = dir.join(temp_name);
    let file = std::fs::File::create(&temp)
        .with_context(|| format!("cannot create {}", temp.display()))?;
    let mut partial = Partial(Some(temp.clone()));
    let summary = export(
        &catalog,
        format,
        Box::new(std::io::BufWriter::with_capacity(1 << 20, file)),
    )
    .with_context(|| format!("cannot export to {}", out.display()))?;
    std::fs::rename(&temp, &out)
        .with_context(|| format!("cannot move {} to {}", temp.display(), out.display()))?;
    partial.0 = None;
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "exported {} photos ({} columns) to {} in {:.1} s",
        summary.rows,
        summary.columns.len(),
        out.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
