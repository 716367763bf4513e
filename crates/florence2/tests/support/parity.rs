//! The parity checks against the Python reference's goldens, shared by the two test binaries:
//! `parity` (the CPU's own kernels) and `parity_generic` (the candle ops CUDA and Metal run,
//! forced on the CPU).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use florence2::load::ModelFiles;
use florence2::vision::to_channels_first;
use florence2::{Florence2, GenerationConfig, Task, Timings};
use serde_json::Value;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn manifest(model: &str) -> Value {
    let path = fixtures().join("golden").join(model).join("manifest.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

pub fn load(model_dir: &str, dtype: DType) -> Florence2 {
    let files = ModelFiles::from_dir(fixtures().join(model_dir)).unwrap();
    Florence2::load(&files, &Device::Cpu, dtype).unwrap()
}

/// The RGB pixels the reference captioned for a fixture image: for an image whose conversion to
/// RGB the reference recorded (grayscale, RGBA on white, 16-bit), that recorded RGB. Turning a
/// file into RGB is the caller's job (captiond's `media::decode`, checked against the same
/// recordings in its own tests); the model is judged here on the reference's own pixels.
pub fn image(rel: &str) -> image::RgbImage {
    let m = manifest("tiny-a");
    let rgb = m["images"]
        .as_object()
        .unwrap()
        .values()
        .find(|info| info["path"] == rel)
        .and_then(|info| info["rgb"].as_str())
        .unwrap_or(rel);
    let img = image::open(fixtures().join(rgb)).unwrap_or_else(|e| panic!("{rgb}: {e}"));
    assert!(
        matches!(img, image::DynamicImage::ImageRgb8(_)),
        "{rgb}: the reference's RGB is stored as 8-bit RGB"
    );
    img.to_rgb8()
}

pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// Largest |a - b| must be within `rel` of the largest |b| (at least 1).
pub fn assert_close(what: &str, a: &Tensor, b: &Tensor, rel: f32) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes differ");
    let a = a.to_dtype(DType::F32).unwrap().flatten_all().unwrap();
    let b = b.to_dtype(DType::F32).unwrap().flatten_all().unwrap();
    let diff: f32 = (&a - &b)
        .unwrap()
        .abs()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar()
        .unwrap();
    let scale: f32 = b.abs().unwrap().max(0).unwrap().to_scalar().unwrap();
    let tol = rel * scale.max(1.0);
    assert!(
        diff <= tol,
        "{what}: max |diff| {diff} > {tol} (max |ref| {scale})"
    );
}

pub fn generation(model: &Florence2, beams: usize, max_new_tokens: usize) -> GenerationConfig {
    let mut g = model.generation.clone();
    g.num_beams = beams;
    g.max_new_tokens = max_new_tokens;
    g
}

/// Every stage and both decoders for every golden case of one model folder.
pub fn check_model(model_dir: &str, golden: &str) {
    let m = manifest(golden);
    let model = load(model_dir, DType::F32);
    for case in m["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let task: Task = case["task"].as_str().unwrap().parse().unwrap();
        let text_input = case["text_input"].as_str();
        let tensors = candle_core::safetensors::load(
            fixtures().join(case["tensors"].as_str().unwrap()),
            &Device::Cpu,
        )
        .unwrap();
        let img = image(case["image"].as_str().unwrap());

        // The golden input_ids are the text part, <s> prompt </s>; the image tokens go before it.
        let prompt = model.prompt_ids(task, text_input).unwrap();
        assert_eq!(prompt, ids(&case["input_ids"]), "{name}: prompt ids");

        let pixels = model.pixel_values(&[&img]).unwrap();
        assert_close(
            &format!("{name}: pixel_values"),
            &pixels,
            &tensors["pixel_values"],
            1e-5,
        );
        // From here on feed the reference's own pixels so each stage is judged on its own.
        let pixels = &tensors["pixel_values"];
        let features = model.model.vision.forward(pixels).unwrap();
        assert_close(
            &format!("{name}: vision tower"),
            &to_channels_first(&features).unwrap(),
            &tensors["image_features"],
            1e-4,
        );
        let projected = model.model.projector.forward(&features).unwrap();
        assert_close(
            &format!("{name}: projector"),
            &projected,
            &tensors["projected"],
            1e-4,
        );
        let prompt_t = Tensor::new(prompt.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let encoded = model.model.encode(&projected, &prompt_t).unwrap();
        assert_close(
            &format!("{name}: encoder"),
            &encoded,
            &tensors["encoder_output"],
            1e-4,
        );
        let mut cache = model.model.bart.new_cache(&encoded).unwrap();
        let start =
            Tensor::new(&[[model.generation.decoder_start_token_id]], &Device::Cpu).unwrap();
        let logits = model.model.bart.decode_step(&start, &mut cache).unwrap();
        assert_close(
            &format!("{name}: first-step logits"),
            &logits,
            &tensors["first_step_logits"],
            1e-4,
        );

        for (kind, beams) in [("greedy", 1usize), ("beam", 3)] {
            let want = &case[kind];
            let max_new = want["max_new_tokens"].as_u64().unwrap() as usize;
            let g = generation(&model, beams, max_new);
            let out = model
                .run(&[&img], task, text_input, &g, &mut Timings::default())
                .unwrap()
                .remove(0);
            assert_eq!(
                out.token_ids,
                ids(&want["token_ids"]),
                "{name}: {kind} token ids"
            );
            assert_eq!(
                out.text,
                want["text"].as_str().unwrap(),
                "{name}: {kind} text"
            );
            assert_eq!(
                out.result, want["result"],
                "{name}: {kind} post-processed result"
            );
            if let Some(score) = want["score"].as_f64() {
                let got = out.score.unwrap() as f64;
                assert!(
                    (got - score).abs() < 1e-4,
                    "{name}: beam score {got} vs {score}"
                );
            }
        }
    }
}

/// A batch must give each image exactly what it gives alone (the reference pads finished rows).
pub fn check_batch_equals_single() {
    for golden in ["tiny-a", "tiny-b"] {
        let m = manifest(golden);
        let model = load(m["model"].as_str().unwrap(), DType::F32);
        let batch = &m["batch"];
        let task: Task = batch["task"].as_str().unwrap().parse().unwrap();
        let max_new = batch["max_new_tokens"].as_u64().unwrap() as usize;
        let images: Vec<_> = batch["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| image(p.as_str().unwrap()))
            .collect();
        let refs: Vec<_> = images.iter().collect();
        for (kind, beams) in [("greedy_token_ids", 1usize), ("beam_token_ids", 3)] {
            let g = generation(&model, beams, max_new);
            let outs = model
                .run(&refs, task, None, &g, &mut Timings::default())
                .unwrap();
            for (i, (out, want)) in outs.iter().zip(batch[kind].as_array().unwrap()).enumerate() {
                let mut want = ids(want);
                while want.len() > 2 && *want.last().unwrap() == model.generation.pad_token_id {
                    want.pop();
                }
                assert_eq!(out.token_ids, want, "{golden}: {kind} image {i}");
                let single = model
                    .run(&[refs[i]], task, None, &g, &mut Timings::default())
                    .unwrap()
                    .remove(0);
                assert_eq!(
                    single.token_ids, out.token_ids,
                    "{golden}: {kind} image {i} alone"
                );
            }
        }
    }
}

/// Half precision runs end to end and keeps the greedy tokens of f32 on the fixtures.
pub fn check_half_precision_agrees_with_f32() {
    let m = manifest("tiny-a");
    let f32_model = load("models/tiny-a", DType::F32);
    for dtype in [DType::F16, DType::BF16] {
        let model = load("models/tiny-a", dtype);
        let mut agree = 0;
        let mut total = 0;
        for case in m["cases"].as_array().unwrap() {
            let task: Task = case["task"].as_str().unwrap().parse().unwrap();
            let img = image(case["image"].as_str().unwrap());
            let g = generation(&f32_model, 1, 20);
            let want = f32_model
                .run(
                    &[&img],
                    task,
                    case["text_input"].as_str(),
                    &g,
                    &mut Timings::default(),
                )
                .unwrap()
                .remove(0);
            let got = model
                .run(
                    &[&img],
                    task,
                    case["text_input"].as_str(),
                    &g,
                    &mut Timings::default(),
                )
                .unwrap()
                .remove(0);
            total += 1;
            if got.token_ids == want.token_ids {
                agree += 1;
            } else {
                eprintln!(
                    "{dtype:?} {}: {:?} vs f32 {:?}",
                    case["name"], got.token_ids, want.token_ids
                );
            }
        }
        eprintln!("{dtype:?}: {agree}/{total} greedy sequences identical to f32");
        assert!(
            agree * 2 >= total,
            "{dtype:?} diverges from f32 on most fixtures"
        );
    }
}
