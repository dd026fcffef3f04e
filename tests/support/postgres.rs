//! A throwaway PostgreSQL cluster for a test binary: `initdb` into a temporary
//! directory, a server on a free port of 127.0.0.1, and a fresh database for
//! each test. Nothing is installed as a service and nothing outlives the
//! binary: a watchdog stops the server and removes its directory once the test
//! process is gone, whether it ended or was killed. Needs Debian's
//! `postgresql` package (the test command installs it); fails loudly without.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

pub struct Cluster {
    dir: PathBuf,
    port: u16,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static DATABASES: AtomicU32 = AtomicU32::new(0);

/// The binary's cluster, started by the first test that asks.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(Cluster::start)
}

/// Where Debian's PostgreSQL keeps its programs (not on PATH), newest version first.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| dirs.flatten().map(|d| d.path().join("bin")).filter(|b| b.join("initdb").exists()).collect())
        .unwrap_or_default();
    versions.sort();
    versions
        .pop()
        .unwrap_or_else(|| panic!("PostgreSQL is missing: `scripts/test` installs it (apt-get install postgresql)"))
}

/// Whether this process runs as root (`/proc/self` belongs to its user).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `initdb` and the server refuse to run as root: then they run as the
/// `postgres` user the package creates.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn run(mut cmd: Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Cluster {
    fn start() -> Cluster {
        let bin = bin_dir();
        let dir = tempfile::Builder::new().prefix("kugetsu-pg-").tempdir().expect("a temp dir").keep();
        if is_root() {
            let mut chown = Command::new("chown");
            chown.arg("postgres:postgres").arg(&dir);
            run(chown, "chown of the cluster's directory");
        }
        let data = dir.join("data");
        let mut initdb = as_server_user(&bin.join("initdb"));
        initdb.arg("-D").arg(&data).args(["-A", "trust", "-U", "kugetsu", "-E", "UTF8", "--locale=C", "--no-sync"]);
        run(initdb, "initdb");
        // A port another test binary takes between our look and the server's
        // bind fails the start: then another port.
        for attempt in 0..5 {
            let port =
                std::net::TcpListener::bind("127.0.0.1:0").expect("a port").local_addr().expect("an address").port();
            let options = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
                 -c full_page_writes=off -c max_connections=200",
                dir.display()
            );
            let mut start = as_server_user(&bin.join("pg_ctl"));
            start.arg("-D").arg(&data).arg("-o").arg(&options).arg("-l").arg(dir.join("server.log"));
            start.args(["-w", "-t", "30", "start"]).stdout(Stdio::null());
            let started = start.status().expect("pg_ctl runs");
            if started.success() {
                watch_over(&bin, &dir);
                return Cluster { dir, port };
            }
            eprintln!("PostgreSQL did not start on port {port} (attempt {attempt})");
        }
        let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
        panic!("PostgreSQL would not start: {log}");
    }

    /// The URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://kugetsu@127.0.0.1:{}/{name}", self.port)
    }

    /// A new, empty database of the cluster, for one test.
    pub async fn new_database(&self) -> String {
        use sqlx::Connection;
        let name = format!("t{}_{}", std::process::id(), DATABASES.fetch_add(1, Ordering::SeqCst));
        let mut admin = sqlx::PgConnection::connect(&self.url("postgres")).await.expect("the cluster answers");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("a database");
        admin.close().await.ok();
        self.url(&name)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Stops the server and removes its directory once this process is gone. A
/// static is never dropped, and a killed test runs no destructor at all.
fn watch_over(bin: &Path, dir: &Path) {
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stop} -D '{data}' -m immediate -w stop >/dev/null 2>&1; rm -rf '{dir}'",
        pid = std::process::id(),
        stop = if is_root() {
            format!("runuser -u postgres -- '{}'", bin.join("pg_ctl").display())
        } else {
            format!("'{}'", bin.join("pg_ctl").display())
        },
        data = dir.join("data").display(),
        dir = dir.display(),
    );
    let mut watchdog = Command::new("setsid");
    watchdog.args(["sh", "-c", &script]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    // Never waited for: it ends only after this process has, so it is never left a zombie of ours.
    #[allow(clippy::zombie_processes)]
    watchdog.spawn().expect("the cluster's watchdog starts");
}
