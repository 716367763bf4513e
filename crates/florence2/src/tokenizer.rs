//! The tokenizer as the reference processor uses it. Microsoft's remote-code repos
//! (`microsoft/Florence-2-*`) ship a plain BART `tokenizer.json` whose added tokens are only
//! `<s> <pad> </s> <unk> <mask>`: their `processing_florence2.py` adds Florence-2's 1,024 task and
//! location tokens when it loads (`<od> </od> <ocr> </ocr>`, `<loc_0>`…`<loc_999>`, `<cap>`…`<and>`,
//! in that order, right after the base vocabulary). Without them every `<loc_N>` the model emits
//! decodes to nothing and `<OD>` finds no boxes. [`load_tokenizer`] adds them the same way (same
//! strings, order and ids; special, not normalised) when a tokenizer lacks them, and checks that
//! the result fits the model's vocabulary.

use std::path::{Path, PathBuf};

use tokenizers::{AddedToken, Tokenizer};

use super::config::{Config, ConfigLayout};

/// How many tokens Florence-2's processor adds to the BART vocabulary.
pub const FLORENCE_TOKEN_COUNT: usize = 4 + 1000 + 20;

/// The tokens after `<loc_999>`, in the processor's order (`desciption` is the reference's
/// spelling).
const TRAILING: [&str; 20] = [
    "<cap>",
    "</cap>",
    "<ncap>",
    "</ncap>",
    "<dcap>",
    "</dcap>",
    "<grounding>",
    "</grounding>",
    "<seg>",
    "</seg>",
    "<sep>",
    "<region_cap>",
    "</region_cap>",
    "<region_to_desciption>",
    "</region_to_desciption>",
    "<proposal>",
    "</proposal>",
    "<poly>",
    "</poly>",
    "<and>",
];

/// Florence-2's task and location tokens in the order the reference processor adds them.
pub fn florence_tokens() -> Vec<String> {
    let mut out = Vec::with_capacity(FLORENCE_TOKEN_COUNT);
    out.extend(["<od>", "</od>", "<ocr>", "</ocr>"].map(String::from));
    out.extend((0..1000).map(|i| format!("<loc_{i}>")));
    out.extend(TRAILING.map(String::from));
    out
}

/// Why a tokenizer cannot serve a model. Each names the tokenizer file.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("{path}: cannot read the tokenizer: {message}")]
    Read { path: PathBuf, message: String },
    #[error(
        "{path}: the tokenizer has {present} of Florence-2's {FLORENCE_TOKEN_COUNT} task and \
         location tokens (first missing: {missing}); a tokenizer has all of them or none"
    )]
    PartialFlorenceTokens {
        path: PathBuf,
        present: usize,
        missing: String,
    },
    #[error(
        "{path}: Florence-2's token {token} has id {got:?} here, the reference processor's is \
         {want}: the tokenizer's added tokens are out of order"
    )]
    TokenOrder {
        path: PathBuf,
        token: String,
        got: Option<u32>,
        want: u32,
    },
    #[error(
        "{path}: the tokenizer has {tokens} tokens{added} but config.json's text_config.vocab_size \
         is {vocab}: the tokenizer and the weights belong to different models"
    )]
    VocabularyMismatch {
        path: PathBuf,
        tokens: usize,
        added: &'static str,
        vocab: usize,
    },
    #[error(
        "{path}: config.json says the image token is id {want}, but the tokenizer has {got:?} \
         for <image>"
    )]
    ImageToken {
        path: PathBuf,
        want: u32,
        got: Option<u32>,
    },
}

/// Reads `tokenizer.json`, adds the Florence tokens if it lacks them, and checks that it fits
/// the model described by `config`.
pub fn load_tokenizer(path: &Path, config: &Config) -> Result<Tokenizer, TokenizerError> {
    let mut tokenizer = Tokenizer::from_file(path).map_err(|e| TokenizerError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let added = add_florence_tokens(&mut tokenizer, path)?;
    check_vocabulary(&tokenizer, config, path, added)?;
    Ok(tokenizer)
}

/// Adds the Florence tokens after the current vocabulary when none of them is there, as the
/// remote processor's `tokenizer.add_special_tokens` does; checks their ids either way.
/// Returns whether it added them.
fn add_florence_tokens(tokenizer: &mut Tokenizer, path: &Path) -> Result<bool, TokenizerError> {
    let tokens = florence_tokens();
    let present = tokens
        .iter()
        .filter(|t| tokenizer.token_to_id(t).is_some())
        .count();
    let added = match present {
        0 => {
            let specials: Vec<AddedToken> = tokens
                .iter()
                .map(|t| AddedToken::from(t.as_str(), true).normalized(false))
                .collect();
            tokenizer.add_special_tokens(&specials);
            true
        }
        n if n == tokens.len() => false,
        n => {
            let missing = tokens
                .iter()
                .find(|t| tokenizer.token_to_id(t).is_none())
                .cloned()
                .unwrap_or_default();
            return Err(TokenizerError::PartialFlorenceTokens {
                path: path.to_path_buf(),
                present: n,
                missing,
            });
        }
    };
    // Consecutive ids from `<od>` on, as the processor assigns them: a tokenizer that lists them
    // in another order would map the model's `<loc_N>` outputs to the wrong boxes.
    let first = tokenizer.token_to_id(&tokens[0]).unwrap_or_default();
    for (i, token) in tokens.iter().enumerate() {
        let want = first + i as u32;
        let got = tokenizer.token_to_id(token);
        if got != Some(want) {
            return Err(TokenizerError::TokenOrder {
                path: path.to_path_buf(),
                token: token.clone(),
                got,
                want,
            });
        }
    }
    Ok(added)
}

/// Whether a model with `vocab` embedding rows serves a tokenizer of `tokens` tokens: exactly, or
/// padded to the next multiple of 64.
fn vocabulary_fits(tokens: usize, vocab: usize) -> bool {
    vocab == tokens || vocab == tokens.next_multiple_of(64)
}

/// The model's vocabulary must be the tokenizer's length (Microsoft's repos: 51,289), or that
/// length rounded up to a multiple of 64 (the native conversion pads it); in the native layout the
/// `<image>` token must sit where config.json says.
fn check_vocabulary(
    tokenizer: &Tokenizer,
    config: &Config,
    path: &Path,
    added: bool,
) -> Result<(), TokenizerError> {
    let tokens = tokenizer.get_vocab_size(true);
    let vocab = config.text.vocab_size;
    if !vocabulary_fits(tokens, vocab) {
        return Err(TokenizerError::VocabularyMismatch {
            path: path.to_path_buf(),
            tokens,
            added: if added {
                " (with Florence-2's task and location tokens added)"
            } else {
                ""
            },
            vocab,
        });
    }
    if config.layout == ConfigLayout::Native {
        if let Some(want) = config.image_token_id {
            let got = tokenizer.token_to_id("<image>");
            if got != Some(want) {
                return Err(TokenizerError::ImageToken {
                    path: path.to_path_buf(),
                    want,
                    got,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(rel)
    }

    fn config(model: &str) -> Config {
        let text =
            std::fs::read_to_string(fixture(&format!("models/{model}/config.json"))).unwrap();
        Config::from_json(&text).unwrap()
    }

    /// The list matches the reference processor's, as recorded in a tokenizer that the
    /// reference saved with the tokens (ids 801..1824 after an 800-word vocabulary and `<mask>`).
    #[test]
    fn florence_tokens_are_the_reference_processors() {
        let tok = Tokenizer::from_file(fixture("models/tiny-a/tokenizer.json")).unwrap();
        let tokens = florence_tokens();
        assert_eq!(tokens.len(), FLORENCE_TOKEN_COUNT);
        for (i, t) in tokens.iter().enumerate() {
            assert_eq!(tok.token_to_id(t), Some(801 + i as u32), "{t}");
        }
    }

    /// Microsoft's tokenizer (no Florence tokens) gets them with the reference's ids, and then
    /// encodes and decodes `<loc_N>` as the reference does.
    #[test]
    fn a_plain_bart_tokenizer_gets_the_florence_tokens() {
        let path = fixture("models/tiny-a-remote/tokenizer.json");
        let plain = Tokenizer::from_file(&path).unwrap();
        assert_eq!(
            plain.token_to_id("<loc_0>"),
            None,
            "fixture carries no Florence tokens"
        );
        let tok = load_tokenizer(&path, &config("tiny-a-remote")).unwrap();
        let reference = Tokenizer::from_file(fixture("models/tiny-a/tokenizer.json")).unwrap();
        for t in florence_tokens() {
            assert_eq!(tok.token_to_id(&t), reference.token_to_id(&t), "{t}");
        }
        let text = "<s>a dog<loc_12><loc_999><poly></s>";
        let ours = tok.encode(text, false).unwrap();
        let theirs = reference.encode(text, false).unwrap();
        assert_eq!(ours.get_ids(), theirs.get_ids());
        assert_eq!(
            tok.decode(ours.get_ids(), false).unwrap(),
            reference.decode(theirs.get_ids(), false).unwrap()
        );
    }

    #[test]
    fn a_vocabulary_that_does_not_fit_is_refused_naming_the_file() {
        let path = fixture("models/tiny-a-remote/tokenizer.json");
        let mut cfg = config("tiny-a-remote");
        cfg.text.vocab_size += 1;
        let err = load_tokenizer(&path, &cfg).unwrap_err().to_string();
        assert!(err.contains("tiny-a-remote/tokenizer.json"), "{err}");
        assert!(err.contains("vocab_size"), "{err}");
        // Padded to a multiple of 64, as the native conversion does: accepted.
        cfg.text.vocab_size = 1825usize.next_multiple_of(64);
        load_tokenizer(&path, &cfg).unwrap();
    }

    /// The real checkpoints: BART's 50,265 tokens + 1,024 Florence tokens = 51,289, Microsoft's
    /// `vocab_size`; the native conversion adds `<image>` and pads to 51,328.
    #[test]
    fn the_real_vocabularies_fit() {
        let remote = 50_265 + FLORENCE_TOKEN_COUNT;
        assert_eq!(remote, 51_289);
        assert!(vocabulary_fits(remote, 51_289));
        assert!(vocabulary_fits(remote + 1, 51_328));
        assert!(!vocabulary_fits(remote, 51_290));
        assert!(
            !vocabulary_fits(50_265, 51_289),
            "a tokenizer without the Florence tokens"
        );
    }

    #[test]
    fn a_tokenizer_with_some_florence_tokens_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut tok = Tokenizer::from_file(fixture("models/tiny-a-remote/tokenizer.json")).unwrap();
        tok.add_special_tokens(&[AddedToken::from("<od>", true)]);
        let path = dir.path().join("tokenizer.json");
        tok.save(&path, false).unwrap();
        let err = load_tokenizer(&path, &config("tiny-a-remote"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("1 of Florence-2's 1024"), "{err}");
        assert!(err.contains("</od>"), "{err}");
    }
}
