//! The `vigil-lab` command: synthetic data and offline evaluation, for
//! development and benchmarks only.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use vigil_common::exit::{self, Exit};
use vigil_common::{out, outln};
use vigil_coordinator::policy::Policy;
use vigil_lab::{eval, synth};

/// mimalloc rather than the system allocator: matching and tokenising
/// allocate and free many small buffers, and glibc's malloc took about a
/// fifth of the coordinator's time in a national feed (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Vigil lab tools: synthetic data and offline matching evaluation. Not
/// part of any deployment.
#[derive(Parser)]
#[command(name = "vigil-lab", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a synthetic data set: rosters, national extract, delta,
    /// applicants and ground truth, deterministic by seed.
    Synth {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        params: synth::Params,
    },
    /// Offline evaluation: tokenise and match in one process, then print
    /// precision, recall and F1 of confirmed matches against a ground truth.
    Eval {
        /// Force roster files (`roster-<force>.csv`).
        #[arg(long = "roster", required = true, num_args = 1..)]
        rosters: Vec<PathBuf>,
        /// National extract files.
        #[arg(long = "extract", required = true, num_args = 1..)]
        extracts: Vec<PathBuf>,
        /// Ground truth (`force,employee_id,record_id,relation`).
        #[arg(long)]
        truth: PathBuf,
        /// Policy file (default: the shipped default policy).
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Decide with the policy as given, without training it on the data
        /// first (training never reads the truth file).
        #[arg(long)]
        no_train: bool,
        /// Spread the policy's prior over at least this many national records,
        /// as a coordinator with `[matching] national_records` does.
        #[arg(long, default_value_t = 0)]
        national_records: u32,
        /// Write every same-person pair that was not confirmed to this CSV
        /// file (force, employee, record, evidence seen, probability); a pair
        /// with a refused row shows `refused`.
        #[arg(long)]
        missed: Option<PathBuf>,
        /// Write every confirmed pair that is not the same person to this CSV
        /// file (force, employee, record, relation in the truth file or
        /// `unrelated`, evidence seen, probability).
        #[arg(long)]
        wrong: Option<PathBuf>,
        /// Write every evidence pattern seen to this CSV file: pairs, how
        /// many are the same person, how many were confirmed, and the
        /// predicted probability (mean, lowest, highest).
        #[arg(long)]
        patterns: Option<PathBuf>,
        /// Leave these kinds out on both sides (comma-separated short names,
        /// docs/matching.md), to measure what each kind buys.
        #[arg(long, value_delimiter = ',')]
        without: Vec<String>,
        /// Write the policy used (trained, unless --no-train) to this file.
        #[arg(long)]
        write_policy: Option<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Write a JSON report of refused rows and fields for every input
        /// file into this directory (`<file name>.report.json`).
        #[arg(long)]
        reports: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil-lab: {e:#}");
            ExitCode::from(exit::code_of(&e))
        }
    }
}

fn load_policy(path: Option<&PathBuf>) -> anyhow::Result<Policy> {
    Ok(Policy::read(path.map(PathBuf::as_path)).map_err(|e| Exit::new(exit::CONFIG, e.to_string()))?.0)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Synth { out, params } => {
            let s = synth::generate(&params, &out).map_err(|e| match e {
                synth::SynthError::Params(m) => anyhow::Error::from(Exit::new(exit::CONFIG, m)),
                other => other.into(),
            })?;
            outln!(
                "wrote {}: {} forces ({}), {} staff, {} national records ({} same-person pairs, {} hard negatives), {} delta records ({} same-person), {} applicants",
                out.display(),
                s.forces.len(),
                s.forces.join(", "),
                s.staff,
                s.national,
                s.true_pairs,
                s.hard_negatives,
                s.delta,
                s.delta_true_pairs,
                s.applicants
            );
            Ok(())
        }
        Command::Eval {
            rosters,
            extracts,
            truth,
            policy,
            no_train,
            national_records,
            missed,
            wrong,
            patterns,
            without,
            write_policy,
            json,
            reports,
        } => {
            let policy = load_policy(policy.as_ref())?;
            let mut left_out = vigil_proto::kinds::KindSet::EMPTY;
            for name in &without {
                let kind = vigil_proto::KeyKind::from_short_name(name.trim()).ok_or_else(|| {
                    Exit::new(
                        exit::CONFIG,
                        format!("--without: no kind named {:?} (docs/matching.md lists them)", name),
                    )
                })?;
                left_out.insert(kind);
            }
            let opts = eval::Options { train: !no_train, national_records, without: left_out };
            let r = eval::run(&rosters, &extracts, &truth, &policy, opts).map_err(|e| match e {
                eval::EvalError::Input(i) => anyhow::Error::from(Exit::new(exit::INPUT, i.to_string())),
                other => other.into(),
            })?;
            if let Some(dir) = reports {
                std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
                for rep in &r.reports {
                    let name = std::path::Path::new(&rep.file).file_name().map(|n| n.to_string_lossy().into_owned());
                    let path = dir.join(format!("{}.report.json", name.unwrap_or_default()));
                    std::fs::write(&path, serde_json::to_vec_pretty(rep)?)
                        .with_context(|| format!("writing {}", path.display()))?;
                }
            }
            if let Some(path) = missed {
                let rows = r
                    .missed_pairs
                    .iter()
                    .map(|(f, e, r, ev, p)| vec![f.clone(), e.clone(), r.clone(), ev.clone(), format!("{p:.6}")]);
                write_csv(&path, &["force", "employee_id", "record_id", "evidence", "probability"], rows)?;
            }
            if let Some(path) = wrong {
                let rows = r.wrong_pairs.iter().map(|(f, e, r, rel, ev, p)| {
                    vec![f.clone(), e.clone(), r.clone(), rel.clone(), ev.clone(), format!("{p:.6}")]
                });
                let header = ["force", "employee_id", "record_id", "relation", "evidence", "probability"];
                write_csv(&path, &header, rows)?;
            }
            if let Some(path) = patterns {
                let rows = r.patterns.iter().map(|p| {
                    vec![
                        p.evidence.clone(),
                        p.pairs.to_string(),
                        p.same_person.to_string(),
                        p.confirmed.to_string(),
                        format!("{:.6}", p.predicted),
                        format!("{:.6}", p.lowest),
                        format!("{:.6}", p.highest),
                    ]
                });
                let header = ["evidence", "pairs", "same_person", "confirmed", "predicted", "lowest", "highest"];
                write_csv(&path, &header, rows)?;
            }
            if let Some(path) = write_policy {
                std::fs::write(&path, &r.policy_toml).with_context(|| format!("writing {}", path.display()))?;
            }
            if json {
                outln!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                out!("{}", r.to_text());
            }
            Ok(())
        }
    }
}

/// Writes `rows` under `header` to a CSV file at `path`.
fn write_csv(path: &std::path::Path, header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_path(path).with_context(|| format!("writing {}", path.display()))?;
    w.write_record(header)?;
    for row in rows {
        w.write_record(&row)?;
    }
    w.flush().with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
