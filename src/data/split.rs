//! Stratified splits, class filters and per-class subsets, all seeded.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::dataset::{Dataset, Split, SplitKind};
use super::error::{DataError, Result};

/// Indices of each class's images in `split`, in order.
fn indices_by_class(split: &Split, classes: usize) -> Vec<Vec<usize>> {
    let mut by_class = vec![Vec::new(); classes];
    for (i, &l) in split.labels.iter().enumerate() {
        by_class[l as usize].push(i);
    }
    by_class
}

/// Divides `counts[c]` items of each class into `shares.len()` parts so that every part's total
/// is its share of the grand total (rounded, the last part taking the rest) and every cell is
/// within 1 of its proportional value.
pub fn apportion(counts: &[usize], shares: &[f64]) -> Vec<Vec<usize>> {
    let total: usize = counts.iter().sum();
    let share_sum: f64 = shares.iter().sum();
    let parts = shares.len();
    // Column totals: rounded shares, the last one taking the rest.
    let mut column_totals: Vec<usize> =
        shares.iter().map(|s| (total as f64 * s / share_sum).round() as usize).collect();
    let assigned: usize = column_totals[..parts - 1].iter().sum();
    column_totals[parts - 1] = total.saturating_sub(assigned);
    // Start from the floors; every class then owes `row_need` ups, every part wants `column_need`.
    let quota = |c: usize, p: usize| counts[c] as f64 * shares[p] / share_sum;
    let mut cells: Vec<Vec<usize>> =
        (0..counts.len()).map(|c| (0..parts).map(|p| quota(c, p).floor() as usize).collect()).collect();
    let mut column_need: Vec<i64> =
        (0..parts).map(|p| column_totals[p] as i64 - cells.iter().map(|row| row[p] as i64).sum::<i64>()).collect();
    // Rows with the most ups first; each row puts its ups where the columns need most
    // (ties: the larger fractional part). This is Ryser's construction of a 0-1 matrix.
    let mut rows: Vec<usize> = (0..counts.len()).collect();
    let row_need = |c: usize, cells: &Vec<Vec<usize>>| counts[c] - cells[c].iter().sum::<usize>();
    rows.sort_by_key(|&c| std::cmp::Reverse(row_need(c, &cells)));
    for c in rows {
        let need = row_need(c, &cells);
        let mut order: Vec<usize> = (0..parts).collect();
        order.sort_by(|&a, &b| {
            column_need[b].cmp(&column_need[a]).then(quota(c, b).fract().partial_cmp(&quota(c, a).fract()).unwrap())
        });
        for &p in order.iter().take(need) {
            cells[c][p] += 1;
            column_need[p] -= 1;
        }
    }
    cells
}

/// Pools every split and divides the images by `percent` (train, val, test), stratified by class.
/// A part of 0% is left out.
pub fn split_percent(dataset: &mut Dataset, percent: [u32; 3], seed: u64) -> Result<()> {
    let image_len = dataset.image_len();
    let mut pool = Split::default();
    for split in dataset.splits.values() {
        pool.extend(split);
    }
    if pool.is_empty() {
        return Err(DataError::Invalid("there are no images to split".into()));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut by_class = indices_by_class(&pool, dataset.classes.len());
    let counts: Vec<usize> = by_class.iter().map(Vec::len).collect();
    let shares: Vec<f64> = percent.iter().map(|&p| p as f64).collect();
    let cells = apportion(&counts, &shares);
    let mut parts: [Vec<usize>; 3] = Default::default();
    for (c, indices) in by_class.iter_mut().enumerate() {
        indices.shuffle(&mut rng);
        let mut start = 0;
        for (p, part) in parts.iter_mut().enumerate() {
            part.extend_from_slice(&indices[start..start + cells[c][p]]);
            start += cells[c][p];
        }
    }
    dataset.splits.clear();
    for (kind, mut indices) in SplitKind::ALL.into_iter().zip(parts) {
        if percent[kind as usize] == 0 {
            continue;
        }
        indices.shuffle(&mut rng);
        dataset.splits.insert(kind, pool.select(&indices, image_len));
    }
    Ok(())
}

/// Keeps the test split and carves `percent` of train, stratified, into a validation split.
pub fn split_validation(dataset: &mut Dataset, percent: u32, seed: u64) -> Result<()> {
    let image_len = dataset.image_len();
    let mut train = dataset.splits.remove(&SplitKind::Train).unwrap_or_default();
    if let Some(val) = dataset.splits.remove(&SplitKind::Val) {
        train.extend(&val);
    }
    if train.is_empty() {
        return Err(DataError::Invalid("there is no train split to carve a validation split from".into()));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut by_class = indices_by_class(&train, dataset.classes.len());
    let counts: Vec<usize> = by_class.iter().map(Vec::len).collect();
    let cells = apportion(&counts, &[(100 - percent) as f64, percent as f64]);
    let (mut keep, mut val) = (Vec::new(), Vec::new());
    for (c, indices) in by_class.iter_mut().enumerate() {
        indices.shuffle(&mut rng);
        keep.extend_from_slice(&indices[..cells[c][0]]);
        val.extend_from_slice(&indices[cells[c][0]..]);
    }
    keep.shuffle(&mut rng);
    val.shuffle(&mut rng);
    dataset.splits.insert(SplitKind::Train, train.select(&keep, image_len));
    dataset.splits.insert(SplitKind::Val, train.select(&val, image_len));
    Ok(())
}

/// Keeps only the images whose class is in `classes`, in every split.
pub fn filter_classes(dataset: &mut Dataset, classes: &[u32]) -> Result<()> {
    if let Some(bad) = classes.iter().find(|&&c| c as usize >= dataset.classes.len()) {
        return Err(DataError::Invalid(format!(
            "class {bad} does not exist: this dataset has classes 0-{}",
            dataset.classes.len() - 1
        )));
    }
    let image_len = dataset.image_len();
    for split in dataset.splits.values_mut() {
        let keep: Vec<usize> = (0..split.len()).filter(|&i| classes.contains(&(split.labels[i] as u32))).collect();
        *split = split.select(&keep, image_len);
    }
    Ok(())
}

/// Keeps `per_class` random images of each class present in the train split.
pub fn subset_per_class(dataset: &mut Dataset, per_class: usize, seed: u64) -> Result<()> {
    let image_len = dataset.image_len();
    let classes = dataset.classes.clone();
    let train = dataset
        .splits
        .get_mut(&SplitKind::Train)
        .ok_or_else(|| DataError::Invalid("subset needs a train split".into()))?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut keep = Vec::new();
    for (c, mut indices) in indices_by_class(train, classes.len()).into_iter().enumerate() {
        if indices.is_empty() {
            continue;
        }
        if indices.len() < per_class {
            return Err(DataError::Invalid(format!(
                "class {} has only {} train images, fewer than {per_class}",
                classes[c],
                indices.len()
            )));
        }
        indices.shuffle(&mut rng);
        keep.extend_from_slice(&indices[..per_class]);
    }
    keep.shuffle(&mut rng);
    *train = train.select(&keep, image_len);
    Ok(())
}

/// For each pair of splits, how many images of the later split are byte-identical to an image
/// of the earlier one.
pub fn cross_split_duplicates(dataset: &Dataset) -> Vec<(SplitKind, SplitKind, usize)> {
    let image_len = dataset.image_len();
    let hash = |img: &[u8]| {
        let mut h = DefaultHasher::new();
        img.hash(&mut h);
        h.finish()
    };
    let kinds: Vec<SplitKind> = dataset.splits.keys().copied().collect();
    let mut out = Vec::new();
    for (a_pos, &a) in kinds.iter().enumerate() {
        let split_a = &dataset.splits[&a];
        let mut index: HashMap<u64, Vec<usize>> = HashMap::with_capacity(split_a.len());
        for i in 0..split_a.len() {
            index.entry(hash(split_a.image(i, image_len))).or_default().push(i);
        }
        for &b in &kinds[a_pos + 1..] {
            let split_b = &dataset.splits[&b];
            let count = (0..split_b.len())
                .filter(|&j| {
                    let img = split_b.image(j, image_len);
                    index.get(&hash(img)).is_some_and(|c| c.iter().any(|&i| split_a.image(i, image_len) == img))
                })
                .count();
            out.push((a, b, count));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apportion_keeps_totals_and_cells_within_one() {
        let counts = [6903, 7877, 6990, 7141, 6824, 6313, 6876, 7293, 6825, 6958];
        let cells = apportion(&counts, &[70.0, 15.0, 15.0]);
        let total: usize = counts.iter().sum();
        for (p, share) in [0.70, 0.15, 0.15].iter().enumerate() {
            let col: usize = cells.iter().map(|r| r[p]).sum();
            assert_eq!(col as f64, (total as f64 * share).round());
            for (c, row) in cells.iter().enumerate() {
                assert!((row[p] as f64 - counts[c] as f64 * share).abs() <= 1.0, "class {c} part {p}");
            }
        }
        for (c, row) in cells.iter().enumerate() {
            assert_eq!(row.iter().sum::<usize>(), counts[c]);
        }
    }

    fn toy(n_per_class: usize, classes: usize) -> Dataset {
        let mut d = Dataset::new("toy", (0..classes).map(|c| c.to_string()).collect(), 1, 2);
        let mut s = Split::default();
        for i in 0..n_per_class * classes {
            s.labels.push((i % classes) as u8);
            s.pixels.extend_from_slice(&[(i % 251) as u8, (i / 251) as u8]);
        }
        d.splits.insert(SplitKind::Train, s);
        d
    }

    #[test]
    fn split_is_seeded_and_disjoint() {
        let mut a = toy(100, 3);
        let mut b = toy(100, 3);
        split_percent(&mut a, [70, 15, 15], 7).unwrap();
        split_percent(&mut b, [70, 15, 15], 7).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.splits[&SplitKind::Train].len(), 210);
        assert_eq!(a.splits[&SplitKind::Val].len(), 45);
        assert_eq!(a.splits[&SplitKind::Test].len(), 45);
        assert!(cross_split_duplicates(&a).iter().all(|&(_, _, n)| n == 0));
        let mut c = toy(100, 3);
        split_percent(&mut c, [70, 15, 15], 8).unwrap();
        assert_ne!(a, c);
    }

    #[test]
    fn duplicates_across_splits_are_counted() {
        let mut d = toy(10, 2);
        let copy = d.splits[&SplitKind::Train].select(&[0, 1, 2], 2);
        d.splits.insert(SplitKind::Test, copy);
        let dups = cross_split_duplicates(&d);
        assert_eq!(dups, vec![(SplitKind::Train, SplitKind::Test, 3)]);
    }

    #[test]
    fn validation_filter_subset() {
        let mut d = toy(50, 4);
        split_validation(&mut d, 10, 1).unwrap();
        assert_eq!(d.splits[&SplitKind::Val].len(), 20);
        assert_eq!(d.splits[&SplitKind::Val].class_counts(4), vec![5, 5, 5, 5]);
        filter_classes(&mut d, &[1, 3]).unwrap();
        assert!(d.splits.values().all(|s| s.labels.iter().all(|&l| l == 1 || l == 3)));
        subset_per_class(&mut d, 7, 1).unwrap();
        assert_eq!(d.splits[&SplitKind::Train].class_counts(4), vec![0, 7, 0, 7]);
        let e = subset_per_class(&mut d, 8, 1).unwrap_err().to_string();
        assert!(e.contains("only 7"), "{e}");
        assert!(filter_classes(&mut d, &[9]).unwrap_err().to_string().contains("class 9"));
    }
}
