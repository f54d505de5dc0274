//! `audit witness`: a witness over HTTP (C2SP `tlog-witness`) for the logs it is given.

use std::path::PathBuf;
use std::process::ExitCode;

use audit_layer::file::{CheckpointKey, PublicKey};
use audit_layer::merkle::{NoteVerifier, Witness};

/// The settings of `audit witness`.
#[derive(clap::Args)]
pub(crate) struct WitnessArgs {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:7380")]
    listen: String,
    /// The witness's name, which its cosignatures carry.
    #[arg(long)]
    name: String,
    /// Its signing key: a file holding the key's hex (generated, with `.pub` beside it, if
    /// there is none).
    #[arg(long)]
    key: PathBuf,
    /// Where it keeps the last checkpoint it cosigned of each log.
    #[arg(long)]
    state: PathBuf,
    /// A log to witness: `ORIGIN=PUBLIC_KEY_FILE` (the origin its tree heads name, and the
    /// file holding its public key's hex). Repeat it for several.
    #[arg(long, required = true)]
    log: Vec<String>,
}

pub(crate) fn run(args: &WitnessArgs) -> Result<ExitCode, String> {
    let key = if args.key.exists() {
        CheckpointKey::from_file(&args.key).map_err(|e| e.to_string())?
    } else {
        let key = CheckpointKey::generate().map_err(|e| e.to_string())?;
        key.save(&args.key, &args.key.with_extension("pub"))
            .map_err(|e| e.to_string())?;
        key
    };
    let mut witness =
        Witness::new(&args.name, key, &args.state).map_err(|e| format!("--name: {e}"))?;
    for log in &args.log {
        let (origin, path) = log
            .split_once('=')
            .ok_or_else(|| format!("--log {log}: expected ORIGIN=PUBLIC_KEY_FILE"))?;
        let public = PublicKey::from_file(path).map_err(|e| format!("--log {log}: {e}"))?;
        let verifier =
            NoteVerifier::new(origin, &public).map_err(|e| format!("--log {log}: {e}"))?;
        witness = witness.log(verifier);
    }
    let verifier = witness.verifier();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let shutdown = crate::shutdown_signal();
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .map_err(|e| format!("--listen {}: {e}", args.listen))?;
        let address = listener.local_addr().map_err(|e| e.to_string())?;
        // What logs and verifiers need: where it listens, and its key to check cosignatures.
        println!("witness listening on {address}");
        println!("witness key: {verifier}");
        axum::serve(listener, witness.router())
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|e| e.to_string())
    })?;
    Ok(ExitCode::SUCCESS)
}
