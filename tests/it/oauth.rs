//! XOAUTH2 end to end: a token endpoint served by the tests on loopback,
//! Dovecot's oauth2 passdb checking those tokens, mailferry in between.

use std::time::Duration;

use crate::support::identity::Identity;
use crate::support::*;

const DATE: &str = "03-Mar-2025 10:00:00 +0100";

fn oauth_server(identity: &Identity) -> Dovecot {
    Dovecot::start_with(DovecotConfig {
        oauth_introspection: Some(identity.introspection_url()),
        ..DovecotConfig::default()
    })
}

fn seed(server: &Dovecot, n: usize, size: usize) {
    let mut alice = server.client("alice", "alice-pw");
    alice.create("Projects");
    for i in 0..n {
        let folder = if i % 2 == 0 { "INBOX" } else { "Projects" };
        let mut body = message("m", &format!("m{i}@x"), "");
        body.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, size));
        body.extend_from_slice(b"\r\n");
        alice.append(folder, "\\Seen", DATE, &body);
    }
}

/// `source` user → target mailbox `target` (logged in with XOAUTH2).
fn accounts(server: &Dovecot, target: &str) -> std::path::PathBuf {
    let path = server.dir.path().join("oauth-accounts.csv");
    std::fs::write(
        &path,
        format!("EmailAddress,UserName,Password\n{target},alice,alice-pw\n"),
    )
    .unwrap();
    path
}

/// XOAUTH2 against `identity`, with the client secret from the environment.
fn oauth_args(identity: &Identity) -> Vec<String> {
    let mut args = base_oauth_args(identity);
    args.extend([
        "--client-secret-env".into(),
        "MAILFERRY_TEST_CLIENT_SECRET".into(),
    ]);
    args
}

/// XOAUTH2 against `identity`, credential not included.
fn base_oauth_args(identity: &Identity) -> Vec<String> {
    vec![
        "--target-kind".into(),
        "imap".into(),
        "--target-auth".into(),
        "xoauth2".into(),
        "--tenant".into(),
        identity.tenant.clone(),
        "--client-id".into(),
        identity.client_id.clone(),
        "--oauth-authority".into(),
        identity.authority(),
    ]
}

fn upload_oauth(
    server: &Dovecot,
    port: u16,
    store: &std::path::Path,
    accounts: &std::path::Path,
    identity: &Identity,
    secret: &str,
    extra: &[&str],
) -> (Run, serde_json::Value) {
    let mut args = oauth_args(identity);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = Run::of(
        upload_command(server, port, store, accounts, &args)
            .env("MAILFERRY_TEST_CLIENT_SECRET", secret),
    );
    let json = run.json();
    (run, json)
}

fn same_mail(server: &Dovecot, identity: &Identity, target: &str) {
    let mut src = server.client("alice", "alice-pw");
    let mut dst = server.client_xoauth2(target, &identity.mint_token());
    for folder in ["INBOX", "Projects"] {
        let a: Vec<Vec<u8>> = src.messages(folder).into_iter().map(|m| m.body).collect();
        let b: Vec<Vec<u8>> = dst.messages(folder).into_iter().map(|m| m.body).collect();
        assert_eq!(a, b, "{folder}");
    }
}

#[test]
fn client_credentials_and_xoauth2_upload_end_to_end() {
    let identity = Identity::start("example.com", Duration::from_secs(3600));
    let server = oauth_server(&identity);
    seed(&server, 6, 100);
    let store = tempfile::tempdir().unwrap();
    let accounts = accounts(&server, "carol@example.com");
    let (run, _) = mirror(&server, store.path(), &accounts, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (run, summary) = upload_oauth(
        &server,
        server.port,
        store.path(),
        &accounts,
        &identity,
        &identity.client_secret,
        &[],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    assert_eq!(total(&summary, "appended"), 6);
    assert!(server.log().contains("method=XOAUTH2"));
    assert_eq!(
        identity.issued(),
        1,
        "one token serves every connection while it lasts"
    );
    // The token request asked for Exchange's IMAP scope.
    let (_, form) = identity
        .requests()
        .into_iter()
        .find(|(p, _)| p.ends_with("/token"))
        .unwrap();
    assert_eq!(form["scope"], "https://outlook.office365.com/.default");
    assert_eq!(form["grant_type"], "client_credentials");
    same_mail(&server, &identity, "carol@example.com");
}

#[test]
fn a_wrong_client_secret_is_a_clear_error_that_never_shows_the_secret() {
    let identity = Identity::start("example.com", Duration::from_secs(3600));
    let server = oauth_server(&identity);
    seed(&server, 2, 100);
    let store = tempfile::tempdir().unwrap();
    let accounts = accounts(&server, "carol@example.com");
    mirror(&server, store.path(), &accounts, &[]);
    let (run, summary) = upload_oauth(
        &server,
        server.port,
        store.path(),
        &accounts,
        &identity,
        "not-the-secret-xyz",
        &["-vvv"],
    );
    // 3: the credentials were refused.
    assert_eq!(run.code, 3);
    let error = summary["accounts"][0]["error"].as_str().unwrap();
    assert!(error.contains("carol@example.com"), "{error}");
    assert!(
        error.contains("invalid_client") && error.contains("AADSTS7000215"),
        "{error}"
    );
    for text in [&run.stdout, &run.stderr] {
        assert!(!text.contains("not-the-secret-xyz"));
    }
}

#[test]
fn tokens_that_expire_mid_run_are_replaced_and_the_run_completes() {
    // Tokens last 3 s; the link is slow and drops connections, so the run
    // lasts longer than a token and must log in again with new ones.
    let identity = Identity::start("example.com", Duration::from_secs(3));
    let server = oauth_server(&identity);
    seed(&server, 12, 60_000);
    let store = tempfile::tempdir().unwrap();
    let accounts = accounts(&server, "carol@example.com");
    let (run, _) = mirror(&server, store.path(), &accounts, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let proxy = Proxy::start(
        server.port,
        Faults {
            cuts: 3,
            cut_after: 5_000,
            bytes_per_sec: Some(40_000),
            ..Faults::default()
        },
    );
    let started = std::time::Instant::now();
    let (run, summary) = upload_oauth(
        &server,
        proxy.port,
        store.path(),
        &accounts,
        &identity,
        &identity.client_secret,
        &["--target-connections", "1", "-vvv"],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    assert!(
        started.elapsed() > Duration::from_secs(4),
        "the run must outlast a token"
    );
    assert_eq!(total(&summary, "appended"), 12);
    assert!(
        identity.issued() >= 2,
        "a new token after the first expired"
    );
    same_mail(&server, &identity, "carol@example.com");
    // Every token and the secret stay out of the output, even at trace level.
    assert!(
        run.stderr
            .lines()
            .any(|l| l.contains("C: ") && l.contains(" APPEND ")),
        "no trace output to search"
    );
    for t in identity
        .all_tokens()
        .iter()
        .chain([&identity.client_secret])
    {
        assert!(!run.stdout.contains(t.as_str()) && !run.stderr.contains(t.as_str()));
    }
    let index = std::fs::read(store.path().join("index.sqlite")).unwrap();
    for t in identity.all_tokens() {
        assert!(!index.windows(t.len()).any(|w| w == t.as_bytes()));
    }
}

#[test]
fn device_code_prints_the_code_waits_and_caches_the_refresh_token_privately() {
    use std::os::unix::fs::PermissionsExt;
    let identity = Identity::start("example.com", Duration::from_secs(3600));
    let server = oauth_server(&identity);
    seed(&server, 2, 100);
    let store = tempfile::tempdir().unwrap();
    let accounts = accounts(&server, "carol@example.com");
    mirror(&server, store.path(), &accounts, &[]);
    let cache = store.path().join("token-cache");
    let cache_arg = cache.to_str().unwrap();
    let args = ["--device-code", "--token-cache", cache_arg];
    let (run, summary) = upload_oauth(
        &server,
        server.port,
        store.path(),
        &accounts,
        &identity,
        "",
        &args,
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    assert!(
        run.stderr.contains("enter the code ABCD-1234"),
        "{}",
        run.stderr
    );
    assert_eq!(total(&summary, "appended"), 2);
    let mode = std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let delegated = identity
        .requests()
        .into_iter()
        .find(|(p, _)| p.ends_with("/devicecode"))
        .unwrap()
        .1;
    assert_eq!(
        delegated["scope"],
        "https://outlook.office.com/IMAP.AccessAsUser.All offline_access"
    );

    // The next run signs in with the cached refresh token: no new code.
    server.client("alice", "alice-pw").append(
        "INBOX",
        "",
        DATE,
        &message("later", "later@x", "later"),
    );
    mirror(&server, store.path(), &accounts, &[]);
    let (run, again) = upload_oauth(
        &server,
        server.port,
        store.path(),
        &accounts,
        &identity,
        "",
        &args,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("ABCD-1234"));
    assert_eq!(total(&again, "appended"), 1);
    let codes = identity
        .requests()
        .iter()
        .filter(|(p, _)| p.ends_with("/devicecode"))
        .count();
    assert_eq!(codes, 1);
    let refreshed = identity
        .requests()
        .iter()
        .any(|(_, f)| f.get("grant_type").map(String::as_str) == Some("refresh_token"));
    assert!(refreshed);
    same_mail(&server, &identity, "carol@example.com");
}

#[test]
fn a_certificate_credential_signs_a_client_assertion() {
    use base64::Engine as _;
    use sha1::Digest as _;
    let identity = Identity::start("example.com", Duration::from_secs(3600));
    let server = oauth_server(&identity);
    seed(&server, 2, 100);
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("app.key");
    let cert = dir.path().join("app.pem");
    let ok = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=mailferry test app",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is needed for this test (scripts/test.sh installs it)");
    assert!(ok.status.success());
    let public = std::process::Command::new("openssl")
        .args(["rsa", "-pubout", "-in"])
        .arg(&key)
        .output()
        .unwrap()
        .stdout;
    let der = {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_file(&cert).unwrap()
    };
    let thumbprint =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(&der));
    identity.register_certificate(&public, &thumbprint);

    let store = tempfile::tempdir().unwrap();
    let accounts = accounts(&server, "carol@example.com");
    mirror(&server, store.path(), &accounts, &[]);
    let mut args = base_oauth_args(&identity);
    args.extend([
        "--certificate".into(),
        cert.to_str().unwrap().into(),
        "--private-key".into(),
        key.to_str().unwrap().into(),
    ]);
    let with_key = |args: &[String], store: &std::path::Path| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Run::of(&mut upload_command(
            &server,
            server.port,
            store,
            &accounts,
            &args,
        ))
    };
    let run = with_key(&args, store.path());
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    assert_eq!(total(&run.json(), "appended"), 2);
    let form = identity
        .requests()
        .into_iter()
        .find(|(p, _)| p.ends_with("/token"))
        .unwrap()
        .1;
    assert!(!form.contains_key("client_secret"));
    assert!(form.contains_key("client_assertion"));

    // A key that does not match the registered certificate is refused.
    let other = dir.path().join("other.key");
    std::process::Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&other)
        .arg("2048")
        .output()
        .unwrap();
    let n = args.len();
    args[n - 1] = other.to_str().unwrap().into();
    let store2 = tempfile::tempdir().unwrap();
    mirror(&server, store2.path(), &accounts, &[]);
    let run = with_key(&args, store2.path());
    // 3: the credentials were refused.
    assert_eq!(run.code, 3, "{}", run.stdout);
    assert!(run.stdout.contains("invalid_client"), "{}", run.stdout);
}
