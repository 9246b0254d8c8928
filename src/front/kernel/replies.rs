//! The contents of the kernel's replies that need no session: kernel info, completion,
//! completeness, inspection. Cursor positions are in Unicode code points (protocol 5.2+).
//!
//! Requests come from the network: any `code` and `cursor_pos` get a reply. A cursor past the
//! end is the end, a negative one the start, a fractional one its whole part, a missing one the
//! end of the code (as Jupyter's own clients mean it); a cursor that is not a number, or code
//! that is not a string, gets an error reply naming the field.

use serde_json::{json, Value};

use super::wire::PROTOCOL_VERSION;
use crate::front::paths::complete_path;
use crate::lang::{self, complete, docs};

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

/// Why a request's content cannot be read (the `evalue` of its `InvalidRequest` reply).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    /// The content is not a JSON object; the words name what it is.
    #[error("the request's content must be an object, not {0}")]
    NotAnObject(&'static str),
    /// The content has no `code`.
    #[error("the request has no `code`")]
    NoCode,
    /// `code` is not a string; the words name what it is.
    #[error("`code` must be a string, not {0}")]
    CodeNotAString(&'static str),
    /// `cursor_pos` is not a number; the words name what it is.
    #[error("`cursor_pos` must be a number of code points, not {0}")]
    CursorNotANumber(&'static str),
}

/// The `status: error` content of a reply to a request that cannot be answered.
pub fn error_reply(ename: &str, evalue: &str) -> Value {
    json!({"status": "error", "ename": ename, "evalue": evalue, "traceback": [format!("{ename}: {evalue}")]})
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The request's `code`, which must be a string.
pub fn code_of(content: &Value) -> Result<&str, RequestError> {
    if !content.is_object() {
        return Err(RequestError::NotAnObject(type_name(content)));
    }
    match content.get("code") {
        Some(Value::String(code)) => Ok(code),
        Some(other) => Err(RequestError::CodeNotAString(type_name(other))),
        None => Err(RequestError::NoCode),
    }
}

/// The request's `cursor_pos` in code points, within `0..=` the length of `code` (see the
/// module's comment for what is made of odd values).
pub fn cursor_of(content: &Value, code: &str) -> Result<usize, RequestError> {
    let len = code.chars().count();
    match content.get("cursor_pos") {
        None | Some(Value::Null) => Ok(len),
        Some(Value::Number(n)) => Ok(match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => usize::try_from(u).unwrap_or(usize::MAX).min(len),
            (None, Some(_), _) => 0,
            (None, None, Some(f)) if f.is_finite() && f > 0.0 => {
                if f >= len as f64 {
                    len
                } else {
                    f as usize
                }
            }
            _ => 0,
        }),
        Some(other) => Err(RequestError::CursorNotANumber(type_name(other))),
    }
}

/// The `complete_reply` content for a request's content.
pub fn complete_request(content: &Value) -> Value {
    match code_of(content).and_then(|code| Ok((code, cursor_of(content, code)?))) {
        Ok((code, cursor)) => complete(code, cursor),
        Err(e) => error_reply("InvalidRequest", &e.to_string()),
    }
}

/// The `inspect_reply` content for a request's content.
pub fn inspect_request(content: &Value) -> Value {
    match code_of(content).and_then(|code| Ok((code, cursor_of(content, code)?))) {
        Ok((code, cursor)) => inspect(code, cursor),
        Err(e) => error_reply("InvalidRequest", &e.to_string()),
    }
}

/// The `is_complete_reply` content for a request's content (`unknown` without string code).
pub fn is_complete_request(content: &Value) -> Value {
    match code_of(content) {
        Ok(code) => is_complete(code),
        Err(_) => json!({"status": "unknown"}),
    }
}

/// The `complete_reply` content for `code` with the cursor at code point `cursor_pos`: the
/// words that parse there ([`complete::complete`]), and file paths where a path may stand.
pub fn complete(code: &str, cursor_pos: usize) -> Value {
    let before = &code[..byte_offset(code, cursor_pos)];
    let c = complete::complete(before);
    let mut matches = c.words;
    if c.paths {
        matches.extend(complete_path(&before[c.start..]));
    }
    matches.sort();
    matches.dedup();
    json!({
        "status": "ok",
        "matches": matches,
        "cursor_start": before[..c.start].chars().count(),
        "cursor_end": before.chars().count(),
        "metadata": {},
    })
}

/// The `is_complete_reply` content: `incomplete` while a quote is open, `invalid` when a line
/// does not parse, `complete` otherwise.
pub fn is_complete(code: &str) -> Value {
    match lang::parse_program(code) {
        Ok(_) => json!({"status": "complete"}),
        Err(e) if e.is_unclosed_quote() => json!({"status": "incomplete", "indent": ""}),
        Err(_) => json!({"status": "invalid"}),
    }
}

/// The columns the inspect pager's text is wrapped to: Jupyter's pager and tooltip show
/// text/plain as it is, in a panel about this wide.
const NOTEBOOK_WIDTH: usize = 80;

/// The `inspect_reply` content: the docs of the word under the cursor, or of its line's statement.
pub fn inspect(code: &str, cursor_pos: usize) -> Value {
    let cursor = byte_offset(code, cursor_pos);
    let line_start = code[..cursor].rfind('\n').map_or(0, |i| i + 1);
    let line_end = code[cursor..].find('\n').map_or(code.len(), |i| cursor + i);
    let line = &code[line_start..line_end];
    let at = cursor - line_start;
    // The word around the cursor, between whitespace of any kind (boundaries are found by
    // character, so a multi-byte space is skipped whole).
    let start = line[..at].char_indices().rev().find(|(_, c)| c.is_whitespace()).map_or(0, |(i, c)| i + c.len_utf8());
    let end = line[at..].find(char::is_whitespace).map_or(line.len(), |i| at + i);
    let word = &line[start..end];
    // The statement of the word or of its line; else what `help WORD` says of the word (a
    // Keras or PyTorch word on a line that is no statement).
    let doc = docs::lookup(word).or_else(|| line.split_whitespace().next().and_then(docs::lookup));
    match doc {
        Some(doc) => json!({
            "status": "ok",
            "found": true,
            "data": {"text/plain": docs::help_text_at(doc, NOTEBOOK_WIDTH), "text/markdown": markdown(doc)},
            "metadata": {},
        }),
        None => match docs::topic_help(word, NOTEBOOK_WIDTH) {
            Some(text) => json!({"status": "ok", "found": true, "data": {"text/plain": text}, "metadata": {}}),
            None => json!({"status": "ok", "found": false, "data": {}, "metadata": {}}),
        },
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
        assert_eq!(strings(&r["matches"]), vec!["load", "log", "loss"]);
        assert_eq!((r["cursor_start"].as_u64(), r["cursor_end"].as_u64()), (Some(0), Some(2)));
        let r = complete("info\nload fa", 12);
        assert_eq!(strings(&r["matches"]), vec!["fashion-mnist"]);
        assert_eq!(r["cursor_start"], 10);
        let r = complete("model seed", 10);
        assert_eq!(strings(&r["matches"]), vec!["seed-cnn", "seed-small"]);
    }

    #[test]
    fn completes_only_what_parses_there() {
        // `from` follows a named dataset, not `load` itself.
        let r = complete("load ", 5);
        assert!(!strings(&r["matches"]).contains(&"from"), "{r}");
        assert!(strings(&r["matches"]).contains(&"mnist"));
        assert_eq!(strings(&complete("load mnist f", 12)["matches"]), vec!["from"]);
        // `show` lists each split once.
        let r = complete("show samples 4 ", 15);
        assert_eq!(strings(&r["matches"]), vec!["class", "test", "train", "val"]);
        // The kernel offers no REPL commands.
        assert!(strings(&complete(":", 1)["matches"]).is_empty());
    }

    #[test]
    fn unicode_spaces_and_marks() {
        // The panic of issue 13: an ideographic space before the word (a separator, as in the
        // parser), counted as one code point.
        // (A name no file in the working directory starts with: paths are offered there too.)
        let code = "load\u{3000}fashion-mn";
        let r = complete(code, code.chars().count());
        assert_eq!(r["status"], "ok");
        assert_eq!(strings(&r["matches"]), vec!["fashion-mnist"]);
        assert_eq!((r["cursor_start"].as_u64(), r["cursor_end"].as_u64()), (Some(5), Some(15)));
        // Ideographic indentation is indentation.
        let code = "\u{3000}\u{3000}lo";
        let r = complete(code, 4);
        assert_eq!(strings(&r["matches"]), vec!["load", "log", "loss"]);
        assert_eq!((r["cursor_start"].as_u64(), r["cursor_end"].as_u64()), (Some(2), Some(4)));
        // Every cursor in a line of odd characters.
        let code = "lo\u{301}ad\u{2003}mn\u{a0}ist \u{3000}\u{205f}fr\u{200b}om é\n\u{3000}sh";
        let n = code.chars().count();
        for pos in 0..=n + 3 {
            for r in [complete(code, pos), inspect(code, pos)] {
                assert_eq!(r["status"], "ok", "{pos}");
            }
            let r = complete(code, pos);
            let (start, end) = (r["cursor_start"].as_u64().unwrap(), r["cursor_end"].as_u64().unwrap());
            assert!(start <= end && end == pos.min(n) as u64, "{pos}: {r}");
        }
        assert_eq!(strings(&complete(code, n)["matches"]), vec!["show"]);
        assert_eq!(inspect("load\u{3000}mnist", 6)["found"], true);
        assert_eq!(inspect("\u{3000}split\u{3000}", 1)["found"], true);
        // The parser takes Unicode spaces as separators (Chinese input methods type U+3000).
        assert_eq!(is_complete("load\u{3000}mnist")["status"], "complete");
        assert_eq!(is_complete("\u{3000}load mnist\u{3000}")["status"], "complete");
    }

    #[test]
    fn odd_cursor_positions() {
        let c = |content: Value| complete_request(&content);
        let cursor = |r: Value| (r["cursor_start"].as_u64(), r["cursor_end"].as_u64());
        assert_eq!(cursor(c(json!({"code": "lo", "cursor_pos": 99}))), (Some(0), Some(2)));
        assert_eq!(cursor(c(json!({"code": "lo", "cursor_pos": u64::MAX}))), (Some(0), Some(2)));
        assert_eq!(cursor(c(json!({"code": "lo", "cursor_pos": -5}))), (Some(0), Some(0)));
        assert_eq!(cursor(c(json!({"code": "lo", "cursor_pos": i64::MIN}))), (Some(0), Some(0)));
        assert_eq!(cursor(c(json!({"code": "lo", "cursor_pos": 1.7}))), (Some(0), Some(1)));
        assert_eq!(cursor(c(json!({"code": "lo", "cursor_pos": -0.5}))), (Some(0), Some(0)));
        assert_eq!(cursor(c(json!({"code": "lo", "cursor_pos": 1e300}))), (Some(0), Some(2)));
        assert_eq!(cursor(c(json!({"code": "lo"}))), (Some(0), Some(2)));
        assert_eq!(cursor(c(json!({"code": "lo", "cursor_pos": null}))), (Some(0), Some(2)));
        assert_eq!(strings(&c(json!({"code": "lo"}))["matches"]), vec!["load", "log", "loss"]);
        for bad in [json!({"code": "lo", "cursor_pos": "2"}), json!({"code": "lo", "cursor_pos": [2]})] {
            let r = c(bad);
            assert_eq!((r["status"].as_str(), r["ename"].as_str()), (Some("error"), Some("InvalidRequest")));
            assert!(r["evalue"].as_str().unwrap().contains("cursor_pos"), "{r}");
        }
        assert_eq!(inspect_request(&json!({"code": "split", "cursor_pos": -1}))["found"], true);
        assert_eq!(inspect_request(&json!({"code": "split", "cursor_pos": 1000}))["found"], true);
        assert_eq!(inspect_request(&json!({"code": "split", "cursor_pos": true}))["status"], "error");
    }

    #[test]
    fn code_that_is_not_a_string() {
        for content in [json!({"code": 5, "cursor_pos": 0}), json!({"cursor_pos": 0}), json!([1, 2]), json!("load")] {
            for r in [complete_request(&content), inspect_request(&content)] {
                assert_eq!(r["status"], "error", "{content}");
                assert_eq!(r["ename"], "InvalidRequest");
                assert!(r["traceback"].is_array());
            }
            assert_eq!(is_complete_request(&content)["status"], "unknown");
        }
    }

    #[test]
    fn a_megabyte_of_code() {
        let line = format!("print \"{}\"", "x".repeat(1 << 20));
        let n = line.chars().count();
        let started = std::time::Instant::now();
        let r = complete(&line, n);
        assert_eq!((r["status"].as_str(), r["cursor_end"].as_u64()), (Some("ok"), Some(n as u64)));
        assert_eq!(inspect(&line, n / 2)["found"], true, "the line's statement");
        assert_eq!(is_complete(&line)["status"], "complete");
        let code = format!("{line}\nlo");
        assert_eq!(strings(&complete(&code, n + 3)["matches"]), vec!["load", "log", "loss"]);
        let words = format!("model {}", "conv32 ".repeat(150_000));
        assert_eq!(complete(&words, words.chars().count())["status"], "ok");
        assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
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
        // Any line that ends inside a string: after an escaped quote, a lone backslash, in a
        // path argument, on an earlier line.
        for open in ["print \"say \\\"hi\\\"", "print \"a\\", "load idx \"a b\" \"c d", "print \"x\ninfo"] {
            assert_eq!(is_complete(open)["status"], "incomplete", "{open}");
        }
        // A bad escape is wrong, not unfinished: the closing quote is there.
        assert_eq!(is_complete("print \"a\\qb\"")["status"], "invalid");
        assert_eq!(is_complete("print \"closed\" \"")["status"], "invalid", "the string is closed");
    }

    #[test]
    fn an_unclosed_quote_is_its_own_kind_of_parse_error() {
        let e = lang::parse_line("print \"unclosed", 2).unwrap_err();
        assert!(e.is_unclosed_quote());
        assert_eq!((e.line, e.col), (2, 16));
        assert!(e.expected.contains("closing `\"`"), "{}", e.expected);
        assert!(e.to_string().starts_with("2:16: expected a closing `\"`"), "{e}");
        for wrong in ["lod mnist", "print \"a\\qb\"", "batch x"] {
            assert!(!lang::parse_line(wrong, 1).unwrap_err().is_unclosed_quote(), "{wrong}");
        }
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
