//! A real S3-protocol server for the bucket tests: moto's server mode
//! (PyPI `moto`, `flask`, `flask-cors`; tests/requirements-moto.txt), one
//! per test on a free port of 127.0.0.1, killed when dropped. Found at
//! `$RHO1_MOTO_SERVER`, in the repo's `.venv`, or on PATH; where it is not
//! installed the tests skip saying so, except under CI, which installs it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct S3Server {
    child: Child,
    pub port: u16,
}

fn binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("RHO1_MOTO_SERVER") {
        return Some(PathBuf::from(p));
    }
    let venv = super::repo().join(".venv/bin/moto_server");
    if venv.is_file() {
        return Some(venv);
    }
    let on_path = Command::new("moto_server")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    on_path
        .is_ok_and(|s| s.success())
        .then(|| "moto_server".into())
}

/// One raw HTTP request (moto takes unsigned requests); the status code.
fn request(port: u16, method: &str, path: &str) -> std::io::Result<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head)?;
    let code = String::from_utf8_lossy(&head[9..12]).parse().unwrap_or(0);
    Ok(code)
}

impl S3Server {
    /// A fresh server, or None (the reason printed) where moto is not installed.
    pub fn start() -> Option<S3Server> {
        Self::start_with(&[])
    }

    /// [`Self::start`] with settings for moto in its environment.
    pub fn start_with(env: &[(&str, &str)]) -> Option<S3Server> {
        let Some(bin) = binary() else {
            assert!(
                std::env::var("CI").is_err(),
                "CI must provide moto_server (.ci/run installs tests/requirements-moto.txt)"
            );
            eprintln!(
                "SKIPPED: no moto_server (pip install -r tests/requirements-moto.txt into .venv)"
            );
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let server = S3Server { child, port };
        let t0 = Instant::now();
        while request(port, "GET", "/").is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "moto_server did not start in 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(server)
    }

    pub fn create_bucket(&self, name: &str) {
        let code = request(self.port, "PUT", &format!("/{name}")).unwrap();
        assert_eq!(code, 200, "creating bucket {name}");
    }

    /// The environment a client needs for this server (test credentials).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "AWS_ENDPOINT_URL".into(),
                format!("http://127.0.0.1:{}", self.port),
            ),
            ("AWS_ACCESS_KEY_ID".into(), "rho1-test-key".into()),
            (
                "AWS_SECRET_ACCESS_KEY".into(),
                "rho1-test-secret-value".into(),
            ),
            ("AWS_DEFAULT_REGION".into(), "us-east-1".into()),
            // Failures in these tests are wanted quickly.
            ("RHO1_STORE_RETRIES".into(), "2".into()),
        ]
    }

    /// The objects of `bucket`, by key.
    pub fn list(&self, bucket: &str) -> Vec<String> {
        let mut c = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            c,
            "GET /{bucket}?list-type=2 HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut body = String::new();
        c.read_to_string(&mut body).unwrap();
        body.split("<Key>")
            .skip(1)
            .filter_map(|k| k.split("</Key>").next())
            .map(str::to_string)
            .collect()
    }

    /// Runs `bin` with this server's environment.
    pub fn run(&self, bin: &str, args: &[&str]) -> std::process::Output {
        Command::new(bin)
            .args(args)
            .envs(self.env())
            .output()
            .unwrap()
    }

    pub fn run_ok(&self, bin: &str, args: &[&str]) -> std::process::Output {
        let out = self.run(bin, args);
        assert!(
            out.status.success(),
            "{bin} {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Writes `file` as object `key` of `bucket` as it is, by boto3 (moto's
    /// own dependency, in the Python beside moto_server).
    pub fn put_object(&self, bucket: &str, key: &str, file: &std::path::Path) {
        let bin = binary().unwrap();
        let python = match bin.parent().map(|d| d.join("python")) {
            Some(p) if p.is_file() => p,
            _ => "python3".into(),
        };
        let script = "import sys, boto3; boto3.client('s3', endpoint_url=sys.argv[1]).upload_file(sys.argv[4], sys.argv[2], sys.argv[3])";
        let out = Command::new(python)
            .args([
                "-c",
                script,
                &format!("http://127.0.0.1:{}", self.port),
                bucket,
                key,
            ])
            .arg(file)
            .envs(self.env())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the server (for the tests of a store that goes away).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
