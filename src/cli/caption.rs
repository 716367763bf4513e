//! `captiond caption`: one-shot captioning of image files, printing results; no catalog, no
//! sidecars. With `--json`, one object per image per task per line (the CLI contract).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;

use florence2::hub::ModelSource;
use florence2::{DeviceChoice, DtypeChoice, Task, Timings};

use crate::clean::display_caption;
use crate::config::Settings;
use crate::media::decode::{decode_image, DecodeLimits};
use crate::pipeline::Captioner;

// Field docs are `--help` text: `[model]` there names the config table, not a doc link.
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(Debug, Args)]
pub struct CaptionArgs {
    /// Hugging Face repo to use, optionally pinned: `org/name@revision`. Default: the config's [model].
    #[arg(long, value_name = "REPO[@REV]", conflicts_with = "model_dir", value_parser = parse_model)]
    pub model: Option<ModelSource>,

    /// Local model folder in Hugging Face hub layout (wins over the config's [model]).
    #[arg(long, value_name = "DIR")]
    pub model_dir: Option<PathBuf>,

    /// Task token, e.g. `<CAPTION>`, `<MORE_DETAILED_CAPTION>`, `<OD>`, `<OCR>`; repeat for several.
    /// Default: `<MORE_DETAILED_CAPTION>`.
    #[arg(long = "task", value_name = "T", value_parser = parse_task)]
    pub tasks: Vec<Task>,

    /// Text for tasks that take one (phrase grounding, open-vocabulary detection, region tasks).
    #[arg(long, value_name = "TEXT")]
    pub text_input: Option<String>,

    /// Beam width; 1 = greedy. Default: the config's `beams` (3).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=16))]
    pub beams: Option<u32>,

    /// Most tokens to generate per image. Default: the config's `max_new_tokens` (256).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub max_new_tokens: Option<u32>,

    /// Images per model call. Default: the config's `batch_size` (4).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub batch_size: Option<u32>,

    /// Where to run. Default: the config's `device` (auto: CUDA, then Metal, then CPU).
    #[arg(long, value_enum)]
    pub device: Option<DeviceChoice>,

    /// Weight and activation precision. Default: the config's `dtype` (auto: f32 on CPU, f16 on GPU).
    #[arg(long, value_enum)]
    pub dtype: Option<DtypeChoice>,

    /// One JSON object per image and task per line.
    #[arg(long)]
    pub json: bool,

    /// Image files.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
}

/// One `--json` line (contract: path, task, token_ids, text, result, caption).
#[derive(Debug, Serialize)]
pub struct CaptionRow<'a> {
    pub path: &'a str,
    pub task: &'a str,
    pub token_ids: &'a [u32],
    pub text: &'a str,
    pub result: &'a serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caption: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
}

fn parse_task(text: &str) -> Result<Task, String> {
    text.parse::<Task>().map_err(|e| e.to_string())
}

fn parse_model(text: &str) -> Result<ModelSource, String> {
    ModelSource::parse(text).map_err(|e| e.to_string())
}

pub fn run(config: Option<&Path>, args: CaptionArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(config)?;
    // The config's [model], with what the flags say on top; loaded as the daemon loads it.
    let mut model = settings.model;
    if let Some(dir) = &args.model_dir {
        model.location = ModelSource::Dir(dir.clone());
    } else if let Some(source) = &args.model {
        model.location = source.clone();
    }
    model.tasks = if args.tasks.is_empty() {
        vec![Task::MoreDetailedCaption]
    } else {
        args.tasks.clone()
    };
    model.device = args.device.unwrap_or(model.device);
    model.dtype = args.dtype.unwrap_or(model.dtype);
    model.beams = args.beams.map(|b| b as usize).unwrap_or(model.beams);
    model.max_new_tokens = args
        .max_new_tokens
        .map(|n| n as usize)
        .unwrap_or(model.max_new_tokens);
    let batch_size = args
        .batch_size
        .map(|n| n as usize)
        .unwrap_or(model.batch_size);
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let captioner = Captioner::load(&model, progress)?;
    let tasks = captioner.tasks();

    let limits = DecodeLimits::default();
    let mut failed = 0usize;
    let mut decoded = Vec::new();
    for path in &args.images {
        match decode_image(path, &limits) {
            Ok(image) => decoded.push((path, image)),
            Err(e) => {
                failed += 1;
                eprintln!("captiond: error: {e}");
            }
        }
    }

    let mut out = std::io::stdout().lock();
    let mut timings = Timings::default();
    for chunk in decoded.chunks(batch_size) {
        let images: Vec<&image::RgbImage> = chunk.iter().map(|(_, d)| &d.rgb).collect();
        let mut per_task = Vec::with_capacity(tasks.len());
        for &task in tasks {
            per_task.push(captioner.run(
                &images,
                task,
                args.text_input.as_deref(),
                &mut timings,
            )?);
        }
        // Image-major whatever the batch size: each image's lines together, tasks in flag order.
        for (i, (path, _)) in chunk.iter().enumerate() {
            let path_text = path.display().to_string();
            for (&task, outputs) in tasks.iter().zip(&per_task) {
                let output = &outputs[i];
                let caption = task.is_caption().then(|| display_caption(&output.text));
                if args.json {
                    let row = CaptionRow {
                        path: &path_text,
                        task: task.as_str(),
                        token_ids: &output.token_ids,
                        text: &output.text,
                        result: &output.result,
                        caption,
                        score: output.score,
                    };
                    serde_json::to_writer(&mut out, &row)?;
                    writeln!(out)?;
                } else if let Some(caption) = caption {
                    writeln!(out, "{path_text}\t{caption}")?;
                } else {
                    writeln!(out, "{path_text}\t{}\t{}", task.as_str(), output.result)?;
                }
            }
        }
    }
    out.flush()?;
    tracing::debug!(
        preprocess_ms = timings.preprocess.as_millis() as u64,
        vision_ms = timings.vision.as_millis() as u64,
        encoder_ms = timings.encoder.as_millis() as u64,
        decode_ms = timings.decode.as_millis() as u64,
        "caption timings"
    );
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
