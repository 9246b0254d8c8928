//! The one table of statements: each statement's keyword, forms, docs, completion words,
//! number ranges and parse function (defined together in `lang/statements/`). It drives
//! the parser, and feeds `help`, completion and hints, the kernel's inspect, and the README's
//! statement reference.

pub use super::definition::StatementDoc;
use super::statements::{data, general, training, tuning};
use crate::model::architecture::layers::Help;

/// The statement groups, in the order `help` lists them; each group's file defines its
/// statements and their list. The parser knows a statement only through these lists, so none
/// can exist without its docs and completion words.
const GROUPS: &[&[StatementDoc]] = &[data::STATEMENTS, general::STATEMENTS, training::STATEMENTS, tuning::STATEMENTS];

/// Every statement of the language, in the order `help` lists them.
pub fn statements() -> impl Iterator<Item = &'static StatementDoc> {
    GROUPS.iter().flat_map(|group| group.iter())
}

/// The documentation of `keyword`, if it is a statement.
pub fn lookup(keyword: &str) -> Option<&'static StatementDoc> {
    statements().find(|doc| doc.keyword == keyword)
}

/// Every statement keyword.
pub fn keywords() -> impl Iterator<Item = &'static str> {
    statements().map(|doc| doc.keyword)
}

/// The statement reference as Markdown, as it stands in the README.
pub fn markdown_reference() -> String {
    let mut out = String::from("| statement | what it does |\n|---|---|\n");
    for doc in statements() {
        let forms: Vec<String> = doc.synopsis.iter().map(|s| format!("`{}`", s.replace('|', "\\|"))).collect();
        out.push_str(&format!("| {} | {}{} |\n", forms.join("<br>"), doc.summary, numbers_sentence(doc)));
    }
    out
}

/// The long help text of one statement.
pub fn help_text(doc: &StatementDoc) -> String {
    let mut out = String::new();
    for form in doc.synopsis {
        out.push_str(form);
        out.push('\n');
    }
    out.push_str(&format!("  {}{}\n  example: {}", doc.summary, numbers_sentence(doc), doc.example));
    out
}

/// The statements grouped as the lessons teach them (the notebooks 01 to 05), in the order
/// `help` lists them; a statement in none of them is listed under "other".
pub const LESSONS: &[(&str, &[&str])] = &[
    ("data", &["load", "info", "show", "normalize", "standardize", "onehot", "split", "filter", "subset", "save"]),
    ("augment", &["augment", "expand"]),
    ("model", &["model", "summary", "device", "precision", "threads", "memory"]),
    (
        "train",
        &[
            "optimizer",
            "schedule",
            "batch",
            "loss",
            "ema",
            "find",
            "fit",
            "resume",
            "tta",
            "ensemble",
            "evaluate",
            "predictions",
            "plot",
            "predict",
            "export",
        ],
    ),
    ("fine-tune", &["freeze", "unfreeze", "head", "adapt", "merge"]),
    ("track", &["log", "compare"]),
    ("tune", &["tune"]),
    ("session", &["seed", "help", "run", "print"]),
];

/// The words of the `model` statement and what each builds: each layer kind's help
/// ([`crate::model::architecture::layers::Kind::help`]), then the presets.
pub fn layer_words() -> impl Iterator<Item = Help> {
    const PRESETS: Help = Help {
        words: &crate::model::architecture::spec::PRESETS,
        text: "a preset network: seed-small (the article's §4.3 net), seed-cnn (its §5.2 net), lenet5, strong, an-m5 (An et al. 2020's M5: five 5×5 convolutions without bias, each then bn and relu, and an output layer without bias with a batch norm on the logits), deotte (Deotte's Kaggle CNN: conv, relu, bn stacks with stride-2 5×5 convolutions for pooling); `summary` shows its layers.",
    };
    use strum::IntoEnumIterator;
    let kinds: Vec<Help> = crate::model::Layer::iter().flat_map(|layer| layer.kind().help().iter().copied()).collect();
    let output = crate::model::architecture::layers::dense::OUTPUT_HELP;
    kinds.into_iter().chain([output, PRESETS])
}

/// A statement's one-line summary: its summary up to the first full stop, semicolon or
/// parenthesis, and a long one up to its first colon too (where three words come before it).
pub fn one_line(doc: &StatementDoc) -> &'static str {
    let summary = doc.summary;
    // The first stop outside `code`.
    let cut = |text: &'static str, stops: &[&str]| {
        let mut in_code = false;
        let end = text
            .char_indices()
            .find(|&(i, c)| {
                in_code ^= c == '`';
                !in_code && stops.iter().any(|stop| text[i..].starts_with(stop))
            })
            .map_or(text.len(), |(i, _)| i);
        text[..end].trim_end_matches('.')
    };
    let line = cut(summary, &[". ", "; ", " ("]);
    let shorter = cut(line, &[": "]);
    if line.len() > 60 && shorter.split_whitespace().count() >= 3 {
        shorter
    } else {
        line
    }
}

/// `text` wrapped at word boundaries to `width` columns, each line after the first indented by
/// `indent` blanks (and the first by `first`); a word longer than a line stands alone, whole.
pub fn wrap(text: &str, width: usize, first: &str, indent: &str) -> String {
    let options = textwrap::Options::new(width.max(20))
        .initial_indent(first)
        .subsequent_indent(indent)
        .break_words(false)
        .word_splitter(textwrap::WordSplitter::NoHyphenation);
    textwrap::wrap(text, options).join("\n")
}

/// The listing `help` shows: the statements grouped by lesson, each with its one-line
/// summary, wrapped to `width` columns.
pub fn listing(width: usize) -> String {
    let column = statements().map(|d| d.keyword.len()).max().unwrap_or(0) + 4;
    let mut out =
        wrap("statements, by lesson (`help NAME` for one statement, a layer word or a setting word):", width, "", "");
    let listed: Vec<&str> = LESSONS.iter().flat_map(|(_, keywords)| keywords.iter().copied()).collect();
    let other: Vec<&'static str> = keywords().filter(|k| !listed.contains(k)).collect();
    let groups = LESSONS
        .iter()
        .map(|&(name, keywords)| (name, keywords.to_vec()))
        .chain((!other.is_empty()).then_some(("other", other)));
    for (name, keywords) in groups {
        out.push_str(&format!("\n\n{name}"));
        for doc in keywords.iter().filter_map(|k| lookup(k)) {
            let first = format!("  {:<w$}", doc.keyword, w = column - 2);
            out.push('\n');
            out.push_str(&wrap(one_line(doc), width, &first, &" ".repeat(column)));
        }
    }
    out
}

/// The long help of one statement, wrapped to `width` columns.
pub fn help_text_at(doc: &StatementDoc, width: usize) -> String {
    let mut lines: Vec<String> = doc.synopsis.iter().map(|form| wrap(form, width, "", "    ")).collect();
    lines.push(wrap(&format!("{}{}", doc.summary, numbers_sentence(doc)), width, "  ", "  "));
    lines.push(wrap(&format!("example: {}", doc.example), width, "  ", "    "));
    lines.join("\n")
}

/// `help TOPIC` wrapped to `width` columns: a statement's help; or what a layer word, a
/// statement's setting word or a Keras/PyTorch word means, with the statement that takes it.
/// `None` when the topic is none of these.
pub fn topic_help(topic: &str, width: usize) -> Option<String> {
    let word = topic.to_lowercase();
    if let Some(doc) = lookup(&word) {
        return Some(help_text_at(doc, width));
    }
    // `dense128`, `conv32k5`: the word without its number.
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let layer = if word.strip_prefix("dense").is_some_and(digits) {
        "dense".to_string()
    } else if word.strip_prefix("conv").is_some_and(|s| s.split('k').all(digits)) {
        "conv".to_string()
    } else {
        word.clone()
    };
    let model = lookup("model");
    if let (Some(help), Some(model)) = (layer_words().find(|h| h.words.contains(&layer.as_str())), model) {
        let text = format!("{} A word of `model`, e.g. `{}`.", help.text, model.example);
        return Some(wrap(&text, width, "", "  "));
    }
    // A Keras/PyTorch word first (`epochs`), then the statements that take the word.
    let mut parts = Vec::new();
    let known = super::vocabulary::lookup(&word);
    if let Some(first) = known.first() {
        // What the first entry says, with the first statement any entry names.
        let answer = known
            .iter()
            .find_map(|w| match w.answer {
                super::vocabulary::Answer::Line(line) => {
                    Some(line.replace("{N}", w.default).replace("{S}", "PATH").replace("{next}", "PATH"))
                }
                super::vocabulary::Answer::Repl(command) => Some(command.to_string()),
                _ => None,
            })
            .unwrap_or_default();
        let mut text = format!("`{word}`, as Keras or PyTorch say it: {}", first.means);
        if !answer.is_empty() {
            text.push_str(&format!(": `{answer}`"));
        }
        text.push('.');
        parts.push(wrap(&text, width, "", "  "));
    }
    let takers: Vec<&StatementDoc> = statements().filter(|d| d.words.contains(&word.as_str())).collect();
    if !takers.is_empty() {
        parts.push(wrap(&format!("`{word}` is a word of {}:", names(&takers)), width, "", "  "));
        parts.extend(takers.iter().map(|d| help_text_at(d, width)));
    }
    (!parts.is_empty()).then(|| parts.join("\n\n"))
}

/// `a`, `a` and `b`, `a`, `b` and `c`: statement keywords as a list.
fn names(docs: &[&StatementDoc]) -> String {
    let names: Vec<String> = docs.iter().map(|d| format!("`{}`", d.keyword)).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => names.concat(),
    }
}

/// Every topic `help` explains: statements, layer words, statements' setting words and the
/// Keras/PyTorch vocabulary.
pub fn topics() -> Vec<&'static str> {
    let mut all: Vec<&str> = keywords().collect();
    all.extend(layer_words().flat_map(|h| h.words.iter().copied()));
    all.extend(statements().flat_map(|d| d.words.iter().copied()));
    all.extend(super::vocabulary::WORDS.iter().flat_map(|w| w.typed.iter().copied()));
    all.sort_unstable();
    all.dedup();
    all
}

/// ` Ranges: N 1 to 65536 (a batch size); …` for a statement's numbers, or nothing.
pub fn numbers_sentence(doc: &StatementDoc) -> String {
    if doc.numbers.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = doc.numbers.iter().map(|r| format!("{} {} ({})", r.name, r.bounds(), r.what)).collect();
    format!(" Ranges: {}.", parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lang::parse_line;

    #[test]
    fn every_statement_is_defined_once_and_parses_its_example() {
        let all: Vec<&StatementDoc> = statements().collect();
        for (i, doc) in all.iter().enumerate() {
            assert!(all[..i].iter().all(|d| d.keyword != doc.keyword), "`{}` is defined twice", doc.keyword);
            let parsed = parse_line(doc.example, 1).unwrap_or_else(|e| panic!("{}: {e}", doc.example));
            assert!(parsed.is_some(), "{}", doc.example);
            assert_eq!(doc.example.split_whitespace().next(), Some(doc.keyword), "the example of `{}`", doc.keyword);
            assert!(!doc.synopsis.is_empty() && !doc.summary.is_empty(), "`{}` is documented", doc.keyword);
            assert!(doc.synopsis.iter().all(|s| s.starts_with(doc.keyword)), "the forms of `{}`", doc.keyword);
        }
    }

    /// The words of `text`, whatever the line breaks and indentation.
    fn words(text: &str) -> Vec<&str> {
        text.split_whitespace().collect()
    }

    #[test]
    fn help_fits_80_and_160_columns_without_breaking_a_word() {
        use unicode_width::UnicodeWidthStr;
        let mut checked = 0;
        for width in [80, 160] {
            let mut texts = vec![("help".to_string(), listing(width), listing(100_000))];
            for topic in topics() {
                let (Some(wrapped), Some(whole)) = (topic_help(topic, width), topic_help(topic, 100_000)) else {
                    panic!("`help {topic}` explains nothing");
                };
                texts.push((format!("help {topic}"), wrapped, whole));
            }
            for (what, wrapped, whole) in texts {
                for line in wrapped.lines() {
                    assert!(line.width() <= width, "`{what}` at {width}: {} columns:\n{line}", line.width());
                }
                assert_eq!(words(&wrapped), words(&whole), "`{what}` at {width}: the same words, none broken");
                checked += 1;
            }
        }
        assert!(checked > 200, "{checked}");
    }

    #[test]
    fn the_listing_groups_every_statement_by_lesson_on_one_line_each_at_160() {
        let text = listing(160);
        for doc in statements() {
            let line = text.lines().find(|l| l.trim_start().starts_with(&format!("{} ", doc.keyword)));
            let line = line.unwrap_or_else(|| panic!("`{}` is listed:\n{text}", doc.keyword));
            assert!(line.ends_with(one_line(doc)), "{line}\n{}", one_line(doc));
        }
        let listed: Vec<&str> = LESSONS.iter().flat_map(|(_, k)| k.iter().copied()).collect();
        for keyword in keywords() {
            assert_eq!(listed.iter().filter(|&&k| k == keyword).count(), 1, "`{keyword}` is in one lesson");
        }
        for (name, _) in LESSONS {
            assert!(text.lines().any(|l| l == *name), "the lesson {name}:\n{text}");
        }
        assert!(!text.contains("\nother"), "{text}");
    }

    #[test]
    fn help_explains_layer_setting_and_keras_words() {
        assert!(topic_help("dense", 80).is_some_and(|t| t.contains("fully connected")));
        assert!(topic_help("dense128", 80).is_some_and(|t| t.contains("fully connected")));
        assert!(topic_help("conv32k5", 80).is_some_and(|t| t.contains("K×K kernel (1 to 7)")));
        assert!(topic_help("stride", 80).is_some_and(|t| t.contains("learned pooling")));
        assert!(topic_help("tanh", 80).is_some_and(|t| t.contains("activation as a layer of its own")));
        assert!(topic_help("adamw", 80).is_some_and(|t| t.contains("`adamw` is a word of `optimizer`")));
        assert!(topic_help("momentum", 80).is_some_and(|t| t.starts_with("`momentum` is a word of `optimizer`")));
        assert!(topic_help("onecycle", 80).is_some_and(|t| t.contains("schedule constant|onecycle|cosine")));
        assert!(topic_help("idx", 80).is_some_and(|t| t.contains("load idx IMAGES LABELS")));
        assert!(topic_help("epochs", 80).is_some_and(|t| t.contains("`fit 10`")), "{:?}", topic_help("epochs", 80));
        assert!(topic_help("relu", 80).is_some_and(|t| t.contains("ReLU")));
        assert_eq!(topic_help("xyzzy", 80), None);
    }

    #[test]
    fn a_keyword_outside_the_table_is_no_statement() {
        let error = parse_line("train 3", 1).unwrap_err();
        assert!(error.expected.contains("a statement, not `train`"), "{error}");
        assert_eq!(lookup("train").map(|d| d.keyword), None);
    }
}
