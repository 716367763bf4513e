//! Where the model comes from: a local folder, or a Hugging Face hub repo fetched into the standard
//! Hugging Face cache (shared with Python tools) through hf-hub's blocking API.
//!
//! Input: a [`ModelSource`] and the usual Hugging Face environment (`HF_ENDPOINT`, `HF_HOME`,
//! `HF_HUB_CACHE`, `XDG_CACHE_HOME`, `HF_TOKEN`, `HF_HUB_OFFLINE`). Output: [`ModelFiles`] whose paths
//! all exist. Files already in the cache for the revision are used without asking the network (hf-hub
//! keeps `refs/<revision>` → commit, `snapshots/<commit>/<file>` → `blobs/<etag>`), so a daemon whose model
//! is cached starts with no network at all; to pick up a newer `main`, delete `refs/main` or pin a commit.
//! Files the hub answered 404 for are remembered as `.no_exist/<commit>/<file>` (as huggingface_hub does)
//! so that optional files and weight formats the repo lacks are not asked for again.
//! With `HF_HUB_OFFLINE=1` nothing is downloaded and a missing file is named with its cache path.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use hf_hub::api::sync::{ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};

use super::load::{
    self, LoadError, ModelFiles, WeightsFormat, CONFIG, GENERATION_CONFIG, PREPROCESSOR_CONFIG,
    PROCESSOR_CONFIG, TOKENIZER, WEIGHTS_DESCRIPTION, WEIGHT_CANDIDATES,
};

/// The public hub, used when `HF_ENDPOINT` is unset.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Where to find the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A local folder in hub layout.
    Dir(PathBuf),
    /// A hub repo (`org/name`) at a branch, tag or commit.
    Repo { id: String, revision: String },
}

impl ModelSource {
    /// Parses `org/name` or `org/name@revision` (revision defaults to `main`).
    pub fn parse(spec: &str) -> Result<Self, HubError> {
        let invalid = || HubError::InvalidRepo {
            spec: spec.to_string(),
        };
        let (id, revision) = match spec.split_once('@') {
            Some((id, revision)) => (id, revision),
            None => (spec, "main"),
        };
        let name_ok = |part: &str| {
            !part.is_empty()
                && !part.starts_with(['.', '-'])
                && !part.contains("..")
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        let (org, name) = id.split_once('/').ok_or_else(invalid)?;
        let revision_ok = !revision.is_empty()
            && !revision.contains("..")
            && !revision.starts_with('/')
            && !revision.chars().any(|c| c.is_whitespace() || c == '@');
        if !(name_ok(org) && name_ok(name) && revision_ok) {
            return Err(invalid());
        }
        Ok(ModelSource::Repo {
            id: id.to_string(),
            revision: revision.to_string(),
        })
    }
}

impl FromStr for ModelSource {
    type Err = HubError;
    fn from_str(spec: &str) -> Result<Self, HubError> {
        Self::parse(spec)
    }
}

impl fmt::Display for ModelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelSource::Dir(dir) => write!(f, "{}", dir.display()),
            ModelSource::Repo { id, revision } => write!(f, "{id}@{revision}"),
        }
    }
}

/// What went wrong talking to the hub, flattened from hf-hub's error (its HTTP client's types are not
/// ours to name).
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The server answered with an error status.
    #[error("HTTP {status} from {url}{}", .error_code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Status {
        status: u16,
        url: String,
        /// The hub's `x-error-code` header (`EntryNotFound`, `RepoNotFound`, `GatedRepo`, …).
        error_code: Option<String>,
    },
    /// No usable answer: DNS, connection refused, TLS, timeout, broken transfer.
    #[error("{0}")]
    Transport(String),
    /// Anything else hf-hub reports (missing headers, cache I/O, lock held by another download).
    #[error(transparent)]
    Api(ApiError),
}

/// Errors while locating or downloading a model.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("invalid model repo {spec:?}: expected ORG/NAME or ORG/NAME@REVISION")]
    InvalidRepo { spec: String },
    #[error(
        "cannot find a cache folder: no HF_HOME, HF_HUB_CACHE, XDG_CACHE_HOME or home directory; \
         set HF_HOME"
    )]
    NoCacheDir,
    #[error(
        "cannot download {file} of {repo}@{revision} from {endpoint}; check the network, set \
         HF_ENDPOINT to a reachable hub or mirror, or use a local model folder ([model] dir, --model-dir)"
    )]
    Download {
        repo: String,
        revision: String,
        file: String,
        endpoint: String,
        #[source]
        source: Box<RemoteError>,
    },
    #[error(
        "{repo}@{revision} is not available from {endpoint}: the repo or revision does not exist, or it \
         is private or gated (then set HF_TOKEN or log in with `huggingface-cli login`)"
    )]
    RepoAccess {
        repo: String,
        revision: String,
        endpoint: String,
        #[source]
        source: Box<RemoteError>,
    },
    #[error("{repo}@{revision} on {endpoint} has no {file}, which a Florence-2 model needs")]
    MissingFile {
        repo: String,
        revision: String,
        endpoint: String,
        file: String,
    },
    #[error(
        "offline mode is on (HF_HUB_OFFLINE) and {file} of {repo}@{revision} is not in the Hugging Face \
         cache: {} does not exist; run once with network access, or unset HF_HUB_OFFLINE",
        .path.display()
    )]
    OfflineMissing {
        repo: String,
        revision: String,
        file: String,
        /// The cache path that would hold it (or the missing `refs/<revision>` file).
        path: PathBuf,
    },
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// Where and how to reach the hub; [`HubSettings::from_env`] reads the usual variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubSettings {
    /// Base URL without a trailing slash.
    pub endpoint: String,
    /// The hub cache folder (the one holding `models--org--name/`).
    pub cache_dir: PathBuf,
    /// Bearer token for private or gated repos.
    pub token: Option<String>,
    /// Never touch the network.
    pub offline: bool,
}

impl HubSettings {
    /// `HF_ENDPOINT` (default `https://huggingface.co`); cache `HF_HUB_CACHE`, else `HF_HOME/hub`, else
    /// `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub` (huggingface_hub's rules; hf-hub
    /// alone knows only `HF_HOME`); token `HF_TOKEN`, else the `token` file in the HF home;
    /// `HF_HUB_OFFLINE` = 1/true/yes/on.
    pub fn from_env() -> Result<Self, HubError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let endpoint = var("HF_ENDPOINT")
            .map(|e| e.trim().trim_end_matches('/').to_string())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let hf_home = var("HF_HOME").map(PathBuf::from).or_else(|| {
            var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::home_dir().map(|h| h.join(".cache")))
                .map(|cache| cache.join("huggingface"))
        });
        let cache_dir = var("HF_HUB_CACHE")
            .map(PathBuf::from)
            .or_else(|| hf_home.as_ref().map(|h| h.join("hub")))
            .ok_or(HubError::NoCacheDir)?;
        let token = var("HF_TOKEN").map(|t| t.trim().to_string()).or_else(|| {
            let path = hf_home.as_ref()?.join("token");
            let text = std::fs::read_to_string(path).ok()?;
            let text = text.trim();
            (!text.is_empty()).then(|| text.to_string())
        });
        let offline = var("HF_HUB_OFFLINE").is_some_and(|v| is_truthy(&v));
        Ok(HubSettings {
            endpoint,
            cache_dir,
            token,
            offline,
        })
    }
}

fn is_truthy(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

/// Finds the model files: checks a folder, or fetches a repo into the Hugging Face cache (settings from
/// the environment, see [`HubSettings::from_env`]). `progress` shows hf-hub's download bars.
pub fn resolve(source: &ModelSource, progress: bool) -> Result<ModelFiles, HubError> {
    match source {
        ModelSource::Dir(dir) => Ok(ModelFiles::from_dir(dir)?),
        ModelSource::Repo { .. } => resolve_with(source, progress, &HubSettings::from_env()?),
    }
}

/// [`resolve`] with explicit settings.
pub fn resolve_with(
    source: &ModelSource,
    progress: bool,
    settings: &HubSettings,
) -> Result<ModelFiles, HubError> {
    let (id, revision) = match source {
        ModelSource::Dir(dir) => return Ok(ModelFiles::from_dir(dir)?),
        ModelSource::Repo { id, revision } => (id, revision),
    };
    let _span = tracing::info_span!("resolve-model", repo = %id, %revision).entered();
    let fetcher = Fetcher::new(id, revision, progress, settings)?;
    // Files taken from the cache and files just downloaded can belong to different commits when the
    // branch moved in between; then everything is fetched again for the commit the ref now names, so
    // that one snapshot folder holds the whole model (and a later offline start finds it).
    let mut attempt = 0;
    loop {
        let files = fetcher.fetch_all()?;
        attempt += 1;
        let snapshot = fetcher.current_snapshot();
        let consistent = snapshot
            .as_ref()
            .is_some_and(|snap| all_paths(&files).all(|p| p.starts_with(snap)));
        if consistent || settings.offline || attempt >= 3 {
            if !consistent {
                tracing::warn!(repo = %id, "model files come from more than one snapshot of the repo");
            }
            tracing::debug!(dir = %files.dir.display(), "model files ready");
            return Ok(files);
        }
    }
}

fn all_paths(files: &ModelFiles) -> impl Iterator<Item = &PathBuf> {
    [&files.config, &files.preprocessor_config, &files.tokenizer]
        .into_iter()
        .chain(files.generation_config.iter())
        .chain(files.weights.iter())
}

/// One repo at one revision: cache lookups, downloads, error wording.
struct Fetcher<'a> {
    id: &'a str,
    revision: &'a str,
    settings: &'a HubSettings,
    cache: hf_hub::CacheRepo,
    /// `<cache>/models--org--name`.
    repo_dir: PathBuf,
    api: Option<hf_hub::api::sync::ApiRepo>,
}

impl<'a> Fetcher<'a> {
    fn new(
        id: &'a str,
        revision: &'a str,
        progress: bool,
        settings: &'a HubSettings,
    ) -> Result<Self, HubError> {
        let repo = Repo::with_revision(id.to_string(), RepoType::Model, revision.to_string());
        let cache = Cache::new(settings.cache_dir.clone());
        let repo_dir = settings.cache_dir.join(repo.folder_name());
        let api = if settings.offline {
            None
        } else {
            let api = ApiBuilder::from_cache(cache.clone())
                .with_endpoint(settings.endpoint.clone())
                .with_token(settings.token.clone())
                .with_progress(progress)
                .with_retries(3)
                .build()
                .map_err(|e| HubError::Download {
                    repo: id.to_string(),
                    revision: revision.to_string(),
                    file: CONFIG.to_string(),
                    endpoint: settings.endpoint.clone(),
                    source: Box::new(RemoteError::Api(e)),
                })?;
            Some(api.repo(repo.clone()))
        };
        Ok(Fetcher {
            id,
            revision,
            settings,
            cache: cache.repo(repo),
            repo_dir,
            api,
        })
    }

    fn fetch_all(&self) -> Result<ModelFiles, HubError> {
        let config = self.required(CONFIG)?;
        let preprocessor_config = match self.fetch(PREPROCESSOR_CONFIG)? {
            Some(path) => path,
            None => match self.fetch(PROCESSOR_CONFIG)? {
                Some(path) => path,
                None => {
                    return Err(
                        self.missing(&format!("{PREPROCESSOR_CONFIG} (or {PROCESSOR_CONFIG})"))
                    )
                }
            },
        };
        let tokenizer = self.required(TOKENIZER)?;
        let generation_config = self.fetch(GENERATION_CONFIG)?;
        let (weights, weights_format) = self.weights()?;
        let dir = config
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.repo_dir.clone());
        Ok(ModelFiles {
            dir,
            config,
            generation_config,
            preprocessor_config,
            tokenizer,
            weights,
            weights_format,
        })
    }

    fn weights(&self) -> Result<(Vec<PathBuf>, WeightsFormat), HubError> {
        for (name, format, is_index) in WEIGHT_CANDIDATES {
            let Some(path) = self.fetch(name)? else {
                continue;
            };
            if !is_index {
                return Ok((vec![path], format));
            }
            let shards = load::shard_names(&path)?
                .iter()
                .map(|shard| self.required(shard))
                .collect::<Result<Vec<_>, _>>()?;
            return Ok((shards, format));
        }
        Err(self.missing(WEIGHTS_DESCRIPTION))
    }

    fn required(&self, file: &str) -> Result<PathBuf, HubError> {
        self.fetch(file)?.ok_or_else(|| self.missing(file))
    }

    /// The error for a file that neither the cache (offline) nor the hub (online) has.
    fn missing(&self, file: &str) -> HubError {
        if self.settings.offline {
            HubError::OfflineMissing {
                repo: self.id.to_string(),
                revision: self.revision.to_string(),
                file: file.to_string(),
                path: self.expected_path(file),
            }
        } else {
            HubError::MissingFile {
                repo: self.id.to_string(),
                revision: self.revision.to_string(),
                endpoint: self.settings.endpoint.clone(),
                file: file.to_string(),
            }
        }
    }

    /// The commit the revision resolves to in the cache, if known.
    fn cached_commit(&self) -> Option<String> {
        let ref_path = self.repo_dir.join("refs").join(self.revision);
        match std::fs::read_to_string(ref_path) {
            Ok(commit) => Some(commit.trim().to_string()),
            // A commit revision needs no ref (huggingface_hub writes none for it).
            Err(_) if is_commit(self.revision) => Some(self.revision.to_string()),
            Err(_) => None,
        }
    }

    fn current_snapshot(&self) -> Option<PathBuf> {
        self.cached_commit()
            .map(|commit| self.repo_dir.join("snapshots").join(commit))
    }

    /// The path a cached file would have, or the missing ref when the revision was never fetched.
    fn expected_path(&self, file: &str) -> PathBuf {
        match self.current_snapshot() {
            Some(snapshot) => snapshot.join(file),
            None => self.repo_dir.join("refs").join(self.revision),
        }
    }

    fn cached(&self, file: &str) -> Option<PathBuf> {
        self.cache.get(file).or_else(|| {
            let path = self.current_snapshot()?.join(file);
            path.exists().then_some(path)
        })
    }

    /// huggingface_hub's marker for "the hub said 404 for this file at this commit".
    fn no_exist_path(&self, commit: &str, file: &str) -> PathBuf {
        self.repo_dir.join(".no_exist").join(commit).join(file)
    }

    /// The file from the cache, else from the hub; `None` when the repo does not have it (or, offline,
    /// the cache does not).
    fn fetch(&self, file: &str) -> Result<Option<PathBuf>, HubError> {
        if let Some(path) = self.cached(file) {
            tracing::debug!(file, path = %path.display(), "from cache");
            return Ok(Some(path));
        }
        let commit = self.cached_commit();
        if let Some(commit) = &commit {
            if self.no_exist_path(commit, file).exists() {
                tracing::debug!(file, "known absent from the repo");
                return Ok(None);
            }
        }
        let Some(api) = &self.api else {
            return Ok(None);
        };
        tracing::info!(repo = %self.id, revision = %self.revision, file, "downloading");
        let error = match api.download(file) {
            Ok(path) => return Ok(Some(path)),
            Err(error) => error,
        };
        let (remote, commit_header) = flatten(error);
        match &remote {
            RemoteError::Status {
                status: 404,
                error_code,
                ..
            } if matches!(error_code.as_deref(), None | Some("EntryNotFound")) => {
                if let Some(commit) = commit_header.or(commit) {
                    self.remember_absent(&commit, file);
                }
                Ok(None)
            }
            RemoteError::Status {
                status: 401 | 403 | 404,
                ..
            } => Err(HubError::RepoAccess {
                repo: self.id.to_string(),
                revision: self.revision.to_string(),
                endpoint: self.settings.endpoint.clone(),
                source: Box::new(remote),
            }),
            _ => Err(HubError::Download {
                repo: self.id.to_string(),
                revision: self.revision.to_string(),
                file: file.to_string(),
                endpoint: self.settings.endpoint.clone(),
                source: Box::new(remote),
            }),
        }
    }

    fn remember_absent(&self, commit: &str, file: &str) {
        let marker = self.no_exist_path(commit, file);
        let written = marker
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&marker, b""));
        if let Err(error) = written {
            tracing::debug!(path = %marker.display(), %error, "cannot record an absent file");
        }
    }
}

/// Splits hf-hub's error into what we report, plus the `x-repo-commit` of an error response.
fn flatten(error: ApiError) -> (RemoteError, Option<String>) {
    match error {
        ApiError::RequestError(inner) => {
            let text = inner.to_string();
            match inner.into_response() {
                Some(response) => {
                    let header = |name: &str| response.header(name).map(str::to_string);
                    let remote = RemoteError::Status {
                        status: response.status(),
                        url: response.get_url().to_string(),
                        error_code: header("x-error-code"),
                    };
                    (remote, header("x-repo-commit"))
                }
                None => (RemoteError::Transport(text), None),
            }
        }
        other => (RemoteError::Api(other), None),
    }
}

fn is_commit(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_repo_specs() {
        assert_eq!(
            ModelSource::parse("microsoft/Florence-2-base").unwrap(),
            ModelSource::Repo {
                id: "microsoft/Florence-2-base".into(),
                revision: "main".into()
            }
        );
        assert_eq!(
            "florence-community/Florence-2-large@refs/pr/3"
                .parse::<ModelSource>()
                .unwrap(),
            ModelSource::Repo {
                id: "florence-community/Florence-2-large".into(),
                revision: "refs/pr/3".into()
            }
        );
        for bad in [
            "", "name", "a/b/c", "a/b@", "/b", "a/", "a/../b", "a b/c", "a/b@x@y", "../x/y",
        ] {
            assert!(
                ModelSource::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
        let source = ModelSource::parse("org/name@v1.0").unwrap();
        assert_eq!(source.to_string(), "org/name@v1.0");
    }

    #[test]
    fn offline_values() {
        for yes in ["1", "true", "TRUE", "yes", "on", " On "] {
            assert!(is_truthy(yes), "{yes}");
        }
        for no in ["0", "false", "no", "off", "", "2"] {
            assert!(!is_truthy(no), "{no}");
        }
    }

    #[test]
    fn commit_revisions() {
        assert!(is_commit("0123456789abcdef0123456789abcdef01234567"));
        assert!(!is_commit("main"));
    }
}
