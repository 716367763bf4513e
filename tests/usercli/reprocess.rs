//! `captiond reprocess [--all]`: queue photos again for the configured model and tasks.

use super::support::{counts_of, TestEnv, PROFILE};

/// The corpus, with the config's model set to the one its jobs were made for ([`PROFILE`]).
fn corpus_env() -> (TestEnv, captiond::catalog::Catalog) {
    let env = TestEnv::new();
    let cat = env.corpus();
    let mut config = std::fs::read_to_string(env.config()).unwrap();
    config.push_str("\n[model]\nrepo = \"microsoft/Florence-2-base\"\n");
    std::fs::write(env.config(), config).unwrap();
    (env, cat)
}

/// `status --json`'s queue counts.
fn status(env: &TestEnv) -> captiond::catalog::QueueCounts {
    let run = env.run(&["status", "--json"]);
    run.expect_code(0);
    counts_of(&serde_json::from_str(run.stdout.trim()).unwrap())
}

#[test]
fn reprocess_queues_failed_photos_and_leaves_done_ones() {
    let (env, _cat) = corpus_env();
    let run = env.run(&["reprocess"]);
    run.expect_code(0);
    run.check(
        run.stdout.trim() == format!("queued 1 photos for {PROFILE} (2 pending, 6 done)"),
        "the failed photo queued, the done ones not",
    );
    let c = status(&env);
    assert_eq!((c.pending, c.running, c.done, c.failed), (2, 1, 6, 0));
}

#[test]
fn reprocess_all_queues_every_done_photo_again() {
    let (env, cat) = corpus_env();
    let run = env.run(&["reprocess", "--all"]);
    run.expect_code(0);
    run.check(
        run.stdout.trim() == format!("queued 7 photos for {PROFILE} (8 pending, 0 done)"),
        "6 done and 1 failed queued; the pending and running ones as they were",
    );
    let c = status(&env);
    assert_eq!((c.pending, c.running, c.done, c.failed), (8, 1, 0, 0));
    // Their captions stay searchable until new ones replace them.
    let run = env.run(&["search", "dog"]);
    run.expect_code(0);
    run.check(!run.stdout.trim().is_empty(), "still found");
    // The daemon gets them, each with a fresh set of attempts.
    let jobs = cat.claim(PROFILE, 100).unwrap();
    assert_eq!(jobs.len(), 8);
    assert!(jobs.iter().all(|j| j.attempts == 0));

    let run = env.run(&["reprocess", "--all"]);
    run.expect_code(0);
    run.check(
        run.stdout.starts_with("queued 0 photos"),
        "nothing left to queue",
    );
}
