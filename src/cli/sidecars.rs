//! `captiond sidecars rewrite [PATH]`: regenerate XMP sidecars from the catalog (after a change
//! of naming, keyword parent or MWG setting), touching only files whose content changes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::catalog::Catalog;
use crate::config::Settings;
use crate::sidecar::{rewrite_under, SidecarSettings, WriteOutcome};

#[derive(Debug, Args)]
pub struct SidecarsArgs {
    #[command(subcommand)]
    pub command: SidecarsCommand,
}

#[derive(Debug, Subcommand)]
pub enum SidecarsCommand {
    /// Rewrite the sidecars of every catalogued photo at or under PATH (default: all libraries
    /// with `sidecars = true`).
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
    rewrite_under(
        &catalog,
        under.as_deref(),
        |photo| {
            let lib = settings
                .libraries
                .iter()
                .filter(|l| photo.starts_with(&l.path))
                .max_by_key(|l| l.path.as_os_str().len())?;
            lib.sidecars.then(|| SidecarSettings {
                naming: lib.naming,
                keyword_parent: settings.sidecar.keyword_parent.clone(),
                mwg_regions: settings.sidecar.mwg_regions,
                ..SidecarSettings::default()
            })
        },
        |photo, outcome| match outcome {
            Ok(o) => match o.sidecar {
                WriteOutcome::Created | WriteOutcome::Updated => written += 1,
                WriteOutcome::Unchanged => unchanged += 1,
                WriteOutcome::Skipped(_) => skipped += 1,
            },
            Err(e) => {
                failed += 1;
                eprintln!("captiond: error: {}: {e}", photo.display());
            }
        },
    )?;
    println!(
        "sidecars: {written} written, {unchanged} unchanged, {skipped} skipped, {failed} failed"
    );
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
