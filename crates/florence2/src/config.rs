//! The model's own `config.json`, in both layouts it ships in: transformers' native
//! `Florence2Config` (florence-community/*, `vision_config.embed_dim`, …) and Microsoft's remote-code
//! config (microsoft/*, `vision_config.dim_embed`, nested `image_pos_embed`, …). Both deserialise into
//! one [`Config`] so the model code never cares which one it was.

use serde::Deserialize;

/// Settings of the DaViT vision tower and of the projector that follows it.
#[derive(Debug, Clone, PartialEq)]
pub struct VisionConfig {
    pub in_channels: usize,
    pub embed_dim: Vec<usize>,
    pub num_heads: Vec<usize>,
    pub num_groups: Vec<usize>,
    pub depths: Vec<usize>,
    pub window_size: usize,
    pub patch_size: Vec<usize>,
    pub patch_stride: Vec<usize>,
    pub patch_padding: Vec<usize>,
    pub patch_prenorm: Vec<bool>,
    pub mlp_ratio: f64,
    pub qkv_bias: bool,
    pub activation: candle_nn::Activation,
    /// Width of the image tokens handed to BART (= BART's d_model in every released checkpoint).
    pub projection_dim: usize,
    pub max_temporal_embeddings: usize,
    pub max_position_embeddings: usize,
}

impl VisionConfig {
    pub fn num_stages(&self) -> usize {
        self.embed_dim.len()
    }
}

/// Settings of the BART language model (transformers' `BartConfig` keys).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TextConfig {
    pub vocab_size: usize,
    pub d_model: usize,
    pub encoder_layers: usize,
    pub decoder_layers: usize,
    pub encoder_attention_heads: usize,
    pub decoder_attention_heads: usize,
    pub encoder_ffn_dim: usize,
    pub decoder_ffn_dim: usize,
    #[serde(default = "default_activation")]
    pub activation_function: candle_nn::Activation,
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub scale_embedding: bool,
    #[serde(default = "default_pad")]
    pub pad_token_id: u32,
    #[serde(default)]
    pub bos_token_id: u32,
    #[serde(default = "default_eos")]
    pub eos_token_id: u32,
    #[serde(default = "default_eos")]
    pub decoder_start_token_id: u32,
    #[serde(default)]
    pub forced_bos_token_id: Option<u32>,
    #[serde(default)]
    pub forced_eos_token_id: Option<u32>,
    #[serde(default)]
    pub no_repeat_ngram_size: Option<usize>,
    #[serde(default)]
    pub num_beams: Option<usize>,
    #[serde(default)]
    pub early_stopping: Option<bool>,
    #[serde(default)]
    pub length_penalty: Option<f64>,
    #[serde(default)]
    pub max_length: Option<usize>,
}

fn default_activation() -> candle_nn::Activation {
    candle_nn::Activation::Gelu
}
fn default_max_positions() -> usize {
    1024
}
fn default_pad() -> u32 {
    1
}
fn default_eos() -> u32 {
    2
}

/// Which weight layout the checkpoint's config.json announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigLayout {
    /// transformers' native `Florence2Config` (florence-community/*).
    Native,
    /// Microsoft's remote-code config (microsoft/*, `trust_remote_code=True`).
    Remote,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub vision: VisionConfig,
    pub text: TextConfig,
    /// Id of `<image>` in the native layout; the remote layout has no such token.
    pub image_token_id: Option<u32>,
    pub layout: ConfigLayout,
}

/// The vision config as either layout spells it; resolved into [`VisionConfig`].
#[derive(Debug, Deserialize)]
struct RawVision {
    #[serde(default)]
    model_type: Option<String>,
    #[serde(default)]
    in_channels: Option<usize>,
    #[serde(alias = "dim_embed")]
    embed_dim: Vec<usize>,
    num_heads: Vec<usize>,
    num_groups: Vec<usize>,
    depths: Vec<usize>,
    window_size: usize,
    #[serde(default)]
    patch_size: Option<Vec<usize>>,
    #[serde(default)]
    patch_stride: Option<Vec<usize>>,
    #[serde(default)]
    patch_padding: Option<Vec<usize>>,
    #[serde(default)]
    patch_prenorm: Option<Vec<bool>>,
    #[serde(default)]
    mlp_ratio: Option<f64>,
    #[serde(default)]
    qkv_bias: Option<bool>,
    #[serde(default)]
    activation_function: Option<candle_nn::Activation>,
    #[serde(default)]
    projection_dim: Option<usize>,
    #[serde(default)]
    max_temporal_embeddings: Option<usize>,
    #[serde(default)]
    max_position_embeddings: Option<usize>,
    // Remote layout nests the last two.
    #[serde(default)]
    visual_temporal_embedding: Option<RawTemporal>,
    #[serde(default)]
    image_pos_embed: Option<RawPosEmbed>,
    #[serde(default)]
    image_feature_source: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct RawTemporal {
    #[serde(default)]
    max_temporal_embeddings: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct RawPosEmbed {
    #[serde(default)]
    max_pos_embeddings: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct RawConfig {
    vision_config: RawVision,
    text_config: TextConfig,
    #[serde(default)]
    image_token_id: Option<u32>,
    #[serde(default)]
    projection_dim: Option<usize>,
}

/// Why a config.json cannot describe a Florence-2 model we can run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("not a Florence-2 config: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unsupported Florence-2 config: {0}")]
    Unsupported(String),
}

impl Config {
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = serde_json::from_str(text)?;
        Self::resolve(raw)
    }

    fn resolve(raw: RawConfig) -> Result<Self, ConfigError> {
        let v = raw.vision_config;
        let layout = match v.model_type.as_deref() {
            Some("davit") => ConfigLayout::Remote,
            _ if v.visual_temporal_embedding.is_some() || v.image_pos_embed.is_some() => {
                ConfigLayout::Remote
            }
            _ => ConfigLayout::Native,
        };
        let stages = v.embed_dim.len();
        let per_stage = |name: &str, got: usize| {
            if got == stages {
                Ok(())
            } else {
                Err(ConfigError::Unsupported(format!(
                    "vision_config.{name} has {got} entries but embed_dim has {stages}"
                )))
            }
        };
        per_stage("num_heads", v.num_heads.len())?;
        per_stage("num_groups", v.num_groups.len())?;
        per_stage("depths", v.depths.len())?;
        if let Some(sources) = &v.image_feature_source {
            let expected = ["spatial_avg_pool", "temporal_avg_pool"];
            if sources.iter().map(String::as_str).ne(expected) {
                return Err(ConfigError::Unsupported(format!(
                    "image_feature_source {sources:?} (only {expected:?} is implemented, as in every released checkpoint)"
                )));
            }
        }
        let stage_vec = |given: Option<Vec<usize>>, default: [usize; 4], name: &str| {
            let value = given.unwrap_or_else(|| default[..stages.min(4)].to_vec());
            per_stage(name, value.len()).map(|_| value)
        };
        let patch_size = stage_vec(v.patch_size, [7, 3, 3, 3], "patch_size")?;
        let patch_stride = stage_vec(v.patch_stride, [4, 2, 2, 2], "patch_stride")?;
        let patch_padding = stage_vec(v.patch_padding, [3, 1, 1, 1], "patch_padding")?;
        let patch_prenorm = v
            .patch_prenorm
            .unwrap_or_else(|| (0..stages).map(|s| s > 0).collect());
        per_stage("patch_prenorm", patch_prenorm.len())?;
        for (s, (&dim, (&heads, &groups))) in v
            .embed_dim
            .iter()
            .zip(v.num_heads.iter().zip(&v.num_groups))
            .enumerate()
        {
            if heads == 0 || groups == 0 || dim % heads != 0 || dim % groups != 0 {
                return Err(ConfigError::Unsupported(format!(
                    "stage {s}: embed_dim {dim} is not divisible by num_heads {heads} and num_groups {groups}"
                )));
            }
        }
        let text = raw.text_config;
        let projection_dim = v
            .projection_dim
            .or(raw.projection_dim)
            .unwrap_or(text.d_model);
        if projection_dim != text.d_model {
            return Err(ConfigError::Unsupported(format!(
                "projection_dim {projection_dim} differs from text_config.d_model {}",
                text.d_model
            )));
        }
        for (name, dim, heads) in [
            ("encoder", text.d_model, text.encoder_attention_heads),
            ("decoder", text.d_model, text.decoder_attention_heads),
        ] {
            if heads == 0 || dim % heads != 0 {
                return Err(ConfigError::Unsupported(format!(
                    "text_config.d_model {dim} is not divisible by {name}_attention_heads {heads}"
                )));
            }
        }
        let vision = VisionConfig {
            in_channels: v.in_channels.unwrap_or(3),
            embed_dim: v.embed_dim,
            num_heads: v.num_heads,
            num_groups: v.num_groups,
            depths: v.depths,
            window_size: v.window_size,
            patch_size,
            patch_stride,
            patch_padding,
            patch_prenorm,
            mlp_ratio: v.mlp_ratio.unwrap_or(4.0),
            qkv_bias: v.qkv_bias.unwrap_or(true),
            activation: v.activation_function.unwrap_or(candle_nn::Activation::Gelu),
            projection_dim,
            max_temporal_embeddings: v
                .max_temporal_embeddings
                .or(v
                    .visual_temporal_embedding
                    .and_then(|t| t.max_temporal_embeddings))
                .unwrap_or(100),
            max_position_embeddings: v
                .max_position_embeddings
                .or(v.image_pos_embed.and_then(|p| p.max_pos_embeddings))
                .unwrap_or(50),
        };
        Ok(Config {
            vision,
            text,
            image_token_id: raw.image_token_id,
            layout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#""text_config": {"vocab_size": 51289, "d_model": 768, "encoder_layers": 6,
        "decoder_layers": 6, "encoder_attention_heads": 12, "decoder_attention_heads": 12,
        "encoder_ffn_dim": 3072, "decoder_ffn_dim": 3072, "activation_function": "gelu",
        "max_position_embeddings": 1024, "no_repeat_ngram_size": 3, "num_beams": 3}"#;

    #[test]
    fn remote_layout_resolves_nested_keys() {
        let json = format!(
            r#"{{"model_type": "florence2", "projection_dim": 768, {TEXT},
            "vision_config": {{"model_type": "davit", "dim_embed": [128, 256, 512, 1024],
              "num_heads": [4, 8, 16, 32], "num_groups": [4, 8, 16, 32], "depths": [1, 1, 9, 1],
              "window_size": 12, "projection_dim": 768,
              "visual_temporal_embedding": {{"type": "COSINE", "max_temporal_embeddings": 100}},
              "image_pos_embed": {{"type": "learned_abs_2d", "max_pos_embeddings": 50}},
              "image_feature_source": ["spatial_avg_pool", "temporal_avg_pool"]}}}}"#
        );
        let cfg = Config::from_json(&json).unwrap();
        assert_eq!(cfg.layout, ConfigLayout::Remote);
        assert_eq!(cfg.vision.embed_dim, vec![128, 256, 512, 1024]);
        assert_eq!(cfg.vision.patch_prenorm, vec![false, true, true, true]);
        assert_eq!(cfg.vision.max_position_embeddings, 50);
        assert_eq!(cfg.text.decoder_start_token_id, 2);
        assert_eq!(cfg.image_token_id, None);
    }

    /// microsoft/Florence-2-large(-ft) and the community fine-tunes of it: the large shapes in
    /// the remote layout.
    #[test]
    fn remote_large_shapes_resolve() {
        let text = TEXT
            .replace("\"d_model\": 768", "\"d_model\": 1024")
            .replace("\"encoder_layers\": 6", "\"encoder_layers\": 12")
            .replace("\"decoder_layers\": 6", "\"decoder_layers\": 12")
            .replace("_attention_heads\": 12", "_attention_heads\": 16")
            .replace("_ffn_dim\": 3072", "_ffn_dim\": 4096");
        let json = format!(
            r#"{{"model_type": "florence2", "projection_dim": 1024, {text},
            "vision_config": {{"model_type": "davit", "dim_embed": [256, 512, 1024, 2048],
              "num_heads": [8, 16, 32, 64], "num_groups": [8, 16, 32, 64], "depths": [1, 1, 9, 1],
              "window_size": 12, "projection_dim": 1024,
              "visual_temporal_embedding": {{"type": "COSINE", "max_temporal_embeddings": 100}},
              "image_pos_embed": {{"type": "learned_abs_2d", "max_pos_embeddings": 50}},
              "image_feature_source": ["spatial_avg_pool", "temporal_avg_pool"]}}}}"#
        );
        let cfg = Config::from_json(&json).unwrap();
        assert_eq!(cfg.layout, ConfigLayout::Remote);
        assert_eq!(cfg.vision.embed_dim, vec![256, 512, 1024, 2048]);
        assert_eq!(cfg.text.d_model, 1024);
        assert_eq!(cfg.text.encoder_layers, 12);
        assert_eq!(cfg.text.vocab_size, 51289);
    }

    #[test]
    fn native_layout_and_bad_shapes() {
        let json = format!(
            r#"{{"model_type": "florence2", "image_token_id": 51289, {TEXT},
            "vision_config": {{"model_type": "florence_vision", "embed_dim": [16, 32],
              "num_heads": [2, 4], "num_groups": [2, 4], "depths": [1, 1], "window_size": 4,
              "patch_size": [7, 3], "patch_stride": [4, 2], "patch_padding": [3, 1],
              "patch_prenorm": [false, true], "projection_dim": 768}}}}"#
        );
        let cfg = Config::from_json(&json).unwrap();
        assert_eq!(cfg.layout, ConfigLayout::Native);
        assert_eq!(cfg.image_token_id, Some(51289));
        let bad = json.replace("\"num_heads\": [2, 4]", "\"num_heads\": [3, 4]");
        let err = Config::from_json(&bad).unwrap_err().to_string();
        assert!(err.contains("stage 0"), "{err}");
        let bad = json.replace("\"projection_dim\": 768", "\"projection_dim\": 512");
        assert!(Config::from_json(&bad).is_err());
    }
}
