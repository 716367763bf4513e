//! Which code path runs the model's hot operations. On the CPU in f32 our own kernels run (fused
//! linear + bias + GELU, direct window/channel attention, the depthwise conv, im2col patch
//! embeddings, the streamed LM head); on every other device and dtype, and on the CPU when the
//! generic path is forced, exactly the candle ops that CUDA and Metal run. Forcing it is how the
//! GPU code path is checked on a machine without a GPU (captiond: `CAPTIOND_GENERIC_OPS=1`).

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Tensor};

static GENERIC: AtomicBool = AtomicBool::new(false);

/// Runs every later model call on the generic candle ops (`true`) or lets the CPU use its own
/// kernels again (`false`). Process-wide.
pub fn force_generic_ops(generic: bool) {
    GENERIC.store(generic, Ordering::Relaxed);
}

/// Whether the generic path is forced.
pub fn generic_ops() -> bool {
    GENERIC.load(Ordering::Relaxed)
}

/// Whether `t` goes through our CPU kernels: on the CPU, in f32, and not forced generic.
pub(crate) fn use_cpu_kernels(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32 && !generic_ops()
}
