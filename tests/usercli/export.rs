//! `captiond export`: Parquet read back by the Rust parquet reader (and by pyarrow where it is
//! installed), JSON Lines and CSV parsed, usage errors.

use std::fs::File;
use std::path::Path;
use std::process::Command;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int32Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

use super::support::{corpus_captions, TestEnv};

const COLUMNS: [&str; 12] = [
    "path",
    "hash",
    "size",
    "date_taken",
    "width",
    "height",
    "camera",
    "caption_more_detailed",
    "labels",
    "boxes",
    "box_labels",
    "model",
];

fn read_parquet(path: &Path) -> Vec<RecordBatch> {
    let file = File::open(path).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    reader.map(Result::unwrap).collect()
}

#[test]
fn parquet_reads_back_in_rust() {
    let env = TestEnv::new();
    env.corpus();
    let out = env.root().join("photos.parquet");
    let run = env.run(&["export", "--format", "parquet", "--out", "photos.parquet"]);
    run.expect_code(0);
    run.check(run.stdout.is_empty(), "nothing on stdout");
    run.check(
        run.stderr.contains("exported 9 photos"),
        "a summary on stderr",
    );
    let batches = read_parquet(&out);
    let schema = batches[0].schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, COLUMNS);
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, 9, "one row per present photo (captioned or not)");

    let captions = corpus_captions(&env);
    let mut seen = 0;
    for b in &batches {
        let path = b.column(0).as_string::<i32>();
        let hash = b.column(1).as_string::<i32>();
        let size = b.column(2).as_primitive::<Int64Type>();
        let date = b.column(3).as_string::<i32>();
        let width = b.column(4).as_primitive::<Int32Type>();
        let camera = b.column(6).as_string::<i32>();
        let caption = b.column(7).as_string::<i32>();
        let labels = b.column(8).as_list::<i32>();
        let boxes = b.column(9).as_list::<i32>();
        let box_labels = b.column(10).as_list::<i32>();
        let model = b.column(11).as_string::<i32>();
        for i in 0..b.num_rows() {
            let p = path.value(i);
            assert_eq!(hash.value(i).len(), 64);
            assert_eq!(size.value(i), 2_500_000);
            assert_eq!(width.value(i), 4000);
            match captions.get(p) {
                Some(text) => {
                    seen += 1;
                    assert_eq!(caption.value(i), *text, "{p}");
                    assert_eq!(model.value(i), "microsoft/Florence-2-base@main");
                }
                None => {
                    assert!(
                        caption.is_null(i) && model.is_null(i),
                        "{p} has no result yet"
                    );
                    assert_eq!(labels.value(i).len(), 0);
                }
            }
            if p.ends_with("IMG_0005.JPG") {
                assert_eq!(date.value(i), "2021-05-09T11:15:00");
                assert_eq!(camera.value(i), "Nikon Z6");
                let l = labels.value(i);
                let l: Vec<&str> = l.as_string::<i32>().iter().flatten().collect();
                assert_eq!(l, ["bench", "dog", "frisbee", "person"], "sorted keywords");
                let bl = box_labels.value(i);
                let bl: Vec<&str> = bl.as_string::<i32>().iter().flatten().collect();
                assert_eq!(
                    bl,
                    ["dog", "frisbee", "person", "bench"],
                    "box order as stored"
                );
                let bx = boxes.value(i);
                let bx = bx.as_list::<i32>();
                assert_eq!(bx.len(), 4);
                let second = bx.value(1);
                let second: Vec<f32> = second
                    .as_primitive::<Float32Type>()
                    .iter()
                    .flatten()
                    .collect();
                assert_eq!(second, [0.1, 0.25, 0.6, 0.75]);
            }
            if p.ends_with("IMG_0004.JPG") {
                assert!(date.is_null(i) && camera.is_null(i));
            }
        }
    }
    assert_eq!(seen, 6);
}

/// pyarrow (and pandas, if present) read the file. Skipped with a message when pyarrow is not
/// installed, except under CI=true, where `.ci/run` installs it: there a missing pyarrow fails.
#[test]
fn parquet_reads_back_in_pyarrow() {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let has_pyarrow = Command::new("python3")
        .args(["-c", "import pyarrow"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_pyarrow {
        assert!(
            !ci,
            "pyarrow is missing under CI (`.ci/run` puts a venv with it first on PATH)"
        );
        say(
            ci,
            "usercli: pyarrow check SKIPPED: `python3 -c 'import pyarrow'` failed",
        );
        return;
    }
    let env = TestEnv::new();
    env.corpus();
    env.run(&["export", "--out", "photos.parquet"])
        .expect_code(0);
    let script = r#"
import json, sys
import pyarrow.parquet as pq
t = pq.read_table(sys.argv[1])
rows = t.to_pylist()
row = next(r for r in rows if r["path"].endswith("IMG_0005.JPG"))
out = {
    "num_rows": t.num_rows,
    "columns": t.column_names,
    "types": {f.name: str(f.type) for f in t.schema},
    "row": row,
}
try:
    import pandas  # noqa: F401
    df = t.to_pandas()
    out["pandas_rows"] = len(df)
    out["pandas_labels"] = list(df.loc[df["path"].str.endswith("IMG_0005.JPG"), "labels"].iloc[0])
except ImportError:
    pass
print(json.dumps(out))
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(env.root().join("photos.parquet"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pyarrow failed: {stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["num_rows"], 9);
    assert_eq!(v["columns"], serde_json::json!(COLUMNS));
    assert_eq!(v["types"]["labels"], "list<item: string>");
    assert_eq!(v["types"]["boxes"], "list<item: list<item: float>>");
    assert_eq!(v["types"]["size"], "int64");
    let row = &v["row"];
    assert_eq!(row["camera"], "Nikon Z6");
    assert_eq!(
        row["labels"],
        serde_json::json!(["bench", "dog", "frisbee", "person"])
    );
    assert_eq!(
        row["boxes"][1],
        serde_json::json!([0.10000000149011612, 0.25, 0.6000000238418579, 0.75])
    );
    assert!(row["caption_more_detailed"]
        .as_str()
        .unwrap()
        .starts_with("Several dogs"));
    if v.get("pandas_rows").is_some() {
        assert_eq!(v["pandas_rows"], 9);
        assert_eq!(
            v["pandas_labels"],
            serde_json::json!(["bench", "dog", "frisbee", "person"])
        );
    }
    let msg = format!(
        "usercli: pyarrow check RAN (pandas {})",
        if v.get("pandas_rows").is_some() {
            "too"
        } else {
            "not installed"
        }
    );
    say(ci, &msg);
}

/// Tells whether the pyarrow check ran, past libtest's output capture (so a passing run shows it
/// too); under CI=true also names CI.
fn say(ci: bool, msg: &str) {
    use std::io::Write;
    let ci = if ci { " [CI=true]" } else { "" };
    let _ = writeln!(std::io::stderr().lock(), "{msg}{ci}");
}

#[test]
fn jsonl_to_stdout_parses() {
    let env = TestEnv::new();
    env.corpus();
    let run = env.run(&["export", "--format", "jsonl"]);
    run.expect_code(0);
    let rows = run.json_lines();
    assert_eq!(rows.len(), 9);
    for row in &rows {
        let keys: Vec<&str> = row
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut want = COLUMNS.to_vec();
        let mut got = keys.clone();
        want.sort();
        got.sort();
        assert_eq!(got, want);
    }
    let r = rows
        .iter()
        .find(|r| r["path"].as_str().unwrap().ends_with("IMG_0003.JPG"))
        .unwrap();
    assert_eq!(r["labels"], serde_json::json!(["car", "cat", "sofa"]));
    assert_eq!(r["boxes"][0], serde_json::json!([0.0, 0.25, 0.5, 0.75]));
    assert_eq!(r["box_labels"], serde_json::json!(["cat", "sofa", "car"]));
    assert_eq!(r["date_taken"], "2022-12-24T20:30:00");
    assert_eq!(r["camera"], "Canon EOS 80D");
    let pending = rows
        .iter()
        .find(|r| r["path"].as_str().unwrap().ends_with("IMG_0100.JPG"))
        .unwrap();
    assert!(pending["caption_more_detailed"].is_null() && pending["model"].is_null());
}

#[test]
fn csv_parses() {
    let env = TestEnv::new();
    env.corpus();
    let run = env.run(&["export", "--out", "photos.csv"]);
    run.expect_code(0);
    let mut reader = csv::Reader::from_path(env.root().join("photos.csv")).unwrap();
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(header, COLUMNS);
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), 9);
    let r = records
        .iter()
        .find(|r| r[0].ends_with("IMG_0002.JPG"))
        .unwrap();
    assert!(r[7].starts_with("A red car parked"));
    let labels: Vec<String> = serde_json::from_str(&r[8]).unwrap();
    assert_eq!(labels, ["car", "shop"]);
    let boxes: Vec<[f32; 4]> = serde_json::from_str(&r[9]).unwrap();
    assert_eq!(boxes.len(), 2);
    assert_eq!(&r[6], "Apple iPhone 13");
    let undated = records
        .iter()
        .find(|r| r[0].ends_with("IMG_0004.JPG"))
        .unwrap();
    assert_eq!((&undated[3], &undated[6]), ("", ""));
}

#[test]
fn usage_errors_exit_2_and_leave_no_file() {
    let env = TestEnv::new();
    env.corpus();
    let run = env.run(&["export", "--format", "parquet"]);
    run.expect_code(2);
    run.check(run.stderr.contains("--out"), "says --out is needed");
    env.run(&["export"]).expect_code(2);
    env.run(&["export", "--out", "photos.txt"]).expect_code(2);
    env.run(&["export", "--format", "xml"]).expect_code(2);
    // Destinations that cannot be written: runtime error, nothing left behind. The runs start
    // in the temp dir's root, so a relative partial file would land there.
    let listing = || -> std::collections::BTreeSet<String> {
        std::fs::read_dir(env.root())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    std::fs::write(env.root().join("afile"), b"x").unwrap();
    let before = listing();
    let run = env.run(&["export", "--out", "no/such/dir/photos.parquet"]);
    run.expect_code(1);
    let run = env.run(&["export", "--out", "afile/photos.csv"]);
    run.expect_code(1);
    let left: Vec<_> = listing().difference(&before).cloned().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(
        !before.contains("photos.txt"),
        "a usage error wrote its file"
    );
}
