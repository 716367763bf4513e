//! Downloading a model from a hub into the Hugging Face cache, then starting offline from that cache.
//!
//! A loopback fake hub (tests/support/fake_hub.rs) serves model folders; `resolve` runs with `HF_ENDPOINT`
//! pointing at it and `HF_HOME` at a temp dir. Environment variables are process-wide, so the whole
//! sequence lives in one `#[test]`.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use florence2::hub::{resolve, HubError, ModelSource};
use florence2::load::{load_weights, ModelFiles, WeightsFormat};
use support::fake_hub::{cache_folder, snapshot_dir, FakeHub, COMMIT};

const SINGLE: &str = "test-org/tiny-a";
const SHARDED: &str = "test-org/sharded-remote";
const BROKEN: &str = "test-org/no-tokenizer";
const NEVER: &str = "test-org/never-downloaded";
const REMOTE: &str = "test-org/tiny-a-remote";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models")
        .join(name)
}

fn repo(id: &str) -> ModelSource {
    ModelSource::parse(id).unwrap()
}

fn tensor(values: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_slice(values, shape, &Device::Cpu).unwrap()
}

fn save(path: &Path, tensors: Vec<(&str, Tensor)>) {
    let map: HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    candle_core::safetensors::save(&map, path).unwrap();
}

fn write_common(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), r#"{"model_type": "florence2"}"#).unwrap();
    std::fs::write(dir.join("tokenizer.json"), r#"{"version": "1.0"}"#).unwrap();
}

/// The committed tiny model when present, else a synthetic native-layout folder.
fn single_file_model(tmp: &Path) -> PathBuf {
    let fixture = fixture("tiny-a");
    if ModelFiles::from_dir(&fixture).is_ok() {
        return fixture;
    }
    let dir = tmp.join("src-single");
    write_common(&dir);
    std::fs::write(
        dir.join("preprocessor_config.json"),
        r#"{"image_processor_type": "CLIPImageProcessor"}"#,
    )
    .unwrap();
    std::fs::write(dir.join("generation_config.json"), r#"{"num_beams": 3}"#).unwrap();
    save(
        &dir.join("model.safetensors"),
        vec![
            (
                "model.vision_tower.convs.0.conv.weight",
                tensor(&[0.5; 12], &[1, 3, 2, 2]),
            ),
            (
                "model.language_model.shared.weight",
                tensor(&[1., 2., 3., 4.], &[2, 2]),
            ),
        ],
    );
    dir
}

/// Remote (Microsoft) key names in two shards, transformers 5.x processor file, no generation config.
fn sharded_remote_model(tmp: &Path) -> PathBuf {
    let dir = tmp.join("src-sharded");
    write_common(&dir);
    std::fs::write(
        dir.join("processor_config.json"),
        r#"{"image_processor": {"size": {"height": 64, "width": 64}}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        r#"{"metadata": {"total_size": 64}, "weight_map": {
            "vision_tower.convs.0.proj.weight": "model-00001-of-00002.safetensors",
            "image_projection": "model-00002-of-00002.safetensors",
            "language_model.model.shared.weight": "model-00002-of-00002.safetensors"}}"#,
    )
    .unwrap();
    save(
        &dir.join("model-00001-of-00002.safetensors"),
        vec![(
            "vision_tower.convs.0.proj.weight",
            tensor(&[0.25; 12], &[1, 3, 2, 2]),
        )],
    );
    save(
        &dir.join("model-00002-of-00002.safetensors"),
        vec![
            (
                "image_projection",
                tensor(&[1., 2., 3., 4., 5., 6.], &[2, 3]),
            ),
            (
                "language_model.model.shared.weight",
                tensor(&[9., 8.], &[1, 2]),
            ),
        ],
    );
    dir
}

fn all_files(files: &ModelFiles) -> Vec<&PathBuf> {
    let mut all = vec![&files.config, &files.preprocessor_config, &files.tokenizer];
    all.extend(files.generation_config.iter());
    all.extend(files.weights.iter());
    all
}

/// Every file sits in the snapshot folder as a link into `blobs/` with the served bytes.
fn assert_in_cache_layout(cache: &Path, id: &str, source: &Path, files: &ModelFiles) {
    let snapshot = snapshot_dir(cache, id);
    assert_eq!(files.dir, snapshot);
    let repo_dir = cache.join(cache_folder(id));
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("refs/main")).unwrap(),
        COMMIT
    );
    for path in all_files(files) {
        assert!(
            path.starts_with(&snapshot),
            "{} outside the snapshot",
            path.display()
        );
        let link = std::fs::symlink_metadata(path).unwrap();
        assert!(
            link.file_type().is_symlink(),
            "{} is not a link",
            path.display()
        );
        let blob = std::fs::canonicalize(path).unwrap();
        assert_eq!(
            blob.parent().unwrap(),
            std::fs::canonicalize(repo_dir.join("blobs")).unwrap()
        );
        let name = path.strip_prefix(&snapshot).unwrap();
        assert_eq!(
            std::fs::read(path).unwrap(),
            std::fs::read(source.join(name)).unwrap(),
            "{} differs from the served file",
            name.display()
        );
    }
}

fn set_clean_env(hf_home: &Path, endpoint: &str) {
    for var in [
        "HF_HUB_CACHE",
        "XDG_CACHE_HOME",
        "HF_TOKEN",
        "HF_HUB_OFFLINE",
        // ureq takes proxies from the environment and ignores NO_PROXY: keep loopback direct.
        "ALL_PROXY",
        "all_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
    ] {
        std::env::remove_var(var);
    }
    std::env::set_var("HF_HOME", hf_home);
    std::env::set_var("HF_ENDPOINT", endpoint);
}

#[test]
fn download_into_hf_cache_then_resolve_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let single = single_file_model(tmp.path());
    let sharded = sharded_remote_model(tmp.path());
    let broken = tmp.path().join("src-broken");
    write_common(&broken);
    std::fs::remove_file(broken.join("tokenizer.json")).unwrap();
    std::fs::write(broken.join("preprocessor_config.json"), "{}").unwrap();

    // The committed remote-layout copy of tiny-a (pytorch_model.bin), when both fixtures are there.
    let remote = Some(fixture("tiny-a-remote"))
        .filter(|dir| single == fixture("tiny-a") && ModelFiles::from_dir(dir).is_ok());
    let mut served = vec![
        (SINGLE, single.as_path()),
        (SHARDED, sharded.as_path()),
        (BROKEN, broken.as_path()),
    ];
    served.extend(remote.as_deref().map(|dir| (REMOTE, dir)));
    let hub = FakeHub::start(&served);
    let log = hub.log();
    let endpoint = hub.url();
    let hf_home = tmp.path().join("hf-home");
    let cache = hf_home.join("hub");
    set_clean_env(&hf_home, &format!("{endpoint}/"));

    // Online: a single-file model lands in the cache layout and loads.
    let single_files = resolve(&repo(SINGLE), false).unwrap();
    assert_in_cache_layout(&cache, SINGLE, &single, &single_files);
    assert_eq!(single_files.weights_format, WeightsFormat::Safetensors);
    assert_eq!(single_files.weights.len(), 1);
    let weights = load_weights(&single_files, &Device::Cpu).unwrap();
    assert!(weights.contains_key("lm_head.weight"));
    assert!(weights.contains_key("model.vision_tower.convs.0.conv.weight"));
    let lines = log.lines();
    assert!(
        lines.iter().any(|l| l.starts_with("GET /lfs/")),
        "weights should come through the LFS redirect: {lines:#?}"
    );

    // Online: sharded remote-layout weights, the 5.x processor file, no generation config.
    let sharded_files = resolve(&repo(SHARDED), false).unwrap();
    assert_in_cache_layout(&cache, SHARDED, &sharded, &sharded_files);
    assert_eq!(sharded_files.generation_config, None);
    assert!(sharded_files
        .preprocessor_config
        .ends_with("processor_config.json"));
    assert_eq!(sharded_files.weights.len(), 2);
    let no_exist = cache
        .join(cache_folder(SHARDED))
        .join(".no_exist")
        .join(COMMIT);
    for absent in [
        "preprocessor_config.json",
        "generation_config.json",
        "model.safetensors",
    ] {
        assert!(
            no_exist.join(absent).is_file(),
            "no .no_exist marker for {absent}"
        );
    }
    let weights = load_weights(&sharded_files, &Device::Cpu).unwrap();
    assert_eq!(
        weights["model.multi_modal_projector.image_projection.weight"]
            .to_vec2::<f32>()
            .unwrap(),
        vec![vec![1., 4.], vec![2., 5.], vec![3., 6.]]
    );
    assert_eq!(
        weights["lm_head.weight"].to_vec2::<f32>().unwrap(),
        vec![vec![9., 8.]]
    );
    assert!(weights.contains_key("model.vision_tower.convs.0.conv.weight"));

    // Online: the remote-layout copy (PyTorch .bin, found after two 404 probes) loads to the same tensors.
    let remote_files = remote.as_ref().map(|dir| {
        let files = resolve(&repo(REMOTE), false).unwrap();
        assert_in_cache_layout(&cache, REMOTE, dir, &files);
        assert_eq!(files.weights_format, WeightsFormat::PytorchBin);
        let native = load_weights(&single_files, &Device::Cpu).unwrap();
        let converted = load_weights(&files, &Device::Cpu).unwrap();
        let mut native_keys: Vec<_> = native.keys().collect();
        let mut converted_keys: Vec<_> = converted.keys().collect();
        native_keys.sort();
        converted_keys.sort();
        assert_eq!(native_keys, converted_keys);
        for (name, tensor) in &native {
            let other = &converted[name];
            // The remote vocabulary has no `<image>`: the embeddings and the head are the native
            // ones without their last row.
            let vocabulary = name.contains("embed_tokens")
                || name.contains("shared")
                || name.as_str() == "lm_head.weight";
            let tensor = if vocabulary {
                assert_eq!(tensor.dim(0).unwrap(), other.dim(0).unwrap() + 1, "{name}");
                tensor.narrow(0, 0, other.dim(0).unwrap()).unwrap()
            } else {
                tensor.clone()
            };
            assert_eq!(tensor.dims(), other.dims(), "{name}");
            let diff = (tensor.to_dtype(candle_core::DType::F32).unwrap()
                - other.to_dtype(candle_core::DType::F32).unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
            assert_eq!(diff, 0.0, "{name} differs between the layouts");
        }
        files
    });

    // Online errors: a required file the repo lacks; a repo the hub does not know.
    let err = resolve(&repo(BROKEN), false).unwrap_err();
    assert!(matches!(err, HubError::MissingFile { .. }), "{err}");
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
    let err = resolve(&repo(NEVER), false).unwrap_err();
    assert!(matches!(err, HubError::RepoAccess { .. }), "{err}");

    // A cached model resolves again without any request, even online.
    let before = log.count();
    assert_eq!(resolve(&repo(SINGLE), false).unwrap(), single_files);
    assert_eq!(resolve(&repo(SHARDED), false).unwrap(), sharded_files);
    assert_eq!(
        log.count(),
        before,
        "cached resolves asked the hub: {:#?}",
        log.lines()
    );

    // Hub gone: online resolve of an uncached repo names repo, file, endpoint and the way out.
    drop(hub);
    let seen = log.count();
    let err = resolve(&repo(NEVER), false).unwrap_err();
    assert!(matches!(err, HubError::Download { .. }), "{err}");
    let text = err.to_string();
    for needle in [
        NEVER,
        "config.json",
        endpoint.as_str(),
        "HF_ENDPOINT",
        "[model] dir",
    ] {
        assert!(text.contains(needle), "{needle:?} not in {text:?}");
    }
    assert!(std::error::Error::source(&err).is_some());

    // Offline: the same files from the cache alone.
    std::env::set_var("HF_HUB_OFFLINE", "1");
    assert_eq!(resolve(&repo(SINGLE), false).unwrap(), single_files);
    assert_eq!(resolve(&repo(SHARDED), false).unwrap(), sharded_files);
    if let Some(files) = &remote_files {
        assert_eq!(&resolve(&repo(REMOTE), false).unwrap(), files);
    }

    // Offline, never downloaded: names the file and the missing ref.
    let err = resolve(&repo(NEVER), false).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, HubError::OfflineMissing { .. }), "{text}");
    let missing_ref = cache.join(cache_folder(NEVER)).join("refs/main");
    for needle in [
        "offline mode",
        "config.json",
        &missing_ref.display().to_string(),
    ] {
        assert!(text.contains(needle), "{needle:?} not in {text:?}");
    }

    // Offline, one file gone from the snapshot: names that file and its cache path.
    std::fs::remove_file(&single_files.tokenizer).unwrap();
    let err = resolve(&repo(SINGLE), false).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, HubError::OfflineMissing { .. }), "{text}");
    assert!(
        text.contains(&single_files.tokenizer.display().to_string()),
        "{text}"
    );

    // Offline runs made no requests (the server is gone, but count what reached it anyway).
    assert_eq!(log.count(), seen);
    std::env::remove_var("HF_HUB_OFFLINE");
}
