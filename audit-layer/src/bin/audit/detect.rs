//! `audit detect`: a stored trail replayed through the built-in detectors.

use std::io::{self, Write};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Duration;

use audit_layer::AuditEvent;
use audit_layer::detect::{
    BruteForce, CredentialStuffing, DenialBurst, Detector, MassExport, PasswordSpraying,
    PrivilegeGrant, RevokedRole,
};
use audit_layer::file as query;
use serde::Deserialize as _;

use crate::{Format, ignore_broken_pipe, print_event};

/// The settings of `audit detect`: each threshold as the library's default, 0 turning it off.
#[derive(clap::Args)]
pub(crate) struct DetectArgs {
    /// The trail directory.
    dir: PathBuf,
    /// The action of a login: its failures (outcome failure or denied) are counted.
    #[arg(long, default_value = "auth.login")]
    login_action: String,
    /// Failed logins for one username that raise a brute-force alert.
    #[arg(long, default_value_t = 5)]
    per_username: u32,
    /// Failed logins from one source IP that raise a brute-force alert.
    #[arg(long, default_value_t = 10)]
    per_ip: u32,
    /// Distinct usernames failing from one source IP that raise a credential-stuffing alert.
    #[arg(long, default_value_t = 10)]
    distinct_usernames: u32,
    /// The window of the login counts above, in seconds.
    #[arg(long, default_value_t = 60)]
    window: u64,
    /// Accounts failing (at most twice each) from one /24 or /64 that raise a
    /// password-spraying alert.
    #[arg(long, default_value_t = 20)]
    sprayed_accounts: u32,
    /// The window of the spraying count, in seconds.
    #[arg(long, default_value_t = 3600)]
    spraying_window: u64,
    /// `denied` outcomes for one actor within `--window` that raise a denial-burst alert.
    #[arg(long, default_value_t = 10)]
    denials: u32,
    /// An export of more records than this raises a mass-export alert.
    #[arg(long, default_value_t = 1000)]
    export_records: u64,
    /// Exports by one actor within `--export-window` that raise a mass-export alert.
    #[arg(long, default_value_t = 10)]
    exports: u32,
    /// The window of the export count, in seconds.
    #[arg(long, default_value_t = 600)]
    export_window: u64,
    /// A role whose grant raises an alert; repeat it for several.
    #[arg(long, default_values_t = ["admin".to_owned()])]
    privileged: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
}

impl DetectArgs {
    fn detectors(&self) -> Vec<Box<dyn Detector>> {
        let window = Duration::from_secs(self.window);
        let action = self.login_action.clone();
        vec![
            Box::new(
                BruteForce::new(action.clone())
                    .per_username(self.per_username)
                    .per_source_ip(self.per_ip)
                    .within(window),
            ),
            Box::new(
                CredentialStuffing::new(action.clone())
                    .distinct_usernames(self.distinct_usernames)
                    .within(window),
            ),
            Box::new(
                PasswordSpraying::new(action)
                    .accounts(self.sprayed_accounts)
                    .within(Duration::from_secs(self.spraying_window)),
            ),
            Box::new(DenialBurst::new().denials(self.denials).within(window)),
            Box::new(
                MassExport::new()
                    .records(self.export_records)
                    .exports(self.exports)
                    .within(Duration::from_secs(self.export_window)),
            ),
            Box::new(PrivilegeGrant::new(&self.privileged)),
            Box::new(RevokedRole::new()),
        ]
    }
}

/// Shows every event of the trail to the detectors, in trail order, and prints their
/// alerts. Events the trail recorded as alerts are not shown, as the trail's writer does not
/// show them; lines that are not events (a damaged trail) are counted and skipped.
pub(crate) fn run(args: &DetectArgs) -> Result<(), String> {
    let (dir, format) = (&args.dir, args.format);
    let mut detectors = args.detectors();
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    if format == Format::Table {
        writeln!(out, "{}", query::table_header()).map_err(|e| e.to_string())?;
    }
    let (mut events, mut skipped, mut raised) = (0u64, 0u64, 0u64);
    let mut alerts = Vec::new();
    let mut failure = None;
    query::for_each_event(dir, |_, value| {
        if value["category"] == "alert" {
            return ControlFlow::Continue(());
        }
        let Ok(event) = AuditEvent::deserialize(value) else {
            skipped += 1;
            return ControlFlow::Continue(());
        };
        events += 1;
        for detector in &mut detectors {
            detector.observe(&event, &mut alerts);
        }
        for alert in alerts.drain(..) {
            raised += 1;
            let written = serde_json::to_value(&alert)
                .map_err(io::Error::other)
                .and_then(|value| {
                    let line = value.to_string();
                    print_event(&mut out, &line, &value, format, &mut Vec::new()).map(drop)
                });
            if let Err(error) = written {
                failure = Some(error);
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    })
    .map_err(|e| format!("{}: {e}", dir.display()))?;
    match failure {
        Some(error) if error.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
        Some(error) => return Err(error.to_string()),
        None => out.flush().or_else(ignore_broken_pipe)?,
    }
    let skipped = if skipped > 0 {
        format!(" ({skipped} unreadable line(s) skipped: run `audit verify`)")
    } else {
        String::new()
    };
    eprintln!("{raised} alert(s) from {events} event(s){skipped}");
    Ok(())
}
