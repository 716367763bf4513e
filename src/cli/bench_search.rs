//! `captiond bench-search` (hidden): the search and export speed figures of BENCHMARKS.md.
//! Fills a catalog with synthetic ~40-word captions (records, jobs, results and keywords
//! through the catalog API, as the daemon writes them), then times two-word queries with
//! `--limit 20` in-process (p50/p99) and a Parquet export of every row.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use crate::catalog::{Catalog, MediaFacts, NewPhoto, Priority, Region, SearchQuery, TaskResult};

#[derive(Debug, Args)]
pub struct BenchSearchArgs {
    /// Catalog to fill (created if missing; photos already in it count towards --photos).
    #[arg(long, value_name = "FILE")]
    pub db: PathBuf,

    /// Photos in the catalog.
    #[arg(long, default_value_t = 1_000_000)]
    pub photos: usize,

    /// Timed queries (after 20 warm-up queries).
    #[arg(long, default_value_t = 500)]
    pub queries: usize,

    /// Where the timed Parquet export goes. Default: FILE.parquet beside the catalog.
    #[arg(long, value_name = "FILE")]
    pub export_out: Option<PathBuf>,

    /// Skip the export timing.
    #[arg(long)]
    pub no_export: bool,
}

const PROFILE: &str = "bench/florence-2@synthetic|<MORE_DETAILED_CAPTION>,<OD>";

/// splitmix64: a tiny deterministic generator (reproducible corpora without a dependency).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Index into a list of `n`, skewed towards the front (word frequencies are Zipf-like):
    /// P(index < k) = sqrt(k / n), so the first of 125 nouns is 9% of the picks.
    fn skewed(&mut self, n: usize) -> usize {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((u * u) * n as f64) as usize % n
    }

    fn pick<'a>(&mut self, words: &[&'a str]) -> &'a str {
        words[self.skewed(words.len())]
    }
}

const NOUNS: &[&str] = &[
    "dog",
    "person",
    "man",
    "woman",
    "car",
    "tree",
    "building",
    "child",
    "cat",
    "table",
    "chair",
    "window",
    "street",
    "sky",
    "water",
    "boat",
    "bicycle",
    "bird",
    "horse",
    "flower",
    "house",
    "road",
    "mountain",
    "beach",
    "field",
    "bench",
    "sign",
    "wall",
    "door",
    "lamp",
    "plate",
    "cup",
    "bottle",
    "book",
    "phone",
    "laptop",
    "bag",
    "umbrella",
    "hat",
    "shirt",
    "jacket",
    "dress",
    "fence",
    "bridge",
    "river",
    "lake",
    "forest",
    "cloud",
    "sun",
    "snow",
    "grass",
    "rock",
    "sand",
    "wave",
    "ocean",
    "city",
    "train",
    "bus",
    "truck",
    "motorcycle",
    "airplane",
    "kite",
    "ball",
    "frisbee",
    "skateboard",
    "surfboard",
    "pizza",
    "cake",
    "sandwich",
    "banana",
    "apple",
    "orange",
    "bowl",
    "sofa",
    "bed",
    "television",
    "clock",
    "vase",
    "teddy",
    "toy",
    "painting",
    "mirror",
    "shelf",
    "kitchen",
    "garden",
    "park",
    "market",
    "church",
    "castle",
    "tower",
    "lighthouse",
    "harbor",
    "pier",
    "path",
    "stairs",
    "balcony",
    "roof",
    "cow",
    "sheep",
    "duck",
    "swan",
    "deer",
    "fox",
    "squirrel",
    "rabbit",
    "elephant",
    "giraffe",
    "zebra",
    "candle",
    "guitar",
    "piano",
    "camera",
    "statue",
    "fountain",
    "tent",
    "fire",
    "cliff",
    "valley",
    "waterfall",
    "desert",
    "island",
    "sunset",
];
const ADJECTIVES: &[&str] = &[
    "white", "black", "red", "blue", "green", "brown", "yellow", "small", "large", "old", "young",
    "wooden", "tall", "grey", "dark", "bright", "sunny", "cloudy", "snowy", "wet", "empty", "busy",
    "crowded", "quiet", "colorful", "orange", "pink", "purple", "golden", "silver", "stone",
    "glass", "metal", "narrow", "wide", "long", "round", "square", "striped", "sandy", "rocky",
    "green", "calm", "stormy", "modern", "ancient", "little",
];
const VERBS: &[&str] = &[
    "standing", "sitting", "walking", "running", "lying", "holding", "looking", "playing",
    "riding", "parked", "flying", "swimming", "eating", "smiling", "sleeping", "leaning",
    "hanging", "floating", "waiting", "reading",
];
const PLACES: &[&str] = &[
    "in front of",
    "next to",
    "on top of",
    "behind",
    "near",
    "beside",
    "under",
    "across",
    "along",
    "inside",
];

/// ~40 words shaped like a Florence-2 detailed caption.
fn caption(rng: &mut Rng) -> (String, Vec<String>) {
    let mut labels = Vec::new();
    let mut noun = |rng: &mut Rng| {
        let n = rng.pick(NOUNS);
        if !labels.iter().any(|l| l == n) {
            labels.push(n.to_owned());
        }
        n
    };
    let mut s = String::with_capacity(300);
    let (a1, n1, v1, p1, a2, n2) = (
        rng.pick(ADJECTIVES),
        noun(rng),
        rng.pick(VERBS),
        rng.pick(PLACES),
        rng.pick(ADJECTIVES),
        noun(rng),
    );
    s.push_str(&format!(
        "The image shows a {a1} {n1} {v1} {p1} a {a2} {n2}. "
    ));
    let (a3, n3, n4, a4) = (
        rng.pick(ADJECTIVES),
        noun(rng),
        noun(rng),
        rng.pick(ADJECTIVES),
    );
    s.push_str(&format!(
        "In the background there is a {a3} {n3} and a {n4} with a {a4} sky above. "
    ));
    let (n5, v2, p2, a5, n6) = (
        noun(rng),
        rng.pick(VERBS),
        rng.pick(PLACES),
        rng.pick(ADJECTIVES),
        noun(rng),
    );
    s.push_str(&format!(
        "On the left side a {n5} is {v2} {p2} the {a5} {n6}, and the overall scene looks \
         peaceful."
    ));
    (s, labels)
}

fn results(text: String, labels: Vec<String>) -> Vec<TaskResult> {
    let regions = labels
        .iter()
        .enumerate()
        .map(|(i, l)| Region {
            label: l.clone(),
            bbox: [0.05 * i as f32, 0.1, 0.05 * i as f32 + 0.3, 0.7],
        })
        .collect();
    vec![
        TaskResult {
            task: "<MORE_DETAILED_CAPTION>".into(),
            model_repo: "bench/florence-2".into(),
            model_revision: "synthetic".into(),
            raw_text: format!("</s><s>{text}</s>"),
            result_json: serde_json::json!({ "<MORE_DETAILED_CAPTION>": text }),
            clean_text: Some(text),
            regions: vec![],
            keywords: vec![],
            ocr_text: None,
        },
        TaskResult {
            task: "<OD>".into(),
            model_repo: "bench/florence-2".into(),
            model_revision: "synthetic".into(),
            raw_text: String::new(),
            clean_text: None,
            result_json: serde_json::json!({ "<OD>": { "labels": labels } }),
            regions,
            keywords: labels,
            ocr_text: None,
        },
    ]
}

fn fill(db: &Path, photos: usize) -> anyhow::Result<()> {
    let mut catalog = Catalog::open(db)?;
    // Not "/bench/...": "bench" is one of the query nouns, and a word in every path made
    // every "… bench" query match all photos.
    let lib = catalog.upsert_library(Path::new("/srv/photos"))?;
    let have = catalog.libraries()?.iter().map(|l| l.present).sum::<u64>() as usize;
    if have >= photos {
        println!("catalog {} already holds {have} photos", db.display());
        return Ok(());
    }
    let start = Instant::now();
    let mut rng = Rng(have as u64 * 7 + 1);
    const CHUNK: usize = 10_000;
    let mut i = have;
    while i < photos {
        let end = (i + CHUNK).min(photos);
        let batch_photos: Vec<NewPhoto> = (i..end)
            .map(|n| NewPhoto {
                path: PathBuf::from(format!(
                    "/srv/photos/{}/{:03}/IMG_{n:07}.JPG",
                    2015 + n % 10,
                    n / 1000 % 1000
                )),
                size: 2_000_000 + (rng.next() % 6_000_000),
                mtime_ns: 1_600_000_000_000_000_000 + n as i64,
                hash: blake3::hash(format!("bench {n}").as_bytes())
                    .to_hex()
                    .to_string(),
                media: MediaFacts {
                    width: Some(6000),
                    height: Some(4000),
                    taken_at: Some(format!(
                        "{}-{:02}-{:02}T12:00:00",
                        2015 + n % 10,
                        1 + n % 12,
                        1 + n % 28
                    )),
                    camera_make: Some(["Canon", "Nikon", "Apple", "Sony"][n % 4].into()),
                    camera_model: Some(["EOS R5", "Z6", "iPhone 13", "A7 III"][n % 4].into()),
                    ..MediaFacts::default()
                },
            })
            .collect();
        {
            let mut b = catalog.batch()?;
            for p in &batch_photos {
                b.record_photo(lib, &p.path, p.size, p.mtime_ns, &p.hash, &p.media)?;
                b.enqueue(&p.hash, PROFILE, Priority::Backfill)?;
            }
            b.commit()?;
        }
        loop {
            let jobs = catalog.claim(PROFILE, 1000)?;
            if jobs.is_empty() {
                break;
            }
            for job in jobs {
                let (text, labels) = caption(&mut rng);
                catalog.finish(job.id, &job.hash, &results(text, labels))?;
            }
        }
        i = end;
        if i.is_multiple_of(100_000) || i == photos {
            println!(
                "filled {i} photos in {:.0} s",
                start.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Latency summary of one engine over the same queries.
struct Timings {
    times: Vec<Duration>,
    hits: usize,
    slowest: (Duration, String),
}

impl Timings {
    fn p(&self, q: f64) -> f64 {
        percentile(&self.times, q).as_secs_f64() * 1e3
    }

    fn line(&self, name: &str) -> String {
        format!(
            "{name}: {} two-word queries, --limit 20: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} \
             ms, max {:.2} ms ({:?}); {:.1} hits per query",
            self.times.len(),
            self.p(0.5),
            self.p(0.9),
            self.p(0.99),
            self.slowest.0.as_secs_f64() * 1e3,
            self.slowest.1,
            self.hits as f64 / self.times.len().max(1) as f64
        )
    }
}

fn time_queries(
    queries: &[String],
    mut search: impl FnMut(&SearchQuery) -> anyhow::Result<usize>,
) -> anyhow::Result<Timings> {
    for q in queries.iter().take(20) {
        search(&SearchQuery::new(q.clone()))?;
    }
    let mut t = Timings {
        times: Vec::with_capacity(queries.len()),
        hits: 0,
        slowest: (Duration::ZERO, String::new()),
    };
    for q in queries {
        let start = Instant::now();
        t.hits += search(&SearchQuery::new(q.clone()))?;
        let dt = start.elapsed();
        if dt > t.slowest.0 {
            t.slowest = (dt, q.clone());
        }
        t.times.push(dt);
    }
    t.times.sort();
    Ok(t)
}

pub fn run(args: BenchSearchArgs) -> anyhow::Result<ExitCode> {
    fill(&args.db, args.photos)?;
    // Read-write once: migrates an older bench catalog and builds the ranked index (timed).
    let start = Instant::now();
    let built = Catalog::open(&args.db)?.sync_search_index()?.unwrap_or(0);
    println!(
        "search index: {built} photos (re)indexed in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let catalog = Catalog::open_readonly(&args.db)?;
    let mut rng = Rng(42);
    let queries: Vec<String> = (0..args.queries)
        .map(|_| {
            if rng.next().is_multiple_of(2) {
                format!("{} {}", rng.pick(ADJECTIVES), rng.pick(NOUNS))
            } else {
                format!("{} {}", rng.pick(NOUNS), rng.pick(NOUNS))
            }
        })
        .collect();
    let ranked = time_queries(&queries, |q| Ok(catalog.search(q)?.len()))?;
    let fts5 = time_queries(&queries, |q| Ok(catalog.search_fts5(q)?.len()))?;
    println!("{}", ranked.line("search (ranked index)"));
    println!("{}", fts5.line("search (FTS5 baseline)"));
    println!(
        "search speed-up over FTS5: p50 {:.1}x, p90 {:.1}x, p99 {:.1}x",
        fts5.p(0.5) / ranked.p(0.5),
        fts5.p(0.9) / ranked.p(0.9),
        fts5.p(0.99) / ranked.p(0.99)
    );
    if !args.no_export {
        // The catalog side alone (the four merged cursors, rows dropped), for comparison.
        let texts = catalog.export_texts()?;
        let t = Instant::now();
        let mut n = 0u64;
        catalog
            .export_rows(&texts, |_| {
                n += 1;
                Ok::<(), ()>(())
            })?
            .ok();
        println!(
            "export: reading {n} rows from the catalog alone, one thread: {:.1} s",
            t.elapsed().as_secs_f64()
        );
        let out = args
            .export_out
            .clone()
            .unwrap_or_else(|| args.db.with_extension("parquet"));
        let file = std::fs::File::create(&out)
            .with_context(|| format!("cannot create {}", out.display()))?;
        let t = Instant::now();
        let summary = crate::export::export(
            &catalog,
            crate::export::Format::Parquet,
            Box::new(std::io::BufWriter::with_capacity(1 << 20, file)),
        )?;
        let dt = t.elapsed();
        let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
        println!(
            "export: {} rows to parquet in {:.1} s ({:.0} rows/s), {:.0} MB: {}",
            summary.rows,
            dt.as_secs_f64(),
            summary.rows as f64 / dt.as_secs_f64(),
            size as f64 / 1e6,
            out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
