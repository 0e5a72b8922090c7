//! A private PostgreSQL cluster for a test: `initdb` in a temporary
//! directory, a free loopback port, no Unix socket, trust authentication for
//! the `vigil` role on loopback only, started with `pg_ctl -w` (which returns
//! once the server accepts connections) and stopped when dropped.
//!
//! The server binaries are found through `VIGIL_PG_BIN`, then `pg_config
//! --bindir`, then the newest `/usr/lib/postgresql/<version>/bin` (Debian).
//! PostgreSQL refuses to run as root: as root, the cluster belongs to the
//! `postgres` user and its commands run through `runuser`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{ok, run};

/// A running private cluster.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

fn find_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("VIGIL_PG_BIN") {
        return PathBuf::from(p);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if p.join("initdb").exists() {
            return p;
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(Result::ok).map(|e| e.path().join("bin")).filter(|p| p.join("initdb").exists()).collect())
        .unwrap_or_default();
    versions.sort_by_key(|p| {
        p.parent().and_then(|v| v.file_name()).and_then(|v| v.to_str()).and_then(|v| v.parse::<u32>().ok())
    });
    versions.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL server binaries (initdb, pg_ctl) not found: install PostgreSQL 15 \
             (`apt-get install postgresql`, which .ci/run does) or set VIGIL_PG_BIN"
        )
    })
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

impl Postgres {
    /// Creates and starts a cluster, with an empty database `vigil`.
    pub fn start() -> Postgres {
        let bin = find_bin();
        let as_postgres = is_root();
        let dir = tempfile::Builder::new().prefix("vigil-pg-").tempdir().unwrap();
        let pg = Postgres { dir, bin, port: crate::free_port(), as_postgres };
        if as_postgres {
            ok(run(Command::new("chown").arg("postgres:").arg(pg.dir.path())));
        }
        let data = pg.data();
        ok(run(pg
            .cmd("initdb")
            .args(["-U", "vigil", "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync", "-D"])
            .arg(&data)));
        pg.start_server();
        ok(run(pg.cmd("createdb").args(["-h", "127.0.0.1", "-p", &pg.port.to_string(), "-U", "vigil", "vigil"])));
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn cmd(&self, name: &str) -> Command {
        let mut c = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(name));
            c
        } else {
            Command::new(self.bin.join(name))
        };
        // The postgres user may not be able to enter the test's directory.
        c.current_dir(self.dir.path());
        c
    }

    fn start_server(&self) {
        let opts = format!("-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''", self.port);
        let log = self.dir.path().join("server.log");
        let out = run(self
            .cmd("pg_ctl")
            .args(["-w", "-t", "60", "-D"])
            .arg(self.data())
            .arg("-l")
            .arg(&log)
            .args(["-o", &opts, "start"]));
        assert!(
            out.status.success(),
            "PostgreSQL did not start: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Restarts the server (`pg_ctl restart -m fast`): every connection to
    /// it is cut, as in a database failover. Returns once it accepts
    /// connections again.
    pub fn restart(&self) {
        let opts = format!("-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''", self.port);
        let log = self.dir.path().join("server.log");
        ok(run(self
            .cmd("pg_ctl")
            .args(["-w", "-t", "60", "-m", "fast", "-D"])
            .arg(self.data())
            .arg("-l")
            .arg(&log)
            .args(["-o", &opts, "restart"])));
    }

    /// Stops the server (`pg_ctl stop -m fast`), cutting every connection.
    pub fn stop(&self) {
        ok(run(self.cmd("pg_ctl").args(["-w", "-m", "fast", "-D"]).arg(self.data()).arg("stop")));
    }

    /// Starts a stopped server again; returns once it accepts connections.
    pub fn start_again(&self) {
        self.start_server();
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A `[store]` section for `coordinator.toml` naming this cluster's
    /// database `vigil`.
    pub fn store_section(&self) -> String {
        format!(
            "[store]\nbackend = \"postgres\"\nhost = \"127.0.0.1\"\nport = {}\ndbname = \"vigil\"\nuser = \"vigil\"\n",
            self.port
        )
    }

    /// Runs SQL as the `vigil` role (through `psql`), returning its output.
    pub fn psql(&self, sql: &str) -> String {
        ok(run(self.cmd("psql").args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "vigil",
            "-d",
            "vigil",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])))
    }

    /// The cluster's directory (its `server.log` is there).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.cmd("pg_ctl").args(["-w", "-m", "immediate", "-D"]).arg(self.data()).arg("stop").output();
    }
}
