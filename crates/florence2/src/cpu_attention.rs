//! DaViT's two attentions as direct CPU kernels for f32, working on the fused `qkv` projection
//! in place.
//!
//! The tensor formulation needs q, k and v as separate contiguous (…, tokens, dim) blocks, so it
//! transposes the full activation three times going in and once coming out; for channel attention
//! those are transposes of the whole (tokens × channels) map. `gemm` accepts arbitrary strides,
//! so here each (image, group) or (window, head) reads its q/k/v straight out of the `qkv` rows
//! and writes its output columns straight into place: no copies, and the work spreads over
//! threads one (window, head) at a time.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape};
use rayon::prelude::*;

/// `dst (m×n) = beta · lhs (m×k) · rhs (k×n)`, all by (row stride, column stride), one thread.
///
/// # Safety
/// Every pointer must be valid for the whole matrix its strides describe.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_strided(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    dst_cs: usize,
    lhs: *const f32,
    lhs_rs: usize,
    lhs_cs: usize,
    rhs: *const f32,
    rhs_rs: usize,
    rhs_cs: usize,
    beta: f32,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst,
        dst_cs as isize,
        dst_rs as isize,
        false,
        lhs,
        lhs_cs as isize,
        lhs_rs as isize,
        rhs,
        rhs_cs as isize,
        rhs_rs as isize,
        0.0,
        beta,
        false,
        false,
        false,
        gemm::Parallelism::None,
    );
}

fn softmax_rows(scores: &mut [f32], row: usize) {
    for r in scores.chunks_mut(row) {
        let max = r.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for v in r.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        let inv = 1.0 / sum;
        r.iter_mut().for_each(|v| *v *= inv);
    }
}

/// A raw pointer that may cross threads: each task writes a disjoint set of output cells.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// Taking `self` makes closures capture the whole (Send) wrapper, not the raw pointer field.
    fn get(self) -> *mut f32 {
        self.0
    }
}

fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op}: f32 only");
    };
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{op}: input not contiguous")))?;
    Ok(&data[start..end])
}

/// Multi-head attention within windows: input `qkv` (windows, tokens, 3·C) laid out as
/// [q heads | k heads | v heads]; output (windows, tokens, C).
pub struct WindowAttentionOp {
    pub heads: usize,
    pub scale: f32,
}

impl CustomOp1 for WindowAttentionOp {
    fn name(&self) -> &'static str {
        "davit-window-attention"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (windows, tokens, c3) = layout.shape().dims3()?;
        let qkv = contiguous_f32(storage, layout, self.name())?;
        let c = c3 / 3;
        let hd = c / self.heads;
        let mut out = vec![0f32; windows * tokens * c];
        let dst = SendPtr(out.as_mut_ptr());
        (0..windows * self.heads).into_par_iter().for_each_init(
            || vec![0f32; tokens * tokens],
            |scores, task| {
                let (w, h) = (task / self.heads, task % self.heads);
                let base = w * tokens * c3 + h * hd;
                // SAFETY: q/k/v views stay inside window w's rows of `qkv`; the output view is
                // window w, columns h·hd..(h+1)·hd, written by this task only.
                unsafe {
                    let q = qkv.as_ptr().add(base);
                    let k = q.add(c);
                    let v = q.add(2 * c);
                    gemm_strided(
                        tokens,
                        tokens,
                        hd,
                        scores.as_mut_ptr(),
                        tokens,
                        1,
                        q,
                        c3,
                        1,
                        k,
                        1,
                        c3,
                        self.scale,
                    );
                    softmax_rows(scores, tokens);
                    let o = dst.get().add(w * tokens * c + h * hd);
                    gemm_strided(
                        tokens,
                        hd,
                        tokens,
                        o,
                        c,
                        1,
                        scores.as_ptr(),
                        tokens,
                        1,
                        v,
                        c3,
                        1,
                        1.0,
                    );
                }
            },
        );
        Ok((CpuStorage::F32(out), Shape::from((windows, tokens, c))))
    }
}

/// Attention across the channels of each group: input `qkv` (B, N, 3·C) laid out as
/// [q groups | k groups | v groups]; scores (Cg × Cg) = (q·N^-½)ᵀ k summed over all N tokens;
/// output (B, N, C).
pub struct ChannelAttentionOp {
    pub groups: usize,
}

impl CustomOp1 for ChannelAttentionOp {
    fn name(&self) -> &'static str {
        "davit-channel-attention"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, n, c3) = layout.shape().dims3()?;
        let qkv = contiguous_f32(storage, layout, self.name())?;
        let c = c3 / 3;
        let cg = c / self.groups;
        let scale = (n as f32).powf(-0.5);
        let mut out = vec![0f32; b * n * c];
        let dst = SendPtr(out.as_mut_ptr());
        (0..b * self.groups).into_par_iter().for_each(|task| {
            let (bi, g) = (task / self.groups, task % self.groups);
            let mut scores = vec![0f32; cg * cg];
            // SAFETY: views stay inside image bi's rows of `qkv`; the output view is image bi,
            // columns g·cg..(g+1)·cg, written by this task only.
            unsafe {
                let q = qkv.as_ptr().add(bi * n * c3 + g * cg);
                let k = q.add(c);
                let v = q.add(2 * c);
                // scores[i][j] = scale · Σ_t q[t][i] k[t][j]
                gemm_strided(
                    cg,
                    cg,
                    n,
                    scores.as_mut_ptr(),
                    cg,
                    1,
                    q,
                    1,
                    c3,
                    k,
                    c3,
                    1,
                    scale,
                );
                softmax_rows(&mut scores, cg);
                // out[t][i] = Σ_j v[t][j] scores[i][j]
                let o = dst.get().add(bi * n * c + g * cg);
                gemm_strided(n, cg, cg, o, c, 1, v, c3, 1, scores.as_ptr(), 1, cg, 1.0);
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((b, n, c))))
    }
}
