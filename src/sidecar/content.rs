//! What we write about one photo: [`SidecarContent`], built from the catalog's stored results by
//! [`SidecarContent::from_results`], and its cleaned form ([`Clean`]) that the merge uses: text
//! stripped of XML-illegal characters, keywords without `|`/`/`, boxes clamped to 0..1.

use crate::catalog::StoredResult;

use super::xmp::strip_illegal;
use super::SidecarSettings;

/// Caption tasks, most detailed first: the first one with a caption becomes `dc:description`.
pub const CAPTION_TASKS: &[&str] = &["<MORE_DETAILED_CAPTION>", "<DETAILED_CAPTION>", "<CAPTION>"];

/// Who and what produced the content (written to our provenance namespace).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Provenance {
    /// Model repo, e.g. `microsoft/Florence-2-base`.
    pub model: String,
    pub revision: String,
    /// Tasks whose results went in, sorted, e.g. `["<MORE_DETAILED_CAPTION>", "<OD>"]`.
    pub tasks: Vec<String>,
    /// When the newest of those results was made, Unix ms.
    pub time: i64,
}

/// Everything captiond writes for one image.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SidecarContent {
    /// The display caption (`dc:description`, x-default).
    pub caption: Option<String>,
    /// `photoshop:CaptionWriter` when we write the caption, e.g. `Florence-2-base (captiond)`.
    pub caption_writer: String,
    /// Leaf keywords, e.g. `dog`; written under [`SidecarSettings::keyword_parent`].
    pub keywords: Vec<String>,
    /// Labelled boxes `[x1, y1, x2, y2]`, normalised 0..1 in the stored (un-rotated) frame,
    /// top-left origin.
    pub regions: Vec<(String, [f32; 4])>,
    pub provenance: Provenance,
    /// Pixel size as stored (before EXIF orientation): MWG regions need it.
    pub stored_size: Option<(u32, u32)>,
}

impl SidecarContent {
    /// The content for a photo from its stored results (any order) and keywords. The caption is
    /// the newest result of the most detailed caption task ([`CAPTION_TASKS`], then any task with a
    /// `clean_text`); regions come from the newest result of each task except OCR ones, labelled
    /// regions only. `stored_size` is left `None`: the caller knows it (`MediaFacts`).
    pub fn from_results(results: &[StoredResult], keywords: &[String]) -> SidecarContent {
        // Newest result per task.
        let mut newest: Vec<&StoredResult> = Vec::new();
        for r in results {
            match newest.iter_mut().find(|n| n.task == r.task) {
                Some(n) => {
                    if (r.created_at, r.id) > (n.created_at, n.id) {
                        *n = r;
                    }
                }
                None => newest.push(r),
            }
        }
        newest.sort_by(|a, b| a.task.cmp(&b.task));

        let rank = |task: &str| {
            CAPTION_TASKS
                .iter()
                .position(|t| *t == task)
                .unwrap_or(CAPTION_TASKS.len())
        };
        let caption_result = newest
            .iter()
            .filter(|r| {
                r.clean_text
                    .as_deref()
                    .is_some_and(|t| !t.trim().is_empty())
            })
            .min_by_key(|r| rank(&r.task))
            .copied();

        let mut regions: Vec<(String, [f32; 4])> = Vec::new();
        for r in &newest {
            if r.task.starts_with("<OCR") {
                continue;
            }
            for reg in &r.regions {
                let item = (reg.label.clone(), reg.bbox);
                if !reg.label.trim().is_empty() && !regions.contains(&item) {
                    regions.push(item);
                }
            }
        }

        let main = caption_result.or(newest.first().copied());
        let model = main.map(|r| r.model_repo.clone()).unwrap_or_default();
        let short = model.rsplit('/').next().unwrap_or_default();
        SidecarContent {
            caption: caption_result.and_then(|r| r.clean_text.clone()),
            caption_writer: if short.is_empty() {
                "captiond".to_string()
            } else {
                format!("{short} (captiond)")
            },
            keywords: keywords.to_vec(),
            regions,
            provenance: Provenance {
                model,
                revision: main.map(|r| r.model_revision.clone()).unwrap_or_default(),
                tasks: newest.iter().map(|r| r.task.clone()).collect(),
                time: newest.iter().map(|r| r.created_at).max().unwrap_or(0),
            },
            stored_size: None,
        }
    }
}

/// A box ready to write: top-left corner and size, normalised, clamped to the image.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CleanRegion {
    pub name: String,
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

/// [`SidecarContent`] after cleaning, plus the settings that shape it.
#[derive(Debug, Clone)]
pub(crate) struct Clean {
    pub caption: Option<String>,
    pub writer: String,
    pub leaves: Vec<String>,
    /// Keyword parent levels (`AI`, or `AI|Objects` → `["AI", "Objects"]`).
    pub parent: Vec<String>,
    pub regions: Vec<CleanRegion>,
    pub provenance: Provenance,
    pub stored_size: Option<(u32, u32)>,
}

impl Clean {
    /// Nothing worth creating a file for.
    pub fn is_empty(&self) -> bool {
        self.caption.is_none() && self.leaves.is_empty() && self.regions.is_empty()
    }
}

/// Model text as we write it: no XML-illegal characters, trimmed.
pub(crate) fn clean_text(s: &str) -> String {
    strip_illegal(s).trim().to_string()
}

/// A single keyword level: no hierarchy separators inside, whitespace collapsed.
fn clean_keyword(s: &str) -> String {
    let s = strip_illegal(s).replace(['|', '/', '\\'], " ");
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl SidecarContent {
    pub(crate) fn clean(&self, settings: &SidecarSettings) -> Clean {
        let caption = self
            .caption
            .as_deref()
            .map(clean_text)
            .filter(|c| !c.is_empty());
        let mut leaves: Vec<String> = Vec::new();
        for k in &self.keywords {
            let k = clean_keyword(k);
            if !k.is_empty() && !leaves.contains(&k) {
                leaves.push(k);
            }
        }
        let parent = settings
            .keyword_parent
            .split(['|', '/'])
            .map(clean_keyword)
            .filter(|l| !l.is_empty())
            .collect();
        let mut regions = Vec::new();
        for (label, b) in &self.regions {
            if !b.iter().all(|v| v.is_finite()) {
                continue;
            }
            let c = |v: f32| f64::from(v).clamp(0.0, 1.0);
            let (x1, x2) = (c(b[0].min(b[2])), c(b[0].max(b[2])));
            let (y1, y2) = (c(b[1].min(b[3])), c(b[1].max(b[3])));
            if x2 - x1 <= 0.0 || y2 - y1 <= 0.0 {
                continue;
            }
            let r = CleanRegion {
                name: clean_text(label),
                x: x1,
                y: y1,
                w: x2 - x1,
                h: y2 - y1,
            };
            if !regions.contains(&r) {
                regions.push(r);
            }
        }
        let writer = clean_text(&self.caption_writer);
        Clean {
            caption,
            writer: if writer.is_empty() {
                "captiond".into()
            } else {
                writer
            },
            leaves,
            parent,
            regions,
            provenance: Provenance {
                model: clean_text(&self.provenance.model),
                revision: clean_text(&self.provenance.revision),
                tasks: self
                    .provenance
                    .tasks
                    .iter()
                    .map(|t| clean_text(t))
                    .collect(),
                time: self.provenance.time,
            },
            stored_size: self.stored_size.filter(|&(w, h)| w > 0 && h > 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Region;

    fn result(
        id: i64,
        task: &str,
        at: i64,
        text: Option<&str>,
        regions: Vec<Region>,
    ) -> StoredResult {
        StoredResult {
            id,
            task: task.into(),
            model_repo: "microsoft/Florence-2-base".into(),
            model_revision: "abc123".into(),
            created_at: at,
            raw_text: String::new(),
            clean_text: text.map(str::to_string),
            ocr_text: None,
            result_json: serde_json::Value::Null,
            regions,
        }
    }

    #[test]
    fn picks_newest_most_detailed_caption_and_labelled_regions() {
        let dog = Region {
            label: "dog".into(),
            bbox: [0.1, 0.2, 0.3, 0.4],
        };
        let results = vec![
            result(1, "<CAPTION>", 10, Some("A dog."), vec![]),
            result(2, "<MORE_DETAILED_CAPTION>", 5, Some("Old detail."), vec![]),
            result(
                3,
                "<MORE_DETAILED_CAPTION>",
                20,
                Some("A brown dog."),
                vec![],
            ),
            result(4, "<OD>", 7, None, vec![dog.clone(), dog.clone()]),
            result(
                5,
                "<OCR_WITH_REGION>",
                8,
                None,
                vec![Region {
                    label: "STOP".into(),
                    bbox: [0.0, 0.0, 0.1, 0.1],
                }],
            ),
        ];
        let c = SidecarContent::from_results(&results, &["dog".to_string()]);
        assert_eq!(c.caption.as_deref(), Some("A brown dog."));
        assert_eq!(c.caption_writer, "Florence-2-base (captiond)");
        assert_eq!(c.regions, vec![("dog".to_string(), [0.1, 0.2, 0.3, 0.4])]);
        assert_eq!(c.provenance.time, 20);
        assert_eq!(
            c.provenance.tasks,
            [
                "<CAPTION>",
                "<MORE_DETAILED_CAPTION>",
                "<OCR_WITH_REGION>",
                "<OD>"
            ]
        );
        assert_eq!(c.provenance.revision, "abc123");
    }

    #[test]
    fn cleaning_strips_controls_separators_and_bad_boxes() {
        let c = SidecarContent {
            caption: Some(" a\u{1}b \u{7} ".into()),
            keywords: vec!["AC/DC".into(), "a|b".into(), " ".into(), "AC DC".into()],
            regions: vec![
                ("x".into(), [0.5, 0.6, 0.1, 1.2]),
                ("nan".into(), [f32::NAN, 0.0, 1.0, 1.0]),
                ("flat".into(), [0.2, 0.2, 0.2, 0.9]),
            ],
            ..SidecarContent::default()
        };
        let settings = SidecarSettings {
            keyword_parent: "AI / Objects".into(),
            ..SidecarSettings::default()
        };
        let k = c.clean(&settings);
        assert_eq!(k.caption.as_deref(), Some("ab"));
        assert_eq!(k.leaves, ["AC DC", "a b"]);
        assert_eq!(k.parent, ["AI", "Objects"]);
        assert_eq!(k.regions.len(), 1);
        let r = &k.regions[0];
        assert!((r.x - 0.1).abs() < 1e-6 && (r.w - 0.4).abs() < 1e-6);
        assert!((r.y - 0.6).abs() < 1e-6 && (r.h - 0.4).abs() < 1e-6);
    }
}
