//! The CLI works while another process writes: WAL readers never wait for the writer, so search,
//! status and export answer while a write transaction is open and while jobs keep finishing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use captiond::catalog::{Catalog, MediaFacts};

use super::support::{counts_of, results, TestEnv, PROFILE};

#[test]
fn readers_work_while_a_write_transaction_is_open() {
    let env = TestEnv::new();
    env.corpus();
    let db = env.db();
    let lib_root = env.library();
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    // A writer that takes the write lock, writes, and keeps the transaction open.
    let writer = std::thread::spawn(move || {
        let mut cat = Catalog::open(&db).unwrap();
        let lib = cat.upsert_library(&lib_root).unwrap();
        let mut batch = cat.batch().unwrap();
        for i in 0..50 {
            let hash = blake3::hash(format!("uncommitted {i}").as_bytes())
                .to_hex()
                .to_string();
            batch
                .record_photo(
                    lib,
                    &lib_root.join(format!("late/IMG_{i}.JPG")),
                    1,
                    1,
                    &hash,
                    &MediaFacts::default(),
                )
                .unwrap();
            batch
                .enqueue(&hash, PROFILE, captiond::catalog::Priority::New)
                .unwrap();
        }
        ready_tx.send(()).unwrap();
        done_rx.recv_timeout(Duration::from_secs(120)).ok();
        batch.commit().unwrap();
    });
    ready_rx.recv().unwrap();

    // The writer commits only after these runs are done: a reader that waited for it would
    // hit the busy timeout and fail, so success means it did not wait (no clock involved).
    let run = env.run(&["search", "dog", "--json"]);
    run.expect_code(0);
    run.check(run.json_lines().len() == 3, "search answers");
    let run = env.run(&["status", "--json"]);
    run.expect_code(0);
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    run.check(v["pending"] == 1, "the open transaction is not visible");
    let run = env.run(&["export", "--format", "jsonl"]);
    run.expect_code(0);
    run.check(
        run.json_lines().len() == 9,
        "export answers from the last commit",
    );

    done_tx.send(()).unwrap();
    writer.join().unwrap();
    let run = env.run(&["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    run.check(v["pending"] == 51, "committed jobs visible afterwards");
}

#[test]
fn readers_work_while_jobs_keep_finishing() {
    let env = TestEnv::new();
    env.corpus();
    let db = env.db();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let db = db.clone();
        let lib_root = env.library();
        std::thread::spawn(move || {
            let cat = Catalog::open(&db).unwrap();
            let lib = cat.upsert_library(&lib_root).unwrap();
            let mut n = 0u32;
            while !stop.load(Ordering::SeqCst) && n < 5000 {
                let hash = blake3::hash(format!("stream {n}").as_bytes())
                    .to_hex()
                    .to_string();
                let path = lib_root.join(format!("stream/IMG_{n:05}.JPG"));
                cat.record_photo(lib, &path, 1, 1, &hash, &MediaFacts::default())
                    .unwrap();
                cat.enqueue(&hash, PROFILE, captiond::catalog::Priority::New)
                    .unwrap();
                for job in cat.claim(PROFILE, 10).unwrap() {
                    if job.hash == hash {
                        cat.finish(
                            job.id,
                            &hash,
                            &results("A pelican on a pier.", &["pelican"]),
                        )
                        .unwrap();
                    } else {
                        cat.release(&[job.id]).unwrap();
                    }
                }
                n += 1;
            }
            n
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..3 {
        let run = env.run(&["search", "pelican", "--json", "--limit", "0"]);
        run.expect_code(0);
        let run = env.run(&["status", "--json"]);
        run.expect_code(0);
        let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
        let c = counts_of(&v);
        run.check(c.failed == 1, "counts readable mid-stream");
        env.run(&["export", "--format", "csv"]).expect_code(0);
    }
    stop.store(true, Ordering::SeqCst);
    let written = writer.join().unwrap();
    assert!(written > 0);
    let run = env.run(&["search", "pelican", "--json", "--limit", "0"]);
    run.check(
        run.json_lines().len() == written as usize,
        "every finished photo searchable",
    );
}
