//! The `vigil-keyserver` command: thin dispatch to the library.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vigil_common::exit::{self, Exit};
use vigil_common::outln;
use vigil_keyserver::config::Config;
use vigil_keyserver::server::{self, ServeError};

/// mimalloc rather than the system allocator: matching and tokenising
/// allocate and free many small buffers, and glibc's malloc took about a
/// fifth of the coordinator's time in a national feed (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Vigil key service: evaluates nodes' blinded match keys obliviously under
/// a key only it holds, within each caller's allowance.
#[derive(Parser)]
#[command(name = "vigil-keyserver", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve over mutual TLS until SIGTERM or SIGINT.
    Serve {
        /// Configuration file (docs/operations.md describes every key).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Load a configuration file and its key, report problems, and exit.
    CheckConfig {
        /// Configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Create the key service's secrets (mode 0600, never overwritten):
    /// `seed.key`, from which every epoch's key is derived, and the log's
    /// signing key `log.key` with its verifier key `log.vkey` to publish.
    Keygen {
        /// Directory to write into.
        #[arg(long)]
        out: PathBuf,
        /// The log's origin (also the signing key's name), e.g.
        /// `vigil.example/keyserver`.
        #[arg(long)]
        origin: String,
    },
    /// Print the public key of the configured epoch (hex), to publish.
    PublicKey {
        /// Configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn load(path: &std::path::Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(|e| Exit::new(exit::CONFIG, e.to_string()).into())
}

fn key_of(c: &Config) -> anyhow::Result<vigil_oprf::ServerKey> {
    let seed = zeroize::Zeroizing::new(
        vigil_common::secrets::read_secret(&c.key.seed).map_err(|e| Exit::new(exit::CONFIG, e.to_string()))?,
    );
    Ok(vigil_oprf::ServerKey::derive(&seed, c.key.epoch).map_err(|e| Exit::new(exit::CONFIG, e.to_string()))?)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config } => {
            let c = load(&config)?;
            vigil_common::cli::init_logs(c.log.format == "json", &c.log.level);
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(server::serve(c, vigil_common::cli::shutdown_signal())).map_err(|e| match e {
                ServeError::Config(m) => Exit::new(exit::CONFIG, m).into(),
                e => anyhow::Error::from(e),
            })
        }
        Command::CheckConfig { config } => {
            let c = load(&config)?;
            key_of(&c)?;
            server::read_signing_key(&c.audit.signing_key).map_err(|e| Exit::new(exit::CONFIG, e.to_string()))?;
            // Certificate, key, client CA and revocation list, as serving reads them.
            vigil_common::tls::server_config(&c.tls.cert, &c.tls.key, &c.tls.client_ca, c.tls.crl.as_deref())
                .map_err(|e| Exit::new(exit::CONFIG, e.0))?;
            outln!("{}: configuration and key load; serving epoch {}", config.display(), c.key.epoch);
            Ok(())
        }
        Command::Keygen { out, origin } => {
            let cfg = |e: String| Exit::new(exit::CONFIG, e);
            vigil_common::secrets::private_dir(&out).map_err(|e| cfg(format!("{}: {e}", out.display())))?;
            let seed = zeroize::Zeroizing::new(vigil_common::secrets::random_key()?);
            let (signer, skey) = vigil_proto::tlog::Signer::from_seed(&origin, &vigil_common::secrets::random_key()?)
                .map_err(|_| cfg("--origin must be non-empty with no spaces or '+'".into()))?;
            let skey = zeroize::Zeroizing::new(skey);
            vigil_common::secrets::write_secret(
                &out.join("seed.key"),
                "Vigil key-service seed. SECRET: only the key service holds it.",
                &seed,
            )
            .map_err(|e| cfg(e.to_string()))?;
            vigil_common::secrets::write_new(
                &out.join("log.key"),
                &format!("# Vigil key-service log signing key. SECRET.\n{}\n", skey.as_str()),
            )
            .map_err(|e| cfg(e.to_string()))?;
            std::fs::write(out.join("log.vkey"), format!("{}\n", signer.verifier().vkey()))?;
            outln!("wrote {0}/seed.key, {0}/log.key and {0}/log.vkey (publish log.vkey)", out.display());
            Ok(())
        }
        Command::PublicKey { config } => {
            let c = load(&config)?;
            let pk = key_of(&c)?.public_key();
            outln!("{}", pk.iter().map(|b| format!("{b:02x}")).collect::<String>());
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
            eprintln!("vigil-keyserver: {e:#}");
            ExitCode::from(e.downcast_ref::<Exit>().map_or(exit::FAILURE, |x| x.code))
        }
    }
}
