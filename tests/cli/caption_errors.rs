//! `captiond caption` on bad input: each unreadable image is one readable stderr line naming the
//! file, the other images are still captioned, and the exit code is 1; a folder that is not a
//! model and an unknown task say what is wrong; usage errors exit 2.

use std::path::Path;

use super::support::{image, model, text, Run, TestEnv};

/// Every Florence-2 task token, as the README lists them.
const TASKS: [&str; 15] = [
    "<CAPTION>",
    "<DETAILED_CAPTION>",
    "<MORE_DETAILED_CAPTION>",
    "<OD>",
    "<DENSE_REGION_CAPTION>",
    "<REGION_PROPOSAL>",
    "<OCR>",
    "<OCR_WITH_REGION>",
    "<CAPTION_TO_PHRASE_GROUNDING>",
    "<OPEN_VOCABULARY_DETECTION>",
    "<REGION_TO_CATEGORY>",
    "<REGION_TO_DESCRIPTION>",
    "<REGION_TO_OCR>",
    "<REFERRING_EXPRESSION_SEGMENTATION>",
    "<REGION_TO_SEGMENTATION>",
];

/// `caption --json GOOD1 BAD GOOD2` on the tiny model.
fn caption_args(bad: &Path) -> (Vec<String>, [String; 2]) {
    let good = [
        text(&image("rgb_97x61.png")),
        text(&image("portrait_45x83.png")),
    ];
    let args = vec![
        "caption".to_string(),
        "--model-dir".into(),
        text(&model("tiny-a")),
        "--task".into(),
        "<CAPTION>".into(),
        "--beams".into(),
        "1".into(),
        "--max-new-tokens".into(),
        "5".into(),
        "--json".into(),
        good[0].clone(),
        text(bad),
        good[1].clone(),
    ];
    (args, good)
}

/// Exit 1, the good images captioned in order, and exactly one error line, naming `bad` and
/// containing one of `words` (case-insensitive).
#[track_caller]
fn check_reported_and_rest_captioned(run: &Run, bad: &Path, good: &[String; 2], words: &[&str]) {
    run.expect_code(1);
    let paths: Vec<String> = run.path_task_order().into_iter().map(|(p, _)| p).collect();
    run.check(
        paths == good.to_vec(),
        "stdout should hold exactly the two good images' lines, in order",
    );
    let name = text(bad);
    let naming = run.stderr_lines_with(&name);
    run.check(
        naming.len() == 1,
        format_args!("expected one stderr line naming {name}"),
    );
    let line = naming[0];
    run.check(
        line.starts_with("captiond: error: "),
        "the error line should start with `captiond: error: `",
    );
    let lower = line.to_lowercase();
    run.check(
        words.iter().any(|w| lower.contains(w)),
        format_args!("the error line should say why (one of {words:?})"),
    );
    let errors = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("captiond: error:") || l.trim_start().starts_with("caused by"))
        .count();
    run.check(errors == 1, "expected exactly one error line on stderr");
    run.check(!run.stderr.contains("panicked"), "the binary panicked");
}

#[test]
fn text_file_named_jpg_is_reported_and_the_rest_go_on() {
    let env = TestEnv::new();
    let bad = env.write("photos/photo.jpg", "this is not a photo, only text\n");
    let (args, good) = caption_args(&bad);
    let run = env.run(args);
    check_reported_and_rest_captioned(&run, &bad, &good, &["not an image", "format"]);
}

/// The first half of a real baseline JPEG.
#[test]
fn truncated_jpeg_is_reported_and_the_rest_go_on() {
    let env = TestEnv::new();
    let whole = std::fs::read(image("photo_120x90.jpg")).unwrap();
    let bad = env.write("photos/cut.jpg", &whole[..whole.len() / 2]);
    let (args, good) = caption_args(&bad);
    let run = env.run(args);
    check_reported_and_rest_captioned(&run, &bad, &good, &["truncated", "corrupt"]);
}

#[test]
fn empty_file_is_reported_and_the_rest_go_on() {
    let env = TestEnv::new();
    let bad = env.write("photos/empty.jpg", b"");
    let (args, good) = caption_args(&bad);
    let run = env.run(args);
    check_reported_and_rest_captioned(&run, &bad, &good, &["empty", "0 bytes"]);
}

#[test]
fn missing_file_is_reported_and_the_rest_go_on() {
    let env = TestEnv::new();
    let bad = env.root().join("photos/never-there.jpg");
    let (args, good) = caption_args(&bad);
    let run = env.run(args);
    check_reported_and_rest_captioned(&run, &bad, &good, &["cannot read", "no such file"]);
}

/// A PNG chunk: length, type, data, CRC-32 over type and data.
fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = (data.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = !0u32;
    for &byte in kind.iter().chain(data) {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    out.extend_from_slice(&(!crc).to_be_bytes());
    out
}

/// A well-formed PNG whose IHDR claims `width`×`height` 8-bit RGB, with one tiny stored
/// (uncompressed) zlib block of image data and IEND.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // depth 8, RGB, deflate, adaptive, no interlace
    let raw = [0u8; 4]; // filter byte + a pixel
    let mut zlib = vec![0x78, 0x01, 0x01]; // header, final stored block
    zlib.extend_from_slice(&(raw.len() as u16).to_le_bytes());
    zlib.extend_from_slice(&(!(raw.len() as u16)).to_le_bytes());
    zlib.extend_from_slice(&raw);
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in &raw {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    zlib.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(png_chunk(b"IHDR", &ihdr));
    png.extend(png_chunk(b"IDAT", &zlib));
    png.extend(png_chunk(b"IEND", &[]));
    png
}

#[test]
fn png_chunk_crc_is_right() {
    // The IEND chunk every PNG ends with has this well-known CRC.
    assert_eq!(
        png_chunk(b"IEND", &[]),
        [0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82]
    );
}

/// 60000×60000 RGB would be 10.8 GB of pixels: the header must be refused before any pixel
/// buffer exists. Under a 4 GiB address-space limit and a time limit, so that a decoder that
/// tries anyway fails this test instead of swapping for minutes.
#[test]
fn huge_png_header_fails_fast_without_allocating() {
    let env = TestEnv::new();
    let bad = env.write("photos/huge.png", png_claiming(60_000, 60_000));
    let (args, good) = caption_args(&bad);
    #[cfg(unix)]
    let run = env.run_with_memory_limit(4 << 20, args);
    #[cfg(not(unix))]
    let run = env.run(args);
    check_reported_and_rest_captioned(
        &run,
        &bad,
        &good,
        &["60000", "limit", "too large", "too big"],
    );
}

/// A folder without a model: exit 1, and the message names the folder and every missing file.
#[test]
fn folder_that_is_not_a_model_lists_what_is_missing() {
    let env = TestEnv::new();
    env.write("not-a-model/README.txt", "just notes\n");
    let dir = env.root().join("not-a-model");
    let run = env.run([
        "caption".to_string(),
        "--model-dir".into(),
        text(&dir),
        "--json".into(),
        text(&image("rgb_97x61.png")),
    ]);
    run.expect_code(1);
    run.check(run.stdout.trim().is_empty(), "nothing should be captioned");
    let lines = run.stderr_lines_with(&text(&dir));
    run.check(!lines.is_empty(), "the error should name the folder");
    let all = lines.join("\n");
    for needle in [
        "config.json",
        "preprocessor_config.json",
        "tokenizer.json",
        "model.safetensors",
    ] {
        run.check(
            all.contains(needle),
            format_args!("the error should list missing {needle}"),
        );
    }
    run.check(!run.stderr.contains("panicked"), "the binary panicked");
}

/// An unknown task is refused before anything runs, and the message lists the valid ones.
#[test]
fn unknown_task_lists_the_valid_tasks() {
    let env = TestEnv::new();
    let run = env.run([
        "caption".to_string(),
        "--model-dir".into(),
        text(&model("tiny-a")),
        "--task".into(),
        "<NOPE>".into(),
        "--json".into(),
        text(&image("rgb_97x61.png")),
    ]);
    run.check(
        matches!(run.code(), Some(1 | 2)),
        "an unknown task should exit 1 (runtime) or 2 (usage)",
    );
    run.check(run.stdout.trim().is_empty(), "nothing should be captioned");
    let lines = run.stderr_lines_with("<NOPE>");
    run.check(lines.len() == 1, "one stderr line should name <NOPE>");
    for task in TASKS {
        run.check(
            lines[0].contains(task),
            format_args!("the error should list {task}"),
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    let env = TestEnv::new();
    let tiny = text(&model("tiny-a"));
    let photo = text(&image("rgb_97x61.png"));
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("no IMAGE", vec!["caption", "--model-dir", &tiny, "--json"]),
        (
            "--model with --model-dir",
            vec![
                "caption",
                "--model",
                "test-org/tiny-a",
                "--model-dir",
                &tiny,
                &photo,
            ],
        ),
        (
            "--beams 0",
            vec!["caption", "--model-dir", &tiny, "--beams", "0", &photo],
        ),
        (
            "--dtype f64",
            vec!["caption", "--model-dir", &tiny, "--dtype", "f64", &photo],
        ),
        (
            "unknown flag",
            vec!["caption", "--model-dir", &tiny, "--bogus", &photo],
        ),
        ("no subcommand", vec![]),
    ];
    for (what, args) in cases {
        let run = env.run(args);
        run.check(
            run.code() == Some(2),
            format_args!("{what}: expected exit 2"),
        );
        run.check(
            run.stdout.trim().is_empty(),
            format_args!("{what}: nothing on stdout"),
        );
        run.check(
            !run.stderr.trim().is_empty(),
            format_args!("{what}: stderr should say what is wrong"),
        );
    }
    // The missing-IMAGE message names the argument.
    let run = env.run(["caption", "--model-dir", &tiny]);
    run.check(
        run.stderr.contains("IMAGE"),
        "the usage error should name IMAGE",
    );
}
