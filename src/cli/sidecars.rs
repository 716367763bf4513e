//! `captiond sidecars rewrite [PATH]`: regenerate XMP sidecars (and, in libraries with
//! `embed = true`, the XMP embedded in JPEG and PNG originals) from the catalog (after a change
//! of naming, keyword parent, MWG or embed setting), touching only files whose content changes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::catalog::Catalog;
use crate::config::{library_of, Settings};
use crate::sidecar::{rewrite_under, WriteOutcome};

#[derive(Debug, Args)]
pub struct SidecarsArgs {
    #[command(subcommand)]
    pub command: SidecarsCommand,
}

#[derive(Debug, Subcommand)]
pub enum SidecarsCommand {
    /// Rewrite the sidecars (and embedded XMP) of every catalogued photo at or under PATH
    /// (default: all libraries with `sidecars = true` or `embed = true`).
    Rewrite {
        /// A library, folder or photo.
        path: Option<PathBuf>,
    },
}

pub fn run(config: Option<&Path>, args: SidecarsArgs) -> anyhow::Result<ExitCode> {
    let SidecarsCommand::Rewrite { path } = args.command;
    let settings = Settings::load(config)?;
    let catalog = Catalog::open(&settings.database)
        .with_context(|| "cannot open the catalog; run `captiond run` first")?;
    let under = match &path {
        Some(p) => {
            Some(std::fs::canonicalize(p).with_context(|| format!("cannot find {}", p.display()))?)
        }
        None => None,
    };
    let (mut written, mut unchanged, mut skipped, mut failed) = (0usize, 0usize, 0usize, 0usize);
    let (mut embedded, mut embedded_unchanged) = (0usize, 0usize);
    rewrite_under(
        &catalog,
        under.as_deref(),
        |photo| {
            let lib = library_of(&settings.libraries, photo)?;
            lib.sidecar_settings(&settings.sidecar)
        },
        |photo, outcome| match outcome {
            Ok(o) => {
                match o.sidecar {
                    WriteOutcome::Created | WriteOutcome::Updated => written += 1,
                    WriteOutcome::Unchanged => unchanged += 1,
                    WriteOutcome::Skipped(reason) => {
                        skipped += 1;
                        if reason.concerns_the_file() {
                            eprintln!(
                                "captiond: {}: sidecar not written: {reason}",
                                photo.display()
                            );
                        }
                    }
                }
                match o.embedded {
                    WriteOutcome::Created | WriteOutcome::Updated => embedded += 1,
                    WriteOutcome::Unchanged => embedded_unchanged += 1,
                    WriteOutcome::Skipped(reason) => {
                        if reason.concerns_the_file() {
                            eprintln!("captiond: {}: XMP not embedded: {reason}", photo.display());
                        }
                    }
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("captiond: error: {}: {e}", photo.display());
            }
        },
    )?;
    println!(
        "sidecars: {written} written, {unchanged} unchanged, {skipped} skipped, {failed} failed"
    );
    if settings.libraries.iter().any(|l| l.embed) {
        println!("embedded XMP: {embedded} written, {embedded_unchanged} unchanged");
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
