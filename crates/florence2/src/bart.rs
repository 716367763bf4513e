//! BART, Florence-2's language model (transformers' `BartModel` as configured by Florence-2:
//! post-LayerNorm, learned positions with offset 2, `layernorm_embedding`, no final layer norm,
//! tied input/output embeddings).
//!
//! The decoder takes an explicit [`DecoderCache`] instead of hiding K/V inside the layers: beam
//! search reorders it with `index_select`, and cross-attention K/V are computed once per image.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::config::TextConfig;
use super::kernels::use_cpu_kernels;
use super::nn::{layer_norm, linear, matmul, LayerNorm, Linear, Mlp};

const LN_EPS: f64 = 1e-5;
/// BART's learned positions start at index 2 (a leftover of fairseq's padding scheme).
const POSITION_OFFSET: usize = 2;

#[derive(Debug, Clone)]
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    num_heads: usize,
    head_dim: usize,
    scale: f64,
}

impl Attention {
    fn new(dim: usize, num_heads: usize, vb: VarBuilder) -> Result<Self> {
        let head_dim = dim / num_heads;
        Ok(Self {
            q_proj: linear(dim, dim, true, vb.pp("q_proj"))?,
            k_proj: linear(dim, dim, true, vb.pp("k_proj"))?,
            v_proj: linear(dim, dim, true, vb.pp("v_proj"))?,
            out_proj: linear(dim, dim, true, vb.pp("out_proj"))?,
            num_heads,
            head_dim,
            scale: (head_dim as f64).powf(-0.5),
        })
    }

    /// (B, L, D) -> (B, heads, L, head_dim).
    fn split_heads(&self, xs: &Tensor) -> Result<Tensor> {
        let (b, l, _) = xs.dims3()?;
        xs.reshape((b, l, self.num_heads, self.head_dim))?
            .transpose(1, 2)?
            .contiguous()
    }

    fn keys_values(&self, xs: &Tensor) -> Result<(Tensor, Tensor)> {
        let k = self.split_heads(&self.k_proj.forward(xs)?)?;
        let v = self.split_heads(&self.v_proj.forward(xs)?)?;
        Ok((k, v))
    }

    /// Attention of `xs` over prepared K/V (B, heads, S, head_dim); `mask` is added to the scores.
    fn attend(&self, xs: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, l, d) = xs.dims3()?;
        let q = (self.split_heads(&self.q_proj.forward(xs)?)? * self.scale)?;
        let mut scores = matmul(&q, &k.t()?)?;
        if let Some(mask) = mask {
            scores = scores.broadcast_add(mask)?;
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let out = matmul(&probs, v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, l, d))?;
        self.out_proj.forward(&out)
    }
}

#[derive(Debug, Clone)]
struct EncoderLayer {
    self_attn: Attention,
    /// q/k/v fused into one projection for the CPU attention kernel.
    qkv: Linear,
    self_attn_layer_norm: LayerNorm,
    ffn: Mlp,
    final_layer_norm: LayerNorm,
}

impl EncoderLayer {
    fn new(cfg: &TextConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.d_model;
        let self_attn = Attention::new(d, cfg.encoder_attention_heads, vb.pp("self_attn"))?;
        let qkv = Linear::concat(&[&self_attn.q_proj, &self_attn.k_proj, &self_attn.v_proj])?;
        Ok(Self {
            self_attn,
            qkv,
            self_attn_layer_norm: layer_norm(d, LN_EPS, vb.pp("self_attn_layer_norm"))?,
            ffn: Mlp::new(d, cfg.encoder_ffn_dim, cfg.activation_function, vb.clone())?,
            final_layer_norm: layer_norm(d, LN_EPS, vb.pp("final_layer_norm"))?,
        })
    }

    fn forward(&self, xs: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let attn = if mask.is_none() && use_cpu_kernels(xs) {
            // The whole sequence is one "window" for the DaViT kernel: no q/k/v copies.
            let op = super::cpu_attention::WindowAttentionOp {
                heads: self.self_attn.num_heads,
                scale: self.self_attn.scale as f32,
            };
            let mixed = self.qkv.forward(xs)?.apply_op1_no_bwd(&op)?;
            self.self_attn.out_proj.forward(&mixed)?
        } else {
            let (k, v) = self.self_attn.keys_values(xs)?;
            self.self_attn.attend(xs, &k, &v, mask)?
        };
        let xs = self.self_attn_layer_norm.forward(&(xs + attn)?)?;
        let ffn = self.ffn.forward(&xs)?;
        self.final_layer_norm.forward(&(xs + ffn)?)
    }
}

/// Self-attention K/V grown one step at a time, plus cross-attention K/V fixed per image.
#[derive(Debug, Clone)]
pub struct LayerCache {
    self_kv: Option<(Tensor, Tensor)>,
    cross_k: Tensor,
    cross_v: Tensor,
}

/// Everything the decoder remembers between steps; owned by the generation loop.
#[derive(Debug, Clone)]
pub struct DecoderCache {
    layers: Vec<LayerCache>,
    /// Number of decoder positions already processed.
    pub offset: usize,
}

impl DecoderCache {
    /// Keeps rows `indices` (a u32 tensor over the batch dim) of every cached tensor: expands an
    /// image's cache to its beams and follows beams that swapped places.
    pub fn select(&mut self, indices: &Tensor) -> Result<()> {
        for layer in &mut self.layers {
            if let Some((k, v)) = &layer.self_kv {
                layer.self_kv = Some((k.index_select(indices, 0)?, v.index_select(indices, 0)?));
            }
            layer.cross_k = layer.cross_k.index_select(indices, 0)?;
            layer.cross_v = layer.cross_v.index_select(indices, 0)?;
        }
        Ok(())
    }

    /// Keeps self-attention rows `indices` but leaves cross-attention alone: used when beams are
    /// reordered within the same image, whose encoder K/V are identical across its beams.
    pub fn reorder_self(&mut self, indices: &Tensor) -> Result<()> {
        for layer in &mut self.layers {
            if let Some((k, v)) = &layer.self_kv {
                layer.self_kv = Some((k.index_select(indices, 0)?, v.index_select(indices, 0)?));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct DecoderLayer {
    self_attn: Attention,
    self_attn_layer_norm: LayerNorm,
    encoder_attn: Attention,
    encoder_attn_layer_norm: LayerNorm,
    ffn: Mlp,
    final_layer_norm: LayerNorm,
}

impl DecoderLayer {
    fn new(cfg: &TextConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.d_model;
        let heads = cfg.decoder_attention_heads;
        Ok(Self {
            self_attn: Attention::new(d, heads, vb.pp("self_attn"))?,
            self_attn_layer_norm: layer_norm(d, LN_EPS, vb.pp("self_attn_layer_norm"))?,
            encoder_attn: Attention::new(d, heads, vb.pp("encoder_attn"))?,
            encoder_attn_layer_norm: layer_norm(d, LN_EPS, vb.pp("encoder_attn_layer_norm"))?,
            ffn: Mlp::new(d, cfg.decoder_ffn_dim, cfg.activation_function, vb.clone())?,
            final_layer_norm: layer_norm(d, LN_EPS, vb.pp("final_layer_norm"))?,
        })
    }

    fn forward(
        &self,
        xs: &Tensor,
        cache: &mut LayerCache,
        causal: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (k, v) = self.self_attn.keys_values(xs)?;
        let (k, v) = match &cache.self_kv {
            Some((pk, pv)) => (Tensor::cat(&[pk, &k], 2)?, Tensor::cat(&[pv, &v], 2)?),
            None => (k, v),
        };
        let attn = self.self_attn.attend(xs, &k, &v, causal)?;
        cache.self_kv = Some((k, v));
        let xs = self.self_attn_layer_norm.forward(&(xs + attn)?)?;
        let cross = self
            .encoder_attn
            .attend(&xs, &cache.cross_k, &cache.cross_v, None)?;
        let xs = self.encoder_attn_layer_norm.forward(&(xs + cross)?)?;
        let ffn = self.ffn.forward(&xs)?;
        self.final_layer_norm.forward(&(xs + ffn)?)
    }
}

/// Token and position embeddings followed by `layernorm_embedding`, as both stacks start.
#[derive(Debug, Clone)]
struct Embeddings {
    positions: Tensor,
    layernorm_embedding: LayerNorm,
}

impl Embeddings {
    fn new(cfg: &TextConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            positions: vb.get(
                (cfg.max_position_embeddings + POSITION_OFFSET, cfg.d_model),
                "embed_positions.weight",
            )?,
            layernorm_embedding: layer_norm(cfg.d_model, LN_EPS, vb.pp("layernorm_embedding"))?,
        })
    }

    /// `embeds`: (B, L, D) token embeddings of positions `start..start + L`.
    fn forward(&self, embeds: &Tensor, start: usize) -> Result<Tensor> {
        let len = embeds.dim(1)?;
        let max = self.positions.dim(0)? - POSITION_OFFSET;
        if start + len > max {
            candle_core::bail!("sequence of {} positions exceeds BART's {max}", start + len);
        }
        let pos = self.positions.narrow(0, start + POSITION_OFFSET, len)?;
        self.layernorm_embedding
            .forward(&embeds.broadcast_add(&pos)?)
    }
}

#[derive(Debug, Clone)]
pub struct Encoder {
    embeddings: Embeddings,
    layers: Vec<EncoderLayer>,
    span: tracing::Span,
}

impl Encoder {
    fn new(cfg: &TextConfig, vb: VarBuilder) -> Result<Self> {
        let layers = (0..cfg.encoder_layers)
            .map(|i| EncoderLayer::new(cfg, vb.pp("layers").pp(i)))
            .collect::<Result<_>>()?;
        Ok(Self {
            embeddings: Embeddings::new(cfg, vb.clone())?,
            layers,
            span: tracing::span!(tracing::Level::DEBUG, "bart-encoder"),
        })
    }

    /// `embeds`: (B, L, D) image tokens followed by prompt token embeddings -> (B, L, D).
    pub fn forward(&self, embeds: &Tensor) -> Result<Tensor> {
        let _enter = self.span.enter();
        let mut xs = self.embeddings.forward(embeds, 0)?;
        for layer in &self.layers {
            xs = layer.forward(&xs, None)?;
        }
        Ok(xs)
    }
}

#[derive(Debug, Clone)]
pub struct Decoder {
    embeddings: Embeddings,
    layers: Vec<DecoderLayer>,
    span: tracing::Span,
}

impl Decoder {
    fn new(cfg: &TextConfig, vb: VarBuilder) -> Result<Self> {
        let layers = (0..cfg.decoder_layers)
            .map(|i| DecoderLayer::new(cfg, vb.pp("layers").pp(i)))
            .collect::<Result<_>>()?;
        Ok(Self {
            embeddings: Embeddings::new(cfg, vb.clone())?,
            layers,
            span: tracing::span!(tracing::Level::TRACE, "bart-decoder-step"),
        })
    }
}

/// BART with tied embeddings and the LM head.
#[derive(Debug, Clone)]
pub struct Bart {
    shared: Tensor,
    embed_scale: f64,
    pub encoder: Encoder,
    decoder: Decoder,
    final_logits_bias: Option<Tensor>,
}

impl Bart {
    /// `vb` points at `model.language_model`. The output projection is `shared` itself: every
    /// Florence-2 checkpoint ties them. The remote layout adds a (zero) `final_logits_bias`.
    pub fn new(
        cfg: &TextConfig,
        vb: VarBuilder,
        final_logits_bias: Option<Tensor>,
    ) -> Result<Self> {
        let shared = vb.get((cfg.vocab_size, cfg.d_model), "shared.weight")?;
        Ok(Self {
            shared,
            embed_scale: if cfg.scale_embedding {
                (cfg.d_model as f64).sqrt()
            } else {
                1.0
            },
            encoder: Encoder::new(cfg, vb.pp("encoder"))?,
            decoder: Decoder::new(cfg, vb.pp("decoder"))?,
            final_logits_bias,
        })
    }

    pub fn dtype(&self) -> DType {
        self.shared.dtype()
    }

    pub fn device(&self) -> &candle_core::Device {
        self.shared.device()
    }

    /// Token embeddings (B, L) -> (B, L, D).
    pub fn embed_tokens(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, l) = ids.dims2()?;
        let flat = self.shared.index_select(&ids.flatten_all()?, 0)?;
        let embeds = flat.reshape((b, l, self.shared.dim(1)?))?;
        if self.embed_scale == 1.0 {
            Ok(embeds)
        } else {
            embeds * self.embed_scale
        }
    }

    /// Cross-attention K/V for every decoder layer, computed once from the encoder output.
    pub fn new_cache(&self, encoder_out: &Tensor) -> Result<DecoderCache> {
        let layers = self
            .decoder
            .layers
            .iter()
            .map(|layer| {
                let (cross_k, cross_v) = layer.encoder_attn.keys_values(encoder_out)?;
                Ok(LayerCache {
                    self_kv: None,
                    cross_k,
                    cross_v,
                })
            })
            .collect::<Result<_>>()?;
        Ok(DecoderCache { layers, offset: 0 })
    }

    /// Runs the decoder over `ids` (B, L) (positions continue from `cache.offset`) and returns the
    /// logits of the LAST position only, (B, vocab), in the model's dtype.
    pub fn decode_step(&self, ids: &Tensor, cache: &mut DecoderCache) -> Result<Tensor> {
        let _enter = self.decoder.span.enter();
        let (b, l) = ids.dims2()?;
        let embeds = self.embed_tokens(ids)?;
        let mut xs = self.decoder.embeddings.forward(&embeds, cache.offset)?;
        let causal = if l > 1 {
            Some(causal_mask(l, cache.offset, xs.dtype(), xs.device())?)
        } else {
            None
        };
        for (layer, layer_cache) in self.decoder.layers.iter().zip(cache.layers.iter_mut()) {
            xs = layer.forward(&xs, layer_cache, causal.as_ref())?;
        }
        cache.offset += l;
        let last = xs.narrow(1, l - 1, 1)?.reshape((b, xs.dim(2)?))?;
        let logits = if use_cpu_kernels(&last) {
            // The tied LM head is the largest matrix of a decode step: stream it once.
            let op = super::cpu_linear::CpuLinear {
                bias: None,
                gelu: false,
            };
            last.contiguous()?.apply_op2_no_bwd(&self.shared, &op)?
        } else {
            matmul(&last, &self.shared.t()?)?
        };
        match &self.final_logits_bias {
            Some(bias) => logits.broadcast_add(bias),
            None => Ok(logits),
        }
    }
}

/// (L, offset + L) additive mask letting position i see cached positions and itself.
fn causal_mask(
    len: usize,
    offset: usize,
    dtype: DType,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let total = offset + len;
    let mask: Vec<f32> = (0..len)
        .flat_map(|i| {
            (0..total).map(move |j| {
                if j <= offset + i {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    Tensor::from_vec(mask, (len, total), device)?.to_dtype(dtype)
}
