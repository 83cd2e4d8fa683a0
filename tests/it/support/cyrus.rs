//! A real Cyrus IMAP 3.6 on a free loopback port, with implicit TLS and a
//! certificate minted here, as Debian configures it: namespace `INBOX.` with
//! `.`, users in a sasldb, mailboxes created by an admin.
//!
//! `cyrus-imapd` conflicts with `dovecot-imapd`, so only its `imapd` comes
//! from the package, unpacked (scripts/test.sh downloads it); `master` and
//! the libraries come from `cyrus-common`. Cyrus must run as the `cyrus`
//! user: the instance directory is theirs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::{Certs, Server, free_port, unpacked_server, wait_for_greeting};

const MASTER: &str = "/usr/lib/cyrus/bin/master";
const CTL_CYRUSDB: &str = "/usr/lib/cyrus/bin/ctl_cyrusdb";
const ADMIN: &str = "cyrusadmin";
const ADMIN_PASSWORD: &str = "cyrusadmin-pw";

pub struct Cyrus {
    pub dir: TempDir,
    pub port: u16,
    pub ca_file: PathBuf,
    child: Child,
}

impl Cyrus {
    /// Cyrus with the usual test users (alice, bob, alice-365, bob-365).
    pub fn start() -> Cyrus {
        Cyrus::start_with(&super::DovecotConfig::default().users)
    }

    pub fn start_with(users: &[(String, String)]) -> Cyrus {
        let mut last = String::new();
        for _ in 0..5 {
            match Cyrus::start_once(users) {
                Ok(server) => return server,
                Err(why) => last = why,
            }
        }
        panic!("cyrus did not come up after 5 tries: {last}");
    }

    fn start_once(users: &[(String, String)]) -> Result<Cyrus, String> {
        assert!(
            Path::new(MASTER).exists() && super::which("saslpasswd2").is_some(),
            "Cyrus is not installed: run scripts/test.sh (apt-get install cyrus-common \
             cyrus-admin sasl2-bin, and the unpacked cyrus-imapd)"
        );
        let imapd = unpacked_server("cyrus-imapd").join("usr/lib/cyrus/bin/imapd");
        // The cyrus user must reach everything: a directory under /tmp.
        let dir = tempfile::Builder::new()
            .prefix("mailferry-cyrus-")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path();
        for sub in [
            "conf/db",
            "conf/socket",
            "conf/log",
            "conf/proc",
            "conf/lock",
            "spool",
            "tls",
            "run",
        ] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let certs = Certs::mint(&["localhost", "127.0.0.1"]);
        std::fs::write(d.join("tls/cert.pem"), &certs.leaf_pem).unwrap();
        std::fs::write(d.join("tls/key.pem"), &certs.leaf_key_pem).unwrap();
        let ca_file = d.join("ca.pem");
        std::fs::write(&ca_file, &certs.ca_pem).unwrap();
        let port = free_port();
        let conf = d.join("imapd.conf");
        std::fs::write(
            &conf,
            format!(
                "configdirectory: {d}/conf\nproc_path: {d}/conf/proc\n\
                 mboxname_lockpath: {d}/conf/lock\ndefaultpartition: default\n\
                 partition-default: {d}/spool\nidlesocket: {d}/conf/socket/idle\n\
                 notifysocket: {d}/conf/socket/notify\nlmtpsocket: {d}/conf/socket/lmtp\n\
                 servername: localhost\nadmins: {ADMIN}\n\
                 altnamespace: no\nunixhierarchysep: no\n\
                 sasl_pwcheck_method: auxprop\nsasl_auxprop_plugin: sasldb\n\
                 sasl_sasldb_path: {d}/sasldb\nsasl_auto_transition: no\n\
                 allowplaintext: yes\nsasl_mech_list: PLAIN LOGIN\n\
                 tls_server_cert: {d}/tls/cert.pem\ntls_server_key: {d}/tls/key.pem\n\
                 tls_session_timeout: 0\nfailedloginpause: 0\nimapidlepoll: 1\n\
                 statuscache: 0\nconversations: 0\nsearch_engine: none\numask: 077\n",
                d = d.display()
            ),
        )
        .unwrap();
        // master does not hand its -C to the services: repeat it.
        std::fs::write(
            d.join("cyrus.conf"),
            format!(
                "SERVICES {{\n  imaps cmd=\"{} -s -C {} -U 1000\" listen=\"127.0.0.1:{port}\" \
                 prefork=2 maxchild=100\n}}\n",
                imapd.display(),
                conf.display()
            ),
        )
        .unwrap();
        let mut everyone = vec![(ADMIN.to_string(), ADMIN_PASSWORD.to_string())];
        everyone.extend(users.iter().cloned());
        for (user, password) in &everyone {
            run_with_input(
                Command::new("saslpasswd2")
                    .args(["-p", "-c", "-u", "localhost", "-f"])
                    .arg(d.join("sasldb"))
                    .arg(user),
                password.as_bytes(),
            )?;
        }
        let status = Command::new("chown")
            .args(["-R", "cyrus:mail"])
            .arg(d)
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err("chown cyrus:mail failed".into());
        }
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        run_with_input(
            Command::new(CTL_CYRUSDB).arg("-C").arg(&conf).arg("-r"),
            b"",
        )?;
        // The mailboxes, created before the port opens: one IMAP session
        // on stdin (imapd -X), as the admin.
        let mut script = format!("a LOGIN {ADMIN} {ADMIN_PASSWORD}\r\n");
        for (i, (user, _)) in users.iter().enumerate() {
            script.push_str(&format!("c{i} CREATE \"user.{user}\"\r\n"));
        }
        script.push_str("z LOGOUT\r\n");
        let out = run_with_input(
            Command::new(&imapd)
                .arg("-C")
                .arg(&conf)
                .arg("-X")
                .env("CYRUS_SERVICE", "imap")
                .env("CYRUS_ID", "0"),
            script.as_bytes(),
        )?;
        let bad: Vec<&str> = out
            .lines()
            .filter(|l| (l.starts_with('a') || l.starts_with('c')) && !l.contains(" OK"))
            .filter(|l| !l.starts_with('*'))
            .collect();
        if !bad.is_empty() || !out.contains("z OK") {
            return Err(format!("creating mailboxes failed: {out}"));
        }
        // Its own process group: imapd children outlive a killed master.
        let child = {
            use std::os::unix::process::CommandExt as _;
            Command::new(MASTER)
                .arg("-C")
                .arg(&conf)
                .arg("-M")
                .arg(d.join("cyrus.conf"))
                .arg("-p")
                .arg(d.join("run/master.pid"))
                .args(["-l", "128", "-D"])
                .current_dir(d)
                .process_group(0)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot start cyrus master: {e}"))?
        };
        let mut server = Cyrus {
            dir,
            port,
            ca_file,
            child,
        };
        match wait_for_greeting(&mut server.child, port, &server.ca_file, "localhost") {
            Ok(()) => Ok(server),
            Err(why) => {
                server.stop();
                Err(why)
            }
        }
    }

    pub fn stop(&mut self) {
        stop_group(&mut self.child);
    }
}

impl Drop for Cyrus {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Server for Cyrus {
    fn port(&self) -> u16 {
        self.port
    }
    fn ca_file(&self) -> &Path {
        &self.ca_file
    }
    fn cert_name(&self) -> &str {
        "localhost"
    }
    fn dir(&self) -> &Path {
        self.dir.path()
    }
    fn name(&self) -> &'static str {
        "cyrus"
    }
    fn separator(&self) -> char {
        '.'
    }
    fn prefix(&self) -> &'static str {
        "INBOX."
    }
}

/// Runs a command to its end with `input` on stdin; its output, or why not.
pub(crate) fn run_with_input(cmd: &mut Command, input: &[u8]) -> Result<String, String> {
    use std::io::Write as _;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{cmd:?} failed ({}): {text}", out.status))
    }
}

/// SIGTERM to a server's process group, then SIGKILL to what is left.
pub(crate) fn stop_group(child: &mut Child) {
    let group = format!("-{}", child.id());
    let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            _ if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let _ = Command::new("kill")
        .args(["-KILL", "--", &group])
        .stderr(Stdio::null())
        .status();
}
