//! `audit collect`: the [`Collector`] as a command, and `--report`, what the central store
//! knows of each instance.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use audit_layer::AuditTrail;
use audit_layer::collect::{Collector, DEFAULT_CONSUMER};
use audit_layer::file::{CheckpointKey, JsonlFileSink, PublicKey};
use audit_layer::sink::nats::NatsSink;
use audit_layer::sink::postgres::{DEFAULT_CHECKPOINT_TABLE, DEFAULT_TABLE, PostgresSink};

/// The settings of `audit collect`.
#[derive(clap::Args)]
pub(crate) struct CollectArgs {
    /// The central store: the `postgres://` URL of its database.
    #[arg(long)]
    postgres: String,
    /// The NATS server(s) the instances' followers publish to (`nats://host:4222`, several
    /// separated by commas).
    #[arg(long, required_unless_present = "report")]
    nats: Option<String>,
    /// The instances' JetStream stream.
    #[arg(long, default_value = "AUDIT")]
    stream: String,
    /// The instances' subject prefix; by default the stream's name in lower case.
    #[arg(long)]
    prefix: Option<String>,
    /// The table the lines go to (its checkpoints, instances and waiting lines in tables
    /// named after it).
    #[arg(long, default_value = DEFAULT_TABLE)]
    table: String,
    /// The table the instances' checkpoints go to.
    #[arg(long, default_value = DEFAULT_CHECKPOINT_TABLE)]
    checkpoint_table: String,
    /// The durable consumer every collector of this store shares.
    #[arg(long, default_value = DEFAULT_CONSUMER)]
    consumer: String,
    /// A public key trusted to sign the instances' checkpoints (a file holding its hex);
    /// repeat it for several. Without one, signatures are not checked.
    #[arg(long)]
    public_key: Vec<PathBuf>,
    /// The instances' chain key, for keyed chains (a file holding its hex).
    #[arg(long)]
    key: Option<PathBuf>,
    /// How long lines that arrived after a missing one wait for it before the gap is
    /// given up on (an alert), like `30s` or `2m`.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    gap_grace: Duration,
    /// The central trail: a trail directory the collector's alerts are recorded in (signed
    /// with `AUDIT_SIGNING_KEY`, an Ed25519 seed in hex, when set). Without it, alerts
    /// go to standard error only.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Print what the store holds of each instance and exit: 1 when any has a fault or a
    /// missing line.
    #[arg(long)]
    report: bool,
}

pub(crate) fn run(args: CollectArgs) -> Result<ExitCode, String> {
    let store = PostgresSink::builder(&args.postgres)
        .table(&args.table)
        .build()
        .map_err(|e| format!("--postgres: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    if args.report {
        return runtime.block_on(report(store));
    }
    let Some(nats) = &args.nats else {
        return Err("--nats is needed to collect (or --report to read the store)".to_owned());
    };
    let mut source = NatsSink::builder(nats).stream(&args.stream);
    if let Some(prefix) = &args.prefix {
        source = source.subject_prefix(prefix);
    }
    let source = source.build().map_err(|e| format!("--nats: {e}"))?;
    let mut builder = Collector::builder(source, store)
        .consumer(&args.consumer)
        .checkpoint_table(&args.checkpoint_table)
        .gap_grace(args.gap_grace);
    for path in &args.public_key {
        let key = PublicKey::from_file(path)
            .map_err(|e| format!("--public-key {}: {e}", path.display()))?;
        builder = builder.public_key(key);
    }
    if let Some(path) = &args.key {
        builder = builder.chain_key(super::read_chain_key(path)?);
    }
    runtime.block_on(async {
        // Installed before the collector starts: a signal from then on stops it cleanly.
        let shutdown = crate::shutdown_signal();
        let central = match &args.dir {
            Some(dir) => Some(central_trail(dir).await?),
            None => None,
        };
        if let Some(central) = &central {
            builder = builder.alerts(central);
        }
        let collector = builder.build().map_err(|e| e.to_string())?;
        eprintln!(
            "audit collect: stream {} into table {}{}; SIGINT or SIGTERM stops",
            args.stream,
            args.table,
            args.dir
                .as_ref()
                .map(|dir| format!(", alerts into {}", dir.display()))
                .unwrap_or_default()
        );
        let collected = collector.run(shutdown).await.map_err(|e| e.to_string());
        if let Some(central) = central {
            central
                .shutdown()
                .await
                .map_err(|e| format!("--dir: {e}"))?;
        }
        collected.map(|()| ExitCode::SUCCESS)
    })
}

/// The central trail the alerts go to.
async fn central_trail(dir: &std::path::Path) -> Result<AuditTrail, String> {
    let mut sink = JsonlFileSink::builder(dir);
    if let Some(key) = CheckpointKey::from_env("AUDIT_SIGNING_KEY")
        .map_err(|e| format!("AUDIT_SIGNING_KEY: {e}"))?
    {
        sink = sink.signing_key(key);
    }
    AuditTrail::builder()
        .sink(sink.build())
        .build_checked()
        .await
        .map_err(|e| format!("--dir {}: {e}", dir.display()))
}

async fn report(mut store: PostgresSink) -> Result<ExitCode, String> {
    let instances = store
        .instances()
        .await
        .map_err(|e| format!("--postgres: {e}"))?;
    if instances.is_empty() {
        println!("no instance collected yet");
    }
    let mut code = ExitCode::SUCCESS;
    for instance in &instances {
        println!("{instance}");
        if instance.faults > 0 || instance.missing > 0 {
            code = ExitCode::from(1);
        }
    }
    Ok(code)
}
