//! The `ssh` transport: a repository in a directory of an ssh host, reached through the
//! system `ssh` client (so the user's keys, agent, `~/.ssh/config` and known hosts apply). The
//! remote side needs only a POSIX login shell and coreutils (`test`, `cat`, `mkdir`, `mv`,
//! `wc`, `rm`, `find`): no server program of ours.
//!
//! Locations: `ssh://[USER@]HOST[:PORT]/PATH` and the seed's `USER@HOST/PATH`. A `PATH` that
//! starts with `/` is absolute; any other (and one starting with `~/`) is relative to the
//! login directory, where ssh runs remote commands. The path is the user's text, so it is
//! single-quoted into every remote command; keys are checked by [`check_key`] first.
//!
//! Every operation is one `ssh` invocation running a short script:
//! - `get`: `test -e F || exit 44; exec cat -- F` (44 is "absent"); at most `limit` bytes are
//!   read, one more kills the child and is [`ShareError::TooLarge`];
//! - `exists`: `test -e F` (0 present, 44 absent);
//! - `put_*`: `mkdir -p` the key's directory, `cat` into a temporary `.tmp.<random>` beside
//!   the key, check its byte count against what was sent, then `mv -f` it over the key (a
//!   rename in one directory: a reader sees the old object or the whole new one, never a
//!   part; a sender that dies leaves at most an unlisted `.tmp.*` file);
//! - `list`: `find` of the regular files directly in the prefix's directory (names starting
//!   with `.`, the temporary ones among them, left out).
//!
//! Connections are reused: `ControlMaster=auto` with a `ControlPath` in a private directory
//! the transport owns (mode 0700, removed with it after `ssh -O exit`) and a short
//! `ControlPersist`, so hundreds of small requests share one handshake. The first request
//! runs alone so that it, not a crowd of racing clients, becomes the master. `BatchMode=yes`
//! (never a prompt), `ConnectTimeout` from the options, and a stall rule per child: a child
//! that moves no byte for the timeout, or less than 1 KiB in a window of the timeout (a
//! trickle), is killed and the operation is [`ShareError::Timeout`]. The child's pipes are
//! served with `poll` from the calling thread, never by a blocking read: the shared master
//! holds them too (ssh passes a client's standard streams to the master), so a remote
//! command that hangs keeps them open after the child is gone.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::{check_key, check_prefix, Transport, TransportOptions};
use crate::ShareError;

/// The exit status the remote scripts use for "no such object".
const ABSENT: i32 = 44;
/// The exit status of a put whose temporary file did not receive every byte.
const SHORT_WRITE: i32 = 45;
/// How long an idle master connection outlives its last client.
const CONTROL_PERSIST_SECONDS: u64 = 30;
/// The most output kept from a command whose output is not the object (`exists`, `put`).
const SMALL_OUTPUT: u64 = 1 << 20;
/// The most output a listing may produce.
const LIST_OUTPUT: u64 = 64 << 20;
/// The fewest bytes that must move in each window of the timeout while a child runs.
const MIN_PROGRESS: u64 = 1024;
/// The most of a child's stderr kept for an error message.
const STDERR_KEPT: usize = 4096;

/// A repository directory on an ssh host.
pub struct SshTransport {
    describe: String,
    user: Option<String>,
    host: String,
    port: Option<u16>,
    /// The repository directory as the remote shell should name it: absolute, or `./`-led.
    root: String,
    opts: TransportOptions,
    control: ControlDir,
    /// Whether a request succeeded since the transport was made (a master may exist).
    warm: Mutex<bool>,
}

/// The private directory holding the control socket.
struct ControlDir {
    dir: PathBuf,
}

impl ControlDir {
    fn new() -> Result<ControlDir, ShareError> {
        // a unix socket path is at most 107 bytes, and ssh binds a `.`-and-16-character
        // temporary name beside it first
        let mut base = std::env::temp_dir();
        if base.as_os_str().len() > 60 {
            base = PathBuf::from("/tmp");
        }
        let mut rnd = [0u8; 8];
        getrandom::getrandom(&mut rnd).map_err(|e| ShareError::Io {
            path: base.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let dir = base.join(format!("buildit-ssh-{}", hex::encode(rnd)));
        let mut b = std::fs::DirBuilder::new();
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(&dir).map_err(|source| ShareError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        Ok(ControlDir { dir })
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("m")
    }
}

/// Quote `s` for a POSIX shell.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn bad_location(location: &str, reason: &str) -> ShareError {
    ShareError::BadLocation {
        location: location.to_string(),
        reason: reason.to_string(),
    }
}

/// What a remote command's standard output is for.
enum Sink<'a> {
    /// Kept in memory, at most this many bytes.
    Memory(u64),
    /// Written to this open file, at most this many bytes.
    File(&'a mut std::fs::File, &'a Path, u64),
}

/// How a remote command ended.
struct Outcome {
    code: Option<i32>,
    stdout: Vec<u8>,
    /// The output passed the sink's bound (the child was killed).
    too_large: bool,
    stderr: String,
}

/// How much a child moved and when: the stall rules of the module documentation.
struct Progress {
    timeout: Duration,
    last: Instant,
    window_start: Instant,
    window_bytes: u64,
    moved: u64,
}

impl Progress {
    fn new(timeout: Duration) -> Progress {
        let now = Instant::now();
        Progress {
            timeout,
            last: now,
            window_start: now,
            window_bytes: 0,
            moved: 0,
        }
    }

    fn moved(&mut self, n: usize) {
        if n > 0 {
            self.moved += n as u64;
            self.last = Instant::now();
        }
    }

    /// Whether the child stalled: no byte for the timeout, or fewer than [`MIN_PROGRESS`]
    /// bytes in the last window of the timeout.
    fn stalled(&mut self) -> bool {
        if self.last.elapsed() >= self.timeout {
            return true;
        }
        if self.window_start.elapsed() >= self.timeout {
            if self.moved - self.window_bytes < MIN_PROGRESS {
                return true;
            }
            self.window_start = Instant::now();
            self.window_bytes = self.moved;
        }
        false
    }
}

/// Put a pipe in non-blocking mode.
fn nonblocking(fd: &impl AsRawFd) -> std::io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL).map_err(std::io::Error::from)?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags)).map_err(std::io::Error::from)?;
    Ok(())
}

/// Read what a non-blocking pipe has: `Ok(None)` at its end, `Ok(Some(n))` for `n` bytes
/// (0: nothing now).
fn read_some(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
    match r.read(buf) {
        Ok(0) => Ok(None),
        Ok(n) => Ok(Some(n)),
        Err(e)
            if e.kind() == std::io::ErrorKind::WouldBlock
                || e.kind() == std::io::ErrorKind::Interrupted =>
        {
            Ok(Some(0))
        }
        Err(e) => Err(e),
    }
}

impl SshTransport {
    /// A transport for the directory `path` on `host` (`path` absolute when it starts with
    /// `/`, else relative to the login directory; `~/` is the login directory too).
    pub fn new(
        user: Option<&str>,
        host: &str,
        port: Option<u16>,
        path: &str,
        opts: &TransportOptions,
    ) -> Result<SshTransport, ShareError> {
        // as `Location`'s display writes it: the seed's form for a relative path
        let who = user.map(|u| format!("{u}@")).unwrap_or_default();
        let at = port.map(|p| format!(":{p}")).unwrap_or_default();
        let shown_host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        let describe = if path.starts_with('/') {
            format!("ssh://{who}{shown_host}{at}{path}")
        } else {
            format!("{who}{shown_host}{at}/{path}")
        };
        let plain = |s: &str| {
            !s.is_empty()
                && !s.starts_with('-')
                && s.bytes()
                    .all(|b| b.is_ascii_graphic() && !b"@/\\'\"`$".contains(&b))
        };
        if !plain(host) {
            return Err(bad_location(&describe, "the host name is not plain"));
        }
        if let Some(u) = user {
            if !plain(u) {
                return Err(bad_location(&describe, "the user name is not plain"));
            }
        }
        if port == Some(0) {
            return Err(bad_location(&describe, "port 0"));
        }
        if path.chars().any(char::is_control) {
            return Err(bad_location(&describe, "a control character in the path"));
        }
        let trimmed = path.trim_end_matches('/');
        let root = if path.starts_with('/') {
            if trimmed.is_empty() {
                "/".to_string()
            } else {
                trimmed.to_string()
            }
        } else {
            let rel = if trimmed == "~" {
                ""
            } else {
                trimmed.strip_prefix("~/").unwrap_or(trimmed)
            };
            let rel = rel.trim_start_matches('/');
            if rel.is_empty() {
                ".".to_string()
            } else {
                format!("./{rel}")
            }
        };
        Ok(SshTransport {
            describe,
            user: user.map(str::to_string),
            host: host.to_string(),
            port,
            root,
            opts: opts.clone(),
            control: ControlDir::new()?,
            warm: Mutex::new(false),
        })
    }

    /// The remote path of `key` (checked).
    fn remote(&self, key: &str) -> Result<String, ShareError> {
        check_key(key)?;
        Ok(if self.root == "/" {
            format!("/{key}")
        } else {
            format!("{}/{key}", self.root)
        })
    }

    fn timeout_seconds(&self) -> u64 {
        self.opts.timeout.as_secs().max(1)
    }

    fn timeout_error(&self) -> ShareError {
        ShareError::Timeout {
            repo: self.describe.clone(),
            seconds: self.timeout_seconds(),
        }
    }

    fn transport_error(&self, message: impl Into<String>) -> ShareError {
        ShareError::Transport {
            repo: self.describe.clone(),
            message: message.into(),
        }
    }

    /// The `ssh` command line up to and including the destination.
    fn ssh_command(&self) -> Command {
        let mut c = Command::new("ssh");
        c.arg("-T").arg("-x");
        c.arg("-o").arg("BatchMode=yes");
        c.arg("-o")
            .arg(format!("ConnectTimeout={}", self.timeout_seconds()));
        c.arg("-o").arg("ControlMaster=auto");
        c.arg("-o")
            .arg(format!("ControlPath={}", self.control.socket().display()));
        c.arg("-o")
            .arg(format!("ControlPersist={CONTROL_PERSIST_SECONDS}"));
        if let Some(p) = self.port {
            c.arg("-p").arg(p.to_string());
        }
        if let Some(id) = &self.opts.ssh_identity {
            c.arg("-i").arg(id);
        }
        for o in &self.opts.ssh_options {
            c.arg("-o").arg(o);
        }
        if let Some(u) = &self.user {
            c.arg("-l").arg(u);
        }
        c.arg("--").arg(&self.host);
        c
    }

    /// Run `script` remotely, feeding it `body` on stdin; the first request of the transport
    /// runs alone (it sets up the shared connection).
    fn run(
        &self,
        script: &str,
        body: Option<&mut dyn Read>,
        sink: Sink<'_>,
    ) -> Result<Outcome, ShareError> {
        let mut warm = self
            .warm
            .lock()
            .map_err(|_| self.transport_error("a previous request panicked"))?;
        if *warm {
            drop(warm);
            return self.run_child(script, body, sink);
        }
        let out = self.run_child(script, body, sink)?;
        if out.code != Some(255) {
            *warm = true;
        }
        Ok(out)
    }

    fn run_child(
        &self,
        script: &str,
        body: Option<&mut dyn Read>,
        sink: Sink<'_>,
    ) -> Result<Outcome, ShareError> {
        let mut cmd = self.ssh_command();
        cmd.arg(script);
        cmd.stdin(if body.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            self.transport_error(format!(
                "cannot run ssh (is openssh-client installed?): {e}"
            ))
        })?;
        let result = self.exchange(&mut child, body, sink);
        if result.is_err() {
            let _ = child.kill();
            let _ = child.wait();
        }
        result
    }

    /// Feed the body to the child, drain its stdout into the sink and its stderr, and reap
    /// it, all from this thread with `poll`: with connection sharing the master holds the
    /// child's pipes, so neither the child's end nor a kill of it is awaited blindly.
    fn exchange(
        &self,
        child: &mut Child,
        mut body: Option<&mut dyn Read>,
        sink: Sink<'_>,
    ) -> Result<Outcome, ShareError> {
        let io = |what: &str, e: std::io::Error| self.transport_error(format!("{what}: {e}"));
        let mut stdin = child.stdin.take();
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        for fd in [
            stdin.as_ref().map(|f| f.as_raw_fd()),
            stdout.as_ref().map(|f| f.as_raw_fd()),
            stderr.as_ref().map(|f| f.as_raw_fd()),
        ]
        .into_iter()
        .flatten()
        {
            nonblocking(&fd).map_err(|e| io("ssh's pipes", e))?;
        }
        let (limit, mut file) = match sink {
            Sink::Memory(limit) => (limit, None),
            Sink::File(f, path, limit) => (limit, Some((f, path))),
        };
        let mut progress = Progress::new(self.opts.timeout);
        let mut pending: Vec<u8> = Vec::new();
        let mut sent = 0usize;
        let mut kept = Vec::new();
        let mut errors = Vec::new();
        let mut total: u64 = 0;
        let mut too_large = false;
        let mut buf = vec![0u8; 64 << 10];
        loop {
            if stdin.is_some() && sent == pending.len() {
                pending.clear();
                sent = 0;
                let n = match body.as_mut() {
                    Some(src) => {
                        pending.resize(64 << 10, 0);
                        src.read(&mut pending).map_err(|source| ShareError::Io {
                            path: "(the object to upload)".to_string(),
                            source,
                        })?
                    }
                    None => 0,
                };
                pending.truncate(n);
                if n == 0 {
                    // the whole body is sent: the remote side sees its end
                    stdin = None;
                }
            }
            if stdin.is_none() && stdout.is_none() && stderr.is_none() {
                break;
            }
            let ready = {
                let mut fds = Vec::with_capacity(3);
                if let Some(w) = &stdin {
                    fds.push(PollFd::new(w.as_fd(), PollFlags::POLLOUT));
                }
                if let Some(r) = &stdout {
                    fds.push(PollFd::new(r.as_fd(), PollFlags::POLLIN));
                }
                if let Some(r) = &stderr {
                    fds.push(PollFd::new(r.as_fd(), PollFlags::POLLIN));
                }
                match poll(&mut fds, PollTimeout::from(100u16)) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(io("poll", e.into())),
                }
                fds.iter()
                    .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                    .collect::<Vec<bool>>()
            };
            let mut i = 0;
            if let Some(w) = &mut stdin {
                if ready[i] {
                    match w.write(&pending[sent..]) {
                        Ok(n) => {
                            sent += n;
                            progress.moved(n);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        // a remote side that stopped reading has failed: its status says why
                        Err(_) => stdin = None,
                    }
                }
                i += 1;
            }
            if let Some(r) = &mut stdout {
                if ready[i] {
                    match read_some(r, &mut buf).map_err(|e| io("reading from ssh", e))? {
                        None => stdout = None,
                        Some(n) => {
                            progress.moved(n);
                            total += n as u64;
                            if total > limit {
                                too_large = true;
                                let _ = child.kill();
                                break;
                            }
                            match &mut file {
                                Some((f, path)) => {
                                    f.write_all(&buf[..n]).map_err(|source| ShareError::Io {
                                        path: path.display().to_string(),
                                        source,
                                    })?
                                }
                                None => kept.extend_from_slice(&buf[..n]),
                            }
                        }
                    }
                }
                i += 1;
            }
            if let Some(r) = &mut stderr {
                if ready[i] {
                    match read_some(r, &mut buf).map_err(|e| io("reading from ssh", e))? {
                        None => stderr = None,
                        Some(n) => {
                            let room = STDERR_KEPT.saturating_sub(errors.len());
                            errors.extend_from_slice(&buf[..n.min(room)]);
                        }
                    }
                }
            }
            if progress.stalled() {
                return Err(self.timeout_error());
            }
        }
        drop((stdin, stdout, stderr));
        // the child normally exits right after its output ends
        let mut pause = Duration::from_millis(1);
        let code = loop {
            if let Some(status) = child.try_wait().map_err(|e| io("waiting for ssh", e))? {
                break status.code();
            }
            if progress.stalled() {
                return Err(self.timeout_error());
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        };
        let stderr = String::from_utf8_lossy(&errors).trim().to_string();
        // ssh's own ConnectTimeout (connecting, or a server that never sends its banner)
        if code == Some(255) && stderr.contains("timed out") {
            return Err(self.timeout_error());
        }
        Ok(Outcome {
            code,
            stdout: kept,
            too_large,
            stderr,
        })
    }

    /// An outcome that is neither success nor "absent" as an error.
    fn failed(&self, what: &str, out: &Outcome) -> ShareError {
        let how = match out.code {
            Some(255) => "ssh failed".to_string(),
            Some(c) => format!("the remote command exited with {c}"),
            None => "ssh was killed".to_string(),
        };
        let detail = if out.stderr.is_empty() {
            String::new()
        } else {
            format!(": {}", out.stderr)
        };
        self.transport_error(format!("{what}: {how}{detail}"))
    }

    fn get_script(&self, key: &str) -> Result<String, ShareError> {
        let f = sh_quote(&self.remote(key)?);
        Ok(format!("test -e {f} || exit {ABSENT}; exec cat -- {f}"))
    }

    fn put_reader(&self, key: &str, src: &mut dyn Read, size: u64) -> Result<(), ShareError> {
        let path = self.remote(key)?;
        let (dir, _) = path
            .rsplit_once('/')
            .ok_or_else(|| self.transport_error(format!("{key}: no directory")))?;
        let dir = if dir.is_empty() { "/" } else { dir };
        let mut rnd = [0u8; 8];
        getrandom::getrandom(&mut rnd).map_err(|e| {
            self.transport_error(format!("no randomness for a temporary name: {e}"))
        })?;
        let tmp = format!("{}/.tmp.{}", dir.trim_end_matches('/'), hex::encode(rnd));
        let (d, t, f) = (sh_quote(dir), sh_quote(&tmp), sh_quote(&path));
        let script = format!(
            "mkdir -p -- {d} || exit 46; \
             if cat > {t} && test \"$(wc -c < {t})\" -eq {size} && mv -f -- {t} {f}; \
             then exit 0; fi; rm -f -- {t}; exit {SHORT_WRITE}"
        );
        let out = self.run(&script, Some(src), Sink::Memory(SMALL_OUTPUT))?;
        match out.code {
            Some(0) => Ok(()),
            _ => Err(self.failed(&format!("uploading {key}"), &out)),
        }
    }

    /// [`Transport::list`]: the regular files directly in the directory `prefix`, as keys.
    fn list_keys(&self, prefix: &str) -> Result<Vec<String>, ShareError> {
        check_prefix(prefix)?;
        let dir = match prefix.strip_suffix('/') {
            Some(d) => format!("./{d}"),
            None => ".".to_string(),
        };
        let script = format!(
            "cd -- {} 2>/dev/null || exit 0; test -d {d} || exit 0; \
             exec find {d} -mindepth 1 -maxdepth 1 -type f -print",
            sh_quote(&self.root),
            d = sh_quote(&dir)
        );
        let out = self.run(&script, None, Sink::Memory(LIST_OUTPUT))?;
        if out.too_large {
            return Err(ShareError::TooLarge {
                repo: self.describe.clone(),
                key: format!("the listing of '{prefix}'"),
                limit: LIST_OUTPUT,
            });
        }
        if out.code != Some(0) {
            return Err(self.failed(&format!("listing '{prefix}'"), &out));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let lead = format!("{dir}/");
        let mut keys: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix(lead.as_str()))
            .filter(|name| !name.starts_with('.') && !name.contains('/'))
            .map(|name| format!("{prefix}{name}"))
            .filter(|k| check_key(k).is_ok())
            .collect();
        keys.sort();
        keys.dedup();
        Ok(keys)
    }
}

impl Transport for SshTransport {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn get(&self, key: &str, limit: u64) -> Result<Option<Vec<u8>>, ShareError> {
        let script = self.get_script(key)?;
        let out = self.run(&script, None, Sink::Memory(limit))?;
        if out.too_large {
            return Err(ShareError::TooLarge {
                repo: self.describe.clone(),
                key: key.to_string(),
                limit,
            });
        }
        match out.code {
            Some(0) => Ok(Some(out.stdout)),
            Some(ABSENT) => Ok(None),
            _ => Err(self.failed(&format!("reading {key}"), &out)),
        }
    }

    fn get_to_file(&self, key: &str, dest: &Path, limit: u64) -> Result<bool, ShareError> {
        let script = self.get_script(key)?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dest)
            .map_err(|source| ShareError::Io {
                path: dest.display().to_string(),
                source,
            })?;
        let result = self.run(&script, None, Sink::File(&mut file, dest, limit));
        drop(file);
        let answer = match result {
            Ok(out) if out.too_large => Err(ShareError::TooLarge {
                repo: self.describe.clone(),
                key: key.to_string(),
                limit,
            }),
            Ok(out) => match out.code {
                Some(0) => Ok(true),
                Some(ABSENT) => Ok(false),
                _ => Err(self.failed(&format!("reading {key}"), &out)),
            },
            Err(e) => Err(e),
        };
        if !matches!(answer, Ok(true)) {
            let _ = std::fs::remove_file(dest);
        }
        answer
    }

    fn exists(&self, key: &str) -> Result<bool, ShareError> {
        let f = sh_quote(&self.remote(key)?);
        let script = format!("if test -e {f}; then exit 0; else exit {ABSENT}; fi");
        let out = self.run(&script, None, Sink::Memory(SMALL_OUTPUT))?;
        match out.code {
            Some(0) => Ok(true),
            Some(ABSENT) => Ok(false),
            _ => Err(self.failed(&format!("checking {key}"), &out)),
        }
    }

    fn put_file(&self, key: &str, src: &Path) -> Result<(), ShareError> {
        let mut f = std::fs::File::open(src).map_err(|source| ShareError::Io {
            path: src.display().to_string(),
            source,
        })?;
        let size = f
            .metadata()
            .map_err(|source| ShareError::Io {
                path: src.display().to_string(),
                source,
            })?
            .len();
        // a file that grows while it is sent fails the remote byte count
        let mut bounded = (&mut f).take(size);
        self.put_reader(key, &mut bounded, size)
    }

    fn put_bytes(&self, key: &str, data: &[u8]) -> Result<(), ShareError> {
        let mut r = data;
        self.put_reader(key, &mut r, data.len() as u64)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, ShareError> {
        self.list_keys(prefix)
    }
}

impl Drop for SshTransport {
    fn drop(&mut self) {
        let socket = self.control.socket();
        if socket.exists() {
            let mut c = Command::new("ssh");
            c.arg("-o")
                .arg(format!("ControlPath={}", socket.display()))
                .arg("-O")
                .arg("exit")
                .arg("--")
                .arg(&self.host)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if let Ok(mut child) = c.spawn() {
                let deadline = Instant::now() + Duration::from_secs(2);
                loop {
                    match child.try_wait() {
                        Ok(Some(_)) | Err(_) => break,
                        Ok(None) if Instant::now() >= deadline => {
                            let _ = child.kill();
                            let _ = child.wait();
                            break;
                        }
                        Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.control.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }

    #[test]
    fn roots() {
        let o = TransportOptions::default();
        let t = SshTransport::new(Some("u"), "h", None, "repo/x/", &o).expect("ok");
        assert_eq!(t.root, "./repo/x");
        assert_eq!(t.remote("a/b.info").expect("key"), "./repo/x/a/b.info");
        let t = SshTransport::new(None, "h", Some(2222), "/srv/r", &o).expect("ok");
        assert_eq!(t.root, "/srv/r");
        assert_eq!(t.describe(), "ssh://h:2222/srv/r");
        let t = SshTransport::new(Some("u"), "h", None, "c/d", &o).expect("ok");
        assert_eq!(t.describe(), "u@h/c/d");
        let t = SshTransport::new(None, "h", None, "~user/c", &o).expect("ok");
        assert_eq!(t.root, "./~user/c");
        let t = SshTransport::new(None, "h", None, "/", &o).expect("ok");
        assert_eq!(t.remote("k").expect("key"), "/k");
        let t = SshTransport::new(None, "h", None, "~/c", &o).expect("ok");
        assert_eq!(t.root, "./c");
        let t = SshTransport::new(None, "h", None, "", &o).expect("ok");
        assert_eq!(t.remote("k").expect("key"), "./k");
        assert!(t.remote("../k").is_err());
        assert!(t.remote("/k").is_err());
    }

    #[test]
    fn hostile_names_are_refused() {
        let o = TransportOptions::default();
        assert!(SshTransport::new(None, "-oProxyCommand=x", None, "r", &o).is_err());
        assert!(SshTransport::new(Some("-l"), "h", None, "r", &o).is_err());
        assert!(SshTransport::new(None, "h h", None, "r", &o).is_err());
        assert!(SshTransport::new(None, "h", None, "r\nx", &o).is_err());
        assert!(SshTransport::new(None, "h", Some(0), "r", &o).is_err());
    }

    #[test]
    fn control_directory_is_private_and_removed() {
        let t = SshTransport::new(None, "h", None, "r", &TransportOptions::default()).expect("ok");
        let dir = t.control.dir.clone();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&dir).expect("dir").permissions(),
        );
        assert_eq!(mode & 0o777, 0o700);
        assert!(t.control.socket().as_os_str().len() < 90);
        drop(t);
        assert!(!dir.exists());
    }
}
