//! Small building blocks shared by the vision tower and BART: a linear layer that runs one large
//! matmul over flattened rows, a conv, a matmul that also works for bf16 on the CPU, and the MLP.
//!
//! candle's CPU matmul has no bf16 kernel, so on the CPU bf16 products are computed in f32 and
//! rounded back: bf16 there is for checking, not for speed (f32 is faster on CPUs anyway).

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

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
    span: tracing::Span,
}

pub fn linear(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder) -> Result<Linear> {
    let weight = vb.get((out_dim, in_dim), "weight")?;
    let bias = if bias {
        Some(vb.get(out_dim, "bias")?)
    } else {
        None
    };
    Ok(Linear {
        weight,
        bias,
        span: tracing::span!(tracing::Level::TRACE, "linear"),
    })
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let _enter = self.span.enter();
        let dims = xs.dims().to_vec();
        let (&k, lead) = dims
            .split_last()
            .expect("linear input has at least one dim");
        let rows: usize = lead.iter().product();
        let out = matmul(&xs.contiguous()?.reshape((rows, k))?, &self.weight.t()?)?;
        let out = match &self.bias {
            Some(b) => out.broadcast_add(b)?,
            None => out,
        };
        let mut out_dims = lead.to_vec();
        out_dims.push(self.weight.dim(0)?);
        out.reshape(out_dims)
    }
}

/// A plain conv2d (the patch embeddings), with the bf16-on-CPU detour.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Tensor,
    padding: usize,
    stride: usize,
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
        Ok(Self {
            weight: vb.get((out_channels, in_channels, kernel, kernel), "weight")?,
            bias: vb.get(out_channels, "bias")?,
            padding,
            stride,
            span: tracing::span!(tracing::Level::TRACE, "patch-conv"),
        })
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
        self.fc2.forward(&self.fc1.forward(xs)?.apply(&self.act)?)
    }
}
