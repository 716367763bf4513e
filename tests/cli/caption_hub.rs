//! `captiond caption --model ORG/NAME[@REV]` for real: the binary downloads the tiny model from a
//! loopback stand-in for the Hugging Face hub (`HF_ENDPOINT`) into `HF_HOME`, gives the
//! reference's tokens, and from then on starts from the cache alone: with the hub up (no request),
//! with the hub gone, and with `HF_HUB_OFFLINE=1`.

use super::support::{check_matches, check_row_shape, golden, image, model, text, Run, TestEnv};
use crate::fake_hub::{snapshot_dir, FakeHub, COMMIT};

const REPO: &str = "test-org/tiny-a";

#[test]
fn downloads_from_the_hub_then_runs_from_the_cache() {
    let env = TestEnv::new();
    let case = golden("tiny-a", "rgb_odd_caption");
    let hub = FakeHub::start(&[(REPO, model("tiny-a").as_path())]);
    let log = hub.log();
    let endpoint = hub.url();
    let args = |spec: &str| {
        vec![
            "caption".to_string(),
            "--model".into(),
            spec.to_string(),
            "--task".into(),
            case.task.clone(),
            "--beams".into(),
            "1".into(),
            "--max-new-tokens".into(),
            case.max_new_tokens.to_string(),
            "--json".into(),
            text(&case.image),
        ]
    };
    let check = |run: &Run, what: &str| {
        run.expect_code(0);
        let row = run.single_row();
        check_row_shape(run, &row, true);
        check_matches(run, &row, &case.greedy, what);
    };

    // 1. First run: downloads into HF_HOME/hub in the hub cache layout.
    let first = env.run_env(&[("HF_ENDPOINT", &endpoint)], args(REPO));
    check(&first, "downloaded model");
    first.check(log.count() > 0, "the first run should ask the hub");
    let snapshot = snapshot_dir(&env.hf_home().join("hub"), REPO);
    for file in [
        "config.json",
        "preprocessor_config.json",
        "tokenizer.json",
        "model.safetensors",
    ] {
        first.check(
            snapshot.join(file).is_file(),
            format_args!("{file} not in the cache snapshot {}", snapshot.display()),
        );
    }
    first.check(
        log.lines().iter().any(|l| l.starts_with("GET /lfs/")),
        format_args!(
            "weights should come through the LFS redirect: {:#?}",
            log.lines()
        ),
    );

    // 2. Cached `main`, hub up: no request at all, same output.
    let downloaded = log.count();
    for spec in [REPO.to_string(), format!("{REPO}@main")] {
        let run = env.run_env(&[("HF_ENDPOINT", &endpoint)], args(&spec));
        check(&run, &format!("{spec} from the cache, hub up"));
        run.check(
            run.stdout == first.stdout,
            "output differs from the first run",
        );
        run.check(
            log.count() == downloaded,
            format_args!("{spec}: a cached model asked the hub: {:#?}", log.lines()),
        );
    }

    // 3. Hub gone.
    drop(hub);
    let main = format!("{REPO}@main");
    let pinned = format!("{REPO}@{COMMIT}");
    for (spec, offline) in [
        (REPO, true),
        (main.as_str(), true),
        (pinned.as_str(), true),
        (REPO, false),
        (main.as_str(), false),
    ] {
        let mut vars = vec![("HF_ENDPOINT", endpoint.as_str())];
        if offline {
            vars.push(("HF_HUB_OFFLINE", "1"));
        }
        let what = format!(
            "{spec}, hub gone, {}",
            if offline {
                "HF_HUB_OFFLINE=1"
            } else {
                "online"
            }
        );
        let run = env.run_env(&vars, args(spec));
        check(&run, &what);
        run.check(
            run.stdout == first.stdout,
            format_args!("{what}: output differs from the first run"),
        );
    }
    assert_eq!(
        log.count(),
        downloaded,
        "runs from the cache reached the hub: {:#?}",
        log.lines()
    );
}

/// Nothing cached: offline names the offline switch; online with no hub names the endpoint and
/// the way out. Exit 1, nothing on stdout.
#[test]
fn uncached_model_errors_say_what_to_do() {
    let env = TestEnv::new();
    let photo = text(&image("rgb_97x61.png"));
    let hub = FakeHub::start(&[(REPO, model("tiny-a").as_path())]);
    let endpoint = hub.url();
    let log = hub.log();
    drop(hub);
    let args = |spec: &str| {
        vec![
            "caption".to_string(),
            "--model".into(),
            spec.to_string(),
            "--json".into(),
            photo.clone(),
        ]
    };

    let run = env.run_env(
        &[("HF_ENDPOINT", &endpoint), ("HF_HUB_OFFLINE", "1")],
        args(REPO),
    );
    run.expect_code(1);
    run.check(run.stdout.trim().is_empty(), "nothing should be captioned");
    for needle in [REPO, "HF_HUB_OFFLINE", "config.json"] {
        run.check(
            run.stderr.contains(needle),
            format_args!("the offline error should mention {needle}"),
        );
    }

    let run = env.run_env(&[("HF_ENDPOINT", &endpoint)], args(REPO));
    run.expect_code(1);
    run.check(run.stdout.trim().is_empty(), "nothing should be captioned");
    for needle in [REPO, endpoint.as_str(), "HF_ENDPOINT", "--model-dir"] {
        run.check(
            run.stderr.contains(needle),
            format_args!("the download error should mention {needle}"),
        );
    }
    assert_eq!(log.count(), 0);

    // A malformed repo spec is refused before any network use.
    let run = env.run_env(&[("HF_ENDPOINT", &endpoint)], args("no-slash"));
    run.check(
        matches!(run.code(), Some(1 | 2)),
        "a malformed repo spec should exit 1 or 2",
    );
    run.check(
        run.stderr.contains("no-slash"),
        "the error should quote the bad spec",
    );
}
