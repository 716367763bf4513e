//! Shared helpers: fixture paths, temp folders, running exiftool/exiv2, comparing their output.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use captiond::sidecar::{Provenance, SidecarContent};
use serde_json::{Map, Value};

/// Skips the test (returns) when the readers are missing and `CI` is unset.
macro_rules! need_tools {
    () => {
        if !crate::sidecar::support::tools() {
            return;
        }
    };
}

pub use crate::common::fixture;

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn runs(tool: &str, arg: &str) -> bool {
    Command::new(tool)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether exiftool and exiv2 can be run. Missing under `CI` is a failure, elsewhere a loud skip.
pub fn tools() -> bool {
    static HAVE: OnceLock<bool> = OnceLock::new();
    let have = *HAVE.get_or_init(|| runs("exiftool", "-ver") && runs("exiv2", "--version"));
    if have {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    assert!(
        !ci,
        "CI is set but exiftool/exiv2 are missing: apt-get install -y libimage-exiftool-perl exiv2"
    );
    // Straight to the process's stderr (libtest captures `eprintln!` of passing tests), once.
    static WARNED: OnceLock<()> = OnceLock::new();
    WARNED.get_or_init(|| {
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "\n!!!!!!!!!! SKIPPED sidecar reader tests: exiftool and/or exiv2 not installed \
             (apt-get install -y libimage-exiftool-perl exiv2); set CI=1 to make this an error !!!!!!!!!!\n"
        );
    });
    false
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `exiftool -j -struct -G1 -a -n FILE`: tag → value, groups in the keys (`XMP-dc:Subject`).
pub fn exiftool_json(path: &Path) -> Map<String, Value> {
    let out = run(Command::new("exiftool")
        .args(["-j", "-struct", "-G1", "-a", "-n"])
        .arg(path));
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    match v {
        Value::Array(mut a) if a.len() == 1 => match a.remove(0) {
            Value::Object(m) => m,
            other => panic!("{other}"),
        },
        other => panic!("{other}"),
    }
}

/// `exiftool -validate -warning -a FILE`: the Validate line and the warnings.
pub fn exiftool_validate(path: &Path) -> (String, Vec<String>) {
    let out = run(Command::new("exiftool")
        .args(["-validate", "-warning", "-a", "-s"])
        .arg(path));
    let mut status = String::new();
    let mut warnings = Vec::new();
    for line in out.lines() {
        if let Some((k, v)) = line.split_once(':') {
            match k.trim() {
                "Validate" => status = v.trim().to_string(),
                "Warning" => warnings.push(v.trim().to_string()),
                _ => {}
            }
        }
    }
    (status, warnings)
}

/// Asserts exiftool's validation finds nothing new compared with `before` (OK when nothing before).
pub fn assert_validates(path: &Path, before: &[String]) {
    let (status, warnings) = exiftool_validate(path);
    let new: Vec<&String> = warnings.iter().filter(|w| !before.contains(w)).collect();
    assert!(
        new.is_empty() && (!before.is_empty() || status == "OK"),
        "exiftool -validate: {status} {warnings:?}\n{}",
        dump(path)
    );
}

/// `exiv2 -px FILE` (what digiKam/darktable's library sees): key → interpreted value.
pub fn exiv2_px(path: &Path) -> Vec<(String, String)> {
    let out = run(Command::new("exiv2").arg("-px").arg(path));
    out.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(4, char::is_whitespace).filter(|s| !s.is_empty());
            let key = parts.next()?.to_string();
            // key, type, count, value: columns are space-padded, so split the rest again.
            let rest = l[key.len()..].trim_start();
            let rest = rest.split_once(char::is_whitespace)?.1.trim_start();
            let value = rest
                .split_once(char::is_whitespace)
                .map_or("", |x| x.1.trim_start());
            Some((key, value.to_string()))
        })
        .collect()
}

pub fn exiv2_value(px: &[(String, String)], key: &str) -> Option<String> {
    px.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

/// The file's text, for failure messages.
pub fn dump(path: &Path) -> String {
    format!(
        "---- {} ----\n{}",
        path.display(),
        String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default())
    )
}

pub fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(other) => vec![other.to_string()],
        None => Vec::new(),
    }
}

pub fn num(v: Option<&Value>) -> f64 {
    match v {
        Some(Value::Number(n)) => n.as_f64().unwrap(),
        Some(Value::String(s)) => s.parse().unwrap(),
        other => panic!("not a number: {other:?}"),
    }
}

/// A typical result: caption, `<OD>` keywords and boxes (stored frame).
pub fn content(
    caption: Option<&str>,
    keywords: &[&str],
    regions: &[(&str, [f32; 4])],
) -> SidecarContent {
    SidecarContent {
        caption: caption.map(str::to_string),
        caption_writer: "Florence-2-base (captiond)".into(),
        keywords: keywords.iter().map(|s| s.to_string()).collect(),
        regions: regions.iter().map(|(l, b)| (l.to_string(), *b)).collect(),
        provenance: Provenance {
            model: "microsoft/Florence-2-base".into(),
            revision: "5ca5edf5bd017b9919c05d08aebef5e4c7ac3bac".into(),
            tasks: vec!["<MORE_DETAILED_CAPTION>".into(), "<OD>".into()],
            time: 1_717_000_000_000,
        },
        stored_size: Some((120, 90)),
    }
}

/// Copies a fixture into `dir` under `name`.
pub fn copy_to(dir: &Path, from: &str, name: &str) -> PathBuf {
    let to = dir.join(name);
    std::fs::copy(fixture(from), &to).unwrap_or_else(|e| panic!("{from}: {e}"));
    to
}

/// Names in `dir` that look like our temp files.
pub fn temp_leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp") || n.contains(".captiond-"))
        .collect()
}

/// Tags we may change; everything else exiftool reads must be identical after a merge.
pub const OURS: &[&str] = &[
    "XMP-x:XMPToolkit",
    "XMP-dc:Description",
    "XMP-dc:Subject",
    "XMP-lr:HierarchicalSubject",
    "XMP-digiKam:TagsList",
    "XMP-microsoft:LastKeywordXMP",
    "XMP-mediapro:CatalogSets",
    "XMP-photoshop:CaptionWriter",
    "XMP-xmp:MetadataDate",
    "XMP-iptcExt:ImageRegion",
    "XMP-mwg-rs:RegionInfo",
];

fn contains_all(after: &Value, before: &Value) -> bool {
    match (before, after) {
        (Value::Array(b), Value::Array(a)) => b.iter().all(|x| a.contains(x)),
        (b, Value::Array(a)) => a.contains(b),
        (b, a) => a == b,
    }
}

/// Every property in `before` is still in `after`: identical, or (for the containers we add to)
/// with every original item still present.
pub fn assert_preserved(before: &Map<String, Value>, after: &Map<String, Value>, path: &Path) {
    for (k, v) in before {
        if k == "SourceFile"
            || k.starts_with("System:")
            || k.starts_with("ExifTool:")
            || k.starts_with("File:")
            || k.starts_with("XMP-captiond:")
        {
            continue;
        }
        let a = after
            .get(k)
            .unwrap_or_else(|| panic!("{k} lost in the merge\n{}", dump(path)));
        if k == "XMP-x:XMPToolkit" || k == "XMP-xmp:MetadataDate" {
            continue;
        }
        if k == "XMP-mwg-rs:RegionInfo" {
            assert_eq!(a["AppliedToDimensions"], v["AppliedToDimensions"], "{k}");
            assert!(
                contains_all(&a["RegionList"], &v["RegionList"]),
                "{k}: {v} → {a}"
            );
            continue;
        }
        if OURS.contains(&k.as_str()) {
            assert!(contains_all(a, v), "{k}: {v} → {a}\n{}", dump(path));
        } else {
            assert_eq!(a, v, "{k} changed\n{}", dump(path));
        }
    }
}
