//! End-to-end harness: installs workerd from npm (once, under the target folder), starts
//! `bindery serve` and workerd on loopback ports, and speaks minimal HTTP/1.1 to them.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The workerd release the protocol spec was observed on.
pub const WORKERD_VERSION: &str = "1.20261117.1";

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Folder for tools the tests install.
pub fn tools_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e-tools")
}

/// The workerd binary, installed with npm on first use.
pub fn workerd_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let prefix = tools_dir();
        let bin = prefix.join("node_modules/@cloudflare/workerd-linux-64/bin/workerd");
        if !bin.is_file() {
            std::fs::create_dir_all(&prefix).expect("creating the tools folder");
            let status = Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--prefix"])
                .arg(&prefix)
                .arg(format!("workerd@{WORKERD_VERSION}"))
                .stdout(Stdio::null())
                .status()
                .expect("running npm (is Node.js installed?)");
            assert!(status.success(), "npm install workerd failed: {status}");
        }
        assert!(bin.is_file(), "workerd binary missing at {}", bin.display());
        bin
    })
    .clone()
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("finding a free port")
}

fn send_term(child: &Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running `bindery serve`.
pub struct Bindery {
    child: Option<Child>,
    /// `127.0.0.1:port`.
    pub addr: String,
    /// The data folder.
    pub data: PathBuf,
    stderr_log: PathBuf,
}

impl Bindery {
    /// Starts the server on a free port with `extra` arguments.
    pub fn start(data: &Path, extra: &[&str]) -> Bindery {
        let stderr_log = data.with_extension("bindery-stderr.log");
        let log = std::fs::File::create(&stderr_log).expect("creating the log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_bindery"))
            .arg("serve")
            .arg("--data")
            .arg(data)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env("BINDERY_LOG", "info")
            .env_remove("BINDERY_TOKEN")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("starting bindery");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                if let Some(addr) = line.strip_prefix("bindery listening on http://") {
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                panic!(
                    "bindery did not start: {}",
                    std::fs::read_to_string(&stderr_log).unwrap_or_default()
                )
            });
        Bindery {
            child: Some(child),
            addr,
            data: data.to_owned(),
            stderr_log,
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for a clean exit; returns whether it exited successfully.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        send_term(&child);
        match wait_with_timeout(&mut child, Duration::from_secs(20)) {
            Some(status) => status.success(),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                false
            }
        }
    }
}

impl Drop for Bindery {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A running workerd.
pub struct Workerd {
    child: Option<Child>,
    log: PathBuf,
}

impl Workerd {
    /// Starts `workerd serve [--experimental] config` and waits until `port` accepts.
    pub fn start(config: &Path, experimental: bool, port: u16) -> Workerd {
        let log = config.with_extension("workerd.log");
        let file = std::fs::File::create(&log).expect("creating the workerd log");
        let mut cmd = Command::new(workerd_bin());
        cmd.arg("serve");
        if experimental {
            cmd.arg("--experimental");
        }
        let child = cmd
            .arg(config)
            .current_dir(config.parent().expect("config folder"))
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .expect("starting workerd");
        let mut w = Workerd {
            child: Some(child),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            if let Some(child) = w.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("workerd exited ({status}): {}", w.log());
            }
            assert!(
                Instant::now() < deadline,
                "workerd did not listen: {}",
                w.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        w
    }

    /// workerd's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Workerd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            send_term(&child);
            if wait_with_timeout(&mut child, Duration::from_secs(5)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// A response read by [`http`].
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// One HTTP/1.1 request with `Connection: close`; `timeout` bounds the whole exchange.
pub fn http(
    method: &str,
    addr: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<HttpResponse> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> std::io::Result<HttpResponse> {
    let bad = |m: &str| std::io::Error::other(m.to_owned());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("no status line"))?;
    let mut parts = status_line.splitn(3, ' ');
    let _version = parts.next();
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status"))?;
    let reason = parts.next().unwrap_or("").to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse {
        status,
        reason,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| std::io::Error::other("bad chunk"))?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| std::io::Error::other("bad chunk size"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err(std::io::Error::other("truncated chunk"));
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Copies the fixture project `server/e2e/<name>` into `dest`.
pub fn copy_fixture(name: &str, dest: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e").join(name);
    copy_dir(&src, dest);
}

fn copy_dir(src: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).expect("creating the fixture copy");
    for entry in std::fs::read_dir(src).expect("reading the fixture") {
        let entry = entry.expect("fixture entry");
        let to = dest.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to).expect("copying a fixture file");
        }
    }
}

/// Runs `bindery <args>` to completion; returns (success, stdout, stderr).
pub fn bindery_cli(args: &[&str], cwd: &Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bindery"))
        .args(args)
        .current_dir(cwd)
        .env_remove("BINDERY_TOKEN")
        .output()
        .expect("running bindery");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Generates the workerd config of the fixture at `project` for a server at `bindery`;
/// returns the config path and the Worker's port.
pub fn workerd_config(
    project: &Path,
    bindery: &str,
    token: Option<&str>,
    out: &str,
) -> (PathBuf, u16) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let driver = format!("127.0.0.1:{}", free_port());
    let mut args = vec![
        "workerd-config",
        "--wrangler",
        "wrangler.jsonc",
        "--out",
        out,
        "--bindery",
        bindery,
        "--listen",
        &listen,
        "--driver-listen",
        &driver,
    ];
    if let Some(t) = token {
        args.push("--token");
        args.push(t);
    }
    let (ok, stdout, stderr) = bindery_cli(&args, project);
    assert!(ok, "workerd-config failed: {stdout}{stderr}");
    (project.join(out), port)
}

/// A Python virtual environment with boto3 and the AWS CLI, installed with pip on first use.
pub fn python_venv() -> PathBuf {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let venv = tools_dir().join("venv");
        let ready = venv.join("bin/aws").is_file()
            && Command::new(venv.join("bin/python"))
                .args(["-c", "import boto3"])
                .status()
                .is_ok_and(|s| s.success());
        if !ready {
            std::fs::create_dir_all(tools_dir()).expect("creating the tools folder");
            let status = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .expect("running python3 -m venv (is Python 3 installed?)");
            assert!(status.success(), "creating the venv failed: {status}");
            let status = Command::new(venv.join("bin/pip"))
                .args([
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "boto3",
                    "awscli",
                ])
                .status()
                .expect("running pip");
            assert!(
                status.success(),
                "pip install boto3 awscli failed: {status}"
            );
        }
        venv
    })
    .clone()
}
