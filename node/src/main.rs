//! The `vigil-node` command: thin dispatch to the library.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use vigil_node::exit::{self, Exit};
use vigil_node::{keyfile, synth, tokens::LinkageKey};

/// Vigil node: runs on a force's or a national source's own machine.
/// Identity data stays here; only tokens, opaque references and sealed
/// boxes leave.
#[derive(Parser)]
#[command(name = "vigil-node", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create key files: the linkage key of an epoch (one per deployment,
    /// given to every node) and this node's local secret.
    Keygen {
        /// Directory to write `linkage.key` and `local.key` into.
        #[arg(long)]
        out: PathBuf,
        /// Epoch of the new linkage key.
        #[arg(long, default_value_t = 1)]
        epoch: u32,
        /// Write only one of the two files.
        #[arg(long, value_parser = ["linkage", "local"])]
        only: Option<String>,
    },
    /// Write a synthetic data set: rosters, national extract, delta,
    /// applicants and ground truth, deterministic by seed.
    Synth {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Number of forces (1 to 43).
        #[arg(long, default_value_t = 3)]
        forces: usize,
        /// Staff per force.
        #[arg(long, default_value_t = 2000)]
        staff_per_force: usize,
        /// National records in the main extract.
        #[arg(long, default_value_t = 50_000)]
        national: usize,
        /// Share of staff with national records (0 to 1).
        #[arg(long, default_value_t = 0.05)]
        overlap: f64,
        /// Hard negatives (twins, siblings, namesakes) as a share of staff.
        #[arg(long, default_value_t = 0.02)]
        hard_negatives: f64,
        /// Records in the delta file.
        #[arg(long, default_value_t = 100)]
        delta: usize,
        /// Applicants in the pre-employment check file.
        #[arg(long, default_value_t = 50)]
        applicants: usize,
        /// Share of national records without an NI number.
        #[arg(long, default_value_t = 0.05)]
        nino_missing: f64,
        /// Share of national records with an old postcode (the person moved).
        #[arg(long, default_value_t = 0.15)]
        moved: f64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil-node: {e:#}");
            ExitCode::from(exit::code_of(&e))
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Keygen { out, epoch, only } => {
            if epoch == 0 {
                return Err(Exit::new(exit::CONFIG, "--epoch must be at least 1").into());
            }
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            if only.as_deref() != Some("local") {
                let path = out.join("linkage.key");
                keyfile::write_linkage(&path, &LinkageKey::new(epoch, keyfile::random_key()?))?;
                println!(
                    "wrote {} (epoch {epoch}): give it to every force and source node, never the coordinator",
                    path.display()
                );
            }
            if only.as_deref() != Some("linkage") {
                let path = out.join("local.key");
                keyfile::write_secret(
                    &path,
                    "Vigil node-local secret. SECRET: never leaves this node.",
                    &keyfile::random_key()?,
                )?;
                println!("wrote {}: this node's own secret, keep it with the node's data", path.display());
            }
            Ok(())
        }
        Command::Synth {
            out,
            seed,
            forces,
            staff_per_force,
            national,
            overlap,
            hard_negatives,
            delta,
            applicants,
            nino_missing,
            moved,
        } => {
            let params = synth::Params {
                seed,
                forces,
                staff_per_force,
                national,
                overlap,
                hard_negatives,
                delta,
                applicants,
                nino_missing,
                moved,
            };
            let s = synth::generate(&params, &out).map_err(|e| match e {
                synth::SynthError::Params(m) => anyhow::Error::from(Exit::new(exit::CONFIG, m)),
                other => other.into(),
            })?;
            println!(
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
    }
}
