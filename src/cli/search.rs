//! `captiond search QUERY`: full-text search of the catalog (opened read-only, so it works while
//! the daemon writes). Ranking, stemming and the query language are the catalog's
//! ([`crate::catalog::search`]): words must all match ("dogs" finds "dog"), `"exact phrase"`,
//! `prefix*`, `a OR b`, `-word` to exclude (after `--`, e.g. `captiond search -- car -red`).
//!
//! Output: with `--json`, one object per line with `path`, `caption`, `labels`, `score` (higher
//! is better), best first (the CLI contract). Otherwise, on a terminal (or with `--color
//! always`), each hit is its path on one line and the best-matching snippet of its caption
//! indented below, matches in bold red (`NO_COLOR` respected); when stdout is not a terminal, one
//! line per hit: `PATH<TAB>SNIPPET`, with no highlighting and no escape codes (so `cut -f1` gives
//! the paths). No match is not an error: exit 0, nothing on stdout, a short note on stderr.
//!
//! Also the hidden `captiond bench-search` (see [`bench`]): fills a catalog with synthetic
//! captions through the catalog's bulk API and reports search latency and export time.

use std::borrow::Cow;
use std::io::{IsTerminal, Write};
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::catalog::{Hit, SearchQuery, HIGHLIGHT_END, HIGHLIGHT_START};
use crate::config::Settings;

use super::status::open_catalog;

/// When to colour the human output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// When stdout is a terminal and `NO_COLOR` is not set.
    Auto,
    Always,
    Never,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// What to look for; several words are one query and must all match (stemmed: "dogs" finds
    /// "dog"). Also "exact phrase", prefix*, `a OR b`, and -word to exclude (put `--` before a
    /// query that starts with -). May be left out when a filter is given: then the filtered
    /// photos are listed, newest taken first.
    #[arg(
        value_name = "QUERY",
        required_unless_present_any = ["after", "before", "label", "under", "camera"]
    )]
    pub query: Vec<String>,

    /// One JSON object per hit per line: `path`, `caption`, `labels`, `score`.
    #[arg(long)]
    pub json: bool,

    /// Most hits to show; 0 shows all.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: usize,

    /// Only photos taken on or after DATE (EXIF date): YYYY, YYYY-MM, YYYY-MM-DD or
    /// YYYY-MM-DDTHH:MM:SS.
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    pub after: Option<String>,

    /// Only photos taken before DATE (same forms; `--after 2023 --before 2024` is all of 2023).
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    pub before: Option<String>,

    /// Only photos with this keyword (an object label; "Dogs" finds "dog").
    #[arg(long, value_name = "LABEL")]
    pub label: Option<String>,

    /// Only photos inside this folder (relative to the current directory, or absolute).
    #[arg(long, value_name = "DIR")]
    pub under: Option<PathBuf>,

    /// Only photos whose camera make or model contains TEXT (case-insensitive).
    #[arg(long, value_name = "TEXT")]
    pub camera: Option<String>,

    /// Highlight matches with colour: auto (on a terminal, unless NO_COLOR is set), always, never.
    #[arg(long, value_enum, value_name = "WHEN", default_value = "auto")]
    pub color: ColorChoice,
}

/// One `--json` line (contract: path, caption, labels, score).
#[derive(Debug, Serialize)]
pub struct SearchRow<'a> {
    pub path: Cow<'a, str>,
    pub caption: &'a str,
    pub labels: &'a [String],
    pub score: f64,
}

/// Checks a `--after`/`--before` value (the catalog's date forms), for clap.
fn parse_date(value: &str) -> Result<String, String> {
    crate::catalog::search::normalise_date(value)
        .map_err(|_| "expected YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS".to_owned())
}

/// `path` made absolute against the current directory, `.` and `..` resolved by name (no
/// symlinks followed: the catalog stores paths as the library walk found them).
pub fn absolute(path: &Path) -> std::io::Result<PathBuf> {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

/// A snippet on one line: newlines (between tasks' captions) and runs of spaces become one space.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Replaces the catalog's highlight markers by ANSI bold red, or drops them.
fn highlight(snippet: &str, colour: bool) -> String {
    let mut out = String::with_capacity(snippet.len() + 16);
    for c in snippet.chars() {
        match c {
            HIGHLIGHT_START if colour => out.push_str("\x1b[1;31m"),
            HIGHLIGHT_END if colour => out.push_str("\x1b[0m"),
            HIGHLIGHT_START | HIGHLIGHT_END => {}
            c => out.push(c),
        }
    }
    out
}

fn print_hits(hits: &[Hit], args: &SearchArgs) -> std::io::Result<()> {
    let stdout = std::io::stdout();
    let tty = stdout.is_terminal();
    let colour = match args.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
    };
    let mut out = std::io::BufWriter::new(stdout.lock());
    for hit in hits {
        if args.json {
            let row = SearchRow {
                path: hit.path.to_string_lossy(),
                caption: &hit.caption,
                labels: &hit.labels,
                score: hit.score,
            };
            serde_json::to_writer(&mut out, &row)?;
            writeln!(out)?;
            continue;
        }
        let snippet = highlight(&one_line(&hit.snippet), colour);
        let path = hit.path.display();
        match (tty || args.color == ColorChoice::Always, colour) {
            (true, true) => writeln!(out, "\x1b[35m{path}\x1b[0m\n    {snippet}")?,
            (true, false) => writeln!(out, "{path}\n    {snippet}")?,
            (false, _) => writeln!(out, "{path}\t{snippet}")?,
        }
    }
    out.flush()
}

pub fn run(config: Option<&Path>, args: SearchArgs) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(config)?;
    let catalog = open_catalog(&settings.database, true)?;
    let under = match &args.under {
        Some(dir) => Some(absolute(dir)?),
        None => None,
    };
    let query = SearchQuery {
        text: args.query.join(" "),
        limit: args.limit,
        after: args.after.clone(),
        before: args.before.clone(),
        label: args.label.clone(),
        under,
        camera: args.camera.clone(),
    };
    let hits = catalog.search(&query)?;
    if hits.is_empty() {
        let what = if query.text.trim().is_empty() {
            "no photos match these filters".to_owned()
        } else {
            format!("no photos match {:?}", query.text)
        };
        let counts = catalog.queue_counts(None)?;
        let hint = if counts.done == 0 {
            " (nothing has been captioned yet: is `captiond run` running?)"
        } else {
            ""
        };
        eprintln!("captiond: {what}{hint}");
        return Ok(ExitCode::SUCCESS);
    }
    print_hits(&hits, &args)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_checked() {
        assert_eq!(parse_date("2023").unwrap(), "2023");
        assert_eq!(parse_date("2023-07-14 16:02").unwrap(), "2023-07-14T16:02");
        assert!(parse_date("2023-7-14").is_err());
        assert!(parse_date("last week").is_err());
    }

    #[test]
    fn highlights_and_flattens() {
        let s = format!("a {HIGHLIGHT_START}dog{HIGHLIGHT_END}\nruns");
        assert_eq!(highlight(&one_line(&s), false), "a dog runs");
        assert_eq!(
            highlight(&one_line(&s), true),
            "a \x1b[1;31mdog\x1b[0m runs"
        );
    }

    #[test]
    fn absolute_resolves_dots_by_name() {
        assert_eq!(
            absolute(Path::new("/a/b/../c/./d")).unwrap(),
            PathBuf::from("/a/c/d")
        );
        assert!(absolute(Path::new("x")).unwrap().is_absolute());
    }
}
