//! No write destroys what it replaces: every writer of the lab against every kind of target it
//! must not replace (a FIFO, a socket, a character device, a folder where a file is expected, a
//! file where a folder is expected), symbolic links (followed: the file they point to is
//! written, the link stays), the dataset cache (written by `fetch` alone), and a full disk or a
//! read-only folder (the previous file stays whole, no temporary file is left). Every special
//! file is made inside a temporary folder; the real `/dev` is never touched.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use mnistlab::session::Session;

mod common;
use common::{error, run};

/// A small model trained one epoch, with a history: what every writer needs.
const TRAINED: &str = "load mnist
normalize
split val 10 seed 2
subset 10 per class seed 2
model conv4 pool dense16
fit 1
";

/// A path's kind, device numbers, link target and (for a regular file) contents: equal before
/// and after means untouched.
#[derive(Debug, PartialEq)]
struct Snapshot {
    kind: &'static str,
    rdev: u64,
    inode: u64,
    link: Option<PathBuf>,
    contents: Option<Vec<u8>>,
    entries: Option<Vec<String>>,
}

fn snapshot(path: &Path) -> Snapshot {
    let meta = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let t = meta.file_type();
    let kind = if t.is_symlink() {
        "link"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_socket() {
        "socket"
    } else if t.is_char_device() {
        "char device"
    } else if t.is_dir() {
        "folder"
    } else {
        "file"
    };
    let mut entries = None;
    if t.is_dir() {
        let mut names: Vec<String> =
            fs::read_dir(path).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        entries = Some(names);
    }
    Snapshot {
        kind,
        rdev: meta.rdev(),
        inode: meta.ino(),
        link: t.is_symlink().then(|| fs::read_link(path).unwrap()),
        contents: t.is_file().then(|| fs::read(path).unwrap()),
        entries,
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The special targets that can be made here, each with the words its error must carry.
/// A character device needs root (`mknod`); without it, that case says why it did not run.
fn specials(dir: &Path) -> Vec<(PathBuf, &'static str, Option<UnixListener>)> {
    let mut made = Vec::new();
    let fifo = dir.join("fifo.bin");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    made.push((fifo, "is a FIFO", None));
    let socket = dir.join("socket.bin");
    let listener = UnixListener::bind(&socket).unwrap();
    made.push((socket, "is a socket", Some(listener)));
    if is_root() {
        // The numbers of /dev/null, made here: the real /dev is never touched.
        let device = dir.join("device.bin");
        assert!(Command::new("mknod").arg(&device).args(["c", "1", "3"]).status().unwrap().success());
        made.push((device, "is a character device", None));
    } else {
        eprintln!("the character-device cases did not run: mknod needs root");
    }
    made
}

fn trained() -> Session {
    let mut session = Session::new();
    run(&mut session, TRAINED);
    session
}

/// The file writers: each a statement writing one file at the quoted path.
const FILE_WRITERS: [&str; 3] = ["save model", "save history", "export onnx"];

#[test]
fn file_writers_refuse_special_targets_and_leave_them_untouched() {
    let mut session = trained();
    let dir = tempfile::tempdir().unwrap();
    let mut targets = specials(dir.path());
    // A folder where a file is expected, holding a file that must stay.
    let folder = dir.path().join("folder.json");
    fs::create_dir(&folder).unwrap();
    fs::write(folder.join("keep.txt"), b"keep").unwrap();
    targets.push((folder, "is a folder", None));
    for (target, words, _listener) in &targets {
        // save history needs a .csv or .json name: link a fitting name to the special.
        let history_name = dir.path().join(format!("{}.json", target.file_name().unwrap().to_string_lossy()));
        let _ = fs::remove_file(&history_name);
        std::os::unix::fs::symlink(target, &history_name).unwrap();
        for writer in FILE_WRITERS {
            let path = if writer.starts_with("save history") { &history_name } else { target };
            let before = snapshot(target);
            let statement = format!("{writer} \"{}\"", path.display());
            let e = error(&mut session, &statement);
            assert!(e.contains(words) && e.contains(&target.display().to_string()), "{statement}: {e}");
            assert_eq!(snapshot(target), before, "{statement} changed {}", target.display());
        }
    }
    // No temporary file anywhere, and the session goes on.
    let names: Vec<String> =
        fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.starts_with(".tmp")), "{names:?}");
    run(&mut session, "evaluate val");
}

#[test]
fn folder_writers_refuse_files_and_specials_before_computing_anything() {
    let mut session = trained();
    let dir = tempfile::tempdir().unwrap();
    let mut targets = specials(dir.path());
    let file = dir.path().join("plain-file");
    fs::write(&file, b"precious").unwrap();
    targets.push((file, "is a regular file", None));
    for (target, words, _listener) in &targets {
        for statement in [
            format!("save \"{}\"", target.display()),
            format!("save \"{}\" as npz", target.display()),
            format!("save \"{}\" as csv", target.display()),
            format!("save \"{}\" as png", target.display()),
            format!("fit 1 checkpoint \"{}\"", target.display()),
            format!("log tensorboard \"{}\"", target.display()),
            // A folder on the way that is not a folder.
            format!("save model \"{}/model.safetensors\"", target.display()),
            format!("fit 1 checkpoint \"{}/runs\"", target.display()),
        ] {
            let before = snapshot(target);
            let mut events = Vec::new();
            let e = session.run_source(&statement, None, &mut |e| events.push(e)).unwrap_err().to_string();
            assert!(e.contains(words) && e.contains("not a folder"), "{statement}: {e}");
            assert_eq!(snapshot(target), before, "{statement}");
            // Refused before anything ran: no epoch, no progress.
            assert!(events.is_empty(), "{statement} ran before refusing: {events:?}");
        }
    }
    run(&mut session, "log off");
}

#[test]
fn a_checkpoint_file_that_is_special_is_refused_before_the_first_epoch() {
    let mut session = trained();
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    fs::create_dir(&runs).unwrap();
    for name in ["last.safetensors", "best.safetensors"] {
        let special = runs.join(name);
        assert!(Command::new("mkfifo").arg(&special).status().unwrap().success());
        let before = snapshot(&special);
        let mut events = Vec::new();
        let e = session
            .run_source(&format!("fit 1 checkpoint \"{}\"", runs.display()), None, &mut |e| events.push(e))
            .unwrap_err()
            .to_string();
        assert!(e.contains("FIFO") && e.contains(name), "{e}");
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(snapshot(&special), before);
        fs::remove_file(&special).unwrap();
    }
}

#[test]
fn links_are_followed_and_stay_links() {
    let mut session = trained();
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    // A link to an existing file: the file is replaced, the link stays.
    for (writer, name) in [("save model", "m.safetensors"), ("export onnx", "m.onnx"), ("save history", "h.json")] {
        let real = elsewhere.join(name);
        fs::write(&real, b"old").unwrap();
        let link = dir.path().join(format!("link-{name}"));
        std::os::unix::fs::symlink(&real, &link).unwrap();
        run(&mut session, &format!("{writer} \"{}\"", link.display()));
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "{writer}: the link stays");
        assert_eq!(fs::read_link(&link).unwrap(), real);
        let written = fs::read(&real).unwrap();
        assert!(written.len() > 3 && written != b"old", "{writer}: the pointed-to file is written");
    }
    run(&mut session, &format!("load model \"{}\"", dir.path().join("link-m.safetensors").display()));
    // A link to a file not there yet (relative, through two links): the file is made.
    std::os::unix::fs::symlink("elsewhere/new.safetensors", dir.path().join("hop1")).unwrap();
    std::os::unix::fs::symlink("hop1", dir.path().join("hop2")).unwrap();
    run(&mut session, &format!("save model \"{}\"", dir.path().join("hop2").display()));
    assert!(elsewhere.join("new.safetensors").is_file());
    assert!(fs::symlink_metadata(dir.path().join("hop2")).unwrap().file_type().is_symlink());
    // A link to a folder: `save DIR` saves into the folder, the link stays.
    let data = dir.path().join("data-real");
    let data_link = dir.path().join("data-link");
    std::os::unix::fs::symlink(&data, &data_link).unwrap();
    run(&mut session, &format!("save \"{}\"", data_link.display()));
    assert!(fs::symlink_metadata(&data_link).unwrap().file_type().is_symlink());
    assert!(data.join("manifest.json").is_file());
    run(&mut session, &format!("save \"{}\" as npz", data_link.display()));
    assert!(fs::symlink_metadata(&data_link).unwrap().file_type().is_symlink());
    // A link loop is named as one.
    std::os::unix::fs::symlink("loop-b", dir.path().join("loop-a")).unwrap();
    std::os::unix::fs::symlink("loop-a", dir.path().join("loop-b")).unwrap();
    let e = error(&mut session, &format!("save model \"{}\"", dir.path().join("loop-a").display()));
    assert!(e.contains("too many levels of symbolic links"), "{e}");
}

#[test]
fn the_data_cache_is_written_by_fetch_alone() {
    let mut session = trained();
    let cache = mnistlab::write::cache_dir();
    let inside = cache.join("mnist").join("written-by-a-test");
    assert!(!inside.exists(), "{} exists before the test", inside.display());
    let before = snapshot(&cache.join("mnist"));
    for statement in [
        format!("save model \"{}.safetensors\"", inside.display()),
        format!("export onnx \"{}.onnx\"", inside.display()),
        format!("save history \"{}.csv\"", inside.display()),
        format!("save \"{}\"", inside.display()),
        format!("fit 1 checkpoint \"{}\"", inside.display()),
        format!("log tensorboard \"{}\"", inside.display()),
        // The cache folder itself, and through `..`.
        format!("save \"{}\"", cache.display()),
        format!("save model \"{}/../mnist/x.safetensors\"", cache.join("mnist").display()),
    ] {
        let e = error(&mut session, &statement);
        assert!(e.contains("inside the dataset cache") && e.contains("only `fetch` writes"), "{statement}: {e}");
    }
    // A link outside the cache pointing into it is refused as well.
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("into-cache.safetensors");
    std::os::unix::fs::symlink(format!("{}.safetensors", inside.display()), &link).unwrap();
    let e = error(&mut session, &format!("save model \"{}\"", link.display()));
    assert!(e.contains("inside the dataset cache"), "{e}");
    assert_eq!(snapshot(&cache.join("mnist")), before, "the cache is unchanged");
}

/// A tmpfs mounted for one test, unmounted when dropped (root only).
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, size: &str) -> Option<Mount> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Mount(at.to_path_buf()))
    }

    fn read_only(&self) {
        let status = Command::new("mount").args(["-o", "remount,ro"]).arg(&self.0).status().unwrap();
        assert!(status.success());
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn no_temporary_files(dir: &Path) {
    let names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.starts_with(".tmp")), "temporary files left: {names:?}");
}

#[test]
fn a_full_disk_leaves_the_previous_files_whole() {
    let dir = tempfile::tempdir().unwrap();
    let Some(_mount) = (if is_root() { Mount::tmpfs(dir.path(), "1m") } else { None }) else {
        eprintln!("the full-disk case did not run: mounting a small tmpfs needs root");
        return;
    };
    let mut session = trained();
    let model = dir.path().join("m.safetensors");
    let onnx = dir.path().join("m.onnx");
    run(&mut session, &format!("save model \"{}\"\nexport onnx \"{}\"", model.display(), onnx.display()));
    let (model_before, onnx_before) = (fs::read(&model).unwrap(), fs::read(&onnx).unwrap());
    // Fill the disk.
    let filler = dir.path().join("filler");
    let _ = fs::write(&filler, vec![0u8; 4 << 20]);
    run(&mut session, "fit 1");
    for statement in [format!("save model \"{}\"", model.display()), format!("export onnx \"{}\"", onnx.display())] {
        let e = error(&mut session, &statement);
        assert!(e.contains("No space left on device") && e.contains("unchanged"), "{statement}: {e}");
    }
    assert_eq!(fs::read(&model).unwrap(), model_before);
    assert_eq!(fs::read(&onnx).unwrap(), onnx_before);
    let e = error(&mut session, &format!("save \"{}\"", dir.path().join("data").display()));
    assert!(e.contains("No space left on device"), "{e}");
    no_temporary_files(dir.path());
}

#[test]
fn a_read_only_folder_leaves_the_previous_files_whole() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("ro");
    fs::create_dir(&folder).unwrap();
    let mount = if is_root() { Mount::tmpfs(&folder, "16m") } else { None };
    if is_root() && mount.is_none() {
        eprintln!("the read-only case did not run: root cannot mount a tmpfs here, and permissions do not bind root");
        return;
    }
    let mut session = trained();
    let model = folder.join("m.safetensors");
    run(&mut session, &format!("save model \"{}\"", model.display()));
    let before = fs::read(&model).unwrap();
    match &mount {
        Some(m) => m.read_only(),
        None => fs::set_permissions(&folder, std::os::unix::fs::PermissionsExt::from_mode(0o555)).unwrap(),
    }
    let e = error(&mut session, &format!("save model \"{}\"", model.display()));
    assert!(e.contains(&model.display().to_string()) && e.contains("unchanged"), "{e}");
    let e = error(&mut session, &format!("save \"{}\"", folder.join("data").display()));
    assert!(e.contains("Read-only file system") || e.contains("Permission denied"), "{e}");
    assert_eq!(fs::read(&model).unwrap(), before);
    no_temporary_files(&folder);
}

/// Runs the binary on `script` in `dir` with `args` before `run`; its exit status and stderr.
fn script(dir: &Path, args: &[&str], script: &str) -> (bool, String) {
    let path = dir.join("script.lab");
    fs::write(&path, script).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mnistlab"))
        .args(args)
        .arg("run")
        .arg(&path)
        .current_dir(dir)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_script_exits_non_zero_and_pictures_never_replace_specials() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("model.onnx");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let before = snapshot(&fifo);
    let (ok, stderr) =
        script(dir.path(), &[], &format!("{TRAINED}export onnx \"model.onnx\"\nprint \"not reached\"\n"));
    assert!(!ok && stderr.contains("FIFO"), "{stderr}");
    assert_eq!(snapshot(&fifo), before);

    // Pictures: an output folder that is a FIFO is refused and the script fails; a picture
    // name already taken by a special file is never written over.
    let out_fifo = dir.path().join("out-fifo");
    assert!(Command::new("mkfifo").arg(&out_fifo).status().unwrap().success());
    let (ok, stderr) = script(dir.path(), &["--out", "out-fifo"], "load mnist\nshow samples 4\n");
    assert!(!ok && stderr.contains("cannot write image") && stderr.contains("FIFO"), "{stderr}");
    assert!(fs::symlink_metadata(&out_fifo).unwrap().file_type().is_fifo());
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    assert!(Command::new("mkfifo").arg(out.join("samples-1.png")).status().unwrap().success());
    let (ok, stderr) = script(dir.path(), &["--out", "out"], "load mnist\nshow samples 4\n");
    assert!(ok, "{stderr}");
    assert!(fs::symlink_metadata(out.join("samples-1.png")).unwrap().file_type().is_fifo());
    assert!(out.join("samples-2.png").is_file());
}

#[test]
fn kernel_install_refuses_special_files_in_the_kernelspec() {
    let prefix = tempfile::tempdir().unwrap();
    let spec = prefix.path().join("share/jupyter/kernels/mnistlab");
    fs::create_dir_all(&spec).unwrap();
    let fifo = spec.join("kernel.json");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let out = Command::new(env!("CARGO_BIN_EXE_mnistlab"))
        .args(["kernel", "install", "--prefix"])
        .arg(prefix.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("FIFO"), "{stderr}");
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    // All or none: the logos were not written either.
    assert!(!spec.join("logo-32x32.png").exists());
}
