//! Your own pictures, on real MNIST test digits redrawn as PNG and JPEG files of other sizes and
//! colours: `load folder DIR` (and `load DIR`), then split, augment, fit, evaluate, save and load;
//! `predict DIR` into subfolders; `predictions SPLIT N`; `evaluate SPLIT N`; and `predict` on a
//! 28×28 MNIST image agreeing with the model's own probabilities for it.

use std::path::Path;

use image::{imageops, GrayImage, Rgb, RgbImage};
use mnistlab::data::{Split, SplitKind};
use mnistlab::session::{Event, Session, Table};

mod common;
use common::{error, run, tables, texts};

/// The class subfolders' names: words, so that sorted they are not in digit order.
const NAMES: [&str; 10] = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"];

/// The MNIST test split, from the cache.
fn mnist_test() -> Split {
    let mut session = Session::new();
    run(&mut session, "load mnist");
    session.dataset().unwrap().splits[&SplitKind::Test].clone()
}

/// Digit `img` (28×28, light on black) redrawn as a `side × side·5/4` colour picture: dark blue
/// ink on cream paper, or (every third) light yellow ink on dark green.
fn redraw(img: &[u8], side: u32, variant: usize) -> RgbImage {
    let grey = GrayImage::from_raw(28, 28, img.to_vec()).unwrap();
    let big = imageops::resize(&grey, side, side * 5 / 4, imageops::FilterType::Triangle);
    let (ink, paper) =
        if variant % 3 == 2 { ([250, 240, 120], [10, 60, 30]) } else { ([20, 30, 120], [245, 235, 205]) };
    RgbImage::from_fn(big.width(), big.height(), |x, y| {
        let t = big.get_pixel(x, y).0[0] as f32 / 255.0;
        Rgb(std::array::from_fn(|c| (ink[c] as f32 * t + paper[c] as f32 * (1.0 - t)).round() as u8))
    })
}

/// Writes `per_class` test digits of each class into `root/<name>/`, PNG and JPEG of sizes 40 to
/// 100, some in a nested subfolder; a hidden file beside them. Returns how many it wrote.
fn make_folder(test: &Split, root: &Path, per_class: usize) -> usize {
    let mut written = 0;
    for (digit, name) in NAMES.iter().enumerate() {
        let indices = (0..test.len()).filter(|&i| test.labels[i] as usize == digit).take(per_class);
        for (k, i) in indices.enumerate() {
            let picture = redraw(test.image(i, 784), 40 + 15 * (k as u32 % 5), k);
            let sub = if k % 4 == 3 { root.join(name).join("more") } else { root.join(name) };
            std::fs::create_dir_all(&sub).unwrap();
            let ext = if k % 2 == 0 { "png" } else { "jpg" };
            picture.save(sub.join(format!("{i:05}.{ext}"))).unwrap();
            written += 1;
        }
    }
    std::fs::write(root.join("three/.DS_Store"), b"not a picture, hidden").unwrap();
    written
}

fn table_titled<'a>(events: &'a [Event], start: &str) -> &'a Table {
    events
        .iter()
        .find_map(|e| match e {
            Event::Table(t) if t.title.as_deref().is_some_and(|s| s.starts_with(start)) => Some(t),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no table titled {start}…"))
}

/// The accuracy in an `evaluate` line: `test: loss 0.1 - accuracy 0.9 (…)`.
fn accuracy(events: &[Event]) -> f64 {
    let line = texts(events).into_iter().find(|t| t.contains(" - accuracy ")).expect("an evaluate line");
    line.split(" - accuracy ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn a_folder_of_class_subfolders_loads_trains_evaluates_augments_and_saves() {
    let test = mnist_test();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mydigits");
    let count = make_folder(&test, &root, 40);
    assert_eq!(count, 400);

    let mut session = Session::new();
    let events = run(&mut session, &format!("load folder \"{}\"", root.display()));
    let lines = texts(&events);
    assert_eq!(lines[0], "loaded mydigits: 400 images of 28×28 (train 400), 10 classes");
    assert!(lines[1].starts_with("classes eight, five, four, nine, one, seven, six, three, two, zero"), "{lines:?}");
    let loaded = session.dataset().unwrap().clone();
    let mut sorted = NAMES.to_vec();
    sorted.sort();
    assert_eq!(loaded.classes, sorted);
    let train = &loaded.splits[&SplitKind::Train];
    assert_eq!(train.class_counts(10), [40; 10]);
    // Each image is the file preprocessed as `predict` does it.
    let eight: Vec<_> = mnistlab::data::folder::pictures_under(&root.join("eight")).unwrap();
    assert_eq!(eight.len(), 40);
    assert_eq!(train.image(0, 784), mnistlab::data::preprocess::preprocess_file(&eight[0]).unwrap());

    // `load DIR` reads the same layout without the word `folder`.
    let mut plain = Session::new();
    run(&mut plain, &format!("load \"{}\"", root.display()));
    assert_eq!(plain.dataset().unwrap().splits, loaded.splits);

    // Split, augment, train and evaluate like MNIST: the redrawn digits are learned.
    run(&mut session, "seed 3\nsplit 80/10/10 seed 3\nnormalize\naugment rotate 8 shift 0.05\nmodel conv16 pool conv32 pool dense64\noptimizer adam lr 0.003\nfit 8");
    let events = run(&mut session, "evaluate val");
    let val = accuracy(&events);
    assert!(val >= 0.6, "val accuracy {val} on 40 pictures of 10 classes");
    let per_class = &tables(&events)[0];
    assert!(per_class.rows.iter().all(|r| sorted.contains(&r[0].as_str())), "{:?}", per_class.rows);

    // Saved and loaded back, the same images and classes.
    let saved = dir.path().join("mydigits-saved");
    run(&mut session, &format!("save \"{}\"", saved.display()));
    let mut back = Session::new();
    run(&mut back, &format!("load \"{}\"", saved.display()));
    assert_eq!(back.dataset().unwrap().splits, session.dataset().unwrap().splits);
    assert_eq!(back.dataset().unwrap().classes, sorted);

    // `predict DIR` looks into subfolders; hidden files are skipped, others named.
    std::fs::write(root.join("notes.txt"), b"not a picture").unwrap();
    let events = run(&mut session, &format!("predict \"{}\"", root.display()));
    assert!(texts(&events).iter().any(|t| t.starts_with("skipped 1 file that is not") && t.contains("notes.txt")));
    let table = table_titled(&events, "predictions (top 3)");
    assert_eq!(table.header, ["file", "1st", "2nd", "3rd", "input"]);
    assert_eq!(table.rows.len(), 400);
    let nested = table.rows.iter().filter(|r| r[0].contains("/more/")).count();
    assert_eq!(nested, 100);
    assert!(table.rows.iter().all(|r| r[4].ends_with("preprocessed")), "{:?}", table.rows[0]);
    let right = table.rows.iter().filter(|r| r[1].split(' ').next() == r[0].split('/').next()).count();
    assert!(right >= 280, "{right} of 400 right");
    assert!(events.iter().any(|e| matches!(e, Event::Image(i) if i.name == "predict")));

    // Clear errors: a class without pictures, a file that is not one, no subfolders.
    std::fs::create_dir(root.join("ten")).unwrap();
    let e = error(&mut session, &format!("load folder \"{}\"", root.display()));
    assert!(e.contains("ten") && e.contains("an empty class"), "{e}");
    std::fs::write(root.join("ten/readme.md"), b"# ten").unwrap();
    let e = error(&mut session, &format!("load folder \"{}\"", root.display()));
    assert!(e.contains("readme.md") && e.contains("not a picture"), "{e}");
    let flat = dir.path().join("flat");
    std::fs::create_dir(&flat).unwrap();
    redraw(test.image(0, 784), 50, 0).save(flat.join("a.png")).unwrap();
    let e = error(&mut session, &format!("load folder \"{}\"", flat.display()));
    assert!(e.contains("no class subfolders") && e.contains("flat"), "{e}");
    let e = error(&mut session, &format!("load \"{}\"", flat.display()));
    assert!(e.contains("no class subfolders") && e.contains("`load folder DIR`"), "{e}");
}

#[test]
fn predict_takes_an_mnist_shaped_png_as_is_and_predictions_rank_the_worst() {
    let dir = tempfile::tempdir().unwrap();
    let mut session = Session::new();
    run(&mut session, "seed 1\nload mnist\nnormalize\nsubset 100 per class seed 1\nmodel conv8 pool dense32\nfit 1");
    let test = session.dataset().unwrap().splits[&SplitKind::Test].clone();
    let net = session.network().unwrap();
    let scaling = session.dataset().unwrap().scaling;
    let probs = mnistlab::model::predict_probs(net, &test.pixels[..200 * 784], scaling).unwrap();

    // Real test images saved as grey PNG: `predict` gives the model exactly the split's bytes.
    let digits = dir.path().join("digits");
    std::fs::create_dir(&digits).unwrap();
    for i in 0..6 {
        GrayImage::from_raw(28, 28, test.image(i, 784).to_vec())
            .unwrap()
            .save(digits.join(format!("{i}.png")))
            .unwrap();
    }
    let events = run(&mut session, &format!("predict \"{}\"", digits.display()));
    let table = table_titled(&events, "predictions (top 3)");
    for (i, row) in table.rows.iter().enumerate() {
        assert_eq!(row[0], format!("{i}.png"));
        let p = &probs[i];
        let mut order: Vec<usize> = (0..10).collect();
        order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
        let expected: Vec<String> = order[..3].iter().map(|&c| format!("{c} ({:.1}%)", 100.0 * p[c])).collect();
        assert_eq!(row[1..4], expected[..], "image {i}");
        assert_eq!(row[4], "28×28, taken as is");
    }

    // `evaluate test N` scores the first N images only, and is not kept.
    run(&mut session, "evaluate test");
    let whole = session.evaluation().unwrap();
    let events = run(&mut session, "evaluate test 200");
    let line = texts(&events).into_iter().find(|t| t.starts_with("test, first 200 of 10000 images: ")).unwrap();
    let right = (0..200)
        .filter(|&i| {
            let p = &probs[i];
            (0..10).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap() == test.labels[i] as usize
        })
        .count();
    assert!(line.contains(&format!("({right} of 200 images right)")), "{line}");
    assert_eq!(accuracy(&events), (right as f64 / 200.0 * 1e4).round() / 1e4);
    assert_eq!(session.evaluation().unwrap().1.accuracy, whole.1.accuracy);
    assert_eq!(tables(&events)[0].title.as_deref(), Some("per-class accuracy on test, first 200 of 10000 images"));

    // `predictions test N`: the N images of highest loss, worst first.
    let events = run(&mut session, "predictions test 12");
    let table = table_titled(&events, "test: the 12 images of highest loss, worst first");
    assert_eq!(table.header, ["image", "true", "predicted", "probability", "p(true)", "loss"]);
    assert_eq!(table.rows.len(), 12);
    let losses: Vec<f64> = table.rows.iter().map(|r| r[5].parse().unwrap()).collect();
    assert!(losses.windows(2).all(|w| w[0] >= w[1]), "{losses:?}");
    let wrong = 10_000 - (whole.1.accuracy as f64 * 10_000.0).round() as usize;
    assert!(table.title.as_deref().unwrap().ends_with(&format!("({wrong} of 10000 predicted wrong)")));
    let all = mnistlab::model::predict_probs(net_of(&session), &test.pixels, scaling).unwrap();
    let worst = (0..test.len())
        .max_by(|&a, &b| all[b][test.labels[b] as usize].total_cmp(&all[a][test.labels[a] as usize]))
        .unwrap();
    assert_eq!(table.rows[0][0], worst.to_string());
    assert_eq!(table.rows[0][1], test.labels[worst].to_string());
    assert_ne!(table.rows[0][1], table.rows[0][2], "the worst image is a mistake");
    assert!(error(&mut session, "predictions val 5").contains("no val split"));
}

fn net_of(session: &Session) -> &mnistlab::model::Network {
    session.network().unwrap()
}
