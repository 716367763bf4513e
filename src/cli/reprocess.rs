//! `captiond reprocess [--all]`: after changing the model, its revision or the task list in the
//! config, queue every present photo that has no result for the new combination (the "profile"),
//! and give failed photos of the profile a fresh set of attempts. `--all` also queues every photo
//! already done for the current profile, to caption it again (e.g. after changing `beams` or
//! `max_new_tokens`, which are not part of the profile); its old results stay searchable until the
//! new ones replace them. A running daemon picks the jobs up within seconds; otherwise
//! `captiond run --once` does them. Prints `queued N photos for PROFILE (P pending, D done)`.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;

use crate::catalog::Catalog;
use crate::config::Settings;
use crate::pipeline::profile_key;

#[derive(Debug, Args)]
pub struct ReprocessArgs {
    /// Also caption again every photo already done for the current model and tasks. Default: off
    /// (only photos without a result for them, and failed ones).
    #[arg(long)]
    pub all: bool,
}

pub fn run(config: Option<&Path>, args: ReprocessArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(config)?;
    let catalog = Catalog::open(&settings.database)?;
    let profile = profile_key(&settings.model);
    let mut queued = catalog.requeue_for_profile(&profile)?;
    queued += catalog.retry_failed_for_profile(&profile)?;
    if args.all {
        queued += catalog.requeue_done_for_profile(&profile)?;
    }
    let counts = catalog.queue_counts(Some(&profile))?;
    println!(
        "queued {queued} photos for {profile} ({} pending, {} done)",
        counts.pending, counts.done
    );
    Ok(ExitCode::SUCCESS)
}
