//! Installing, removing and inspecting the service: a [`Plan`] of steps (folders, the file,
//! `systemctl`/`launchctl` commands; printed by `--dry-run`, carried out by [`Plan::execute`]) and
//! a [`ServiceState`] from the manager's answers.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;

impl ServiceSpec {
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

pub(super) fn systemctl(scope: Scope) -> Vec<String> {
    match scope {
        Scope::User => vec!["systemctl".into(), "--user".into()],
        Scope::System => vec!["systemctl".into()],
    }
}

pub(super) fn cmd<S: AsRef<str>>(program: &[S], args: &[&str], may_fail: bool) -> RunStep {
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
pub(super) fn gui_domain() -> String {
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
pub(super) fn write_atomic(path: &Path, contents: &str) -> io::Result<()> {
    let tmp = path.with_extension("captiond-tmp");
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// A finished command: whether it exited 0, its status in words, stdout + stderr.
pub(super) struct Captured {
    success: bool,
    status: String,
    output: String,
}

pub(super) fn run_capture<S: AsRef<str>>(argv: &[S]) -> Result<Captured, ServiceError> {
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

pub(super) fn probe(ctl: &[String], args: &[&str], parse: fn(&str) -> Probe) -> Probe {
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
