//! What every front end renders alike: tables and progress as plain text and as HTML.

use crate::session::{Progress, Table};

/// `text` with every line wider than `width` columns wrapped at word boundaries (the rest of
/// such a line indented by two blanks), so a terminal never breaks a word; lines of a caret
/// display (`  3 | fit 5`, `    | ^`) and lines that fit are left as they are.
pub fn wrap_long_lines(text: &str, width: usize) -> String {
    let caret_line = |line: &str| {
        let rest = line.trim_start().trim_start_matches(|c: char| c.is_ascii_digit());
        rest.starts_with(" |") || rest.starts_with('|')
    };
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            if unicode_width::UnicodeWidthStr::width(line) <= width || caret_line(line) {
                line.to_string()
            } else {
                crate::lang::docs::wrap(line, width, "", "  ")
            }
        })
        .collect();
    lines.join("\n")
}

/// The table as aligned plain text, numbers right-aligned.
pub fn table_text(table: &Table) -> String {
    let columns = table.header.len();
    let mut widths: Vec<usize> = table.header.iter().map(|h| h.chars().count()).collect();
    for row in &table.rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let numeric = |s: &str| s.trim_end_matches('%').parse::<f64>().is_ok();
    // A column of numbers (its header too) is right-aligned.
    let numeric_column: Vec<bool> = (0..columns)
        .map(|i| !table.rows.is_empty() && table.rows.iter().all(|r| r.get(i).is_some_and(|c| numeric(c))))
        .collect();
    let line = |cells: &[String]| {
        let parts: Vec<String> = (0..columns)
            .map(|i| {
                let cell = cells.get(i).map(String::as_str).unwrap_or("");
                let pad = widths[i] - cell.chars().count();
                if numeric_column[i] {
                    format!("{}{cell}", " ".repeat(pad))
                } else {
                    format!("{cell}{}", " ".repeat(pad))
                }
            })
            .collect();
        parts.join("  ").trim_end().to_string()
    };
    let mut out = String::new();
    if let Some(title) = &table.title {
        out.push_str(title);
        out.push('\n');
    }
    out.push_str(&line(&table.header));
    out.push('\n');
    out.push_str(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  "));
    for row in &table.rows {
        out.push('\n');
        out.push_str(&line(row));
    }
    out
}

/// Escapes `&`, `<` and `>` for HTML text.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The table as an HTML `<table>` (for notebooks).
pub fn table_html(table: &Table) -> String {
    let mut out = String::from("<table>");
    if let Some(title) = &table.title {
        out.push_str(&format!("<caption>{}</caption>", escape(title)));
    }
    out.push_str("<thead><tr>");
    for h in &table.header {
        out.push_str(&format!("<th>{}</th>", escape(h)));
    }
    out.push_str("</tr></thead><tbody>");
    for row in &table.rows {
        out.push_str("<tr>");
        for cell in row {
            out.push_str(&format!("<td>{}</td>", escape(cell)));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

fn fraction(p: &Progress) -> f64 {
    if p.total == 0 {
        1.0
    } else {
        (p.done as f64 / p.total as f64).clamp(0.0, 1.0)
    }
}

/// A duration as a learner reads it: `42s`, `4m05s`, `1h02m`.
pub fn short_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// A count with thousands separators: `12,345` (indicatif's `HumanCount`).
fn grouped(n: u64) -> String {
    indicatif::HumanCount(n).to_string()
}

/// What a progress bar shows after its count, as Keras shows it: the time taken and the time
/// left, the images per second and the running measures, e.g.
/// `12s, ETA 31s - 2,340 images/s - loss: 0.6570 - accuracy: 0.8123`.
pub fn progress_stats(p: &Progress) -> String {
    let mut parts = Vec::new();
    let mut time = short_duration(p.elapsed);
    if let Some(eta) = p.eta() {
        time.push_str(&format!(", ETA {}", short_duration(eta)));
    }
    parts.push(time);
    if let Some(rate) = p.images_per_sec() {
        parts.push(format!("{} images/s", grouped(rate.round() as u64)));
    }
    if !p.message.is_empty() {
        parts.push(p.message.clone());
    }
    parts.join(" - ")
}

/// The progress as a text bar: `epoch 2/5 [=======>      ] 120/469 - 12s, ETA 31s - …`.
pub fn progress_text(p: &Progress) -> String {
    const WIDTH: usize = 30;
    let filled = (fraction(p) * WIDTH as f64).round() as usize;
    let bar = if filled >= WIDTH {
        "=".repeat(WIDTH)
    } else {
        format!("{}>{}", "=".repeat(filled), " ".repeat(WIDTH - filled - 1))
    };
    format!("{} [{bar}] {}/{} - {}", p.label(), p.done, p.total, progress_stats(p))
}

/// The progress as HTML with a `<progress>` bar.
pub fn progress_html(p: &Progress) -> String {
    format!(
        "<div><code>{}</code> <progress value=\"{}\" max=\"{}\" style=\"width: 20em\"></progress> <code>{}/{} - {}</code></div>",
        escape(&p.label()),
        p.done,
        p.total.max(1),
        p.done,
        p.total,
        escape(&progress_stats(p))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Task;

    #[test]
    fn long_lines_wrap_at_words_and_caret_displays_stay() {
        let long =
            "the model's classes are 0, 1, 2, 3, 4; the data's T-shirt/top, Trouser, Pullover are not among them";
        let text = format!(
            "{long}\n  1 | fit 1 with a very long source line that must keep its caret alignment intact\n    | ^"
        );
        let wrapped = wrap_long_lines(&text, 40);
        let lines: Vec<&str> = wrapped.lines().collect();
        assert!(lines.len() > 3, "{wrapped}");
        let body: Vec<&str> = lines[..lines.len() - 2].to_vec();
        assert!(body.iter().all(|l| l.chars().count() <= 40), "{wrapped}");
        // The same words in the same order: nothing broken.
        assert_eq!(body.join(" ").split_whitespace().collect::<Vec<_>>(), long.split_whitespace().collect::<Vec<_>>());
        assert!(lines[lines.len() - 2].starts_with("  1 | fit 1 with a very long"), "{wrapped}");
        assert_eq!(wrap_long_lines("short\nlines", 40), "short\nlines");
    }

    #[test]
    fn aligns_columns() {
        let mut t = Table::new(Some("t".into()), &["class", "n"]);
        t.row(vec!["0".into(), "5".into()]);
        t.row(vec!["total".into(), "120".into()]);
        assert_eq!(table_text(&t), "t\nclass    n\n-----  ---\n0        5\ntotal  120");
        assert!(table_html(&t).contains("<td>total</td><td>120</td>"));
    }

    #[test]
    fn progress_bar_text() {
        let mut p = Progress {
            task: Task::FitEpoch { run: 1, epoch: 1, epochs: 2 },
            done: 5,
            total: 10,
            message: "loss: 0.1000 - accuracy: 0.9000".into(),
            elapsed: std::time::Duration::from_secs(12),
            images: 12_000,
            finished: false,
        };
        assert_eq!(
            progress_text(&p),
            format!(
                "epoch 1/2 [{}>{}] 5/10 - 12s, ETA 12s - 1,000 images/s - loss: 0.1000 - accuracy: 0.9000",
                "=".repeat(15),
                " ".repeat(14)
            )
        );
        assert!(progress_html(&p).contains("<progress value=\"5\" max=\"10\""));
        assert!(progress_html(&p).contains("5/10 - 12s, ETA 12s - 1,000 images/s"));
        // Finished: no ETA. Not counting images: no rate.
        (p.done, p.finished, p.images, p.elapsed) = (10, true, 0, std::time::Duration::from_secs(125));
        assert_eq!(progress_stats(&p), "2m05s - loss: 0.1000 - accuracy: 0.9000");
    }

    #[test]
    fn durations_and_counts_read_easily() {
        let d = std::time::Duration::from_secs;
        assert_eq!(short_duration(d(0)), "0s");
        assert_eq!(short_duration(d(59)), "59s");
        assert_eq!(short_duration(d(60)), "1m00s");
        assert_eq!(short_duration(d(3599)), "59m59s");
        assert_eq!(short_duration(d(3720)), "1h02m");
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
    }
}
