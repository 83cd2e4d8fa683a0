//! An S3 look-alike on a free loopback port: moto's server (PyPI `moto`,
//! installed by scripts/test.sh), one per test binary, a bucket per test.
//! Amazon S3 itself cannot run here; moto answers as S3 does, conditional
//! writes (If-None-Match, If-Match) included.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

pub struct Moto {
    pub port: u16,
    /// The shell that stops the server when this process's end closes its
    /// stdin (statics are never dropped).
    _shell: std::sync::Mutex<std::process::Child>,
    _dir: tempfile::TempDir,
}

impl Moto {
    pub fn shared() -> &'static Moto {
        static ONE: OnceLock<Moto> = OnceLock::new();
        ONE.get_or_init(Moto::start)
    }

    fn start() -> Moto {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let script = format!(
            "python3 -m moto.server -H 127.0.0.1 -p {port} >'{}' 2>&1 & pid=$!; \
             cat >/dev/null; kill $pid 2>/dev/null; wait",
            dir.path().join("moto.out").display()
        );
        let child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start moto");
        let started = std::time::Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "moto's S3 server did not start within 60 s (scripts/test.sh installs it: \
                 pip install 'moto[server]'): {}",
                std::fs::read_to_string(dir.path().join("moto.out")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Moto {
            port,
            _shell: std::sync::Mutex::new(child),
            _dir: dir,
        }
    }

    /// A new, empty bucket; its `s3://` store address, with `prefix`.
    pub fn bucket(&self, prefix: &str) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "t{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "PUT /{name} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "bucket {name}: {answer}"
        );
        format!("s3://{name}/{prefix}")
    }

    /// The environment AWS's tools read, pointed at this server.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "AWS_ENDPOINT".into(),
                format!("http://127.0.0.1:{}", self.port),
            ),
            ("AWS_ALLOW_HTTP".into(), "true".into()),
            ("AWS_ACCESS_KEY_ID".into(), "mailferry-test".into()),
            (
                "AWS_SECRET_ACCESS_KEY".into(),
                "s3-secret-never-shown".into(),
            ),
            ("AWS_REGION".into(), "us-east-1".into()),
        ]
    }

    pub fn settings(&self) -> Vec<(String, String)> {
        self.env()
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect()
    }
}
