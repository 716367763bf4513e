//! How an error is shown where one line is all there is (a log field, a `doctor` check, a job's
//! stored error): the error and each of its causes, joined by `: `. Shared by every layer, so it
//! depends on nothing.

/// An error and its causes on one line.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open {0}")]
    struct Outer(&'static str, #[source] std::io::Error);

    #[test]
    fn every_cause_on_one_line() {
        let e = Outer("a.db", std::io::Error::other("disk full"));
        assert_eq!(error_chain(&e), "cannot open a.db: disk full");
    }
}
