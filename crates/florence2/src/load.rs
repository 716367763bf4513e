//! Finding and reading a Florence-2 checkpoint on disk.
//!
//! Input: a folder in Hugging Face layout (a hub snapshot or a local copy). [`ModelFiles::from_dir`]
//! checks that it holds everything the model needs (config, image-processor settings, tokenizer, weights as
//! one file or a sharded set) and reports everything missing in one error. [`load_weights`] reads
//! safetensors or PyTorch `.bin` weights and returns them under the names of transformers' *native*
//! `Florence2ForConditionalGeneration` (`model.vision_tower.…`, `model.multi_modal_projector.…`,
//! `model.language_model.…`, `lm_head.weight`), so that the layers can be built with the native names
//! whichever layout the checkpoint uses.
//!
//! The Microsoft repos (remote code) use other names; the renaming follows transformers'
//! `convert_florence2_original_pytorch_to_hf.py`, the authority for that mapping. Tied embeddings that
//! `save_pretrained` stores once (`model.language_model.shared.weight`) are aliased under every name that
//! shares them.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Component, Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// The model configuration (architecture sizes, token ids).
pub const CONFIG: &str = "config.json";
/// Generation defaults; optional.
pub const GENERATION_CONFIG: &str = "generation_config.json";
/// Image-processor settings as transformers 4.x saves them (and the hub repos ship them).
pub const PREPROCESSOR_CONFIG: &str = "preprocessor_config.json";
/// transformers 5.x's composite processor file; holds the image-processor settings under
/// `"image_processor"`. Used when `preprocessor_config.json` is absent.
pub const PROCESSOR_CONFIG: &str = "processor_config.json";
/// The fast tokenizer.
pub const TOKENIZER: &str = "tokenizer.json";
/// Weight files, in the order they are looked for.
pub const SAFETENSORS: &str = "model.safetensors";
/// Index of a sharded safetensors checkpoint.
pub const SAFETENSORS_INDEX: &str = "model.safetensors.index.json";
/// PyTorch pickle weights (the Microsoft repos ship these).
pub const PYTORCH_BIN: &str = "pytorch_model.bin";
/// Index of a sharded PyTorch checkpoint.
pub const PYTORCH_BIN_INDEX: &str = "pytorch_model.bin.index.json";

/// Weight files in the order they are preferred, with their format and whether they are an index.
pub(crate) const WEIGHT_CANDIDATES: [(&str, WeightsFormat, bool); 4] = [
    (SAFETENSORS, WeightsFormat::Safetensors, false),
    (SAFETENSORS_INDEX, WeightsFormat::Safetensors, true),
    (PYTORCH_BIN, WeightsFormat::PytorchBin, false),
    (PYTORCH_BIN_INDEX, WeightsFormat::PytorchBin, true),
];

/// How the weights of a missing model are described in errors.
pub(crate) const WEIGHTS_DESCRIPTION: &str =
    "weights (model.safetensors, model.safetensors.index.json or pytorch_model.bin)";

/// Errors while finding or reading model files.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The folder cannot be listed (absent, not a folder, no permission).
    #[error("cannot read model folder {}", .dir.display())]
    ReadDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The folder exists but lacks required files.
    #[error("{} is not a Florence-2 model folder: missing {}", .dir.display(), join_and(.missing))]
    NotAModelDir { dir: PathBuf, missing: Vec<String> },
    /// A shard index names files that are not there.
    #[error("{} names shards that are missing: {}", .index.display(), join_and(.missing))]
    MissingShards {
        index: PathBuf,
        missing: Vec<String>,
    },
    /// A shard index is unusable (no shards, or a shard name that leaves the folder).
    #[error("{} is not a usable shard index: {reason}", .index.display())]
    BadIndex { index: PathBuf, reason: String },
    /// A file cannot be read.
    #[error("cannot read {}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON file does not parse (or lacks fields).
    #[error("cannot parse {}", .path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A weights file cannot be decoded: usually a truncated or corrupt download.
    #[error(
        "cannot read weights file {}{}: it is probably truncated or corrupt (an interrupted download?); \
         delete it and download it again",
        .path.display(),
        link_note(.path)
    )]
    Weights {
        path: PathBuf,
        #[source]
        source: Box<candle_core::Error>,
    },
    /// A tensor could not be moved to the device.
    #[error("cannot move tensor {name} of {} to the device", .path.display())]
    Tensor {
        path: PathBuf,
        name: String,
        #[source]
        source: Box<candle_core::Error>,
    },
    /// A tensor could not be converted to the native layout (e.g. transposed).
    #[error("cannot convert weight {name} to the native layout")]
    Convert {
        name: String,
        #[source]
        source: Box<candle_core::Error>,
    },
}

/// How the weights are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsFormat {
    /// `.safetensors`, one file or shards.
    Safetensors,
    /// PyTorch pickle (`.bin`, zip format), one file or shards.
    PytorchBin,
}

/// Which checkpoint naming a set of weights uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsLayout {
    /// transformers' native classes (`florence-community/*`, `save_pretrained`).
    Native,
    /// Microsoft's remote-code classes (`microsoft/*`).
    Remote,
}

/// The files of one Florence-2 model, all checked to exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    /// The folder holding `config.json` (for a hub download: the snapshot folder).
    pub dir: PathBuf,
    /// `config.json`.
    pub config: PathBuf,
    /// `generation_config.json`, when the model has one.
    pub generation_config: Option<PathBuf>,
    /// The image-processor settings: `preprocessor_config.json`, or transformers 5.x's
    /// `processor_config.json` (settings nested under `"image_processor"`) when only that exists.
    pub preprocessor_config: PathBuf,
    /// `tokenizer.json`.
    pub tokenizer: PathBuf,
    /// Weight files: one file, or every shard named by the index, in name order.
    pub weights: Vec<PathBuf>,
    /// How `weights` are stored.
    pub weights_format: WeightsFormat,
}

impl ModelFiles {
    /// Checks a model folder and lists its files. Weights are looked for in this order:
    /// `model.safetensors`, `model.safetensors.index.json` (+ shards), `pytorch_model.bin`,
    /// `pytorch_model.bin.index.json` (+ shards). Everything missing is reported in one error.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, LoadError> {
        let dir = dir.as_ref();
        // Listing the folder distinguishes "no such folder" from "missing files".
        std::fs::read_dir(dir).map_err(|source| LoadError::ReadDir {
            dir: dir.to_path_buf(),
            source,
        })?;
        let present = |name: &str| {
            let path = dir.join(name);
            path.is_file().then_some(path)
        };

        let mut missing = Vec::new();
        let config = present(CONFIG);
        if config.is_none() {
            missing.push(CONFIG.to_string());
        }
        let preprocessor_config =
            present(PREPROCESSOR_CONFIG).or_else(|| present(PROCESSOR_CONFIG));
        if preprocessor_config.is_none() {
            missing.push(format!("{PREPROCESSOR_CONFIG} (or {PROCESSOR_CONFIG})"));
        }
        let tokenizer = present(TOKENIZER);
        if tokenizer.is_none() {
            missing.push(TOKENIZER.to_string());
        }
        let weights = WEIGHT_CANDIDATES
            .iter()
            .find_map(|&(name, format, is_index)| present(name).map(|p| (p, format, is_index)));
        if weights.is_none() {
            missing.push(WEIGHTS_DESCRIPTION.to_string());
        }

        match (config, preprocessor_config, tokenizer, weights) {
            (
                Some(config),
                Some(preprocessor_config),
                Some(tokenizer),
                Some((path, format, is_index)),
            ) => {
                let weights = if is_index {
                    let names = shard_names(&path)?;
                    let missing: Vec<String> = names
                        .iter()
                        .filter(|name| !dir.join(name).is_file())
                        .cloned()
                        .collect();
                    if !missing.is_empty() {
                        return Err(LoadError::MissingShards {
                            index: path,
                            missing,
                        });
                    }
                    names.iter().map(|name| dir.join(name)).collect()
                } else {
                    vec![path]
                };
                Ok(ModelFiles {
                    dir: dir.to_path_buf(),
                    config,
                    generation_config: present(GENERATION_CONFIG),
                    preprocessor_config,
                    tokenizer,
                    weights,
                    weights_format: format,
                })
            }
            _ => Err(LoadError::NotAModelDir {
                dir: dir.to_path_buf(),
                missing,
            }),
        }
    }
}

/// Reads and parses a JSON file; errors name the file.
pub fn read_json<T: DeserializeOwned>(path: impl AsRef<Path>) -> Result<T, LoadError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| LoadError::Json {
        path: path.to_path_buf(),
        source,
    })
}

#[derive(Deserialize)]
struct ShardIndex {
    weight_map: HashMap<String, String>,
}

/// The distinct shard file names of a `*.index.json`, sorted. Names must stay inside the folder.
pub(crate) fn shard_names(index: &Path) -> Result<Vec<String>, LoadError> {
    let parsed: ShardIndex = read_json(index)?;
    let names: BTreeSet<String> = parsed.weight_map.into_values().collect();
    if names.is_empty() {
        return Err(LoadError::BadIndex {
            index: index.to_path_buf(),
            reason: "its weight_map is empty".to_string(),
        });
    }
    for name in &names {
        let inside = !name.is_empty()
            && Path::new(name)
                .components()
                .all(|c| matches!(c, Component::Normal(_)));
        if !inside {
            return Err(LoadError::BadIndex {
                index: index.to_path_buf(),
                reason: format!("shard name {name:?} is not a plain relative file name"),
            });
        }
    }
    Ok(names.into_iter().collect())
}

/// Reads every weight file onto `device` (keeping the stored dtype) and returns the tensors under
/// their native names; see [`to_native`].
pub fn load_weights(
    files: &ModelFiles,
    device: &Device,
) -> Result<HashMap<String, Tensor>, LoadError> {
    let mut tensors = HashMap::new();
    for path in &files.weights {
        let weights_error = |source| LoadError::Weights {
            path: path.clone(),
            source: Box::new(source),
        };
        match files.weights_format {
            WeightsFormat::Safetensors => {
                // SAFETY: the file is mapped read-only and not modified while we copy tensors out of it;
                // the mapping is dropped before this function returns.
                let mapped = unsafe { candle_core::safetensors::MmapedSafetensors::new(path) }
                    .map_err(weights_error)?;
                for (name, _) in mapped.tensors() {
                    let tensor = mapped.load(&name, device).map_err(weights_error)?;
                    tensors.insert(name, tensor);
                }
            }
            WeightsFormat::PytorchBin => {
                for (name, tensor) in candle_core::pickle::read_all(path).map_err(weights_error)? {
                    let tensor = tensor
                        .to_device(device)
                        .map_err(|source| LoadError::Tensor {
                            path: path.clone(),
                            name: name.clone(),
                            source: Box::new(source),
                        })?;
                    tensors.insert(name, tensor);
                }
            }
        }
    }
    let layout = detect_layout(tensors.keys().map(String::as_str));
    tracing::debug!(?layout, count = tensors.len(), dir = %files.dir.display(), "read weights");
    to_native(tensors)
}

/// Top-level names of Microsoft's remote-code `Florence2ForConditionalGeneration`.
const REMOTE_ROOTS: [&str; 6] = [
    "vision_tower.",
    "language_model.",
    "image_projection",
    "image_proj_norm.",
    "image_pos_embed.",
    "visual_temporal_embed.",
];

/// Says whether any key uses the remote-code names.
pub fn detect_layout<'a>(keys: impl IntoIterator<Item = &'a str>) -> WeightsLayout {
    let remote = keys
        .into_iter()
        .any(|key| REMOTE_ROOTS.iter().any(|root| key.starts_with(root)));
    if remote {
        WeightsLayout::Remote
    } else {
        WeightsLayout::Native
    }
}

/// The embeddings BART ties together, in the order a present one is taken as the source of the others.
const TIED_EMBEDDINGS: [&str; 4] = [
    "model.language_model.shared.weight",
    "model.language_model.encoder.embed_tokens.weight",
    "model.language_model.decoder.embed_tokens.weight",
    "lm_head.weight",
];

/// Renames remote-code keys to native ones (native keys pass unchanged), transposes the remote
/// `image_projection` ([in, out] parameter) to the native Linear weight ([out, in]), drops an all-zero
/// `final_logits_bias` (kept as `final_logits_bias` otherwise), and aliases absent tied embeddings.
pub fn to_native(tensors: HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>, LoadError> {
    let mut out = HashMap::with_capacity(tensors.len() + TIED_EMBEDDINGS.len());
    for (name, tensor) in tensors {
        let converted = convert(&name, tensor).map_err(|source| LoadError::Convert {
            name: name.clone(),
            source: Box::new(source),
        })?;
        if let Some((new_name, tensor)) = converted {
            if new_name != name {
                tracing::trace!(from = %name, to = %new_name, "renamed weight");
            }
            out.insert(new_name, tensor);
        }
    }
    if let Some(source) = TIED_EMBEDDINGS
        .iter()
        .find_map(|name| out.get(*name).cloned())
    {
        for name in TIED_EMBEDDINGS {
            out.entry(name.to_string())
                .or_insert_with(|| source.clone());
        }
    }
    Ok(out)
}

/// One key's native name and tensor, or `None` when it is dropped.
fn convert(name: &str, tensor: Tensor) -> candle_core::Result<Option<(String, Tensor)>> {
    const PROJECTOR: &str = "model.multi_modal_projector.";
    if name == "image_projection" {
        let transposed = tensor.t()?.contiguous()?;
        return Ok(Some((
            format!("{PROJECTOR}image_projection.weight"),
            transposed,
        )));
    }
    if name == "language_model.final_logits_bias" || name == "final_logits_bias" {
        let zero = tensor
            .to_dtype(DType::F32)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?
            == 0.0;
        return Ok((!zero).then(|| ("final_logits_bias".to_string(), tensor)));
    }
    let renamed = if let Some(rest) = name.strip_prefix("vision_tower.") {
        format!("model.vision_tower.{}", vision_rename(rest))
    } else if let Some(rest) = name.strip_prefix("image_proj_norm.") {
        format!("{PROJECTOR}image_proj_norm.{rest}")
    } else if let Some(rest) = name.strip_prefix("image_pos_embed.") {
        format!("{PROJECTOR}image_position_embed.{rest}")
    } else if let Some(rest) = name.strip_prefix("visual_temporal_embed.") {
        format!("{PROJECTOR}visual_temporal_embed.{rest}")
    } else if name == "language_model.lm_head.weight" {
        "lm_head.weight".to_string()
    } else if let Some(rest) = name.strip_prefix("language_model.model.") {
        format!("model.language_model.{rest}")
    } else {
        name.to_string()
    };
    Ok(Some((renamed, tensor)))
}

/// Vision-tower names below `vision_tower.`: remote DaViT → native `Florence2VisionBackbone`.
fn vision_rename(rest: &str) -> String {
    // convs.{s}.proj.* → convs.{s}.conv.*
    if let Some(tail) = rest.strip_prefix("convs.") {
        if let Some((stage, after)) = tail.split_once('.') {
            if let Some(param) = after.strip_prefix("proj.") {
                return format!("convs.{stage}.conv.{param}");
            }
        }
        return rest.to_string();
    }
    // blocks.{s}.{b}.{spatial,channel}_block.<tail>
    const BLOCK_RENAMES: [(&str, &str); 8] = [
        ("conv1.fn.dw.", "conv1."),
        ("conv2.fn.dw.", "conv2."),
        ("window_attn.norm.", "norm1."),
        ("channel_attn.norm.", "norm1."),
        ("ffn.norm.", "norm2."),
        ("window_attn.fn.", "window_attn."),
        ("channel_attn.fn.", "channel_attn."),
        ("ffn.fn.net.", "ffn."),
    ];
    for block in ["spatial_block.", "channel_block."] {
        if let Some(pos) = rest.find(block) {
            let (head, tail) = rest.split_at(pos + block.len());
            for (from, to) in BLOCK_RENAMES {
                if let Some(param) = tail.strip_prefix(from) {
                    return format!("{head}{to}{param}");
                }
            }
        }
    }
    rest.to_string()
}

/// "a", "a and b", "a, b and c".
fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// For a symlink (hub snapshots link into `blobs/`), " (a link to …)" so the user deletes the right file.
fn link_note(path: &Path) -> LinkNote {
    LinkNote(
        std::fs::symlink_metadata(path)
            .ok()
            .filter(|m| m.file_type().is_symlink())
            .and_then(|_| std::fs::canonicalize(path).ok()),
    )
}

struct LinkNote(Option<PathBuf>);

impl fmt::Display for LinkNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(target) => write!(f, " (a link to {})", target.display()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(values: &[f32], shape: &[usize]) -> Tensor {
        Tensor::from_slice(values, shape, &Device::Cpu).unwrap()
    }

    fn remote_map() -> HashMap<String, Tensor> {
        let mut m = HashMap::new();
        let one = || t(&[1.0], &[1]);
        for key in [
            "vision_tower.convs.0.proj.weight",
            "vision_tower.convs.0.norm.bias",
            "vision_tower.blocks.1.0.spatial_block.conv1.fn.dw.weight",
            "vision_tower.blocks.1.0.spatial_block.conv2.fn.dw.bias",
            "vision_tower.blocks.1.0.spatial_block.window_attn.norm.weight",
            "vision_tower.blocks.1.0.spatial_block.window_attn.fn.qkv.weight",
            "vision_tower.blocks.1.0.spatial_block.window_attn.fn.proj.bias",
            "vision_tower.blocks.1.0.spatial_block.ffn.norm.bias",
            "vision_tower.blocks.1.0.spatial_block.ffn.fn.net.fc1.weight",
            "vision_tower.blocks.2.3.channel_block.channel_attn.norm.bias",
            "vision_tower.blocks.2.3.channel_block.channel_attn.fn.qkv.bias",
            "vision_tower.blocks.2.3.channel_block.ffn.fn.net.fc2.weight",
            "image_proj_norm.weight",
            "image_pos_embed.row_embeddings.weight",
            "image_pos_embed.column_embeddings.weight",
            "visual_temporal_embed.pos_idx_to_embed",
            "language_model.model.encoder.layers.0.fc1.weight",
            "language_model.model.decoder.layernorm_embedding.bias",
        ] {
            m.insert(key.to_string(), one());
        }
        m.insert(
            "image_projection".to_string(),
            t(&[1., 2., 3., 4., 5., 6.], &[2, 3]),
        );
        m.insert(
            "language_model.model.shared.weight".to_string(),
            t(&[7., 8.], &[1, 2]),
        );
        m.insert(
            "language_model.final_logits_bias".to_string(),
            t(&[0., 0.], &[1, 2]),
        );
        m
    }

    #[test]
    fn remote_keys_become_native() {
        let m = remote_map();
        assert_eq!(
            detect_layout(m.keys().map(String::as_str)),
            WeightsLayout::Remote
        );
        let n = to_native(m).unwrap();
        assert_eq!(
            detect_layout(n.keys().map(String::as_str)),
            WeightsLayout::Native
        );
        for key in [
            "model.vision_tower.convs.0.conv.weight",
            "model.vision_tower.convs.0.norm.bias",
            "model.vision_tower.blocks.1.0.spatial_block.conv1.weight",
            "model.vision_tower.blocks.1.0.spatial_block.conv2.bias",
            "model.vision_tower.blocks.1.0.spatial_block.norm1.weight",
            "model.vision_tower.blocks.1.0.spatial_block.window_attn.qkv.weight",
            "model.vision_tower.blocks.1.0.spatial_block.window_attn.proj.bias",
            "model.vision_tower.blocks.1.0.spatial_block.norm2.bias",
            "model.vision_tower.blocks.1.0.spatial_block.ffn.fc1.weight",
            "model.vision_tower.blocks.2.3.channel_block.norm1.bias",
            "model.vision_tower.blocks.2.3.channel_block.channel_attn.qkv.bias",
            "model.vision_tower.blocks.2.3.channel_block.ffn.fc2.weight",
            "model.multi_modal_projector.image_proj_norm.weight",
            "model.multi_modal_projector.image_position_embed.row_embeddings.weight",
            "model.multi_modal_projector.image_position_embed.column_embeddings.weight",
            "model.multi_modal_projector.visual_temporal_embed.pos_idx_to_embed",
            "model.language_model.encoder.layers.0.fc1.weight",
            "model.language_model.decoder.layernorm_embedding.bias",
            "model.language_model.shared.weight",
            "model.language_model.encoder.embed_tokens.weight",
            "model.language_model.decoder.embed_tokens.weight",
            "lm_head.weight",
        ] {
            assert!(n.contains_key(key), "missing {key}; have {:?}", {
                let mut k: Vec<_> = n.keys().collect();
                k.sort();
                k
            });
        }
        // 18 renamed + projection + shared + 3 aliases; the zero bias is dropped.
        assert_eq!(n.len(), 23);
        assert!(!n.contains_key("final_logits_bias"));

        let proj = &n["model.multi_modal_projector.image_projection.weight"];
        assert_eq!(proj.dims(), &[3, 2]);
        assert_eq!(
            proj.to_vec2::<f32>().unwrap(),
            vec![vec![1., 4.], vec![2., 5.], vec![3., 6.]]
        );
        assert_eq!(
            n["lm_head.weight"].to_vec2::<f32>().unwrap(),
            vec![vec![7., 8.]]
        );
    }

    #[test]
    fn nonzero_final_logits_bias_is_kept() {
        let mut m = HashMap::new();
        m.insert(
            "language_model.final_logits_bias".to_string(),
            t(&[0., 0.5], &[1, 2]),
        );
        let n = to_native(m).unwrap();
        assert_eq!(n.keys().collect::<Vec<_>>(), vec!["final_logits_bias"]);
    }

    #[test]
    fn native_keys_pass_and_tied_embeddings_are_aliased() {
        let mut m = HashMap::new();
        for key in [
            "model.vision_tower.convs.0.conv.weight",
            "model.vision_tower.blocks.0.0.channel_block.ffn.fc1.bias",
            "model.multi_modal_projector.image_projection.weight",
        ] {
            m.insert(key.to_string(), t(&[1., 2.], &[1, 2]));
        }
        m.insert(
            "model.language_model.shared.weight".to_string(),
            t(&[3., 4.], &[1, 2]),
        );
        assert_eq!(
            detect_layout(m.keys().map(String::as_str)),
            WeightsLayout::Native
        );
        let n = to_native(m).unwrap();
        assert_eq!(n.len(), 7);
        // Native projection is not transposed.
        assert_eq!(
            n["model.multi_modal_projector.image_projection.weight"].dims(),
            &[1, 2]
        );
        for key in TIED_EMBEDDINGS {
            assert_eq!(
                n[key].to_vec2::<f32>().unwrap(),
                vec![vec![3., 4.]],
                "{key}"
            );
        }
    }

    #[test]
    fn an_existing_lm_head_is_not_replaced() {
        let mut m = HashMap::new();
        m.insert(
            "model.language_model.shared.weight".to_string(),
            t(&[1.], &[1, 1]),
        );
        m.insert("lm_head.weight".to_string(), t(&[2.], &[1, 1]));
        let n = to_native(m).unwrap();
        assert_eq!(
            n["lm_head.weight"].to_vec2::<f32>().unwrap(),
            vec![vec![2.]]
        );
        assert_eq!(
            n["model.language_model.decoder.embed_tokens.weight"]
                .to_vec2::<f32>()
                .unwrap(),
            vec![vec![1.]]
        );
    }

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    fn save(dir: &Path, name: &str, tensors: &[(&str, Tensor)]) {
        let map: HashMap<String, Tensor> = tensors
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        candle_core::safetensors::save(&map, dir.join(name)).unwrap();
    }

    #[test]
    fn empty_folder_lists_everything_missing() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), CONFIG, "{}");
        let err = ModelFiles::from_dir(tmp.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{} is not a Florence-2 model folder: missing preprocessor_config.json (or \
                 processor_config.json), tokenizer.json and weights (model.safetensors, \
                 model.safetensors.index.json or pytorch_model.bin)",
                tmp.path().display()
            )
        );
        let gone = tmp.path().join("nope");
        let err = ModelFiles::from_dir(&gone).unwrap_err();
        assert!(matches!(err, LoadError::ReadDir { .. }), "{err}");
    }

    #[test]
    fn sharded_safetensors_are_found_and_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write(dir, CONFIG, "{}");
        write(dir, PROCESSOR_CONFIG, "{}");
        write(dir, TOKENIZER, "{}");
        write(
            dir,
            SAFETENSORS_INDEX,
            r#"{"metadata": {}, "weight_map": {
                "a": "model-00002-of-00002.safetensors",
                "b": "model-00001-of-00002.safetensors",
                "c": "model-00002-of-00002.safetensors"}}"#,
        );
        save(
            dir,
            "model-00001-of-00002.safetensors",
            &[("language_model.lm_head.weight", t(&[1.], &[1, 1]))],
        );
        let err = ModelFiles::from_dir(dir).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("names shards that are missing: model-00002-of-00002.safetensors"),
            "{err}"
        );
        save(
            dir,
            "model-00002-of-00002.safetensors",
            &[("vision_tower.convs.0.proj.bias", t(&[2.], &[1]))],
        );
        let files = ModelFiles::from_dir(dir).unwrap();
        assert_eq!(files.weights_format, WeightsFormat::Safetensors);
        assert_eq!(
            files.weights,
            vec![
                dir.join("model-00001-of-00002.safetensors"),
                dir.join("model-00002-of-00002.safetensors")
            ]
        );
        assert_eq!(files.preprocessor_config, dir.join(PROCESSOR_CONFIG));
        assert_eq!(files.generation_config, None);
        let w = load_weights(&files, &Device::Cpu).unwrap();
        let mut keys: Vec<_> = w.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(
            keys,
            vec![
                "lm_head.weight",
                "model.language_model.decoder.embed_tokens.weight",
                "model.language_model.encoder.embed_tokens.weight",
                "model.language_model.shared.weight",
                "model.vision_tower.convs.0.conv.bias",
            ]
        );
    }

    #[test]
    fn shard_names_may_not_leave_the_folder() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "i.json",
            r#"{"weight_map": {"a": "../x.safetensors"}}"#,
        );
        let err = shard_names(&tmp.path().join("i.json")).unwrap_err();
        assert!(matches!(err, LoadError::BadIndex { .. }), "{err}");
    }

    #[test]
    fn truncated_weights_say_delete_and_download_again() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write(dir, CONFIG, "{}");
        write(dir, PREPROCESSOR_CONFIG, "{}");
        write(dir, TOKENIZER, "{}");
        save(
            dir,
            SAFETENSORS,
            &[("lm_head.weight", t(&[1.; 64], &[8, 8]))],
        );
        let path = dir.join(SAFETENSORS);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
        let files = ModelFiles::from_dir(dir).unwrap();
        let err = load_weights(&files, &Device::Cpu).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains("delete it and download it again"), "{text}");
    }

    #[test]
    fn corrupt_pytorch_bin_names_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        write(dir, CONFIG, "{}");
        write(dir, PREPROCESSOR_CONFIG, "{}");
        write(dir, TOKENIZER, "{}");
        write(dir, PYTORCH_BIN, "PK\u{3}\u{4} not really a zip");
        let files = ModelFiles::from_dir(dir).unwrap();
        assert_eq!(files.weights_format, WeightsFormat::PytorchBin);
        let err = load_weights(&files, &Device::Cpu).unwrap_err();
        assert!(matches!(err, LoadError::Weights { .. }), "{err}");
    }

    #[test]
    fn read_json_names_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "bad.json", "{ nope");
        let err = read_json::<serde_json::Value>(tmp.path().join("bad.json")).unwrap_err();
        assert!(err.to_string().contains("bad.json"), "{err}");
        assert!(std::error::Error::source(&err).is_some());
    }
}
