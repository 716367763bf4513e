//! DaViT, Florence-2's vision tower (transformers' `Florence2VisionBackbone`).
//!
//! Four stages, each a strided patch-embedding conv followed by blocks of (spatial window
//! attention, channel group attention). Inside the stages we keep maps channels-last
//! (B, H, W, C): every linear then runs on contiguous rows and the depthwise convs vectorise over
//! channels; only the four patch-embedding convs see channels-first data.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::config::VisionConfig;
use super::cpu_attention::{ChannelAttentionOp, WindowAttentionOp};
use super::dwconv::DepthwiseConvResidual;
use super::kernels::use_cpu_kernels;
use super::nn::{layer_norm, linear, matmul, Conv2d, LayerNorm, Linear, Mlp};

const LN_EPS: f64 = 1e-5;

/// Patch embedding: conv (7×7/4 then 3×3/2) with a LayerNorm after it (stage 0) or before it.
#[derive(Debug, Clone)]
struct ConvEmbed {
    conv: Conv2d,
    norm: LayerNorm,
    pre_norm: bool,
}

impl ConvEmbed {
    fn new(cfg: &VisionConfig, stage: usize, vb: VarBuilder) -> Result<Self> {
        let in_channels = if stage == 0 {
            cfg.in_channels
        } else {
            cfg.embed_dim[stage - 1]
        };
        let out_channels = cfg.embed_dim[stage];
        let conv = Conv2d::new(
            in_channels,
            out_channels,
            cfg.patch_size[stage],
            cfg.patch_padding[stage],
            cfg.patch_stride[stage],
            vb.pp("conv"),
        )?;
        let pre_norm = cfg.patch_prenorm[stage];
        let norm_dim = if pre_norm { in_channels } else { out_channels };
        let norm = layer_norm(norm_dim, LN_EPS, vb.pp("norm"))?;
        Ok(Self {
            conv,
            norm,
            pre_norm,
        })
    }

    /// (B, H, W, C_in) channels-last, or (B, 3, H, W) pixels for stage 0 -> (B, H', W', C_out).
    fn forward(&self, xs: &Tensor, channels_last: bool) -> Result<Tensor> {
        if use_cpu_kernels(xs) {
            let mut xs = if channels_last {
                xs.clone()
            } else {
                xs.permute((0, 2, 3, 1))?.contiguous()?
            };
            if self.pre_norm {
                xs = self.norm.forward(&xs)?;
            }
            if let Some(out) = self.conv.forward_channels_last(&xs)? {
                return if self.pre_norm {
                    Ok(out)
                } else {
                    self.norm.forward(&out)
                };
            }
        }
        let mut xs = xs.clone();
        if self.pre_norm {
            if !channels_last {
                xs = xs.permute((0, 2, 3, 1))?.contiguous()?;
            }
            xs = self.norm.forward(&xs)?;
            xs = xs.permute((0, 3, 1, 2))?.contiguous()?;
        } else if channels_last {
            xs = xs.permute((0, 3, 1, 2))?.contiguous()?;
        }
        let xs = self
            .conv
            .forward(&xs)?
            .permute((0, 2, 3, 1))?
            .contiguous()?;
        if self.pre_norm {
            Ok(xs)
        } else {
            self.norm.forward(&xs)
        }
    }
}

/// Multi-head self-attention inside non-overlapping windows; the map is zero-padded right and
/// bottom to a whole number of windows after the norm, and padded positions are not masked (as in
/// the reference).
#[derive(Debug, Clone)]
struct WindowAttention {
    qkv: Linear,
    proj: Linear,
    num_heads: usize,
    window: usize,
    scale: f64,
}

impl WindowAttention {
    fn new(cfg: &VisionConfig, stage: usize, vb: VarBuilder) -> Result<Self> {
        let dim = cfg.embed_dim[stage];
        let num_heads = cfg.num_heads[stage];
        Ok(Self {
            qkv: linear(dim, dim * 3, cfg.qkv_bias, vb.pp("qkv"))?,
            proj: linear(dim, dim, true, vb.pp("proj"))?,
            num_heads,
            window: cfg.window_size,
            scale: ((dim / num_heads) as f64).powf(-0.5),
        })
    }

    /// (B, H, W, C) -> (B, H, W, C).
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let (b, h, w, c) = xs.dims4()?;
        let ws = self.window;
        let pad_h = (ws - h % ws) % ws;
        let pad_w = (ws - w % ws) % ws;
        let xs = xs
            .pad_with_zeros(1, 0, pad_h)?
            .pad_with_zeros(2, 0, pad_w)?;
        let (hp, wp) = (h + pad_h, w + pad_w);
        let (nh, nw) = (hp / ws, wp / ws);
        let windows = xs
            .reshape((b, nh, ws, nw, ws, c))?
            .permute((0, 1, 3, 2, 4, 5))?
            .contiguous()?
            .reshape((b * nh * nw, ws * ws, c))?;
        let n_win = b * nh * nw;
        let tokens = ws * ws;
        let head_dim = c / self.num_heads;
        let qkv = self.qkv.forward(&windows)?;
        let out = if use_cpu_kernels(&qkv) {
            qkv.apply_op1_no_bwd(&WindowAttentionOp {
                heads: self.num_heads,
                scale: self.scale as f32,
            })?
        } else {
            let qkv = qkv
                .reshape((n_win, tokens, 3, self.num_heads, head_dim))?
                .permute((2, 0, 3, 1, 4))?;
            let q = (qkv.get(0)?.contiguous()? * self.scale)?;
            let k = qkv.get(1)?.contiguous()?;
            let v = qkv.get(2)?.contiguous()?;
            let attn = matmul(&q, &k.t()?)?;
            let attn = candle_nn::ops::softmax_last_dim(&attn)?;
            matmul(&attn, &v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((n_win, tokens, c))?
        };
        let out = self.proj.forward(&out)?;
        let out = out
            .reshape((b, nh, nw, ws, ws, c))?
            .permute((0, 1, 3, 2, 4, 5))?
            .contiguous()?
            .reshape((b, hp, wp, c))?;
        if pad_h == 0 && pad_w == 0 {
            Ok(out)
        } else {
            out.narrow(1, 0, h)?.narrow(2, 0, w)?.contiguous()
        }
    }
}

/// Attention across channels within groups: every channel attends to the channels of its group,
/// with similarity summed over all spatial positions.
#[derive(Debug, Clone)]
struct ChannelAttention {
    qkv: Linear,
    proj: Linear,
    groups: usize,
}

impl ChannelAttention {
    fn new(cfg: &VisionConfig, stage: usize, vb: VarBuilder) -> Result<Self> {
        let dim = cfg.embed_dim[stage];
        Ok(Self {
            qkv: linear(dim, dim * 3, cfg.qkv_bias, vb.pp("qkv"))?,
            proj: linear(dim, dim, true, vb.pp("proj"))?,
            groups: cfg.num_groups[stage],
        })
    }

    /// (B, N, C) -> (B, N, C).
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let (b, n, c) = xs.dims3()?;
        let qkv = self.qkv.forward(xs)?;
        let out = if use_cpu_kernels(&qkv) {
            qkv.apply_op1_no_bwd(&ChannelAttentionOp {
                groups: self.groups,
            })?
        } else {
            let cg = c / self.groups;
            // (3, B, G, Cg, N)
            let qkv = qkv
                .reshape((b, n, 3, self.groups, cg))?
                .permute((2, 0, 3, 4, 1))?;
            // Scaling q before the product keeps f16 in range at stage 0 (N = 36,864).
            let q = (qkv.get(0)?.contiguous()? * (n as f64).powf(-0.5))?;
            let k = qkv.get(1)?.contiguous()?;
            let v = qkv.get(2)?.contiguous()?;
            let attn = matmul(&q, &k.t()?)?; // (B, G, Cg, Cg)
            let attn = candle_nn::ops::softmax_last_dim(&attn)?;
            let out = matmul(&attn, &v)?; // (B, G, Cg, N)
            out.permute((0, 3, 1, 2))?
                .contiguous()?
                .reshape((b, n, c))?
        };
        self.proj.forward(&out)
    }
}

#[derive(Debug, Clone)]
enum Mixer {
    Window(WindowAttention),
    Channel(ChannelAttention),
}

/// One half of a DaViT block: `x += dw(x); x += mix(norm1(x)); x += dw(x); x += mlp(norm2(x))`.
#[derive(Debug, Clone)]
struct MixingBlock {
    conv1: DepthwiseConvResidual,
    norm1: LayerNorm,
    mixer: Mixer,
    conv2: DepthwiseConvResidual,
    norm2: LayerNorm,
    ffn: Mlp,
    span: tracing::Span,
}

impl MixingBlock {
    fn new(cfg: &VisionConfig, stage: usize, spatial: bool, vb: VarBuilder) -> Result<Self> {
        let dim = cfg.embed_dim[stage];
        let mixer = if spatial {
            Mixer::Window(WindowAttention::new(cfg, stage, vb.pp("window_attn"))?)
        } else {
            Mixer::Channel(ChannelAttention::new(cfg, stage, vb.pp("channel_attn"))?)
        };
        let hidden = (dim as f64 * cfg.mlp_ratio) as usize;
        Ok(Self {
            conv1: DepthwiseConvResidual::new(dim, vb.pp("conv1"))?,
            norm1: layer_norm(dim, LN_EPS, vb.pp("norm1"))?,
            mixer,
            conv2: DepthwiseConvResidual::new(dim, vb.pp("conv2"))?,
            norm2: layer_norm(dim, LN_EPS, vb.pp("norm2"))?,
            ffn: Mlp::new(dim, hidden, cfg.activation, vb.pp("ffn"))?,
            span: tracing::span!(
                tracing::Level::TRACE,
                "davit-block",
                kind = if spatial { "spatial" } else { "channel" }
            ),
        })
    }

    /// (B, H, W, C) -> (B, H, W, C).
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let _enter = self.span.enter();
        let (b, h, w, c) = xs.dims4()?;
        let xs = self.conv1.forward(xs)?;
        let normed = self.norm1.forward(&xs)?;
        let mixed = match &self.mixer {
            Mixer::Window(attn) => attn.forward(&normed)?,
            Mixer::Channel(attn) => attn
                .forward(&normed.reshape((b, h * w, c))?)?
                .reshape((b, h, w, c))?,
        };
        let xs = (xs + mixed)?;
        let xs = self.conv2.forward(&xs)?;
        let ffn = self.ffn.forward(&self.norm2.forward(&xs)?)?;
        xs + ffn
    }
}

#[derive(Debug, Clone)]
struct Stage {
    embed: ConvEmbed,
    blocks: Vec<(MixingBlock, MixingBlock)>,
}

/// DaViT: pixels (B, 3, H, W) -> final feature map channels-last (B, h, w, C_last).
#[derive(Debug, Clone)]
pub struct VisionTower {
    stages: Vec<Stage>,
    span: tracing::Span,
}

impl VisionTower {
    pub fn new(cfg: &VisionConfig, vb: VarBuilder) -> Result<Self> {
        let mut stages = Vec::with_capacity(cfg.num_stages());
        for s in 0..cfg.num_stages() {
            let embed = ConvEmbed::new(cfg, s, vb.pp("convs").pp(s))?;
            let mut blocks = Vec::with_capacity(cfg.depths[s]);
            for i in 0..cfg.depths[s] {
                let vb = vb.pp("blocks").pp(s).pp(i);
                blocks.push((
                    MixingBlock::new(cfg, s, true, vb.pp("spatial_block"))?,
                    MixingBlock::new(cfg, s, false, vb.pp("channel_block"))?,
                ));
            }
            stages.push(Stage { embed, blocks });
        }
        Ok(Self {
            stages,
            span: tracing::span!(tracing::Level::DEBUG, "vision-tower"),
        })
    }

    pub fn forward(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let _enter = self.span.enter();
        let mut xs = pixel_values.clone();
        for (i, stage) in self.stages.iter().enumerate() {
            xs = stage.embed.forward(&xs, i > 0)?;
            for (spatial, channel) in &stage.blocks {
                xs = spatial.forward(&xs)?;
                xs = channel.forward(&xs)?;
            }
        }
        Ok(xs)
    }
}

/// The reference returns the final map channels-first; tests compare in that layout.
pub fn to_channels_first(xs: &Tensor) -> Result<Tensor> {
    xs.permute((0, 3, 1, 2))?.contiguous()
}
