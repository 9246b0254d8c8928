//! Fetching from mirrors, against a tiny HTTP server on 127.0.0.1 serving synthetic IDX files.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mnistlab::data::checksum::{md5_hex, sha256_hex};
use mnistlab::data::fetch::{fetch_from_mirrors, GzCheck, Named, RemoteFile, Sources, IDX_NAMES};
use mnistlab::data::idx;
use mnistlab::data::DataError;

/// The most connections one server accepts; every test stays well under it.
const MAX_REQUESTS: usize = 16;

/// A loopback HTTP server: its base URL and how many requests it answered.
struct Server {
    base: String,
    hits: Arc<AtomicUsize>,
}

/// Serves `files` (URL path without the leading `/` → body) until `MAX_REQUESTS` connections.
fn serve(files: HashMap<String, Vec<u8>>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(MAX_REQUESTS) {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16384 {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&head);
            let path = head.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/');
            let (status, body): (&str, &[u8]) = match files.get(path) {
                Some(body) => ("200 OK", body),
                None => ("404 Not Found", b"not found"),
            };
            let header = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = stream.write_all(header.as_bytes()).and_then(|()| stream.write_all(body));
        }
    });
    Server { base, hits }
}

/// Four small IDX files under the official names: their raw bytes and gzip bytes.
fn synthetic() -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let shapes: [&[usize]; 4] = [&[6, 28, 28], &[6], &[3, 28, 28], &[3]];
    IDX_NAMES
        .iter()
        .zip(shapes)
        .enumerate()
        .map(|(k, (name, dims))| {
            let n: usize = dims.iter().product();
            let data: Vec<u8> = (0..n).map(|i| ((i * 13 + k) % if dims.len() == 1 { 10 } else { 256 }) as u8).collect();
            (name.to_string(), idx::encode(dims, &data), idx::encode_gz(dims, &data))
        })
        .collect()
}

/// The checksum table of the given files, as published by a mirror.
fn table(files: &[(String, Vec<u8>, Vec<u8>)]) -> Vec<RemoteFile> {
    files
        .iter()
        .enumerate()
        .map(|(k, (name, raw, gz))| RemoteFile {
            name: name.clone(),
            gz: if k % 2 == 0 { GzCheck::Md5(md5_hex(gz)) } else { GzCheck::Sha256(sha256_hex(gz)) },
            raw_sha256: sha256_hex(raw),
            raw_size: raw.len() as u64,
        })
        .collect()
}

fn served(files: &[(String, Vec<u8>, Vec<u8>)]) -> HashMap<String, Vec<u8>> {
    files.iter().map(|(name, _, gz)| (format!("{name}.gz"), gz.clone())).collect()
}

/// The entries of `dir` (none when it does not exist), sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

fn assert_cache_holds(dest: &Path, files: &[(String, Vec<u8>, Vec<u8>)]) {
    let mut expected: Vec<String> = files.iter().map(|f| f.0.clone()).collect();
    expected.sort();
    assert_eq!(entries(dest), expected, "the cache holds exactly the four raw files");
    for (name, raw, _) in files {
        let cached = std::fs::read(dest.join(name)).unwrap();
        assert_eq!(sha256_hex(&cached), sha256_hex(raw), "{name}");
        assert_eq!(&cached, raw, "{name} is stored uncompressed");
    }
}

#[test]
fn good_mirror_fills_the_cache() {
    let files = synthetic();
    let server = serve(served(&files));
    let cache = tempfile::tempdir().unwrap();
    let dest = cache.path().join("ds");
    let mut log = Vec::new();
    fetch_from_mirrors(std::slice::from_ref(&server.base), &table(&files), &dest, &mut |l| log.push(l.to_string()))
        .unwrap();
    assert_cache_holds(&dest, &files);
    assert_eq!(server.hits.load(Ordering::SeqCst), 4);
    assert_eq!(log.iter().filter(|l| l.contains("raw sha256 ok")).count(), 4, "{log:?}");
    assert!(log.iter().any(|l| l.contains("md5 ok")) && log.iter().any(|l| l.contains("sha256 ok,")), "{log:?}");
}

#[test]
fn corrupt_file_leaves_nothing_and_next_mirror_wins() {
    let files = synthetic();
    let good = serve(served(&files));
    // The first mirror serves the train images with one byte flipped in the middle of the gzip.
    let mut bad_files = served(&files);
    let gz = bad_files.get_mut("train-images-idx3-ubyte.gz").unwrap();
    let mid = gz.len() / 2;
    gz[mid] ^= 0x01;
    let bad = serve(bad_files);
    let cache = tempfile::tempdir().unwrap();
    let dest = cache.path().join("ds");

    // The corrupt mirror alone: a mismatch is reported and nothing is left in the cache.
    let mut log = Vec::new();
    let e =
        fetch_from_mirrors(std::slice::from_ref(&bad.base), &table(&files), &dest, &mut |l| log.push(l.to_string()))
            .unwrap_err();
    let DataError::Unavailable { attempts, .. } = &e else { panic!("{e}") };
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert!(attempts[0].contains("train-images-idx3-ubyte.gz: checksum mismatch: expected md5"), "{attempts:?}");
    assert!(entries(&dest).is_empty(), "cache after a mismatch: {:?}", entries(&dest));
    assert!(entries(cache.path()).iter().all(|n| n == "ds"), "{:?}", entries(cache.path()));

    // Corrupt first, good second: the good mirror gives every file.
    log.clear();
    let mirrors = [bad.base.clone(), good.base.clone()];
    fetch_from_mirrors(&mirrors, &table(&files), &dest, &mut |l| log.push(l.to_string())).unwrap();
    assert_cache_holds(&dest, &files);
    assert!(log.iter().any(|l| l.contains("checksum mismatch") && l.contains("trying the next mirror")), "{log:?}");
    // The bad mirror: the train images in the first run, all four files in the second.
    assert_eq!(bad.hits.load(Ordering::SeqCst), 1 + 4);
    assert_eq!(good.hits.load(Ordering::SeqCst), 1);
}

#[test]
fn raw_checksum_is_checked_even_when_the_gzip_sum_matches() {
    let files = synthetic();
    // A well-formed gzip whose published gzip sum matches, but whose content differs.
    let (name, raw, _) = &files[1];
    let mut other = idx::parse(Path::new(name), raw).unwrap();
    other.data[0] ^= 1;
    let other_gz = idx::encode_gz(&other.dims, &other.data);
    let mut table = table(&files);
    table[1].gz = GzCheck::Sha256(sha256_hex(&other_gz));
    let mut body = served(&files);
    body.insert(format!("{name}.gz"), other_gz);
    let server = serve(body);
    let cache = tempfile::tempdir().unwrap();
    let dest = cache.path().join("ds");
    let e = fetch_from_mirrors(std::slice::from_ref(&server.base), &table, &dest, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("train-labels-idx1-ubyte.gz (uncompressed): checksum mismatch: expected sha256"), "{e}");
    assert!(entries(&dest).is_empty());
}

#[test]
fn unreachable_mirrors_are_skipped() {
    let files = synthetic();
    let good = serve(served(&files));
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let closed_base = format!("http://127.0.0.1:{closed}/");
    let mirrors = [closed_base.clone(), "http://nonexistent.invalid/".to_string(), good.base.clone()];
    let cache = tempfile::tempdir().unwrap();
    let dest = cache.path().join("ds");
    let mut log = Vec::new();
    fetch_from_mirrors(&mirrors, &table(&files), &dest, &mut |l| log.push(l.to_string())).unwrap();
    assert_cache_holds(&dest, &files);
    // Each dead mirror is tried once, for the first file, then skipped.
    for dead in [closed_base.as_str(), "http://nonexistent.invalid/"] {
        let lines: Vec<_> = log.iter().filter(|l| l.contains(dead)).collect();
        assert_eq!(lines.len(), 1, "{dead}: {log:?}");
        assert!(lines[0].contains("skipping this mirror"), "{lines:?}");
    }
    assert_eq!(good.hits.load(Ordering::SeqCst), 4);
}

#[test]
fn sources_from_the_environment() {
    // The only test in this binary that reads or writes these variables.
    let cache = tempfile::tempdir().unwrap();
    std::env::set_var("MNISTLAB_DATA", cache.path());
    std::env::set_var("MNISTLAB_MIRRORS", "http://127.0.0.1:9/a, http://127.0.0.1:9/b/");
    std::env::set_var("MNISTLAB_NO_PIP", "1");
    let s = Sources::from_env(Named::Mnist);
    assert_eq!(s.dest, cache.path().join("mnist"));
    assert_eq!(s.mirrors, ["http://127.0.0.1:9/a/", "http://127.0.0.1:9/b/"]);
    assert!(!s.pip && s.system_dir.is_none());
    std::env::remove_var("MNISTLAB_MIRRORS");
    std::env::remove_var("MNISTLAB_NO_PIP");
    let s = Sources::from_env(Named::FashionMnist);
    assert_eq!(s.dest, cache.path().join("fashion-mnist"));
    assert_eq!(s.mirrors, Named::FashionMnist.mirrors());
    assert!(s.system_dir.is_some() && !s.pip);
    assert!(Sources::from_env(Named::Mnist).pip);
    std::env::remove_var("MNISTLAB_DATA");
}
