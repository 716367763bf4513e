//! `captiond run [--once]`: the daemon in the foreground (what systemd/launchd start), or with
//! `--once` one pass over the libraries that captions everything and exits. `--once` prints one
//! summary line on stdout: `captioned N, failed M, skipped K`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::config::Settings;
use crate::daemon::{self, RunOptions};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Discover every photo, caption all that is queued (failed photos are retried at once, up to
    /// 3 attempts in all, also those an earlier daemon run left waiting to be retried), write
    /// sidecars, print a summary and exit 0, instead of watching. Default: off (run until
    /// SIGTERM/SIGINT).
    #[arg(long)]
    pub once: bool,
}

pub fn run(config: Option<&Path>, args: RunArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(config)?;
    let summary = daemon::run(&settings, RunOptions { once: args.once }).with_context(|| {
        if args.once {
            "`captiond run --once` stopped"
        } else {
            "`captiond run` stopped"
        }
    })?;
    if args.once {
        // Skipped: photos found that needed no captioning (unchanged, or already captioned).
        println!(
            "captioned {}, failed {}, skipped {}",
            summary.captioned, summary.failed, summary.skipped
        );
    }
    Ok(ExitCode::SUCCESS)
}
