//! The device code path proven on the CPU: with the generic path forced, the model runs exactly
//! the candle ops that CUDA and Metal run (none of the CPU kernels) and must still match the
//! reference's goldens, token for token, at every stage. A binary of its own, because the switch
//! is process-wide: every test here sets it before it starts.

mod support;

use support::parity::*;

fn generic() {
    florence2::kernels::force_generic_ops(true);
}

#[test]
fn tiny_a_matches_reference_on_the_generic_path() {
    generic();
    check_model("models/tiny-a", "tiny-a");
}

#[test]
fn tiny_b_matches_reference_on_the_generic_path() {
    generic();
    check_model("models/tiny-b", "tiny-b");
}

#[test]
fn remote_layout_matches_reference_on_the_generic_path() {
    generic();
    check_model("models/tiny-a-remote", "tiny-a-remote");
}

#[test]
fn batch_equals_single_on_the_generic_path() {
    generic();
    check_batch_equals_single();
}

/// f16 and bf16 through the generic ops agree with f32 as well as on the CPU path.
#[test]
fn half_precision_on_the_generic_path() {
    generic();
    check_half_precision_agrees_with_f32();
}
