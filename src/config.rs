//! captiond's own settings (`config.toml`): the key names are a contract shared with scripts, so
//! they are spelled exactly as in config.example.toml. Two steps: strict serde structs (unknown
//! keys are errors, so a typo never silently falls back to a default), then [`Settings::resolve`]
//! checks values and fills in platform defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use florence2::hub::ModelSource;
use florence2::{DeviceChoice, DtypeChoice, Task};

use crate::library::PollMode;
use crate::sidecar::{SidecarNaming, SidecarSettings};

/// The model captiond uses when the config names none.
pub const DEFAULT_MODEL_REPO: &str = "florence-community/Florence-2-base";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("config file {path}: `{key}` {problem}")]
    Invalid {
        path: PathBuf,
        key: String,
        problem: String,
    },
    #[error("no home directory found to place the default config and catalog; pass --config FILE and set `database`")]
    NoHome,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    database: Option<PathBuf>,
    #[serde(default)]
    library: Vec<RawLibrary>,
    #[serde(default)]
    model: RawModel,
    #[serde(default)]
    daemon: RawDaemon,
    #[serde(default)]
    sidecar: RawSidecar,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSidecar {
    keyword_parent: Option<String>,
    mwg_regions: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLibrary {
    path: PathBuf,
    sidecars: Option<bool>,
    naming: Option<String>,
    embed: Option<bool>,
    #[serde(default)]
    exclude: Vec<String>,
    poll: Option<toml::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    repo: Option<String>,
    dir: Option<PathBuf>,
    revision: Option<String>,
    device: Option<DeviceChoice>,
    dtype: Option<DtypeChoice>,
    tasks: Option<Vec<String>>,
    beams: Option<usize>,
    max_new_tokens: Option<usize>,
    batch_size: Option<usize>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    settle_ms: Option<u64>,
    rescan_interval: Option<String>,
    idle_unload: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Library {
    pub path: PathBuf,
    pub sidecars: bool,
    pub naming: SidecarNaming,
    /// Also merge the XMP into JPEG and PNG originals (never RAW). Default off.
    pub embed: bool,
    pub exclude: Vec<String>,
    pub poll: PollMode,
}

impl Library {
    /// What this library writes: `None` when it has neither sidecars nor embedding.
    pub fn sidecar_settings(&self, options: &SidecarOptions) -> Option<SidecarSettings> {
        (self.sidecars || self.embed).then(|| SidecarSettings {
            sidecar: self.sidecars,
            naming: self.naming,
            keyword_parent: options.keyword_parent.clone(),
            mwg_regions: options.mwg_regions,
            embed: self.embed,
        })
    }
}

/// The library holding `path`: the deepest root it is under (libraries may nest, and a photo
/// belongs to the innermost one, whose settings apply).
pub fn library_of<'l>(libraries: &'l [Library], path: &Path) -> Option<&'l Library> {
    libraries
        .iter()
        .filter(|l| path.starts_with(&l.path))
        .max_by_key(|l| l.path.components().count())
}

#[derive(Debug, Clone)]
pub struct ModelSettings {
    /// Which checkpoint to load: `model.dir` (a local folder) wins over `model.repo`.
    pub location: ModelSource,
    pub device: DeviceChoice,
    pub dtype: DtypeChoice,
    pub tasks: Vec<Task>,
    pub beams: usize,
    pub max_new_tokens: usize,
    pub batch_size: usize,
}

/// How sidecars are written (for every library with `sidecars = true` or `embed = true`).
#[derive(Debug, Clone)]
pub struct SidecarOptions {
    /// Parent of our hierarchical keywords: `AI` gives `AI|dog` and `AI/dog`; empty: top level.
    pub keyword_parent: String,
    /// Also write MWG regions (digiKam and Immich read every MWG region as a face).
    pub mwg_regions: bool,
}

#[derive(Debug, Clone)]
pub struct DaemonSettings {
    pub settle: Duration,
    pub rescan_interval: Duration,
    pub idle_unload: Duration,
}

/// The checked configuration every command works from.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The file it came from, if any (for messages).
    pub source: Option<PathBuf>,
    pub database: PathBuf,
    pub libraries: Vec<Library>,
    pub model: ModelSettings,
    pub daemon: DaemonSettings,
    pub sidecar: SidecarOptions,
}

/// `…/captiond/config.toml` in the platform's config folder.
pub fn default_config_path() -> Option<PathBuf> {
    project_dirs().map(|d| d.config_dir().join("config.toml"))
}

fn project_dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "captiond")
}

impl Settings {
    /// Loads `--config FILE` if given (it must exist), else the default config file if it exists,
    /// else the built-in defaults.
    pub fn load(explicit: Option<&Path>) -> Result<Self, ConfigError> {
        let path = match explicit {
            Some(p) => Some(p.to_path_buf()),
            None => default_config_path().filter(|p| p.exists()),
        };
        match path {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                Self::from_toml(&text, &path)
            }
            None => Self::resolve(RawConfig::default(), None),
        }
    }

    /// Parses config text; `path` names the file in errors and anchors relative paths.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        Self::resolve(raw, Some(path))
    }

    fn resolve(raw: RawConfig, path: Option<&Path>) -> Result<Self, ConfigError> {
        let file = path.map(Path::to_path_buf).unwrap_or_default();
        let invalid = |key: &str, problem: String| ConfigError::Invalid {
            path: file.clone(),
            key: key.to_string(),
            problem,
        };
        // Relative paths in a config file are relative to that file, not to wherever the
        // service happened to start.
        let base = path
            .and_then(Path::parent)
            .map(|dir| std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf()))
            .unwrap_or_default();
        let anchor = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };

        let database = match raw.database {
            Some(p) => anchor(p),
            None => project_dirs()
                .ok_or(ConfigError::NoHome)?
                .data_dir()
                .join("catalog.db"),
        };

        let mut libraries = Vec::new();
        for (i, lib) in raw.library.into_iter().enumerate() {
            let key = |k: &str| format!("library[{i}].{k}");
            let naming = match lib.naming.as_deref().unwrap_or("ext") {
                "ext" => SidecarNaming::Ext,
                "stem" => SidecarNaming::Stem,
                other => {
                    return Err(invalid(
                        &key("naming"),
                        format!("is {other:?}; expected \"ext\" or \"stem\""),
                    ))
                }
            };
            let poll = match &lib.poll {
                None => PollMode::Auto,
                Some(toml::Value::Boolean(true)) => PollMode::Always,
                Some(toml::Value::Boolean(false)) => PollMode::Never,
                Some(toml::Value::String(s)) if s == "auto" => PollMode::Auto,
                Some(other) => {
                    return Err(invalid(
                        &key("poll"),
                        format!("is {other}; expected \"auto\", true or false"),
                    ))
                }
            };
            for pattern in &lib.exclude {
                globset::Glob::new(pattern)
                    .map_err(|e| invalid(&key("exclude"), format!("has a bad glob: {e}")))?;
            }
            libraries.push(Library {
                path: anchor(lib.path),
                sidecars: lib.sidecars.unwrap_or(true),
                naming,
                embed: lib.embed.unwrap_or(false),
                exclude: lib.exclude,
                poll,
            });
        }

        let m = raw.model;
        let location = match (m.dir, m.repo) {
            (Some(dir), _) => ModelSource::Dir(anchor(dir)),
            (None, repo) => ModelSource::Repo {
                id: repo.unwrap_or_else(|| DEFAULT_MODEL_REPO.to_string()),
                revision: m.revision.unwrap_or_else(|| "main".to_string()),
            },
        };
        let tasks = match m.tasks {
            None => vec![Task::MoreDetailedCaption, Task::Od],
            Some(names) => {
                if names.is_empty() {
                    return Err(invalid(
                        "model.tasks",
                        "is empty; name at least one task".into(),
                    ));
                }
                names
                    .iter()
                    .map(|n| {
                        n.parse::<Task>()
                            .map_err(|e| invalid("model.tasks", e.to_string()))
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        let positive = |key: &str, v: Option<usize>, default: usize| match v {
            Some(0) => Err(invalid(key, "must be at least 1".into())),
            Some(v) => Ok(v),
            None => Ok(default),
        };
        let model = ModelSettings {
            location,
            device: m.device.unwrap_or(DeviceChoice::Auto),
            dtype: m.dtype.unwrap_or(DtypeChoice::Auto),
            tasks,
            beams: positive("model.beams", m.beams, 3)?,
            max_new_tokens: positive("model.max_new_tokens", m.max_new_tokens, 256)?,
            batch_size: positive("model.batch_size", m.batch_size, 4)?,
        };

        let d = raw.daemon;
        let duration = |key: &str, v: Option<String>, default: &str| {
            let text = v.unwrap_or_else(|| default.to_string());
            humantime::parse_duration(&text).map_err(|e| {
                invalid(
                    key,
                    format!("is {text:?}, not a duration like \"90s\", \"10m\" or \"1h\": {e}"),
                )
            })
        };
        let daemon = DaemonSettings {
            settle: Duration::from_millis(d.settle_ms.unwrap_or(2000)),
            rescan_interval: duration("daemon.rescan_interval", d.rescan_interval, "1h")?,
            idle_unload: duration("daemon.idle_unload", d.idle_unload, "10m")?,
        };

        let sidecar = SidecarOptions {
            keyword_parent: raw
                .sidecar
                .keyword_parent
                .unwrap_or_else(|| "AI".to_string()),
            mwg_regions: raw.sidecar.mwg_regions.unwrap_or(false),
        };
        if sidecar.keyword_parent.contains(['<', '>', '&']) {
            return Err(invalid(
                "sidecar.keyword_parent",
                "may not contain <, > or &".into(),
            ));
        }

        Ok(Settings {
            source: path.map(Path::to_path_buf),
            database,
            libraries,
            model,
            daemon,
            sidecar,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings, ConfigError> {
        Settings::from_toml(text, Path::new("/etc/captiond/config.toml"))
    }

    /// The error and its causes on one line, as the CLI prints them.
    fn chain(e: ConfigError) -> String {
        crate::errors::error_chain(&e)
    }

    /// Nested roots: a photo belongs to the innermost library holding it, and its settings
    /// (sidecars, naming, embedding) are that library's.
    #[test]
    fn a_photo_belongs_to_the_innermost_library() {
        let s = parse(
            r#"
            [[library]]
            path = "/photos"
            [[library]]
            path = "/photos/phone"
            sidecars = false
            embed = true
            [[library]]
            path = "/photos/phone/raw"
            naming = "stem"
            "#,
        )
        .unwrap();
        let root = |p: &str| library_of(&s.libraries, Path::new(p)).map(|l| l.path.clone());
        assert_eq!(root("/photos/a.jpg"), Some("/photos".into()));
        assert_eq!(root("/photos/phone/b.jpg"), Some("/photos/phone".into()));
        assert_eq!(
            root("/photos/phone/raw/c.nef"),
            Some("/photos/phone/raw".into())
        );
        // A sibling whose name starts like a root is not inside it.
        assert_eq!(root("/photos/phone2/d.jpg"), Some("/photos".into()));
        assert_eq!(root("/elsewhere/e.jpg"), None);
        let phone = library_of(&s.libraries, Path::new("/photos/phone/b.jpg")).unwrap();
        let settings = phone.sidecar_settings(&s.sidecar).unwrap();
        assert!(!settings.sidecar && settings.embed);
        let raw = library_of(&s.libraries, Path::new("/photos/phone/raw/c.nef")).unwrap();
        assert_eq!(
            raw.sidecar_settings(&s.sidecar).unwrap().naming,
            SidecarNaming::Stem
        );
    }

    #[test]
    fn example_config_parses_with_documented_defaults() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml"))
                .unwrap();
        let s = parse(&text).unwrap();
        let d = parse("").unwrap();
        assert_eq!(s.model.tasks, d.model.tasks);
        assert_eq!(s.model.beams, d.model.beams);
        assert_eq!(s.model.max_new_tokens, d.model.max_new_tokens);
        assert_eq!(s.model.batch_size, d.model.batch_size);
        assert_eq!(s.daemon.settle, d.daemon.settle);
        assert_eq!(s.daemon.rescan_interval, d.daemon.rescan_interval);
        assert_eq!(s.daemon.idle_unload, d.daemon.idle_unload);
    }

    #[test]
    fn contract_keys_resolve() {
        let s = parse(
            r#"
database = "cat.db"
[[library]]
path = "/photos"
sidecars = false
naming = "stem"
embed = true
exclude = ["**/.thumbnails/**"]
poll = true
[model]
dir = "models/tiny"
device = "cpu"
dtype = "bf16"
tasks = ["<CAPTION>"]
beams = 1
max_new_tokens = 20
batch_size = 2
[daemon]
settle_ms = 500
rescan_interval = "30m"
idle_unload = "90s"
"#,
        )
        .unwrap();
        assert_eq!(s.database, PathBuf::from("/etc/captiond/cat.db"));
        assert_eq!(s.libraries[0].naming, SidecarNaming::Stem);
        assert_eq!(s.libraries[0].poll, PollMode::Always);
        assert!(!s.libraries[0].sidecars);
        assert!(s.libraries[0].embed);
        assert!(!parse("[[library]]\npath = \"/p\"").unwrap().libraries[0].embed);
        assert_eq!(
            s.model.location,
            ModelSource::Dir("/etc/captiond/models/tiny".into())
        );
        assert_eq!(s.model.tasks, vec![Task::Caption]);
        assert_eq!(s.daemon.rescan_interval, Duration::from_secs(1800));
        assert_eq!(s.daemon.idle_unload, Duration::from_secs(90));
    }

    #[test]
    fn errors_name_the_key_and_the_file() {
        let e = parse("[model]\ntasks = [\"<NOPE>\"]")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("model.tasks") && e.contains("/etc/captiond/config.toml"),
            "{e}"
        );
        let e = parse("[[library]]\npath = \"/p\"\nnaming = \"upper\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("library[0].naming"), "{e}");
        let e = parse("[daemon]\nrescan_interval = \"soon\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("daemon.rescan_interval"), "{e}");
        let e = chain(parse("[model]\nbeems = 3").unwrap_err());
        assert!(e.contains("beems"), "{e}");
        let e = parse("[[library]]\npath = \"/p\"\nexclude = [\"[\"]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("library[0].exclude"), "{e}");
        let e = chain(parse("[[library]]\npath = \"/p\"\nembed = \"yes\"").unwrap_err());
        assert!(
            e.contains("embed") && e.contains("boolean") && e.contains("/etc/captiond/config.toml"),
            "{e}"
        );
        let e = chain(parse("[[library]]\npath = \"/p\"\nembedded = true").unwrap_err());
        assert!(e.contains("embedded"), "{e}");
    }
}
