//! captiond as a background service: renders the systemd units and the launchd agent for the
//! checked config, and installs, removes and inspects them through `systemctl` / `launchctl`.
//!
//! Input: [`Settings`], the binary and config file to run, and the environment (`HOME`,
//! `XDG_CONFIG_HOME`, `HF_*`) through [`ServiceSpec::new`]. Output: the file text ([`render`]),
//! a [`Plan`] of steps (folders, the file, commands; printed as is by `--dry-run`, carried out by
//! [`Plan::execute`]) and a [`ServiceState`] for `service status`.
//!
//! The templates in `systemd/` and `launchd/` are compiled in and are the one source of the
//! sandbox and scheduling settings; rendering only replaces what depends on the machine:
//! `ExecStart`, `User`/`Group`, the `HF_*` environment and one `ReadWritePaths` per folder the
//! daemon writes to (the catalog's folder, the Hugging Face cache, each library with sidecars or
//! embedded XMP).

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config::Settings;

/// The launchd label, also the plist's file stem.
pub const LABEL: &str = "org.captiond.captiond";
/// The systemd unit name, for both scopes.
pub const UNIT_NAME: &str = "captiond.service";

const USER_UNIT: &str = include_str!("../systemd/captiond.service");
const SYSTEM_UNIT: &str = include_str!("../systemd/captiond-system.service");
const PLIST: &str = include_str!("../launchd/org.captiond.captiond.plist");

/// Folders the system unit gets from `StateDirectory=`/`CacheDirectory=` (always writable).
const SYSTEM_STATE_DIR: &str = "/var/lib/captiond";
const SYSTEM_CACHE_DIR: &str = "/var/cache/captiond";
/// Where system units live.
const SYSTEM_UNIT_DIR: &str = "/etc/systemd/system";

/// `HF_*` variables carried from the installing shell into the service, when set.
const PASSED_ENV: &[&str] = &["HF_HUB_CACHE", "HF_ENDPOINT", "HF_HUB_OFFLINE"];

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("no home directory found (HOME is unset)")]
    NoHome,
    #[error(
        "{what} {path:?} cannot be written into a service file (it contains a control character)"
    )]
    UnsupportedPath { what: &'static str, path: PathBuf },
    #[error("launchd agents run per user; `--system` is for systemd only")]
    SystemLaunchd,
    #[error(
        "a system-wide service needs a config file readable by its user: pass --config \
         /etc/captiond/config.toml"
    )]
    SystemNeedsConfig,
    #[error(
        "{config} does not set `database`, so the service user would look for the catalog in its \
         own home; set e.g. database = \"/var/lib/captiond/catalog.db\""
    )]
    SystemNeedsDatabase { config: PathBuf },
    #[error("installing a system-wide service needs root: run it with sudo")]
    NotRoot,
    #[error(
        "there is no user {user:?} to run the service as; create it: useradd --system \
         --home-dir /var/lib/captiond --shell /usr/sbin/nologin {user}"
    )]
    NoSuchUser { user: String },
    #[error("cannot create the folder {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot remove {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot run `{command}` (is {program} installed and on PATH?)")]
    Spawn {
        command: String,
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed ({status}): {output}{}", hint_suffix(.output))]
    Failed {
        command: String,
        status: String,
        output: String,
    },
}

/// The advice for a systemctl/launchctl failure whose cause we recognise.
fn hint_suffix(output: &str) -> String {
    match manager_unreachable(output) {
        Some(why) => format!("; {why}"),
        None => String::new(),
    }
}

/// When systemctl's output says the service manager cannot be reached: why, and what to do.
pub fn manager_unreachable(output: &str) -> Option<&'static str> {
    let o = output.to_ascii_lowercase();
    if o.contains("not been booted with systemd") || o.contains("system has not been booted") {
        Some(
            "systemd is not running on this machine (a container or another init system); run \
             `captiond run` under that system's supervisor instead",
        )
    } else if o.contains("failed to connect to bus")
        || o.contains("no medium found")
        || o.contains("dbus_session_bus_address")
        || o.contains("xdg_runtime_dir")
    {
        Some(
            "the systemd user manager is not reachable (no user D-Bus session: a container, `su`, \
             or an ssh session without systemd-logind); log in normally, or as root run \
             `loginctl enable-linger USER` and use `machinectl shell USER@` or set \
             XDG_RUNTIME_DIR=/run/user/$(id -u)",
        )
    } else {
        None
    }
}

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

    fn check_paths(&self) -> Result<(), ServiceError> {
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
    fn environment(&self) -> Vec<(String, String)> {
        let mut env = vec![(
            "HF_HOME".to_string(),
            self.hf_home.to_string_lossy().into_owned(),
        )];
        env.extend(self.env.iter().cloned());
        env
    }

    /// Steps of `service install`.
    pub fn install_plan(&self) -> Plan {
        let file = self.file_path();
        let mut steps = Vec::new();
        // The daemon creates these itself, but ProtectSystem=strict only opens up folders that
        // exist when the service starts.
        // Library roots are never created: one missing may be an unmounted share.
        let mut dirs: Vec<PathBuf> = match self.scope {
            Scope::User => self.created_dirs.clone(),
            Scope::System => Vec::new(),
        };
        if self.platform == Platform::Launchd {
            dirs.push(self.log_dir());
        }
        if let Some(parent) = file.parent() {
            dirs.push(parent.to_path_buf());
        }
        steps.extend(dirs.into_iter().map(Step::CreateDir));
        steps.push(Step::WriteFile {
            path: file.clone(),
            contents: render(self),
        });
        match self.platform {
            Platform::Systemd => {
                let ctl = systemctl(self.scope);
                steps.push(Step::Run(cmd(&ctl, &["daemon-reload"], false)));
                steps.push(Step::Run(cmd(&ctl, &["enable", "--now", UNIT_NAME], false)));
                // A reinstall must pick up the new file in a service that was already running.
                steps.push(Step::Run(cmd(&ctl, &["try-restart", UNIT_NAME], false)));
            }
            Platform::Launchd => {
                let domain = gui_domain();
                let target = format!("{domain}/{LABEL}");
                let file = file.to_string_lossy().into_owned();
                steps.push(Step::Run(cmd(&["launchctl"], &["bootout", &target], true)));
                steps.push(Step::Run(cmd(&["launchctl"], &["enable", &target], false)));
                steps.push(Step::Run(cmd(
                    &["launchctl"],
                    &["bootstrap", &domain, &file],
                    false,
                )));
            }
        }
        Plan { steps }
    }

    /// Steps of `service uninstall`: stop and disable (failures ignored: it may not be loaded),
    /// remove the file, tell the manager.
    pub fn uninstall_plan(&self) -> Plan {
        let file = self.file_path();
        let mut steps = Vec::new();
        match self.platform {
            Platform::Systemd => {
                let ctl = systemctl(self.scope);
                steps.push(Step::Run(cmd(&ctl, &["disable", "--now", UNIT_NAME], true)));
                steps.push(Step::RemoveFile(file));
                steps.push(Step::Run(cmd(&ctl, &["daemon-reload"], true)));
                steps.push(Step::Run(cmd(&ctl, &["reset-failed", UNIT_NAME], true)));
            }
            Platform::Launchd => {
                let target = format!("{}/{LABEL}", gui_domain());
                steps.push(Step::Run(cmd(&["launchctl"], &["bootout", &target], true)));
                steps.push(Step::RemoveFile(file));
            }
        }
        Plan { steps }
    }

    /// Asks the service manager about the service; never fails (unknowns say why).
    pub fn status(&self) -> ServiceState {
        let file = self.file_path();
        let installed = file.is_file();
        let (enabled, active) = match self.platform {
            Platform::Systemd => {
                let ctl = systemctl(self.scope);
                let enabled = probe(&ctl, &["is-enabled", UNIT_NAME], parse_is_enabled);
                let active = probe(&ctl, &["is-active", UNIT_NAME], parse_is_active);
                (enabled, active)
            }
            Platform::Launchd => {
                let domain = gui_domain();
                let target = format!("{domain}/{LABEL}");
                let printed = run_capture(&["launchctl", "print", &target]);
                let disabled = run_capture(&["launchctl", "print-disabled", &domain]);
                match (printed, disabled) {
                    (Ok(p), Ok(d)) => {
                        let loaded = p.success;
                        let enabled = if parse_launchd_disabled(&d.output, LABEL) {
                            Probe::No("disabled".into())
                        } else if loaded {
                            Probe::Yes("loaded".into())
                        } else {
                            Probe::No("not loaded".into())
                        };
                        (enabled, parse_launchd_print(loaded, &p.output))
                    }
                    (Err(e), _) | (_, Err(e)) => {
                        (Probe::Unknown(e.to_string()), Probe::Unknown(e.to_string()))
                    }
                }
            }
        };
        ServiceState {
            file,
            installed,
            enabled,
            active,
        }
    }
}

/// The default catalog path when a config names none (per invoking user).
fn default_database() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "captiond").map(|d| d.data_dir().join("catalog.db"))
}

/// Drops paths inside another listed path or inside one of `covered`, keeping first-seen order.
fn outermost(paths: Vec<PathBuf>, covered: &[PathBuf]) -> Vec<PathBuf> {
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

fn systemctl(scope: Scope) -> Vec<String> {
    match scope {
        Scope::User => vec!["systemctl".into(), "--user".into()],
        Scope::System => vec!["systemctl".into()],
    }
}

fn cmd<S: AsRef<str>>(program: &[S], args: &[&str], may_fail: bool) -> RunStep {
    RunStep {
        argv: program
            .iter()
            .map(|s| s.as_ref().to_string())
            .chain(args.iter().map(|s| s.to_string()))
            .collect(),
        may_fail,
    }
}

/// launchd's domain for the invoking user's GUI session.
fn gui_domain() -> String {
    // SAFETY: getuid has no preconditions and cannot fail.
    format!("gui/{}", unsafe { libc::getuid() })
}

/// Whether a user of that name exists (system scope).
pub fn user_exists(name: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated string; the result is only compared with NULL.
    !unsafe { libc::getpwnam(c.as_ptr()) }.is_null()
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// One thing `install` or `uninstall` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    CreateDir(PathBuf),
    WriteFile { path: PathBuf, contents: String },
    RemoveFile(PathBuf),
    Run(RunStep),
}

/// A command; `may_fail`: its failure is expected in some states and ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunStep {
    pub argv: Vec<String>,
    pub may_fail: bool,
}

impl RunStep {
    /// The command as a shell line (for messages and `--dry-run`).
    pub fn shell_line(&self) -> String {
        self.argv
            .iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The ordered steps of an install or uninstall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub steps: Vec<Step>,
}

impl Plan {
    /// What `--dry-run` prints: the file in full, everything else as `#` lines.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for step in &self.steps {
            match step {
                Step::CreateDir(p) => {
                    let _ = writeln!(out, "# would create the folder {}", p.display());
                }
                Step::WriteFile { path, contents } => {
                    let _ = writeln!(out, "# would write {}:", path.display());
                    out.push_str(contents);
                    if !contents.ends_with('\n') {
                        out.push('\n');
                    }
                    let _ = writeln!(out, "# (end of {})", path.display());
                }
                Step::RemoveFile(p) => {
                    let _ = writeln!(out, "# would remove {}", p.display());
                }
                Step::Run(r) => {
                    let _ = writeln!(out, "# would run: {}", r.shell_line());
                }
            }
        }
        out
    }

    /// Carries the steps out in order; `log` hears each one as it starts. Stops at the first
    /// failure (a command marked `may_fail` never fails the plan).
    pub fn execute(&self, mut log: impl FnMut(&str)) -> Result<(), ServiceError> {
        for step in &self.steps {
            match step {
                Step::CreateDir(p) => {
                    if !p.is_dir() {
                        log(&format!("creating {}", p.display()));
                        std::fs::create_dir_all(p).map_err(|source| ServiceError::CreateDir {
                            path: p.clone(),
                            source,
                        })?;
                    }
                }
                Step::WriteFile { path, contents } => {
                    log(&format!("writing {}", path.display()));
                    write_atomic(path, contents).map_err(|source| ServiceError::Write {
                        path: path.clone(),
                        source,
                    })?;
                }
                Step::RemoveFile(p) => match std::fs::remove_file(p) {
                    Ok(()) => log(&format!("removed {}", p.display())),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        log(&format!("{} was not there", p.display()))
                    }
                    Err(source) => {
                        return Err(ServiceError::Remove {
                            path: p.clone(),
                            source,
                        })
                    }
                },
                Step::Run(r) => {
                    log(&format!("running {}", r.shell_line()));
                    let out = match run_capture(&r.argv) {
                        Ok(out) => out,
                        Err(e) if r.may_fail => {
                            log(&format!("(that failed, which is fine here: {e})"));
                            continue;
                        }
                        Err(e) => return Err(e),
                    };
                    if !out.success {
                        let output = out.output.trim().to_string();
                        if !r.may_fail {
                            return Err(ServiceError::Failed {
                                command: r.shell_line(),
                                status: out.status,
                                output,
                            });
                        }
                        log(&format!("(that failed, which is fine here: {output})"));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Writes through a temp file and a rename, so a reader never sees half a file.
fn write_atomic(path: &Path, contents: &str) -> io::Result<()> {
    let tmp = path.with_extension("captiond-tmp");
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// A finished command: whether it exited 0, its status in words, stdout + stderr.
struct Captured {
    success: bool,
    status: String,
    output: String,
}

fn run_capture<S: AsRef<str>>(argv: &[S]) -> Result<Captured, ServiceError> {
    let command = argv
        .iter()
        .map(|a| shell_quote(a.as_ref()))
        .collect::<Vec<_>>()
        .join(" ");
    let program = argv[0].as_ref().to_string();
    let out = Command::new(&program)
        .args(argv[1..].iter().map(AsRef::as_ref))
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| ServiceError::Spawn {
            command,
            program,
            source,
        })?;
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok(Captured {
        success: out.status.success(),
        status: out.status.to_string(),
        output,
    })
}

/// An answer from the service manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Yes(String),
    No(String),
    /// The manager could not be asked; why.
    Unknown(String),
}

/// What `service status` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceState {
    pub file: PathBuf,
    pub installed: bool,
    pub enabled: Probe,
    pub active: Probe,
}

fn probe(ctl: &[String], args: &[&str], parse: fn(&str) -> Probe) -> Probe {
    let argv: Vec<String> = ctl
        .iter()
        .cloned()
        .chain(args.iter().map(|s| s.to_string()))
        .collect();
    match run_capture(&argv) {
        Ok(out) => match manager_unreachable(&out.output) {
            Some(why) => Probe::Unknown(why.to_string()),
            None => parse(&out.output),
        },
        Err(e) => Probe::Unknown(e.to_string()),
    }
}

/// `systemctl is-enabled`: its first word.
pub fn parse_is_enabled(output: &str) -> Probe {
    let word = output.split_whitespace().next().unwrap_or("").to_string();
    match word.as_str() {
        "enabled" | "enabled-runtime" | "static" | "indirect" | "generated" | "alias" => {
            Probe::Yes(word)
        }
        "disabled" | "masked" | "masked-runtime" | "linked" | "linked-runtime" => Probe::No(word),
        "" => Probe::Unknown("systemctl said nothing".into()),
        _ if output.contains("No such file") || output.contains("not found") => {
            Probe::No("not installed".into())
        }
        _ => Probe::Unknown(output.trim().to_string()),
    }
}

/// `systemctl is-active`: its first word.
pub fn parse_is_active(output: &str) -> Probe {
    let word = output.split_whitespace().next().unwrap_or("").to_string();
    match word.as_str() {
        "active" | "reloading" | "activating" | "refreshing" => Probe::Yes(word),
        "inactive" | "failed" | "deactivating" | "maintenance" => Probe::No(word),
        "" => Probe::Unknown("systemctl said nothing".into()),
        _ => Probe::Unknown(output.trim().to_string()),
    }
}

/// `launchctl print gui/UID/LABEL`: `state = running` and `pid = N` when it runs.
pub fn parse_launchd_print(loaded: bool, output: &str) -> Probe {
    if !loaded {
        return Probe::No("not loaded".into());
    }
    let field = |name: &str| {
        output.lines().find_map(|l| {
            let (k, v) = l.trim().split_once(" = ")?;
            (k == name).then(|| v.trim().to_string())
        })
    };
    match (field("state"), field("pid")) {
        (Some(s), Some(pid)) if s == "running" => Probe::Yes(format!("running, pid {pid}")),
        (Some(s), None) if s == "running" => Probe::Yes("running".into()),
        (Some(s), _) => Probe::No(s),
        (None, _) => Probe::Unknown("launchctl print gave no state".into()),
    }
}

/// `launchctl print-disabled gui/UID`: whether `"LABEL" => disabled` (or `=> true`) is listed.
pub fn parse_launchd_disabled(output: &str, label: &str) -> bool {
    let quoted = format!("\"{label}\"");
    output.lines().any(|l| {
        let l = l.trim();
        l.starts_with(&quoted)
            && l.split_once("=>")
                .is_some_and(|(_, v)| matches!(v.trim(), "disabled" | "true"))
    })
}

/// The service file for `spec`.
pub fn render(spec: &ServiceSpec) -> String {
    match spec.platform {
        Platform::Systemd => render_systemd(spec),
        Platform::Launchd => render_plist(spec),
    }
}

fn render_systemd(spec: &ServiceSpec) -> String {
    let (template, template_name) = match spec.scope {
        Scope::User => (USER_UNIT, "systemd/captiond.service"),
        Scope::System => (SYSTEM_UNIT, "systemd/captiond-system.service"),
    };
    let mut out = String::new();
    let from = match &spec.config {
        Some(c) => format!("for the config {}", c.display()),
        None => "with the built-in defaults (no config file)".to_string(),
    };
    let _ = writeln!(
        out,
        "# Written by `captiond service install{}` {from}, from the template {template_name}.\n\
         # Install again after changing the config's database, libraries or sidecars: the writable\n\
         # folders below follow them. Logs: journalctl{} -u captiond",
        if spec.scope == Scope::System {
            " --system"
        } else {
            ""
        },
        if spec.scope == Scope::User {
            " --user"
        } else {
            ""
        },
    );
    let mut in_header = true;
    let mut wrote_paths = false;
    for line in template.lines() {
        if in_header {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            in_header = false;
            out.push('\n');
        }
        if line.starts_with("ExecStart=") {
            let words: Vec<String> = spec.argv().iter().map(|a| exec_word(a)).collect();
            let _ = writeln!(out, "ExecStart={}", words.join(" "));
        } else if line.starts_with("User=") {
            let _ = writeln!(out, "User={}", unit_value(&spec.user));
        } else if line.starts_with("Group=") {
            let _ = writeln!(out, "Group={}", unit_value(&spec.group));
        } else if line.starts_with("Environment=HF_HOME=") {
            for (k, v) in spec.environment() {
                let _ = writeln!(
                    out,
                    "Environment={}",
                    quote_word(&format!("{k}={v}"), false)
                );
            }
        } else if line.starts_with("ReadWritePaths=") || line.starts_with("# ReadWritePaths=") {
            if !wrote_paths {
                wrote_paths = true;
                for p in &spec.read_write {
                    let p = format!("-{}", p.to_string_lossy());
                    let _ = writeln!(out, "ReadWritePaths={}", quote_word(&p, false));
                }
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn render_plist(spec: &ServiceSpec) -> String {
    let mut out = String::new();
    let mut in_comment = false;
    for line in PLIST.lines() {
        // The template's own how-to comment is replaced by a note on where the file came from.
        if line.trim() == "<!--" {
            in_comment = true;
            let from = match &spec.config {
                Some(c) => format!("for the config {}", c.display()),
                None => "with the built-in defaults (no config file)".to_string(),
            };
            let _ = writeln!(
                out,
                "<!-- Written by `captiond service install` {}, from the template \
                 launchd/{LABEL}.plist. -->",
                xml_escape(&from)
            );
            continue;
        }
        if in_comment {
            in_comment = line.trim() != "-->";
            continue;
        }
        if spec.config.is_none() && (line.contains("{{CONFIG}}") || line.contains(">--config<")) {
            continue;
        }
        if line.contains("{{ENVIRONMENT}}") {
            let indent: String = line.chars().take_while(|c| c.is_whitespace()).collect();
            for (k, v) in spec.environment() {
                let _ = writeln!(out, "{indent}<key>{}</key>", xml_escape(&k));
                let _ = writeln!(out, "{indent}<string>{}</string>", xml_escape(&v));
            }
            continue;
        }
        let config = spec
            .config
            .as_ref()
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_default();
        let line = line
            .replace("{{BINARY}}", &xml_escape(&spec.binary.to_string_lossy()))
            .replace("{{CONFIG}}", &xml_escape(&config))
            .replace("{{HOME}}", &xml_escape(&spec.home.to_string_lossy()));
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// An `ExecStart=` word: `%` and `$` doubled (specifiers, variables), quoted when needed.
pub fn exec_word(s: &str) -> String {
    quote_word(s, true)
}

/// A value as systemd reads a space-separated list word: `%` doubled, and double quotes with
/// C escapes when it holds spaces, quotes, backslashes or (in command lines) `;`/`$`.
fn quote_word(s: &str, command: bool) -> String {
    let mut body = s.replace('%', "%%");
    if command {
        body = body.replace('$', "$$");
    }
    let needs_quotes = body.is_empty()
        || body
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | ';'));
    if !needs_quotes {
        return body;
    }
    let mut quoted = String::from("\"");
    for c in body.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// A single-valued setting (`User=`): only `%` needs doubling.
fn unit_value(s: &str) -> String {
    s.replace('%', "%%")
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A word for a POSIX shell line (messages only; nothing is run through a shell).
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> Settings {
        Settings::from_toml(text, Path::new("/etc/captiond/config.toml")).unwrap()
    }

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    fn inputs(platform: Platform, scope: Scope) -> SpecInputs {
        SpecInputs {
            platform,
            scope,
            binary: "/usr/local/bin/captiond".into(),
            config: Some("/etc/captiond/config.toml".into()),
            user: "captiond".into(),
            group: "captiond".into(),
        }
    }

    const CONFIG: &str = r#"
database = "/srv/catalog/catalog.db"
[[library]]
path = "/photos/with sidecars"
[[library]]
path = "/photos/with sidecars/sub"
[[library]]
path = "/archive"
sidecars = false
"#;

    #[test]
    fn a_library_with_embedded_xmp_only_is_writable() {
        let s = settings(
            "database = \"/srv/catalog/catalog.db\"\n[[library]]\npath = \"/embedded\"\n\
             sidecars = false\nembed = true\n",
        );
        let spec = ServiceSpec::with_env(
            &s,
            inputs(Platform::Systemd, Scope::User),
            env(&[("HOME", "/home/me")]),
        )
        .unwrap();
        let unit = render(&spec);
        assert!(unit.contains("ReadWritePaths=-/embedded\n"), "{unit}");
    }

    #[test]
    fn user_unit_lists_written_folders_and_runs_the_binary() {
        let s = settings(CONFIG);
        let spec = ServiceSpec::with_env(
            &s,
            inputs(Platform::Systemd, Scope::User),
            env(&[("HOME", "/home/me"), ("HF_ENDPOINT", "https://mirror")]),
        )
        .unwrap();
        assert_eq!(
            spec.file_path(),
            Path::new("/home/me/.config/systemd/user/captiond.service")
        );
        let unit = render(&spec);
        assert!(
            unit.contains(
                "\nExecStart=/usr/local/bin/captiond --config /etc/captiond/config.toml run\n"
            ),
            "{unit}"
        );
        assert!(unit.contains("ReadWritePaths=-/srv/catalog\n"), "{unit}");
        assert!(
            unit.contains("ReadWritePaths=-/home/me/.cache/huggingface\n"),
            "{unit}"
        );
        assert!(
            unit.contains("ReadWritePaths=\"-/photos/with sidecars\"\n"),
            "{unit}"
        );
        assert!(!unit.contains("/sub"), "nested library folded: {unit}");
        assert!(!unit.contains("/archive"), "no sidecars, no write: {unit}");
        assert!(!unit.contains("%h"), "{unit}");
        assert!(unit.contains("Environment=HF_HOME=/home/me/.cache/huggingface\n"));
        assert!(unit.contains("Environment=HF_ENDPOINT=https://mirror\n"));
        for key in [
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "PrivateTmp=yes",
            "Restart=on-failure",
            "CPUSchedulingPolicy=idle",
            "IOSchedulingClass=idle",
            "WantedBy=default.target",
        ] {
            assert!(unit.contains(key), "{key}: {unit}");
        }
        assert_eq!(unit.matches("ReadWritePaths=").count(), 3, "{unit}");
    }

    #[test]
    fn system_unit_sets_user_and_skips_state_dirs() {
        let s = settings("database = \"/var/lib/captiond/catalog.db\"");
        let mut i = inputs(Platform::Systemd, Scope::System);
        i.user = "photos".into();
        let spec = ServiceSpec::with_env(&s, i, env(&[("HOME", "/root")])).unwrap();
        let unit = render(&spec);
        assert!(unit.contains("\nUser=photos\n"), "{unit}");
        assert!(unit.contains("StateDirectory=captiond"), "{unit}");
        assert!(unit.contains("WantedBy=multi-user.target"), "{unit}");
        assert!(!unit.contains("ReadWritePaths="), "{unit}");
        assert_eq!(
            spec.file_path(),
            Path::new("/etc/systemd/system/captiond.service")
        );
        assert!(spec.check_system_install(&s).is_ok());
        // The catalog must be named: the installing user's default is not the service's.
        let mut i = inputs(Platform::Systemd, Scope::System);
        i.config = None;
        let spec = ServiceSpec::with_env(&s, i, env(&[("HOME", "/root")])).unwrap();
        assert!(matches!(
            spec.check_system_install(&s),
            Err(ServiceError::SystemNeedsConfig)
        ));
    }

    #[test]
    fn plist_fills_the_template() {
        let s = settings(CONFIG);
        let mut i = inputs(Platform::Launchd, Scope::User);
        i.binary = "/Users/a&b/bin/captiond".into();
        let spec = ServiceSpec::with_env(&s, i, env(&[("HOME", "/Users/a&b")])).unwrap();
        let plist = render(&spec);
        assert!(!plist.contains("{{"), "{plist}");
        assert!(plist.contains("<string>/Users/a&amp;b/bin/captiond</string>"));
        assert!(
            plist.contains("<string>/Users/a&amp;b/Library/Logs/captiond/captiond.log</string>")
        );
        assert!(plist.contains("<key>HF_HOME</key>"));
        let mut i = inputs(Platform::Launchd, Scope::User);
        i.config = None;
        let spec = ServiceSpec::with_env(&s, i, env(&[("HOME", "/Users/x")])).unwrap();
        assert!(!render(&spec).contains("--config"));
    }

    #[test]
    fn words_are_quoted_for_systemd() {
        assert_eq!(exec_word("/usr/bin/captiond"), "/usr/bin/captiond");
        assert_eq!(exec_word("/a b/c"), "\"/a b/c\"");
        assert_eq!(exec_word("/50%/$x"), "/50%%/$$x");
        assert_eq!(exec_word("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }

    #[test]
    fn nested_and_covered_paths_fold() {
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(
            outermost(
                vec![
                    p("/a/b"),
                    p("/a"),
                    p("/a"),
                    p("/c"),
                    p("/var/lib/captiond/x")
                ],
                &[p("/var/lib/captiond")]
            ),
            vec![p("/a"), p("/c")]
        );
    }

    #[test]
    fn manager_answers_parse() {
        assert_eq!(parse_is_enabled("enabled\n"), Probe::Yes("enabled".into()));
        assert_eq!(parse_is_enabled("disabled\n"), Probe::No("disabled".into()));
        assert_eq!(parse_is_active("failed\n"), Probe::No("failed".into()));
        assert_eq!(parse_is_active("active\n"), Probe::Yes("active".into()));
        assert!(manager_unreachable("Failed to connect to bus: No medium found").is_some());
        assert!(manager_unreachable(
            "System has not been booted with systemd as init system (PID 1). Can't operate."
        )
        .is_some());
        let print = "gui/501/org.captiond.captiond = {\n\tstate = running\n\tpid = 4242\n}";
        assert_eq!(
            parse_launchd_print(true, print),
            Probe::Yes("running, pid 4242".into())
        );
        assert_eq!(
            parse_launchd_print(true, "\tstate = not running\n"),
            Probe::No("not running".into())
        );
        let disabled = "disabled services = {\n\t\"org.captiond.captiond\" => disabled\n}";
        assert!(parse_launchd_disabled(disabled, LABEL));
        assert!(!parse_launchd_disabled(
            "\t\"org.captiond.captiond\" => enabled",
            LABEL
        ));
    }
}
