//! Caption stage, before the model: the Florence-2 task tokens, the prompt each one expands to and the
//! kind of post-processing its answer needs.
//!
//! Mirrors `Florence2Processor._construct_prompts`, `task_prompts_without_inputs`,
//! `task_prompts_with_input` and `tasks_answer_post_processing_type` in transformers'
//! `models/florence2/processing_florence2.py` (checked against transformers 5.24).
//!
//! The model was trained on the expanded English prompts, never on the task tokens themselves, so
//! the expansion has to be byte-for-byte the reference's or the token ids (and so the output) drift.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Errors from parsing a task name or building a prompt.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The string is not one of the fifteen Florence-2 task tokens.
    #[error(
        "unknown Florence-2 task {given:?}; valid tasks: {}",
        Task::valid_list()
    )]
    Unknown { given: String },
    /// A task that takes no input was given extra text. The reference raises
    /// `ValueError("Task token <X> should be the only content in the prompt.")` here.
    #[error("task token {task} must be the whole prompt, but extra text was given: {prompt:?}")]
    UnexpectedInput { task: Task, prompt: String },
}

/// One Florence-2 task, named after its task token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Task {
    /// `<CAPTION>`: one short sentence.
    Caption,
    /// `<DETAILED_CAPTION>`: a few sentences.
    DetailedCaption,
    /// `<MORE_DETAILED_CAPTION>`: a paragraph.
    MoreDetailedCaption,
    /// `<OD>`: object detection, category labels with boxes.
    Od,
    /// `<DENSE_REGION_CAPTION>`: short descriptions with boxes.
    DenseRegionCaption,
    /// `<REGION_PROPOSAL>`: boxes without labels.
    RegionProposal,
    /// `<OCR>`: the text in the image.
    Ocr,
    /// `<OCR_WITH_REGION>`: text lines with quadrilaterals.
    OcrWithRegion,
    /// `<CAPTION_TO_PHRASE_GROUNDING>` + caption: boxes for the phrases of a caption.
    CaptionToPhraseGrounding,
    /// `<OPEN_VOCABULARY_DETECTION>` + object name: boxes (or polygons) for that object.
    OpenVocabularyDetection,
    /// `<REGION_TO_CATEGORY>` + `<loc_…>`×4: the category of a region.
    RegionToCategory,
    /// `<REGION_TO_DESCRIPTION>` + `<loc_…>`×4: a description of a region.
    RegionToDescription,
    /// `<REGION_TO_OCR>` + `<loc_…>`×4: the text in a region.
    RegionToOcr,
    /// `<REFERRING_EXPRESSION_SEGMENTATION>` + expression: polygons.
    ReferringExpressionSegmentation,
    /// `<REGION_TO_SEGMENTATION>` + `<loc_…>`×4: polygons for a region.
    RegionToSegmentation,
}

/// How a task's generated text is parsed; the names are the reference's
/// `tasks_answer_post_processing_type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PostprocessKind {
    /// `pure_text`: the text with `<s>`/`</s>` removed, stripped.
    PureText,
    /// `description_with_bboxes`: `{"bboxes", "labels"}`.
    DescriptionWithBboxes,
    /// `bboxes`: `{"bboxes", "labels"}` with empty labels allowed.
    Bboxes,
    /// `ocr`: `{"quad_boxes", "labels"}`.
    Ocr,
    /// `phrase_grounding`: `{"bboxes", "labels"}`, pronoun-like phrases dropped.
    PhraseGrounding,
    /// `polygons`: `{"polygons", "labels"}` with empty labels allowed.
    Polygons,
    /// `description_with_polygons`: `{"polygons", "labels"}`. No task maps here in the reference
    /// table, but its parser exists, so it is kept for completeness.
    DescriptionWithPolygons,
    /// `description_with_bboxes_or_polygons`:
    /// `{"bboxes", "bboxes_labels", "polygons", "polygons_labels"}`.
    DescriptionWithBboxesOrPolygons,
}

impl PostprocessKind {
    /// The reference's name for this kind (`"pure_text"`, `"ocr"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            PostprocessKind::PureText => "pure_text",
            PostprocessKind::DescriptionWithBboxes => "description_with_bboxes",
            PostprocessKind::Bboxes => "bboxes",
            PostprocessKind::Ocr => "ocr",
            PostprocessKind::PhraseGrounding => "phrase_grounding",
            PostprocessKind::Polygons => "polygons",
            PostprocessKind::DescriptionWithPolygons => "description_with_polygons",
            PostprocessKind::DescriptionWithBboxesOrPolygons => {
                "description_with_bboxes_or_polygons"
            }
        }
    }
}

/// Tasks whose prompt is a fixed sentence, in the reference dict's order (the order matters only
/// for prompts that contain several task tokens, where the first hit wins).
const WITHOUT_INPUT: [(Task, &str); 8] = [
    (Task::Ocr, "What is the text in the image?"),
    (
        Task::OcrWithRegion,
        "What is the text in the image, with regions?",
    ),
    (Task::Caption, "What does the image describe?"),
    (
        Task::DetailedCaption,
        "Describe in detail what is shown in the image.",
    ),
    (
        Task::MoreDetailedCaption,
        "Describe with a paragraph what is shown in the image.",
    ),
    (
        Task::Od,
        "Locate the objects with category name in the image.",
    ),
    (
        Task::DenseRegionCaption,
        "Locate the objects in the image, with their descriptions.",
    ),
    (
        Task::RegionProposal,
        "Locate the region proposals in the image.",
    ),
];

/// Tasks whose prompt embeds the user's text at `{input}`, in the reference dict's order.
const WITH_INPUT: [(Task, &str); 7] = [
    (
        Task::CaptionToPhraseGrounding,
        "Locate the phrases in the caption: {input}",
    ),
    (
        Task::ReferringExpressionSegmentation,
        "Locate {input} in the image with mask",
    ),
    (
        Task::RegionToSegmentation,
        "What is the polygon mask of region {input}",
    ),
    (
        Task::OpenVocabularyDetection,
        "Locate {input} in the image.",
    ),
    (Task::RegionToCategory, "What is the region {input}?"),
    (
        Task::RegionToDescription,
        "What does the region {input} describe?",
    ),
    (Task::RegionToOcr, "What text is in the region {input}?"),
];

impl Task {
    /// Every task, in the order of the list in the module docs.
    pub const ALL: [Task; 15] = [
        Task::Caption,
        Task::DetailedCaption,
        Task::MoreDetailedCaption,
        Task::Od,
        Task::DenseRegionCaption,
        Task::RegionProposal,
        Task::Ocr,
        Task::OcrWithRegion,
        Task::CaptionToPhraseGrounding,
        Task::OpenVocabularyDetection,
        Task::RegionToCategory,
        Task::RegionToDescription,
        Task::RegionToOcr,
        Task::ReferringExpressionSegmentation,
        Task::RegionToSegmentation,
    ];

    /// The task token, e.g. `"<MORE_DETAILED_CAPTION>"`: the key of the reference's result dict and
    /// the string stored with each result.
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Caption => "<CAPTION>",
            Task::DetailedCaption => "<DETAILED_CAPTION>",
            Task::MoreDetailedCaption => "<MORE_DETAILED_CAPTION>",
            Task::Od => "<OD>",
            Task::DenseRegionCaption => "<DENSE_REGION_CAPTION>",
            Task::RegionProposal => "<REGION_PROPOSAL>",
            Task::Ocr => "<OCR>",
            Task::OcrWithRegion => "<OCR_WITH_REGION>",
            Task::CaptionToPhraseGrounding => "<CAPTION_TO_PHRASE_GROUNDING>",
            Task::OpenVocabularyDetection => "<OPEN_VOCABULARY_DETECTION>",
            Task::RegionToCategory => "<REGION_TO_CATEGORY>",
            Task::RegionToDescription => "<REGION_TO_DESCRIPTION>",
            Task::RegionToOcr => "<REGION_TO_OCR>",
            Task::ReferringExpressionSegmentation => "<REFERRING_EXPRESSION_SEGMENTATION>",
            Task::RegionToSegmentation => "<REGION_TO_SEGMENTATION>",
        }
    }

    /// Whether the prompt embeds user text (a caption, an object name or a `<loc_…>` region).
    /// The reference does not insist on it: without input it formats an empty string into the
    /// template (see [`Task::prompt`]), so configuration checks should use this to refuse such tasks
    /// when no input is configured.
    pub fn takes_input(self) -> bool {
        WITH_INPUT.iter().any(|(t, _)| *t == self)
    }

    /// The pure-text caption tasks, whose answer is a description of the whole image (what the
    /// catalog stores as *the* caption). OCR and the region-to-text tasks are pure text too but are
    /// not captions.
    pub fn is_caption(self) -> bool {
        matches!(
            self,
            Task::Caption | Task::DetailedCaption | Task::MoreDetailedCaption
        )
    }

    /// The post-processing the reference applies to this task's answer.
    pub fn postprocess_kind(self) -> PostprocessKind {
        use PostprocessKind as K;
        match self {
            Task::Ocr
            | Task::Caption
            | Task::DetailedCaption
            | Task::MoreDetailedCaption
            | Task::RegionToCategory
            | Task::RegionToDescription
            | Task::RegionToOcr => K::PureText,
            Task::OcrWithRegion => K::Ocr,
            Task::Od | Task::DenseRegionCaption => K::DescriptionWithBboxes,
            Task::CaptionToPhraseGrounding => K::PhraseGrounding,
            Task::ReferringExpressionSegmentation | Task::RegionToSegmentation => K::Polygons,
            Task::OpenVocabularyDetection => K::DescriptionWithBboxesOrPolygons,
            Task::RegionProposal => K::Bboxes,
        }
    }

    /// The text prompt the tokenizer sees, exactly as the reference builds it from
    /// `task_token + text_input`:
    ///
    /// - tasks without input: the fixed sentence; any non-empty extra text is an error (the
    ///   reference raises `ValueError`), an empty `Some("")` is the same as `None`;
    /// - tasks with input: the input with surrounding whitespace stripped (Python `str.strip`) put
    ///   into the template. A missing input is NOT an error in the reference: it formats an empty
    ///   string, giving e.g. `"Locate  in the image."` (two spaces). We mirror that so that our
    ///   token ids always equal the reference's; callers that want to refuse it check
    ///   [`Task::takes_input`].
    pub fn prompt(self, text_input: Option<&str>) -> Result<String, TaskError> {
        let raw = format!("{}{}", self.as_str(), text_input.unwrap_or(""));
        construct_prompt(&raw)
    }

    fn valid_list() -> String {
        Task::ALL
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `Florence2Processor._construct_prompts` for one free-form prompt.
///
/// The reference looks for each task token as a *substring* (first the fixed-prompt tasks, then
/// the ones with input, each in dict order):
/// - a fixed-prompt token found anywhere: the prompt must be exactly that token, else `ValueError`
///   (here [`TaskError::UnexpectedInput`]); it becomes the fixed sentence;
/// - a with-input token found anywhere: every occurrence is removed, the rest stripped and put
///   into the template (so `"a dog <OPEN_VOCABULARY_DETECTION>"` also works);
/// - no task token: the prompt is passed through unchanged (Florence-2 then answers a free
///   question, with `pure_text` post-processing).
pub fn construct_prompt(prompt: &str) -> Result<String, TaskError> {
    let mut prompt = prompt.to_string();
    for (task, sentence) in WITHOUT_INPUT {
        if prompt.contains(task.as_str()) {
            if prompt != task.as_str() {
                return Err(TaskError::UnexpectedInput { task, prompt });
            }
            prompt = sentence.to_string();
            break;
        }
    }
    for (task, template) in WITH_INPUT {
        if prompt.contains(task.as_str()) {
            let input = prompt.replace(task.as_str(), "");
            let input = py_strip(&input);
            // `str.format(input=…)` substitutes once and never re-reads the inserted text.
            prompt = template.replacen("{input}", input, 1);
            break;
        }
    }
    Ok(prompt)
}

/// Python's `str.strip()` with no argument: Python counts U+001C..U+001F as whitespace, Rust does
/// not; everything else agrees.
pub(crate) fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// Python's `str.isspace()` for one character.
pub(crate) fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Task {
    type Err = TaskError;

    /// Accepts the task token (`<OD>`), and, for command lines and config files, the same name
    /// without brackets and in any case (`od`, `more_detailed_caption`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        let bare = trimmed
            .strip_prefix('<')
            .and_then(|t| t.strip_suffix('>'))
            .unwrap_or(trimmed);
        Task::ALL
            .into_iter()
            .find(|t| {
                let token = t.as_str();
                token[1..token.len() - 1].eq_ignore_ascii_case(bare)
            })
            .ok_or_else(|| TaskError::Unknown {
                given: s.to_string(),
            })
    }
}

impl Serialize for Task {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Task {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for task in Task::ALL {
            assert_eq!(task.as_str().parse::<Task>().unwrap(), task);
            assert_eq!(task.to_string(), task.as_str());
        }
        assert_eq!("od".parse::<Task>().unwrap(), Task::Od);
        assert_eq!(
            " more_detailed_caption ".parse::<Task>().unwrap(),
            Task::MoreDetailedCaption
        );
        assert_eq!("<ocr>".parse::<Task>().unwrap(), Task::Ocr);
    }

    #[test]
    fn unknown_task_lists_valid_ones() {
        let err = "<SUMMARY>".parse::<Task>().unwrap_err().to_string();
        assert!(err.contains("<SUMMARY>"), "{err}");
        for task in Task::ALL {
            assert!(err.contains(task.as_str()), "{err}");
        }
        assert!("".parse::<Task>().is_err());
        assert!("<>".parse::<Task>().is_err());
    }

    #[test]
    fn fixed_prompts() {
        let expect = [
            (Task::Caption, "What does the image describe?"),
            (
                Task::DetailedCaption,
                "Describe in detail what is shown in the image.",
            ),
            (
                Task::MoreDetailedCaption,
                "Describe with a paragraph what is shown in the image.",
            ),
            (
                Task::Od,
                "Locate the objects with category name in the image.",
            ),
            (
                Task::DenseRegionCaption,
                "Locate the objects in the image, with their descriptions.",
            ),
            (
                Task::RegionProposal,
                "Locate the region proposals in the image.",
            ),
            (Task::Ocr, "What is the text in the image?"),
            (
                Task::OcrWithRegion,
                "What is the text in the image, with regions?",
            ),
        ];
        for (task, sentence) in expect {
            assert!(!task.takes_input());
            assert_eq!(task.prompt(None).unwrap(), sentence);
            assert_eq!(task.prompt(Some("")).unwrap(), sentence);
        }
    }

    #[test]
    fn fixed_prompt_with_extra_text_is_an_error() {
        let err = Task::Caption.prompt(Some(" a dog")).unwrap_err();
        assert!(matches!(
            err,
            TaskError::UnexpectedInput {
                task: Task::Caption,
                ..
            }
        ));
        // Whitespace counts as content too, as in the reference (`prompt != task_token`).
        assert!(Task::Od.prompt(Some(" ")).is_err());
        assert!(construct_prompt("Please <OD>").is_err());
    }

    #[test]
    fn prompts_with_input() {
        let cases = [
            (
                Task::CaptionToPhraseGrounding,
                "A green car parked in front of a yellow building.",
                "Locate the phrases in the caption: A green car parked in front of a yellow building.",
            ),
            (
                Task::OpenVocabularyDetection,
                "a green car",
                "Locate a green car in the image.",
            ),
            (
                Task::RegionToCategory,
                "<loc_52><loc_332><loc_932><loc_774>",
                "What is the region <loc_52><loc_332><loc_932><loc_774>?",
            ),
            (
                Task::RegionToDescription,
                "<loc_1><loc_2><loc_3><loc_4>",
                "What does the region <loc_1><loc_2><loc_3><loc_4> describe?",
            ),
            (
                Task::RegionToOcr,
                "<loc_1><loc_2><loc_3><loc_4>",
                "What text is in the region <loc_1><loc_2><loc_3><loc_4>?",
            ),
            (
                Task::ReferringExpressionSegmentation,
                "a green car",
                "Locate a green car in the image with mask",
            ),
            (
                Task::RegionToSegmentation,
                "<loc_1><loc_2><loc_3><loc_4>",
                "What is the polygon mask of region <loc_1><loc_2><loc_3><loc_4>",
            ),
        ];
        for (task, input, expect) in cases {
            assert!(task.takes_input());
            assert_eq!(task.prompt(Some(input)).unwrap(), expect);
            // Surrounding whitespace is stripped, inner whitespace kept.
            let padded = format!(" \t{input}\n");
            assert_eq!(task.prompt(Some(&padded)).unwrap(), expect);
        }
    }

    #[test]
    fn missing_input_formats_an_empty_string_like_the_reference() {
        assert_eq!(
            Task::OpenVocabularyDetection.prompt(None).unwrap(),
            "Locate  in the image."
        );
        assert_eq!(
            Task::CaptionToPhraseGrounding.prompt(None).unwrap(),
            "Locate the phrases in the caption: "
        );
    }

    #[test]
    fn free_prompts_pass_through() {
        assert_eq!(
            construct_prompt("What colour is the car?").unwrap(),
            "What colour is the car?"
        );
        assert_eq!(construct_prompt("").unwrap(), "");
        // A with-input token anywhere in the prompt is removed, every occurrence.
        assert_eq!(
            construct_prompt("a dog <OPEN_VOCABULARY_DETECTION>").unwrap(),
            "Locate a dog in the image."
        );
        assert_eq!(
            construct_prompt("<REGION_TO_OCR>x<REGION_TO_OCR>y").unwrap(),
            "What text is in the region xy?"
        );
        // Braces in the input are not format fields.
        assert_eq!(
            Task::OpenVocabularyDetection
                .prompt(Some("{input}"))
                .unwrap(),
            "Locate {input} in the image."
        );
    }

    #[test]
    fn python_strip_semantics() {
        assert_eq!(py_strip("\u{1f} a b \u{a0}"), "a b");
        assert_eq!(py_strip("\u{200b}x"), "\u{200b}x");
    }

    #[test]
    fn postprocess_table_matches_reference() {
        use PostprocessKind as K;
        let expect = [
            ("<OCR>", "pure_text"),
            ("<OCR_WITH_REGION>", "ocr"),
            ("<CAPTION>", "pure_text"),
            ("<DETAILED_CAPTION>", "pure_text"),
            ("<MORE_DETAILED_CAPTION>", "pure_text"),
            ("<OD>", "description_with_bboxes"),
            ("<DENSE_REGION_CAPTION>", "description_with_bboxes"),
            ("<CAPTION_TO_PHRASE_GROUNDING>", "phrase_grounding"),
            ("<REFERRING_EXPRESSION_SEGMENTATION>", "polygons"),
            ("<REGION_TO_SEGMENTATION>", "polygons"),
            (
                "<OPEN_VOCABULARY_DETECTION>",
                "description_with_bboxes_or_polygons",
            ),
            ("<REGION_TO_CATEGORY>", "pure_text"),
            ("<REGION_TO_DESCRIPTION>", "pure_text"),
            ("<REGION_TO_OCR>", "pure_text"),
            ("<REGION_PROPOSAL>", "bboxes"),
        ];
        assert_eq!(expect.len(), Task::ALL.len());
        for (token, kind) in expect {
            let task: Task = token.parse().unwrap();
            assert_eq!(task.postprocess_kind().as_str(), kind, "{token}");
        }
        assert_eq!(
            K::DescriptionWithPolygons.as_str(),
            "description_with_polygons"
        );
    }

    #[test]
    fn caption_tasks() {
        let captions: Vec<_> = Task::ALL.into_iter().filter(|t| t.is_caption()).collect();
        assert_eq!(
            captions,
            [
                Task::Caption,
                Task::DetailedCaption,
                Task::MoreDetailedCaption
            ]
        );
    }

    /// The prompts transformers built for the fixture models (written by the fixture builder).
    #[test]
    fn golden_prompts_match_reference() {
        let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/golden/tiny-a/manifest.json");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            eprintln!("{} not present; skipping", manifest.display());
            return;
        };
        let root: serde_json::Value = serde_json::from_str(&text).unwrap();
        let prompts = root["prompts"].as_array().expect("\"prompts\" array");
        assert!(!prompts.is_empty());
        for p in prompts {
            let task: Task = p["task"].as_str().unwrap().parse().unwrap();
            let got = task.prompt(p["text_input"].as_str()).unwrap();
            assert_eq!(got, p["prompt"].as_str().unwrap(), "{task}");
        }
    }

    #[test]
    fn serde_uses_the_token() {
        let json = serde_json::to_string(&Task::Od).unwrap();
        assert_eq!(json, "\"<OD>\"");
        let back: Task = serde_json::from_str("\"<MORE_DETAILED_CAPTION>\"").unwrap();
        assert_eq!(back, Task::MoreDetailedCaption);
        assert!(serde_json::from_str::<Task>("\"<NOPE>\"").is_err());
    }
}
