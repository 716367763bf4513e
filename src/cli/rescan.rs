//! `captiond rescan [PATH]`: asks the running daemon to walk PATH (a folder or file inside a
//! library) or every library again, e.g. after files changed where events are not seen. The
//! request goes through the catalog (`rescan_requests`, see [`crate::catalog::report`]), which the
//! daemon polls. With no daemon running nothing would take it: that is an error (exit 1) that
//! says to run `captiond run --once`, which scans everything.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use crate::config::Settings;

use super::search::absolute;
use super::status::open_catalog;
use crate::daemon::{daemon_state, DaemonState};

#[derive(Debug, Args)]
pub struct RescanArgs {
    /// A folder or file inside a library (relative to the current directory, or absolute).
    /// Default: every library.
    #[arg(value_name = "PATH")]
    pub path: Option<PathBuf>,
}

pub fn run(config: Option<&Path>, args: RescanArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(config)?;
    let catalog = open_catalog(&settings.database, false)?;
    let daemon = daemon_state(&settings.database);
    let what = match &args.path {
        Some(p) => absolute(p)?,
        None => PathBuf::new(),
    };
    let shown = if args.path.is_some() {
        what.display().to_string()
    } else {
        "every library".to_owned()
    };
    if daemon == DaemonState::NotRunning {
        anyhow::bail!(
            "no daemon is running for the catalog {}, so nothing would pick the rescan up; \
             `captiond run --once` scans every library now",
            settings.database.display()
        );
    }
    if args.path.is_some() {
        let configured = settings.libraries.iter().any(|l| what.starts_with(&l.path));
        if !configured && catalog.library_of(&what)?.is_none() {
            let roots: Vec<String> = settings
                .libraries
                .iter()
                .map(|l| l.path.display().to_string())
                .collect();
            anyhow::bail!(
                "{} is not inside a library (libraries: {})",
                what.display(),
                if roots.is_empty() {
                    "none configured".to_owned()
                } else {
                    roots.join(", ")
                }
            );
        }
    }
    let added = catalog.request_rescan(args.path.is_some().then_some(what.as_path()))?;
    let who = match &daemon {
        DaemonState::Running { pid: Some(pid) } => format!("the daemon (pid {pid})"),
        DaemonState::Running { pid: None } => "the daemon".to_owned(),
        _ => "a running daemon".to_owned(),
    };
    if added {
        println!("rescan of {shown} requested; {who} picks it up within seconds");
    } else {
        println!("a rescan of {shown} is already waiting for {who}");
    }
    if let DaemonState::Unknown(why) = daemon {
        eprintln!("captiond: could not tell whether a daemon is running ({why})");
    }
    Ok(ExitCode::SUCCESS)
}
