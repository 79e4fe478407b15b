//! Real servers on 127.0.0.1 for the trials that talk to repositories and registries: nginx
//! serving a directory over HTTPS (a certificate from a test CA made at start) and plain HTTP,
//! nginx as the TLS front (`grpc_pass`) of a plaintext remote-execution endpoint,
//! openssh-server on a free high port letting the test's own account in with a generated key,
//! and Debian's docker-registry; plus a listener that accepts and never answers (timeouts).
//!
//! Each server is started on first use and shared by the whole test process (`OnceLock`, or one
//! per served directory for nginx). A server runs under a small `sh` guard whose standard input
//! is a pipe held by this process: when the process ends, however it ends, the pipe closes and
//! the guard kills the server, so no daemon outlives the run. The files (keys, configurations,
//! logs, pid files, temporary paths) live under `crate::target_tmpdir()/servers.<pid>`, and
//! nothing is written outside it except `/run/sshd`, which sshd needs when run as root.
//!
//! Everything works for root and for an ordinary account (`scripts/test-unprivileged`): nginx
//! runs one process without switching users, and sshd runs with its own host key, `UsePAM no`
//! and `StrictModes no`, allowing only the account running the tests.
//!
//! Trials that use a fixture are gated on its tools (`crate::gated`): nginx and openssl
//! (nginx-light, openssl), sshd, ssh and ssh-keygen (openssh-server, openssh-client),
//! docker-registry.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::tool_path;

/// The tools [`https_server`] needs.
pub const HTTPS_TOOLS: &[&str] = &["nginx", "openssl"];
/// The tools [`ssh_server`] (and the ssh transport) need.
pub const SSH_TOOLS: &[&str] = &["sshd", "ssh", "ssh-keygen"];
/// The tools [`registry`] needs.
pub const REGISTRY_TOOLS: &[&str] = &["docker-registry"];

/// This process's fixture directory (made on first use; directories of finished test
/// processes are removed then).
pub fn fixture_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = crate::target_tmpdir();
        let _ = std::fs::create_dir_all(&base);
        if let Ok(rd) = std::fs::read_dir(&base) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(pid) = name.strip_prefix("servers.") {
                    if !Path::new("/proc").join(pid).exists() {
                        let _ = std::fs::remove_dir_all(e.path());
                    }
                }
            }
        }
        let d = base.join(format!("servers.{}", std::process::id()));
        let _ = std::fs::create_dir_all(&d);
        d
    })
    .clone()
}

/// A server process guarded by a pipe this process holds (see the module documentation);
/// dropping it stops the server.
pub struct Guarded {
    /// Closing it makes the guard kill the server.
    stdin: Option<ChildStdin>,
    child: std::process::Child,
    /// Where the server's output goes.
    pub log: PathBuf,
}

impl Drop for Guarded {
    fn drop(&mut self) {
        drop(self.stdin.take());
        // the guard kills the server and waits for it: then the port is free again
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Ok(Some(_)) | Err(_) => return,
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `program args` under the guard, its output appended to `log`.
pub fn spawn_guarded(program: &Path, args: &[String], log: &Path) -> Result<Guarded, String> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#""$@" </dev/null & p=$!; read _ignored; kill $p 2>/dev/null; wait $p"#)
        .arg("guard")
        .arg(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("running {}: {e}", program.display()))?;
    let stdin = child.stdin.take().ok_or("no stdin pipe")?;
    Ok(Guarded {
        stdin: Some(stdin),
        child,
        log: log.to_path_buf(),
    })
}

/// A free TCP port on 127.0.0.1 (free when asked: the server binds it right after).
pub fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("binding a port: {e}"))?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// Wait until `port` accepts connections while `g` runs; the server's log in the error.
fn wait_listening(g: &mut Guarded, port: u16, what: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(st)) = g.child.try_wait() {
            return Err(format!(
                "{what} exited ({st}) before listening on port {port}: {}",
                read_log(&g.log)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "{what} did not listen on port {port} within 20 s: {}",
        read_log(&g.log)
    ))
}

fn read_log(p: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(p) {
        let _ = f.by_ref().take(8192).read_to_string(&mut s);
    }
    s
}

/// Run a setup command; its output in the error.
fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A process-wide value made once; a failure is remembered and reported to every caller.
fn once<T: Send + Sync>(
    cell: &'static OnceLock<Result<T, String>>,
    make: impl FnOnce() -> Result<T, String>,
) -> Result<&'static T, String> {
    cell.get_or_init(make).as_ref().map_err(Clone::clone)
}

// ---------------------------------------------------------------------------------------
// The test CA and nginx

/// The test CA: its certificate (PEM) and key, and a server certificate for 127.0.0.1 and
/// localhost it signed.
pub struct TestCa {
    pub ca_pem: PathBuf,
    pub server_pem: PathBuf,
    pub server_key: PathBuf,
}

fn make_ca(dir: &Path, name: &str) -> Result<(PathBuf, PathBuf), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let pem = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}.key"));
    run(Command::new(tool_path("openssl")).args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "3",
        "-subj",
        &format!("/CN=buildit {name}"),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
        &key.display().to_string(),
        "-out",
        &pem.display().to_string(),
    ]))?;
    Ok((pem, key))
}

/// The process's test CA (made on first use with the `openssl` command).
pub fn test_ca() -> Result<&'static TestCa, String> {
    static CA: OnceLock<Result<TestCa, String>> = OnceLock::new();
    once(&CA, || {
        let dir = fixture_dir().join("ca");
        let (ca_pem, ca_key) = make_ca(&dir, "test-ca")?;
        let server_key = dir.join("server.key");
        let csr = dir.join("server.csr");
        let server_pem = dir.join("server.pem");
        let ext = dir.join("server.ext");
        std::fs::write(
            &ext,
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .map_err(|e| e.to_string())?;
        let s = |p: &Path| p.display().to_string();
        run(Command::new(tool_path("openssl")).args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &s(&server_key),
            "-out",
            &s(&csr),
        ]))?;
        run(Command::new(tool_path("openssl")).args([
            "x509",
            "-req",
            "-days",
            "3",
            "-in",
            &s(&csr),
            "-CA",
            &s(&ca_pem),
            "-CAkey",
            &s(&ca_key),
            "-CAcreateserial",
            "-extfile",
            &s(&ext),
            "-out",
            &s(&server_pem),
        ]))?;
        Ok(TestCa {
            ca_pem,
            server_pem,
            server_key,
        })
    })
}

/// The certificate (PEM) of another CA, which signed nothing the fixtures serve.
pub fn untrusted_ca_pem() -> Result<PathBuf, String> {
    static OTHER: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    once(&OTHER, || {
        make_ca(&fixture_dir().join("other-ca"), "untrusted-ca").map(|(pem, _)| pem)
    })
    .cloned()
}

/// An nginx serving one directory.
pub struct Https {
    /// `https://127.0.0.1:PORT` (no trailing slash).
    pub url: String,
    /// `http://127.0.0.1:PORT` serving the same directory in plain HTTP.
    pub http_url: String,
    /// The test CA's certificate, which the HTTPS certificate chains to.
    pub ca_pem: PathBuf,
    _server: Guarded,
}

/// nginx serving `root_dir` over HTTPS (and plain HTTP, [`https_fixture`]); the base URL and
/// the CA certificate file to trust. One server per directory, started on first use.
pub fn https_server(root_dir: &Path) -> Result<(String, PathBuf), String> {
    let h = https_fixture(root_dir)?;
    Ok((h.url.clone(), h.ca_pem.clone()))
}

/// The nginx of `root_dir` (see [`https_server`]).
pub fn https_fixture(root_dir: &Path) -> Result<&'static Https, String> {
    static SERVERS: OnceLock<Mutex<BTreeMap<PathBuf, &'static Https>>> = OnceLock::new();
    let root =
        std::fs::canonicalize(root_dir).map_err(|e| format!("{}: {e}", root_dir.display()))?;
    let map = SERVERS.get_or_init(|| Mutex::new(BTreeMap::new()));
    let mut map = map.lock().map_err(|_| "the nginx table is poisoned")?;
    if let Some(h) = map.get(&root) {
        return Ok(h);
    }
    let ca = test_ca()?;
    let n = map.len();
    let dir = fixture_dir().join(format!("nginx.{n}"));
    for sub in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        std::fs::create_dir_all(dir.join("tmp").join(sub)).map_err(|e| e.to_string())?;
    }
    let mut last = String::new();
    for _attempt in 0..3 {
        let (tls_port, plain_port) = (free_port()?, free_port()?);
        let d = |s: &str| dir.join(s).display().to_string();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {pid};\nerror_log {err} warn;\n\
             events {{ worker_connections 512; }}\n\
             http {{\n  access_log off;\n  default_type application/octet-stream;\n  sendfile on;\n\
               client_body_temp_path {body};\n  proxy_temp_path {proxy};\n  fastcgi_temp_path {fcgi};\n\
               uwsgi_temp_path {uwsgi};\n  scgi_temp_path {scgi};\n\
               server {{\n    listen 127.0.0.1:{tls_port} ssl;\n    listen 127.0.0.1:{plain_port};\n\
                 ssl_certificate {cert};\n    ssl_certificate_key {key};\n    root {root};\n\
                 location / {{ }}\n  }}\n}}\n",
            pid = d("nginx.pid"),
            err = d("error.log"),
            body = d("tmp/body"),
            proxy = d("tmp/proxy"),
            fcgi = d("tmp/fastcgi"),
            uwsgi = d("tmp/uwsgi"),
            scgi = d("tmp/scgi"),
            cert = ca.server_pem.display(),
            key = ca.server_key.display(),
            root = root.display(),
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
        let args = vec![
            "-p".to_string(),
            dir.display().to_string(),
            "-c".to_string(),
            conf_path.display().to_string(),
            "-e".to_string(),
            dir.join("error.log").display().to_string(),
        ];
        let mut g = spawn_guarded(&tool_path("nginx"), &args, &dir.join("nginx.out"))?;
        match wait_listening(&mut g, tls_port, "nginx")
            .and_then(|()| wait_listening(&mut g, plain_port, "nginx"))
        {
            Ok(()) => {
                let h: &'static Https = Box::leak(Box::new(Https {
                    url: format!("https://127.0.0.1:{tls_port}"),
                    http_url: format!("http://127.0.0.1:{plain_port}"),
                    ca_pem: ca.ca_pem.clone(),
                    _server: g,
                }));
                map.insert(root, h);
                return Ok(h);
            }
            Err(e) => last = format!("{e}\n{}", read_log(&dir.join("error.log"))),
        }
    }
    Err(last)
}

/// nginx terminating TLS in front of a plaintext gRPC server (`grpc_pass`), with the test CA's
/// server certificate; stopped when dropped.
pub struct GrpcTlsFront {
    /// `grpcs://127.0.0.1:PORT`.
    pub url: String,
    /// The test CA's certificate, which the front's certificate chains to.
    pub ca_pem: PathBuf,
    _server: Guarded,
}

/// A [`GrpcTlsFront`] for the gRPC server on `127.0.0.1:upstream` (HTTP/2 over TLS to
/// plaintext HTTP/2, request bodies of any size streamed through, long-running calls allowed).
pub fn grpc_tls_front(upstream: u16) -> Result<GrpcTlsFront, String> {
    let ca = test_ca()?;
    let dir = fixture_dir().join(format!("grpc-front.{upstream}"));
    std::fs::create_dir_all(dir.join("tmp")).map_err(|e| e.to_string())?;
    let mut last = String::new();
    for _attempt in 0..3 {
        let port = free_port()?;
        let d = |s: &str| dir.join(s).display().to_string();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {pid};\nerror_log {err} warn;\n\
             events {{ worker_connections 512; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {tmp};\n  client_max_body_size 0;\n\
               server {{\n    listen 127.0.0.1:{port} ssl http2;\n\
                 ssl_certificate {cert};\n    ssl_certificate_key {key};\n\
                 location / {{\n      grpc_pass grpc://127.0.0.1:{upstream};\n\
                   grpc_read_timeout 600s;\n      grpc_send_timeout 600s;\n    }}\n  }}\n}}\n",
            pid = d("nginx.pid"),
            err = d("error.log"),
            tmp = d("tmp"),
            cert = ca.server_pem.display(),
            key = ca.server_key.display(),
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
        let args = vec![
            "-p".to_string(),
            dir.display().to_string(),
            "-c".to_string(),
            conf_path.display().to_string(),
            "-e".to_string(),
            dir.join("error.log").display().to_string(),
        ];
        let mut g = spawn_guarded(&tool_path("nginx"), &args, &dir.join("nginx.out"))?;
        match wait_listening(&mut g, port, "nginx (gRPC front)") {
            Ok(()) => {
                return Ok(GrpcTlsFront {
                    url: format!("grpcs://127.0.0.1:{port}"),
                    ca_pem: ca.ca_pem.clone(),
                    _server: g,
                })
            }
            Err(e) => last = format!("{e}\n{}", read_log(&dir.join("error.log"))),
        }
    }
    Err(last)
}

// ---------------------------------------------------------------------------------------
// sshd

/// An sshd on 127.0.0.1 that lets the account running the tests in with a generated key.
pub struct SshFixture {
    /// The account's login name (the only one allowed).
    pub user: String,
    pub port: u16,
    /// The client's private key (ed25519, no passphrase).
    pub identity_path: PathBuf,
    /// A second authorized key, for a trial that counts its own connections
    /// ([`SshFixture::accepted_connections`]) while other trials use the first.
    pub second_identity_path: PathBuf,
    /// A known-hosts file with the server's host key for `[127.0.0.1]:PORT`.
    pub known_hosts_path: PathBuf,
    /// A directory the account can write, for repositories.
    pub dir: PathBuf,
    /// The account's login directory (where relative remote paths start).
    pub home: PathBuf,
    /// sshd's log (one `Accepted publickey` line per connection).
    pub log: PathBuf,
    _server: Guarded,
}

impl SshFixture {
    /// The `-o` options a client needs: this known-hosts file, strict host checking, only
    /// the fixture's key.
    pub fn ssh_options(&self) -> Vec<String> {
        vec![
            format!("UserKnownHostsFile={}", self.known_hosts_path.display()),
            "GlobalKnownHostsFile=/dev/null".to_string(),
            "StrictHostKeyChecking=yes".to_string(),
            "IdentitiesOnly=yes".to_string(),
            "IdentityAgent=none".to_string(),
        ]
    }

    /// How many connections sshd accepted so far with the key `identity` (a private key
    /// file of the fixture: sshd logs the key's fingerprint with each login).
    pub fn accepted_connections(&self, identity: &Path) -> Result<usize, String> {
        let line = run(Command::new(tool_path("ssh-keygen")).args([
            "-l",
            "-E",
            "sha256",
            "-f",
            &format!("{}.pub", identity.display()),
        ]))?;
        let fingerprint = line
            .split_whitespace()
            .nth(1)
            .ok_or_else(|| format!("ssh-keygen -l: {line}"))?
            .to_string();
        Ok(read_whole(&self.log)
            .lines()
            .filter(|l| l.contains("Accepted publickey") && l.contains(&fingerprint))
            .count())
    }
}

fn read_whole(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// The account running the tests: name and login directory.
fn current_account() -> Result<(String, PathBuf), String> {
    let uid = crate::effective_uid().ok_or("no uid in /proc/self/status")?;
    let line = run(Command::new("getent").args(["passwd", &uid.to_string()]))?;
    let fields: Vec<&str> = line.trim().split(':').collect();
    match fields.as_slice() {
        [name, _, _, _, _, home, ..] => Ok((name.to_string(), PathBuf::from(home))),
        _ => Err(format!("getent passwd {uid}: {line}")),
    }
}

/// The process's sshd (started on first use).
pub fn ssh_server() -> Result<&'static SshFixture, String> {
    static SSHD: OnceLock<Result<SshFixture, String>> = OnceLock::new();
    once(&SSHD, start_sshd)
}

fn start_sshd() -> Result<SshFixture, String> {
    let (user, home) = current_account()?;
    let dir = fixture_dir().join("sshd");
    let repos = dir.join("repos");
    std::fs::create_dir_all(&repos).map_err(|e| e.to_string())?;
    let host_key = dir.join("host_key");
    let identity = dir.join("id_ed25519");
    let second = dir.join("id2_ed25519");
    for (key, comment) in [
        (&host_key, "buildit test host"),
        (&identity, "buildit test client"),
        (&second, "buildit test client 2"),
    ] {
        if !key.exists() {
            run(Command::new(tool_path("ssh-keygen")).args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                comment,
                "-f",
                &key.display().to_string(),
            ]))?;
        }
    }
    let pub_of = |k: &Path| -> Result<String, String> {
        let p = PathBuf::from(format!("{}.pub", k.display()));
        std::fs::read_to_string(&p)
            .map(|s| s.trim().to_string())
            .map_err(|e| format!("{}: {e}", p.display()))
    };
    let authorized = dir.join("authorized_keys");
    std::fs::write(
        &authorized,
        format!("{}\n{}\n", pub_of(&identity)?, pub_of(&second)?),
    )
    .map_err(|e| e.to_string())?;
    if crate::is_root_user() {
        // sshd's privilege separation directory (what the package's tmpfiles entry makes)
        std::fs::create_dir_all("/run/sshd").map_err(|e| format!("/run/sshd: {e}"))?;
    }
    let log = dir.join("sshd.log");
    let mut last = String::new();
    for _attempt in 0..3 {
        let port = free_port()?;
        let conf = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile {pid}\n\
             AuthorizedKeysFile {auth}\nStrictModes no\nUsePAM no\nPubkeyAuthentication yes\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\nAllowUsers {user}\nLogLevel INFO\n\
             MaxStartups 100:30:200\nMaxSessions 100\nX11Forwarding no\nAllowTcpForwarding no\n\
             PrintMotd no\nPrintLastLog no\n",
            host = host_key.display(),
            pid = dir.join("sshd.pid").display(),
            auth = authorized.display(),
        );
        let conf_path = dir.join("sshd_config");
        std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
        let sshd = tool_path("sshd");
        // sshd wants to be started by its absolute path
        let sshd = if sshd.is_absolute() {
            sshd
        } else {
            PathBuf::from("/usr/sbin/sshd")
        };
        let args = vec![
            "-D".to_string(),
            "-f".to_string(),
            conf_path.display().to_string(),
            "-E".to_string(),
            log.display().to_string(),
        ];
        let mut g = spawn_guarded(&sshd, &args, &dir.join("sshd.out"))?;
        match wait_listening(&mut g, port, "sshd") {
            Ok(()) => {
                let known = dir.join("known_hosts");
                std::fs::write(
                    &known,
                    format!("[127.0.0.1]:{port} {}\n", pub_of(&host_key)?),
                )
                .map_err(|e| e.to_string())?;
                return Ok(SshFixture {
                    user,
                    port,
                    identity_path: identity,
                    second_identity_path: second,
                    known_hosts_path: known,
                    dir: repos,
                    home,
                    log,
                    _server: g,
                });
            }
            Err(e) => last = format!("{e}\n{}", read_log(&log)),
        }
    }
    Err(last)
}

// ---------------------------------------------------------------------------------------
// docker-registry

/// A docker-registry on 127.0.0.1 (plain HTTP), with its storage in a directory of its own.
pub struct Registry {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    _server: Guarded,
    _dir: tempfile::TempDir,
}

/// A new docker-registry of the caller's own (stopped when the value is dropped).
pub fn start_registry() -> Result<Registry, String> {
    let dir = tempfile::Builder::new()
        .prefix("registry.")
        .tempdir_in(fixture_dir())
        .map_err(|e| e.to_string())?;
    let mut last = String::new();
    for _attempt in 0..3 {
        let port = free_port()?;
        let addr = format!("127.0.0.1:{port}");
        let cfg = dir.path().join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
                dir.path().join("data").display()
            ),
        )
        .map_err(|e| e.to_string())?;
        let args = vec!["serve".to_string(), cfg.display().to_string()];
        let mut g = spawn_guarded(
            &tool_path("docker-registry"),
            &args,
            &dir.path().join("registry.log"),
        )?;
        match wait_listening(&mut g, port, "docker-registry") {
            Ok(()) => {
                return Ok(Registry {
                    addr,
                    _server: g,
                    _dir: dir,
                })
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The process's shared docker-registry: `127.0.0.1:PORT`.
pub fn registry() -> Result<&'static str, String> {
    static REG: OnceLock<Result<Registry, String>> = OnceLock::new();
    once(&REG, start_registry).map(|r| r.addr.as_str())
}

// ---------------------------------------------------------------------------------------
// A server that never answers

/// A listener on 127.0.0.1 that accepts every connection and never sends a byte (the
/// connections stay open until the process ends).
pub fn hanging_server() -> Result<SocketAddr, String> {
    static HANG: OnceLock<Result<SocketAddr, String>> = OnceLock::new();
    once(&HANG, || {
        let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let addr = l.local_addr().map_err(|e| e.to_string())?;
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for s in l.incoming().flatten() {
                held.push(s);
            }
        });
        Ok(addr)
    })
    .copied()
}
