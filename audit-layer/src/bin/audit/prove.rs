//! `audit prove`, `audit consistency` and `audit verify-receipt`: evidence about one event,
//! or about the trail only growing, that an outsider checks with the public key alone.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use audit_layer::file::PublicKey;
use audit_layer::merkle::{
    CONSISTENCY_FORMAT, ConsistencyProof, NoteVerifier, RECEIPT_FORMAT, Receipt,
    TimestampAuthority, TreeHead,
};

/// The settings of `audit prove`.
#[derive(clap::Args)]
pub(crate) struct ProveArgs {
    /// The trail directory.
    dir: PathBuf,
    /// The event: its seq, or its id.
    event: String,
    /// Where to write the receipt (standard output without it).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The settings of `audit consistency`.
#[derive(clap::Args)]
pub(crate) struct ConsistencyArgs {
    /// The trail directory.
    dir: PathBuf,
    /// The earlier signed tree head's size.
    old: u64,
    /// The later signed tree head's size.
    new: u64,
    /// Where to write the proof (standard output without it).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The settings of `audit verify-receipt`.
#[derive(clap::Args)]
pub(crate) struct VerifyReceiptArgs {
    /// The receipt (`audit prove`) or consistency proof (`audit consistency`).
    receipt: PathBuf,
    /// The log's public key: a file holding its hex (the trail's `signing.pub`, kept
    /// apart from the trail).
    #[arg(long)]
    public_key: PathBuf,
    /// The log's name, as its tree heads give it; without it, the name in the receipt is
    /// taken and shown.
    #[arg(long)]
    origin: Option<String>,
    /// A witness's key, as `audit witness` prints it (`name+id+key`). Repeat it for several.
    #[arg(long)]
    witness: Vec<String>,
    /// How many of the witnesses given must have cosigned the head (all of them by
    /// default).
    #[arg(long)]
    witnesses: Option<usize>,
    /// A time-stamping authority's certificate (PEM or DER) that must have stamped the
    /// receipt's tree head (RFC 3161). Repeat it for several.
    #[arg(long, value_name = "CERT")]
    tsa_cert: Vec<PathBuf>,
}

pub(crate) fn prove(args: &ProveArgs) -> Result<ExitCode, String> {
    let seq = match args.event.parse::<u64>() {
        Ok(seq) => seq,
        Err(_) => seq_of_id(&args.dir, &args.event)?,
    };
    let receipt = Receipt::make(&args.dir, seq).map_err(|e| e.to_string())?;
    write(args.out.as_deref(), &receipt)?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn consistency(args: &ConsistencyArgs) -> Result<ExitCode, String> {
    let proof = ConsistencyProof::make(&args.dir, args.old, args.new).map_err(|e| e.to_string())?;
    write(args.out.as_deref(), &proof)?;
    Ok(ExitCode::SUCCESS)
}

/// `, cosigned by a, b`, or nothing.
fn cosigned_by(cosigned: &[audit_layer::merkle::Cosigned]) -> String {
    if cosigned.is_empty() {
        return String::new();
    }
    let names: Vec<&str> = cosigned.iter().map(|c| c.witness.as_str()).collect();
    format!(", cosigned by {}", names.join(", "))
}

/// Exit 0 when the receipt holds, 1 when it does not.
pub(crate) fn verify_receipt(args: &VerifyReceiptArgs) -> Result<ExitCode, String> {
    let text = std::fs::read_to_string(&args.receipt)
        .map_err(|e| format!("{}: {e}", args.receipt.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not JSON: {e}", args.receipt.display()))?;
    let key = PublicKey::from_file(&args.public_key).map_err(|e| e.to_string())?;
    let note = json["checkpoint"]
        .as_str()
        .or_else(|| json["new_checkpoint"].as_str())
        .unwrap_or_default();
    let origin = match &args.origin {
        Some(origin) => origin.clone(),
        None => note.lines().next().unwrap_or_default().to_owned(),
    };
    let log = NoteVerifier::new(&origin, &key).map_err(|e| e.to_string())?;
    let (witnesses, required) = witness_keys(&args.witness, args.witnesses)?;
    let authorities = args
        .tsa_cert
        .iter()
        .map(|path| TimestampAuthority::from_file(path).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let verdict = match json["format"].as_str() {
        Some(RECEIPT_FORMAT) => {
            let receipt: Receipt = serde_json::from_value(json).map_err(|e| e.to_string())?;
            receipt
                .verify(&log)
                .and_then(|head| {
                    let cosigned = receipt.witnessed(&witnesses, required)?;
                    let stamps = authorities
                        .iter()
                        .map(|authority| receipt.timestamped(authority))
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok((head, cosigned, stamps))
                })
                .map(|(head, cosigned, stamps)| {
                    let seq = serde_json::from_str::<serde_json::Value>(&receipt.event)
                        .ok()
                        .and_then(|event| event["seq"].as_u64());
                    let stamps: String = stamps
                        .iter()
                        .map(|stamp| {
                            format!(
                                ", timestamped {} by {}",
                                humantime::format_rfc3339_seconds(stamp.time),
                                stamp.authority
                            )
                        })
                        .collect();
                    format!(
                        "receipt holds: the event{} is leaf {} of {}{}{stamps}",
                        seq.map(|seq| format!(" (seq {seq})")).unwrap_or_default(),
                        receipt.leaf_index,
                        head_text(&head),
                        cosigned_by(&cosigned)
                    )
                })
        }
        Some(CONSISTENCY_FORMAT) => {
            if !authorities.is_empty() {
                return Err("--tsa-cert: a consistency proof carries no timestamps".to_owned());
            }
            let proof: ConsistencyProof =
                serde_json::from_value(json).map_err(|e| e.to_string())?;
            proof
                .verify(&log)
                .and_then(|heads| Ok((heads, proof.witnessed(&witnesses, required)?)))
                .map(|((old, new), cosigned)| {
                    format!(
                        "consistency holds: {} holds {} unchanged{}",
                        head_text(&new),
                        head_text(&old),
                        cosigned_by(&cosigned)
                    )
                })
        }
        other => {
            return Err(format!(
                "{}: not a receipt or a consistency proof (format {other:?})",
                args.receipt.display()
            ));
        }
    };
    match verdict {
        Ok(text) => {
            println!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            println!("REFUSED: {error}");
            Ok(ExitCode::from(1))
        }
    }
}

/// The witness keys given, and how many must have cosigned.
fn witness_keys(
    keys: &[String],
    required: Option<usize>,
) -> Result<(Vec<NoteVerifier>, usize), String> {
    let witnesses = keys
        .iter()
        .map(|text| {
            NoteVerifier::parse(text)
                .ok()
                .filter(NoteVerifier::is_witness)
                .ok_or_else(|| format!("--witness {text}: not a witness key (name+id+key)"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let required = required.unwrap_or(witnesses.len());
    if required > witnesses.len() {
        return Err(format!(
            "--witnesses {required}: only {} witness keys given",
            witnesses.len()
        ));
    }
    Ok((witnesses, required))
}

/// `audit verify --witness`: the trail against its newest witnessed tree head; exit 1 when
/// no head is cosigned enough, or the trail's lines are not its tree.
pub(crate) fn verify_witnessed(
    dir: &Path,
    public_key: Option<&Path>,
    keys: &[String],
    required: Option<usize>,
) -> Result<ExitCode, String> {
    let (witnesses, required) = witness_keys(keys, required)?;
    let path = public_key.map_or_else(
        || dir.join(audit_layer::file::GENERATED_PUBLIC_KEY),
        Path::to_path_buf,
    );
    let key = PublicKey::from_file(&path).map_err(|e| format!("--public-key: {e}"))?;
    let origin = audit_layer::merkle::signed_heads(dir)
        .map_err(|e| e.to_string())?
        .last()
        .and_then(|head| head.note.lines().next().map(str::to_owned))
        .unwrap_or_default();
    let log =
        NoteVerifier::new(&origin, &key).map_err(|e| format!("the trail's tree heads: {e}"))?;
    match audit_layer::merkle::check_witnessed(dir, &log, &witnesses, required) {
        Ok(witnessed) => {
            println!(
                "witnessed: the trail's first {} lines (to seq {}) are {}, cosigned by {}; {} \
                 line(s) after it not witnessed yet",
                witnessed.head.size,
                witnessed.seq_to,
                head_text(&witnessed.head),
                witnessed.cosigned_by.join(", "),
                witnessed.after
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("FAULT: witnesses: {error}");
            Ok(ExitCode::from(1))
        }
    }
}

fn head_text(head: &TreeHead) -> String {
    format!("the tree of {} events signed by {}", head.size, head.origin)
}

/// The seq of the event with id `id`, by reading the trail.
fn seq_of_id(dir: &Path, id: &str) -> Result<u64, String> {
    let mut found = None;
    audit_layer::file::for_each_event(dir, |_, event| {
        if event["id"] == id {
            found = event["seq"].as_u64();
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    })
    .map_err(|e| format!("{}: {e}", dir.display()))?;
    found.ok_or_else(|| format!("no event {id} in {}", dir.display()))
}

fn write(out: Option<&Path>, value: &impl serde::Serialize) -> Result<(), String> {
    let mut json = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    json.push('\n');
    match out {
        Some(path) => std::fs::write(path, json).map_err(|e| format!("{}: {e}", path.display())),
        None => std::io::stdout()
            .write_all(json.as_bytes())
            .map_err(|e| e.to_string()),
    }
}
