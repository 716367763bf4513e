//! How the queue recovers across runs: failed photos stay failed over restarts until `retry`,
//! `run --once` does not wait out an earlier daemon run's back-off (but keeps the attempt limit),
//! a job whose photo was deleted mid-caption ends instead of staying pending, and
//! `reprocess --all` captions done photos again.

use std::fs;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use captiond::catalog::{Catalog, MediaFacts, Priority};
use rusqlite::{params, Connection};

use super::support::*;

const WAIT: Duration = Duration::from_secs(30);

/// A PNG that no decoder accepts (valid signature, garbage after).
fn corrupt_png(seed: u32) -> Vec<u8> {
    let mut bytes = png(seed)[..40].to_vec();
    bytes.extend(std::iter::repeat_n(0xA5u8, 300));
    bytes
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A writable connection to the catalog, for putting a job into a given state.
fn writer(env: &Env) -> Connection {
    let conn = Connection::open(env.db()).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn
}

/// (state, attempts, last_error, updated_at) of the job of `hash` (one profile in these tests).
fn job_of(env: &Env, hash: &str) -> Option<(String, i64, Option<String>, i64)> {
    let conn = env.sql()?;
    conn.query_row(
        "SELECT state, attempts, last_error, updated_at FROM jobs WHERE hash = ?1",
        [hash],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )
    .ok()
}

/// `status --json`'s queue counts: (pending, running, done, failed).
fn status_counts(env: &Env) -> (u64, u64, u64, u64) {
    let run = env.run(&["status", "--json"]);
    run.expect_code(0);
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim())
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e})\n{run}"));
    let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("no {k} in {v}"));
    (n("pending"), n("running"), n("done"), n("failed"))
}

/// Log lines of attempts at captioning that failed.
fn failure_lines(log: &str) -> Vec<String> {
    strip_ansi(log)
        .lines()
        .filter(|l| l.contains("cannot caption"))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_failed_photo_stays_failed_across_restarts_until_retry() {
    let env = Env::new();
    let broken = env.put("f/broken.png", &corrupt_png(3100));
    env.put("f/good.png", &png(3101));
    let broken_hash = blake3_hex(&corrupt_png(3100));

    let first = env.run(&["run", "--once"]);
    first.expect_code(0);
    first.check(first.summary() == (1, 1, 0), "1 captioned, 1 failed");
    let failed = job_of(&env, &broken_hash).expect("a job for the broken photo");
    assert_eq!((failed.0.as_str(), failed.1), ("failed", 3), "{failed:?}");

    // Every start re-checks the queue for the profile: a failed job is not given new attempts.
    for _ in 0..2 {
        let again = env.run(&["run", "--once"]);
        again.expect_code(0);
        again.check(again.summary() == (0, 0, 2), "nothing tried, both skipped");
        again.check(
            failure_lines(&again.stderr).is_empty(),
            "the failed photo was not tried again",
        );
        assert_eq!(job_of(&env, &broken_hash), Some(failed.clone()));
    }
    // Also across a daemon (not --once) start.
    let mut daemon = env.spawn();
    daemon.wait_ready(&env);
    std::thread::sleep(Duration::from_millis(3 * SETTLE_MS));
    let (code, log) = daemon.terminate();
    assert_eq!(code, Some(0), "{}", strip_ansi(&log));
    assert!(failure_lines(&log).is_empty(), "{}", strip_ansi(&log));
    assert_eq!(job_of(&env, &broken_hash), Some(failed.clone()));
    assert_eq!(status_counts(&env), (0, 0, 1, 1));

    // `captiond retry` is what gives it new attempts.
    env.run(&["retry"]).expect_code(0);
    let retried = env.run(&["run", "--once"]);
    retried.expect_code(0);
    retried.check(retried.summary().1 == 1, "tried again and failed again");
    assert_eq!(job_of(&env, &broken_hash).unwrap().1, 3);

    // So does new content at the path (the file was fixed).
    fs::write(&broken, png(3102)).unwrap();
    let fixed = env.run(&["run", "--once"]);
    fixed.expect_code(0);
    fixed.check(
        fixed.summary().0 == 1 && captioned_count(&fixed.stderr, &broken) == 1,
        "the new content is captioned",
    );
}

#[test]
fn run_once_does_not_wait_out_an_earlier_runs_back_off() {
    let env = Env::new();
    env.put("b/good.png", &png(3200));
    let flaky = env.put("b/flaky.png", &png(3201));
    env.put("b/broken.png", &corrupt_png(3202));
    let flaky_hash = blake3_hex(&png(3201));
    let broken_hash = blake3_hex(&corrupt_png(3202));

    // The daemon captions the good photos and fails the broken one once: it waits out a back-off
    // (30 s) when the daemon stops.
    let mut daemon = env.spawn();
    daemon.wait_for("2 done, 1 backing off", WAIT, || {
        let broken = job_of(&env, &broken_hash)?;
        (env.done() == 2 && broken.0 == "pending" && broken.1 == 1).then_some(())
    });
    let (code, log) = daemon.terminate();
    assert_eq!(code, Some(0), "{}", strip_ansi(&log));
    // A photo that failed twice for a passing reason (say, a share that hiccuped), an hour to go.
    let later = now_ms() + 3_600_000;
    writer(&env)
        .execute(
            "UPDATE jobs SET state = 'pending', attempts = 2, last_error = 'busy', not_before = ?2
             WHERE hash = ?1",
            params![flaky_hash, later],
        )
        .unwrap();
    let waiting = env.count(&format!(
        "SELECT count(*) FROM jobs WHERE state = 'pending' AND not_before > {}",
        now_ms()
    ));
    assert_eq!(waiting, 2, "two jobs backing off");

    // `--once` tries both now: the flaky one succeeds on its last attempt, the broken one uses up
    // its remaining two and is reported failed. Exit 0 either way.
    let run = env.run(&["run", "--once"]);
    run.expect_code(0);
    let (captioned, failed, _) = run.summary();
    run.check(
        (captioned, failed) == (1, 1),
        "flaky captioned, broken failed",
    );
    run.check(
        captioned_count(&run.stderr, &flaky) == 1,
        "the flaky photo captioned",
    );
    run.check(
        failure_lines(&run.stderr).len() == 2,
        "two more attempts at the broken photo, no more",
    );
    assert_eq!(
        job_of(&env, &flaky_hash).map(|j| j.0).as_deref(),
        Some("done")
    );
    let broken = job_of(&env, &broken_hash).unwrap();
    assert_eq!((broken.0.as_str(), broken.1), ("failed", 3), "{broken:?}");
    assert_eq!(status_counts(&env), (0, 0, 2, 1));
}

#[test]
fn a_job_whose_photo_was_deleted_mid_caption_does_not_stay_pending() {
    let env = Env::new();
    env.put("d/keep.png", &png(3300));
    env.run(&["run", "--once"]).expect_code(0);
    let profile: String = env
        .sql()
        .unwrap()
        .query_row("SELECT profile FROM jobs", [], |r| r.get(0))
        .unwrap();

    // Two photos appear and are queued; the worker claims both; then both are deleted. The
    // daemon records one deletion (the job keeps running) and is killed before the other is seen.
    let deleted_seen = env.put("d/seen.png", &png(3301));
    let deleted_unseen = env.put("d/unseen.png", &png(3302));
    {
        let cat = Catalog::open(&env.db()).unwrap();
        let lib = cat.upsert_library(&env.lib()).unwrap();
        for (path, seed) in [(&deleted_seen, 3301), (&deleted_unseen, 3302)] {
            let hash = blake3_hex(&png(seed));
            cat.record_photo(lib, path, 1, 1, &hash, &MediaFacts::default())
                .unwrap();
            assert!(cat.enqueue(&hash, &profile, Priority::New).unwrap());
        }
        assert_eq!(cat.claim(&profile, 10).unwrap().len(), 2);
        fs::remove_file(&deleted_seen).unwrap();
        fs::remove_file(&deleted_unseen).unwrap();
        assert_eq!(
            cat.mark_gone(std::slice::from_ref(&deleted_seen)).unwrap(),
            1
        );
    }
    assert_eq!(status_counts(&env), (0, 2, 1, 0));

    let run = env.run(&["run", "--once"]);
    run.expect_code(0);
    run.check(run.summary().0 == 0, "nothing captioned");
    run.check(run.summary().1 == 0, "a deleted photo is not a failure");
    assert_eq!(status_counts(&env), (0, 0, 1, 0), "nothing left pending");
    for path in [&deleted_seen, &deleted_unseen] {
        assert_eq!(env.state_of(path).as_deref(), Some("gone"));
    }
    assert_eq!(env.count("SELECT count(*) FROM jobs"), 1);

    // A second start finds the same.
    env.run(&["run", "--once"]).expect_code(0);
    assert_eq!(status_counts(&env), (0, 0, 1, 0));

    // The content coming back is queued and captioned anew.
    fs::write(&deleted_seen, png(3301)).unwrap();
    let back = env.run(&["run", "--once"]);
    back.expect_code(0);
    back.check(
        captioned_count(&back.stderr, &deleted_seen) == 1,
        "captioned when it returns",
    );
    assert_eq!(status_counts(&env), (0, 0, 2, 0));
}

#[test]
fn reprocess_all_captions_done_photos_again() {
    let env = Env::new();
    let a = env.put("r/a.png", &png(3400));
    let b = env.put("r/b.png", &png(3401));
    env.run(&["run", "--once"]).expect_code(0);
    let before = env.results();
    assert_eq!(before.len(), 4);

    // Without --all nothing changed in the profile: nothing to do.
    let plain = env.run(&["reprocess"]);
    plain.expect_code(0);
    plain.check(plain.stdout.starts_with("queued 0 "), "nothing queued");

    let all = env.run(&["reprocess", "--all"]);
    all.expect_code(0);
    all.check(
        all.stdout.starts_with("queued 2 ") && all.stdout.contains("(2 pending, 0 done)"),
        "both queued again",
    );
    // The old results stay until the new ones replace them.
    assert_eq!(env.results(), before);

    std::thread::sleep(Duration::from_millis(5));
    let run = env.run(&["run", "--once"]);
    run.expect_code(0);
    run.check(run.summary().0 == 2, "both captioned again");
    for p in [&a, &b] {
        run.check(captioned_count(&run.stderr, p) == 1, p.display());
    }
    let after = env.results();
    assert_eq!(after.len(), 4, "replaced, not added");
    for (old, new) in before.iter().zip(&after) {
        assert_eq!((&old.0, &old.1), (&new.0, &new.1));
        assert!(new.2 > old.2, "{new:?} is not newer than {old:?}");
    }
    assert_eq!(env.done(), 2);
}
