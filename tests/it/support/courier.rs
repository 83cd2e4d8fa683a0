//! A real Courier-IMAP 5.0 on a free loopback port, with implicit TLS
//! (couriertls) and a certificate minted here: namespace `INBOX.` with
//! `.`, users in a userdb, Maildirs owned by the `courier` user.
//!
//! `courier-imap` conflicts with `dovecot-imapd`, so its `imapd` and
//! `imaplogin` come from the unpacked package (scripts/test.sh downloads
//! it); authdaemond, couriertcpd and couriertls from `courier-base` and
//! `courier-authlib`. Courier reads its configuration and the authdaemon
//! socket from compiled-in paths (/etc/courier, /run/courier): each
//! instance runs in its own mount and PID namespace with its own
//! directories mounted there, so nothing on the machine changes, several
//! instances run at once, and killing the namespace's first process ends
//! every daemon of the instance.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use tempfile::TempDir;

use super::cyrus::{run_with_input, stop_group};
use super::{Certs, Server, free_port, unpacked_server, wait_for_greeting};

pub struct Courier {
    pub dir: TempDir,
    pub port: u16,
    pub ca_file: PathBuf,
    child: Child,
}

fn id(flag: &str) -> u32 {
    let out = Command::new("id").args([flag, "courier"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

impl Courier {
    /// Courier with the usual test users (alice, bob, alice-365, bob-365).
    pub fn start() -> Courier {
        Courier::start_with(&super::DovecotConfig::default().users)
    }

    pub fn start_with(users: &[(String, String)]) -> Courier {
        let mut last = String::new();
        for _ in 0..5 {
            match Courier::start_once(users) {
                Ok(server) => return server,
                Err(why) => last = why,
            }
        }
        panic!("courier did not come up after 5 tries: {last}");
    }

    fn start_once(users: &[(String, String)]) -> Result<Courier, String> {
        for program in [
            "/usr/sbin/couriertcpd",
            "/usr/bin/couriertls",
            "/usr/lib/courier/courier-authlib/authdaemond",
            "/usr/sbin/makeuserdb",
            "/usr/libexec/gam_server",
        ] {
            assert!(
                Path::new(program).exists(),
                "{program} is missing: run scripts/test.sh (apt-get install courier-base \
                 courier-authlib courier-authlib-userdb courier-authdaemon gamin)"
            );
        }
        let package = unpacked_server("courier-imap");
        let dir = tempfile::Builder::new()
            .prefix("mailferry-courier-")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path();
        let (uid, gid) = (id("-u"), id("-g"));
        for sub in ["etc/shared", "run/authdaemon", "home", "log"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        for sub in ["", "etc", "run", "home"] {
            std::fs::set_permissions(d.join(sub), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let chown = |p: &Path| std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
        chown(&d.join("run/authdaemon"));
        std::fs::set_permissions(
            d.join("run/authdaemon"),
            std::fs::Permissions::from_mode(0o750),
        )
        .unwrap();
        std::fs::write(
            d.join("etc/authdaemonrc"),
            "authmodulelist=\"authuserdb\"\nauthmodulelistorig=\"authuserdb\"\ndaemons=8\n\
             authdaemonvar=/run/courier/authdaemon\nDEBUG_LOGIN=0\nDEFAULTOPTIONS=\"\"\n\
             LOGGEROPTS=\"\"\n",
        )
        .unwrap();
        // Users map to the courier uid: an unknown uid makes every APPEND
        // wait ~1.2 s in gamin.
        let mut userdb = String::new();
        for (user, password) in users {
            let home = d.join("home").join(user);
            std::fs::create_dir_all(&home).unwrap();
            run_with_input(
                Command::new("/usr/bin/maildirmake.courier").arg(home.join("Maildir")),
                b"",
            )?;
            let hash = run_with_input(
                Command::new("openssl").args(["passwd", "-6", "-stdin"]),
                password.as_bytes(),
            )?;
            userdb.push_str(&format!(
                "{user}\tuid={uid}|gid={gid}|home={h}|mail={h}/Maildir|systempw={}\n",
                hash.trim(),
                h = home.display()
            ));
            chown_tree(&home, uid, gid);
        }
        std::fs::write(d.join("etc/userdb"), userdb).unwrap();
        std::fs::set_permissions(d.join("etc/userdb"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        run_with_input(
            Command::new("/usr/sbin/makeuserdb")
                .arg("-f")
                .arg(d.join("etc/userdb")),
            b"",
        )?;
        // couriertls wants the key and the certificate in one file.
        let certs = Certs::mint(&["localhost", "127.0.0.1"]);
        std::fs::write(
            d.join("etc/imapd.pem"),
            format!("{}{}", certs.leaf_key_pem, certs.leaf_pem),
        )
        .unwrap();
        std::fs::set_permissions(
            d.join("etc/imapd.pem"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let ca_file = d.join("ca.pem");
        std::fs::write(&ca_file, &certs.ca_pem).unwrap();
        run_with_input(
            Command::new("openssl")
                .args(["genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt"])
                .arg("group:ffdhe2048")
                .arg("-out")
                .arg(d.join("etc/dhparams.pem")),
            b"",
        )?;
        std::fs::write(d.join("run/tlscache"), b"").unwrap();
        chown(&d.join("run/tlscache"));
        let port = free_port();
        // Debian's /etc/courier/imapd and imapd-ssl, for a test: no Trash
        // emptying at logout, no connection limits that tests would meet.
        let env = format!(
            "PATH=/usr/sbin:/usr/bin:/sbin:/bin\n\
             IMAP_TLS=1\n\
             IMAP_CAPABILITY=IMAP4rev1 UIDPLUS CHILDREN NAMESPACE THREAD=ORDEREDSUBJECT THREAD=REFERENCES SORT QUOTA IDLE\n\
             IMAP_CAPABILITY_TLS=IMAP4rev1 UIDPLUS CHILDREN NAMESPACE THREAD=ORDEREDSUBJECT THREAD=REFERENCES SORT QUOTA IDLE AUTH=PLAIN\n\
             IMAP_KEYWORDS=1\nIMAP_ACL=1\nIMAP_PROXY=0\nIMAP_IDLE_TIMEOUT=60\n\
             IMAP_MAILBOX_SANITY_CHECK=1\nIMAP_DISABLETHREADSORT=0\nIMAP_CHECK_ALL_FOLDERS=0\n\
             IMAP_OBSOLETE_CLIENT=0\nIMAP_UMASK=022\nIMAP_USELOCKS=1\n\
             IMAP_SHAREDINDEXFILE=/etc/courier/shared/index\nIMAP_ENHANCEDIDLE=0\n\
             IMAP_TRASHFOLDERNAME=Trash\nIMAP_EMPTYTRASH=\nIMAP_MOVE_EXPUNGE_TO_TRASH=0\n\
             TLS_CERTFILE=/etc/courier/imapd.pem\nTLS_DHPARAMS=/etc/courier/dhparams.pem\n\
             TLS_TRUSTCERTS=/etc/ssl/certs/ca-certificates.crt\nTLS_VERIFYPEER=NONE\n\
             TLS_CACHEFILE=/run/courier/tlscache\nTLS_CACHESIZE=524288\n\
             GAM_CLIENT_ID=mailferry-test-{port}\n"
        );
        std::fs::write(d.join("etc/imapd.env"), env).unwrap();
        // Runs as the first process of the namespace: mounts the instance's
        // directories over Courier's compiled-in paths, then starts the
        // daemons; the last one stays in the foreground.
        let inner = format!(
            r#"set -e
mount --bind {d}/etc /etc/courier
mount --bind {d}/run /run/courier
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin /usr/lib/courier/courier-authlib/authdaemond >>{d}/log/authdaemond.log 2>&1 &
i=0; while [ ! -S /run/courier/authdaemon/socket ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done
env -i PATH=/usr/bin:/bin HOME=/nonexistent GAM_CLIENT_ID=mailferry-test-{port} setpriv --reuid={uid} --regid={gid} --clear-groups /usr/libexec/gam_server --notimeout >>{d}/log/gam_server.log 2>&1 &
i=0; while ! grep -q "@/tmp/fam-courier-mailferry-test-{port}" /proc/net/unix && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done
mapfile -t ENVV < {d}/etc/imapd.env
exec env -i "${{ENVV[@]}}" /usr/sbin/couriertcpd -address=127.0.0.1 -maxprocs=200 -maxperip=100 -nodnslookup -noidentlookup {port} /usr/bin/couriertls -server -tcpd -user=courier {pkg}/usr/lib/courier/courier/imaplogin {pkg}/usr/bin/imapd Maildir >>{d}/log/imapd.log 2>&1
"#,
            d = d.display(),
            pkg = package.display(),
        );
        std::fs::write(d.join("inner.sh"), inner).unwrap();
        let child = {
            use std::os::unix::process::CommandExt as _;
            Command::new("setpriv")
                .args(["--pdeathsig", "KILL", "unshare", "--mount", "--propagation"])
                .args([
                    "private",
                    "--pid",
                    "--fork",
                    "--kill-child=SIGKILL",
                    "--mount-proc",
                ])
                .arg("/bin/bash")
                .arg(d.join("inner.sh"))
                .process_group(0)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot start courier: {e}"))?
        };
        let mut server = Courier {
            dir,
            port,
            ca_file,
            child,
        };
        match wait_for_greeting(&mut server.child, port, &server.ca_file, "localhost") {
            Ok(()) => Ok(server),
            Err(why) => {
                let log = server.log();
                server.stop();
                Err(format!("{why}: {log}"))
            }
        }
    }

    pub fn log(&self) -> String {
        ["imapd.log", "authdaemond.log", "gam_server.log"]
            .iter()
            .map(|f| {
                std::fs::read_to_string(self.dir.path().join("log").join(f)).unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn stop(&mut self) {
        stop_group(&mut self.child);
    }
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    let _ = std::os::unix::fs::chown(path, Some(uid), Some(gid));
    if path.is_dir() {
        for e in std::fs::read_dir(path).unwrap().flatten() {
            chown_tree(&e.path(), uid, gid);
        }
    }
}

impl Drop for Courier {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Server for Courier {
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
        "courier"
    }
    fn separator(&self) -> char {
        '.'
    }
    fn prefix(&self) -> &'static str {
        "INBOX."
    }
}
