//! The Jupyter wire format: the connection file, HMAC-SHA256 signing, and messages as
//! multipart frames (`identities… <IDS|MSG> signature header parent metadata content buffers…`).

use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Sha256;

/// The protocol version the kernel speaks.
pub const PROTOCOL_VERSION: &str = "5.3";
const DELIMITER: &[u8] = b"<IDS|MSG>";

/// What a connection file holds: where to bind each socket and the signing key.
#[derive(Debug, Clone, Deserialize)]
pub struct ConnectionInfo {
    /// `tcp` or `ipc`.
    #[serde(default = "default_transport")]
    pub transport: String,
    /// The address to bind (for `ipc`, a path prefix).
    pub ip: String,
    /// Shell socket port.
    pub shell_port: u16,
    /// IOPub socket port.
    pub iopub_port: u16,
    /// Stdin socket port.
    pub stdin_port: u16,
    /// Control socket port.
    pub control_port: u16,
    /// Heartbeat socket port.
    pub hb_port: u16,
    /// The HMAC key; empty disables signing.
    #[serde(default)]
    pub key: String,
    /// Only `hmac-sha256` is supported.
    #[serde(default = "default_scheme")]
    pub signature_scheme: String,
}

fn default_transport() -> String {
    "tcp".into()
}

fn default_scheme() -> String {
    "hmac-sha256".into()
}

/// Why a connection file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The file cannot be read.
    #[error("{}: {source}", .path.display())]
    Read {
        /// The connection file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The file is not a connection file's JSON.
    #[error("{}: not a Jupyter connection file: {source}", .path.display())]
    Json {
        /// The connection file.
        path: PathBuf,
        /// The failure.
        source: serde_json::Error,
    },
    /// A signature scheme other than `hmac-sha256`.
    #[error("{}: signature scheme `{scheme}` is not supported (only hmac-sha256)", .path.display())]
    Scheme {
        /// The connection file.
        path: PathBuf,
        /// The scheme it names.
        scheme: String,
    },
    /// A transport other than `tcp` and `ipc`.
    #[error("{}: transport `{transport}` is not supported (tcp or ipc)", .path.display())]
    Transport {
        /// The connection file.
        path: PathBuf,
        /// The transport it names.
        transport: String,
    },
}

impl ConnectionInfo {
    /// Reads and checks a connection file.
    pub fn read(path: &Path) -> Result<ConnectionInfo, ConnectionError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConnectionError::Read { path: path.to_path_buf(), source })?;
        let info: ConnectionInfo =
            serde_json::from_str(&text).map_err(|source| ConnectionError::Json { path: path.to_path_buf(), source })?;
        if info.signature_scheme != "hmac-sha256" {
            return Err(ConnectionError::Scheme { path: path.to_path_buf(), scheme: info.signature_scheme });
        }
        if info.transport != "tcp" && info.transport != "ipc" {
            return Err(ConnectionError::Transport { path: path.to_path_buf(), transport: info.transport });
        }
        Ok(info)
    }

    /// The ZeroMQ endpoint of one port.
    pub fn endpoint(&self, port: u16) -> String {
        if self.transport == "ipc" {
            format!("ipc://{}-{port}", self.ip)
        } else {
            let ip = if self.ip == "*" { "0.0.0.0" } else { &self.ip };
            format!("tcp://{ip}:{port}")
        }
    }
}

/// Signs and verifies messages with the connection key.
#[derive(Clone)]
pub struct Signer {
    key: Option<Hmac<Sha256>>,
}

impl Signer {
    /// A signer for `key`; an empty key signs nothing and accepts everything (as Jupyter does).
    pub fn new(key: &str) -> Signer {
        let key =
            (!key.is_empty()).then(|| Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key"));
        Signer { key }
    }

    fn mac(&self, parts: &[&[u8]]) -> Option<Hmac<Sha256>> {
        let mut mac = self.key.clone()?;
        for part in parts {
            mac.update(part);
        }
        Some(mac)
    }

    /// The hex signature of the four JSON parts (empty when there is no key).
    pub fn sign(&self, parts: &[&[u8]]) -> String {
        self.mac(parts).map(|m| hex::encode(m.finalize().into_bytes())).unwrap_or_default()
    }

    /// Whether `signature` (hex) is right for the parts, compared in constant time.
    pub fn verify(&self, signature: &[u8], parts: &[&[u8]]) -> bool {
        match self.mac(parts) {
            None => true,
            Some(mac) => hex::decode(signature).is_ok_and(|sig| mac.verify_slice(&sig).is_ok()),
        }
    }
}

/// Why incoming frames are not a message the kernel accepts.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WireError {
    /// No `<IDS|MSG>` delimiter, or fewer than five frames after it.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The HMAC does not match.
    #[error("wrong HMAC signature")]
    BadSignature,
    /// A part is not JSON.
    #[error("invalid JSON in a message: {0}")]
    Json(String),
}

/// One Jupyter message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Routing prefix (ROUTER identities; the topic on iopub).
    pub identities: Vec<Vec<u8>>,
    /// `msg_id`, `session`, `username`, `date`, `msg_type`, `version`.
    pub header: Value,
    /// The header of the request this answers, or `{}`.
    pub parent_header: Value,
    /// Free-form metadata.
    pub metadata: Value,
    /// The message's content.
    pub content: Value,
    /// Extra binary buffers.
    pub buffers: Vec<Vec<u8>>,
}

impl Message {
    /// Parses and verifies received frames.
    pub fn parse(frames: &[Vec<u8>], signer: &Signer) -> Result<Message, WireError> {
        let at = frames
            .iter()
            .position(|f| f == DELIMITER)
            .ok_or_else(|| WireError::Malformed("no <IDS|MSG> delimiter".into()))?;
        let rest = &frames[at + 1..];
        if rest.len() < 5 {
            return Err(WireError::Malformed(format!("{} frames after the delimiter, 5 needed", rest.len())));
        }
        let parts: Vec<&[u8]> = rest[1..5].iter().map(Vec::as_slice).collect();
        if !signer.verify(&rest[0], &parts) {
            return Err(WireError::BadSignature);
        }
        let json = |bytes: &[u8], what: &str| {
            serde_json::from_slice::<Value>(bytes).map_err(|e| WireError::Json(format!("{what}: {e}")))
        };
        Ok(Message {
            identities: frames[..at].to_vec(),
            header: json(parts[0], "header")?,
            parent_header: json(parts[1], "parent_header")?,
            metadata: json(parts[2], "metadata")?,
            content: json(parts[3], "content")?,
            buffers: rest[5..].to_vec(),
        })
    }

    /// The signed frames to send.
    pub fn to_frames(&self, signer: &Signer) -> Vec<Vec<u8>> {
        let parts: [Vec<u8>; 4] = [&self.header, &self.parent_header, &self.metadata, &self.content]
            .map(|v| serde_json::to_vec(v).expect("JSON values serialize"));
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let mut frames = self.identities.clone();
        frames.push(DELIMITER.to_vec());
        frames.push(signer.sign(&refs).into_bytes());
        frames.extend(parts);
        frames.extend(self.buffers.iter().cloned());
        frames
    }

    /// The message type from the header (empty when missing).
    pub fn msg_type(&self) -> &str {
        self.header["msg_type"].as_str().unwrap_or("")
    }

    /// A new message of `msg_type` answering (or caused by) `parent`, from kernel session `session`.
    /// It goes back to the parent's identities (shell, control); iopub callers replace them.
    pub fn child(parent: &Message, msg_type: &str, content: Value, session: &str) -> Message {
        Message {
            identities: parent.identities.clone(),
            header: header(msg_type, session),
            parent_header: parent.header.clone(),
            metadata: json!({}),
            content,
            buffers: Vec::new(),
        }
    }

    /// A message with no parent (the `starting` status).
    pub fn orphan(msg_type: &str, content: Value, session: &str) -> Message {
        Message {
            identities: Vec::new(),
            header: header(msg_type, session),
            parent_header: json!({}),
            metadata: json!({}),
            content,
            buffers: Vec::new(),
        }
    }
}

fn header(msg_type: &str, session: &str) -> Value {
    json!({
        "msg_id": uuid::Uuid::new_v4().to_string(),
        "session": session,
        "username": "mnistlab",
        "date": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "msg_type": msg_type,
        "version": PROTOCOL_VERSION,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Message {
        Message {
            identities: vec![b"peer".to_vec()],
            header: json!({"msg_id": "1", "msg_type": "kernel_info_request", "session": "s"}),
            parent_header: json!({}),
            metadata: json!({}),
            content: json!({}),
            buffers: Vec::new(),
        }
    }

    #[test]
    fn round_trip_with_signature() {
        let signer = Signer::new("secret");
        let frames = request().to_frames(&signer);
        assert_eq!(frames[1], DELIMITER);
        assert_eq!(frames[2].len(), 64, "hex of a SHA-256 HMAC");
        assert_eq!(Message::parse(&frames, &signer).unwrap(), request());
    }

    #[test]
    fn signature_matches_hmac_of_the_four_parts() {
        let signer = Signer::new("key");
        let frames = request().to_frames(&signer);
        let mut mac = Hmac::<Sha256>::new_from_slice(b"key").unwrap();
        for part in &frames[3..7] {
            mac.update(part);
        }
        assert_eq!(frames[2], hex::encode(mac.finalize().into_bytes()).into_bytes());
    }

    #[test]
    fn rejects_wrong_signature_and_tampering() {
        let frames = request().to_frames(&Signer::new("other key"));
        assert_eq!(Message::parse(&frames, &Signer::new("secret")), Err(WireError::BadSignature));
        let mut frames = request().to_frames(&Signer::new("secret"));
        frames[6] = br#"{"code": "evil"}"#.to_vec();
        assert_eq!(Message::parse(&frames, &Signer::new("secret")), Err(WireError::BadSignature));
        frames[2] = b"not hex".to_vec();
        assert_eq!(Message::parse(&frames, &Signer::new("secret")), Err(WireError::BadSignature));
    }

    #[test]
    fn empty_key_signs_nothing() {
        let signer = Signer::new("");
        let frames = request().to_frames(&signer);
        assert!(frames[2].is_empty());
        assert!(Message::parse(&frames, &signer).is_ok());
    }

    #[test]
    fn malformed_frames_are_errors() {
        let signer = Signer::new("k");
        assert!(matches!(Message::parse(&[b"x".to_vec()], &signer), Err(WireError::Malformed(_))));
        let short = vec![DELIMITER.to_vec(), b"sig".to_vec(), b"{}".to_vec()];
        assert!(matches!(Message::parse(&short, &signer), Err(WireError::Malformed(_))));
    }

    #[test]
    fn child_carries_parent_and_identities() {
        let reply = Message::child(&request(), "kernel_info_reply", json!({"status": "ok"}), "kernel-session");
        assert_eq!(reply.identities, vec![b"peer".to_vec()]);
        assert_eq!(reply.parent_header["msg_id"], "1");
        assert_eq!(reply.msg_type(), "kernel_info_reply");
        assert_eq!(reply.header["version"], PROTOCOL_VERSION);
        assert_eq!(reply.header["session"], "kernel-session");
        assert!(reply.header["date"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn connection_file_endpoints() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        std::fs::write(
            &path,
            r#"{"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5,
                "ip": "127.0.0.1", "key": "k", "transport": "tcp", "signature_scheme": "hmac-sha256"}"#,
        )
        .unwrap();
        let info = ConnectionInfo::read(&path).unwrap();
        assert_eq!(info.endpoint(info.hb_port), "tcp://127.0.0.1:5");
        std::fs::write(&path, r#"{"ip": "127.0.0.1"}"#).unwrap();
        let err = ConnectionInfo::read(&path).unwrap_err();
        assert!(matches!(err, ConnectionError::Json { .. }), "{err:?}");
        let err = err.to_string();
        assert!(err.contains("c.json") && err.contains("not a Jupyter connection file"), "{err}");
        std::fs::write(
            &path,
            r#"{"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4,
            "hb_port": 5, "ip": "127.0.0.1", "signature_scheme": "hmac-md5"}"#,
        )
        .unwrap();
        let err = ConnectionInfo::read(&path).unwrap_err();
        assert!(matches!(&err, ConnectionError::Scheme { scheme, .. } if scheme == "hmac-md5"), "{err:?}");
        assert!(err.to_string().contains("`hmac-md5` is not supported"), "{err}");
        let err = ConnectionInfo::read(&dir.path().join("missing.json")).unwrap_err();
        assert!(matches!(err, ConnectionError::Read { .. }), "{err:?}");
    }
}
