//! `captiond retry` (failed → pending) and `captiond rescan` (a request the daemon takes).

use captiond::catalog::Catalog;
use captiond::daemon::RunLock;

use super::support::{counts_of, TestEnv};

#[test]
fn retry_moves_failed_to_pending() {
    let env = TestEnv::new();
    let cat = env.corpus();
    let before = cat.queue_counts(None).unwrap();
    let run = env.run(&["retry"]);
    run.expect_code(0);
    run.check(
        run.stdout.trim() == "queued 1 failed photo again",
        "says how many",
    );
    run.check(
        run.stderr.contains("run --once"),
        "no daemon: says how to caption them",
    );
    let after = cat.queue_counts(None).unwrap();
    assert_eq!(after.failed, 0);
    assert_eq!(after.pending, before.pending + 1);
    let v: serde_json::Value =
        serde_json::from_str(env.run(&["status", "--json"]).stdout.trim()).unwrap();
    assert_eq!(counts_of(&v), after);
    let run = env.run(&["retry"]);
    run.expect_code(0);
    run.check(
        run.stdout.trim() == "queued 0 failed photos again",
        "nothing left",
    );
}

#[test]
fn rescan_without_a_daemon_says_so() {
    let env = TestEnv::new();
    env.corpus();
    let run = env.run(&["rescan"]);
    run.expect_code(1);
    run.check(
        run.stderr.contains("no daemon is running") && run.stderr.contains("captiond run --once"),
        "explains and suggests run --once",
    );
    let cat = Catalog::open(&env.db()).unwrap();
    assert!(cat.take_rescan_requests().unwrap().is_empty());
}

#[test]
fn rescan_reaches_the_daemon_through_the_catalog() {
    let env = TestEnv::new();
    env.corpus();
    let _daemon = RunLock::acquire(&env.db()).unwrap();
    let run = env.run(&["rescan", "photos/2023"]);
    run.expect_code(0);
    run.check(run.stdout.contains("requested"), "confirms");
    run.check(
        run.stdout.contains(&format!("pid {}", std::process::id())),
        "names the daemon",
    );
    let run = env.run(&["rescan", "photos/2023/"]);
    run.expect_code(0);
    run.check(run.stdout.contains("already waiting"), "no duplicate");
    let v: serde_json::Value =
        serde_json::from_str(env.run(&["status", "--json"]).stdout.trim()).unwrap();
    assert_eq!(v["rescan_requests"], 1);
    // What the daemon does each poll.
    let cat = Catalog::open(&env.db()).unwrap();
    let taken = cat.take_rescan_requests().unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].path.as_deref(), Some(env.photo("2023").as_path()));
    assert!(cat.take_rescan_requests().unwrap().is_empty());
    // Everything.
    env.run(&["rescan"]).expect_code(0);
    let taken = cat.take_rescan_requests().unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].path, None);
    // Outside every library.
    let run = env.run(&["rescan", "/somewhere/else"]);
    run.expect_code(1);
    run.check(run.stderr.contains("not inside a library"), "refused");
    assert!(cat.take_rescan_requests().unwrap().is_empty());
}
