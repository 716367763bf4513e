//! Parity with the Python reference (transformers' native Florence-2): tiny random-weight models
//! and golden outputs built by tools/make_fixtures.py, committed under tests/fixtures/.
//! Intermediate tensors must agree to 1e-4 (relative to each tensor's largest magnitude), token
//! ids exactly.

mod support;

use candle_core::DType;
use florence2::{Task, Timings};
use serde_json::Value;
use support::parity::*;

#[test]
fn tiny_a_matches_reference() {
    check_model("models/tiny-a", "tiny-a");
}

#[test]
fn tiny_b_sharded_matches_reference() {
    check_model("models/tiny-b", "tiny-b");
}

/// Microsoft's layout as the microsoft/Florence-2-* repos ship it: a plain BART tokenizer (the
/// Florence tokens are added at load), no `<image>` in the vocabulary, `pytorch_model.bin`, no
/// generation_config.json.
#[test]
fn tiny_a_remote_layout_matches_reference() {
    check_model("models/tiny-a-remote", "tiny-a-remote");
}

/// A remote-layout fine-tune whose tokenizer carries the Florence tokens.
#[test]
fn tiny_a_remote_fine_tune_matches_reference() {
    check_model("models/tiny-a-remote-ft", "tiny-a-remote");
}

/// The remote fixtures hold tiny-a's weights: every generation, `<OD>` boxes included, is the
/// native twin's, as the reference found (its list of differences is empty).
#[test]
fn remote_fixtures_give_their_native_twins_results() {
    let remote = manifest("tiny-a-remote");
    assert_eq!(remote["differs_from_twin"], serde_json::json!([]));
    let native = manifest("tiny-a");
    let native_cases = native["cases"].as_array().unwrap();
    for model_dir in ["models/tiny-a-remote", "models/tiny-a-remote-ft"] {
        let model = load(model_dir, DType::F32);
        for case in remote["cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let twin = native_cases.iter().find(|c| c["name"] == name).unwrap();
            let task: Task = case["task"].as_str().unwrap().parse().unwrap();
            let img = image(case["image"].as_str().unwrap());
            for (kind, beams) in [("greedy", 1usize), ("beam", 3)] {
                let max_new = twin[kind]["max_new_tokens"].as_u64().unwrap() as usize;
                let out = model
                    .run(
                        &[&img],
                        task,
                        case["text_input"].as_str(),
                        &generation(&model, beams, max_new),
                        &mut Timings::default(),
                    )
                    .unwrap()
                    .remove(0);
                let what = format!("{model_dir} {name} {kind}");
                assert_eq!(out.token_ids, ids(&twin[kind]["token_ids"]), "{what}");
                assert_eq!(out.text, twin[kind]["text"].as_str().unwrap(), "{what}");
                assert_eq!(out.result, twin[kind]["result"], "{what}");
            }
        }
    }
}

/// Without generation_config.json the defaults come from config.json's `text_config`, as
/// transformers builds them (`GenerationConfig.from_model_config`); with it, its values win.
#[test]
fn generation_defaults_follow_transformers_precedence() {
    let remote = load("models/tiny-a-remote", DType::F32);
    let config: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("models/tiny-a-remote/config.json")).unwrap(),
    )
    .unwrap();
    let text = &config["text_config"];
    let g = &remote.generation;
    assert_eq!(g.num_beams as u64, text["num_beams"].as_u64().unwrap());
    assert_eq!(
        g.no_repeat_ngram_size as u64,
        text["no_repeat_ngram_size"].as_u64().unwrap()
    );
    assert_eq!(g.early_stopping, text["early_stopping"].as_bool().unwrap());
    assert_eq!(
        g.forced_bos_token_id.map(u64::from),
        text["forced_bos_token_id"].as_u64()
    );
    assert_eq!(
        g.forced_eos_token_id.map(u64::from),
        text["forced_eos_token_id"].as_u64()
    );
    // No max_length anywhere: transformers' default max_length 20 counts the decoder start token.
    assert!(text.get("max_length").is_none());
    assert_eq!(g.max_new_tokens, 19);

    let ft = load("models/tiny-a-remote-ft", DType::F32);
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("models/tiny-a-remote-ft/generation_config.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        ft.generation.max_new_tokens as u64,
        file["max_new_tokens"].as_u64().unwrap()
    );
    assert_eq!(
        ft.generation.num_beams as u64,
        file["num_beams"].as_u64().unwrap()
    );
}

/// The tokenizer encodes and decodes as the reference's does (non-ASCII, special and location
/// tokens): the recorded checks of the native tokenizer and of the remote one after the
/// Florence tokens are added.
#[test]
fn tokenizers_match_the_reference_checks() {
    for (golden, model_dir) in [
        ("tiny-a", "models/tiny-a"),
        ("tiny-a-remote", "models/tiny-a-remote"),
        ("tiny-a-remote", "models/tiny-a-remote-ft"),
    ] {
        let m = manifest(golden);
        let model = load(model_dir, DType::F32);
        let checks = m["tokenizer_checks"].as_array().unwrap();
        assert!(!checks.is_empty());
        for check in checks {
            let text = check["text"].as_str().unwrap();
            let got = model
                .tokenizer()
                .encode(text, false)
                .unwrap()
                .get_ids()
                .to_vec();
            assert_eq!(got, ids(&check["input_ids"]), "{model_dir}: {text:?}");
            let decoded = model.decode(&got).unwrap();
            assert_eq!(
                decoded,
                check["decoded"].as_str().unwrap(),
                "{model_dir}: {text:?} decoded"
            );
        }
    }
}

#[test]
fn every_task_prompt_tokenizes_like_the_reference() {
    for golden in ["tiny-a", "tiny-b", "tiny-a-remote"] {
        let m = manifest(golden);
        let model = load(m["model"].as_str().unwrap(), DType::F32);
        for p in m["prompts"].as_array().unwrap() {
            let task: Task = p["task"].as_str().unwrap().parse().unwrap();
            let text_input = p["text_input"].as_str();
            assert_eq!(
                task.prompt(text_input).unwrap(),
                p["prompt"].as_str().unwrap()
            );
            assert_eq!(
                model.prompt_ids(task, text_input).unwrap(),
                ids(&p["input_ids"]),
                "{golden}: {task:?}"
            );
        }
    }
}

#[test]
fn batch_equals_single() {
    check_batch_equals_single();
}

/// Half precision runs end to end and keeps the greedy tokens of f32 on the fixtures.
#[test]
fn half_precision_agrees_with_f32_on_greedy_tokens() {
    check_half_precision_agrees_with_f32();
}
