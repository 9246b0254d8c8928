//! Installs the kernelspec (the repo's `kernel/` folder, embedded in the binary) into a
//! Jupyter data folder, with `argv[0]` set to this executable's absolute path.

use std::path::{Path, PathBuf};

use serde_json::Value;

const KERNEL_JSON: &str = include_str!("../../../kernel/kernel.json");
const LOGO_32: &[u8] = include_bytes!("../../../kernel/logo-32x32.png");
const LOGO_64: &[u8] = include_bytes!("../../../kernel/logo-64x64.png");

/// Why the kernelspec cannot be installed or removed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// `--sys-prefix` without an active virtual environment.
    #[error(
        "--sys-prefix needs an active virtual environment (VIRTUAL_ENV or CONDA_PREFIX is not set); use --prefix PATH"
    )]
    NoEnvironment,
    /// The user's home folder is unknown.
    #[error("cannot find the home folder for the user's Jupyter data folder")]
    NoHome,
    /// The kernelspec's folder or files were refused or could not be written.
    #[error("cannot install the kernelspec: {0}")]
    Write(#[from] crate::write::WriteError),
    /// There is no kernelspec to remove in this folder.
    #[error("no mnistlab kernel is installed at {}", .0.display())]
    NotInstalled(PathBuf),
    /// The kernelspec's folder cannot be removed.
    #[error("cannot remove {}: {source}", .path.display())]
    Remove {
        /// The folder.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
}

/// The kernel's name: its folder under `kernels/`.
pub const KERNEL_NAME: &str = "mnistlab";

/// Where to install, as `jupyter kernelspec install` names it.
#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    /// The user's Jupyter data folder (`~/.local/share/jupyter` on Linux).
    User,
    /// The active virtual environment (`$VIRTUAL_ENV` or `$CONDA_PREFIX`).
    SysPrefix,
    /// `PREFIX/share/jupyter`.
    Prefix(PathBuf),
}

/// The `kernels` folder of `location`.
pub fn kernels_dir(location: &Location) -> Result<PathBuf, InstallError> {
    let data = match location {
        Location::User => user_data_dir()?,
        Location::SysPrefix => {
            let prefix = std::env::var_os("VIRTUAL_ENV")
                .or_else(|| std::env::var_os("CONDA_PREFIX"))
                .filter(|p| !p.is_empty())
                .ok_or(InstallError::NoEnvironment)?;
            PathBuf::from(prefix).join("share").join("jupyter")
        }
        Location::Prefix(prefix) => prefix.join("share").join("jupyter"),
    };
    Ok(data.join("kernels"))
}

/// Jupyter's user data folder: `$JUPYTER_DATA_DIR`, else the platform's default.
fn user_data_dir() -> Result<PathBuf, InstallError> {
    if let Some(dir) = std::env::var_os("JUPYTER_DATA_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    if cfg!(target_os = "macos") {
        Ok(dirs::home_dir().ok_or(InstallError::NoHome)?.join("Library").join("Jupyter"))
    } else {
        // XDG_DATA_HOME or ~/.local/share on Linux, %APPDATA% on Windows.
        Ok(dirs::data_dir().ok_or(InstallError::NoHome)?.join("jupyter"))
    }
}

/// The kernel.json text for an executable at `exe`.
pub fn kernel_json(exe: &Path) -> String {
    let mut spec: Value = serde_json::from_str(KERNEL_JSON).expect("kernel/kernel.json is valid JSON");
    spec["argv"][0] = Value::String(exe.display().to_string());
    serde_json::to_string_pretty(&spec).expect("JSON values serialize") + "\n"
}

/// Writes the kernelspec for `exe` under `location`; returns its folder.
pub fn install(location: &Location, exe: &Path) -> Result<PathBuf, InstallError> {
    let dir = kernels_dir(location)?.join(KERNEL_NAME);
    let files = [
        ("kernel.json", kernel_json(exe).into_bytes()),
        ("logo-32x32.png", LOGO_32.to_vec()),
        ("logo-64x64.png", LOGO_64.to_vec()),
    ];
    let files: Vec<(PathBuf, &[u8])> = files.iter().map(|(name, bytes)| (dir.join(name), bytes.as_slice())).collect();
    crate::write::write_files(&files, crate::write::Place::OutsideCache)?;
    Ok(dir)
}

/// Removes the kernelspec from `location`; returns the folder removed.
pub fn uninstall(location: &Location) -> Result<PathBuf, InstallError> {
    let dir = kernels_dir(location)?.join(KERNEL_NAME);
    if !dir.join("kernel.json").is_file() {
        return Err(InstallError::NotInstalled(dir));
    }
    std::fs::remove_dir_all(&dir).map_err(|source| InstallError::Remove { path: dir.clone(), source })?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_and_uninstalls_under_a_prefix() {
        let prefix = tempfile::tempdir().unwrap();
        let location = Location::Prefix(prefix.path().to_path_buf());
        let dir = install(&location, Path::new("/opt/bin/mnistlab")).unwrap();
        assert_eq!(dir, prefix.path().join("share/jupyter/kernels/mnistlab"));
        let spec: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("kernel.json")).unwrap()).unwrap();
        assert_eq!(
            spec["argv"],
            serde_json::json!(["/opt/bin/mnistlab", "kernel", "--connection-file", "{connection_file}"])
        );
        assert_eq!(spec["language"], "mnistlab");
        assert_eq!(spec["interrupt_mode"], "message");
        assert_eq!(std::fs::read(dir.join("logo-64x64.png")).unwrap(), LOGO_64);
        uninstall(&location).unwrap();
        assert!(!dir.exists());
        let err = uninstall(&location).unwrap_err();
        assert!(matches!(&err, InstallError::NotInstalled(d) if *d == dir), "{err:?}");
        assert!(err.to_string().contains("no mnistlab kernel is installed"), "{err}");
    }

    #[test]
    fn logos_are_pngs_of_their_size() {
        for (bytes, size) in [(LOGO_32, 32), (LOGO_64, 64)] {
            let decoder = png::Decoder::new(bytes);
            let reader = decoder.read_info().unwrap();
            assert_eq!((reader.info().width, reader.info().height), (size, size));
        }
    }
}
