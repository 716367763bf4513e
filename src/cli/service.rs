//! `captiond service install|uninstall|status`: captiond as a background service (a systemd user
//! unit on Linux, a launchd agent on macOS; `--system`: a system-wide systemd unit). The files
//! come from the templates in systemd/ and launchd/, rendered for the config by
//! [`crate::service`]. `--dry-run` prints the file and the commands and touches nothing.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::config::{default_config_path, Settings};
use crate::service::{self, Platform, Probe, Scope, ServiceSpec, SpecInputs};

#[derive(Debug, Args)]
pub struct ServiceArgs {
    #[command(subcommand)]
    pub action: ServiceAction,
}

#[derive(Debug, Subcommand)]
pub enum ServiceAction {
    /// Write the service file for this config and enable and start it (again, if installed).
    Install(ServiceOptions),
    /// Stop and disable the service and remove its file. The catalog and sidecars stay.
    Uninstall(ServiceOptions),
    /// Say whether the service is installed, enabled and running.
    Status(ServiceOptions),
}

#[derive(Debug, Args)]
pub struct ServiceOptions {
    /// Print the file that would be written and the commands that would run; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// A system-wide systemd unit (/etc/systemd/system, started at boot, needs root) instead of
    /// a user unit. The config must set `database` and be readable by the service user.
    #[arg(long)]
    pub system: bool,

    /// With --system: the user the service runs as.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "captiond",
        requires = "system"
    )]
    pub user: String,

    /// With --system: the service's group. Default: the same as --user.
    #[arg(long, value_name = "NAME", requires = "system")]
    pub group: Option<String>,

    /// Service manager to write for. Default: launchd on macOS, systemd elsewhere.
    #[arg(long, value_enum)]
    pub platform: Option<Platform>,
}

pub fn run(config: Option<&Path>, args: ServiceArgs) -> anyhow::Result<ExitCode> {
    match &args.action {
        ServiceAction::Install(o) => {
            let settings = Settings::load(config)?;
            let spec = spec_for(&settings, config, o)?;
            spec.check_system_install(&settings)?;
            install(&spec, o)
        }
        ServiceAction::Uninstall(o) => uninstall(&spec_for(&lenient(config)?, config, o)?, o),
        ServiceAction::Status(o) => status(&spec_for(&lenient(config)?, config, o)?),
    }
}

/// The settings, or the built-in defaults when the config cannot be read: removing or
/// inspecting the service must not depend on a config that may be the reason for it.
fn lenient(config: Option<&Path>) -> anyhow::Result<Settings> {
    match Settings::load(config) {
        Ok(s) => Ok(s),
        Err(e) => {
            eprintln!("captiond: warning: {e}; going on with the built-in defaults");
            Ok(Settings::from_toml("", Path::new("config.toml"))?)
        }
    }
}

/// The config file the service will be given: `--config` (made absolute), else the default
/// file when it exists.
fn config_file(config: Option<&Path>) -> anyhow::Result<Option<PathBuf>> {
    match config {
        Some(p) => Ok(Some(std::path::absolute(p).with_context(|| {
            format!("cannot make the config path {} absolute", p.display())
        })?)),
        None => Ok(default_config_path().filter(|p| p.is_file())),
    }
}

fn spec_for(
    settings: &Settings,
    config: Option<&Path>,
    opts: &ServiceOptions,
) -> anyhow::Result<ServiceSpec> {
    let config = config_file(config)?;
    let binary = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .context("cannot find the path of the running captiond binary")?;
    let inputs = SpecInputs {
        platform: opts.platform.unwrap_or_else(Platform::native),
        scope: if opts.system {
            Scope::System
        } else {
            Scope::User
        },
        binary,
        config,
        user: opts.user.clone(),
        group: opts.group.clone().unwrap_or_else(|| opts.user.clone()),
    };
    Ok(ServiceSpec::new(settings, inputs)?)
}

fn warn(spec: &ServiceSpec) {
    for w in &spec.warnings {
        eprintln!("captiond: warning: {w}");
    }
}

fn install(spec: &ServiceSpec, opts: &ServiceOptions) -> anyhow::Result<ExitCode> {
    warn(spec);
    let plan = spec.install_plan();
    if opts.dry_run {
        print!("{}", plan.describe());
        return Ok(ExitCode::SUCCESS);
    }
    if spec.scope == Scope::System {
        if !service::is_root() {
            return Err(service::ServiceError::NotRoot.into());
        }
        if !service::user_exists(&spec.user) {
            return Err(service::ServiceError::NoSuchUser {
                user: spec.user.clone(),
            }
            .into());
        }
    }
    plan.execute(|msg| eprintln!("captiond: {msg}"))
        .with_context(|| {
            format!(
                "the service is not installed and enabled; {} holds the file if it was written, \
                 `captiond service install --dry-run` shows every step",
                spec.file_path().display()
            )
        })?;
    println!(
        "installed {} and started it; `captiond service status` shows its state",
        spec.file_path().display()
    );
    if spec.platform == Platform::Systemd && spec.scope == Scope::User {
        println!(
            "to keep it running while you are logged out: loginctl enable-linger {}",
            std::env::var("USER").unwrap_or_else(|_| "$USER".into())
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn uninstall(spec: &ServiceSpec, opts: &ServiceOptions) -> anyhow::Result<ExitCode> {
    let plan = spec.uninstall_plan();
    if opts.dry_run {
        print!("{}", plan.describe());
        return Ok(ExitCode::SUCCESS);
    }
    if spec.scope == Scope::System && !service::is_root() {
        return Err(service::ServiceError::NotRoot.into());
    }
    plan.execute(|msg| eprintln!("captiond: {msg}"))?;
    println!("uninstalled the service; the catalog and the sidecars are kept");
    Ok(ExitCode::SUCCESS)
}

fn status(spec: &ServiceSpec) -> anyhow::Result<ExitCode> {
    let state = spec.status();
    let word = |p: &Probe| match p {
        Probe::Yes(w) => format!("yes ({w})"),
        Probe::No(w) => format!("no ({w})"),
        Probe::Unknown(why) => format!("unknown: {why}"),
    };
    println!(
        "installed: {} ({})",
        if state.installed { "yes" } else { "no" },
        state.file.display()
    );
    println!("enabled:   {}", word(&state.enabled));
    println!("active:    {}", word(&state.active));
    if !state.installed {
        println!("install it with: captiond service install");
    } else if matches!(&state.active, Probe::No(w) if w == "failed") {
        let journal = match spec.scope {
            Scope::User => "journalctl --user -u captiond",
            Scope::System => "journalctl -u captiond",
        };
        println!("it failed; see why with: {journal}");
    }
    Ok(ExitCode::SUCCESS)
}
