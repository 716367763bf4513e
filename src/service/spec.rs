//! What a service file is rendered from: the platform, the scope and the [`ServiceSpec`] built
//! from the checked settings and the installing environment (binary, config, writable folders,
//! `HF_*`), with the checks a system-wide install needs.

use std::path::{Path, PathBuf};

use super::*;
use crate::config::Settings;

/// Which service manager to write for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Platform {
    /// systemd (Linux): a unit file and systemctl.
    Systemd,
    /// launchd (macOS): a plist and launchctl.
    Launchd,
}

impl Platform {
    /// launchd on macOS, systemd elsewhere.
    pub fn native() -> Self {
        if cfg!(target_os = "macos") {
            Platform::Launchd
        } else {
            Platform::Systemd
        }
    }
}

/// Whose service: the invoking user's (user unit, launchd agent) or the machine's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    User,
    /// System-wide, running as this user and group.
    System,
}

/// Everything a service file is rendered from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    pub platform: Platform,
    pub scope: Scope,
    /// The `captiond` binary the service runs (absolute).
    pub binary: PathBuf,
    /// The config file passed with `--config` (absolute), if any.
    pub config: Option<PathBuf>,
    /// The installing user's home (log and agent folders).
    pub home: PathBuf,
    /// `XDG_CONFIG_HOME`, or `~/.config` (where systemd looks for user units).
    pub config_home: PathBuf,
    /// Folders the daemon writes to, outermost only, in config order.
    pub read_write: Vec<PathBuf>,
    /// Folders `install` creates so that the sandbox can open them up: the catalog's folder
    /// and the Hugging Face cache (user scope; a system unit has its state and cache folders).
    pub created_dirs: Vec<PathBuf>,
    /// `HF_HOME` for the service.
    pub hf_home: PathBuf,
    /// Further environment for the service (`HF_HUB_CACHE`, `HF_ENDPOINT`, `HF_HUB_OFFLINE`).
    pub env: Vec<(String, String)>,
    /// User and group of a system service.
    pub user: String,
    pub group: String,
    /// Things worth telling the user (they do not stop an install).
    pub warnings: Vec<String>,
}

/// What a spec is built from besides the settings.
#[derive(Debug, Clone)]
pub struct SpecInputs {
    pub platform: Platform,
    pub scope: Scope,
    pub binary: PathBuf,
    /// The config file the settings came from, made absolute (`None`: built-in defaults).
    pub config: Option<PathBuf>,
    /// System scope: the service's user and group.
    pub user: String,
    pub group: String,
}

impl ServiceSpec {
    /// Builds the spec from the settings and the process environment.
    pub fn new(settings: &Settings, inputs: SpecInputs) -> Result<Self, ServiceError> {
        Self::with_env(settings, inputs, |name| {
            std::env::var(name).ok().filter(|v| !v.trim().is_empty())
        })
    }

    /// [`ServiceSpec::new`] reading variables through `var` (tests).
    pub fn with_env(
        settings: &Settings,
        inputs: SpecInputs,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ServiceError> {
        let SpecInputs {
            platform,
            scope,
            binary,
            config,
            user,
            group,
        } = inputs;
        if platform == Platform::Launchd && scope == Scope::System {
            return Err(ServiceError::SystemLaunchd);
        }
        let home = var("HOME")
            .map(PathBuf::from)
            .or_else(std::env::home_dir)
            .ok_or(ServiceError::NoHome)?;
        let config_home = var("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".config"));
        let mut warnings = Vec::new();

        if scope == Scope::System {
            let config_file = config.as_ref().unwrap_or(&binary);
            for (what, path) in [("the binary", &binary), ("the config", config_file)] {
                if path.starts_with("/root") || path.starts_with("/home") {
                    warnings.push(format!(
                        "{what} {} is in a home folder, which the service user `{user}` may not be \
                         able to read; e.g. install with `cargo install --path . --root /usr/local` \
                         and keep the config in /etc/captiond/",
                        path.display()
                    ));
                }
            }
        }
        if config.is_none() {
            warnings.push(
                "no config file: the service runs with the built-in defaults and watches no \
                 library; write one (see config.example.toml) and install again"
                    .into(),
            );
        } else if settings.libraries.is_empty() {
            warnings.push(
                "the config names no [[library]]: the service will have nothing to caption".into(),
            );
        }
        if binary.components().any(|c| c.as_os_str() == "target") {
            warnings.push(format!(
                "the service will run {}, a build folder's binary; `cargo install --path .` and \
                 install the service again for a path that survives `cargo clean`",
                binary.display()
            ));
        }

        let hf_home = match (scope, var("HF_HOME")) {
            (_, Some(h)) => PathBuf::from(h),
            (Scope::System, None) => Path::new(SYSTEM_CACHE_DIR).join("huggingface"),
            (Scope::User, None) => var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join(".cache"))
                .join("huggingface"),
        };
        let env: Vec<(String, String)> = PASSED_ENV
            .iter()
            .filter_map(|k| var(k).map(|v| (k.to_string(), v)))
            .collect();

        let mut read_write = Vec::new();
        if let Some(dir) = settings.database.parent() {
            read_write.push(dir.to_path_buf());
        }
        read_write.push(hf_home.clone());
        if let Some((_, cache)) = env.iter().find(|(k, _)| k == "HF_HUB_CACHE") {
            read_write.push(PathBuf::from(cache));
        }
        let created_dirs = read_write.clone();
        read_write.extend(
            settings
                .libraries
                .iter()
                .filter(|l| l.sidecars || l.embed)
                .map(|l| l.path.clone()),
        );
        let always_writable: Vec<PathBuf> = match scope {
            Scope::System => vec![SYSTEM_STATE_DIR.into(), SYSTEM_CACHE_DIR.into()],
            Scope::User => Vec::new(),
        };
        let read_write = outermost(read_write, &always_writable);

        let spec = ServiceSpec {
            platform,
            scope,
            binary,
            config,
            home,
            config_home,
            read_write,
            created_dirs,
            hf_home,
            env,
            user,
            group,
            warnings,
        };
        spec.check_paths()?;
        Ok(spec)
    }

    /// What must hold before a system-wide unit is written: a config file, naming the catalog
    /// (the installing user's default location is not the service user's).
    pub fn check_system_install(&self, settings: &Settings) -> Result<(), ServiceError> {
        if self.scope != Scope::System {
            return Ok(());
        }
        let Some(config) = &self.config else {
            return Err(ServiceError::SystemNeedsConfig);
        };
        if Some(&settings.database) == default_database().as_ref() {
            return Err(ServiceError::SystemNeedsDatabase {
                config: config.clone(),
            });
        }
        Ok(())
    }

    pub(super) fn check_paths(&self) -> Result<(), ServiceError> {
        let bad = |p: &Path| p.to_string_lossy().chars().any(char::is_control);
        let mut named: Vec<(&'static str, &Path)> = vec![
            ("the binary", &self.binary),
            ("HF_HOME", &self.hf_home),
            ("the home folder", &self.home),
        ];
        if let Some(c) = &self.config {
            named.push(("the config file", c));
        }
        named.extend(self.read_write.iter().map(|p| ("the folder", p.as_path())));
        match named.into_iter().find(|(_, p)| bad(p)) {
            Some((what, path)) => Err(ServiceError::UnsupportedPath {
                what,
                path: path.to_path_buf(),
            }),
            None => Ok(()),
        }
    }

    /// Where the service file goes.
    pub fn file_path(&self) -> PathBuf {
        match (self.platform, self.scope) {
            (Platform::Systemd, Scope::User) => {
                self.config_home.join("systemd/user").join(UNIT_NAME)
            }
            (Platform::Systemd, Scope::System) => Path::new(SYSTEM_UNIT_DIR).join(UNIT_NAME),
            (Platform::Launchd, _) => self
                .home
                .join("Library/LaunchAgents")
                .join(format!("{LABEL}.plist")),
        }
    }

    /// The launchd agent's log folder.
    pub fn log_dir(&self) -> PathBuf {
        self.home.join("Library/Logs/captiond")
    }

    /// The command line the service runs.
    pub fn argv(&self) -> Vec<String> {
        let mut argv = vec![self.binary.to_string_lossy().into_owned()];
        if let Some(c) = &self.config {
            argv.push("--config".into());
            argv.push(c.to_string_lossy().into_owned());
        }
        argv.push("run".into());
        argv
    }

    /// `-` + `HF_*` environment in the order written.
    pub(super) fn environment(&self) -> Vec<(String, String)> {
        let mut env = vec![(
            "HF_HOME".to_string(),
            self.hf_home.to_string_lossy().into_owned(),
        )];
        env.extend(self.env.iter().cloned());
        env
    }
}

/// The default catalog path when a config names none (per invoking user).
pub(super) fn default_database() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "captiond").map(|d| d.data_dir().join("catalog.db"))
}

/// Drops paths inside another listed path or inside one of `covered`, keeping first-seen order.
pub(super) fn outermost(paths: Vec<PathBuf>, covered: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for p in &paths {
        let inside_other = paths.iter().any(|q| q != p && p.starts_with(q));
        let duplicate = out.contains(p);
        let is_covered = covered.iter().any(|c| p.starts_with(c));
        if !inside_other && !duplicate && !is_covered {
            out.push(p.clone());
        }
    }
    out
}
