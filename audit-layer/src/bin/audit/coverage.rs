//! `audit coverage`: what a stored trail shows of sensitive requests nothing audited.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use audit_layer::coverage::{CoverageRules, TrailCoverage};
use clap::ValueEnum;

/// The settings of `audit coverage`.
#[derive(clap::Args)]
pub(crate) struct CoverageArgs {
    /// The trail directory.
    dir: PathBuf,
    /// Another admin prefix, besides `/admin`: state-changing routes under it look
    /// sensitive. Repeat it for several.
    #[arg(long)]
    admin_prefix: Vec<String>,
    /// Another word that makes state-changing routes naming it look sensitive. Repeat it
    /// for several.
    #[arg(long)]
    word: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = CoverageFormat::Json)]
    format: CoverageFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CoverageFormat {
    /// One JSON object: `events`, `unaudited`, `auth_without_ip`.
    Json,
    /// A line per finding, for people.
    Table,
}

/// Exit 0 when the trail shows no gap, 1 when it shows some.
pub(crate) fn run(args: &CoverageArgs) -> Result<ExitCode, String> {
    let mut rules = CoverageRules::default();
    for prefix in &args.admin_prefix {
        rules = rules.admin_prefix(prefix.as_str());
    }
    for word in &args.word {
        rules = rules.word(word);
    }
    let found = TrailCoverage::scan(&args.dir, &rules)
        .map_err(|e| format!("{}: {e}", args.dir.display()))?;
    let text = match args.format {
        CoverageFormat::Json => serde_json::to_string(&found).map_err(|e| e.to_string())?,
        CoverageFormat::Table => found.to_string(),
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .or_else(crate::ignore_broken_pipe)?;
    Ok(if found.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
