//! The contents of the kernel's replies that need no session: kernel info, completion,
//! completeness, inspection. Cursor positions are in Unicode code points (protocol 5.2+).

use std::path::Path;

use serde_json::{json, Value};

use super::wire::PROTOCOL_VERSION;
use crate::front::repl::complete_words;
use crate::lang::{self, docs};

/// The Pygments lexer named in `language_info` (Pygments' `BashLexer`: the language's only
/// lexical structures, `# comments` and `"strings"`, are the shell's).
pub const PYGMENTS_LEXER: &str = "bash";
/// The CodeMirror mode named in `language_info` (CodeMirror's `shell` mode, for the same reason).
pub const CODEMIRROR_MODE: &str = "shell";

/// The `kernel_info_reply` content.
pub fn kernel_info() -> Value {
    json!({
        "status": "ok",
        "protocol_version": PROTOCOL_VERSION,
        "implementation": "mnistlab",
        "implementation_version": env!("CARGO_PKG_VERSION"),
        "language_info": {
            "name": "mnistlab",
            "version": env!("CARGO_PKG_VERSION"),
            "mimetype": "text/x-mnistlab",
            "file_extension": ".lab",
            "pygments_lexer": PYGMENTS_LEXER,
            "codemirror_mode": CODEMIRROR_MODE,
        },
        "banner": format!("mnistlab {} — prepare MNIST-family data and train small networks; `help` lists statements", env!("CARGO_PKG_VERSION")),
        "help_links": [],
        "debugger": false,
    })
}

/// Byte offset of code point `pos` in `code` (the end when past it).
fn byte_offset(code: &str, pos: usize) -> usize {
    code.char_indices().nth(pos).map_or(code.len(), |(i, _)| i)
}

/// The `complete_reply` content for `code` with the cursor at code point `cursor_pos`:
/// keywords, their argument words, and file paths for arguments.
pub fn complete(code: &str, cursor_pos: usize) -> Value {
    let cursor = byte_offset(code, cursor_pos);
    let line_start = code[..cursor].rfind('\n').map_or(0, |i| i + 1);
    let before = &code[line_start..cursor];
    let word_start = before.rfind(char::is_whitespace).map_or(0, |i| i + 1);
    let word = &before[word_start..];
    let words: Vec<&str> = before[..word_start].split_whitespace().collect();
    let mut matches = complete_words(&words, word);
    if !words.is_empty() && (matches.is_empty() || word.contains(['/', '.'])) {
        matches.extend(complete_path(word));
    }
    matches.sort();
    matches.dedup();
    let start = code[..line_start + word_start].chars().count();
    json!({
        "status": "ok",
        "matches": matches,
        "cursor_start": start,
        "cursor_end": cursor_pos.min(code.chars().count()),
        "metadata": {},
    })
}

/// Paths starting with `word` (relative to the working directory); folders end in `/`.
fn complete_path(word: &str) -> Vec<String> {
    let (dir, prefix) = match word.rfind('/') {
        Some(i) => (&word[..=i], &word[i + 1..]),
        None => ("", word),
    };
    let listing = if dir.is_empty() { Path::new(".") } else { Path::new(dir) };
    let Ok(entries) = std::fs::read_dir(listing) else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            if !name.starts_with(prefix) || (name.starts_with('.') && !prefix.starts_with('.')) {
                return None;
            }
            let slash = if entry.file_type().ok()?.is_dir() { "/" } else { "" };
            Some(format!("{dir}{name}{slash}"))
        })
        .collect()
}

/// The `is_complete_reply` content: `incomplete` while a quote is open, `invalid` when a line
/// does not parse, `complete` otherwise.
pub fn is_complete(code: &str) -> Value {
    match lang::parse_program(code) {
        Ok(_) => json!({"status": "complete"}),
        Err(e) if e.expected.contains("closing `\"`") => json!({"status": "incomplete", "indent": ""}),
        Err(_) => json!({"status": "invalid"}),
    }
}

/// The `inspect_reply` content: the docs of the word under the cursor, or of its line's statement.
pub fn inspect(code: &str, cursor_pos: usize) -> Value {
    let cursor = byte_offset(code, cursor_pos);
    let line_start = code[..cursor].rfind('\n').map_or(0, |i| i + 1);
    let line_end = code[cursor..].find('\n').map_or(code.len(), |i| cursor + i);
    let line = &code[line_start..line_end];
    let at = cursor - line_start;
    let start = line[..at].rfind(char::is_whitespace).map_or(0, |i| i + 1);
    let end = line[at..].find(char::is_whitespace).map_or(line.len(), |i| at + i);
    let word = &line[start..end];
    let doc = docs::lookup(word).or_else(|| line.split_whitespace().next().and_then(docs::lookup));
    match doc {
        Some(doc) => json!({
            "status": "ok",
            "found": true,
            "data": {"text/plain": docs::help_text(doc), "text/markdown": markdown(doc)},
            "metadata": {},
        }),
        None => json!({"status": "ok", "found": false, "data": {}, "metadata": {}}),
    }
}

fn markdown(doc: &docs::StatementDoc) -> String {
    let forms: Vec<String> = doc.synopsis.iter().map(|s| format!("    {s}")).collect();
    format!("**{}**\n\n{}\n\n{}\n\nExample: `{}`", doc.keyword, forms.join("\n"), doc.summary, doc.example)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &Value) -> Vec<&str> {
        v.as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect()
    }

    #[test]
    fn kernel_info_names_the_language() {
        let info = kernel_info();
        assert_eq!(info["protocol_version"], "5.3");
        assert_eq!(info["language_info"]["name"], "mnistlab");
        assert_eq!(info["language_info"]["file_extension"], ".lab");
    }

    #[test]
    fn completes_keywords_and_arguments() {
        let r = complete("lo", 2);
        assert_eq!(strings(&r["matches"]), vec!["load", "loss"]);
        assert_eq!((r["cursor_start"].as_u64(), r["cursor_end"].as_u64()), (Some(0), Some(2)));
        let r = complete("info\nload fa", 12);
        assert_eq!(strings(&r["matches"]), vec!["fashion-mnist"]);
        assert_eq!(r["cursor_start"], 10);
        let r = complete("model seed", 10);
        assert_eq!(strings(&r["matches"]), vec!["seed-cnn", "seed-small"]);
    }

    #[test]
    fn completes_file_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("digits.csv"), "").unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let prefix = format!("{}/d", dir.path().display());
        let code = format!("load csv {prefix}");
        let r = complete(&code, code.chars().count());
        let base = dir.path().display().to_string();
        assert_eq!(strings(&r["matches"]), vec![format!("{base}/data/"), format!("{base}/digits.csv")]);
        assert_eq!(r["cursor_start"], 9);
    }

    #[test]
    fn cursor_counts_code_points() {
        let code = "print \"é\"\nloa";
        let r = complete(code, code.chars().count());
        assert_eq!(strings(&r["matches"]), vec!["load"]);
        assert_eq!(r["cursor_start"], 10);
        assert_eq!(r["cursor_end"], 13);
    }

    #[test]
    fn completeness() {
        assert_eq!(is_complete("load mnist\ninfo")["status"], "complete");
        assert_eq!(is_complete("print \"hello")["status"], "incomplete");
        assert_eq!(is_complete("lod mnist")["status"], "invalid");
    }

    #[test]
    fn inspects_word_or_line_statement() {
        let r = inspect("split 70/15/15", 2);
        assert_eq!(r["found"], true);
        assert!(r["data"]["text/plain"].as_str().unwrap().starts_with("split TRAIN/VAL/TEST"));
        assert!(r["data"]["text/markdown"].as_str().unwrap().starts_with("**split**"));
        let r = inspect("info\nsplit 70/15/15", 12);
        assert!(r["data"]["text/plain"].as_str().unwrap().starts_with("split"));
        assert_eq!(inspect("nothing here", 3)["found"], false);
    }
}
