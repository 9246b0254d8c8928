//! A training history written for other trackers: one CSV row per epoch (what W&B's and most
//! spreadsheets' imports take), or the whole record as JSON. Written atomically.

use std::path::Path;

use crate::model::error::{ModelError, Result};
use crate::model::training::train::History;

/// The file formats a history can be saved as, chosen by the file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryFormat {
    /// `.csv`: a header, then one row per epoch.
    Csv,
    /// `.json`: the whole history (epochs, stop reason, best epoch, notes).
    Json,
}

impl HistoryFormat {
    /// The format for `path`'s extension (`csv` or `json`, any case), or `None`.
    pub fn of(path: &Path) -> Option<HistoryFormat> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(HistoryFormat::Csv),
            "json" => Some(HistoryFormat::Json),
            _ => None,
        }
    }
}

/// The CSV columns, in order.
pub const CSV_COLUMNS: [&str; 8] =
    ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds", "images_per_sec"];

/// `history` as CSV text: the header, then a row per epoch (validation cells empty when there
/// was no validation split).
pub fn history_csv(history: &History) -> Result<String> {
    let mut out = csv::Writer::from_writer(Vec::new());
    let csv_error = |e: csv::Error| ModelError::Data(format!("cannot write the history as CSV: {e}"));
    out.write_record(CSV_COLUMNS).map_err(csv_error)?;
    let optional = |v: Option<f32>| v.map_or(String::new(), |v| v.to_string());
    for e in &history.epochs {
        out.write_record([
            e.epoch.to_string(),
            e.loss.to_string(),
            e.accuracy.to_string(),
            optional(e.val_loss),
            optional(e.val_accuracy),
            e.lr.to_string(),
            e.seconds.to_string(),
            e.images_per_sec.to_string(),
        ])
        .map_err(csv_error)?;
    }
    let bytes = out.into_inner().map_err(|e| ModelError::Data(format!("cannot write the history as CSV: {e}")))?;
    Ok(String::from_utf8(bytes).expect("numbers and ASCII names are UTF-8"))
}

/// Writes `history` to `path` as its extension says (`.csv` or `.json`), atomically: a
/// temporary file beside it, renamed over it once complete, so no half-written file is left.
pub fn save_history(history: &History, path: &Path) -> Result<HistoryFormat> {
    let format = HistoryFormat::of(path).ok_or_else(|| {
        ModelError::Data(format!("{}: a history is saved as .csv or .json (from the file's extension)", path.display()))
    })?;
    let text = match format {
        HistoryFormat::Csv => history_csv(history)?,
        HistoryFormat::Json => serde_json::to_string_pretty(history)
            .map_err(|e| ModelError::Data(format!("cannot write the history as JSON: {e}")))?,
    };
    crate::write::write_file(path, text.as_bytes(), crate::write::Place::OutsideCache)?;
    Ok(format)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EpochStats, StopReason};

    fn history() -> History {
        let epoch = |n: usize, val: Option<f32>| EpochStats {
            epoch: n,
            loss: 0.5 / n as f32,
            accuracy: 0.9,
            val_loss: val,
            val_accuracy: val.map(|v| 1.0 - v),
            lr: 1e-3,
            seconds: 1.25,
            images_per_sec: 4000.0,
        };
        History {
            epochs: vec![epoch(1, Some(0.25)), epoch(2, None)],
            stop: StopReason::Completed,
            best_epoch: Some(1),
            restored_best: true,
            notes: vec!["restored epoch 1".into()],
        }
    }

    #[test]
    fn csv_has_a_header_and_a_row_per_epoch() {
        let text = history_csv(&history()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], CSV_COLUMNS.join(","));
        assert_eq!(lines[1], "1,0.5,0.9,0.25,0.75,0.001,1.25,4000");
        assert_eq!(lines[2], "2,0.25,0.9,,,0.001,1.25,4000");
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn json_round_trips_and_the_extension_picks_the_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/history.JSON");
        assert_eq!(save_history(&history(), &path).unwrap(), HistoryFormat::Json);
        let back: History = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back, history());
        let csv_path = dir.path().join("h.csv");
        assert_eq!(save_history(&history(), &csv_path).unwrap(), HistoryFormat::Csv);
        assert_eq!(std::fs::read_to_string(&csv_path).unwrap(), history_csv(&history()).unwrap());
    }

    #[test]
    fn other_extensions_and_unwritable_places_are_refused_without_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = save_history(&history(), &dir.path().join("h.txt")).unwrap_err().to_string();
        assert!(e.contains(".csv or .json"), "{e}");
        assert!(!dir.path().join("h.txt").exists());
        let blocked = dir.path().join("file");
        std::fs::write(&blocked, "x").unwrap();
        assert!(matches!(
            save_history(&history(), &blocked.join("h.csv")),
            Err(ModelError::Write(crate::write::WriteError::NotAFolder { .. }))
        ));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "nothing but the blocking file");
    }
}
