//! An ensemble's folder: each member as a model file (`member-K.safetensors`, as
//! [`save_model`](crate::model::files::checkpoint::save_model) writes it, its origin in the
//! metadata) and `ensemble.json`, the list of them in order. Written all or none.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::data::PixelScaling;
use crate::model::architecture::network::Network;
use crate::model::error::{ModelError, Result};
use crate::model::files::checkpoint::{load_model, model_bytes, ModelMeta};

/// The list beside the member files.
pub const LIST: &str = "ensemble.json";

/// The metadata entry holding a member's origin (its layers or file, as `compare` names it).
const ORIGIN: &str = "origin";

/// What `ensemble.json` holds: the member files in order.
#[derive(Serialize, Deserialize)]
struct Saved {
    /// File names, relative to the folder.
    members: Vec<String>,
}

/// One member to save: the network, its class names, pixel scaling and origin.
pub struct MemberRef<'a> {
    /// The network.
    pub net: &'a Network,
    /// The class each output stands for.
    pub classes: &'a [String],
    /// How pixels were scaled in training.
    pub scaling: PixelScaling,
    /// Where it came from.
    pub origin: &'a str,
}

/// Writes `members` into `dir` (made if missing) as described in the module's doc; returns the
/// folder written.
pub fn save_ensemble(dir: &Path, members: &[MemberRef<'_>]) -> Result<PathBuf> {
    let dir = crate::write::folder_target(dir, crate::write::Place::OutsideCache)?;
    let names: Vec<String> = (1..=members.len()).map(|k| format!("member-{k}.safetensors")).collect();
    let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::with_capacity(members.len() + 1);
    for (m, name) in members.iter().zip(&names) {
        let extra = BTreeMap::from([(ORIGIN.to_string(), m.origin.to_string())]);
        files.push((dir.join(name), model_bytes(m.net, m.classes, m.scaling, &extra)?));
    }
    let list = serde_json::to_vec_pretty(&Saved { members: names }).expect("plain data always serializes");
    files.push((dir.join(LIST), list));
    let borrowed: Vec<(PathBuf, &[u8])> = files.iter().map(|(p, b)| (p.clone(), b.as_slice())).collect();
    crate::write::write_files(&borrowed, crate::write::Place::OutsideCache)?;
    Ok(dir)
}

/// Reads the members [`save_ensemble`] wrote into `dir`, onto `device`: each network, its
/// metadata and origin, in order. A list naming no member, or a member outside the folder, is
/// refused.
pub fn load_ensemble(dir: &Path, device: &Device) -> Result<Vec<(Network, ModelMeta, String)>> {
    let list = dir.join(LIST);
    let bytes = crate::budget::read_file(&list)?;
    let saved: Saved = serde_json::from_slice(&bytes)
        .map_err(|e| ModelError::format(&list, format!("not a list written by `ensemble save`: {e}")))?;
    if saved.members.is_empty() {
        return Err(ModelError::format(&list, "the list names no member"));
    }
    let mut out = Vec::with_capacity(saved.members.len());
    for name in saved.members {
        if name.contains('/') || name.contains('\\') || name.starts_with('.') {
            return Err(ModelError::format(&list, format!("member `{name}` is not a file name in the folder")));
        }
        let (net, meta) = load_model(&dir.join(&name), device)?;
        let origin = meta.extra.get(ORIGIN).cloned().unwrap_or(name);
        out.push((net, meta, origin));
    }
    Ok(out)
}
