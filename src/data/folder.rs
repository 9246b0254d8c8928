//! Loading your own pictures: a folder with one subfolder per class, the layout of
//! torchvision's `ImageFolder` and Keras' `image_dataset_from_directory`.
//!
//! Classes are the subfolders' names, sorted; every PNG or JPEG under a class subfolder (its
//! subfolders included) is one image of that class, of any size and colour, made into a 28×28
//! MNIST-style image by [`super::preprocess`]. Hidden files and folders (a name starting with
//! `.`) are skipped; any other file that is not a picture is an error naming it. The images
//! become the train split, in class order and then file-name order; `split` divides them. A
//! folder whose subfolders are `train/`, `val/`, `test/` (each with class subfolders) gives
//! those splits instead.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;

use super::dataset::{Dataset, Provenance, SplitKind};
use super::error::{DataError, Result};
use super::preprocess::{self, Prepared, FIELD};

/// The most classes a folder may have: labels are stored as bytes.
pub const MAX_CLASSES: usize = 256;

/// The file extensions read as pictures (compared without case).
pub const EXTENSIONS: &[&str] = &["png", "jpg", "jpeg"];

/// True for a file or folder name starting with `.` (`.DS_Store`, `.ipynb_checkpoints`).
fn hidden(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

/// True when `path` has one of [`EXTENSIONS`].
pub fn is_picture(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The visible subfolders of `dir`, sorted by name.
fn subfolders(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let path = entry.map_err(|e| DataError::io(dir, e))?.path();
        if path.is_dir() && !hidden(&path) {
            dirs.push(path);
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// True when `dir` has no `manifest.json` (it was not written by `save`) and has at least one
/// visible subfolder: `load DIR` then reads it as class subfolders.
pub fn is_class_folder(dir: &Path) -> bool {
    dir.is_dir() && !dir.join(super::saved::MANIFEST).exists() && subfolders(dir).is_ok_and(|d| !d.is_empty())
}

/// The visible files under `dir` (recursively, its subfolders too), sorted by path, as
/// `(pictures, others)`: the PNG and JPEG files, and every other file. Hidden files and
/// folders are skipped.
pub fn files_under(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let (mut pictures, mut others) = (Vec::new(), Vec::new());
    let walk = walkdir::WalkDir::new(dir).follow_links(true).sort_by_file_name().into_iter();
    for entry in walk.filter_entry(|e| e.depth() == 0 || !hidden(e.path())) {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(dir).to_path_buf();
            match e.into_io_error() {
                Some(io) => DataError::io(&path, io),
                None => DataError::format(&path, "a folder that links back into itself"),
            }
        })?;
        if entry.file_type().is_dir() {
            continue;
        }
        let path = entry.into_path();
        if is_picture(&path) {
            pictures.push(path);
        } else {
            others.push(path);
        }
    }
    Ok((pictures, others))
}

/// The pictures under `dir` (recursively), sorted by path; a visible file that is not a
/// picture is an error naming it.
pub fn pictures_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let (pictures, others) = files_under(dir)?;
    match others.first() {
        Some(other) => Err(DataError::format(
            other,
            "not a picture: a class folder may hold only .png, .jpg and .jpeg files (files whose name starts \
             with `.` are skipped)",
        )),
        None => Ok(pictures),
    }
}

/// The split a subfolder named `name` holds in the split layout (`train/`, `val/` or
/// `validation/` or `valid/`, `test/`), if its name is one of those.
fn split_of(name: &str) -> Option<SplitKind> {
    match name {
        "train" => Some(SplitKind::Train),
        "val" | "valid" | "validation" => Some(SplitKind::Val),
        "test" => Some(SplitKind::Test),
        _ => None,
    }
}

/// The file name of `path` as text.
fn name_of(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// The class subfolders of `dir`, or an error saying how to lay them out.
fn class_folders(dir: &Path) -> Result<Vec<PathBuf>> {
    let classes = subfolders(dir)?;
    if classes.is_empty() {
        return Err(DataError::format(
            dir,
            "has no class subfolders: put the pictures of each class in a subfolder named after the class \
             (e.g. mydigits/0/a.png, mydigits/1/b.png)",
        ));
    }
    Ok(classes)
}

/// Loads `dir`, one subfolder per class, into a dataset named after the folder with one train
/// split of 28×28 images (decoded in parallel). When every subfolder is named `train`, `val`
/// (`valid`, `validation`) or `test` and each holds class subfolders (Keras' and torchvision's
/// `data/train/<class>/`, `data/test/<class>/`), each becomes that split; the classes are then
/// the names found in any of them, sorted.
///
/// Errors name the folder or file: no class subfolder, a class without pictures, more than
/// [`MAX_CLASSES`] classes, a file that is not a picture or cannot be decoded, a picture beyond
/// [`preprocess::MAX_PIXELS`], or images whose bytes would exceed the memory budget.
pub fn load_class_folder(dir: &Path) -> Result<Dataset> {
    load_class_folder_interruptible(dir, &|| false)
}

/// [`load_class_folder`], asking `should_stop` before each picture: when it answers true the
/// load stops with [`DataError::Interrupted`].
pub fn load_class_folder_interruptible(dir: &Path, should_stop: &(dyn Fn() -> bool + Sync)) -> Result<Dataset> {
    if !dir.is_dir() {
        return Err(DataError::format(dir, "no such folder"));
    }
    let (parts, split_layout) = split_parts(dir)?;
    let names = class_names(dir, &parts)?;
    let files = labelled_pictures(&parts, &names)?;
    crate::budget::check(
        || format!("{} images of 28×28 from {}", files.len(), dir.display()),
        crate::budget::product(&[files.len() as u64, (FIELD * FIELD) as u64]),
    )?;
    let paths: Vec<&Path> = files.iter().map(|(_, path, _)| path.as_path()).collect();
    let images: Vec<Vec<u8>> = prepare_files(&paths, should_stop)?.into_iter().map(|p| p.pixels).collect();
    let mut dataset = Dataset::new(&name_of(dir), names, FIELD, FIELD);
    let layout = if split_layout {
        let splits: Vec<&str> = parts.iter().map(|(k, _)| k.as_str()).collect();
        format!(" (split folders {})", splits.join(", "))
    } else {
        String::new()
    };
    dataset.provenance = Provenance {
        description: format!(
            "{} pictures in {} class subfolders of {}{layout}, MNIST-style preprocessed",
            files.len(),
            dataset.classes.len(),
            dir.display()
        ),
        files: Default::default(),
    };
    for ((kind, _, label), pixels) in files.iter().zip(&images) {
        let split = dataset.splits.entry(*kind).or_default();
        split.pixels.extend_from_slice(pixels);
        split.labels.push(*label);
    }
    dataset.validate().map_err(|p| DataError::inconsistent(dir, p))?;
    Ok(dataset)
}

/// A split and its class subfolders.
type SplitFolders = (SplitKind, Vec<PathBuf>);

/// The splits of `dir` and each one's class subfolders: `train/`, `val/`, `test/` folders of
/// class subfolders (true), or class subfolders alone, all in the train split (false).
fn split_parts(dir: &Path) -> Result<(Vec<SplitFolders>, bool)> {
    let top = class_folders(dir)?;
    let split_layout = top.iter().all(|d| split_of(&name_of(d)).is_some())
        && top.iter().all(|d| subfolders(d).is_ok_and(|s| !s.is_empty()));
    let split_like: Vec<String> = top
        .iter()
        .filter(|d| split_of(&name_of(d)).is_some() && subfolders(d).is_ok_and(|s| !s.is_empty()))
        .map(|d| name_of(d))
        .collect();
    if !split_layout && !split_like.is_empty() {
        let others: Vec<String> = top.iter().map(|d| name_of(d)).filter(|n| !split_like.contains(n)).collect();
        return Err(DataError::format(
            dir,
            format!(
                "mixes split folders with class subfolders ({}) and class folders ({}): put every class \
                 subfolder inside train/, val/ or test/, or none of them",
                split_like.join(", "),
                others.join(", ")
            ),
        ));
    }
    let parts: Vec<(SplitKind, Vec<PathBuf>)> = if split_layout {
        let mut parts = Vec::new();
        for d in &top {
            let kind = split_of(&name_of(d)).expect("checked above");
            if parts.iter().any(|(k, _)| *k == kind) {
                return Err(DataError::format(d, format!("a second folder for the {kind} split")));
            }
            parts.push((kind, class_folders(d)?));
        }
        parts
    } else {
        vec![(SplitKind::Train, top)]
    };
    Ok((parts, split_layout))
}

/// The class names of `parts`, sorted: at least two, at most [`MAX_CLASSES`].
fn class_names(dir: &Path, parts: &[SplitFolders]) -> Result<Vec<String>> {
    let mut names: Vec<String> = parts.iter().flat_map(|(_, c)| c.iter().map(|c| name_of(c))).collect();
    names.sort();
    names.dedup();
    if names.len() < 2 {
        return Err(DataError::format(
            dir,
            format!(
                "has one class subfolder ({}): a classifier needs at least two classes, one subfolder each",
                names.join(", ")
            ),
        ));
    }
    if names.len() > MAX_CLASSES {
        return Err(DataError::format(
            dir,
            format!("has {} class subfolders, but labels are bytes: at most {MAX_CLASSES} classes", names.len()),
        ));
    }
    Ok(names)
}

/// Every picture of `parts` with its split and label (its class's place in `names`); a class
/// without pictures is refused.
fn labelled_pictures(parts: &[SplitFolders], names: &[String]) -> Result<Vec<(SplitKind, PathBuf, u8)>> {
    let mut files: Vec<(SplitKind, PathBuf, u8)> = Vec::new();
    for (kind, classes) in parts {
        for class in classes {
            let pictures = pictures_under(class)?;
            if pictures.is_empty() {
                return Err(DataError::format(
                    class,
                    "an empty class: the subfolder holds no .png, .jpg or .jpeg file",
                ));
            }
            let label = names.binary_search(&name_of(class)).expect("every name was gathered") as u8;
            files.extend(pictures.into_iter().map(|p| (*kind, p, label)));
        }
    }
    Ok(files)
}

/// Each of `paths` decoded and made MNIST-style ([`preprocess::prepare_file`]), in parallel,
/// in order; the error reported is always the first failing picture in that order (a picture
/// after a failed one is skipped, one before it never is). `should_stop` is asked before each
/// picture. `load folder` and `predict DIR` decode through it.
pub fn prepare_files(paths: &[&Path], should_stop: &(dyn Fn() -> bool + Sync)) -> Result<Vec<Prepared>> {
    let first_failure = AtomicUsize::new(usize::MAX);
    let decoded: Vec<Option<Result<Prepared>>> = paths
        .par_iter()
        .enumerate()
        .map(|(i, path)| {
            if i > first_failure.load(Ordering::Relaxed) {
                return None;
            }
            if should_stop() {
                return Some(Err(DataError::Interrupted));
            }
            let picture = preprocess::prepare_file(path);
            if picture.is_err() {
                first_failure.fetch_min(i, Ordering::Relaxed);
            }
            Some(picture)
        })
        .collect();
    let mut pictures = Vec::with_capacity(decoded.len());
    for picture in decoded {
        pictures.push(picture.expect("a picture is skipped only after an earlier one failed")?);
    }
    Ok(pictures)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `w×h` RGB PNG at `path`: a dark bar on light paper.
    fn bar(path: &Path, w: u32, h: u32) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            if (w / 3..w / 2).contains(&x) && (h / 5..h * 4 / 5).contains(&y) {
                image::Rgb([20, 30, 200])
            } else {
                image::Rgb([250, 240, 230])
            }
        });
        img.save(path).unwrap();
    }

    #[test]
    fn classes_are_sorted_subfolders_and_hidden_files_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("shapes");
        bar(&root.join("b/one.png"), 40, 60);
        bar(&root.join("b/deeper/two.jpg"), 100, 50);
        bar(&root.join("a/three.PNG"), 28, 28);
        std::fs::write(root.join("a/.DS_Store"), b"junk").unwrap();
        std::fs::create_dir_all(root.join(".ipynb_checkpoints")).unwrap();
        assert!(is_class_folder(&root));
        let d = load_class_folder(&root).unwrap();
        assert_eq!(d.name, "shapes");
        assert_eq!(d.classes, ["a", "b"]);
        assert_eq!((d.rows, d.cols), (28, 28));
        let train = &d.splits[&SplitKind::Train];
        assert_eq!(train.labels, [0, 1, 1]);
        assert_eq!(train.pixels.len(), 3 * 784);
        // Every image is light ink on black with empty corners.
        for i in 0..3 {
            let img = train.image(i, 784);
            assert_eq!((img[0], img[783]), (0, 0));
            assert!(img.iter().any(|&v| v > 200), "image {i} has no ink");
        }
    }

    #[test]
    fn errors_name_the_folder_or_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let e = load_class_folder(root).unwrap_err().to_string();
        assert!(e.contains("no class subfolders") && e.contains(&root.display().to_string()), "{e}");
        std::fs::create_dir(root.join("cats")).unwrap();
        let e = load_class_folder(root).unwrap_err().to_string();
        assert!(e.contains("one class subfolder (cats)") && e.contains("at least two"), "{e}");
        bar(&root.join("dogs/a.png"), 30, 30);
        let e = load_class_folder(root).unwrap_err().to_string();
        assert!(e.contains("empty class") && e.contains("cats"), "{e}");
        std::fs::write(root.join("cats/notes.txt"), b"hello").unwrap();
        let e = load_class_folder(root).unwrap_err().to_string();
        assert!(e.contains("notes.txt") && e.contains("not a picture"), "{e}");
        std::fs::remove_file(root.join("cats/notes.txt")).unwrap();
        std::fs::write(root.join("cats/broken.png"), b"not a png at all").unwrap();
        let e = load_class_folder(root).unwrap_err().to_string();
        assert!(e.contains("broken.png") && e.contains("cannot decode"), "{e}");
        std::fs::remove_file(root.join("cats/broken.png")).unwrap();
        let huge = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions/image/claims-16384x16384.jpg");
        std::fs::copy(huge, root.join("cats/huge.jpg")).unwrap();
        let e = load_class_folder(root).unwrap_err().to_string();
        assert!(e.contains("huge.jpg") && e.contains("at most 64 megapixels"), "{e}");
        for i in 0..=MAX_CLASSES {
            std::fs::create_dir(root.join(format!("c{i:03}"))).unwrap();
        }
        let e = load_class_folder(root).unwrap_err().to_string();
        assert!(e.contains("259 class subfolders") && e.contains("at most 256"), "{e}");
        let e = load_class_folder_interruptible(&root.join("c000/.."), &|| true).unwrap_err();
        assert!(matches!(e, DataError::Format { .. }), "classes are checked first: {e}");
    }

    #[test]
    fn train_and_test_folders_become_splits() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        bar(&root.join("train/cat/1.png"), 30, 40);
        bar(&root.join("train/dog/2.png"), 30, 40);
        bar(&root.join("train/dog/3.jpg"), 50, 40);
        bar(&root.join("test/dog/4.png"), 30, 30);
        bar(&root.join("test/emu/5.png"), 30, 30);
        let d = load_class_folder(&root).unwrap();
        assert_eq!(d.classes, ["cat", "dog", "emu"]);
        assert_eq!(d.splits.keys().copied().collect::<Vec<_>>(), [SplitKind::Train, SplitKind::Test]);
        assert_eq!(d.splits[&SplitKind::Train].labels, [0, 1, 1]);
        assert_eq!(d.splits[&SplitKind::Test].labels, [1, 2]);
        assert!(d.provenance.description.contains("(split folders test, train)"), "{}", d.provenance.description);
        // Split folders beside a class folder: refused, not read as classes `test` and `train`.
        bar(&root.join("bird/6.png"), 30, 30);
        let e = load_class_folder(&root).unwrap_err().to_string();
        assert!(e.contains("mixes split folders") && e.contains("(test, train)") && e.contains("(bird)"), "{e}");
    }

    #[test]
    fn an_interrupted_load_stops() {
        let dir = tempfile::tempdir().unwrap();
        bar(&dir.path().join("a/one.png"), 30, 30);
        bar(&dir.path().join("b/two.png"), 30, 30);
        assert!(matches!(load_class_folder_interruptible(dir.path(), &|| true), Err(DataError::Interrupted)));
        assert!(load_class_folder_interruptible(dir.path(), &|| false).is_ok());
    }
}
