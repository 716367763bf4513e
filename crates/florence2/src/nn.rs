//! Small building blocks shared by the vision tower and BART: a linear layer that runs one large
//! matmul over flattened rows, a conv, a matmul that also works for bf16 on the CPU, the MLP and
//! a traced LayerNorm.
//!
//! candle's CPU matmul has no bf16 kernel, so on the CPU bf16 products are computed in f32 and
//! rounded back: bf16 there is for checking, not for speed (f32 is faster on CPUs anyway).

use std::sync::Arc;

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::cpu_linear::CpuLinear;
use super::kernels::use_cpu_kernels;

/// candle-nn's LayerNorm with a TRACE span, so profiles show where normalisation time goes (the
/// same wrapper candle-transformers keeps in `with_tracing`; that crate is not worth compiling
/// for it alone).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    inner: candle_nn::LayerNorm,
    span: tracing::Span,
}

/// A LayerNorm of width `size` with weight and bias from `vb` (PyTorch's `nn.LayerNorm`).
pub fn layer_norm(size: usize, eps: f64, vb: VarBuilder) -> Result<LayerNorm> {
    Ok(LayerNorm {
        inner: candle_nn::layer_norm(size, eps, vb)?,
        span: tracing::span!(tracing::Level::TRACE, "layer-norm"),
    })
}

impl Module for LayerNorm {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let _enter = self.span.enter();
        self.inner.forward(xs)
    }
}

fn needs_f32_detour(t: &Tensor) -> bool {
    t.dtype() == DType::BF16 && t.device().is_cpu()
}

/// `a.matmul(b)`, with the bf16-on-CPU detour.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if needs_f32_detour(a) {
        a.to_dtype(DType::F32)?
            .matmul(&b.to_dtype(DType::F32)?)?
            .to_dtype(DType::BF16)
    } else {
        a.matmul(b)
    }
}

/// y = x Wᵀ + b over (…, in) inputs; leading dims are flattened into rows so candle runs one
/// large matmul instead of a batched one with a broadcast weight.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
    /// The bias as f32 for the fused CPU path (f32 weights only).
    bias_f32: Option<Arc<Vec<f32>>>,
    span: tracing::Span,
}

pub fn linear(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder) -> Result<Linear> {
    let weight = vb.get((out_dim, in_dim), "weight")?;
    let bias = if bias {
        Some(vb.get(out_dim, "bias")?)
    } else {
        None
    };
    Linear::from_parts(weight, bias)
}

impl Linear {
    /// A layer from an explicit (out, in) weight and bias.
    pub fn from_parts(weight: Tensor, bias: Option<Tensor>) -> Result<Linear> {
        let bias_f32 = match &bias {
            Some(b) if b.dtype() == DType::F32 && b.device().is_cpu() => {
                Some(Arc::new(b.to_vec1::<f32>()?))
            }
            _ => None,
        };
        Ok(Linear {
            weight,
            bias,
            bias_f32,
            span: tracing::span!(tracing::Level::TRACE, "linear"),
        })
    }

    /// Several layers reading the same input as one wider layer (outputs side by side), e.g.
    /// BART's q/k/v projections fused into one matmul.
    pub fn concat(layers: &[&Linear]) -> Result<Linear> {
        let weights: Vec<&Tensor> = layers.iter().map(|l| &l.weight).collect();
        let weight = Tensor::cat(&weights, 0)?;
        // A layer without bias contributes zeros, so the fused layer computes the same outputs.
        let bias = if layers.iter().any(|l| l.bias.is_some()) {
            let biases = layers
                .iter()
                .map(|l| match &l.bias {
                    Some(b) => Ok(b.clone()),
                    None => Tensor::zeros(l.weight.dim(0)?, l.weight.dtype(), l.weight.device()),
                })
                .collect::<Result<Vec<_>>>()?;
            Some(Tensor::cat(&biases, 0)?)
        } else {
            None
        };
        Linear::from_parts(weight, bias)
    }

    /// `forward`, then `act`; on the CPU in f32 the bias and an exact GELU are fused into the
    /// matmul (see cpu_linear.rs).
    pub fn forward_act(&self, xs: &Tensor, act: Option<candle_nn::Activation>) -> Result<Tensor> {
        let _enter = self.span.enter();
        let dims = xs.dims().to_vec();
        let (&k, lead) = dims
            .split_last()
            .expect("linear input has at least one dim");
        let rows: usize = lead.iter().product();
        let x2 = xs.contiguous()?.reshape((rows, k))?;
        let fusable_act = matches!(act, None | Some(candle_nn::Activation::Gelu));
        let fused = use_cpu_kernels(&x2)
            && self.weight.dtype() == DType::F32
            && fusable_act
            && (self.bias.is_none() || self.bias_f32.is_some());
        let out = if fused {
            let op = CpuLinear {
                bias: self.bias_f32.clone(),
                gelu: act.is_some(),
            };
            x2.apply_op2_no_bwd(&self.weight, &op)?
        } else {
            let out = matmul(&x2, &self.weight.t()?)?;
            let out = match &self.bias {
                Some(b) => out.broadcast_add(b)?,
                None => out,
            };
            match act {
                Some(act) => out.apply(&act)?,
                None => out,
            }
        };
        let mut out_dims = lead.to_vec();
        out_dims.push(self.weight.dim(0)?);
        out.reshape(out_dims)
    }
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.forward_act(xs, None)
    }
}

/// A plain conv2d (the patch embeddings), with the bf16-on-CPU detour.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Tensor,
    padding: usize,
    stride: usize,
    /// The kernel as an (out, k·k·in) linear layer over im2col rows, for the CPU in f32.
    as_linear: Option<Linear>,
    span: tracing::Span,
}

impl Conv2d {
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        padding: usize,
        stride: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let weight = vb.get((out_channels, in_channels, kernel, kernel), "weight")?;
        let bias = vb.get(out_channels, "bias")?;
        let as_linear = if weight.device().is_cpu() && weight.dtype() == DType::F32 {
            let w = weight
                .permute((0, 2, 3, 1))?
                .contiguous()?
                .reshape((out_channels, kernel * kernel * in_channels))?;
            Some(Linear::from_parts(w, Some(bias.clone()))?)
        } else {
            None
        };
        Ok(Self {
            weight,
            bias,
            padding,
            stride,
            as_linear,
            span: tracing::span!(tracing::Level::TRACE, "patch-conv"),
        })
    }

    /// Channels-last (B, H, W, C_in) -> (B, H', W', C_out) on the CPU in f32 (im2col + fused
    /// matmul); `None` where that path does not apply.
    pub fn forward_channels_last(&self, xs: &Tensor) -> Result<Option<Tensor>> {
        let Some(linear) = &self.as_linear else {
            return Ok(None);
        };
        if !use_cpu_kernels(xs) {
            return Ok(None);
        }
        let _enter = self.span.enter();
        let (b, h, w, _) = xs.dims4()?;
        let op = super::cpu_conv::Im2Col {
            kernel: self.weight.dim(2)?,
            stride: self.stride,
            pad: self.padding,
        };
        let (oh, ow) = op.output_size(h, w);
        let cols = xs.contiguous()?.apply_op1_no_bwd(&op)?;
        Ok(Some(linear.forward(&cols)?.reshape((b, oh, ow, ()))?))
    }
}

impl Module for Conv2d {
    /// (B, C_in, H, W) -> (B, C_out, H', W').
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let _enter = self.span.enter();
        let detour = needs_f32_detour(xs);
        let (x, w, b) = if detour {
            (
                xs.to_dtype(DType::F32)?,
                self.weight.to_dtype(DType::F32)?,
                self.bias.to_dtype(DType::F32)?,
            )
        } else {
            (xs.clone(), self.weight.clone(), self.bias.clone())
        };
        let out = x
            .conv2d(&w, self.padding, self.stride, 1, 1)?
            .broadcast_add(&b.reshape((1, (), 1, 1))?)?;
        if detour {
            out.to_dtype(DType::BF16)
        } else {
            Ok(out)
        }
    }
}

/// fc1 -> activation -> fc2, as in DaViT's MLP and BART's feed-forward.
#[derive(Debug, Clone)]
pub struct Mlp {
    fc1: Linear,
    fc2: Linear,
    act: candle_nn::Activation,
}

impl Mlp {
    /// `vb` holds `fc1` and `fc2` (DaViT nests them under `ffn`, BART keeps them in the layer).
    pub fn new(
        dim: usize,
        hidden: usize,
        act: candle_nn::Activation,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            fc1: linear(dim, hidden, true, vb.pp("fc1"))?,
            fc2: linear(hidden, dim, true, vb.pp("fc2"))?,
            act,
        })
    }
}

impl Module for Mlp {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.fc2.forward(&self.fc1.forward_act(xs, Some(self.act))?)
    }
}
