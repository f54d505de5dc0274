//! `audit`: verify, query and follow an audit-layer file trail.
//!
//! ```text
//! audit verify ./audit-log [--key chain.key] [--public-key signing.pub] [--against postgres://...|nats://...]
//! audit followers ./audit-log
//! audit check-copy postgres://... --trail web-1
//! audit query ./audit-log --actor alice --action 'user.*' --since 2026-11-01 --format table
//! audit tail ./audit-log -f
//! audit detect ./audit-log --per-username 5 --per-ip 10 --window 60 --privileged admin --export-records 1000
//! audit coverage ./audit-log --format table
//! audit prove ./audit-log 1234 --out receipt.json
//! audit consistency ./audit-log 1000 2000
//! audit verify-receipt receipt.json --public-key signing.pub
//! audit witness --name witness.example.net --key witness.key --state ./witness --log audit.example.com/orders=signing.pub
//! audit collect --nats nats://... --postgres postgres://... --public-key fleet.pub --dir ./central
//! audit collect --postgres postgres://... --report
//! ```
//!
//! Exit status: 0 when all is well, 1 when verification finds a fault (or `coverage` a
//! gap), 2 for any other
//! error (one line on standard error), 3 when the trail verifies but ends in events no
//! signed checkpoint covers yet (`--allow-unsealed` accepts them, for a live trail).

use std::io::{self, IsTerminal, Read, Seek, SeekFrom, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use audit_layer::file::{
    self as query, ChainKey, Filter, GENERATED_PUBLIC_KEY, PublicKey, VerifyOptions, verify_trail,
};
use audit_layer::format::Format as EventFormat;
use clap::{Parser, Subcommand, ValueEnum};

#[cfg(feature = "collector")]
mod collect;
mod coverage;
mod detect;
mod prove;
mod witness;

#[derive(Parser)]
#[command(
    name = "audit",
    version,
    about = "Verify, query and follow an audit-layer trail"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Checks the hash chain, the signed checkpoints and the files; exit 1 on any fault.
    Verify {
        /// The trail directory.
        dir: PathBuf,
        /// The HMAC key of a keyed chain (a file holding its hex).
        #[arg(long)]
        key: Option<PathBuf>,
        /// The public key that signed the checkpoints (a file holding its hex). Defaults to
        /// `signing.pub` in the trail directory, which only guards against accidents.
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// A copy of the trail's checkpoints kept elsewhere: a checkpoint mirror's
        /// `checkpoints.jsonl`, or the `postgres://` URL of a PostgreSQL mirror. The trail
        /// must still hold what its newest covers.
        #[arg(long)]
        against_checkpoint: Option<String>,
        /// The trail's name in a PostgreSQL mirror.
        #[arg(long, default_value = "default")]
        mirror_trail: String,
        /// The table of a PostgreSQL mirror.
        #[arg(long, default_value = "audit_checkpoints")]
        mirror_table: String,
        /// Accept events after the last checkpoint (a trail being written seals them
        /// within its checkpoint interval); without it they are exit status 3.
        #[arg(long)]
        allow_unsealed: bool,
        /// A follower's copy of the trail to check against it, line by line: the
        /// `postgres://` URL of its database or the `nats://` URL of its server. A line
        /// missing, altered or added there is a fault (exit 1).
        #[arg(long)]
        against: Option<String>,
        /// The copy's table in PostgreSQL.
        #[arg(long, default_value = "audit_events")]
        copy_table: String,
        /// The copy's stream in NATS JetStream (its subjects: the stream's name in lower
        /// case, then the trail's id).
        #[arg(long, default_value = "AUDIT")]
        copy_stream: String,
        /// A witness's key (`name+id+key`, as `audit witness` prints it): the trail's
        /// lines must be the Merkle tree of its newest head these witnesses cosigned, which
        /// a rollback by the holder of the directory and the key cannot fake. Repeat it for
        /// several.
        #[arg(long)]
        witness: Vec<String>,
        /// How many of the witnesses given must have cosigned (all of them by default).
        #[arg(long)]
        witnesses: Option<usize>,
    },
    /// Checks a follower's copy whose trail is gone: its own chain only (no gap, each line
    /// linked to the one before, each hash over its content); exit 1 on a fault. Without a
    /// chain key this proves the copy consistent, not unaltered.
    CheckCopy {
        /// The copy: the `postgres://` URL of its database or the `nats://` URL of its
        /// server.
        against: String,
        /// The trail's id (its `trail.id` file, or `JsonlFileSinkBuilder::trail_id`).
        #[arg(long)]
        trail: String,
        /// The HMAC key of a keyed chain (a file holding its hex).
        #[arg(long)]
        key: Option<PathBuf>,
        /// The copy's table in PostgreSQL.
        #[arg(long, default_value = "audit_events")]
        copy_table: String,
        /// The copy's stream in NATS JetStream.
        #[arg(long, default_value = "AUDIT")]
        copy_stream: String,
    },
    /// Shows where each follower of the trail is: its cursor, how far behind, what it is
    /// doing (as each last wrote it into DIR/followers/).
    Followers {
        /// The trail directory.
        dir: PathBuf,
    },
    /// Prints the events that match every given filter, in trail order; from the index
    /// (`audit index`) up to its cursor when the trail has one, from the files otherwise.
    Query {
        /// The trail directory.
        dir: PathBuf,
        /// Actor id or name.
        #[arg(long)]
        actor: Option<String>,
        /// Action, or a prefix ending in `*` (`user.*`).
        #[arg(long)]
        action: Option<String>,
        /// Outcome: success, failure, denied, error, cancelled.
        #[arg(long)]
        outcome: Option<String>,
        /// Target, or a prefix ending in `*` (`user:*`).
        #[arg(long)]
        target: Option<String>,
        /// Events at or after this time (RFC 3339, or a UTC day like 2026-11-22).
        #[arg(long, value_parser = query::parse_time)]
        since: Option<audit_layer::event::Timestamp>,
        /// Events before this time (RFC 3339, or a UTC day).
        #[arg(long, value_parser = query::parse_time)]
        until: Option<audit_layer::event::Timestamp>,
        /// Client address or network (CIDR).
        #[arg(long, value_parser = query::parse_ip)]
        ip: Option<ipnet::IpNet>,
        /// Category: request, sensitive, auth, alert, system.
        #[arg(long)]
        category: Option<String>,
        /// Request id.
        #[arg(long)]
        request_id: Option<String>,
        /// Words that must all be among the event's values (ASCII letters in any case).
        #[arg(long)]
        text: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
    },
    /// Builds the trail's index (DIR/index/), or brings it up to date, from the files:
    /// what `IndexFollower` does while the application runs.
    Index {
        /// The trail directory.
        dir: PathBuf,
        /// The HMAC key of a keyed chain (a file holding its hex), to check each line.
        #[arg(long)]
        key: Option<PathBuf>,
        /// Delete the index first and build it again.
        #[arg(long)]
        rebuild: bool,
    },
    /// Writes every event of the trail in a SIEM's format, one per line, in trail order
    /// (to standard output, or to `--output`). A line that holds no event is reported and
    /// skipped, and the exit status is then 1.
    Export {
        /// The trail directory.
        dir: PathBuf,
        /// The format.
        #[arg(long, value_enum, default_value_t = ExportFormat::Ocsf)]
        format: ExportFormat,
        /// The file to write (replaced if it exists); standard output without it.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Prints the last events, and with `-f` follows the trail as it grows.
    Tail {
        /// The trail directory.
        dir: PathBuf,
        /// Keep printing new events as they are written.
        #[arg(short, long)]
        follow: bool,
        /// How many of the last events to print first.
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: usize,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
    },
    /// Replays the trail through the detectors (brute force, credential stuffing, password
    /// spraying, denial bursts, mass exports, privilege grants, revoked roles) and prints
    /// the alerts they raise, dated as their triggers; the trail is not changed.
    Detect(detect::DetectArgs),
    /// Lists the sensitive-looking requests the trail recorded as plain requests (served by
    /// routes that are not `#[sensitive]`, or by handlers that named no action) and the
    /// authentication events without a source IP; exit 1 when there are any.
    Coverage(coverage::CoverageArgs),
    /// Writes a receipt of one event (by seq or id): the event, its Merkle inclusion proof
    /// and the signed tree head that covers it, for `verify-receipt`. Needs the trail's
    /// `TreeFollower`.
    Prove(prove::ProveArgs),
    /// Writes a proof that the trail's tree at one signed size holds the tree at an earlier
    /// one unchanged (the trail only grew), for `verify-receipt`.
    Consistency(prove::ConsistencyArgs),
    /// Checks a receipt or a consistency proof with the log's public key alone; exit 1
    /// when it does not hold.
    VerifyReceipt(prove::VerifyReceiptArgs),
    /// Serves a witness over HTTP (`POST /add-checkpoint`): it cosigns a log's tree heads
    /// only as the log grows, and refuses a rollback or a fork.
    Witness(witness::WitnessArgs),
    /// Gathers many instances' trails from NATS JetStream into one PostgreSQL store,
    /// checking each line and signed checkpoint as it arrives, until SIGINT or SIGTERM;
    /// with `--report`, prints what the store holds of each instance.
    #[cfg(feature = "collector")]
    Collect(collect::CollectArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// One JSON object per line, as stored.
    Json,
    /// Aligned columns for people.
    Table,
    /// OCSF 1.8 JSON, one event per line.
    Ocsf,
    /// Elastic Common Schema 8.17 JSON, one event per line.
    Ecs,
    /// ArcSight CEF, one event per line.
    Cef,
}

impl Format {
    /// The library's encoding this output format names, if it is one.
    fn siem(self) -> Option<EventFormat> {
        match self {
            Self::Json | Self::Table => None,
            Self::Ocsf => Some(EventFormat::Ocsf),
            Self::Ecs => Some(EventFormat::Ecs),
            Self::Cef => Some(EventFormat::Cef),
        }
    }
}

/// The formats of `audit export`: the trail's own and the SIEMs'.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ExportFormat {
    /// `audit/1` lines as stored, chain fields included.
    Audit,
    /// OCSF 1.8 JSON.
    Ocsf,
    /// Elastic Common Schema 8.17 JSON.
    Ecs,
    /// ArcSight CEF.
    Cef,
}

impl ExportFormat {
    fn output(self) -> Format {
        match self {
            Self::Audit => Format::Json,
            Self::Ocsf => Format::Ocsf,
            Self::Ecs => Format::Ecs,
            Self::Cef => Format::Cef,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // What the library logs (a collector's alerts and retries) goes to standard error;
    // `RUST_LOG` changes how much.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(io::stderr)
        .with_ansi(false)
        .init();
    let result = match cli.command {
        Command::Verify {
            dir,
            key,
            public_key,
            against_checkpoint,
            mirror_trail,
            mirror_table,
            allow_unsealed,
            against,
            copy_table,
            copy_stream,
            witness,
            witnesses,
        } => verify(
            &dir,
            key.as_deref(),
            public_key.as_deref(),
            against_checkpoint.as_deref().map(|place| Mirror {
                place,
                trail: &mirror_trail,
                table: &mirror_table,
            }),
            allow_unsealed,
        )
        .and_then(|code| {
            let trail_holds = code == ExitCode::SUCCESS || code == ExitCode::from(3);
            if witness.is_empty() || !trail_holds {
                return Ok(code);
            }
            prove::verify_witnessed(&dir, public_key.as_deref(), &witness, witnesses).map(
                |witnessed| {
                    if witnessed == ExitCode::SUCCESS {
                        code
                    } else {
                        witnessed
                    }
                },
            )
        })
        .and_then(|code| match against {
            Some(url) if code == ExitCode::SUCCESS || code == ExitCode::from(3) => {
                let copy = Copy::at(&url, &copy_table, &copy_stream);
                verify_copy(Some(&dir), None, key.as_deref(), &url, copy).map(|copy| {
                    if copy == ExitCode::SUCCESS {
                        code
                    } else {
                        copy
                    }
                })
            }
            _ => Ok(code),
        }),
        Command::Followers { dir } => followers(&dir).map(|()| ExitCode::SUCCESS),
        Command::CheckCopy {
            against,
            trail,
            key,
            copy_table,
            copy_stream,
        } => verify_copy(
            None,
            Some(&trail),
            key.as_deref(),
            &against,
            Copy::at(&against, &copy_table, &copy_stream),
        ),
        Command::Query {
            dir,
            actor,
            action,
            outcome,
            target,
            since,
            until,
            ip,
            category,
            request_id,
            text,
            format,
        } => {
            let filter = Filter {
                actor,
                action,
                outcome,
                target,
                since,
                until,
                ip,
                category,
                request_id,
                text,
            };
            let stdout = io::stdout();
            run_query(
                &dir,
                &filter,
                format,
                &mut io::BufWriter::new(stdout.lock()),
            )
        }
        Command::Index { dir, key, rebuild } => build_index(&dir, key.as_deref(), rebuild),
        Command::Export {
            dir,
            format,
            output,
        } => {
            let filter = Filter::default();
            match output {
                Some(path) => {
                    let file =
                        create_private(&path).map_err(|e| format!("{}: {e}", path.display()));
                    file.and_then(|file| {
                        run_query(
                            &dir,
                            &filter,
                            format.output(),
                            &mut io::BufWriter::new(file),
                        )
                    })
                }
                None => {
                    let stdout = io::stdout();
                    run_query(
                        &dir,
                        &filter,
                        format.output(),
                        &mut io::BufWriter::new(stdout.lock()),
                    )
                }
            }
        }
        Command::Tail {
            dir,
            follow,
            lines,
            format,
        } => tail(&dir, follow, lines, format).map(|()| ExitCode::SUCCESS),
        Command::Detect(args) => detect::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Coverage(args) => coverage::run(&args),
        Command::Prove(args) => prove::prove(&args),
        Command::Consistency(args) => prove::consistency(&args),
        Command::VerifyReceipt(args) => prove::verify_receipt(&args),
        Command::Witness(args) => witness::run(&args),
        #[cfg(feature = "collector")]
        Command::Collect(args) => collect::run(args),
    };
    result.unwrap_or_else(|error| {
        eprintln!("audit: {error}");
        ExitCode::from(2)
    })
}

/// `audit index`: the index brought up to date from the files, and what it holds.
fn build_index(dir: &Path, key: Option<&Path>, rebuild: bool) -> Result<ExitCode, String> {
    use audit_layer::index::{TrailIndex, index_path};
    if !dir.is_dir() {
        return Err(format!("{}: not a trail directory", dir.display()));
    }
    let key = key.map(read_chain_key).transpose()?;
    if rebuild {
        let path = index_path(dir);
        for suffix in ["", "-wal", "-shm"] {
            let mut name = path.clone().into_os_string();
            name.push(suffix);
            match std::fs::remove_file(&name) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(format!("{}: {error}", Path::new(&name).display())),
            }
        }
    }
    let started = std::time::Instant::now();
    let mut index = TrailIndex::open(dir).map_err(|e| e.to_string())?;
    let added = index.catch_up(dir, key).map_err(|e| e.to_string())?;
    let (events, bytes) = index.stats().map_err(|e| e.to_string())?;
    let trail_bytes: u64 = query::trail_files(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .iter()
        .filter_map(|file| std::fs::metadata(file).ok())
        .map(|meta| meta.len())
        .sum();
    eprintln!(
        "indexed {added} new event(s) in {:.1} s; {} holds {events} event(s) in {bytes} bytes \
         ({:.0}% of the trail's files)",
        started.elapsed().as_secs_f64(),
        index.path().display(),
        bytes as f64 * 100.0 / trail_bytes.max(1) as f64
    );
    Ok(ExitCode::SUCCESS)
}

fn verify(
    dir: &Path,
    key: Option<&Path>,
    public_key: Option<&Path>,
    against: Option<Mirror<'_>>,
    allow_unsealed: bool,
) -> Result<ExitCode, String> {
    let against_checkpoint = against.as_ref().map(Mirror::newest).transpose()?;
    let chain_key = key.map(read_chain_key).transpose()?;
    let (public_key, key_note) = match public_key {
        Some(path) => (
            Some(PublicKey::from_file(path).map_err(|e| format!("--public-key: {e}"))?),
            format!("the public key in {}", path.display()),
        ),
        None => {
            let beside = dir.join(GENERATED_PUBLIC_KEY);
            if beside.is_file() {
                (
                    Some(PublicKey::from_file(&beside).map_err(|e| e.to_string())?),
                    format!(
                        "{} (stored beside the trail: it guards against accidents, not attackers; \
                         pass --public-key from a trusted place)",
                        beside.display()
                    ),
                )
            } else {
                (None, String::new())
            }
        }
    };

    let total: u64 = query::trail_files(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .iter()
        .filter_map(|f| f.metadata().ok())
        .map(|m| m.len())
        .sum();
    let bar = (io::stderr().is_terminal() && total > 16 * 1024 * 1024).then(|| {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let options = VerifyOptions {
        chain_key,
        public_key,
        progress: bar.clone().map(|bar| {
            Arc::new(move |done: u64, _total: u64| bar.set_position(done))
                as Arc<dyn Fn(u64, u64) + Send + Sync>
        }),
        against_checkpoint,
    };
    let result = verify_trail(dir, &options);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    match result {
        Ok(report) => {
            let span = match (report.first_seq, report.last_seq) {
                (Some(first), Some(last)) => format!("seq {first}..={last}"),
                _ => "no events".to_owned(),
            };
            let times = match (report.first_time, report.last_time) {
                (Some(first), Some(last)) => format!(", {first} .. {last}"),
                _ => String::new(),
            };
            println!(
                "OK: {} file(s), {} event(s), {span}{times}",
                report.files, report.events
            );
            if report.signatures_checked {
                println!(
                    "checkpoints: {} checked, signatures verified with {key_note}",
                    report.checkpoints
                );
            } else {
                println!(
                    "checkpoints: {} checked for consistency; signatures NOT checked (no public key)",
                    report.checkpoints
                );
            }
            if let Some(against) = &against {
                println!(
                    "against {}: the trail holds what its newest checkpoint covers",
                    against.describe()
                );
            }
            if report.unsealed > 0 {
                let since = report
                    .unsealed_since
                    .map(|t| format!(" since {t}"))
                    .unwrap_or_default();
                let unsealed = format!(
                    "{} event(s){since} after the last checkpoint are not signed: whoever can \
                     write the directory could have appended or removed them",
                    report.unsealed
                );
                if !allow_unsealed {
                    eprintln!(
                        "UNSEALED: {unsealed} (a running trail seals them within its \
                         checkpoint interval; --allow-unsealed accepts them)"
                    );
                    return Ok(ExitCode::from(3));
                }
                println!("unsealed: {unsealed}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(fault) => {
            eprintln!("FAULT: {fault}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Creates (or replaces) a file only its owner can read: an export holds what the trail
/// holds, who did what.
fn create_private(path: &Path) -> io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Writes one stored line in `format`. `Ok(false)`: the line holds no event (reported on
/// standard error, not written).
fn print_event(
    out: &mut impl Write,
    line: &str,
    event: &serde_json::Value,
    format: Format,
    buffer: &mut Vec<u8>,
) -> io::Result<bool> {
    let Some(siem) = format.siem() else {
        match format {
            Format::Table => writeln!(out, "{}", query::table_row(event))?,
            _ => writeln!(out, "{}", query::display_json_line(line))?,
        }
        return Ok(true);
    };
    let Some(seq) = event["seq"].as_u64() else {
        let start: String = line.chars().take(80).collect();
        eprintln!("skipped a line with no seq: {start}");
        return Ok(false);
    };
    let trail = event["trail"].as_str().unwrap_or_default();
    buffer.clear();
    match siem.encode_line(trail, seq, line, buffer) {
        Ok(()) => {
            buffer.push(b'\n');
            out.write_all(buffer)?;
            Ok(true)
        }
        Err(error) => {
            eprintln!("skipped: {error}");
            Ok(false)
        }
    }
}

/// Writes the events that match `filter`; exit status 1 when a line held no event.
fn run_query(
    dir: &Path,
    filter: &Filter,
    format: Format,
    out: &mut impl Write,
) -> Result<ExitCode, String> {
    if format == Format::Table {
        writeln!(out, "{}", query::table_header()).map_err(|e| e.to_string())?;
    }
    let mut failure = None;
    let mut skipped = 0_u64;
    let mut buffer = Vec::new();
    audit_layer::index::search(dir, filter, |line, event| {
        match print_event(out, line, event, format, &mut buffer) {
            Ok(true) => {}
            Ok(false) => skipped += 1,
            Err(error) => {
                failure = Some(error);
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    })
    .map_err(|e| e.to_string())?;
    match failure {
        // A closed pipe (`| head`) is a normal end.
        Some(error) if error.kind() == io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
        Some(error) => return Err(error.to_string()),
        None => out.flush().or_else(ignore_broken_pipe)?,
    }
    if skipped > 0 {
        eprintln!("{skipped} line(s) held no audit/1 event; run `audit verify` to find out why");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Where a follower's copy is kept (`--against`).
#[derive(Clone, Copy)]
enum Copy<'a> {
    Postgres { table: &'a str },
    Nats { stream: &'a str },
}

impl<'a> Copy<'a> {
    /// The copy `url` names: NATS for `nats://` and `tls://`, PostgreSQL otherwise.
    fn at(url: &str, table: &'a str, stream: &'a str) -> Self {
        if url.starts_with("nats://") || url.starts_with("tls://") {
            Self::Nats { stream }
        } else {
            Self::Postgres { table }
        }
    }
}

/// Checks a follower's copy of the trail: against the trail in `dir` (`verify --against`),
/// or without it, its own chain (`check-copy`). The trail's id is `trail`, or `dir`'s.
fn verify_copy(
    dir: Option<&Path>,
    trail: Option<&str>,
    key: Option<&Path>,
    url: &str,
    copy: Copy<'_>,
) -> Result<ExitCode, String> {
    let chain_key = key.map(read_chain_key).transpose()?;
    let trail = match (trail, dir) {
        (Some(trail), _) => trail.to_owned(),
        (None, Some(dir)) => std::fs::read_to_string(dir.join(query::TRAIL_ID))
            .map_err(|e| format!("{}: {e}", dir.join(query::TRAIL_ID).display()))?,
        (None, None) => return Err("no trail id: give --trail".to_owned()),
    };
    let trail = trail.trim();
    if let Copy::Postgres { .. } = copy
        && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
    {
        return Err(format!(
            "--against: `{}` is neither a postgres:// nor a nats:// URL",
            url.split('@').next_back().unwrap_or_default()
        ));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mut check = match dir {
        Some(dir) => query::CopyCheck::new(dir, chain_key),
        None => query::CopyCheck::own_chain(chain_key),
    };
    let (checked, described) = match copy {
        Copy::Postgres { table } => (
            runtime.block_on(check_postgres_copy(&mut check, url, table, trail))?,
            format!("the PostgreSQL copy {table} (trail {trail})"),
        ),
        Copy::Nats { stream } => (
            runtime.block_on(check_nats_copy(&mut check, url, stream, trail))?,
            format!("the NATS copy in stream {stream} (trail {trail})"),
        ),
    };
    match checked.and_then(|()| check.finish()) {
        Ok(report) if dir.is_none() => {
            let span = match (report.first_seq, report.last_seq) {
                (Some(first), Some(last)) => format!("seq {first}..={last}"),
                _ => "no line".to_owned(),
            };
            println!(
                "OK: {described}: {} line(s), {span}, its own chain verified (not compared with \
                 the trail, whose files are not given)",
                report.lines
            );
            Ok(ExitCode::SUCCESS)
        }
        Ok(report) => {
            println!(
                "against {described}: {} line(s), {} compared with the trail's; {} not yet copied",
                report.lines, report.compared, report.behind
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(fault) => {
            eprintln!("FAULT in {described}: {fault}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Feeds the copy's messages to `check`. The outer error is the server's; the inner, a
/// fault of the copy.
#[cfg(feature = "nats")]
async fn check_nats_copy(
    check: &mut query::CopyCheck,
    url: &str,
    stream: &str,
    trail: &str,
) -> Result<Result<(), audit_layer::file::Fault>, String> {
    let mut copy = audit_layer::sink::nats::NatsSink::builder(url)
        .stream(stream)
        .create_stream(false)
        .build()
        .map_err(|e| format!("--against: {e}"))?;
    let mut fault = None;
    copy.for_each_copied_line(trail, |line| match check.check(line) {
        Ok(()) => ControlFlow::Continue(()),
        Err(found) => {
            fault = Some(found);
            ControlFlow::Break(())
        }
    })
    .await
    .map_err(|e| format!("--against: {e}"))?;
    Ok(fault.map_or(Ok(()), Err))
}

#[cfg(not(feature = "nats"))]
async fn check_nats_copy(
    _: &mut query::CopyCheck,
    _: &str,
    _: &str,
    _: &str,
) -> Result<Result<(), audit_layer::file::Fault>, String> {
    Err("--against: this `audit` was built without the `nats` feature".to_owned())
}

/// Feeds the copy's rows to `check`, a page at a time. The outer error is the copy's
/// server's; the inner, a fault of the copy.
#[cfg(feature = "postgres")]
async fn check_postgres_copy(
    check: &mut query::CopyCheck,
    url: &str,
    table: &str,
    trail: &str,
) -> Result<Result<(), audit_layer::file::Fault>, String> {
    let mut copy = audit_layer::sink::postgres::PostgresSink::builder(url)
        .table(table)
        .create_table(false)
        .build()
        .map_err(|e| format!("--against: {e}"))?;
    let mut from = 0;
    loop {
        let lines = copy
            .read_copy(trail, from, 10_000)
            .await
            .map_err(|e| format!("--against: {e}"))?;
        let Some(last) = lines.last() else {
            return Ok(Ok(()));
        };
        from = last.seq + 1;
        for line in lines {
            if let Err(fault) = check.check(line) {
                return Ok(Err(fault));
            }
        }
    }
}

#[cfg(not(feature = "postgres"))]
async fn check_postgres_copy(
    _: &mut query::CopyCheck,
    _: &str,
    _: &str,
    _: &str,
) -> Result<Result<(), audit_layer::file::Fault>, String> {
    Err("--against: this `audit` was built without the `postgres` feature".to_owned())
}

fn read_chain_key(path: &Path) -> Result<ChainKey, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("--key {}: {e}", path.display()))?;
    ChainKey::from_hex(&text).map_err(|e| format!("--key {}: not hex: {e}", path.display()))
}

/// Prints each follower's last status.
fn followers(dir: &Path) -> Result<(), String> {
    let statuses = audit_layer::follow::read_follower_statuses(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    if statuses.is_empty() {
        println!(
            "no follower has written its status in {}",
            dir.join(audit_layer::follow::FOLLOWERS_DIR).display()
        );
        return Ok(());
    }
    for status in statuses {
        let state = match &status.state {
            audit_layer::follow::FollowerState::Retrying { error, failures } => {
                format!("retrying ({failures} failure(s): {error})")
            }
            audit_layer::follow::FollowerState::Stopped { fault } => format!("STOPPED: {fault}"),
            other => format!("{other:?}").to_lowercase(),
        };
        let cursor = status
            .cursor
            .map_or_else(|| "unknown".to_owned(), |c| c.to_string());
        println!(
            "{}: {state}; cursor {cursor} of {} synced, {} event(s) and {:.1} s behind, as of {}",
            status.name,
            status.synced,
            status.behind_events,
            status.behind.as_secs_f64(),
            status.at
        );
    }
    Ok(())
}

/// Where a copy of the trail's checkpoints is kept (`--against-checkpoint`).
struct Mirror<'a> {
    /// A file of checkpoints, or a PostgreSQL or NATS URL.
    place: &'a str,
    trail: &'a str,
    table: &'a str,
}

impl Mirror<'_> {
    fn is_postgres(&self) -> bool {
        self.place.starts_with("postgres://") || self.place.starts_with("postgresql://")
    }

    fn is_nats(&self) -> bool {
        self.place.starts_with("nats://") || self.place.starts_with("tls://")
    }

    /// What to call it in output: never the URL, which may hold a password.
    fn describe(&self) -> String {
        if self.is_postgres() {
            format!("the PostgreSQL mirror's {} ({})", self.table, self.trail)
        } else if self.is_nats() {
            format!("the NATS mirror's audit-checkpoints.{}", self.trail)
        } else {
            self.place.to_owned()
        }
    }

    fn newest(&self) -> Result<audit_layer::file::Checkpoint, String> {
        if !self.is_postgres() && !self.is_nats() {
            return newest_checkpoint_in(Path::new(self.place));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let newest = runtime.block_on(self.newest_remote())?;
        newest.ok_or_else(|| {
            format!(
                "--against-checkpoint: {} holds no checkpoint",
                self.describe()
            )
        })
    }

    /// The newest checkpoint in a PostgreSQL or NATS mirror.
    async fn newest_remote(&self) -> Result<Option<audit_layer::file::Checkpoint>, String> {
        if self.is_postgres() {
            #[cfg(feature = "postgres")]
            return audit_layer::sink::postgres::PostgresCheckpointMirror::newest(
                self.place, self.trail, self.table,
            )
            .await
            .map_err(|e| format!("--against-checkpoint: {e}"));
            #[cfg(not(feature = "postgres"))]
            return Err(built_without("postgres"));
        }
        #[cfg(feature = "nats")]
        return audit_layer::sink::nats::NatsCheckpointMirror::newest(self.place, self.trail)
            .await
            .map_err(|e| format!("--against-checkpoint: {e}"));
        #[cfg(not(feature = "nats"))]
        Err(built_without("nats"))
    }
}

#[cfg(not(all(feature = "postgres", feature = "nats")))]
fn built_without(feature: &str) -> String {
    format!("--against-checkpoint: this `audit` was built without the `{feature}` feature")
}

/// The newest checkpoint in a file of checkpoints, one JSON object per line.
fn newest_checkpoint_in(path: &Path) -> Result<audit_layer::file::Checkpoint, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--against-checkpoint {}: {e}", path.display()))?;
    let line = text
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .ok_or_else(|| {
            format!(
                "--against-checkpoint {}: holds no checkpoint",
                path.display()
            )
        })?;
    serde_json::from_str(line).map_err(|e| {
        format!(
            "--against-checkpoint {}: its last line is not a checkpoint: {e}",
            path.display()
        )
    })
}

fn ignore_broken_pipe(error: io::Error) -> Result<(), String> {
    if error.kind() == io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(error.to_string())
    }
}

fn tail(dir: &Path, follow: bool, count: usize, format: Format) -> Result<(), String> {
    let describe = |e: io::Error| format!("{}: {e}", dir.display());
    let mut last = std::collections::VecDeque::with_capacity(count);
    query::for_each_event(dir, |line, event| {
        if count > 0 {
            if last.len() == count {
                last.pop_front();
            }
            last.push_back((line.to_owned(), event.clone()));
        }
        ControlFlow::Continue(())
    })
    .map_err(describe)?;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let printed = (|| {
        if format == Format::Table {
            writeln!(out, "{}", query::table_header())?;
        }
        for (line, event) in &last {
            print_event(&mut out, line, event, format, &mut Vec::new())?;
        }
        out.flush()
    })();
    if let Err(error) = printed {
        return ignore_broken_pipe(error);
    }
    if !follow {
        return Ok(());
    }
    // Follow: remember where each file's lines ended, and print what is appended, in trail
    // order. The file being written may end in preallocated zeros: its lines end before
    // them, and new lines go over them without changing the file's size.
    // Closed, compressed files are not followed.
    let followed = |file: &PathBuf| file.extension().is_none_or(|e| e != "gz");
    let mut positions = std::collections::HashMap::new();
    for file in query::trail_files(dir).map_err(describe)? {
        if followed(&file) {
            let end = query::lines_end(&file).map_err(describe)?;
            positions.insert(file, end);
        }
    }
    loop {
        std::thread::sleep(Duration::from_millis(250));
        for file in query::trail_files(dir).map_err(describe)? {
            if !followed(&file) {
                continue;
            }
            let start = positions.get(&file).copied().unwrap_or(0);
            let len = file.metadata().map_or(start, |m| m.len());
            if len <= start {
                continue;
            }
            let fresh = complete_lines_after(&file, start, len).map_err(describe)?;
            let printed = fresh
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .try_for_each(|line| {
                    let text = String::from_utf8_lossy(line);
                    let event = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
                    print_event(&mut out, &text, &event, format, &mut Vec::new()).map(drop)
                })
                .and_then(|()| out.flush());
            if let Err(error) = printed {
                return ignore_broken_pipe(error);
            }
            positions.insert(file, start + fresh.len() as u64);
        }
    }
}

/// The complete lines of `path` after offset `start`, up to its size `len`, stopping at
/// preallocated zeros; a line still being written is left for the next call. Read a chunk
/// at a time, so that a file zero-filled far ahead is not read to its end.
fn complete_lines_after(path: &Path, start: u64, len: u64) -> io::Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)?;
    let mut lines = Vec::new();
    let mut at = start;
    let mut chunk = FOLLOW_CHUNK;
    while at < len {
        file.seek(SeekFrom::Start(at))?;
        let mut fresh = Vec::new();
        (&mut file)
            .take((len - at).min(chunk))
            .read_to_end(&mut fresh)?;
        let data = fresh
            .iter()
            .position(|b| *b == 0)
            .map_or(&fresh[..], |zero| &fresh[..zero]);
        let complete = data.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        lines.extend_from_slice(&data[..complete]);
        at += complete as u64;
        if complete == 0 && data.len() as u64 == chunk {
            // A line longer than the chunk: read more of it at once.
            chunk *= 2;
        } else if data.len() < fresh.len() || complete == 0 {
            break;
        }
    }
    Ok(lines)
}

/// How much of a followed file `audit tail -f` reads at a time.
const FOLLOW_CHUNK: u64 = 256 * 1024;

/// Resolves on SIGINT or SIGTERM; the handlers are installed when this is called.
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt()).ok();
        let terminate = signal(SignalKind::terminate()).ok();
        async move {
            let received = async |signal: Option<tokio::signal::unix::Signal>| match signal {
                Some(mut signal) => {
                    signal.recv().await;
                }
                None => std::future::pending().await,
            };
            tokio::select! {
                () = received(interrupt) => {}
                () = received(terminate) => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
