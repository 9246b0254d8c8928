//! Completion: the words that may be typed at a cursor, shared by the REPL and the Jupyter
//! kernel. Built from the docs table and checked against the parser.
//!
//! Each statement's forms in [`docs::statements`] (`load mnist|fashion-mnist [from PATH]`, …)
//! are read as a small grammar: lowercase words are literals, `a|b` alternatives, `[…]`
//! optional, `X...` repeated, ` | ` between words a list of operations given one or more times
//! (options after the last one apply to the whole list), and words with capitals placeholders.
//! A placeholder offers the statement's completion `words` that are no literal of its forms
//! (`70/15/15` for `split`, the layers for `model`), the keywords (`STATEMENT`), or file paths
//! (`PATH`, `DIR`, `FILE`, `IMAGES`, `LABELS`). A word that is a literal where a placeholder
//! could also stand is read as the literal, as the parser does (`load mnist` loads the dataset,
//! not a folder named `mnist`). Every candidate is then parsed in place and kept only if its
//! line parses or fails after it, so nothing offered is rejected where it is offered.
//!
//! Words are separated by whitespace of any kind outside quotes, as the parser reads them
//! (`load　mni`, with the ideographic space of Chinese input methods, completes to `mnist`).

use super::docs::{self, StatementDoc};
use super::parser::parse_line;

/// Lines longer than this many bytes before the cursor get no completion (nobody types them;
/// a pasted megabyte must not be parsed once per candidate).
pub const MAX_LINE: usize = 64 * 1024;

/// Placeholders that stand for a file or folder.
const PATH_PLACEHOLDERS: &[&str] = &["PATH", "DIR", "FILE", "IMAGES", "LABELS"];

/// What may be typed at a cursor.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Completion {
    /// Byte offset, in the text given to [`complete`], where the word being typed starts (the
    /// cursor when no word is started); a candidate replaces the text from here to the cursor.
    pub start: usize,
    /// Candidate words, sorted and without repeats, each starting with the word typed.
    pub words: Vec<String>,
    /// Whether a file or folder may stand here (front ends add the matching paths).
    pub paths: bool,
}

/// Separators between words, as the parser reads them (it makes every Unicode space outside
/// quotes an ASCII one).
fn is_separator(c: char) -> bool {
    c.is_whitespace()
}

/// The completion at the end of `before`, the text before the cursor (only its last line
/// counts).
pub fn complete(before: &str) -> Completion {
    // '\n' is ASCII: the byte after it starts a character.
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = &before[line_start..];
    let split = split_line(line);
    let start = line_start + split.start;
    let none = Completion { start, words: Vec::new(), paths: false };
    if split.comment || line.len() > MAX_LINE {
        return none;
    }
    let word = &line[split.start..];
    let (candidates, paths) = match split.words.first() {
        None => (docs::keywords().collect::<Vec<_>>(), false),
        Some(keyword) => match docs::lookup(keyword) {
            Some(doc) => Grammar::of(doc).next_words(&split.words),
            None => return none,
        },
    };
    let prefix = &line[..split.start];
    let mut words: Vec<String> =
        candidates.into_iter().filter(|c| c.starts_with(word) && parses_past(prefix, c)).map(str::to_string).collect();
    words.sort();
    words.dedup();
    Completion { start, words, paths }
}

/// Whether `prefix` followed by `candidate` parses, or fails only after the candidate.
fn parses_past(prefix: &str, candidate: &str) -> bool {
    let text = format!("{prefix}{candidate}");
    let after = prefix.chars().count() + candidate.chars().count() + 1;
    match parse_line(&text, 1) {
        Ok(_) => true,
        Err(e) => e.col >= after,
    }
}

/// A line cut into the words before the cursor and the start of the word being typed.
#[derive(Debug, PartialEq)]
struct SplitLine<'a> {
    words: Vec<&'a str>,
    /// Byte offset of the word being typed (the line's end when none is started).
    start: usize,
    /// The cursor is in a `# comment`.
    comment: bool,
}

/// Splits `line` (the text before the cursor): leading whitespace of any kind is skipped (the
/// parser trims it), words are separated by whitespace outside `"quotes"` (with `\"`
/// escapes), and a `#` that starts a word outside quotes begins a comment.
fn split_line(line: &str) -> SplitLine<'_> {
    let comment = strip_comment(line).len() < line.len();
    let mut words = Vec::new();
    let mut start: Option<usize> = None;
    let (mut in_quotes, mut escaped, mut leading) = (false, false, true);
    for (i, c) in line.char_indices() {
        if leading && c.is_whitespace() {
            continue;
        }
        leading = false;
        match start {
            None if is_separator(c) => {}
            None => {
                start = Some(i);
                in_quotes = c == '"';
            }
            Some(s) => {
                if in_quotes {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        in_quotes = false;
                    }
                } else if is_separator(c) {
                    words.push(&line[s..i]);
                    start = None;
                } else if c == '"' {
                    in_quotes = true;
                }
            }
        }
    }
    SplitLine { words, start: start.unwrap_or(line.len()), comment }
}

/// The line without a trailing `# comment`, by the parser's rule (a `#` after whitespace or at
/// the start, outside quotes).
fn strip_comment(line: &str) -> &str {
    let mut in_quotes = false;
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        match c {
            '"' => in_quotes = !in_quotes,
            '#' if !in_quotes && prev_space => return &line[..i],
            _ => {}
        }
        prev_space = c.is_whitespace();
    }
    line
}

/// One element of a statement's form.
#[derive(Debug, Clone, PartialEq)]
enum Item {
    /// One word: literal or placeholder alternatives (`mnist|fashion-mnist`, `conv|N[..M]|all`).
    Word(Vec<Alt>),
    /// `[…]`
    Optional(Vec<Item>),
    /// Once or more (`LAYER...`).
    Repeat(Box<Item>),
    /// One of these sequences.
    Choice(Vec<Vec<Item>>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Alt {
    Literal(&'static str),
    Placeholder(&'static str),
}

/// Reads a form (`load mnist|fashion-mnist [from PATH]`) into items.
fn parse_form(form: &'static str) -> Vec<Item> {
    let mut at = 0;
    parse_seq(form, &mut at, false)
}

fn parse_seq(s: &'static str, at: &mut usize, nested: bool) -> Vec<Item> {
    let b = s.as_bytes();
    let mut items = Vec::new();
    let mut groups: Vec<Vec<Item>> = Vec::new();
    loop {
        while *at < b.len() && b[*at] == b' ' {
            *at += 1;
        }
        if *at >= b.len() {
            break;
        }
        match b[*at] {
            b']' => {
                *at += 1;
                if nested {
                    break;
                }
                continue;
            }
            b'[' => {
                *at += 1;
                let inner = parse_seq(s, at, true);
                items.push(Item::Optional(inner));
                continue;
            }
            _ => {}
        }
        // A word runs to a space or an unmatched `]` (brackets inside it, as in `N[..M]`, are
        // part of it). Only ASCII bytes end it, so the slice is on character boundaries.
        let begin = *at;
        let mut depth = 0usize;
        while *at < b.len() {
            match b[*at] {
                b' ' if depth == 0 => break,
                b']' if depth == 0 => break,
                b'[' => depth += 1,
                b']' => depth -= 1,
                _ => {}
            }
            *at += 1;
        }
        let word = &s[begin..*at];
        if word == "|" {
            groups.push(std::mem::take(&mut items));
        } else {
            items.push(word_item(word));
        }
    }
    if groups.is_empty() {
        return items;
    }
    // `rotate DEG | shift FRAC | … | erase P [force] [nearest]`: operations given once or more;
    // the options after the last one are choices of the list too.
    let mut trailing = Vec::new();
    while let Some(Item::Optional(_)) = items.last() {
        if let Some(Item::Optional(inner)) = items.pop() {
            trailing.insert(0, inner);
        }
    }
    groups.push(items);
    groups.extend(trailing);
    vec![Item::Repeat(Box::new(Item::Choice(groups)))]
}

fn word_item(word: &'static str) -> Item {
    if let Some(repeated) = word.strip_suffix("...") {
        return Item::Repeat(Box::new(word_item(repeated)));
    }
    let mut alts = Vec::new();
    let mut push = |alt: &'static str| {
        if !alt.is_empty() {
            let placeholder = alt.chars().any(|c| c.is_ascii_uppercase());
            alts.push(if placeholder { Alt::Placeholder(alt) } else { Alt::Literal(alt) });
        }
    };
    let (mut depth, mut begin) = (0usize, 0);
    for (i, c) in word.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            '|' if depth == 0 => {
                push(&word[begin..i]);
                begin = i + 1;
            }
            _ => {}
        }
    }
    push(&word[begin..]);
    Item::Word(alts)
}

/// An edge of the grammar's automaton.
#[derive(Debug, Clone, Copy)]
enum Edge {
    Empty(usize),
    Literal(&'static str, usize),
    /// A placeholder: matches any word.
    Slot(&'static str, usize),
}

/// One statement's forms as a nondeterministic automaton over words; node 0 is the start.
struct Grammar {
    doc: &'static StatementDoc,
    edges: Vec<Vec<Edge>>,
    literals: Vec<&'static str>,
}

impl Grammar {
    fn of(doc: &'static StatementDoc) -> Grammar {
        let mut g = Grammar { doc, edges: vec![Vec::new()], literals: Vec::new() };
        for form in doc.synopsis {
            // The keyword, then the rest of the form (a ` | ` list is the arguments', not the
            // keyword's).
            let rest = form.strip_prefix(doc.keyword).unwrap_or(form);
            let mut items = vec![Item::Word(vec![Alt::Literal(doc.keyword)])];
            items.extend(parse_form(rest));
            g.seq(&items, 0);
        }
        g
    }

    fn node(&mut self) -> usize {
        self.edges.push(Vec::new());
        self.edges.len() - 1
    }

    fn seq(&mut self, items: &[Item], from: usize) -> usize {
        items.iter().fold(from, |at, item| self.item(item, at))
    }

    /// Adds `item` after node `from`; returns its end node. Each item starts at a fresh node,
    /// so loops back to it lead nowhere else.
    fn item(&mut self, item: &Item, from: usize) -> usize {
        let start = self.node();
        self.edges[from].push(Edge::Empty(start));
        match item {
            Item::Word(alts) => {
                let end = self.node();
                for alt in alts {
                    let edge = match *alt {
                        Alt::Literal(w) => {
                            self.literals.push(w);
                            Edge::Literal(w, end)
                        }
                        Alt::Placeholder(p) => Edge::Slot(p, end),
                    };
                    self.edges[start].push(edge);
                }
                end
            }
            Item::Optional(items) => {
                let end = self.seq(items, start);
                self.edges[start].push(Edge::Empty(end));
                end
            }
            Item::Repeat(inner) => {
                let end = self.item(inner, start);
                self.edges[end].push(Edge::Empty(start));
                end
            }
            Item::Choice(seqs) => {
                let end = self.node();
                for seq in seqs {
                    let e = self.seq(seq, start);
                    self.edges[e].push(Edge::Empty(end));
                }
                end
            }
        }
    }

    /// The nodes reachable from `nodes` without reading a word.
    fn closure(&self, nodes: &[usize]) -> Vec<bool> {
        let mut seen = vec![false; self.edges.len()];
        let mut stack: Vec<usize> = nodes.to_vec();
        while let Some(n) = stack.pop() {
            if std::mem::replace(&mut seen[n], true) {
                continue;
            }
            for edge in &self.edges[n] {
                if let Edge::Empty(to) = *edge {
                    if !seen[to] {
                        stack.push(to);
                    }
                }
            }
        }
        seen
    }

    /// The nodes after reading `word` from `nodes`: by literal edges if any matches, else by
    /// placeholders.
    fn step(&self, nodes: &[usize], word: &str) -> Vec<usize> {
        let (mut literal, mut slot) = (Vec::new(), Vec::new());
        for (n, _) in self.closure(nodes).iter().enumerate().filter(|(_, on)| **on) {
            for edge in &self.edges[n] {
                match *edge {
                    Edge::Literal(w, to) if w == word => literal.push(to),
                    Edge::Slot(_, to) => slot.push(to),
                    _ => {}
                }
            }
        }
        let mut next = if literal.is_empty() { slot } else { literal };
        next.sort_unstable();
        next.dedup();
        next
    }

    /// The words a placeholder offers, and whether it stands for a path.
    fn slot_words(&self, placeholder: &str) -> (Vec<&'static str>, bool) {
        if PATH_PLACEHOLDERS.contains(&placeholder) {
            return (Vec::new(), true);
        }
        if placeholder == "STATEMENT" {
            return (docs::keywords().collect(), false);
        }
        (self.doc.words.iter().filter(|w| !self.literals.contains(w)).copied().collect(), false)
    }

    /// The words that may follow `words` (the keyword first), and whether a path may.
    fn next_words(&self, words: &[&str]) -> (Vec<&'static str>, bool) {
        let mut nodes = vec![0];
        for word in words {
            nodes = self.step(&nodes, word);
            if nodes.is_empty() {
                return (Vec::new(), false);
            }
        }
        let (mut out, mut paths) = (Vec::new(), false);
        for (n, _) in self.closure(&nodes).iter().enumerate().filter(|(_, on)| **on) {
            for edge in &self.edges[n] {
                match *edge {
                    Edge::Literal(w, _) => out.push(w),
                    Edge::Slot(p, _) => {
                        let (words, path) = self.slot_words(p);
                        out.extend(words);
                        paths |= path;
                    }
                    Edge::Empty(_) => {}
                }
            }
        }
        (out, paths)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(before: &str) -> Vec<String> {
        complete(before).words
    }

    /// The parse of `line` succeeds, or fails after the word that starts at char `start` and
    /// has `len` chars.
    fn accepted_at(line: &str, start: usize, len: usize) -> Result<(), String> {
        match parse_line(line, 1) {
            Ok(_) => Ok(()),
            Err(e) if e.col > start + len => Ok(()),
            Err(e) => Err(format!("`{line}`: error at col {} ({}) inside or before the word", e.col, e.expected)),
        }
    }

    #[test]
    fn every_word_offered_after_a_keyword_parses_there() {
        let mut checked = 0;
        for keyword in docs::keywords() {
            let before = format!("{keyword} ");
            let first = complete(&before);
            assert_eq!(first.start, before.len());
            for w1 in &first.words {
                accepted_at(&format!("{before}{w1}"), before.chars().count(), w1.chars().count()).unwrap();
                checked += 1;
                // And one word further, through the placeholders' words too.
                let before2 = format!("{before}{w1} ");
                for w2 in complete(&before2).words {
                    accepted_at(&format!("{before2}{w2}"), before2.chars().count(), w2.chars().count()).unwrap();
                    checked += 1;
                }
            }
        }
        assert!(checked > 100, "only {checked} words checked");
    }

    #[test]
    fn every_docs_word_is_offered_somewhere() {
        // Each statement's completion words are offered within four words of the keyword.
        for doc in docs::statements() {
            let mut offered = std::collections::BTreeSet::new();
            let mut frontier = vec![format!("{} ", doc.keyword)];
            for _ in 0..4 {
                let mut next = Vec::new();
                for before in &frontier {
                    for w in complete(before).words {
                        offered.insert(w.clone());
                        next.push(format!("{before}{w} "));
                    }
                    // A number or a name where a placeholder stands.
                    next.push(format!("{before}1 "));
                }
                next.truncate(200);
                frontier = next;
            }
            for w in doc.words {
                assert!(offered.contains(*w), "`{}`: `{w}` is never offered", doc.keyword);
            }
        }
    }

    #[test]
    fn keywords_at_the_start() {
        assert_eq!(words("lo"), vec!["load", "log", "loss"]);
        assert_eq!(words("info\nsp"), vec!["split"]);
        assert_eq!(words("").len(), docs::statements().count());
        assert!(words("xyz").is_empty());
        // Leading whitespace of any kind is indentation, as in the parser.
        let c = complete("\u{3000}\tlo");
        assert_eq!(
            (c.words, c.start),
            (vec!["load".to_string(), "log".to_string(), "loss".to_string()], "\u{3000}\t".len())
        );
    }

    #[test]
    fn load_offers_from_only_after_a_named_dataset() {
        let c = complete("load ");
        assert_eq!(c.words, vec!["csv", "fashion-mnist", "folder", "idx", "mnist", "model", "npz", "pkl"]);
        assert!(c.paths, "`load DIR`");
        assert_eq!(words("load f"), vec!["fashion-mnist", "folder"]);
        let c = complete("load mnist ");
        assert_eq!((c.words, c.paths), (vec!["from".to_string()], false));
        let c = complete("load mnist from ");
        assert_eq!((c.words.len(), c.paths), (0, true));
        let c = complete("load model ");
        assert_eq!((c.words.len(), c.paths), (0, true));
        let c = complete("load npz ");
        assert_eq!((c.words.len(), c.paths), (0, true));
        let c = complete("load mnist from x ");
        assert_eq!((c.words.len(), c.paths), (0, false));
    }

    #[test]
    fn show_offers_each_word_once_where_it_fits() {
        assert_eq!(words("show "), vec!["mistakes", "samples"]);
        assert!(words("show samples ").is_empty(), "a count comes first");
        assert_eq!(words("show samples 16 "), vec!["class", "test", "train", "val"]);
        assert_eq!(words("show samples 16 val "), vec!["class"]);
        assert!(words("show mistakes 4 ").is_empty());
    }

    #[test]
    fn position_aware_arguments() {
        assert_eq!(words("split "), vec!["70/15/15", "80/10/10", "val"]);
        assert_eq!(words("split val 10 "), vec!["seed"]);
        assert!(words("split val ").is_empty());
        assert!(words("model ").contains(&"seed-cnn".to_string()));
        assert!(!words("model ").contains(&"same".to_string()), "`same` follows a convolution");
        assert!(words("model conv32 ").contains(&"same".to_string()));
        assert!(!words("model conv32 ").contains(&"strong".to_string()), "presets stand alone");
        assert!(!words("model conv32 pool ").contains(&"same".to_string()));
        assert!(words("model seed-cnn ").is_empty());
        assert!(words("unfreeze conv ").is_empty());
        assert_eq!(words("unfreeze all "), vec!["but"]);
        assert_eq!(words("freeze all but "), vec!["head"]);
        assert!(words("augment ").contains(&"off".to_string()));
        assert!(!words("augment ").contains(&"force".to_string()), "an option needs an operation");
        assert!(words("augment rotate 10 ").contains(&"force".to_string()));
        assert!(words("augment rotate 10 ").contains(&"shift".to_string()));
        assert!(words("augment off ").is_empty());
        assert_eq!(words("optimizer adam lr 0.1 "), vec!["body", "decay", "momentum"]);
        assert_eq!(words("help sp"), vec!["split"]);
        assert_eq!(words("expand "), vec!["2x", "3x"]);
        assert!(words("info ").is_empty());
        assert!(words("fit ").is_empty());
        assert!(!complete("fit ").paths);
    }

    #[test]
    fn nothing_offered_after_a_line_that_already_fails() {
        assert!(words("load mnist bogus ").is_empty());
        assert!(words("lod ").is_empty());
        assert!(words("show samples x ").is_empty());
    }

    #[test]
    fn unicode_spaces_separate_words() {
        // The parser reads `load　mnist` as `load mnist`: the word after the ideographic space
        // completes, and starts after it (a character of three bytes).
        let c = complete("load\u{3000}mni");
        assert_eq!((c.start, c.words, c.paths), ("load\u{3000}".len(), vec!["mnist".to_string()], true));
        assert_eq!(words("load\u{3000}mnist\u{a0}"), vec!["from"]);
        assert_eq!(words("show\u{2003}samples\u{205f}4\u{3000}"), vec!["class", "test", "train", "val"]);
        let c = complete("load\u{3000}");
        assert!(c.words.contains(&"mnist".to_string()) && c.paths);
        // A zero-width space is no space: `mn\u{200b}` is a word of its own that nothing completes.
        assert!(words("load mn\u{200b}").is_empty());
        assert!(words("load mn\u{a0}").is_empty(), "a folder named mn, then nothing");
        assert!(words("lo\u{301}").is_empty());
        let c = complete("print \"e\u{301}\u{3000}\" \nlo");
        assert_eq!(c.words, vec!["load", "log", "loss"]);
        assert_eq!(c.start, "print \"e\u{301}\u{3000}\" \n".len());
        // Every byte offset that is a character boundary is a valid cursor.
        let text = "load\u{3000}mnist \u{2003}fr\u{301}om é";
        for (i, _) in text.char_indices() {
            let c = complete(&text[..i]);
            assert!(c.start <= i && text.is_char_boundary(c.start));
        }
    }

    #[test]
    fn quotes_and_comments() {
        let s = split_line("load\u{3000}csv \"my\u{3000}file");
        assert_eq!((s.words, s.start), (vec!["load", "csv"], 11));
        let s = split_line("print \"a b\\\" c\" x");
        assert_eq!(s.words, vec!["print", "\"a b\\\" c\""]);
        assert!(complete("load mnist # lo").words.is_empty());
        assert!(complete("# lo").words.is_empty());
        assert!(complete("load csv \"my").paths);
    }

    #[test]
    fn very_long_lines_get_no_completion() {
        let long = format!("model {}", "conv32 ".repeat(MAX_LINE / 7 + 1));
        let c = complete(&long);
        assert_eq!((c.start, c.words.len()), (long.len(), 0));
        let c = complete(&format!("print \"{}\"\nlo", "x".repeat(1 << 20)));
        assert_eq!(c.words, vec!["load", "log", "loss"]);
    }

    #[test]
    fn forms_read_as_grammar() {
        use Alt::*;
        assert_eq!(
            parse_form("load mnist|fashion-mnist [from PATH]"),
            vec![
                Item::Word(vec![Literal("load")]),
                Item::Word(vec![Literal("mnist"), Literal("fashion-mnist")]),
                Item::Optional(vec![Item::Word(vec![Literal("from")]), Item::Word(vec![Placeholder("PATH")])]),
            ]
        );
        assert_eq!(
            parse_form("unfreeze conv|N[..M]|all"),
            vec![
                Item::Word(vec![Literal("unfreeze")]),
                Item::Word(vec![Literal("conv"), Placeholder("N[..M]"), Literal("all")]),
            ]
        );
        assert_eq!(
            parse_form("model LAYER..."),
            vec![Item::Word(vec![Literal("model")]), Item::Repeat(Box::new(Item::Word(vec![Placeholder("LAYER")])))]
        );
        let augment = parse_form(" a X | b [f]");
        assert_eq!(augment.len(), 1);
        let Item::Repeat(choice) = &augment[0] else { panic!("{augment:?}") };
        let Item::Choice(groups) = choice.as_ref() else { panic!("{choice:?}") };
        assert_eq!(groups.len(), 3, "{groups:?}");
    }
}
