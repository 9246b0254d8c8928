//! File-path completion for the REPL and the kernel, in the language's own syntax: a name
//! the parser would split or misread (spaces, quotes, backslashes, a leading `#`) is offered
//! as a `"quoted string"` with `\"` and `\\` escapes.

use std::path::Path;

/// At most this many entries of one folder are looked at.
const MAX_ENTRIES: usize = 10_000;

/// Whether `path` must be quoted to parse as one path.
fn needs_quotes(path: &str) -> bool {
    path.starts_with('#') || path.chars().any(|c| c.is_whitespace() || c == '"' || c == '\\' || c.is_control())
}

fn quote(path: &str, close: bool) -> String {
    let mut out = String::from("\"");
    for c in path.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    if close {
        out.push('"');
    }
    out
}

/// Paths starting with `word` (relative to the working directory), sorted; folders end in `/`
/// (and, quoted, stay open so that completion can go on inside them). Dot files are offered
/// only when the name typed starts with a dot.
pub fn complete_path(word: &str) -> Vec<String> {
    let (quoted, typed) = match word.strip_prefix('"') {
        Some(rest) => (true, rest),
        None => (false, word),
    };
    // '/' is ASCII: slicing next to it stays on character boundaries.
    let (dir, prefix) = match typed.rfind('/') {
        Some(i) => (&typed[..=i], &typed[i + 1..]),
        None => ("", typed),
    };
    let listing = if dir.is_empty() { Path::new(".") } else { Path::new(dir) };
    let Ok(entries) = std::fs::read_dir(listing) else { return Vec::new() };
    let mut out: Vec<String> = entries
        .take(MAX_ENTRIES)
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            if !name.starts_with(prefix) || (name.starts_with('.') && !prefix.starts_with('.')) {
                return None;
            }
            let is_dir = entry.path().is_dir();
            let path = format!("{dir}{name}{}", if is_dir { "/" } else { "" });
            Some(if quoted || needs_quotes(&path) { quote(&path, !is_dir) } else { path })
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_files_and_folders_with_the_prefix() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("digits.csv"), "").unwrap();
        std::fs::write(dir.path().join(".hidden"), "").unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let base = dir.path().display().to_string();
        assert_eq!(complete_path(&format!("{base}/d")), vec![format!("{base}/data/"), format!("{base}/digits.csv")]);
        assert_eq!(complete_path(&format!("{base}/.")), vec![format!("{base}/.hidden")]);
        assert!(complete_path(&format!("{base}/nothing")).is_empty());
        assert!(complete_path("/no/such/folder/x").is_empty());
    }

    #[test]
    fn names_that_would_not_parse_are_quoted() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("my digits.csv"), "").unwrap();
        std::fs::write(dir.path().join("say \"hi\".png"), "").unwrap();
        std::fs::write(dir.path().join("full\u{3000}width.npz"), "").unwrap();
        std::fs::create_dir(dir.path().join("a folder")).unwrap();
        let base = dir.path().display().to_string();
        assert_eq!(complete_path(&format!("{base}/my")), vec![format!("\"{base}/my digits.csv\"")]);
        assert_eq!(complete_path(&format!("{base}/say")), vec![format!("\"{base}/say \\\"hi\\\".png\"")]);
        assert_eq!(complete_path(&format!("{base}/full")), vec![format!("\"{base}/full\u{3000}width.npz\"")]);
        assert_eq!(complete_path(&format!("{base}/a")), vec![format!("\"{base}/a folder/")]);
        // Typed with an open quote: the completion stays quoted.
        assert_eq!(complete_path(&format!("\"{base}/a folder/")).len(), 0);
        std::fs::write(dir.path().join("a folder").join("x.csv"), "").unwrap();
        assert_eq!(complete_path(&format!("\"{base}/a folder/")), vec![format!("\"{base}/a folder/x.csv\"")]);
    }

    #[test]
    fn quoted_paths_parse_back() {
        for name in ["my digits.csv", "say \"hi\".png", "back\\slash", "#hash", "new\nline"] {
            let quoted = quote(name, true);
            let parsed = crate::lang::parse_line(&format!("load csv {quoted}"), 1).unwrap().unwrap();
            assert_eq!(
                parsed.kind,
                crate::lang::StatementKind::Load(crate::lang::LoadSource::Csv(name.into())),
                "{quoted}"
            );
        }
    }
}
