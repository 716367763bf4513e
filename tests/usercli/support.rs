//! Harness of the user-command tests: on top of `tests/common` (temp dir with HOME and the XDG
//! folders, scrubbed child environment, [`Run`]), a real library root and the catalog, a config
//! naming them, a catalog filled through the `Catalog` API with realistic captions and labels (no
//! model involved), and the real `captiond` binary run with a time limit. Every failure message
//! shows the whole run.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::path::PathBuf;
use std::time::Duration;

use captiond::catalog::{
    Catalog, MediaFacts, Priority, QueueCounts, Region, RetryPolicy, TaskResult,
};
use serde_json::Value;

use crate::common::Sandbox;
pub use crate::common::{Run, BIN};

/// A run taking longer than this fails the test (reads never wait on the writer in WAL mode).
const TIME_LIMIT: Duration = Duration::from_secs(60);

/// The profile (model + tasks) of every job the tests create.
pub const PROFILE: &str = "microsoft/Florence-2-base@main|<MORE_DETAILED_CAPTION>,<OD>";

/// One test's world: a [`Sandbox`] with a library root and a config naming it and the catalog.
pub struct TestEnv {
    sandbox: Sandbox,
}

impl Deref for TestEnv {
    type Target = Sandbox;

    fn deref(&self) -> &Sandbox {
        &self.sandbox
    }
}

/// What a photo of the corpus looks like.
pub struct Photo<'a> {
    pub rel: &'a str,
    pub caption: &'a str,
    pub labels: &'a [&'a str],
    pub taken: Option<&'a str>,
    pub camera: Option<(&'a str, &'a str)>,
}

impl TestEnv {
    pub fn new() -> TestEnv {
        let env = TestEnv {
            sandbox: Sandbox::with_dirs(&["photos"]),
        };
        let config = format!(
            "database = {:?}\n\n[[library]]\npath = {:?}\n",
            env.db().display().to_string(),
            env.library().display().to_string()
        );
        std::fs::write(env.config(), config).unwrap();
        env
    }

    /// The library root (a real, empty folder: the photos exist only in the catalog).
    pub fn library(&self) -> PathBuf {
        self.root().join("photos")
    }

    pub fn db(&self) -> PathBuf {
        self.root().join("data/catalog.db")
    }

    pub fn config(&self) -> PathBuf {
        self.root().join("config.toml")
    }

    /// A path inside the library.
    pub fn photo(&self, rel: &str) -> PathBuf {
        self.library().join(rel)
    }

    /// The photo's path as `captiond` prints it.
    pub fn shown(&self, rel: &str) -> String {
        self.photo(rel).display().to_string()
    }

    pub fn catalog(&self) -> Catalog {
        Catalog::open(&self.db()).expect("open the test catalog")
    }

    /// Runs `captiond --config CONFIG ARGS…` in the temp dir with a scrubbed environment.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_env(&[], args)
    }

    pub fn run_env(&self, env: &[(&str, &str)], args: &[&str]) -> Run {
        let mut cmd = assert_cmd::Command::from_std(self.scrubbed(BIN));
        cmd.current_dir(self.root())
            .timeout(TIME_LIMIT)
            .arg("--config")
            .arg(self.config());
        Run::captiond(cmd, env, args)
    }

    /// Records a photo, queues it, claims its job and finishes it with a caption and `<OD>` labels
    /// (one box per label), as the daemon would. Other claimable jobs are handed back untouched.
    pub fn add(&self, cat: &Catalog, p: &Photo<'_>) -> String {
        let hash = self.record(cat, p);
        let jobs = cat.claim(PROFILE, 1000).unwrap();
        let (mine, others): (Vec<_>, Vec<_>) = jobs.into_iter().partition(|j| j.hash == hash);
        cat.release(&others.iter().map(|j| j.id).collect::<Vec<_>>())
            .unwrap();
        for job in mine {
            cat.finish(job.id, &hash, &results(p.caption, p.labels))
                .unwrap();
        }
        hash
    }

    /// Records a photo and queues it (pending).
    pub fn record(&self, cat: &Catalog, p: &Photo<'_>) -> String {
        let hash = blake3::hash(p.rel.as_bytes()).to_hex().to_string();
        let media = MediaFacts {
            width: Some(4000),
            height: Some(3000),
            taken_at: p.taken.map(str::to_owned),
            camera_make: p.camera.map(|c| c.0.to_owned()),
            camera_model: p.camera.map(|c| c.1.to_owned()),
            ..MediaFacts::default()
        };
        let lib = cat.upsert_library(&self.library()).unwrap();
        cat.record_photo(lib, &self.photo(p.rel), 2_500_000, 1, &hash, &media)
            .unwrap();
        cat.enqueue(&hash, PROFILE, Priority::New).unwrap();
        hash
    }

    /// The search corpus: six captioned photos plus one pending, one running and one failed.
    pub fn corpus(&self) -> Catalog {
        let cat = self.catalog();
        for p in CORPUS {
            self.add(&cat, p);
        }
        self.record(&cat, &photo("2024/new/IMG_0100.JPG", ""));
        let running = self.record(&cat, &photo("2024/new/IMG_0101.JPG", ""));
        let broken = self.record(&cat, &photo("2024/broken/IMG_0102.JPG", ""));
        let jobs = cat.claim(PROFILE, 1000).unwrap();
        let keep: Vec<i64> = jobs
            .iter()
            .filter(|j| j.hash != running && j.hash != broken)
            .map(|j| j.id)
            .collect();
        cat.release(&keep).unwrap();
        let failed = jobs.iter().find(|j| j.hash == broken).unwrap();
        let once = RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        };
        cat.fail(failed.id, "cannot decode: truncated JPEG", &once)
            .unwrap();
        let c = cat.queue_counts(None).unwrap();
        assert_eq!(
            (c.pending, c.running, c.done, c.failed),
            (1, 1, 6, 1),
            "corpus queue"
        );
        cat
    }
}

pub fn photo<'a>(rel: &'a str, caption: &'a str) -> Photo<'a> {
    Photo {
        rel,
        caption,
        labels: &[],
        taken: None,
        camera: None,
    }
}

/// Realistic Florence-2 style captions with labels, dates and cameras.
pub const CORPUS: &[Photo<'static>] = &[
    Photo {
        rel: "2023/beach/IMG_0001.JPG",
        caption: "A brown dog running on a sandy beach next to the ocean, with waves breaking in \
                  the background.",
        labels: &["dog", "ocean"],
        taken: Some("2023-07-14T16:02:11"),
        camera: Some(("Canon", "EOS R5")),
    },
    Photo {
        rel: "2023/city/IMG_0002.JPG",
        caption: "A red car parked on a narrow street in front of a small bakery with a striped \
                  awning.",
        labels: &["car", "shop"],
        taken: Some("2023-03-02T09:00:00"),
        camera: Some(("Apple", "iPhone 13")),
    },
    Photo {
        rel: "2022/home/IMG_0003.JPG",
        caption: "Two cats sleeping on a grey sofa in a living room; a toy car lies on the red \
                  carpet.",
        labels: &["cat", "sofa", "car"],
        taken: Some("2022-12-24T20:30:00"),
        camera: Some(("Canon", "EOS 80D")),
    },
    Photo {
        rel: "dog-walks/IMG_0004.JPG",
        caption: "A bicycle leaning against a brick wall under a window.",
        labels: &["bicycle"],
        taken: None,
        camera: None,
    },
    Photo {
        rel: "2021/park/IMG_0005.JPG",
        caption: "Several dogs playing with a frisbee on the grass of a green park while people \
                  watch from a bench.",
        labels: &["dog", "frisbee", "person", "bench"],
        taken: Some("2021-05-09T11:15:00"),
        camera: Some(("Nikon", "Z6")),
    },
    Photo {
        rel: "2023/beach/IMG_0006.JPG",
        caption: "A white lighthouse standing on a rocky cliff above the sea at sunset.",
        labels: &["lighthouse"],
        taken: Some("2023-07-15T20:41:00"),
        camera: Some(("Canon", "EOS R5")),
    },
];

/// What `finish` gets for a photo: a `<MORE_DETAILED_CAPTION>` result and an `<OD>` result with
/// one box per label.
pub fn results(caption: &str, labels: &[&str]) -> Vec<TaskResult> {
    let regions: Vec<Region> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| Region {
            label: l.to_string(),
            bbox: [0.1 * i as f32, 0.25, 0.1 * i as f32 + 0.5, 0.75],
        })
        .collect();
    vec![
        TaskResult {
            task: "<MORE_DETAILED_CAPTION>".into(),
            model_repo: "microsoft/Florence-2-base".into(),
            model_revision: "main".into(),
            raw_text: format!("</s><s>{caption}</s>"),
            clean_text: Some(caption.into()),
            result_json: serde_json::json!({ "<MORE_DETAILED_CAPTION>": caption }),
            regions: vec![],
            keywords: vec![],
            ocr_text: None,
        },
        TaskResult {
            task: "<OD>".into(),
            model_repo: "microsoft/Florence-2-base".into(),
            model_revision: "main".into(),
            raw_text: "<loc_1>".into(),
            clean_text: None,
            result_json: serde_json::json!({ "<OD>": { "labels": labels } }),
            regions,
            keywords: labels.iter().map(|l| l.to_string()).collect(),
            ocr_text: None,
        },
    ]
}

impl Run {
    /// The first tab-separated field of every stdout line (search's plain output: the paths).
    pub fn paths(&self) -> Vec<String> {
        self.stdout
            .lines()
            .map(|l| l.split('\t').next().unwrap_or("").to_owned())
            .collect()
    }
}

/// Queue counts as `status --json` shows them.
pub fn counts_of(v: &Value) -> QueueCounts {
    let n = |k: &str| {
        v.get(k)
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("`{k}` missing in {v}"))
    };
    QueueCounts {
        pending: n("pending"),
        running: n("running"),
        done: n("done"),
        failed: n("failed"),
    }
}

/// Keys of a JSON object, sorted.
pub fn keys(v: &Value) -> Vec<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect::<std::collections::BTreeSet<_>>())
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// A rough map path → caption of the corpus, for checks.
pub fn corpus_captions(env: &TestEnv) -> BTreeMap<String, &'static str> {
    CORPUS
        .iter()
        .map(|p| (env.shown(p.rel), p.caption))
        .collect()
}
