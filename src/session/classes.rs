//! Which classes the data holds, and which model output stands for each: shared by `fit`,
//! `evaluate`, `head` and `compare`.

use super::SessionError;
use crate::data::Dataset;
use crate::model::LabelMap;

/// The classes that have at least one image in some split, in order; every class when the
/// dataset is empty.
pub(super) fn present_classes(dataset: &Dataset) -> Vec<usize> {
    let mut seen = vec![false; dataset.classes.len()];
    for split in dataset.splits.values() {
        for &l in &split.labels {
            if let Some(s) = seen.get_mut(l as usize) {
                *s = true;
            }
        }
    }
    let present: Vec<usize> = (0..seen.len()).filter(|&c| seen[c]).collect();
    if present.is_empty() {
        (0..dataset.classes.len()).collect()
    } else {
        present
    }
}

/// Dataset label → model output, matching class names: output k stands for `model_classes[k]`. Every class present in the data must be one of the model's.
pub(super) fn label_map(model_classes: &[String], dataset: &Dataset) -> Result<LabelMap, SessionError> {
    if model_classes == dataset.classes {
        return Ok(LabelMap::identity());
    }
    let present = present_classes(dataset);
    let mut table = vec![None; dataset.classes.len()];
    let mut missing = Vec::new();
    for &c in &present {
        match model_classes.iter().position(|name| *name == dataset.classes[c]) {
            Some(k) => table[c] = Some(k as u32),
            None => missing.push(dataset.classes[c].clone()),
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "the model's classes are {}; the data's {} {} not among them: `head {}` gives the model a fresh output layer for the data's {} classes, or build a new model",
            model_classes.join(", "),
            missing.join(", "),
            if missing.len() == 1 { "is" } else { "are" },
            present.len(),
            present.len()
        ).into());
    }
    Ok(LabelMap::new(table))
}
