//! The `vigil-node` command: thin dispatch to the library.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::sync::Arc;
use vigil_common::exit::{self, Exit};
use vigil_common::secrets;
use vigil_common::{out, outln};
use vigil_identity::tokens::LinkageKey;
use vigil_node::config::{NodeConfig, NodeRole};
use vigil_node::error::NodeError;
use vigil_node::keyfile::Keys;
use vigil_node::local::{LocalStore, Status};
use vigil_node::sync::FeedInput;
use vigil_node::{check, client, inbox, keyfile, render, watch};

/// mimalloc rather than the system allocator: matching and tokenising
/// allocate and free many small buffers, and glibc's malloc took about a
/// fifth of the coordinator's time in a national feed (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Vigil node: runs on a force's or a national source's own machine.
/// Identity data stays here; only tokens, opaque references and sealed
/// boxes leave.
#[derive(Parser)]
#[command(name = "vigil-node", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct ConfigArg {
    /// The node's configuration file.
    #[arg(long, short, env = "VIGIL_NODE_CONFIG", default_value = "node.toml")]
    config: PathBuf,
}

#[derive(Subcommand)]
enum InboxCommand {
    /// List the force's disclosures, ranked: in force first, then by
    /// category severity, patterns (several records for one person) first.
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// Output format.
        #[arg(long, default_value = "table", value_parser = ["table", "csv", "json"])]
        format: String,
        /// Only disclosures with this review status.
        #[arg(long, value_parser = ["new", "under_review", "closed"])]
        status: Option<String>,
    },
    /// Set the review status of a disclosure.
    Set {
        #[command(flatten)]
        config: ConfigArg,
        /// Disclosure id (as listed).
        id: String,
        /// New status.
        #[arg(long, value_parser = ["new", "under_review", "closed"])]
        status: String,
        /// A note for the record.
        #[arg(long)]
        note: Option<String>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify the log: signature, consistency with the last checkpoint this
    /// node verified (a split view is an alarm), and for an auditor every
    /// entry and the log's invariants; for a force every inbox disclosure.
    Verify {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// What was shared with whom, when and under which policy.
    Report {
        #[command(flatten)]
        config: ConfigArg,
        /// Only this force.
        #[arg(long)]
        force: Option<String>,
        /// Only entries from this date (YYYY-MM-DD).
        #[arg(long)]
        since: Option<String>,
        /// Output format (html: one self-contained page).
        #[arg(long, default_value = "table", value_parser = ["table", "csv", "json", "html"])]
        format: String,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// After investigating a split-view alarm: archive the checkpoints this
    /// node held (to its data directory, alarms/) and trust the coordinator's
    /// current log from the next verification on.
    ClearAlarm {
        #[command(flatten)]
        config: ConfigArg,
        /// Required: confirms that the alarm was investigated.
        #[arg(long)]
        confirm: bool,
    },
    /// Export the checkpoint, entries and proofs as plain files for
    /// independent verification (auditor).
    Export {
        #[command(flatten)]
        config: ConfigArg,
        /// Directory to write into.
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum WitnessCommand {
    /// Create a witness signing key; prints its verifier key for the
    /// coordinator's `[[audit.witnesses]]` and the nodes' `[audit] witnesses`.
    Keygen {
        /// The witness's name, e.g. witness.ico.example/w1 (no spaces or '+').
        #[arg(long)]
        name: String,
        /// The key file to write (mode 0600; never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// Cosign the coordinator's checkpoints after checking their
    /// consistency, every `[witness] interval_seconds`, until SIGTERM.
    Run {
        #[command(flatten)]
        config: ConfigArg,
        /// One step, then exit (for a scheduler, or a test).
        #[arg(long)]
        once: bool,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Force: send the HR roster's changes (adds, changes, leavers) to the
    /// coordinator in idempotent batches.
    Sync {
        #[command(flatten)]
        config: ConfigArg,
        /// The roster CSV (docs/formats.md).
        #[arg(long)]
        roster: PathBuf,
        /// Allow a sync that removes more than the configured share of staff.
        #[arg(long)]
        allow_removals: bool,
        /// Where to write the JSON report of refused rows (default: the
        /// node's data directory, reports/).
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Source: send national records added, changed or withdrawn.
    Feed {
        #[command(flatten)]
        config: ConfigArg,
        /// A full extract, diffed against the last one fed (records no
        /// longer in it are withdrawn).
        #[arg(long, conflicts_with = "delta")]
        extract: Option<PathBuf>,
        /// A delta: records added or changed since the last feed.
        #[arg(long)]
        delta: Option<PathBuf>,
        /// Record ids to withdraw (CSV with one column, record_id).
        #[arg(long)]
        withdraw: Option<PathBuf>,
        /// Allow withdrawing more than the configured share of records.
        #[arg(long)]
        allow_removals: bool,
        /// Where to write the JSON report of refused rows.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Force: receive disclosures continuously into the local inbox, verified
    /// against the audit log; runs until SIGTERM or SIGINT.
    Watch {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Force: the inbox of disclosures (names appear only here, on the
    /// force's own machine).
    Inbox {
        #[command(subcommand)]
        command: InboxCommand,
    },
    /// Ask the coordinator's health service whether it is serving (over
    /// mutual TLS with this node's certificate); exit 0 if it is, 69 if not.
    Health {
        #[command(flatten)]
        config: ConfigArg,
        /// Keep asking for up to this many seconds.
        #[arg(long, default_value_t = 0)]
        wait: u64,
    },
    /// Load the configuration and every key and certificate it names,
    /// report problems, and exit.
    CheckConfig {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Audit the transparency log (auditor or force).
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Witness the transparency log (witness role): check consistency,
    /// cosign checkpoints.
    Witness {
        #[command(subcommand)]
        command: WitnessCommand,
    },
    /// Force: a pre-employment check of applicants, answered only to this
    /// force; the coordinator keeps nothing of the applicants.
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// Applicants CSV (docs/formats.md).
        #[arg(long)]
        applicants: PathBuf,
        /// Why the force checks: its case reference (1 to 64 letters,
        /// digits, spaces and - _ / . : #), written into the audit log.
        /// Never a name.
        #[arg(long)]
        purpose: String,
        /// Output format.
        #[arg(long, default_value = "table", value_parser = ["table", "csv", "json"])]
        format: String,
    },
    /// Create this node's TLS key and a certificate signing request for the
    /// deployment's CA (`vigil-coordinator pki sign`): the private key never
    /// leaves this machine.
    Csr {
        /// The deployment's trust domain, e.g. vigil.example.
        #[arg(long)]
        trust_domain: String,
        /// force, source, auditor or witness.
        #[arg(long, value_parser = ["force", "source", "auditor", "witness"])]
        role: String,
        /// This node's force, source or auditor code.
        #[arg(long)]
        code: String,
        /// Writes OUT.key (mode 0600) and OUT.csr.
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing key (a renewal with a fresh key).
        #[arg(long)]
        replace: bool,
    },
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil-node: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// The one mapping of errors to exit codes (docs/operations.md).
fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if let Some(n) = cause.downcast_ref::<NodeError>() {
            return match n {
                NodeError::Config(_) => exit::CONFIG,
                NodeError::Input(_) => exit::INPUT,
                NodeError::Unavailable(_) => exit::UNAVAILABLE,
                NodeError::Audit(_) => exit::AUDIT,
                _ => exit::FAILURE,
            };
        }
        if let Some(x) = cause.downcast_ref::<Exit>() {
            return x.code;
        }
    }
    exit::FAILURE
}

fn load(c: &ConfigArg, role: Option<NodeRole>) -> anyhow::Result<NodeConfig> {
    let cfg = NodeConfig::load(&c.config).map_err(|e| Exit::new(exit::CONFIG, e.to_string()))?;
    if let Some(r) = role
        && cfg.role != r
    {
        return Err(Exit::new(
            exit::CONFIG,
            format!(
                "{}: this command is for a {} node, but this node is a {}",
                c.config.display(),
                r.as_str(),
                cfg.role.as_str()
            ),
        )
        .into());
    }
    Ok(cfg)
}

fn init_logs(cfg: &NodeConfig) {
    vigil_common::cli::init_logs(cfg.log.format == "json", &cfg.log.level);
}

fn open_store(cfg: &NodeConfig) -> anyhow::Result<LocalStore> {
    LocalStore::open(&cfg.data_dir).map_err(|e| Exit::new(exit::FAILURE, e.to_string()).into())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// Rows refused by a sync or feed that applied the rest: said on standard
/// error, but not a failure (exit 0 means every usable row was applied; a
/// non-zero exit means nothing, or exactly what the message says, was).
fn refused_warning(refused: u64, kept: &str, report: &str) {
    if refused > 0 {
        eprintln!("vigil-node: {refused} rows were refused and {kept}; the report {report} says which and why");
    }
}

fn refused_exit(refused: u64, report: &str) -> anyhow::Result<()> {
    if refused > 0 {
        return Err(Exit::new(
            exit::INPUT,
            format!(
                "{refused} rows were refused and keep their previous state; the report {report} says which and why"
            ),
        )
        .into());
    }
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Sync { config, roster, allow_removals, report } => {
            let cfg = load(&config, Some(NodeRole::Force))?;
            init_logs(&cfg);
            let keys = Keys::load(&cfg)?;
            let store = open_store(&cfg)?;
            let s = runtime()?.block_on(async {
                let ch = client::connect_within(&cfg, std::time::Duration::from_secs(cfg.sync.retry_seconds)).await?;
                vigil_node::sync::sync_roster(&cfg, &keys, &store, ch, &roster, allow_removals, report.as_deref()).await
            })?;
            out!("{}", render::sync_summary(&cfg.code, &s));
            refused_warning(s.refused, "keep their previous enrolment", &s.report);
            Ok(())
        }
        Command::Feed { config, extract, delta, withdraw, allow_removals, report } => {
            let cfg = load(&config, Some(NodeRole::Source))?;
            init_logs(&cfg);
            if extract.is_none() && delta.is_none() && withdraw.is_none() {
                return Err(Exit::new(exit::CONFIG, "give --extract, --delta or --withdraw").into());
            }
            let keys = Arc::new(Keys::load(&cfg)?);
            let store = Arc::new(open_store(&cfg)?);
            let s = runtime()?.block_on(async {
                let ch = client::connect_within(&cfg, std::time::Duration::from_secs(cfg.sync.retry_seconds)).await?;
                let input = FeedInput {
                    extract: extract.as_deref(),
                    delta: delta.as_deref(),
                    withdraw: withdraw.as_deref(),
                    allow_removals,
                    report: report.as_deref(),
                };
                vigil_node::sync::feed(&cfg, keys, store, ch, input).await
            })?;
            out!("{}", render::feed_summary(&cfg.code, &s));
            if s.unknown_withdrawals > 0 {
                eprintln!(
                    "vigil-node: {} withdrawals name records this node never fed or already withdrew; they change nothing",
                    s.unknown_withdrawals
                );
            }
            refused_warning(s.refused, "keep their previous state at the coordinator", &s.report);
            Ok(())
        }
        Command::Watch { config } => {
            let cfg = load(&config, Some(NodeRole::Force))?;
            init_logs(&cfg);
            let store = Arc::new(open_store(&cfg)?);
            runtime()?.block_on(async {
                if let Some(m) = &cfg.metrics {
                    vigil_common::metrics::serve(m.listen).map_err(|e| Exit::new(exit::CONFIG, e))?;
                }
                tracing::info!(force = %cfg.code, "watching for disclosures");
                watch::watch(&cfg, store, vigil_common::cli::shutdown_signal()).await?;
                tracing::info!("stopped");
                Ok::<(), anyhow::Error>(())
            })
        }
        Command::Inbox { command } => match command {
            InboxCommand::List { config, format, status } => {
                let cfg = load(&config, Some(NodeRole::Force))?;
                let keys = Keys::load(&cfg)?;
                let store = open_store(&cfg)?;
                let mut items = inbox::build(&store, &keys)?;
                if let Some(st) = status {
                    items.retain(|i| i.status == st);
                }
                out!("{}", render::inbox(&items, &format)?);
                Ok(())
            }
            InboxCommand::Set { config, id, status, note } => {
                let cfg = load(&config, Some(NodeRole::Force))?;
                let store = open_store(&cfg)?;
                let st = Status::parse(&status).ok_or_else(|| Exit::new(exit::CONFIG, "unknown status"))?;
                // An amendment's id stands for its case.
                let id = inbox::case_of(&store, &id)?.unwrap_or(id);
                let now = vigil_common::clock::now_ms();
                if !store
                    .set_status(&id, st, note.as_deref(), now)
                    .map_err(|e| Exit::new(exit::FAILURE, e.to_string()))?
                {
                    return Err(Exit::new(exit::INPUT, format!("no disclosure {id} in this inbox")).into());
                }
                outln!("{id}: {}", st.as_str());
                Ok(())
            }
        },
        Command::Health { config, wait } => {
            let cfg = load(&config, None)?;
            let at = runtime()?.block_on(client::health(&cfg, std::time::Duration::from_secs(wait)))?;
            outln!("coordinator {at} is serving");
            Ok(())
        }
        Command::CheckConfig { config } => {
            let cfg = load(&config, None)?;
            let tls = vigil_node::tls::load(&cfg)?;
            vigil_node::verify::LogKey::load(&cfg)?;
            if matches!(cfg.role, NodeRole::Force | NodeRole::Source) {
                Keys::load(&cfg)?;
            }
            if cfg.role == NodeRole::Witness {
                vigil_node::witness::load_signer(&cfg)?;
            }
            outln!(
                "{}: configuration and keys load; certificate {} chains to the CA and is valid until {}; \
                 the coordinator must present {}",
                config.config.display(),
                tls.id,
                tls.not_after,
                tls.coordinator
            );
            Ok(())
        }
        Command::Witness { command } => match command {
            WitnessCommand::Keygen { name, out } => {
                let vkey = vigil_node::witness::keygen(&name, &out)?;
                outln!("wrote {}; its verifier key:\n{vkey}", out.display());
                Ok(())
            }
            WitnessCommand::Run { config, once } => {
                let cfg = load(&config, Some(NodeRole::Witness))?;
                init_logs(&cfg);
                let store = open_store(&cfg)?;
                let done = runtime()?.block_on(vigil_node::witness::run(
                    &cfg,
                    &store,
                    once,
                    vigil_common::cli::shutdown_signal(),
                ))?;
                if let Some(c) = done {
                    outln!(
                        "cosigned the checkpoint at size {}; configured witnesses who have cosigned it: {}",
                        c.size,
                        c.cosignatures
                    );
                }
                Ok(())
            }
        },
        Command::Audit { command } => match command {
            AuditCommand::Verify { config } => {
                let cfg = load(&config, None)?;
                init_logs(&cfg);
                let store = open_store(&cfg)?;
                let v = runtime()?.block_on(async {
                    let ch = client::connect(&cfg).await?;
                    vigil_node::audit::verify(&cfg, &store, ch).await
                })?;
                out!("{}", render::verified(cfg.role, &v));
                if !v.problems.is_empty() {
                    for p in &v.problems {
                        eprintln!("PROBLEM: {p}");
                    }
                    return Err(
                        Exit::new(exit::AUDIT, format!("{} problems found in the log", v.problems.len())).into()
                    );
                }
                Ok(())
            }
            AuditCommand::Report { config, force, since, format, out } => {
                let cfg = load(&config, None)?;
                init_logs(&cfg);
                if let Some(s) = &since {
                    vigil_identity::normalize::Date::parse(s)
                        .map_err(|e| Exit::new(exit::CONFIG, format!("--since: {e}")))?;
                }
                let store = open_store(&cfg)?;
                let r = runtime()?.block_on(async {
                    let ch = client::connect(&cfg).await?;
                    vigil_node::audit::build_report(&cfg, &store, ch, force.as_deref(), since.as_deref()).await
                })?;
                let text = render::audit_report(&r, &format)?;
                match out {
                    Some(p) => {
                        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
                        outln!("wrote {}", p.display());
                    }
                    None => out!("{text}"),
                }
                if !r.problems.is_empty() {
                    return Err(
                        Exit::new(exit::AUDIT, format!("{} problems found in the log", r.problems.len())).into()
                    );
                }
                Ok(())
            }
            AuditCommand::ClearAlarm { config, confirm } => {
                let cfg = load(&config, None)?;
                if !confirm {
                    return Err(Exit::new(exit::CONFIG, "give --confirm once the alarm has been investigated").into());
                }
                let store = open_store(&cfg)?;
                let dir = cfg.data_dir.join("alarms");
                vigil_common::secrets::private_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
                let ms = vigil_common::clock::now_ms();
                let archive = dir.join(format!("cleared-{ms}.txt"));
                let n = vigil_node::verify::clear_alarm(&store, &archive).map_err(NodeError::from)?;
                outln!("alarm cleared; {n} checkpoints archived in {}", archive.display());
                Ok(())
            }
            AuditCommand::Export { config, dir } => {
                let cfg = load(&config, Some(NodeRole::Auditor))?;
                init_logs(&cfg);
                let store = open_store(&cfg)?;
                let size = runtime()?.block_on(async {
                    let ch = client::connect(&cfg).await?;
                    vigil_node::audit::export(&cfg, &store, ch, &dir).await
                })?;
                outln!(
                    "exported the log at size {size} to {} (formats: README.txt there, docs/audit.md)",
                    dir.display()
                );
                Ok(())
            }
        },
        Command::Check { config, applicants, purpose, format } => {
            let cfg = load(&config, Some(NodeRole::Force))?;
            init_logs(&cfg);
            let keys = Keys::load(&cfg)?;
            let store = open_store(&cfg)?;
            let out = runtime()?.block_on(async {
                let ch = client::connect(&cfg).await?;
                check::check(&cfg, &keys, &store, ch, &applicants, &purpose).await
            })?;
            out!("{}", render::check(&out, &format)?);
            refused_exit(out.refused, &out.report.summary())
        }
        Command::Csr { trust_domain, role, code, out, replace } => {
            let id = format!("spiffe://{trust_domain}/{role}/{code}");
            vigil_proto::spiffe::parse(&id).map_err(|e| Exit::new(exit::CONFIG, e.to_string()))?;
            let fail = |e: rcgen::Error| Exit::new(exit::FAILURE, format!("signing request: {e}"));
            let key = rcgen::KeyPair::generate().map_err(fail)?;
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
            params.distinguished_name.push(rcgen::DnType::CommonName, id.as_str());
            let uri = id.as_str().try_into().map_err(fail)?;
            params.subject_alt_names.push(rcgen::SanType::URI(uri));
            let csr = params.serialize_request(&key).map_err(fail)?.pem().map_err(fail)?;
            let (kp, cp) = (out.with_extension("key"), out.with_extension("csr"));
            if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
                vigil_common::secrets::private_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
            if replace {
                for p in [&kp, &cp] {
                    if p.exists() {
                        std::fs::remove_file(p).with_context(|| format!("replacing {}", p.display()))?;
                    }
                }
            }
            vigil_common::secrets::write_new(&kp, &key.serialize_pem())?;
            vigil_common::secrets::write_new(&cp, &csr)?;
            outln!(
                "wrote {} (secret: stays here) and {}: send the request to the CA (vigil-coordinator pki sign)",
                kp.display(),
                cp.display()
            );
            Ok(())
        }
        Command::Keygen { out, epoch, only } => {
            if epoch == 0 {
                return Err(Exit::new(exit::CONFIG, "--epoch must be at least 1").into());
            }
            vigil_common::secrets::private_dir(&out).with_context(|| format!("creating {}", out.display()))?;
            if only.as_deref() != Some("local") {
                let path = out.join("linkage.key");
                keyfile::write_linkage(&path, &LinkageKey::new(epoch, secrets::random_key()?))?;
                outln!(
                    "wrote {} (epoch {epoch}): give it to every force and source node, never the coordinator",
                    path.display()
                );
            }
            if only.as_deref() != Some("linkage") {
                let path = out.join("local.key");
                secrets::write_secret(
                    &path,
                    "Vigil node-local secret. SECRET: never leaves this node.",
                    &secrets::random_key()?,
                )?;
                outln!("wrote {}: this node's own secret, keep it with the node's data", path.display());
            }
            Ok(())
        }
    }
}
