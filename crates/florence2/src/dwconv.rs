//! The depthwise 3×3 convolution DaViT runs four times per block as its position encoding,
//! `x + dwconv(x)`, on channels-last (B, H, W, C) maps.
//!
//! candle's grouped conv2d is several times slower than PyTorch's for this shape (it lowers every
//! group to its own tiny matmul), and DaViT-base calls it 48 times per image, so on the CPU we run a
//! direct loop that vectorises over channels and splits rows across threads. Other devices use
//! candle's grouped conv2d on a channels-first view.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Module, Result, Shape, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

/// `x + dwconv3x3(x)` with the conv's bias, padding 1, stride 1 (the residual is fused in because
/// every call site adds it).
#[derive(Debug, Clone)]
pub struct DepthwiseConvResidual {
    /// (C, 1, 3, 3) as stored in the checkpoint; used off the CPU.
    weight: Tensor,
    bias: Tensor,
    /// The same kernel as f32 in `[tap][channel]` order for the CPU loop.
    taps: Arc<Vec<f32>>,
    bias_f32: Arc<Vec<f32>>,
    span: tracing::Span,
}

impl DepthwiseConvResidual {
    pub fn new(channels: usize, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get((channels, 1, 3, 3), "weight")?;
        let bias = vb.get(channels, "bias")?;
        // [c][tap] -> [tap][c] so the inner loop walks channels contiguously.
        let taps = weight
            .reshape((channels, 9))?
            .t()?
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let bias_f32 = bias.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        Ok(Self {
            weight,
            bias,
            taps: Arc::new(taps),
            bias_f32: Arc::new(bias_f32),
            span: tracing::span!(tracing::Level::TRACE, "dwconv"),
        })
    }

    fn forward_generic(&self, xs: &Tensor) -> Result<Tensor> {
        // candle's CPU conv has no bf16 kernel (GPUs do): there, as for matmuls, compute in f32.
        if xs.dtype() == DType::BF16 && xs.device().is_cpu() {
            let f32 = |t: &Tensor| t.to_dtype(DType::F32);
            let out = depthwise_residual(&f32(xs)?, &f32(&self.weight)?, &f32(&self.bias)?)?;
            return out.to_dtype(DType::BF16);
        }
        depthwise_residual(xs, &self.weight, &self.bias)
    }
}

/// The candle ops of a 3×3 depthwise conv plus bias plus residual on (B, H, W, C).
fn depthwise_residual(xs: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let nchw = xs.permute((0, 3, 1, 2))?.contiguous()?;
    let conv = nchw.conv2d(weight, 1, 1, 1, weight.dim(0)?)?;
    let conv = conv.broadcast_add(&bias.reshape((1, (), 1, 1))?)?;
    (conv + nchw)?.permute((0, 2, 3, 1))?.contiguous()
}

impl Module for DepthwiseConvResidual {
    /// `xs`: (B, H, W, C).
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let _enter = self.span.enter();
        if !xs.device().is_cpu() || super::kernels::generic_ops() {
            return self.forward_generic(xs);
        }
        let dtype = xs.dtype();
        let op = CpuDwConv {
            taps: self.taps.clone(),
            bias: self.bias_f32.clone(),
        };
        let out = xs
            .to_dtype(DType::F32)?
            .contiguous()?
            .apply_op1_no_bwd(&op)?;
        out.to_dtype(dtype)
    }
}

struct CpuDwConv {
    taps: Arc<Vec<f32>>,
    bias: Arc<Vec<f32>>,
}

impl CustomOp1 for CpuDwConv {
    fn name(&self) -> &'static str {
        "dwconv3x3-residual"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, h, w, c) = layout.shape().dims4()?;
        let input = match storage {
            CpuStorage::F32(v) => v,
            _ => candle_core::bail!("dwconv3x3: expected f32 input"),
        };
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("dwconv3x3: input not contiguous".into()))?;
        let input = &input[start..end];
        if self.bias.len() != c {
            candle_core::bail!("dwconv3x3: {} channels, kernel has {}", c, self.bias.len());
        }
        let mut out = vec![0f32; b * h * w * c];
        let row = w * c;
        let conv_row = row_kernel();
        let (taps, bias) = (&self.taps[..], &self.bias[..]);
        out.par_chunks_mut(row)
            .enumerate()
            .for_each(|(by, out_row)| {
                let (bi, y) = (by / h, by % h);
                let image = &input[bi * h * row..(bi + 1) * h * row];
                conv_row(RowArgs {
                    image,
                    out_row,
                    taps,
                    bias,
                    y,
                    h,
                    w,
                    c,
                });
            });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// One output row of the residual depthwise conv.
struct RowArgs<'a> {
    image: &'a [f32],
    out_row: &'a mut [f32],
    taps: &'a [f32],
    bias: &'a [f32],
    y: usize,
    h: usize,
    w: usize,
    c: usize,
}

#[inline(always)]
fn conv_row_portable(args: RowArgs) {
    let RowArgs {
        image,
        out_row,
        taps,
        bias,
        y,
        h,
        w,
        c,
    } = args;
    let row = w * c;
    for x in 0..w {
        let acc = &mut out_row[x * c..(x + 1) * c];
        let centre = &image[y * row + x * c..y * row + (x + 1) * c];
        for ((a, &b), &v) in acc.iter_mut().zip(bias).zip(centre) {
            *a = b + v;
        }
        for dy in 0..3 {
            let yy = y as isize + dy as isize - 1;
            if yy < 0 || yy >= h as isize {
                continue;
            }
            for dx in 0..3 {
                let xx = x as isize + dx as isize - 1;
                if xx < 0 || xx >= w as isize {
                    continue;
                }
                let tap = &taps[(dy * 3 + dx) * c..(dy * 3 + dx + 1) * c];
                let at = yy as usize * row + xx as usize * c;
                let src = &image[at..at + c];
                for ((a, &k), &v) in acc.iter_mut().zip(tap).zip(src) {
                    *a += k * v;
                }
            }
        }
    }
}

/// The same loop compiled for AVX-512 (the default x86-64 target only has SSE2).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl")]
unsafe fn conv_row_avx512(args: RowArgs) {
    conv_row_portable(args)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn conv_row_avx2(args: RowArgs) {
    conv_row_portable(args)
}

fn row_kernel() -> fn(RowArgs) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            // SAFETY: the features it was compiled for were just detected.
            return |args| unsafe { conv_row_avx512(args) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            return |args| unsafe { conv_row_avx2(args) };
        }
    }
    conv_row_portable
}

/// Checks the CPU loop against candle's grouped conv2d (the generic path).
#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, D};

    #[test]
    fn cpu_loop_matches_grouped_conv() -> Result<()> {
        let dev = Device::Cpu;
        let c = 5;
        let mut map = std::collections::HashMap::new();
        map.insert(
            "weight".to_string(),
            Tensor::randn(0f32, 1., (c, 1, 3, 3), &dev)?,
        );
        map.insert("bias".to_string(), Tensor::randn(0f32, 1., c, &dev)?);
        let vb = VarBuilder::from_tensors(map, DType::F32, &dev);
        let conv = DepthwiseConvResidual::new(c, vb)?;
        let xs = Tensor::randn(0f32, 1., (2, 7, 4, c), &dev)?;
        let fast = conv.forward(&xs)?;
        let slow = conv.forward_generic(&xs)?;
        let diff = (fast - slow)?.abs()?.flatten_all()?.max(D::Minus1)?;
        assert!(diff.to_scalar::<f32>()? < 1e-5);
        Ok(())
    }
}
