//! Tables as aligned text and as HTML, for the front ends.

use crate::session::Table;

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

fn escape(s: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns() {
        let mut t = Table::new(Some("t".into()), &["class", "n"]);
        t.row(vec!["0".into(), "5".into()]);
        t.row(vec!["total".into(), "120".into()]);
        assert_eq!(table_text(&t), "t\nclass    n\n-----  ---\n0        5\ntotal  120");
        assert!(table_html(&t).contains("<td>total</td><td>120</td>"));
    }
}
