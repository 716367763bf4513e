//! `captiond bench`: model throughput on synthetic images, split by stage, in the same shape as
//! tools/bench_reference.py measures PyTorch (`<CAPTION>`, greedy, exactly N new tokens,
//! preprocessing excluded), so tools/bench.sh can print the ratio.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use image::RgbImage;
use serde_json::json;

use florence2::load::ModelFiles;
use florence2::{DeviceChoice, DtypeChoice, Florence2, Task, Timings};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Model folder in hub layout (e.g. a full-size random-weight Florence-2-base made by
    /// tools/bench_reference.py).
    #[arg(long, value_name = "DIR")]
    pub model_dir: PathBuf,

    /// Batch sizes to measure, comma-separated.
    #[arg(long, default_value = "1,4", value_delimiter = ',')]
    pub batches: Vec<usize>,

    /// New tokens per image (EOS is held back until the last one).
    #[arg(long, default_value_t = 20)]
    pub tokens: usize,

    /// Timed runs per measurement (the median is reported), after one warm-up.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,

    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceChoice,

    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: DtypeChoice,
}

/// A deterministic 1024×768 test scene (gradients and blocks), so runs are comparable.
fn scene(seed: u32) -> RgbImage {
    RgbImage::from_fn(1024, 768, |x, y| {
        let block = ((x / 64 + y / 48 + seed) % 7) as u8;
        image::Rgb([
            (x * 255 / 1023) as u8 ^ (block * 20),
            (y * 255 / 767) as u8,
            ((x + y + seed * 37) % 256) as u8,
        ])
    })
}

/// User + system CPU time of this process so far (to report how many cores were kept busy).
fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub fn run(_config: Option<&Path>, args: BenchArgs) -> anyhow::Result<ExitCode> {
    let files = ModelFiles::from_dir(&args.model_dir)?;
    let device = args.device.device()?;
    let dtype = args.dtype.dtype(&device);
    let t0 = Instant::now();
    let model = Florence2::load(&files, &device, dtype)
        .with_context(|| format!("cannot load {}", args.model_dir.display()))?;
    println!(
        "loaded in {:.1} s; device {:?}, dtype {:?}, threads {}",
        t0.elapsed().as_secs_f64(),
        device,
        dtype,
        candle_core::utils::get_num_threads()
    );
    let mut generation = model.generation.clone();
    generation.num_beams = 1;
    generation.max_new_tokens = args.tokens;
    generation.min_new_tokens = args.tokens;
    let images: Vec<RgbImage> = (0..*args.batches.iter().max().unwrap_or(&1) as u32)
        .map(scene)
        .collect();
    let mut results = serde_json::Map::new();
    for &bs in &args.batches {
        let refs: Vec<&RgbImage> = images.iter().take(bs).collect();
        let mut totals = Vec::new();
        let mut splits: Vec<Timings> = Vec::new();
        let mut cpu = Duration::ZERO;
        for i in 0..=args.runs {
            let cpu_before = cpu_time();
            let mut t = Timings::default();
            let start = Instant::now();
            let out = model.run(&refs, Task::Caption, None, &generation, &mut t)?;
            let total = start.elapsed() - t.preprocess;
            anyhow::ensure!(
                out.iter().all(|o| o.token_ids.len() == args.tokens + 1),
                "expected exactly {} new tokens",
                args.tokens
            );
            if i > 0 {
                totals.push(total);
                splits.push(t);
                cpu += cpu_time() - cpu_before;
            }
        }
        let timed: Duration = totals.iter().sum();
        let total = median(totals);
        let vision = median(splits.iter().map(|t| t.vision).collect());
        let encoder = median(splits.iter().map(|t| t.encoder).collect());
        let decode = median(splits.iter().map(|t| t.decode).collect());
        let preprocess = median(splits.iter().map(|t| t.preprocess).collect());
        let ips = bs as f64 / total.as_secs_f64();
        let busy = cpu.as_secs_f64() / timed.as_secs_f64();
        println!(
            "batch {bs}: {ips:.3} images/s; generate {:.3} s = vision {:.3} s + text encoder {:.3} s + decode {:.3} s ({:.1} ms/token); preprocess {:.3} s (not included); {busy:.2} cores busy",
            total.as_secs_f64(),
            vision.as_secs_f64(),
            encoder.as_secs_f64(),
            decode.as_secs_f64(),
            1000.0 * decode.as_secs_f64() / args.tokens as f64,
            preprocess.as_secs_f64()
        );
        results.insert(
            format!("b{bs}"),
            json!({
                "batch": bs,
                "images_per_s": ips,
                "total_s": total.as_secs_f64(),
                "vision_s": vision.as_secs_f64(),
                "text_encoder_s": encoder.as_secs_f64(),
                "decode_s": decode.as_secs_f64(),
                "decode_ms_per_token": 1000.0 * decode.as_secs_f64() / args.tokens as f64,
                "preprocess_s": preprocess.as_secs_f64(),
                "cores_busy": busy,
            }),
        );
    }
    println!(
        "{}",
        json!({
            "bench": "florence2",
            "impl": "captiond",
            "device": format!("{device:?}"),
            "dtype": format!("{dtype:?}"),
            "threads": candle_core::utils::get_num_threads(),
            "task": "<CAPTION>",
            "decoding": "greedy",
            "new_tokens": args.tokens,
            "runs": args.runs,
            "results": results,
        })
    );
    Ok(ExitCode::SUCCESS)
}
