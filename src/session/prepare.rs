//! Session arms of the data statements: load, info, show samples, normalize, split, filter,
//! subset, save, augment, expand.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Event, Image, Session, SessionError, Table};
use crate::data::{self, augment, Dataset, PixelScaling, SplitKind};
use crate::lang::docs;
use crate::lang::{self, AugmentSpec, LoadSource, SplitSpec};

impl Session {
    pub(super) fn load(&mut self, source: &LoadSource, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        let digits = data::dataset::digit_classes;
        let mut from_folder = false;
        let dataset = match source {
            LoadSource::Named { name, from } => load_named(*name, from.as_deref(), out)?,
            LoadSource::Idx { images, labels } => data::load::load_idx_pair(images, labels, "idx", digits())?,
            LoadSource::Npz(path) => data::npz::read_mnist_npz(path, "npz", digits())?,
            LoadSource::Pkl(path) => data::pickle::read_mnist_pkl(path)?,
            LoadSource::Csv(path) => data::csv::read_kaggle_csv(path, "csv", digits(), 28, 28)?,
            LoadSource::Dir(path) => {
                if !path.exists() {
                    return Err(format!(
                        "no folder {}: `load` takes mnist, fashion-mnist, idx, npz, pkl, csv, a folder written by `save` or a folder of class subfolders",
                        path.display()
                    ).into());
                }
                if data::folder::is_class_folder(path) {
                    from_folder = true;
                    self.load_class_folder(path)?
                } else {
                    let mut dataset = data::saved::load_saved(path)?;
                    // `info` names where the data now comes from, and what it was made from.
                    let made_from = std::mem::take(&mut dataset.provenance.description);
                    dataset.provenance.description =
                        format!("saved folder {} (its checksums verified), made from {made_from}", path.display());
                    dataset
                }
            }
            LoadSource::Folder(path) => {
                from_folder = true;
                self.load_class_folder(path)?
            }
        };
        let counts: Vec<String> = dataset.splits.iter().map(|(k, s)| format!("{k} {}", s.len())).collect();
        out(Event::Text(format!(
            "loaded {}: {} images of {}×{} ({}), {} classes",
            dataset.name,
            dataset.len(),
            dataset.rows,
            dataset.cols,
            counts.join(", "),
            dataset.classes.len()
        )));
        if from_folder {
            let splits = if dataset.splits.len() == 1 {
                "all in the train split: `split 80/10/10` divides them".to_string()
            } else {
                let names: Vec<&str> = dataset.splits.keys().map(|k| k.as_str()).collect();
                format!("the splits are the folders {}", names.join(", "))
            };
            out(Event::Text(format!(
                "classes {} (the subfolders, sorted); each picture made MNIST-style (grey, light ink on black, \
                 centred in 28×28); {splits}",
                dataset.classes.join(", ")
            )));
        }
        self.dataset = Some(dataset);
        Ok(())
    }

    /// A folder of class subfolders, stopped by Ctrl-C between pictures.
    fn load_class_folder(&self, dir: &Path) -> Result<Dataset, SessionError> {
        let interrupt = Arc::clone(&self.interrupt);
        let should_stop = move || interrupt.load(Ordering::SeqCst);
        Ok(data::folder::load_class_folder_interruptible(dir, &should_stop)?)
    }

    pub(super) fn info(&mut self, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        let dataset = self.dataset_for("info")?;
        let mut table = Table::new(
            Some(format!("{} — {} ({})", dataset.name, dataset.provenance.description, dataset.scaling.describe())),
            &["split", "count", "shape", "dtype", "min", "max", "mean", "std"],
        );
        let dtype = if dataset.scaling == PixelScaling::Raw { "uint8" } else { "uint8 → float32" };
        for (kind, split) in &dataset.splits {
            let stats = data::transform::pixel_stats(split, dataset.scaling);
            let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.4}"));
            table.row(vec![
                kind.to_string(),
                split.len().to_string(),
                format!("{}×{}×{}", split.len(), dataset.rows, dataset.cols),
                dtype.to_string(),
                f(stats.map(|s| s.min)),
                f(stats.map(|s| s.max)),
                f(stats.map(|s| s.mean)),
                f(stats.map(|s| s.std)),
            ]);
        }
        out(Event::Table(table));
        out(Event::Table(class_table(dataset, "class histogram")));
        if dataset.onehot {
            out(Event::Text(format!("labels: one-hot, {} columns", dataset.classes.len())));
        }
        Ok(())
    }

    pub(super) fn show_samples(
        &mut self,
        count: usize,
        split: Option<SplitKind>,
        class: Option<u32>,
        out: &mut dyn FnMut(Event),
    ) -> Result<(), SessionError> {
        let kind = split.unwrap_or(SplitKind::Train);
        let dataset = self.dataset_for("show samples")?;
        let data = dataset.split(kind).ok_or_else(|| format!("there is no {kind} split (run `split` first?)"))?;
        if let Some(c) = class {
            if c as usize >= dataset.classes.len() {
                return Err(format!("class {c} does not exist: classes are 0-{}", dataset.classes.len() - 1).into());
            }
        }
        let picked: Vec<usize> =
            (0..data.len()).filter(|&i| class.is_none_or(|c| data.labels[i] as u32 == c)).take(count).collect();
        if picked.is_empty() {
            return Err(format!("no {kind} image matches").into());
        }
        let image_len = dataset.image_len();
        let images: Vec<&[u8]> = picked.iter().map(|&i| data.image(i, image_len)).collect();
        let captions: Vec<String> = picked.iter().map(|&i| dataset.classes[data.labels[i] as usize].clone()).collect();
        let columns = (picked.len() as f64).sqrt().ceil() as usize;
        let which = class.map_or(String::new(), |c| format!(" of class {}", dataset.classes[c as usize]));
        let title =
            format!("the first {} {kind} images{which} of {}, each under its label", picked.len(), dataset.name);
        let png = crate::plot::titled_grid_png(&title, &images, (dataset.rows, dataset.cols), &captions, columns)?;
        out(Event::Image(Image {
            name: "samples".into(),
            title: format!("{} {kind} samples", picked.len()),
            png,
            svg: None,
        }));
        Ok(())
    }

    pub(super) fn normalize(&mut self, scaling: PixelScaling, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        self.set_scaling(scaling, out)
    }

    pub(super) fn standardize(&mut self, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        let dataset = self.dataset_for("standardize")?;
        let scaling = data::transform::standard_scaling(dataset)?;
        if let PixelScaling::Standard { mean, std } = scaling {
            out(Event::Text(format!("train mean {mean:.4}, std {std:.4} (pixels in 0..1); applied to every split")));
        }
        self.set_scaling(scaling, out)
    }

    pub(super) fn onehot(&mut self, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        let dataset = self.dataset_for("onehot")?;
        dataset.onehot = true;
        out(Event::Text(format!("labels one-hot encoded: {} columns", dataset.classes.len())));
        Ok(())
    }

    pub(super) fn filter_classes(&mut self, classes: &[u32], out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        let dataset = self.dataset_for("filter")?;
        data::split::filter_classes(dataset, classes)?;
        out(Event::Text(format!("kept classes {}: {} images", class_names(dataset, classes), dataset.len())));
        Ok(())
    }

    pub(super) fn subset(
        &mut self,
        per_class: usize,
        seed: Option<u64>,
        out: &mut dyn FnMut(Event),
    ) -> Result<(), SessionError> {
        let seed = seed.unwrap_or(self.seed);
        let dataset = self.dataset_for("subset")?;
        data::split::subset_per_class(dataset, per_class, seed)?;
        let n = dataset.split(SplitKind::Train).map_or(0, |s| s.len());
        out(Event::Text(format!("train split: {n} images ({per_class} per class, seed {seed})")));
        Ok(())
    }

    pub(super) fn augment(&mut self, spec: &AugmentSpec, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        match spec {
            AugmentSpec::Show => {
                let text = match &self.augmentation {
                    Some(a) => format!("augmentation of the train split during fit:\n{}", a.pipeline.describe()),
                    None => "no augmentation (set one with e.g. `augment rotate 10 shift 0.1`)".into(),
                };
                out(Event::Text(text));
            }
            AugmentSpec::Off => {
                self.augmentation = None;
                out(Event::Text("augmentation off".into()));
            }
            AugmentSpec::Ops { ops, force, interpolation } => {
                let is_digits = self.dataset.as_ref().is_none_or(|d| d.classes == data::dataset::digit_classes());
                let flips = ops.iter().any(|op| matches!(op, augment::Op::Flip { .. }));
                if flips && is_digits && !force {
                    return Err(
                        "flipping digits changes what they mean (a mirrored 2 looks like a 5, a flipped 6 like a 9); \
                                add `force` to the line to flip anyway"
                            .into(),
                    );
                }
                let pipeline = augment::Pipeline::new(ops.clone())?.with_interpolation(*interpolation);
                if flips && is_digits {
                    out(Event::Warning("flipping digits: a mirrored 2 looks like a 5, a flipped 6 like a 9".into()));
                }
                out(Event::Text(format!("augmentation of the train split during fit:\n{}", pipeline.describe())));
                let statement = self.current_statement.clone();
                self.augmentation = Some(super::Augmentation { pipeline, statement });
            }
            AugmentSpec::Preview(count) => self.augment_preview(*count, out)?,
        }
        Ok(())
    }

    fn augment_preview(&mut self, count: usize, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        let seed = self.seed;
        let augmentation = self
            .augmentation
            .as_ref()
            .ok_or("there is no augmentation to preview: set one with `augment ...` first")?;
        let dataset = self.dataset.as_ref().ok_or("augment preview needs data: run `load mnist` first")?;
        let (kind, split) = dataset
            .splits
            .iter()
            .find(|(k, s)| **k == SplitKind::Train && !s.is_empty())
            .or_else(|| dataset.splits.iter().find(|(_, s)| !s.is_empty()))
            .ok_or("there are no images to preview")?;
        let count = count.min(split.len()).max(1);
        let image_len = dataset.image_len();
        let indices: Vec<usize> = (0..count).collect();
        let mut augmented = vec![0u8; count * image_len];
        augmentation.pipeline.augment_batch(
            dataset.images(split),
            &indices,
            augment::Key::new(seed, 0),
            &mut augmented,
        )?;
        let mut images: Vec<&[u8]> = Vec::with_capacity(2 * count);
        let mut captions = Vec::with_capacity(2 * count);
        for (i, aug) in augmented.chunks_exact(image_len).enumerate() {
            let label = &dataset.classes[split.labels[i] as usize];
            images.push(split.image(i, image_len));
            captions.push(label.to_string());
            images.push(aug);
            captions.push(format!("{label} aug"));
        }
        let title = format!(
            "{count} {kind} images of {}, each beside its augmented version (seed {seed})\n{}",
            dataset.name, augmentation.statement
        );
        let png = crate::plot::titled_grid_png(&title, &images, (dataset.rows, dataset.cols), &captions, 8)?;
        out(Event::Image(Image {
            name: "augment-preview".into(),
            title: format!("{count} {kind} images (left) beside their augmented versions (right)"),
            png,
            svg: None,
        }));
        Ok(())
    }

    pub(super) fn expand(&mut self, factor: usize, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        let seed = self.seed;
        let augmentation = self
            .augmentation
            .as_ref()
            .ok_or("expand needs an augmentation: set one with e.g. `augment rotate 10 shift 0.1` first")?;
        let statement = augmentation.statement.clone();
        let dataset = self.dataset.as_mut().ok_or("expand needs data: run `load mnist` first")?;
        let (rows, cols) = (dataset.rows, dataset.cols);
        let train = dataset.splits.get_mut(&SplitKind::Train).ok_or("expand needs a train split")?;
        let before = train.len();
        let need = crate::budget::product(&[before as u64, factor as u64, (rows * cols + 1) as u64]);
        crate::budget::check(|| format!("expand {factor}x of {before} train images of {rows}×{cols}"), need)?;
        *train = augmentation.pipeline.expand(train, rows, cols, factor, seed)?;
        out(Event::Text(format!(
            "train split: {before} → {} images ({factor}× with `{statement}`, seed {seed}); val and test untouched",
            train.len()
        )));
        self.lineage.push(statement);
        Ok(())
    }

    fn set_scaling(&mut self, scaling: PixelScaling, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        let dataset = self.dataset_for("normalize")?;
        dataset.scaling = scaling;
        let stats = dataset.split(SplitKind::Train).or_else(|| dataset.splits.values().next());
        let range = stats
            .and_then(|s| data::transform::pixel_stats(s, scaling))
            .map(|s| format!("; values now {:.4}..{:.4}, mean {:.4}, std {:.4}", s.min, s.max, s.mean, s.std))
            .unwrap_or_default();
        out(Event::Text(format!("pixels scaled as {}{range}", scaling.describe())));
        Ok(())
    }

    pub(super) fn split(&mut self, spec: &SplitSpec, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
        let session_seed = self.seed;
        let after_subset = self.subset_since_load;
        let dataset = self.dataset_for("split")?;
        let (title, seed) = match spec {
            SplitSpec::Percent { train, val, test, seed } => {
                let seed = seed.unwrap_or(session_seed);
                let counts: Vec<String> = dataset.splits.iter().map(|(k, s)| format!("{k} {}", s.len())).collect();
                if after_subset && dataset.splits.len() > 1 {
                    out(Event::Warning(format!(
                        "split pools every image loaded now ({}): `subset` kept part of train only, so the other \
                         splits' images (the official test set included) join the pool whole; to divide the subset \
                         alone, run `split` first and `subset` after it, or `split val P` to keep the test set",
                        counts.join(", ")
                    )));
                }
                data::split::split_percent(dataset, [*train, *val, *test], seed)?;
                (format!("split {train}/{val}/{test}, stratified"), seed)
            }
            SplitSpec::Validation { percent, seed } => {
                let seed = seed.unwrap_or(session_seed);
                data::split::split_validation(dataset, *percent, seed)?;
                (format!("validation: {percent}% of train, stratified"), seed)
            }
        };
        if dataset.scaling != PixelScaling::Raw {
            if let PixelScaling::Standard { .. } = dataset.scaling {
                dataset.scaling = data::transform::standard_scaling(dataset)?;
                out(Event::Warning("standardization recomputed on the new train split".into()));
            }
        }
        out(Event::Table(class_table(dataset, &format!("{title} (seed {seed})"))));
        let dups = data::split::cross_split_duplicates(dataset);
        let text: Vec<String> = dups.iter().map(|(a, b, n)| format!("{a}/{b} {n}")).collect();
        out(Event::Text(format!("byte-identical images in two splits: {}", text.join(", "))));
        Ok(())
    }

    pub(super) fn save(
        &mut self,
        dir: &Path,
        format: data::saved::SaveFormat,
        out: &mut dyn FnMut(Event),
    ) -> Result<(), SessionError> {
        let input = data::saved::ManifestInput { statements: self.lineage.clone(), seed: Some(self.seed) };
        let interrupt = Arc::clone(&self.interrupt);
        let dataset = self.dataset_for("save")?;
        let should_stop = || interrupt.load(Ordering::SeqCst);
        let manifest = data::saved::save_dataset_interruptible(dir, dataset, format, &input, &should_stop)?;
        let files = manifest.files.len();
        out(Event::Text(format!(
            "saved {} images to {} ({files} {} and manifest.json)",
            dataset.len(),
            dir.display(),
            if files == 1 { "file" } else { "files" }
        )));
        Ok(())
    }
}

/// Loads a named dataset: an explicit folder, else the cache, else `~/.keras/datasets/mnist.npz`,
/// else fetched.
fn load_named(
    named: data::fetch::Named,
    from: Option<&Path>,
    out: &mut dyn FnMut(Event),
) -> Result<Dataset, SessionError> {
    let (name, classes) = match named {
        data::fetch::Named::Mnist => ("mnist", data::dataset::digit_classes()),
        data::fetch::Named::FashionMnist => ("fashion-mnist", data::dataset::fashion_classes()),
    };
    if let Some(dir) = from {
        let description = format!("{name} IDX files in {}", dir.display());
        return data::load::load_official(dir, name, classes, &description).map_err(SessionError::from);
    }
    let cached = data::fetch::is_cached(&named.files(), &data::fetch::cache_dir().join(named.as_str()));
    if !cached && named == data::fetch::Named::Mnist {
        if let Some(npz) = dirs::home_dir().map(|h| h.join(".keras/datasets/mnist.npz")).filter(|p| p.is_file()) {
            out(Event::Text(format!("reading Keras's copy {}", npz.display())));
            return data::npz::read_mnist_npz(&npz, name, classes).map_err(SessionError::from);
        }
    }
    let dir = data::fetch::fetch(named, &mut |line: &str| out(Event::Text(line.to_string())))?;
    let description = format!("{name} (official files, verified, cached in {})", dir.display());
    data::load::load_official(&dir, name, classes, &description).map_err(SessionError::from)
}

fn class_names(dataset: &Dataset, classes: &[u32]) -> String {
    classes.iter().map(|&c| dataset.classes[c as usize].clone()).collect::<Vec<_>>().join(", ")
}

/// Per-class counts and shares of every split.
fn class_table(dataset: &Dataset, title: &str) -> Table {
    let mut header = vec!["class"];
    let names: Vec<String> = dataset.splits.keys().map(|k| k.to_string()).collect();
    let share_names: Vec<String> = names.iter().map(|n| format!("{n} %")).collect();
    for (n, s) in names.iter().zip(&share_names) {
        header.push(n);
        header.push(s);
    }
    let mut table = Table::new(Some(title.to_string()), &header);
    let counts: Vec<Vec<usize>> = dataset.splits.values().map(|s| s.class_counts(dataset.classes.len())).collect();
    let totals: Vec<usize> = dataset.splits.values().map(|s| s.len()).collect();
    for (c, name) in dataset.classes.iter().enumerate() {
        if counts.iter().all(|col| col[c] == 0) {
            continue;
        }
        let mut row = vec![name.clone()];
        for (col, total) in counts.iter().zip(&totals) {
            row.push(col[c].to_string());
            row.push(format!("{:.2}", 100.0 * col[c] as f64 / (*total).max(1) as f64));
        }
        table.row(row);
    }
    let mut row = vec!["total".to_string()];
    for total in &totals {
        row.push(total.to_string());
        row.push("100.00".into());
    }
    table.row(row);
    table
}

pub(super) fn help(topic: Option<&str>, width: usize, out: &mut dyn FnMut(Event)) -> Result<(), SessionError> {
    match topic {
        None => {
            out(Event::Text(docs::listing(width)));
            Ok(())
        }
        Some(word) => match docs::topic_help(word, width) {
            Some(text) => {
                out(Event::Text(text));
                Ok(())
            }
            None => {
                let hint = lang::parser::closest(word, docs::topics())
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                Err(format!("no statement, layer or setting word `{word}`{hint}").into())
            }
        },
    }
}
