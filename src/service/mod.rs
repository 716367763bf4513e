//! captiond as a background service: renders the systemd units and the launchd agent for the
//! checked config, and installs, removes and inspects them through `systemctl` / `launchctl`.
//!
//! Input: [`Settings`](crate::config::Settings), the binary and config file to run, and the environment (`HOME`,
//! `XDG_CONFIG_HOME`, `HF_*`) through [`ServiceSpec::new`]. Output: the file text ([`render()`]),
//! a [`Plan`] of steps (folders, the file, commands; printed as is by `--dry-run`, carried out by
//! [`Plan::execute`]) and a [`ServiceState`] for `service status`.
//!
//! The templates in `systemd/` and `launchd/` are compiled in and are the one source of the
//! sandbox and scheduling settings; rendering only replaces what depends on the machine:
//! `ExecStart`, `User`/`Group`, the `HF_*` environment and one `ReadWritePaths` per folder the
//! daemon writes to (the catalog's folder, the Hugging Face cache, each library with sidecars or
//! embedded XMP).

use std::io;
use std::path::PathBuf;

mod plan;
mod render;
mod spec;

pub use plan::*;
pub use render::*;
pub use spec::*;

/// The launchd label, also the plist's file stem.
pub const LABEL: &str = "org.captiond.captiond";
/// The systemd unit name, for both scopes.
pub const UNIT_NAME: &str = "captiond.service";

const USER_UNIT: &str = include_str!("../../systemd/captiond.service");
const SYSTEM_UNIT: &str = include_str!("../../systemd/captiond-system.service");
const PLIST: &str = include_str!("../../launchd/org.captiond.captiond.plist");

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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Settings;

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
