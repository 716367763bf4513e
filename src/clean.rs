//! Clean stage (product side): turns reference-exact Florence-2 results into what people read and
//! search: a tidy caption and normalised keywords. Inputs are the raw caption text and the
//! `<OD>` labels from `florence2::postprocess`; outputs go to the catalog, the FTS index and the
//! XMP sidecars. The raw text is stored too, so nothing here has to be reversible.
//!
//! No transformers counterpart: the reference returns captions with stray `<loc_N>` tokens and
//! labels as generated. These rules are ours.

use std::sync::LazyLock;

use regex::Regex;

/// Florence-2 special tokens: `<s>`, `</s>`, `<pad>`, `<unk>`, `<loc_123>`, `<od>`, `<poly>`,
/// `<sep>`, task tokens like `<CAPTION>` … — an identifier in angle brackets, no spaces, so
/// ordinary text such as `a < b > c` or `<3` is left alone.
static SPECIAL_TOKEN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"</?[A-Za-z_][A-Za-z0-9_]*>").unwrap());

/// Generic openers that describe the photo as a photo. Matched case-insensitively at the start,
/// longest first; the remainder is capitalised.
const OPENERS: &[&str] = &[
    "in this image, we can see",
    "in this image we can see",
    "in this picture, we can see",
    "in this picture we can see",
    "in the image, we can see",
    "in the image we can see",
    "in this image there is",
    "in this image there are",
    "the image shows",
    "this image shows",
    "the picture shows",
    "this picture shows",
    "the photo shows",
    "this photo shows",
    "the image depicts",
    "this image depicts",
    "the image features",
    "this image features",
    "the image contains",
    "this image contains",
];

/// Openers that only go when an article follows: "The image is a close-up of a cat" becomes
/// "A close-up of a cat", but "The image is blurry" is a real statement and stays.
const IS_OPENERS: &[&str] = &[
    "the image is",
    "this image is",
    "the picture is",
    "this picture is",
    "the photo is",
    "this photo is",
];

/// The caption for display, search and sidecars:
/// 1. special tokens (`<s>`, `</s>`, `<pad>`, `<loc_N>`, …) are removed;
/// 2. whitespace is collapsed and trimmed, and spaces before `, . ; : ! ? )` and after `(` go;
/// 3. a generic opener ("The image shows", "In this image we can see", "The image is a …") is
///    removed and the rest capitalised, unless nothing worth keeping would be left;
/// 4. a caption that used sentence punctuation anywhere but was cut off mid-sentence (the token
///    limit) gets a final full stop; one without any (short `<CAPTION>` phrases) gets none.
///
/// Empty in, empty out.
pub fn display_caption(raw: &str) -> String {
    // U+FFFD marks byte-level BPE output that was cut mid-character: never show it.
    let text = SPECIAL_TOKEN.replace_all(raw, " ").replace('\u{FFFD}', " ");
    let text = tidy_spaces(&text);
    if text.is_empty() {
        return text;
    }
    let mut text = strip_opener(&text);
    let has_sentence_end = text.contains(['.', '!', '?']);
    if has_sentence_end && !ends_sentence(&text) {
        // Drop dangling separators before closing the sentence: "…and the," → "…and the."
        let trimmed = text.trim_end_matches([',', ';', ':', '-', ' ']).len();
        text.truncate(trimmed);
        text.push('.');
    }
    text
}

fn ends_sentence(text: &str) -> bool {
    let t = text.trim_end_matches(['"', '\'', ')', '\u{201d}', '\u{2019}']);
    t.ends_with(['.', '!', '?', '\u{2026}'])
}

/// Collapses runs of whitespace, trims, and removes spaces before closing punctuation and after
/// an opening bracket.
fn tidy_spaces(text: &str) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = String::with_capacity(collapsed.len());
    let mut chars = collapsed.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ' ' {
            if let Some(&next) = chars.peek() {
                if matches!(next, ',' | '.' | ';' | ':' | '!' | '?' | ')') {
                    continue;
                }
            }
            if out.ends_with('(') {
                continue;
            }
        }
        out.push(c);
    }
    out
}

fn strip_opener(text: &str) -> String {
    let lower = text.to_lowercase();
    // Lowercasing can change byte lengths outside ASCII; openers are ASCII, so only accept a
    // match when the prefix is ASCII in the original too.
    // The opener must end at a word boundary ("The image showstopper" is not an opener).
    let whole = |o: &str| {
        lower.starts_with(o)
            && text.is_char_boundary(o.len())
            && !text[o.len()..].starts_with(|c: char| c.is_alphanumeric())
    };
    let cut = OPENERS
        .iter()
        .find(|o| whole(o))
        .map(|o| o.len())
        .or_else(|| {
            IS_OPENERS.iter().find_map(|o| {
                let rest = lower.strip_prefix(o)?;
                let article = ["a ", "an ", "the "]
                    .iter()
                    .any(|a| rest.starts_with(' ') && rest.trim_start().starts_with(a));
                (article && text.is_char_boundary(o.len())).then_some(o.len())
            })
        });
    let Some(cut) = cut else {
        return text.to_string();
    };
    // A following comma or colon belongs to the opener: "The image shows: a dog".
    let rest = text[cut..].trim_start_matches([' ', ',', ':']).trim_start();
    if !rest.chars().any(char::is_alphanumeric) {
        return text.to_string();
    }
    capitalise(rest)
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Longest keyword kept, in characters; longer labels are phrases, not keywords.
const MAX_KEYWORD_CHARS: usize = 40;
/// Most words in a keyword ("traffic light", "fire hydrant" are fine; dense-region phrases like
/// "a man in a red shirt riding a bike" are not).
const MAX_KEYWORD_WORDS: usize = 4;

/// A detection label as a keyword: special tokens removed, lower case, trimmed of spaces and
/// surrounding punctuation, inner whitespace collapsed, the last word singularised (see
/// [`singular`]). `None` for labels that are empty, only tokens or punctuation, longer than
/// 40 characters or 4 words.
pub fn normalise_keyword(label: &str) -> Option<String> {
    let text = SPECIAL_TOKEN.replace_all(label, " ");
    let text = text.to_lowercase();
    // The reference cuts labels at the first `<`, so a label can start inside a token
    // ("loc_506>", "/cap> floor"): a word still holding an angle bracket is token debris.
    let words: Vec<&str> = text
        .split_whitespace()
        .filter(|w| !w.contains('<') && !w.contains('>'))
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric() && c != '-' && c != '\''))
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() || words.len() > MAX_KEYWORD_WORDS {
        return None;
    }
    if !words.iter().any(|w| w.chars().any(char::is_alphabetic)) {
        return None;
    }
    let last = words.len() - 1;
    let mut out: Vec<String> = words[..last].iter().map(|w| w.to_string()).collect();
    out.push(singular(words[last]));
    let keyword = out.join(" ");
    (keyword.chars().count() <= MAX_KEYWORD_CHARS).then_some(keyword)
}

#[cfg(test)]
mod token_debris_tests {
    use super::normalise_keyword;

    #[test]
    fn fragments_of_special_tokens_are_not_keywords() {
        assert_eq!(normalise_keyword("loc_506>"), None);
        assert_eq!(normalise_keyword("/cap> floors").as_deref(), Some("floor"));
    }
}

/// Keywords from detection labels: each normalised, duplicates dropped, first-seen order kept.
pub fn keywords(labels: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for label in labels {
        if let Some(k) = normalise_keyword(label) {
            if !out.contains(&k) {
                out.push(k);
            }
        }
    }
    out
}

/// Irregular plurals seen in photo labels.
const IRREGULAR: &[(&str, &str)] = &[
    ("people", "person"),
    ("persons", "person"),
    ("children", "child"),
    ("men", "man"),
    ("women", "woman"),
    ("mice", "mouse"),
    ("geese", "goose"),
    ("feet", "foot"),
    ("teeth", "tooth"),
    ("oxen", "ox"),
    ("knives", "knife"),
    ("wives", "wife"),
    ("lives", "life"),
    ("leaves", "leaf"),
    ("loaves", "loaf"),
    ("wolves", "wolf"),
    ("shelves", "shelf"),
    ("halves", "half"),
    ("calves", "calf"),
    ("scarves", "scarf"),
    ("thieves", "thief"),
    ("buses", "bus"),
    ("lenses", "lens"),
    ("gases", "gas"),
    ("canvases", "canvas"),
    ("cacti", "cactus"),
    ("fungi", "fungus"),
    ("octopuses", "octopus"),
    ("viruses", "virus"),
    ("campuses", "campus"),
    ("circuses", "circus"),
    ("indices", "index"),
];

/// Words that are already singular, plural-only, or have no distinct singular: left as they are.
/// "glasses" is deliberately here: in photo labels it almost always means eyewear ("glasses",
/// "sunglasses"); drinking glasses come out as "wine glass", "glass" in the singular anyway.
const INVARIANT: &[&str] = &[
    "glasses",
    "sunglasses",
    "eyeglasses",
    "goggles",
    "binoculars",
    "scissors",
    "pliers",
    "tongs",
    "pants",
    "trousers",
    "jeans",
    "shorts",
    "tights",
    "leggings",
    "pajamas",
    "pyjamas",
    "overalls",
    "sweatpants",
    "clothes",
    "headphones",
    "earphones",
    "stairs",
    "blinds",
    "species",
    "series",
    "news",
    "means",
    "sheep",
    "deer",
    "fish",
    "moose",
    "bison",
    "salmon",
    "trout",
    "shrimp",
    "aircraft",
    "chess",
    "tennis",
    "lens",
    "bus",
    "gas",
    "canvas",
    "physics",
    "mathematics",
    "electronics",
    "athletics",
    "gymnastics",
    "dice",
];

/// Words ending in `-ies` whose singular ends in `-ie`.
const IE_WORDS: &[&str] = &[
    "movies",
    "cookies",
    "pies",
    "ties",
    "zombies",
    "brownies",
    "selfies",
    "hoodies",
    "smoothies",
    "calories",
    "lies",
    "magpies",
    "rookies",
    "goalies",
    "genies",
    "sweeties",
];

/// Words ending in `-oes` or `-ches` that only drop the final `s`.
const DROP_S_ONLY: &[&str] = &[
    "shoes",
    "toes",
    "canoes",
    "hoes",
    "oboes",
    "horseshoes",
    "snowshoes",
    "tiptoes",
    "floes",
    "mustaches",
    "moustaches",
    "headaches",
    "niches",
    "quiches",
    "cliches",
    "caches",
    "avalanches",
];

/// Simple English singular of one lower-case word. Rules, in order: irregular table; invariant
/// words; words of 3 letters or fewer are kept; `-ies` → `-y` (except `movies`, `cookies`, …);
/// `-sses`/`-shes`/`-ches`/`-xes`/`-zzes` and `-oes` → drop `es` (except `shoes`, `toes`, …);
/// words ending in `ss`, `us`, `is` or `ous` are kept (`grass`, `cactus`, `tennis`); any other
/// final `s` goes. Compound words follow their last part ("sunglasses", "horseshoes").
pub fn singular(word: &str) -> String {
    if let Some((_, s)) = IRREGULAR.iter().find(|(p, _)| *p == word) {
        return s.to_string();
    }
    if INVARIANT.contains(&word) || word.chars().count() <= 3 || !word.ends_with('s') {
        return word.to_string();
    }
    if let Some(stem) = word.strip_suffix("ies") {
        if IE_WORDS.contains(&word) {
            return format!("{stem}ie");
        }
        return format!("{stem}y");
    }
    if DROP_S_ONLY.contains(&word) {
        return word[..word.len() - 1].to_string();
    }
    if ["sses", "shes", "ches", "xes", "zzes", "oes"]
        .iter()
        .any(|e| word.ends_with(e))
    {
        return word[..word.len() - 2].to_string();
    }
    if ["ss", "us", "is"].iter().any(|e| word.ends_with(e)) {
        return word.to_string();
    }
    word[..word.len() - 1].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_special_tokens_and_collapses_spaces() {
        assert_eq!(
            display_caption("</s><s>A dog  sitting on<loc_12><loc_400> a bench.</s><pad><pad>"),
            "A dog sitting on a bench."
        );
        assert_eq!(
            display_caption("<s>A cat<od></od><poly><sep></poly>"),
            "A cat"
        );
        assert_eq!(display_caption("<MORE_DETAILED_CAPTION>A car"), "A car");
        // Angle brackets in ordinary text survive.
        assert_eq!(
            display_caption("A sign reading a < b > c"),
            "A sign reading a < b > c"
        );
        assert_eq!(display_caption("I <3 NY mug"), "I <3 NY mug");
    }

    #[test]
    fn empty_stays_empty() {
        assert_eq!(display_caption(""), "");
        assert_eq!(display_caption("   "), "");
        assert_eq!(display_caption("</s><s><loc_1><loc_2></s><pad>"), "");
    }

    #[test]
    fn tidies_punctuation_spacing() {
        assert_eq!(
            display_caption("A dog , a cat ; and a bird ( maybe ) ."),
            "A dog, a cat; and a bird (maybe)."
        );
        assert_eq!(display_caption("What is it ?"), "What is it?");
    }

    #[test]
    fn trims_generic_openers() {
        let cases = [
            (
                "The image shows a blue car parked on a street.",
                "A blue car parked on a street.",
            ),
            ("This image shows two dogs.", "Two dogs."),
            (
                "In this image we can see a person holding an umbrella.",
                "A person holding an umbrella.",
            ),
            ("In this image, we can see trees.", "Trees."),
            ("the image shows: a dog", "A dog"),
            ("The image is a close-up of a cat.", "A close-up of a cat."),
            (
                "The image is an aerial view of a city.",
                "An aerial view of a city.",
            ),
            ("THE IMAGE SHOWS a red bus", "A red bus"),
            (
                "The image depicts the Eiffel Tower at night.",
                "The Eiffel Tower at night.",
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(display_caption(raw), want, "{raw}");
        }
    }

    #[test]
    fn keeps_statements_that_only_look_like_openers() {
        // No article after "The image is": a real statement about the photo.
        assert_eq!(
            display_caption("The image is blurry."),
            "The image is blurry."
        );
        // Nothing left after the opener: keep the original.
        assert_eq!(display_caption("The image shows."), "The image shows.");
        assert_eq!(display_caption("The image shows"), "The image shows");
        // Not at the start.
        assert_eq!(
            display_caption("A poster. The image shows a dog."),
            "A poster. The image shows a dog."
        );
        // Words that merely start with an opener's letters.
        assert_eq!(display_caption("The imageshows"), "The imageshows");
        assert_eq!(
            display_caption("The image showstopper is a car."),
            "The image showstopper is a car."
        );
    }

    #[test]
    fn sentence_punctuation_only_if_it_had_some() {
        assert_eq!(
            display_caption("A green car parked in front of a building"),
            "A green car parked in front of a building"
        );
        // Cut off by the token limit after full sentences: close it.
        assert_eq!(
            display_caption("The image shows a kitchen. There is a table and the"),
            "A kitchen. There is a table and the."
        );
        assert_eq!(display_caption("A dog. It runs,"), "A dog. It runs.");
        assert_eq!(display_caption("Is it a dog?"), "Is it a dog?");
        assert_eq!(display_caption("He said \"stop.\""), "He said \"stop.\"");
    }

    #[test]
    fn non_ascii_captions_are_safe() {
        assert_eq!(display_caption("Ünïcödé café  scene"), "Ünïcödé café scene");
        assert_eq!(
            display_caption("İn this image we can see x"),
            "İn this image we can see x"
        );
        assert_eq!(display_caption("the image shows élan"), "Élan");
    }

    #[test]
    fn keyword_normalisation() {
        let cases = [
            ("Dog", Some("dog")),
            ("  Traffic   Lights ", Some("traffic light")),
            ("dogs", Some("dog")),
            ("boxes", Some("box")),
            ("watches", Some("watch")),
            ("dishes", Some("dish")),
            ("glasses", Some("glasses")),
            ("sunglasses", Some("sunglasses")),
            ("wine glasses", Some("wine glasses")),
            ("people", Some("person")),
            ("children", Some("child")),
            ("women", Some("woman")),
            ("puppies", Some("puppy")),
            ("movies", Some("movie")),
            ("cookies", Some("cookie")),
            ("tomatoes", Some("tomato")),
            ("shoes", Some("shoe")),
            ("knives", Some("knife")),
            ("gloves", Some("glove")),
            ("houses", Some("house")),
            ("buses", Some("bus")),
            ("bus", Some("bus")),
            ("grass", Some("grass")),
            ("cactus", Some("cactus")),
            ("tennis", Some("tennis")),
            ("jeans", Some("jeans")),
            ("sheep", Some("sheep")),
            ("keys", Some("key")),
            ("bananas", Some("banana")),
            ("human faces", Some("human face")),
            ("cars.", Some("car")),
            ("\"kite\"", Some("kite")),
            ("T-shirts", Some("t-shirt")),
            ("<loc_1><loc_2>", None),
            ("", None),
            ("   ", None),
            ("...", None),
            ("42", None),
            ("a man in a red shirt riding a bike", None),
            ("<s>Cat</s>", Some("cat")),
        ];
        for (label, want) in cases {
            assert_eq!(normalise_keyword(label).as_deref(), want, "{label:?}");
        }
        let long = "x".repeat(41);
        assert_eq!(normalise_keyword(&long), None);
        assert_eq!(
            normalise_keyword(&"x".repeat(40)).map(|s| s.len()),
            Some(40)
        );
    }

    #[test]
    fn keywords_dedupe_in_first_seen_order() {
        let labels: Vec<String> = [
            "Wheel", "car", "wheels", "<loc_5>", "Cars", "person", "people", "",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(keywords(&labels), ["wheel", "car", "person"]);
        assert!(keywords(&[]).is_empty());
    }

    #[test]
    fn singular_rules() {
        for (p, s) in [
            ("axes", "ax"),
            ("foxes", "fox"),
            ("buzzes", "buzz"),
            ("classes", "class"),
            ("bodies", "body"),
            ("toys", "toy"),
            ("cats", "cat"),
            ("his", "his"),
            ("its", "its"),
            ("octopuses", "octopus"),
            ("horseshoes", "horseshoe"),
            ("benches", "bench"),
            ("beaches", "beach"),
            ("headaches", "headache"),
            ("cat", "cat"),
        ] {
            assert_eq!(singular(p), s, "{p}");
        }
    }
}
