//! The best-matching fragment of a hit, matches marked: the first of caption, labels, OCR text
//! and path that contains a query word, cut to [`WINDOW`] tokens around the most distinct matches
//! (as FTS5's `snippet()` did). Matching uses the index's own analyzer, so a highlighted word is
//! exactly one the index matched ("dogs" for the query "dog").

use std::collections::HashSet;

use super::index::tokens;
use super::{ParsedQuery, HIGHLIGHT_END, HIGHLIGHT_START};

/// Tokens shown around the matches.
const WINDOW: usize = 16;
const ELLIPSIS: &str = "…";

/// What a document token must be to count as a match.
struct Matcher {
    exact: HashSet<String>,
    prefixes: Vec<String>,
}

impl Matcher {
    fn new(query: &ParsedQuery) -> Matcher {
        let mut exact = HashSet::new();
        let mut prefixes = Vec::new();
        for term in query.groups.iter().flatten() {
            for (tok, _, _) in tokens(&term.text, !term.prefix) {
                if term.prefix {
                    prefixes.push(tok);
                } else {
                    exact.insert(tok);
                }
            }
        }
        Matcher { exact, prefixes }
    }

    fn matches(&self, token: &str) -> bool {
        self.exact.contains(token) || self.prefixes.iter().any(|p| token.starts_with(p.as_str()))
    }
}

/// The snippet for one hit; `texts` in field order (caption, labels, OCR, path).
pub(super) fn snippet(texts: [&str; 4], query: &ParsedQuery) -> String {
    let matcher = Matcher::new(query);
    for text in texts {
        let toks = tokens(text, true);
        let hits: Vec<bool> = toks.iter().map(|t| matcher.matches(&t.0)).collect();
        if hits.iter().any(|&h| h) {
            return cut(text, &toks, &hits);
        }
    }
    // No word visible (e.g. matched by a stale index): the caption's start.
    let toks = tokens(texts[0], true);
    cut(texts[0], &toks, &vec![false; toks.len()])
}

/// `text` cut to the window with the most distinct matched terms (then most matches, then the
/// earliest), re-centred on its matches, matches marked.
fn cut(text: &str, toks: &[(String, usize, usize)], hits: &[bool]) -> String {
    if toks.is_empty() {
        return text.chars().take(200).collect();
    }
    let len = WINDOW.min(toks.len());
    let mut best = (0usize, 0usize, 0usize); // (distinct, count, start)
    for start in 0..=toks.len() - len {
        let range = start..start + len;
        let distinct: HashSet<&str> = range
            .clone()
            .filter(|&i| hits[i])
            .map(|i| toks[i].0.as_str())
            .collect();
        let count = range.filter(|&i| hits[i]).count();
        if (distinct.len(), count) > (best.0, best.1) {
            best = (distinct.len(), count, start);
        }
    }
    // Centre the chosen window's matches, so they have context on both sides.
    let (first, last) = {
        let mut m = (best.2..best.2 + len).filter(|&i| hits[i]);
        let first = m.next().unwrap_or(best.2);
        (first, m.next_back().unwrap_or(first))
    };
    let start = ((first + last) / 2)
        .saturating_sub(len / 2)
        .min(toks.len() - len)
        .min(first);
    let end = start + len;
    // Whole text at either edge (keeps a leading quote or the final full stop).
    let from = if start == 0 { 0 } else { toks[start].1 };
    let to = if end == toks.len() {
        text.len()
    } else {
        toks[end - 1].2
    };
    let mut out = String::with_capacity(to - from + 16);
    if start > 0 {
        out.push_str(ELLIPSIS);
    }
    let mut at = from;
    for i in start..end {
        let (_, a, b) = toks[i];
        if hits[i] {
            out.push_str(&text[at..a]);
            out.push(HIGHLIGHT_START);
            out.push_str(&text[a..b]);
            out.push(HIGHLIGHT_END);
            at = b;
        }
    }
    out.push_str(&text[at..to]);
    if end < toks.len() {
        out.push_str(ELLIPSIS);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::parse_query;
    use super::*;

    fn plain(s: &str) -> String {
        s.replace(HIGHLIGHT_START, "[").replace(HIGHLIGHT_END, "]")
    }

    #[test]
    fn marks_stemmed_matches_in_the_caption() {
        let q = parse_query("dog beach");
        let s = snippet(["Two dogs run on the beach.", "dog", "", "/p/a.jpg"], &q);
        assert_eq!(plain(&s), "Two [dogs] run on the [beach].");
    }

    #[test]
    fn falls_back_to_labels_then_path() {
        let q = parse_query("holiday");
        let s = snippet(["A cat.", "cat", "", "/photos/holiday/IMG_1.JPG"], &q);
        assert_eq!(plain(&s), "/photos/[holiday]/IMG_1.JPG");
    }

    #[test]
    fn cuts_long_text_around_the_matches() {
        let words: Vec<String> = (0..40).map(|i| format!("w{i}")).collect();
        let mut text = words.join(" ");
        text.push_str(" red car parked.");
        let q = parse_query("\"red car\"");
        let s = plain(&snippet([&text, "", "", ""], &q));
        assert!(s.starts_with('…'), "{s}");
        assert!(s.ends_with("[red] [car] parked."), "{s}");
        assert_eq!(s.split_whitespace().count(), 16, "{s}");
    }

    #[test]
    fn prefixes_match_word_starts() {
        let q = parse_query("bicyc*");
        let s = snippet(["A bicycle leaning on a wall.", "", "", ""], &q);
        assert_eq!(plain(&s), "A [bicycle] leaning on a wall.");
    }
}
