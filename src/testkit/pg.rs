//! A private PostgreSQL cluster for tests and benchmarks: `initdb` + `pg_ctl` in a fresh directory,
//! on a free loopback port, stopped and removed on `Drop`.
//!
//! Owns: finding the binaries, the cluster's directory and port, start/stop/crash/restart, and
//! running every PostgreSQL command as `postgres` (through `runuser`) when we are root, since
//! PostgreSQL refuses to run as root. Leaves: connecting and migrating (`store/`), deciding whether
//! a missing PostgreSQL skips or fails a test (the tests themselves, via `DSMS_REQUIRE_PG`).

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The system account PostgreSQL runs as when we are root.
const PG_USER: &str = "postgres";
/// Appended to `postgresql.conf` by `start`: durability traded for speed, right for throwaway data.
const FAST: &str = "\
fsync = off
synchronous_commit = off
full_page_writes = off
";
/// Appended instead of `FAST` by `start_durable`: a crash loses no committed transaction (and no
/// transaction id is handed out twice), as on a production server.
const DURABLE: &str = "\
fsync = on
synchronous_commit = on
full_page_writes = on
";
/// Appended in both cases.
const SETTINGS: &str = "\
max_connections = 200
shared_buffers = 128MB
listen_addresses = '127.0.0.1'
";
/// How long `pg_ctl` may wait for the server to start or stop.
const PG_CTL_TIMEOUT_SECS: &str = "60";
/// How many fresh ports `start` tries when the one it picked was taken meanwhile.
const PORT_ATTEMPTS: usize = 3;
/// How long `kill` waits for the postmaster to die, and `restart` for its children to let go.
const CRASH_SETTLE: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum PgClusterError {
    #[error(
        "PostgreSQL is not installed: no initdb/pg_ctl in $DSMS_PG_BIN, /usr/lib/postgresql/*/bin or PATH \
         (on Debian: apt-get install postgresql)"
    )]
    NotInstalled,
    #[error(
        "running as root, but there is no `{PG_USER}` system user to run PostgreSQL as \
         (PostgreSQL refuses to run as root): install Debian's postgresql package, \
         or `useradd --system {PG_USER}`, or run as a non-root user"
    )]
    NoPostgresUser,
    #[error("running as root, but `runuser` was not found (it comes with util-linux)")]
    NoRunuser,
    #[error("invalid database name {0:?}: use ASCII letters, digits, `_` or `-` (at most 63)")]
    InvalidDatabaseName(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed ({status})\n{output}")]
    Command {
        command: String,
        status: String,
        /// The command's stderr and stdout, and the server log's tail where it helps.
        output: String,
    },
    #[error("cannot read the postmaster pid from {path}: {reason}")]
    PidFile { path: PathBuf, reason: String },
}

impl PgClusterError {
    fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}

/// A running (or deliberately stopped) PostgreSQL cluster private to this process.
/// The superuser is `postgres` with trust authentication on 127.0.0.1.
#[derive(Debug)]
pub struct PgCluster {
    /// Holds `data/`, the unix sockets and `server.log`; removed on drop.
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    /// `Some(runuser)` when we are root: every PostgreSQL command runs as `postgres` through it.
    runuser: Option<PathBuf>,
}

impl PgCluster {
    /// Finds initdb/pg_ctl: $DSMS_PG_BIN, then /usr/lib/postgresql/*/bin (highest version),
    /// then PATH. None if absent.
    pub fn bin_dir() -> Option<PathBuf> {
        let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
        if let Some(dir) = std::env::var_os("DSMS_PG_BIN").map(PathBuf::from) {
            if has_tools(&dir) {
                return Some(dir);
            }
        }
        let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
                Some((version, entry.path().join("bin")))
            })
            .filter(|(_, bin)| has_tools(bin))
            .collect();
        versions.sort();
        if let Some((_, bin)) = versions.pop() {
            return Some(bin);
        }
        // On PATH, initdb is often a symlink (e.g. /usr/local/bin/initdb): the real directory
        // also holds createdb and psql, which the PATH directory may not.
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|dir| dir.join("initdb"))
            .find(|initdb| initdb.is_file())
            .and_then(|initdb| fs::canonicalize(initdb).ok())
            .and_then(|initdb| initdb.parent().map(Path::to_path_buf))
            .filter(|dir| has_tools(dir))
    }

    /// Creates a fresh cluster (initdb: trust auth, UTF8, locale C, superuser `postgres`) and
    /// starts it on a free loopback port, with test settings (fsync off, 200 connections, …).
    pub fn start() -> Result<PgCluster, PgClusterError> {
        Self::start_with(FAST)
    }

    /// Like `start`, but durable (fsync and synchronous commit on): for crash and outage tests,
    /// where an immediate stop or a SIGKILL must lose nothing that was committed.
    pub fn start_durable() -> Result<PgCluster, PgClusterError> {
        Self::start_with(DURABLE)
    }

    fn start_with(durability: &'static str) -> Result<PgCluster, PgClusterError> {
        let bin = Self::bin_dir().ok_or(PgClusterError::NotInstalled)?;
        let runuser = if running_as_root() { Some(root_prerequisites()?) } else { None };
        let dir = create_private_dir(runuser.is_some())?;
        // From here on, `Drop` cleans up whatever happens.
        let mut cluster = PgCluster { dir, bin, port: 0, runuser };
        cluster.init(durability)?;
        let mut attempt = 1;
        loop {
            cluster.port = free_port()?;
            match cluster.pg_ctl_start() {
                Ok(()) => return Ok(cluster),
                // Another process may have taken the port between our probe and the server's bind.
                Err(err) if attempt < PORT_ATTEMPTS && err.to_string().contains("could not bind") => {
                    attempt += 1;
                }
                Err(err) => return Err(err),
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates database `name` and returns its URL `postgres://postgres@127.0.0.1:{port}/{name}`.
    pub fn create_database(&self, name: &str) -> Result<String, PgClusterError> {
        check_database_name(name)?;
        let (createdb, port) = (self.bin.join("createdb"), self.port);
        self.run(&createdb, words(&format!("-h 127.0.0.1 -p {port} -U {PG_USER} {name}")))?;
        Ok(format!("postgres://{PG_USER}@127.0.0.1:{port}/{name}"))
    }

    /// Dumps database `name` with `pg_dump` (custom format) into a file of the cluster's own
    /// directory, and returns its path.
    pub fn dump_database(&self, name: &str) -> Result<PathBuf, PgClusterError> {
        check_database_name(name)?;
        let file = self.dir.join(format!("{name}.dump"));
        let args = words(&format!("-h 127.0.0.1 -p {} -U {PG_USER} -Fc -f", self.port));
        self.run(&self.bin.join("pg_dump"), args.into_iter().chain([file.clone().into_os_string(), name.into()]).collect())?;
        Ok(file)
    }

    /// Drops database `name` (its sessions are closed), creates it again empty and restores
    /// `dump` (from `dump_database`) into it with `pg_restore`: a restore from a backup.
    pub fn restore_database(&self, name: &str, dump: &Path) -> Result<(), PgClusterError> {
        check_database_name(name)?;
        let port = self.port;
        self.run(&self.bin.join("dropdb"), words(&format!("-h 127.0.0.1 -p {port} -U {PG_USER} --force {name}")))?;
        self.run(&self.bin.join("createdb"), words(&format!("-h 127.0.0.1 -p {port} -U {PG_USER} {name}")))?;
        let args = words(&format!("-h 127.0.0.1 -p {port} -U {PG_USER} --exit-on-error -d {name}"));
        self.run(&self.bin.join("pg_restore"), args.into_iter().chain([dump.as_os_str().to_owned()]).collect())
    }

    /// Turns TLS on (`ssl = on`) with this certificate chain and key (PEM), then reloads the
    /// restarts the server: clients may then ask for TLS (trust authentication is unchanged).
    pub fn enable_tls(&self, cert_pem: &str, key_pem: &str) -> Result<(), PgClusterError> {
        let data = self.data_dir();
        // Written by us, then copied by the server's own account: the key must belong to it,
        // mode 0600, or PostgreSQL refuses it.
        for (name, text) in [("server.crt", cert_pem), ("server.key", key_pem)] {
            let staged = self.dir.join(format!("staged-{name}"));
            fs::write(&staged, text).map_err(PgClusterError::io(format!("writing {}", staged.display())))?;
            let mut args = vec![OsString::from(&staged)];
            args.push(data.join(name).into());
            self.run(Path::new("cp"), args)?;
            let _ = fs::remove_file(&staged);
        }
        let mut args = words("600");
        args.push(data.join("server.key").into());
        self.run(Path::new("chmod"), args)?;
        let conf = data.join("postgresql.conf");
        let context = format!("turning TLS on in {}", conf.display());
        fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .and_then(|mut file| io::Write::write_all(&mut file, b"ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"))
            .map_err(PgClusterError::io(context))?;
        // A restart rather than a reload: TLS is on once this returns.
        self.pg_ctl_stop(PG_CTL_TIMEOUT_SECS)?;
        self.pg_ctl_start()
    }

    /// Stops the server the way an outage would (`pg_ctl stop -m immediate`: no shutdown
    /// checkpoint, crash recovery on restart). The data directory is kept.
    pub fn stop_immediate(&self) -> Result<(), PgClusterError> {
        self.pg_ctl_stop(PG_CTL_TIMEOUT_SECS)
    }

    /// SIGKILLs the postmaster (a crash) and waits until it is gone. The data directory is kept.
    pub fn kill(&self) -> Result<(), PgClusterError> {
        let pid_file = self.data_dir().join("postmaster.pid");
        let pid = read_postmaster_pid(&pid_file)?;
        self.run(Path::new("kill"), words(&format!("-9 {pid}")))?;
        // Our init may not reap orphans: a killed postmaster can stay a zombie, which still
        // answers `kill -0` and would make the next postmaster refuse the stale lock files
        // (postmaster.pid, and the socket's). A zombie holds nothing else, so they can go.
        let deadline = Instant::now() + CRASH_SETTLE;
        loop {
            match process_state(pid) {
                None => return Ok(()),
                Some('Z') => {
                    let socket_lock = self.dir.join(format!(".s.PGSQL.{}.lock", self.port));
                    for lock in [&pid_file, &socket_lock] {
                        match fs::remove_file(lock) {
                            Err(err) if err.kind() != io::ErrorKind::NotFound => {
                                let context = format!("removing stale {}", lock.display());
                                return Err(PgClusterError::io(context)(err));
                            }
                            _ => {}
                        }
                    }
                    return Ok(());
                }
                Some(_) if Instant::now() >= deadline => {
                    return Err(PgClusterError::PidFile { path: pid_file, reason: format!("postmaster {pid} still alive after SIGKILL") });
                }
                Some(_) => thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Stops every process of the server with SIGSTOP: it hangs, neither answering nor failing
    /// (connections still open at the kernel level), as a stuck or overloaded host does.
    pub fn freeze(&self) -> Result<(), PgClusterError> {
        self.signal_all("STOP")
    }

    /// Lets a frozen server run on (SIGCONT).
    pub fn thaw(&self) -> Result<(), PgClusterError> {
        self.signal_all("CONT")
    }

    /// Sends `signal` to the postmaster, then to its children (the backends and workers).
    fn signal_all(&self, signal: &str) -> Result<(), PgClusterError> {
        let postmaster = read_postmaster_pid(&self.data_dir().join("postmaster.pid"))?;
        let mut pids = vec![postmaster];
        pids.extend(children_of(postmaster));
        let list: Vec<String> = pids.iter().map(u32::to_string).collect();
        self.run(Path::new("kill"), words(&format!("-{signal} {}", list.join(" "))))
    }

    /// Starts the server again on the same port after `stop_immediate` or `kill`.
    pub fn restart(&self) -> Result<(), PgClusterError> {
        // After a kill, the old backends may take a moment to notice and release shared memory;
        // until then the new postmaster refuses to start. Retry, bounded.
        let deadline = Instant::now() + CRASH_SETTLE;
        loop {
            match self.pg_ctl_start() {
                Ok(()) => return Ok(()),
                Err(err) if Instant::now() < deadline && err.to_string().contains("shared memory") => {
                    thread::sleep(Duration::from_millis(200));
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// For a cluster kept in a `static` (whose `Drop` never runs): a small watcher process stops
    /// the server and removes its directory once this process has exited, however it ends.
    pub fn stop_when_process_exits(&self) -> Result<(), PgClusterError> {
        let pg_ctl = self.bin.join("pg_ctl");
        let as_user = self.runuser.as_ref().map(|r| format!("{} -u {PG_USER} -- ", r.display())).unwrap_or_default();
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {as_user}'{pg_ctl}' stop -m immediate -D '{data}' >/dev/null 2>&1; rm -rf '{dir}'",
            pid = std::process::id(),
            pg_ctl = pg_ctl.display(),
            data = self.data_dir().display(),
            dir = self.dir.display(),
        );
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map(drop)
            .map_err(PgClusterError::io("starting the cluster's exit watcher"))
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn init(&self, durability: &str) -> Result<(), PgClusterError> {
        let data = self.data_dir();
        let mut args = words(&format!("-A trust -U {PG_USER} -E UTF8 --locale=C --no-sync -D"));
        args.push(data.clone().into());
        self.run(&self.bin.join("initdb"), args)?;
        // Sockets live in our directory, never in the system's /var/run/postgresql.
        let sockets = self.dir.to_string_lossy().replace('\'', "''");
        let settings = format!("\n# dsms testkit\n{durability}{SETTINGS}unix_socket_directories = '{sockets}'\n");
        let conf = data.join("postgresql.conf");
        let context = format!("appending test settings to {}", conf.display());
        fs::OpenOptions::new()
            .append(true)
            .open(&conf)
            .and_then(|mut file| io::Write::write_all(&mut file, settings.as_bytes()))
            .map_err(PgClusterError::io(context))
    }

    fn pg_ctl_start(&self) -> Result<(), PgClusterError> {
        let (data, log) = (self.data_dir(), self.log_file());
        let log_start = fs::metadata(&log).map_or(0, |meta| meta.len());
        // The port travels on the command line, so a retry on another port needs no config edit.
        let mut args = words(&format!("start -w -t {PG_CTL_TIMEOUT_SECS} -D"));
        args.extend([data.into(), "-l".into(), log.clone().into(), "-o".into()]);
        args.push(format!("-p {}", self.port).into());
        self.run(&self.bin.join("pg_ctl"), args).map_err(|err| match err {
            PgClusterError::Command { command, status, output } => {
                let tail = log_tail(&log, log_start);
                let output = format!("{output}\n--- {} ---\n{tail}", log.display());
                PgClusterError::Command { command, status, output }
            }
            other => other,
        })
    }

    fn pg_ctl_stop(&self, timeout_secs: &str) -> Result<(), PgClusterError> {
        let mut args = words(&format!("stop -w -t {timeout_secs} -m immediate -D"));
        args.push(self.data_dir().into());
        self.run(&self.bin.join("pg_ctl"), args)
    }

    /// Runs a PostgreSQL tool (as `postgres` when we are root), from our directory, with the
    /// libpq environment cleared so that only our arguments count.
    fn run(&self, program: &Path, args: Vec<OsString>) -> Result<(), PgClusterError> {
        let mut command = match &self.runuser {
            Some(runuser) => {
                let mut command = Command::new(runuser);
                command.args(["-u", PG_USER, "--"]).arg(program);
                command
            }
            None => Command::new(program),
        };
        command.args(&args).current_dir(&self.dir).env("PGCONNECT_TIMEOUT", "10");
        for var in "PGDATA PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGOPTIONS PGSERVICE".split(' ') {
            command.env_remove(var);
        }
        let shown = std::iter::once(program.as_os_str())
            .chain(args.iter().map(OsString::as_os_str))
            .map(OsStr::to_string_lossy)
            .collect::<Vec<_>>()
            .join(" ");
        let output = command.output().map_err(PgClusterError::io(format!("running `{shown}`")))?;
        check(shown, &output)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.data_dir().join("postmaster.pid").exists() {
            // A server left frozen by a failed test could not stop.
            let _ = self.thaw();
            let _ = self.pg_ctl_stop("10");
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The last lines the server logged since byte `start`: what went wrong in this attempt.
fn log_tail(log: &Path, start: u64) -> String {
    let text = fs::read(log).unwrap_or_default();
    let text = String::from_utf8_lossy(text.get(start as usize..).unwrap_or_default());
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Command-line words (our arguments never contain spaces except paths, which are pushed whole).
fn words(line: &str) -> Vec<OsString> {
    line.split_whitespace().map(OsString::from).collect()
}

fn check(command: String, output: &Output) -> Result<(), PgClusterError> {
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    Err(PgClusterError::Command {
        command,
        status: output.status.to_string(),
        output: format!("{}\n{}", stderr.trim_end(), stdout.trim_end()).trim().to_owned(),
    })
}

/// `id -u` says 0. Without `id`, we assume an ordinary user (and PostgreSQL will say otherwise).
fn check_database_name(name: &str) -> Result<(), PgClusterError> {
    let valid = !name.is_empty() && name.len() <= 63 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid { Ok(()) } else { Err(PgClusterError::InvalidDatabaseName(name.to_owned())) }
}

fn running_as_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|out| out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// As root we need the `postgres` account and `runuser`; returns the latter.
fn root_prerequisites() -> Result<PathBuf, PgClusterError> {
    let has_user = Command::new("id").args(["-u", PG_USER]).output().is_ok_and(|out| out.status.success());
    if !has_user {
        return Err(PgClusterError::NoPostgresUser);
    }
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).map(|dir| dir.join("runuser")).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin/runuser"), PathBuf::from("/sbin/runuser")])
        .find(|candidate| candidate.is_file())
        .ok_or(PgClusterError::NoRunuser)
}

/// A new, uniquely named directory. As root it lives in /tmp, mode 0755 and owned by `postgres`,
/// so that the server can create its data directory, sockets and log in it.
fn create_private_dir(as_root: bool) -> Result<PathBuf, PgClusterError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let system_tmp = std::env::temp_dir();
    // Unix socket paths are limited to ~107 bytes: a deep $TMPDIR would not do.
    let parent = if as_root || system_tmp.as_os_str().len() > 60 { PathBuf::from("/tmp") } else { system_tmp };
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let dir = loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let candidate = parent.join(format!("dsms-pg-{}-{n}-{nanos:x}", std::process::id()));
        match fs::create_dir(&candidate) {
            Ok(()) => break candidate,
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(err) => {
                return Err(PgClusterError::io(format!("creating {}", candidate.display()))(err));
            }
        }
    };
    let setup = || -> Result<(), PgClusterError> {
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
            .map_err(PgClusterError::io(format!("chmod 0755 {}", dir.display())))?;
        if as_root {
            let chown = Command::new("chown").arg(format!("{PG_USER}:")).arg(&dir).output().map_err(PgClusterError::io("running chown"))?;
            check(format!("chown {PG_USER}: {}", dir.display()), &chown)?;
        }
        Ok(())
    };
    setup().inspect_err(|_| {
        let _ = fs::remove_dir_all(&dir);
    })?;
    Ok(dir)
}

/// A loopback port nobody listens on right now (the OS picks it; we release it at once).
fn free_port() -> Result<u16, PgClusterError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(PgClusterError::io("picking a free loopback port"))
}

/// The first line of `postmaster.pid` is the postmaster's pid.
fn read_postmaster_pid(path: &Path) -> Result<u32, PgClusterError> {
    let text = fs::read_to_string(path).map_err(|err| PgClusterError::PidFile { path: path.to_path_buf(), reason: err.to_string() })?;
    text.lines().next().and_then(|line| line.trim().parse().ok()).ok_or_else(|| PgClusterError::PidFile {
        path: path.to_path_buf(),
        reason: "first line is not a pid (is the server running?)".to_owned(),
    })
}

/// The processes whose parent is `parent`, from /proc.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // "pid (comm) S ppid ...": split after the last ')'.
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok()))
                == Some(parent)
        })
        .collect()
}

/// The process's state letter from /proc (`Z` for a zombie), or None once it is gone.
fn process_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ...": comm may contain spaces and parentheses, so split after the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.trim_start().chars().next()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
mod tests {
    use super::*;
    use std::net::TcpStream;

    /// False (and says so loudly) when PostgreSQL is absent, unless DSMS_REQUIRE_PG=1 demands it.
    fn pg_available() -> bool {
        if PgCluster::bin_dir().is_some() {
            return true;
        }
        if std::env::var("DSMS_REQUIRE_PG").is_ok_and(|v| v == "1") {
            panic!("DSMS_REQUIRE_PG=1 but PostgreSQL is not installed (initdb/pg_ctl not found)");
        }
        eprintln!("\n*** SKIP: PostgreSQL not installed (set DSMS_REQUIRE_PG=1 to make this fail) ***\n");
        false
    }

    fn accepts_tcp(port: u16) -> bool {
        TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), Duration::from_secs(2)).is_ok()
    }

    #[test]
    fn a_cluster_starts_creates_databases_and_comes_back_after_an_outage() {
        if !pg_available() {
            return;
        }
        let cluster = PgCluster::start().unwrap();
        let port = cluster.port();
        let url = cluster.create_database("dsms_test").unwrap();
        assert_eq!(url, format!("postgres://postgres@127.0.0.1:{port}/dsms_test"));
        assert!(accepts_tcp(port));

        cluster.stop_immediate().unwrap();
        assert!(!accepts_tcp(port), "port {port} still open after stop");
        cluster.restart().unwrap();
        assert_eq!(cluster.port(), port);
        assert!(accepts_tcp(port));
        cluster.create_database("after_restart").unwrap();
    }

    #[test]
    fn a_killed_cluster_restarts_on_the_same_port_and_is_removed_on_drop() {
        if !pg_available() {
            return;
        }
        let cluster = PgCluster::start().unwrap();
        let (port, dir) = (cluster.port(), cluster.dir.clone());
        cluster.create_database("before-kill").unwrap();

        cluster.kill().unwrap();
        assert!(!accepts_tcp(port), "port {port} still open after kill");
        cluster.restart().unwrap();
        assert!(accepts_tcp(port));
        cluster.create_database("after_kill").unwrap();

        drop(cluster);
        assert!(!dir.exists(), "{} left behind", dir.display());
        assert!(!accepts_tcp(port), "server still running after drop");
    }

    #[test]
    fn database_names_that_would_need_quoting_are_refused() {
        if !pg_available() {
            return;
        }
        let cluster = PgCluster::start().unwrap();
        let err = cluster.create_database("a\"; DROP").unwrap_err();
        assert!(matches!(err, PgClusterError::InvalidDatabaseName(_)), "{err}");
        let err = cluster.create_database("").unwrap_err();
        assert!(matches!(err, PgClusterError::InvalidDatabaseName(_)), "{err}");
    }

    #[test]
    fn a_failing_command_reports_its_stderr() {
        if !pg_available() {
            return;
        }
        let cluster = PgCluster::start().unwrap();
        cluster.create_database("twice").unwrap();
        let err = cluster.create_database("twice").unwrap_err().to_string();
        assert!(err.contains("already exists"), "{err}");
    }
}
