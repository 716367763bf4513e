//! Image features -> BART-width image tokens (transformers' `Florence2MultiModalProjector`).
//!
//! Adds a learned 2D position embedding (column half first, then row half), flattens row-major,
//! adds row 0 of a fixed sinusoidal "temporal" embedding (Florence-2 treats a still image as a
//! one-frame video), prepends the mean token, projects without bias and normalises: 1 + h·w
//! tokens (577 for a 768² input).

use candle_core::{Module, Result, Tensor, D};
use candle_nn::VarBuilder;

use super::config::VisionConfig;
use super::nn::{layer_norm, linear, LayerNorm, Linear};

#[derive(Debug, Clone)]
pub struct Projector {
    row_embeddings: Tensor,
    column_embeddings: Tensor,
    /// Row 0 of the temporal table: the only one a still image uses.
    temporal: Tensor,
    image_projection: Linear,
    image_proj_norm: LayerNorm,
    span: tracing::Span,
}

impl Projector {
    pub fn new(cfg: &VisionConfig, vb: VarBuilder) -> Result<Self> {
        let dim = *cfg.embed_dim.last().expect("config has stages");
        let max_pos = cfg.max_position_embeddings;
        let pos = vb.pp("image_position_embed");
        let row_embeddings = pos.get((max_pos, dim / 2), "row_embeddings.weight")?;
        let column_embeddings = pos.get((max_pos, dim - dim / 2), "column_embeddings.weight")?;
        // The table is a fixed sinusoid saved as a buffer; older exports omit it, in which case we
        // recompute it the way the reference initialises it.
        let temporal_key = "visual_temporal_embed.pos_idx_to_embed";
        let temporal = if vb.contains_tensor(temporal_key) {
            vb.get((cfg.max_temporal_embeddings, dim), temporal_key)?
                .get(0)?
        } else {
            sinusoid_row0(dim, vb.device())?.to_dtype(vb.dtype())?
        };
        Ok(Self {
            row_embeddings,
            column_embeddings,
            temporal,
            image_projection: linear(dim, cfg.projection_dim, false, vb.pp("image_projection"))?,
            image_proj_norm: layer_norm(cfg.projection_dim, 1e-5, vb.pp("image_proj_norm"))?,
            span: tracing::span!(tracing::Level::DEBUG, "projector"),
        })
    }

    /// `features`: channels-last (B, h, w, C) from the vision tower -> (B, 1 + h·w, projection_dim).
    pub fn forward(&self, features: &Tensor) -> Result<Tensor> {
        let _enter = self.span.enter();
        let (b, h, w, c) = features.dims4()?;
        let max_pos = self.row_embeddings.dim(0)?;
        if h > max_pos || w > max_pos {
            candle_core::bail!(
                "feature map {h}×{w} exceeds the {max_pos} learned positions of this checkpoint"
            );
        }
        let cols = self.column_embeddings.narrow(0, 0, w)?; // (w, C - C/2)
        let rows = self.row_embeddings.narrow(0, 0, h)?; // (h, C/2)
        let cols = cols.unsqueeze(0)?.broadcast_as((h, w, cols.dim(1)?))?;
        let rows = rows.unsqueeze(1)?.broadcast_as((h, w, rows.dim(1)?))?;
        let pos = Tensor::cat(&[cols, rows], D::Minus1)?; // (h, w, C)
        let tokens = features.broadcast_add(&pos)?.reshape((b, h * w, c))?;
        let tokens = tokens.broadcast_add(&self.temporal)?;
        let mean = tokens.mean_keepdim(1)?;
        let tokens = Tensor::cat(&[mean, tokens], 1)?;
        let projected = self.image_projection.forward(&tokens)?;
        self.image_proj_norm.forward(&projected)
    }
}

/// Row 0 of transformers' `Florence2VisionPositionalEmbeddingCosine1D`: position 0 makes every
/// angle 0, so sin (even channels) is 0 and cos (odd channels) is 1.
fn sinusoid_row0(dim: usize, device: &candle_core::Device) -> Result<Tensor> {
    let row: Vec<f32> = (0..dim).map(|i| (i % 2) as f32).collect();
    Tensor::from_vec(row, dim, device)
}
