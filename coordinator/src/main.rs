//! The `vigil-coordinator` command: thin dispatch to the library.
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use vigil_common::exit::{self, Exit};
use vigil_common::{out, outln};
use vigil_coordinator::config::Config;
use vigil_coordinator::policy::Policy;
use vigil_coordinator::server::{self, ServeError};

/// mimalloc rather than the system allocator: matching and tokenising
/// allocate and free many small buffers, and glibc's malloc took about a
/// fifth of the coordinator's time in a national feed (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Vigil coordinator: blind matching of force tokens against national
/// tokens. It never sees a name, a date of birth or an identifier.
#[derive(Parser)]
#[command(name = "vigil-coordinator", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the coordinator over mutual TLS until SIGTERM or SIGINT.
    Serve {
        /// Configuration file (docs/operations.md describes every key).
        #[arg(long, short)]
        config: PathBuf,
        /// Log as JSON lines instead of text (overrides `[log] format`).
        #[arg(long)]
        json_logs: bool,
    },
    /// Load a configuration file and its keys, report problems, and exit.
    CheckConfig {
        /// Configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Create the coordinator's secrets: the pepper, and the audit-log
    /// signing key with its published verifier key.
    Keygen {
        /// Directory to write `pepper.key`, `audit.key` and `audit.vkey` into.
        #[arg(long)]
        out: PathBuf,
        /// The log's origin (also the key's name), e.g. `vigil.example/audit`.
        #[arg(long)]
        origin: String,
    },
    /// The deployment's private CA: create it, issue and renew certificates
    /// carrying SPIFFE identities (docs/operations.md, "Key ceremony").
    Pki {
        #[command(subcommand)]
        command: PkiCommand,
    },
    /// Bring the PostgreSQL store's schema up to this binary's version
    /// (`[store] backend = "postgres"`): applies each missing migration in
    /// its own transaction, under a lock, and says which. Safe to run again.
    Migrate {
        /// Configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print the default confirmation policy.
    DefaultPolicy,
    /// Train the policy in force on what this coordinator holds (no labels:
    /// expectation-maximisation over the pairs it sees) and write the
    /// trained policy. Run it with the coordinator stopped; then set
    /// `[matching] policy` to the new file and start the coordinator, which
    /// logs the change and decides every pair again.
    Calibrate {
        /// Configuration file of the (stopped) coordinator.
        #[arg(long, short)]
        config: PathBuf,
        /// Where to write the trained policy (must not exist).
        #[arg(long)]
        out: PathBuf,
        /// Version of the trained policy (default: `trained-<UTC time>`).
        #[arg(long)]
        version: Option<String>,
    },
}

#[derive(Subcommand)]
enum PkiCommand {
    /// Create the CA: `ca.crt` (give to every node) and `ca.key` (keep offline).
    Init {
        /// Directory for the CA.
        #[arg(long)]
        dir: PathBuf,
        /// The CA's common name.
        #[arg(long, default_value = "Vigil deployment CA")]
        name: String,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: i64,
    },
    /// Issue (or, with --replace, renew with a fresh key) a certificate.
    Issue {
        /// Directory of the CA.
        #[arg(long)]
        dir: PathBuf,
        /// The deployment's trust domain, e.g. vigil.example.
        #[arg(long)]
        trust_domain: String,
        /// force, source, auditor, witness, coordinator or keyserver.
        #[arg(long, value_parser = ["force", "source", "auditor", "witness", "coordinator", "keyserver"])]
        role: String,
        /// The force, source, auditor or witness code (not for the coordinator).
        #[arg(long)]
        code: Option<String>,
        /// DNS names (the coordinator's or key service's server certificate).
        #[arg(long)]
        dns: Vec<String>,
        /// Validity in days (short-lived by default: renew with --replace,
        /// or `sign` a new request, before it ends).
        #[arg(long, default_value_t = 30)]
        days: i64,
        /// Writes OUT.crt and OUT.key.
        #[arg(long)]
        out: PathBuf,
        /// Replace existing files (renewal).
        #[arg(long)]
        replace: bool,
    },
    /// Issue a certificate for a party's signing request (`vigil-node csr`):
    /// the CA never sees the party's private key.
    Sign {
        /// Directory of the CA.
        #[arg(long)]
        dir: PathBuf,
        /// The certificate signing request (PEM).
        #[arg(long)]
        csr: PathBuf,
        /// The deployment's trust domain, e.g. vigil.example.
        #[arg(long)]
        trust_domain: String,
        /// force, source, auditor or witness.
        #[arg(long, value_parser = ["force", "source", "auditor", "witness"])]
        role: String,
        /// The force, source, auditor or witness code.
        #[arg(long)]
        code: String,
        /// Validity in days.
        #[arg(long, default_value_t = 30)]
        days: i64,
        /// Writes OUT.crt.
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing certificate (renewal).
        #[arg(long)]
        replace: bool,
    },
    /// Revoke a certificate: adds it to the CA's list (`revoked.txt`) and
    /// writes a new signed revocation list, `crl.pem`, for the coordinator's
    /// `[tls] crl`. Without --cert, signs the list again (before it expires).
    Revoke {
        /// Directory of the CA.
        #[arg(long)]
        dir: PathBuf,
        /// The certificate to revoke (PEM).
        #[arg(long)]
        cert: Option<PathBuf>,
        /// Days until the list must be signed again.
        #[arg(long, default_value_t = 30)]
        days: i64,
    },
}

fn read_text(f: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))
}

/// The CA kept in `dir` (`ca.crt`, `ca.key`).
fn load_ca(dir: &std::path::Path) -> anyhow::Result<vigil_coordinator::pki::Ca> {
    vigil_coordinator::pki::Ca::load(&read_text(&dir.join("ca.crt"))?, &read_text(&dir.join("ca.key"))?)
        .map_err(|e| Exit::new(exit::CONFIG, e.to_string()).into())
}

fn pki(command: PkiCommand) -> anyhow::Result<()> {
    use vigil_coordinator::pki::{Ca, Leaf};
    let cfg_err = |m: String| anyhow::Error::from(Exit::new(exit::CONFIG, m));
    match command {
        PkiCommand::Init { dir, name, days } => {
            vigil_common::secrets::private_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let (ca, key) = Ca::create(&name, days).map_err(|e| cfg_err(e.to_string()))?;
            vigil_common::secrets::write_new(&dir.join("ca.key"), &key)?;
            vigil_common::secrets::write_new(&dir.join("ca.crt"), ca.cert_pem())?;
            outln!(
                "wrote {}/ca.crt (give to every node) and {}/ca.key (secret: keep offline)",
                dir.display(),
                dir.display()
            );
            Ok(())
        }
        PkiCommand::Issue { dir, trust_domain, role, code, dns, days, out, replace } => {
            let ca = load_ca(&dir)?;
            let server = matches!(role.as_str(), "coordinator" | "keyserver");
            let id = match (server, code) {
                (true, None) => format!("spiffe://{trust_domain}/{role}"),
                (true, Some(_)) => return Err(cfg_err(format!("the {role} has no --code"))),
                (false, Some(c)) => format!("spiffe://{trust_domain}/{role}/{c}"),
                (false, None) => {
                    return Err(cfg_err("--code is required for force, source, auditor and witness".into()));
                }
            };
            vigil_proto::spiffe::parse(&id).map_err(|e| cfg_err(e.to_string()))?;
            let mut leaf = Leaf::valid_for(&id, days);
            if server {
                if dns.is_empty() {
                    return Err(cfg_err(format!("the {role}'s certificate needs at least one --dns name")));
                }
                leaf.dns = dns;
                leaf.server = true;
                leaf.client = false;
            }
            let (cert, key) = ca.issue(&leaf).map_err(|e| cfg_err(e.to_string()))?;
            let (cp, kp) = (out.with_extension("crt"), out.with_extension("key"));
            if replace {
                for p in [&cp, &kp] {
                    if p.exists() {
                        std::fs::remove_file(p).with_context(|| format!("replacing {}", p.display()))?;
                    }
                }
            }
            vigil_common::secrets::write_new(&kp, &key)?;
            vigil_common::secrets::write_new(&cp, &cert)?;
            outln!("issued {id}: {} and {} (valid {days} days)", cp.display(), kp.display());
            Ok(())
        }
        PkiCommand::Sign { dir, csr, trust_domain, role, code, days, out, replace } => {
            let ca = load_ca(&dir)?;
            let id = format!("spiffe://{trust_domain}/{role}/{code}");
            vigil_proto::spiffe::parse(&id).map_err(|e| cfg_err(e.to_string()))?;
            let cert =
                ca.sign_request(&read_text(&csr)?, &Leaf::valid_for(&id, days)).map_err(|e| cfg_err(e.to_string()))?;
            let cp = out.with_extension("crt");
            if replace && cp.exists() {
                std::fs::remove_file(&cp).with_context(|| format!("replacing {}", cp.display()))?;
            }
            vigil_common::secrets::write_new(&cp, &cert)?;
            outln!("issued {id} for the key of {}: {} (valid {days} days)", csr.display(), cp.display());
            Ok(())
        }
        PkiCommand::Revoke { dir, cert, days } => {
            let ca = load_ca(&dir)?;
            let list_path = dir.join("revoked.txt");
            let mut list = if list_path.exists() { read_text(&list_path)? } else { String::new() };
            if let Some(c) = &cert {
                let serial = vigil_coordinator::pki::serial_of(&read_text(c)?).map_err(|e| cfg_err(e.to_string()))?;
                let hex = vigil_proto::hex::encode(&serial);
                if list.lines().any(|l| l.split_whitespace().next() == Some(hex.as_str())) {
                    outln!("{} (serial {hex}) was already revoked", c.display());
                } else {
                    let now = time::OffsetDateTime::now_utc().unix_timestamp();
                    list.push_str(&format!("{hex} {now}\n"));
                    std::fs::write(&list_path, &list).with_context(|| format!("writing {}", list_path.display()))?;
                }
            }
            let mut revoked = Vec::new();
            for (i, line) in list.lines().enumerate() {
                let bad =
                    || cfg_err(format!("{} line {}: want `<serial hex> <unix time>`", list_path.display(), i + 1));
                let mut parts = line.split_whitespace();
                let serial = parts.next().and_then(vigil_proto::hex::decode).ok_or_else(bad)?;
                let at = parts
                    .next()
                    .and_then(|t| t.parse::<i64>().ok())
                    .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
                    .ok_or_else(bad)?;
                revoked.push((serial, at));
            }
            // The list's number grows with every list signed.
            let number_path = dir.join("crl.number");
            let number =
                if number_path.exists() { read_text(&number_path)?.trim().parse::<u64>().unwrap_or(0) } else { 0 } + 1;
            let crl = ca.crl(&revoked, number, days).map_err(|e| cfg_err(e.to_string()))?;
            let tmp = dir.join("crl.pem.new");
            std::fs::write(&tmp, crl).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, dir.join("crl.pem"))
                .with_context(|| format!("replacing {}", dir.join("crl.pem").display()))?;
            std::fs::write(&number_path, number.to_string())
                .with_context(|| format!("writing {}", number_path.display()))?;
            outln!(
                "wrote {}/crl.pem (number {number}, {} revoked, valid {days} days): give it to the coordinator ([tls] crl), which reads it again within crl_reload_seconds",
                dir.display(),
                revoked.len()
            );
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil-coordinator: {e:#}");
            ExitCode::from(exit::code_of(&e))
        }
    }
}

fn load_policy(path: Option<&PathBuf>) -> anyhow::Result<Policy> {
    Ok(Policy::read(path.map(PathBuf::as_path)).map_err(|e| Exit::new(exit::CONFIG, e.to_string()))?.0)
}

fn load_config(path: &Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(|e| Exit::new(exit::CONFIG, e.to_string()).into())
}

fn serve_error(e: ServeError) -> anyhow::Error {
    match e {
        ServeError::Config(m) => Exit::new(exit::CONFIG, m).into(),
        other => other.into(),
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config, json_logs } => {
            let cfg = load_config(&config)?;
            vigil_common::cli::init_logs(json_logs || cfg.log.format == "json", &cfg.log.level);
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(async move {
                if let Some(m) = &cfg.metrics {
                    vigil_common::metrics::serve(m.listen).map_err(|e| Exit::new(exit::CONFIG, e))?;
                }
                let listen = cfg.listen;
                let prepared = tokio::task::spawn_blocking(move || server::prepare(cfg)).await?.map_err(serve_error)?;
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .map_err(|e| Exit::new(exit::CONFIG, format!("cannot listen on {listen}: {e}")))?;
                let addr = listener.local_addr()?;
                tracing::info!(%addr, "serving");
                outln!("listening on {addr}");
                server::serve(prepared, listener, vigil_common::cli::shutdown_signal(), Duration::from_secs(10))
                    .await
                    .map_err(serve_error)?;
                tracing::info!("stopped");
                Ok(())
            })
        }
        Command::CheckConfig { config } => {
            let cfg = load_config(&config)?;
            server::read_signing_key(&cfg.keys.audit_signing_key).map_err(serve_error)?;
            vigil_common::secrets::read_secret(&cfg.keys.pepper).map_err(|e| Exit::new(exit::CONFIG, e.to_string()))?;
            load_policy(cfg.matching.policy.as_ref())?;
            // Certificate, key, client CA and revocation list, as serving reads them.
            vigil_common::tls::server_config(&cfg.tls.cert, &cfg.tls.key, &cfg.tls.client_ca, cfg.tls.crl.as_deref())
                .map_err(|e| serve_error(ServeError::Config(e.0)))?;
            if cfg.store.backend == "postgres" {
                let pg = cfg.store.postgres();
                vigil_coordinator::store::postgres::check(&pg)
                    .map_err(|e| Exit::new(exit::UNAVAILABLE, e.to_string()))?;
                outln!(
                    "{}:{}/{}: reachable, schema version {}",
                    pg.host,
                    pg.port,
                    pg.dbname,
                    vigil_coordinator::store::postgres::latest_version()
                );
            }
            outln!("{}: configuration and keys load", config.display());
            Ok(())
        }
        Command::Keygen { out, origin } => {
            if !vigil_proto::tlog::note::is_valid_name(&origin) {
                return Err(Exit::new(exit::CONFIG, "--origin must be non-empty with no spaces or '+'").into());
            }
            vigil_common::secrets::private_dir(&out).with_context(|| format!("creating {}", out.display()))?;
            let pepper = out.join("pepper.key");
            vigil_common::secrets::write_secret(
                &pepper,
                "Vigil coordinator pepper. SECRET: only the coordinator holds it.",
                &vigil_common::secrets::random_key()?,
            )?;
            let (signer, skey) = vigil_proto::tlog::Signer::from_seed(&origin, &vigil_common::secrets::random_key()?)
                .map_err(|e| Exit::new(exit::CONFIG, e.to_string()))?;
            let audit = out.join("audit.key");
            vigil_common::secrets::write_new(&audit, &format!("# Vigil audit-log signing key. SECRET.\n{skey}\n"))?;
            let vkey = out.join("audit.vkey");
            vigil_common::secrets::write_new(&vkey, &format!("{}\n", signer.verifier().vkey()))?;
            outln!(
                "wrote {} (secret), {} (secret) and {} (publish it: nodes and auditors verify the log with it)",
                pepper.display(),
                audit.display(),
                vkey.display()
            );
            Ok(())
        }
        Command::Pki { command } => pki(command),
        Command::Migrate { config } => {
            let cfg = load_config(&config)?;
            if cfg.store.backend != "postgres" {
                outln!("{}: the embedded store needs no migration ([store] backend is \"redb\")", config.display());
                return Ok(());
            }
            let pg = cfg.store.postgres();
            let applied = vigil_coordinator::store::postgres::migrate(&pg)
                .map_err(|e| Exit::new(exit::UNAVAILABLE, e.to_string()))?;
            for (v, name) in &applied {
                outln!("applied migration {v}: {name}");
            }
            outln!(
                "{}:{}/{} is at schema version {}{}",
                pg.host,
                pg.port,
                pg.dbname,
                vigil_coordinator::store::postgres::latest_version(),
                if applied.is_empty() { " (nothing to apply)" } else { "" }
            );
            Ok(())
        }
        Command::Calibrate { config, out, version } => {
            // Before the store is read and the policy trained (minutes at
            // national scale), not after.
            if out.exists() {
                anyhow::bail!(
                    "{}: exists already; give --out a new file for the trained policy (nothing was trained)",
                    out.display()
                );
            }
            let cfg = load_config(&config)?;
            let version = version.unwrap_or_else(|| {
                let t = vigil_proto::time::rfc3339(vigil_common::clock::now_ms());
                format!("trained-{}", t.replace([':', '-'], ""))
            });
            let trained = server::calibrate(&cfg, &version).map_err(serve_error)?;
            Policy::from_toml(&trained.to_toml()).map_err(|e| anyhow::anyhow!("trained policy does not load: {e}"))?;
            vigil_common::secrets::write_new(&out, &trained.to_toml())?;
            let t = trained.training.clone().unwrap_or_else(|| unreachable!("train() records how it trained"));
            outln!(
                "wrote {}: policy {} trained from {} on {} subjects, {} national records, {} pairs ({} rounds); \
                 {:.4} national records per subject are the same person",
                out.display(),
                trained.version,
                t.from_version,
                t.subjects,
                t.records,
                t.pairs,
                t.rounds,
                trained.matches_per_subject
            );
            outln!(
                "to use it: set [matching] policy = \"{}\" and start the coordinator; every pair is decided again and the change is logged",
                out.display()
            );
            Ok(())
        }
        Command::DefaultPolicy => {
            out!("{}", vigil_coordinator::policy::DEFAULT_POLICY);
            Ok(())
        }
    }
}
