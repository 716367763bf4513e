//! Clean + parse stage: turns the text Florence-2 generated (decoded with special tokens kept) into
//! the structured answer for its task: a string for captions, boxes and labels for detection,
//! quadrilaterals for OCR with regions, polygons for segmentation.
//!
//! Mirrors `Florence2Processor.post_process_generation` and `Florence2PostProcessor` in
//! transformers' `models/florence2/processing_florence2.py` (checked against transformers 5.24),
//! value for value: our `--json` `result` field and the parity tests compare with it for exact JSON
//! equality. Product-level cleaning (dropping stray `<loc_N>` from captions, keyword
//! normalisation) is NOT done here; the caller does it (captiond's `clean` module).
//!
//! Details that matter for exactness:
//! - coordinates are dequantised as `(bin + 0.5) * (size / 1000)` in **float32** (torch's default
//!   dtype; the Python float `size / 1000` is rounded to f32 first) and truncated to an integer by
//!   `.int()`; doing it in f64 gives a different integer in a few hundred (size, bin) pairs;
//! - the reference's regexes use look-ahead, which the `regex` crate lacks; each is rewritten as an
//!   equivalent consuming pattern whose capture group covers exactly what the look-ahead match
//!   covered (leftmost-first semantics make the chosen match the same as Python's backtracking);
//! - Python's `\s` and `str.strip()` also treat U+001C..U+001F as whitespace, so those are added;
//! - `<loc_N>` digits are matched as ASCII (the tokenizer only ever produces ASCII digits).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;
use serde_json::{json, Value};

use super::tasks::{py_strip, PostprocessKind, Task};

/// Errors from reading the post-processing settings out of `processor_config.json`.
#[derive(Debug, thiserror::Error)]
pub enum PostprocessError {
    #[error("cannot read processor config {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("processor config {path} is not valid JSON")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// The parts of the reference's `post_processor_config` that change results. Only phrase
/// grounding is configurable in practice: the reference reads `PATTERN`/`AREA_THRESHOLD` (upper
/// case) for OCR while the shipped configs spell them `pattern`/`area_threshold`, so the defaults
/// always apply there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostprocessConfig {
    /// Phrases that `<CAPTION_TO_PHRASE_GROUNDING>` never grounds (compared after stripping,
    /// case-sensitively).
    pub banned_grounding_tokens: HashSet<String>,
}

/// `phrase_grounding.banned_grounding_tokens` as written by transformers'
/// `convert_florence2_original_pytorch_to_hf.py`, i.e. what the florence-community checkpoints
/// ship in `processor_config.json`.
pub const DEFAULT_BANNED_GROUNDING_TOKENS: &[&str] = &[
    "it",
    "I",
    "me",
    "mine",
    "you",
    "your",
    "yours",
    "he",
    "him",
    "his",
    "she",
    "her",
    "hers",
    "they",
    "them",
    "their",
    "theirs",
    "one",
    "oneself",
    "we",
    "us",
    "our",
    "ours",
    "its",
    "myself",
    "yourself",
    "himself",
    "herself",
    "itself",
    "ourselves",
    "yourselves",
    "themselves",
    "this",
    "that",
    "these",
    "those",
    "who",
    "whom",
    "whose",
    "which",
    "what",
    "all",
    "another",
    "any",
    "anybody",
    "anyone",
    "anything",
    "each",
    "everybody",
    "everyone",
    "everything",
    "few",
    "many",
    "nobody",
    "none",
    "several",
    "some",
    "somebody",
    "someone",
    "something",
    "each other",
    "one another",
    "the image",
    "image",
    "images",
    "the",
    "a",
    "an",
    "a group",
    "other objects",
    "lots",
    "a set",
];

impl Default for PostprocessConfig {
    fn default() -> Self {
        PostprocessConfig {
            banned_grounding_tokens: DEFAULT_BANNED_GROUNDING_TOKENS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

impl PostprocessConfig {
    /// Reads `post_processor_config.phrase_grounding.banned_grounding_tokens` from a
    /// `processor_config.json`. A file without that key gives an empty list, which is what the
    /// reference does with such a file.
    pub fn from_processor_config(path: &Path) -> Result<Self, PostprocessError> {
        let text = std::fs::read_to_string(path).map_err(|source| PostprocessError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let value: Value =
            serde_json::from_str(&text).map_err(|source| PostprocessError::Parse {
                path: path.to_path_buf(),
                source,
            })?;
        let banned = value
            .pointer("/post_processor_config/phrase_grounding/banned_grounding_tokens")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        Ok(PostprocessConfig {
            banned_grounding_tokens: banned,
        })
    }
}

/// The value transformers' `post_process_generation(text, task=…, image_size=(W, H))` returns under
/// the task key, with the florence-community post-processing config. `image_size` is the
/// ORIGINAL image's (width, height), not the 768×768 the model saw.
pub fn post_process_generation(text: &str, task: Task, image_size: (u32, u32)) -> Value {
    post_process_generation_with(text, task, image_size, &DEFAULT_CONFIG)
}

static DEFAULT_CONFIG: LazyLock<PostprocessConfig> = LazyLock::new(PostprocessConfig::default);

/// [`post_process_generation`] with an explicit config (e.g. read from the model's
/// `processor_config.json`).
pub fn post_process_generation_with(
    text: &str,
    task: Task,
    image_size: (u32, u32),
    config: &PostprocessConfig,
) -> Value {
    let size = image_size;
    match task.postprocess_kind() {
        PostprocessKind::PureText => {
            Value::String(py_strip(&text.replace("<s>", "").replace("</s>", "")).to_string())
        }
        PostprocessKind::DescriptionWithBboxes | PostprocessKind::Bboxes => {
            let allow_empty = task.postprocess_kind() == PostprocessKind::Bboxes;
            let found = parse_bboxes(text, size, allow_empty, None);
            let (bboxes, labels) = flatten_boxes(found);
            json!({ "bboxes": bboxes, "labels": labels })
        }
        PostprocessKind::PhraseGrounding => {
            let found = parse_bboxes(text, size, false, Some(&config.banned_grounding_tokens));
            let (bboxes, labels) = flatten_boxes(found);
            json!({ "bboxes": bboxes, "labels": labels })
        }
        PostprocessKind::Ocr => {
            let (quads, labels): (Vec<_>, Vec<_>) = parse_ocr(text, size).into_iter().unzip();
            json!({ "quad_boxes": quads, "labels": labels })
        }
        PostprocessKind::Polygons | PostprocessKind::DescriptionWithPolygons => {
            let allow_empty = task.postprocess_kind() == PostprocessKind::Polygons;
            let (polygons, labels): (Vec<_>, Vec<_>) = parse_polygons(text, size, allow_empty)
                .into_iter()
                .map(|p| (p.polygons, p.label))
                .unzip();
            json!({ "polygons": polygons, "labels": labels })
        }
        PostprocessKind::DescriptionWithBboxesOrPolygons => {
            // The reference decides on the whole text; the polygon parser never yields a `bbox`
            // here (`with_box_at_start` is off), so every instance lands in `polygons`.
            let (mut bboxes, mut bboxes_labels) = (Vec::new(), Vec::new());
            let (mut polygons, mut polygons_labels) = (Vec::new(), Vec::new());
            if text.contains("<poly>") {
                for p in parse_polygons(text, size, false) {
                    polygons.push(p.polygons);
                    polygons_labels.push(p.label);
                }
            } else {
                let (b, l) = flatten_boxes(parse_bboxes(text, size, false, None));
                bboxes = b;
                bboxes_labels = l;
            }
            json!({
                "bboxes": bboxes,
                "bboxes_labels": bboxes_labels,
                "polygons": polygons,
                "polygons_labels": polygons_labels,
            })
        }
    }
}

/// Python's `\s` as a character-class body (see the module docs).
macro_rules! py_space {
    () => {
        r"\s\x1C-\x1F"
    };
}

/// `([^<]+(?:<loc_\d+>){4,})`: a label followed by at least one box.
static PHRASE_WITH_BOXES: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[^<]+(?:<loc_[0-9]+>){4,}").unwrap());
/// `(?:(?:<loc_\d+>){4,})`: boxes without a label (`<REGION_PROPOSAL>`).
static BOXES_ONLY: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?:<loc_[0-9]+>){4,}").unwrap());
/// `^\s*(.*?)(?=<od>|</od>|<box>|</box>|<bbox>|</bbox>|<loc_)`; group 1 is the reference's whole
/// match.
static BOX_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"^([",
        py_space!(),
        r"]*.*?)(?:<od>|</od>|<box>|</box>|<bbox>|</bbox>|<loc_)"
    ))
    .unwrap()
});
/// `<loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)>`.
static BOX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"<loc_([0-9]+)><loc_([0-9]+)><loc_([0-9]+)><loc_([0-9]+)>").unwrap()
});
/// The default OCR pattern: lazy text, then eight location tokens (four points).
static OCR_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(.+?)<loc_([0-9]+)><loc_([0-9]+)><loc_([0-9]+)><loc_([0-9]+)><loc_([0-9]+)><loc_([0-9]+)><loc_([0-9]+)><loc_([0-9]+)>",
    )
    .unwrap()
});
/// `([^<]+(?:<loc_\d+>|<sep>|<poly>|</poly>){4,})`.
static POLY_PHRASE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[^<]+(?:<loc_[0-9]+>|<sep>|<poly>|</poly>){4,}").unwrap());
/// `(?:(?:<loc_\d+>|<sep>|<poly>|</poly>){4,})`.
static POLY_ONLY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:<loc_[0-9]+>|<sep>|<poly>|</poly>){4,}").unwrap());
/// `^\s*(.*?)(?=<od>|</od>|<box>|</box>|<bbox>|</bbox>|<loc_|<poly>)`; group 1 as above.
static POLY_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"^([",
        py_space!(),
        r"]*.*?)(?:<od>|</od>|<box>|</box>|<bbox>|</bbox>|<loc_|<poly>)"
    ))
    .unwrap()
});
/// `^<loc_\d+>`.
static LEADING_LOC: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^<loc_[0-9]+>").unwrap());
/// `<poly>(.*?)</poly>`.
static POLY_INSTANCE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"<poly>(.*?)</poly>").unwrap());
/// `((?:<loc_\d+>)+)(?:<sep>|$)`; Python's `$` also matches before a final `\n`.
static POLY_RUN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"((?:<loc_[0-9]+>)+)(?:<sep>|\n?\z)").unwrap());
/// `<loc_(\d+)>`.
static LOC: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"<loc_([0-9]+)>").unwrap());

/// The reference's `text.replace("<s>", "").replace("</s>", "").replace("<pad>", "")`.
fn drop_wrappers(text: &str) -> String {
    text.replace("<s>", "")
        .replace("</s>", "")
        .replace("<pad>", "")
}

/// Python's `str.replace(old, "", 1)`.
fn remove_first(text: &str, pattern: &str) -> String {
    text.replacen(pattern, "", 1)
}

/// `phrase.encode("ascii", "ignore").decode("ascii")`.
fn ascii_only(s: &str) -> String {
    s.chars().filter(char::is_ascii).collect()
}

/// A quantisation bin as Python's `int()` reads it. Bins above 999 cannot come from the tokenizer
/// but can be spelled out in plain text; they are kept, as the reference keeps them.
fn parse_bin(digits: &str) -> i64 {
    digits.parse().unwrap_or(i64::MAX)
}

/// `Florence2PostProcessor.dequantize` for one coordinate: `((bin + 0.5) * per_bin).int()` in
/// float32, `per_bin = size / 1000` computed in f64 then rounded to f32 by torch.
fn dequantize(bin: i64, size: u32) -> i64 {
    let per_bin = (size as f64 / 1000.0) as f32;
    let v = (bin as f32 + 0.5) * per_bin;
    v as i64
}

/// Labels and their boxes, in order; one label per box.
type LabelledBoxes = Vec<(String, [i64; 4])>;

/// `parse_description_with_bboxes_from_text_and_spans` (and, with `banned`, the phrase-grounding
/// parser, which differs only by that filter and by grouping the boxes per phrase, which the
/// final flattening undoes).
fn parse_bboxes(
    text: &str,
    (w, h): (u32, u32),
    allow_empty_phrase: bool,
    banned: Option<&HashSet<String>>,
) -> LabelledBoxes {
    let text = drop_wrappers(text);
    let phrases = if allow_empty_phrase {
        &*BOXES_ONLY
    } else {
        &*PHRASE_WITH_BOXES
    };
    let mut out = Vec::new();
    for m in phrases.find_iter(&text) {
        let phrase_text = remove_first(&remove_first(m.as_str(), "<ground>"), "<obj>");
        if phrase_text.is_empty() && !allow_empty_phrase {
            continue;
        }
        let Some(label) = BOX_LABEL.captures(&phrase_text) else {
            continue;
        };
        let phrase = py_strip(label.get(1).map_or("", |g| g.as_str()));
        if banned.is_some_and(|b| b.contains(phrase)) {
            continue;
        }
        let phrase = ascii_only(phrase);
        for caps in BOX.captures_iter(&phrase_text) {
            let bin = |i: usize| parse_bin(&caps[i]);
            let bbox = [
                dequantize(bin(1), w),
                dequantize(bin(2), h),
                dequantize(bin(3), w),
                dequantize(bin(4), h),
            ];
            out.push((phrase.clone(), bbox));
        }
    }
    out
}

fn flatten_boxes(found: LabelledBoxes) -> (Vec<[i64; 4]>, Vec<String>) {
    let (labels, boxes) = found.into_iter().unzip();
    (boxes, labels)
}

/// `parse_ocr_from_text_and_spans` with the default pattern and no area threshold.
fn parse_ocr(text: &str, (w, h): (u32, u32)) -> Vec<([i64; 8], String)> {
    let text = drop_wrappers(text);
    OCR_LINE
        .captures_iter(&text)
        .map(|caps| {
            let mut quad = [0i64; 8];
            for (i, q) in quad.iter_mut().enumerate() {
                let size = if i % 2 == 0 { w } else { h };
                *q = dequantize(parse_bin(&caps[i + 2]), size);
            }
            (quad, py_strip(&caps[1]).to_string())
        })
        .collect()
}

struct PolygonInstance {
    label: String,
    polygons: Vec<Vec<i64>>,
}

/// `parse_description_with_polygons_from_text_and_spans` with the default tokens and
/// `with_box_at_start=False`. Labels are stripped but, unlike the box parsers, keep non-ASCII.
fn parse_polygons(
    text: &str,
    (w, h): (u32, u32),
    allow_empty_phrase: bool,
) -> Vec<PolygonInstance> {
    let text = drop_wrappers(text);
    let phrases = if allow_empty_phrase {
        &*POLY_ONLY
    } else {
        &*POLY_PHRASE
    };
    let mut out = Vec::new();
    for m in phrases.find_iter(&text) {
        let phrase_text = m.as_str();
        let stripped = LEADING_LOC.replace(phrase_text, "");
        if stripped.is_empty() && !allow_empty_phrase {
            continue;
        }
        let Some(label) = POLY_LABEL.captures(&stripped) else {
            continue;
        };
        let label = py_strip(label.get(1).map_or("", |g| g.as_str())).to_string();

        let instances: Vec<&str> =
            if phrase_text.contains("<poly>") && phrase_text.contains("</poly>") {
                POLY_INSTANCE
                    .captures_iter(phrase_text)
                    .map(|c| c.get(1).map_or("", |g| g.as_str()))
                    .collect()
            } else {
                vec![phrase_text]
            };
        for inst in instances {
            let mut polygons = Vec::new();
            for run in POLY_RUN.captures_iter(inst) {
                let mut bins: Vec<i64> = LOC
                    .captures_iter(&run[1])
                    .map(|c| parse_bin(&c[1]))
                    .collect();
                if bins.len() % 2 == 1 {
                    bins.pop();
                }
                let coords = bins
                    .chunks_exact(2)
                    .flat_map(|p| [dequantize(p[0], w), dequantize(p[1], h)])
                    .collect();
                polygons.push(coords);
            }
            if polygons.is_empty() {
                continue;
            }
            out.push(PolygonInstance {
                label: label.clone(),
                polygons,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pp(text: &str, task: &str, size: (u32, u32)) -> Value {
        post_process_generation(text, task.parse().unwrap(), size)
    }

    #[test]
    fn dequantize_uses_float32() {
        // (62 + 0.5) * 4.032 is exactly 252 in real numbers; f32 rounding keeps it at 252.
        assert_eq!(dequantize(62, 4032), 252);
        assert_eq!(dequantize(0, 1000), 0);
        assert_eq!(dequantize(999, 1000), 999);
        assert_eq!(dequantize(999, 768), 767);
        assert_eq!(dequantize(500, 3024), 1513);
        // Cases where f64 arithmetic would give a different integer than torch's f32
        // (found by comparing with torch over all bins and sizes up to 5000).
        for (bin, size, torch) in [(2, 2000, 5), (6, 2000, 13), (30, 1200, 36)] {
            assert_eq!(dequantize(bin, size), torch, "bin {bin} size {size}");
        }
    }

    #[test]
    fn captions_only_lose_s_tags() {
        assert_eq!(
            pp("</s><s>A green car parked.</s>", "<CAPTION>", (10, 10)),
            json!("A green car parked.")
        );
        // Stray loc and pad tokens are kept: the reference keeps them.
        assert_eq!(
            pp(
                "<s> A dog<loc_5> on grass <pad></s><pad>",
                "<MORE_DETAILED_CAPTION>",
                (1, 1)
            ),
            json!("A dog<loc_5> on grass <pad></s><pad>".replace("</s>", ""))
        );
        assert_eq!(pp("", "<OCR>", (1, 1)), json!(""));
        assert_eq!(
            pp("<s><<s>/s>x", "<REGION_TO_CATEGORY>", (1, 1)),
            json!("x")
        );
    }

    #[test]
    fn od_boxes_and_labels() {
        let text = "</s><s>car<loc_52><loc_332><loc_932><loc_774>door handle<loc_755><loc_548><loc_769><loc_568>wheel<loc_706><loc_575><loc_866><loc_772><loc_147><loc_583><loc_305><loc_773></s>";
        let v = pp(text, "<OD>", (1000, 1000));
        assert_eq!(
            v,
            json!({
                "bboxes": [[52, 332, 932, 774], [755, 548, 769, 568], [706, 575, 866, 772], [147, 583, 305, 773]],
                "labels": ["car", "door handle", "wheel", "wheel"],
            })
        );
        let v = pp(text, "<OD>", (4032, 3024));
        assert_eq!(v["bboxes"][0], json!([211, 1005, 3759, 2342]));
    }

    #[test]
    fn od_label_cleaning_and_leftovers() {
        // Non-ASCII is dropped after stripping (so a leading space can survive), five leftover
        // loc tokens give one box, text after the last box is ignored, a label with fewer than
        // four locs is absorbed into nothing.
        let text = "  café <loc_1><loc_2><loc_3><loc_4><loc_5>\u{e9} x<loc_1><loc_2><loc_3><loc_4>tail<loc_9>";
        let v = pp(text, "<OD>", (1000, 1000));
        assert_eq!(
            v,
            json!({"bboxes": [[1, 2, 3, 4], [1, 2, 3, 4]], "labels": ["caf", " x"]})
        );
        // A newline inside a label makes the reference's `.*?` fail: the phrase is skipped.
        let v = pp("a\nb<loc_1><loc_2><loc_3><loc_4>", "<OD>", (1000, 1000));
        assert_eq!(v, json!({"bboxes": [], "labels": []}));
        // A leading newline is eaten by `\s*`.
        let v = pp("\nab<loc_1><loc_2><loc_3><loc_4>", "<OD>", (1000, 1000));
        assert_eq!(v, json!({"bboxes": [[1, 2, 3, 4]], "labels": ["ab"]}));
        // No boxes at all.
        assert_eq!(
            pp("nothing", "<OD>", (5, 5)),
            json!({"bboxes": [], "labels": []})
        );
    }

    #[test]
    fn region_proposal_has_empty_labels() {
        let text = "</s><s><loc_0><loc_0><loc_999><loc_999><loc_10><loc_20><loc_30><loc_40></s>";
        let v = pp(text, "<REGION_PROPOSAL>", (200, 100));
        assert_eq!(
            v,
            json!({"bboxes": [[0, 0, 199, 99], [2, 2, 6, 4]], "labels": ["", ""]})
        );
    }

    #[test]
    fn ocr_with_region() {
        let text = "</s><s>CUDA<loc_100><loc_200><loc_300><loc_200><loc_300><loc_250><loc_100><loc_250> hello world <loc_1><loc_2><loc_3><loc_4><loc_5><loc_6><loc_7><loc_8>rest</s>";
        let v = pp(text, "<OCR_WITH_REGION>", (1000, 500));
        assert_eq!(
            v,
            json!({
                "quad_boxes": [[100, 100, 300, 100, 300, 125, 100, 125], [1, 1, 3, 2, 5, 3, 7, 4]],
                "labels": ["CUDA", "hello world"],
            })
        );
    }

    #[test]
    fn phrase_grounding_bans_pronouns() {
        let text = "</s><s>A green car<loc_52><loc_332><loc_932><loc_774>it<loc_1><loc_2><loc_3><loc_4>a yellow building<loc_0><loc_0><loc_999><loc_400><loc_5><loc_5><loc_6><loc_6></s>";
        let v = pp(text, "<CAPTION_TO_PHRASE_GROUNDING>", (1000, 1000));
        assert_eq!(
            v,
            json!({
                "bboxes": [[52, 332, 932, 774], [0, 0, 999, 400], [5, 5, 6, 6]],
                "labels": ["A green car", "a yellow building", "a yellow building"],
            })
        );
        let none = PostprocessConfig {
            banned_grounding_tokens: HashSet::new(),
        };
        let v =
            post_process_generation_with(text, Task::CaptionToPhraseGrounding, (1000, 1000), &none);
        assert_eq!(v["labels"][1], json!("it"));
    }

    #[test]
    fn segmentation_polygons() {
        let text = "</s><s><loc_100><loc_100><loc_200><loc_100><loc_200><loc_200><loc_150><loc_250><loc_9><sep><loc_1><loc_2><loc_3><loc_4></s>";
        let v = pp(text, "<REFERRING_EXPRESSION_SEGMENTATION>", (1000, 1000));
        assert_eq!(
            v,
            json!({
                "polygons": [[[100, 100, 200, 100, 200, 200, 150, 250], [1, 2, 3, 4]]],
                "labels": [""],
            })
        );
        // With <poly> wrappers each instance is separate; an odd loc count drops the last one.
        let text = "<poly><loc_1><loc_2><loc_3></poly><poly><loc_4><loc_5><loc_6><loc_7></poly>";
        let v = pp(text, "<REGION_TO_SEGMENTATION>", (2000, 1000));
        assert_eq!(
            v,
            json!({
                "polygons": [[[3, 2]], [[9, 5, 13, 7]]],
                "labels": ["", ""],
            })
        );
    }

    #[test]
    fn open_vocabulary_detection_switches_on_poly() {
        let text = "</s><s>a green car<loc_52><loc_332><loc_932><loc_774></s>";
        let v = pp(text, "<OPEN_VOCABULARY_DETECTION>", (1000, 1000));
        assert_eq!(
            v,
            json!({
                "bboxes": [[52, 332, 932, 774]],
                "bboxes_labels": ["a green car"],
                "polygons": [],
                "polygons_labels": [],
            })
        );
        let text = "a green car<poly><loc_1><loc_2><loc_3><loc_4></poly>";
        let v = pp(text, "<OPEN_VOCABULARY_DETECTION>", (1000, 1000));
        assert_eq!(
            v,
            json!({
                "bboxes": [],
                "bboxes_labels": [],
                "polygons": [[[1, 2, 3, 4]]],
                "polygons_labels": ["a green car"],
            })
        );
    }

    #[test]
    fn processor_config_banned_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("processor_config.json");
        std::fs::write(
            &path,
            r#"{"post_processor_config": {"phrase_grounding": {"banned_grounding_tokens": ["the image"]}}}"#,
        )
        .unwrap();
        let cfg = PostprocessConfig::from_processor_config(&path).unwrap();
        assert_eq!(cfg.banned_grounding_tokens.len(), 1);
        assert!(cfg.banned_grounding_tokens.contains("the image"));
        std::fs::write(&path, "{").unwrap();
        assert!(matches!(
            PostprocessConfig::from_processor_config(&path),
            Err(PostprocessError::Parse { .. })
        ));
    }

    /// Random generations (broken tokens, non-ASCII, newlines, out-of-range bins, every task)
    /// run through transformers' own `post_process_generation` by
    /// `tests/fixtures/processor/make_fixtures.py`.
    #[test]
    fn fuzz_matches_reference() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/processor/postprocess_fuzz.json");
        let root: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let cases = root["cases"].as_array().unwrap();
        let mut failures = Vec::new();
        for (i, case) in cases.iter().enumerate() {
            let task: Task = case["task"].as_str().unwrap().parse().unwrap();
            let text = case["text"].as_str().unwrap();
            let size = (
                case["image_size"][0].as_u64().unwrap() as u32,
                case["image_size"][1].as_u64().unwrap() as u32,
            );
            let got = post_process_generation(text, task, size);
            if got != case["result"] {
                failures.push(format!(
                    "#{i} {task} {size:?} {text:?}\n  want {}\n  got  {got}",
                    case["result"]
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// Golden data written by the reference for many sequences and image sizes. The file is
    /// produced by the fixture builder; until it exists this test has nothing to check.
    #[test]
    fn golden_manifest_matches_reference() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let manifest = fixtures.join("golden/tiny-a/manifest.json");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            eprintln!("{} not present; skipping", manifest.display());
            return;
        };
        let root: Value = serde_json::from_str(&text).expect("manifest.json is valid JSON");
        // The banned grounding phrases come from the fixture model's processor_config.json.
        let processor_config = root["model"]
            .as_str()
            .map(|m| fixtures.join(m).join("processor_config.json"))
            .filter(|p| p.exists());
        let config = match processor_config {
            Some(path) => PostprocessConfig::from_processor_config(&path).unwrap(),
            None => PostprocessConfig::default(),
        };
        assert_eq!(config, PostprocessConfig::default());
        let entries = root["postprocess"]
            .as_array()
            .expect("manifest has a \"postprocess\" array");
        let mut failures = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let task: Task = entry["task"].as_str().unwrap().parse().unwrap();
            let text = entry["text"].as_str().unwrap();
            let size = &entry["image_size"];
            let size = (
                size[0].as_u64().unwrap() as u32,
                size[1].as_u64().unwrap() as u32,
            );
            let got = post_process_generation_with(text, task, size, &config);
            if got != entry["result"] {
                failures.push(format!(
                    "#{i} {task} {size:?} {text:?}\n  want {}\n  got  {got}",
                    entry["result"]
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} entries differ:\n{}",
            failures.len(),
            entries.len(),
            failures.join("\n")
        );
    }
}
