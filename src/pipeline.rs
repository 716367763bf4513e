//! One batch of captioning jobs end to end: find a readable copy of each job's content, check it
//! still is that content, decode it upright, run every configured task over the batch, turn the
//! outputs into catalog results (clean caption, regions in the stored frame, keywords, OCR text)
//! and store them. A photo that fails is recorded as failed with its error; the rest go on.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Context;
use serde_json::Value;

use florence2::hub::{resolve, ModelSource};
use florence2::{Florence2, GenerationConfig, Output, Task, Timings};

use crate::catalog::{Catalog, CatalogError, FailOutcome, Job, Region, RetryPolicy, TaskResult};
use crate::clean::{display_caption, keywords};
use crate::config::ModelSettings;
use crate::media::decode::{
    decode_image_bytes_with, read_photo, DecodeError, DecodeLimits, DecodedImage,
};
use crate::media::exif::map_box_to_stored;

/// What identifies "the same captioning" across runs: model, revision and task list. Results of
/// another profile do not count, so changing any of them re-queues the library (`reprocess`).
pub fn profile_key(model: &ModelSettings) -> String {
    let tasks: Vec<&str> = model.tasks.iter().map(|t| t.as_str()).collect();
    format!(
        "{}|{}",
        provenance(&model.location).join("@"),
        tasks.join(",")
    )
}

/// (repo or folder, revision) as recorded with every result, in profiles and in sidecars: a
/// folder is `dir:<path>` at revision `local`, so it is never taken for a hub repo.
fn provenance(source: &ModelSource) -> [String; 2] {
    match source {
        ModelSource::Repo { id, revision } => [id.clone(), revision.clone()],
        ModelSource::Dir(dir) => [format!("dir:{}", dir.display()), "local".to_string()],
    }
}

/// The loaded model plus what to run with it.
pub struct Captioner {
    model: Florence2,
    tasks: Vec<Task>,
    generation: GenerationConfig,
    model_repo: String,
    model_revision: String,
    pub profile: String,
    pub batch_size: usize,
}

impl Captioner {
    /// The one way a model is loaded (the daemon, `caption`): resolve the source (download into
    /// the Hugging Face cache when it is a repo; `progress` shows the download bars), pick the
    /// device and dtype, load, and apply the configured generation settings.
    pub fn load(settings: &ModelSettings, progress: bool) -> anyhow::Result<Self> {
        let files = resolve(&settings.location, progress)?;
        let device = settings.device.device()?;
        let dtype = settings.dtype.dtype(&device);
        let model = Florence2::load(&files, &device, dtype)
            .with_context(|| format!("cannot load the model from {}", files.dir.display()))?;
        let mut generation = model.generation.clone();
        generation.num_beams = settings.beams;
        generation.max_new_tokens = settings.max_new_tokens;
        let [model_repo, model_revision] = provenance(&settings.location);
        tracing::info!(model = %model_repo, revision = %model_revision, ?device, ?dtype, "model loaded");
        Ok(Self {
            model,
            tasks: settings.tasks.clone(),
            generation,
            model_repo,
            model_revision,
            profile: profile_key(settings),
            batch_size: settings.batch_size,
        })
    }
}

impl Captioner {
    /// The configured tasks, in order.
    pub fn tasks(&self) -> &[Task] {
        &self.tasks
    }

    /// Runs one task over a batch of upright RGB images with the configured generation settings;
    /// `text_input` is the task's text (grounding, region tasks), if it takes one.
    pub fn run(
        &self,
        images: &[&image::RgbImage],
        task: Task,
        text_input: Option<&str>,
        timings: &mut Timings,
    ) -> Result<Vec<Output>, florence2::Error> {
        self.model
            .run(images, task, text_input, &self.generation, timings)
    }
}

/// Why one job could not be captioned (stored as the job's last error).
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("no readable copy of content {hash} is left (tried {tried:?})")]
    NoCopy { hash: String, tried: Vec<PathBuf> },
    #[error(transparent)]
    Decode(#[from] crate::media::decode::DecodeError),
}

/// Outcome of one batch, for logs and `run --once`.
#[derive(Debug, Default, Clone)]
pub struct BatchReport {
    pub done: usize,
    /// Failed attempts (a job that will be retried counts too).
    pub failed: usize,
    /// Jobs ended because every photo with their content was deleted meanwhile (see
    /// [`FailOutcome::Dropped`]); not failures.
    pub dropped: usize,
    /// Jobs handed back unfinished because `cancel` was set.
    pub released: usize,
    /// Content hashes of the jobs completed, in order (for sidecars).
    pub finished: Vec<String>,
}

/// Reads the first present copy whose bytes still hash to the job's content (or are that content
/// with XMP we embedded: an alias of it) and decodes it.
fn load_job_image(catalog: &Catalog, job: &Job) -> Result<(PathBuf, DecodedImage), anyhow::Error> {
    let paths = catalog.present_paths_for_hash(&job.hash)?;
    let limits = DecodeLimits::default();
    let mut last_decode_error = None;
    for path in &paths {
        let bytes = match read_photo(path, &limits) {
            Ok(bytes) => bytes,
            Err(e @ DecodeError::FileTooLarge { .. }) => {
                last_decode_error = Some(JobError::Decode(e));
                continue;
            }
            Err(_) => continue,
        };
        let file_hash = blake3::hash(&bytes).to_hex();
        if file_hash.as_str() != job.hash
            && catalog.resolve_content(file_hash.as_str())?.as_deref() != Some(job.hash.as_str())
        {
            // Edited since it was catalogued: the scanner will record the new content.
            continue;
        }
        match decode_image_bytes_with(&bytes, path, &limits) {
            Ok(decoded) => return Ok((path.clone(), decoded)),
            Err(e) => last_decode_error = Some(JobError::Decode(e)),
        }
    }
    Err(last_decode_error
        .unwrap_or(JobError::NoCopy {
            hash: job.hash.clone(),
            tried: paths,
        })
        .into())
}

/// Runs a claimed batch. Catalog errors abort (the daemon stops on them); per-photo errors are
/// recorded on the job. `cancel` (shutdown) is checked before each task: once set, the jobs not
/// yet finished are released back to `pending` and the batch ends early.
pub fn process_batch(
    captioner: &Captioner,
    catalog: &Catalog,
    jobs: &[Job],
    policy: &RetryPolicy,
    cancel: &AtomicBool,
) -> Result<BatchReport, CatalogError> {
    let mut report = BatchReport::default();
    if cancel.load(Ordering::SeqCst) {
        let ids: Vec<i64> = jobs.iter().map(|j| j.id).collect();
        catalog.release(&ids)?;
        report.released = ids.len();
        return Ok(report);
    }
    let mut ready = Vec::with_capacity(jobs.len());
    for job in jobs {
        match load_job_image(catalog, job) {
            Ok((path, image)) => ready.push((job, path, image)),
            Err(e) => {
                // A photo refused on its size or header fails the same way every time: once.
                let permanent = matches!(
                    e.downcast_ref::<JobError>(),
                    Some(JobError::Decode(d)) if d.is_permanent()
                );
                let once = RetryPolicy {
                    max_attempts: 1,
                    ..policy.clone()
                };
                let policy = if permanent { &once } else { policy };
                fail_job(catalog, job, &format!("{e:#}"), policy, &mut report)?
            }
        }
    }
    if ready.is_empty() {
        return Ok(report);
    }
    let images: Vec<&image::RgbImage> = ready.iter().map(|(_, _, d)| &d.rgb).collect();
    let started = Instant::now();
    let mut timings = Timings::default();
    let mut per_task = Vec::with_capacity(captioner.tasks.len());
    for &task in &captioner.tasks {
        if cancel.load(Ordering::SeqCst) {
            let ids: Vec<i64> = ready.iter().map(|(job, _, _)| job.id).collect();
            catalog.release(&ids)?;
            report.released += ids.len();
            return Ok(report);
        }
        match captioner.run(&images, task, None, &mut timings) {
            Ok(outputs) => per_task.push(outputs),
            Err(e) => {
                // A model failure on a batch: fail each job with the cause so none is lost.
                for (job, path, _) in &ready {
                    let message = format!("{}: {task}: {e}", path.display());
                    fail_job(catalog, job, &message, policy, &mut report)?;
                }
                return Ok(report);
            }
        }
    }
    let per_image_ms = started.elapsed().as_millis() as u64 / ready.len() as u64;
    for (i, (job, path, image)) in ready.iter().enumerate() {
        let _span = tracing::info_span!("job", id = job.id, path = %path.display()).entered();
        let results: Vec<TaskResult> = captioner
            .tasks
            .iter()
            .zip(&per_task)
            .map(|(&task, outputs)| task_result(task, &outputs[i], image, captioner))
            .collect();
        catalog.finish(job.id, &job.hash, &results)?;
        report.done += 1;
        report.finished.push(job.hash.clone());
        let caption = results
            .iter()
            .find_map(|r| {
                r.clean_text
                    .as_deref()
                    .filter(|_| r.task.contains("CAPTION"))
            })
            .unwrap_or("");
        tracing::info!(
            ms = per_image_ms,
            vision_ms = timings.vision.as_millis() as u64 / ready.len() as u64,
            decode_ms = timings.decode.as_millis() as u64 / ready.len() as u64,
            batch = ready.len(),
            "captioned: {caption}"
        );
    }
    Ok(report)
}

/// Records a failed attempt and logs it. A job whose content no present photo holds any more (the
/// photo was deleted while it was queued or being captioned) is dropped by the catalog, not
/// retried: nothing could ever claim it again.
fn fail_job(
    catalog: &Catalog,
    job: &Job,
    message: &str,
    policy: &RetryPolicy,
    report: &mut BatchReport,
) -> Result<(), CatalogError> {
    match catalog.fail(job.id, message, policy)? {
        FailOutcome::Dropped => {
            tracing::info!(
                hash = %job.hash,
                "every photo with this content was deleted while it was queued; job dropped"
            );
            report.dropped += 1;
        }
        FailOutcome::Retry { attempts, .. } => {
            tracing::warn!(hash = %job.hash, attempts, "cannot caption (will retry): {message}");
            report.failed += 1;
        }
        FailOutcome::Failed { attempts } => {
            tracing::warn!(hash = %job.hash, attempts, "cannot caption (giving up): {message}");
            report.failed += 1;
        }
    }
    Ok(())
}

/// Turns one model output into what the catalog keeps.
pub fn task_result(
    task: Task,
    output: &Output,
    image: &DecodedImage,
    captioner: &Captioner,
) -> TaskResult {
    build_result(
        task,
        output,
        image,
        &captioner.model_repo,
        &captioner.model_revision,
    )
}

fn build_result(
    task: Task,
    output: &Output,
    image: &DecodedImage,
    repo: &str,
    revision: &str,
) -> TaskResult {
    let (w, h) = image.rgb.dimensions();
    let regions = regions_from(&output.result, (w, h), image.orientation);
    let keywords = if task == Task::Od {
        let labels: Vec<String> = regions.iter().map(|r| r.label.clone()).collect();
        keywords(&labels)
    } else {
        Vec::new()
    };
    let ocr_text = match task {
        Task::Ocr => output.result.as_str().map(str::to_string),
        Task::OcrWithRegion => output.result["labels"].as_array().map(|labels| {
            labels
                .iter()
                .filter_map(Value::as_str)
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" ")
        }),
        _ => None,
    };
    let clean_text = if task.is_caption() {
        Some(display_caption(&output.text))
    } else {
        ocr_text.clone()
    };
    TaskResult {
        task: task.as_str().to_string(),
        model_repo: repo.to_string(),
        model_revision: revision.to_string(),
        raw_text: output.text.clone(),
        clean_text,
        result_json: output.result.clone(),
        regions,
        keywords,
        ocr_text,
    }
}

/// Boxes from a post-processed result (`bboxes` with `labels` or `bboxes_labels`), normalised by
/// the upright image size the model saw, then mapped back into the stored frame.
fn regions_from(result: &Value, (w, h): (u32, u32), orientation: u16) -> Vec<Region> {
    let Some(boxes) = result["bboxes"].as_array() else {
        return Vec::new();
    };
    let labels = result["labels"]
        .as_array()
        .or_else(|| result["bboxes_labels"].as_array());
    boxes
        .iter()
        .enumerate()
        .filter_map(|(i, b)| {
            let c: Vec<f64> = b.as_array()?.iter().filter_map(Value::as_f64).collect();
            if c.len() != 4 {
                return None;
            }
            let norm = |v: f64, size: u32| (v / size as f64).clamp(0.0, 1.0) as f32;
            let upright = [norm(c[0], w), norm(c[1], h), norm(c[2], w), norm(c[3], h)];
            let label = labels
                .and_then(|l| l.get(i))
                .and_then(Value::as_str)
                .unwrap_or("")
                .trim()
                .to_string();
            Some(Region {
                label,
                bbox: map_box_to_stored(upright, orientation),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decoded(w: u32, h: u32, orientation: u16) -> DecodedImage {
        let mut d = crate::media::decode::decode_image_bytes(
            &{
                let mut png = Vec::new();
                image::RgbImage::new(w, h)
                    .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
                    .unwrap();
                png
            },
            std::path::Path::new("t.png"),
        )
        .unwrap();
        d.orientation = orientation;
        d
    }

    fn output(text: &str, result: Value) -> Output {
        Output {
            token_ids: vec![2, 0, 2],
            text: text.to_string(),
            result,
            score: None,
        }
    }

    #[test]
    fn od_labels_become_keywords_and_boxes_are_normalised() {
        let img = decoded(200, 100, 1);
        let out = output(
            "</s><s>dogs<loc_0>…</s>",
            json!({"bboxes": [[20, 10, 100, 50], [0, 0, 200, 100]], "labels": ["Dogs", "dog"]}),
        );
        let r = build_result(Task::Od, &out, &img, "org/m", "main");
        assert_eq!(r.keywords, vec!["dog".to_string()]);
        assert_eq!(r.regions.len(), 2);
        assert_eq!(r.regions[0].bbox, [0.1, 0.1, 0.5, 0.5]);
        assert_eq!(r.regions[1].bbox, [0.0, 0.0, 1.0, 1.0]);
        assert!(r.clean_text.is_none());
    }

    #[test]
    fn rotated_photo_boxes_land_in_the_stored_frame() {
        // Orientation 6: stored landscape, shown rotated 90° clockwise. A box at the top-left of
        // the upright image is at the bottom-left of the stored one.
        let img = decoded(100, 200, 6);
        let out = output("", json!({"bboxes": [[0, 0, 50, 20]], "labels": ["cat"]}));
        let r = build_result(Task::Od, &out, &img, "org/m", "main");
        let [x1, y1, x2, y2] = r.regions[0].bbox;
        assert!(
            (x1 - 0.0).abs() < 1e-6 && (x2 - 0.1).abs() < 1e-6,
            "{:?}",
            r.regions[0].bbox
        );
        assert!(
            (y1 - 0.5).abs() < 1e-6 && (y2 - 1.0).abs() < 1e-6,
            "{:?}",
            r.regions[0].bbox
        );
    }

    #[test]
    fn captions_are_cleaned_and_ocr_text_is_kept() {
        let img = decoded(10, 10, 1);
        let cap = build_result(
            Task::MoreDetailedCaption,
            &output("</s><s>The image shows a red  car<loc_5>.</s>", json!("x")),
            &img,
            "org/m",
            "main",
        );
        assert_eq!(cap.clean_text.as_deref(), Some("A red car."));
        let ocr = build_result(
            Task::OcrWithRegion,
            &output("", json!({"quad_boxes": [], "labels": ["STOP ", "sign"]})),
            &img,
            "org/m",
            "main",
        );
        assert_eq!(ocr.ocr_text.as_deref(), Some("STOP sign"));
    }
}
