//! `captiond reprocess`: after changing the model, its revision or the task list in the config,
//! queue every present photo that has no result for the new combination (the "profile"), and give
//! failed photos a fresh set of attempts. A running daemon picks the jobs up within seconds;
//! otherwise `captiond run --once` does them. Photos already done for the current profile are not
//! queued again (forcing that needs a catalog operation that does not exist yet).

use std::path::Path;
use std::process::ExitCode;

use clap::Args;

use crate::catalog::Catalog;
use crate::config::Settings;
use crate::pipeline::profile_key;

#[derive(Debug, Args)]
pub struct ReprocessArgs {}

pub fn run(config: Option<&Path>, _args: ReprocessArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(config)?;
    let catalog = Catalog::open(&settings.database)?;
    let profile = profile_key(&settings.model);
    let queued = catalog.requeue_for_profile(&profile)?;
    let counts = catalog.queue_counts(Some(&profile))?;
    println!(
        "queued {queued} photos for {profile} ({} pending, {} done)",
        counts.pending, counts.done
    );
    Ok(ExitCode::SUCCESS)
}
