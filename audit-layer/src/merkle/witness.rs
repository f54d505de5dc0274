//! A witness (C2SP `tlog-witness`): it remembers the last checkpoint it cosigned for each
//! log it knows, and cosigns a new one only when a consistency proof shows that the new tree
//! holds that one, so a log cannot be rolled back or forked past it unseen.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::checkpoint::TreeHead;
use super::cosignature::cosign;
use super::note::{NoteError, NoteVerifier, open_note, split};
use super::{Hash, ProofError, verify_consistency};
use crate::file::CheckpointKey;

/// Why a witness refused a checkpoint. Each maps to the HTTP status `tlog-witness` gives it
/// ([`status`](Self::status)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WitnessError {
    /// The request is not `old <size>`, proof lines, a blank line and a note.
    #[error("not an add-checkpoint request: {0}")]
    Request(String),
    /// The checkpoint is of a log the witness does not know.
    #[error("unknown log {0:?}")]
    UnknownLog(String),
    /// The log's signature does not verify.
    #[error("the checkpoint's signature does not verify: {0}")]
    Signature(NoteError),
    /// The request's old size is not the size the witness holds: it answers with its own,
    /// for the log to prove consistency from there.
    #[error("the witness holds a checkpoint of size {held}, not {claimed}")]
    Conflict {
        /// The size the request claimed the witness holds.
        claimed: u64,
        /// The size it holds.
        held: u64,
    },
    /// The new tree does not hold the one the witness cosigned: a rollback or a fork.
    #[error("the checkpoint does not extend the one cosigned before: {0}")]
    Inconsistent(ProofError),
    /// The witness's state could not be read or saved.
    #[error("the witness's state: {0}")]
    Io(#[from] io::Error),
}

impl WitnessError {
    /// The HTTP status of the refusal, as `tlog-witness` specifies.
    pub fn status(&self) -> u16 {
        match self {
            Self::Request(_) => 400,
            Self::Signature(_) => 403,
            Self::UnknownLog(_) => 404,
            Self::Conflict { .. } => 409,
            Self::Inconsistent(_) => 422,
            Self::Io(_) => 500,
        }
    }
}

/// What the witness holds of one log: the last checkpoint it cosigned.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Held {
    origin: String,
    size: u64,
    /// In base64.
    root: String,
}

/// A witness of one or more logs (C2SP `tlog-witness`), keeping the last checkpoint it
/// cosigned for each in a directory of its own: it cosigns a new checkpoint only when a
/// consistency proof shows the new tree holds that one, so a log cannot be rolled back or
/// forked past it unseen. See [`add_checkpoint`](Self::add_checkpoint).
#[derive(Debug)]
pub struct Witness {
    name: String,
    key: CheckpointKey,
    logs: Vec<NoteVerifier>,
    state: PathBuf,
    /// One checkpoint at a time: the check and the saved state go together.
    lock: Mutex<()>,
}

impl Witness {
    /// A witness named `name` (its cosignatures carry it) that signs with `key` and keeps
    /// its state in `state_dir`.
    pub fn new(
        name: &str,
        key: CheckpointKey,
        state_dir: impl AsRef<Path>,
    ) -> Result<Self, NoteError> {
        // The name follows the key-name rules.
        NoteVerifier::witness(name, &key.public_key())?;
        Ok(Self {
            name: name.to_owned(),
            key,
            logs: Vec::new(),
            state: state_dir.as_ref().to_path_buf(),
            lock: Mutex::new(()),
        })
    }

    /// A log to witness: its verifier key (its name is the log's origin).
    pub fn log(mut self, log: NoteVerifier) -> Self {
        self.logs.push(log);
        self
    }

    /// The verifier of this witness's cosignatures, for [`cosignatures`](super::cosignatures).
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier::witness(&self.name, &self.key.public_key())
            .unwrap_or_else(|_| unreachable!("the name was checked when made"))
    }

    /// The size of the last checkpoint of `origin` it cosigned (0 for none).
    pub fn held_size(&self, origin: &str) -> Result<u64, WitnessError> {
        Ok(self.held(origin)?.map_or(0, |held| held.size))
    }

    /// Answers a `tlog-witness` add-checkpoint request body: `old <size>`, the consistency
    /// proof from that size a line per hash (base64), a blank line, and the signed
    /// checkpoint. Returns the cosignature line to add to the checkpoint.
    pub fn add_checkpoint(&self, request: &str, now: u64) -> Result<String, WitnessError> {
        let (head, note) = request
            .split_once("\n\n")
            .ok_or_else(|| WitnessError::Request("no blank line before the checkpoint".into()))?;
        let mut lines = head.split('\n');
        let old = lines
            .next()
            .and_then(|line| line.strip_prefix("old "))
            .and_then(|size| size.parse::<u64>().ok())
            .ok_or_else(|| WitnessError::Request("the first line is `old <size>`".into()))?;
        let proof = lines
            .map(|line| {
                BASE64
                    .decode(line)
                    .ok()
                    .and_then(|bytes| Hash::try_from(bytes).ok())
                    .ok_or_else(|| {
                        WitnessError::Request("a proof line is 32 bytes in base64".into())
                    })
            })
            .collect::<Result<Vec<Hash>, _>>()?;
        self.add(old, &proof, note, now)
    }

    /// Checks a signed checkpoint of a known log against the last one cosigned (`old` is
    /// the size the log believes the witness holds, `proof` the consistency proof from it),
    /// saves it as the new one, and returns the cosignature line. Refuses unknown logs, bad
    /// signatures, a wrong `old` (answered with the size held), and a new tree that does
    /// not hold the old one: a rollback, a truncation or a fork.
    pub fn add(
        &self,
        old: u64,
        proof: &[Hash],
        note: &str,
        now: u64,
    ) -> Result<String, WitnessError> {
        let (text, _) = split(note).map_err(WitnessError::Signature)?;
        let origin = text.split('\n').next().unwrap_or_default();
        let log = self
            .logs
            .iter()
            .find(|log| log.name() == origin)
            .ok_or_else(|| WitnessError::UnknownLog(origin.to_owned()))?;
        open_note(note, std::slice::from_ref(log)).map_err(WitnessError::Signature)?;
        let new = TreeHead::parse(text).map_err(WitnessError::Signature)?;
        let _one_at_a_time = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let held = self.held(origin)?;
        let held_size = held.as_ref().map_or(0, |held| held.size);
        if old != held_size {
            return Err(WitnessError::Conflict {
                claimed: old,
                held: held_size,
            });
        }
        if let Some(held) = &held {
            let root = BASE64
                .decode(&held.root)
                .ok()
                .and_then(|bytes| Hash::try_from(bytes).ok())
                .ok_or_else(|| io::Error::other("a held root is not 32 bytes in base64"))?;
            verify_consistency(held.size, new.size, &root, &new.root, proof)
                .map_err(WitnessError::Inconsistent)?;
        }
        self.save(&Held {
            origin: origin.to_owned(),
            size: new.size,
            root: BASE64.encode(new.root),
        })?;
        cosign(note, &self.name, &self.key, now).map_err(WitnessError::Signature)
    }

    /// The witness over HTTP, as `tlog-witness` specifies: `POST /add-checkpoint` with the
    /// body of [`add_checkpoint`](Self::add_checkpoint), answered `200` with the
    /// cosignature line, `409` with the size held (`text/x.tlog.size`), or the refusal's
    /// [status](WitnessError::status) and reason.
    #[cfg(feature = "axum")]
    pub fn router(self) -> axum::Router {
        axum::Router::new()
            .route("/add-checkpoint", axum::routing::post(add_checkpoint))
            .with_state(std::sync::Arc::new(self))
    }

    fn state_file(&self, origin: &str) -> PathBuf {
        let digest = Sha256::digest(origin.as_bytes());
        self.state
            .join(format!("{}.json", hex::encode(&digest[..8])))
    }

    fn held(&self, origin: &str) -> Result<Option<Held>, WitnessError> {
        match std::fs::read(self.state_file(origin)) {
            Ok(bytes) => Ok(Some(
                serde_json::from_slice(&bytes).map_err(io::Error::other)?,
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The new state, written beside the old one, synced, then renamed over it: a crash
    /// leaves one or the other, and nothing is cosigned before it is saved.
    fn save(&self, held: &Held) -> io::Result<()> {
        use std::io::Write as _;
        std::fs::create_dir_all(&self.state)?;
        let path = self.state_file(&held.origin);
        let temporary = path.with_extension("json.new");
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(&serde_json::to_vec(held).map_err(io::Error::other)?)?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path)?;
        std::fs::File::open(&self.state)?.sync_all()
    }
}

/// The body of an add-checkpoint request to a witness that holds size `old`: see
/// [`Witness::add_checkpoint`].
pub fn add_checkpoint_request(old: u64, proof: &[Hash], note: &str) -> String {
    let mut body = format!("old {old}\n");
    for hash in proof {
        body.push_str(&BASE64.encode(hash));
        body.push('\n');
    }
    body.push('\n');
    body.push_str(note);
    body
}

/// `POST /add-checkpoint`: see [`Witness::router`].
#[cfg(feature = "axum")]
async fn add_checkpoint(
    axum::extract::State(witness): axum::extract::State<std::sync::Arc<Witness>>,
    body: String,
) -> axum::response::Response {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    // The check syncs the state to disk: off the async workers.
    let answer = tokio::task::spawn_blocking(move || witness.add_checkpoint(&body, now)).await;
    match answer {
        Ok(Ok(line)) => (StatusCode::OK, line).into_response(),
        Ok(Err(WitnessError::Conflict { held, .. })) => (
            StatusCode::CONFLICT,
            [(header::CONTENT_TYPE, "text/x.tlog.size")],
            format!("{held}\n"),
        )
            .into_response(),
        Ok(Err(error)) => (
            StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            format!("{error}\n"),
        )
            .into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "the check failed\n").into_response(),
    }
}
