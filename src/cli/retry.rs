//! `captiond retry`: every failed photo (a job that ran out of attempts) goes back to pending with
//! a fresh set of attempts; prints how many. A running daemon picks them up within seconds;
//! without one, `captiond run --once` captions them.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;

use crate::config::Settings;

use super::status::{open_catalog, plural};
use crate::daemon::{daemon_state, DaemonState};

#[derive(Debug, Args)]
pub struct RetryArgs {}

pub fn run(config: Option<&Path>, _args: RetryArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(config)?;
    let catalog = open_catalog(&settings.database, false)?;
    let n = catalog.retry_failed()? as u64;
    println!(
        "queued {} again",
        plural(n, "failed photo", "failed photos")
    );
    if n > 0 && daemon_state(&settings.database) == DaemonState::NotRunning {
        eprintln!("captiond: no daemon is running; `captiond run --once` captions them now");
    }
    Ok(ExitCode::SUCCESS)
}
