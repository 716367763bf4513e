//! The patch-embedding convolutions as im2col + one fused matmul, on channels-last maps.
//!
//! candle's CPU conv2d works channels-first and, for these strided convs, cost four times their
//! arithmetic (a profile put the four patch embeddings at 0.4 s per 768² image); DaViT keeps its
//! maps channels-last anyway, so gathering patches in (ky, kx, channel) order gives rows that
//! multiply straight against the kernel laid out the same way, with the bias fused in.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape};
use rayon::prelude::*;

/// Gathers the k×k patches of a channels-last (B, H, W, C) map, zero-padded by `pad`, into rows
/// of (B·OH·OW, k·k·C) ordered (ky, kx, c).
pub struct Im2Col {
    pub kernel: usize,
    pub stride: usize,
    pub pad: usize,
}

impl Im2Col {
    pub fn output_size(&self, h: usize, w: usize) -> (usize, usize) {
        (
            (h + 2 * self.pad - self.kernel) / self.stride + 1,
            (w + 2 * self.pad - self.kernel) / self.stride + 1,
        )
    }
}

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "im2col-nhwc"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, h, w, c) = layout.shape().dims4()?;
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("im2col: f32 only");
        };
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("im2col: input not contiguous".into()))?;
        let input = &data[start..end];
        let (oh, ow) = self.output_size(h, w);
        let k = self.kernel;
        let row_len = k * k * c;
        let mut cols = vec![0f32; b * oh * ow * row_len];
        // One task per output row of the map (ow patches).
        cols.par_chunks_mut(ow * row_len)
            .enumerate()
            .for_each(|(task, out)| {
                let (bi, oy) = (task / oh, task % oh);
                let image = &input[bi * h * w * c..(bi + 1) * h * w * c];
                for ox in 0..ow {
                    let patch = &mut out[ox * row_len..(ox + 1) * row_len];
                    for ky in 0..k {
                        let y = (oy * self.stride + ky) as isize - self.pad as isize;
                        if y < 0 || y >= h as isize {
                            continue; // stays zero
                        }
                        for kx in 0..k {
                            let x = (ox * self.stride + kx) as isize - self.pad as isize;
                            if x < 0 || x >= w as isize {
                                continue;
                            }
                            let src = (y as usize * w + x as usize) * c;
                            let dst = (ky * k + kx) * c;
                            patch[dst..dst + c].copy_from_slice(&image[src..src + c]);
                        }
                    }
                }
            });
        Ok((CpuStorage::F32(cols), Shape::from((b * oh * ow, row_len))))
    }
}
