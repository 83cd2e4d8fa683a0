//! Microsoft's Azure Storage emulator, Azurite, on a free loopback port:
//! one per test binary (each test gets containers of its own), installed by
//! scripts/test.sh (`npm install azurite`), found through `MAILFERRY_AZURITE`
//! or in ~/.cache/mailferry-test/azurite.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use base64::Engine as _;
use hmac::{Hmac, Mac};

/// The emulator's one account and its published key.
pub const ACCOUNT: &str = "devstoreaccount1";
pub const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

pub struct Azurite {
    pub port: u16,
    /// The shell that stops Azurite when this process's end closes its
    /// stdin (statics are never dropped); its stdin is kept open here.
    _shell: std::sync::Mutex<std::process::Child>,
    _data: tempfile::TempDir,
}

fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("MAILFERRY_AZURITE") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").expect("HOME is set");
    PathBuf::from(home).join(".cache/mailferry-test/azurite/node_modules/.bin/azurite-blob")
}

impl Azurite {
    /// The test binary's Azurite, started on first use.
    pub fn shared() -> &'static Azurite {
        static ONE: OnceLock<Azurite> = OnceLock::new();
        ONE.get_or_init(Azurite::start)
    }

    fn start() -> Azurite {
        let bin = binary();
        assert!(
            bin.exists(),
            "Azurite is not installed at {} (scripts/test.sh installs it: npm install \
             azurite@3.35.0 in ~/.cache/mailferry-test/azurite, or set MAILFERRY_AZURITE)",
            bin.display()
        );
        let data = tempfile::tempdir().unwrap();
        let log = data.path().join("azurite.out");
        // The shell waits for its stdin to close (this test process ending,
        // however it ends), then stops Azurite. Azurite writes to a file:
        // a pipe nobody reads any more would crash it.
        let script = format!(
            "'{}' --blobHost 127.0.0.1 --blobPort 0 --location '{}' --silent --disableTelemetry \
             --skipApiVersionCheck >'{}' 2>&1 & pid=$!; cat >/dev/null; kill $pid 2>/dev/null; wait",
            bin.display(),
            data.path().display(),
            log.display()
        );
        let child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start Azurite");
        let said = "listens on http://127.0.0.1:";
        let started = std::time::Instant::now();
        let port: u16 = loop {
            let out = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(at) = out.find(said) {
                let rest = &out[at + said.len()..];
                let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
                if !digits.is_empty() && rest.len() > digits.len() {
                    break digits.parse().expect("Azurite's port");
                }
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "Azurite did not say where it listens within 60 s: {out}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        Azurite {
            port,
            _shell: std::sync::Mutex::new(child),
            _data: data,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    /// A new, empty container; its `az://` store address, with `prefix`.
    pub fn container(&self, prefix: &str) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "t{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        self.create_container(&name);
        if prefix.is_empty() {
            format!("az://{name}")
        } else {
            format!("az://{name}/{prefix}")
        }
    }

    /// The environment Azure's tools read, pointed at this emulator.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AZURE_STORAGE_ACCOUNT_NAME".into(), ACCOUNT.into()),
            ("AZURE_STORAGE_ACCOUNT_KEY".into(), KEY.into()),
            ("AZURE_STORAGE_ENDPOINT".into(), self.endpoint()),
            ("AZURE_ALLOW_HTTP".into(), "true".into()),
        ]
    }

    /// [`Azurite::env`] as `object_store` settings (lower-case keys).
    pub fn settings(&self) -> Vec<(String, String)> {
        self.env()
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect()
    }

    /// Creates a container with a SharedKey-signed REST request (object
    /// storage clients do not make containers; an administrator does).
    fn create_container(&self, name: &str) {
        let date = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let version = "2023-11-03";
        let resource = format!("/{ACCOUNT}/{ACCOUNT}/{name}\nrestype:container");
        let to_sign = format!(
            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n{resource}"
        );
        let key = base64::engine::general_purpose::STANDARD
            .decode(KEY)
            .unwrap();
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
        mac.update(to_sign.as_bytes());
        let signature =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "PUT /{ACCOUNT}/{name}?restype=container HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\
             x-ms-date: {date}\r\nx-ms-version: {version}\r\n\
             Authorization: SharedKey {ACCOUNT}:{signature}\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 201"),
            "Azurite refused to create container {name}: {answer}"
        );
    }
}
