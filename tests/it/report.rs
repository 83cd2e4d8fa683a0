//! `mailferry report --html` after a real mirror and upload (Dovecot on both
//! sides), rendered by a real browser: Debian's chromium, headless. The
//! numbers read back from the rendered DOM must be those of
//! `status --json`, and hostile subjects must arrive as text.
//!
//! Set MAILFERRY_KEEP_SCREENSHOT=/some/file.png to keep the screenshot.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

const DATE_1: &str = "03-Mar-2025 10:00:00 +0100";
const DATE_2: &str = "15-Jul-2019 23:59:59 -0700";
/// The subject of the message too large for the target.
const HOSTILE: &str = "Q3 figures <script>alert(1)</script> & \"plans\"";
/// "Projects & Plans" in modified UTF-7.
const AMP_FOLDER: &str = "Projects &- Plans";
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(60);

fn seed(server: &Dovecot) -> Vec<u8> {
    let mut alice = server.client("alice", "alice-pw");
    alice.create("Sent");
    alice.create(AMP_FOLDER);
    alice.create("Archive/2019");
    alice.append("INBOX", "\\Seen", DATE_1, &message("one", "one@x", "first"));
    alice.append("INBOX", "", DATE_2, &message("two", "two@x", "second"));
    alice.append("Sent", "\\Seen", DATE_1, &message("sent", "sent@x", "s"));
    alice.append(AMP_FOLDER, "", DATE_1, &message("plan a", "pa@x", "a"));
    alice.append(AMP_FOLDER, "", DATE_2, &message("plan b", "pb@x", "b"));
    alice.append(
        "Archive/2019",
        "\\Seen",
        DATE_2,
        &message("old", "old@x", "old"),
    );
    let mut big = message(HOSTILE, "big@x", "");
    big.extend(std::iter::repeat_n(b'x', 2 << 20));
    big.extend_from_slice(b"\r\n");
    alice.append("INBOX", "", DATE_1, &big);

    let mut bob = server.client("bob", "bob-pw");
    bob.create("Drafts");
    bob.create("Empty");
    bob.append("INBOX", "", DATE_1, &message("hi bob", "b1@x", "1"));
    bob.append("INBOX", "\\Seen", DATE_2, &message("re: hi", "b2@x", "2"));
    bob.append("Drafts", "\\Draft", DATE_1, &message("draft", "b3@x", "3"));
    big
}

/// One element of the rendered DOM: its attributes (decoded) and the text
/// right after its start tag.
#[derive(Debug)]
struct Element {
    attrs: BTreeMap<String, String>,
    text: String,
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// Every start tag that has a data-* attribute, from serialized HTML (as
/// chromium's --dump-dom writes it: attribute values in double quotes).
fn marked_elements(html: &str) -> Vec<Element> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        rest = &rest[lt + 1..];
        if rest.starts_with('/') || rest.starts_with('!') {
            continue;
        }
        // The tag runs to the first '>' outside a quoted value.
        let mut in_quote = false;
        let mut end = None;
        for (i, c) in rest.char_indices() {
            match c {
                '"' => in_quote = !in_quote,
                '>' if !in_quote => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let Some(end) = end else { break };
        let tag = &rest[..end];
        rest = &rest[end + 1..];
        let mut attrs = BTreeMap::new();
        let mut t = tag;
        while let Some(eq) = t.find("=\"") {
            let name = t[..eq].rsplit(' ').next().unwrap_or("").to_string();
            let after = &t[eq + 2..];
            let close = after.find('"').expect("unterminated attribute");
            attrs.insert(name, unescape(&after[..close]));
            t = &after[close + 1..];
        }
        if !attrs.keys().any(|k| k.starts_with("data-")) {
            continue;
        }
        let text = unescape(&rest[..rest.find('<').unwrap_or(rest.len())]);
        out.push(Element { attrs, text });
    }
    out
}

/// Runs chromium headless with `args` and the page, stdout to `stdout`;
/// kills its whole process group after [`CHROMIUM_TIMEOUT`].
fn chromium(profile: &Path, page: &Path, args: &[String], stdout: &Path) -> String {
    use std::os::unix::process::CommandExt as _;
    let binary = which("chromium").expect(
        "chromium is not installed, and the report test needs a real browser: run \
         `apt-get install -y chromium fonts-dejavu-core` (scripts/test.sh does this)",
    );
    let stderr_path = stdout.with_extension("stderr");
    let mut child = Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(stdout).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .process_group(0)
        .spawn()
        .expect("cannot start chromium");
    let deadline = Instant::now() + CHROMIUM_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            // The browser's helpers share its process group: end them all.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            panic!(
                "chromium did not finish within {CHROMIUM_TIMEOUT:?}: {}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(status.success(), "chromium failed ({status}): {stderr}");
    stderr
}

fn group_digits(text: &str) -> String {
    text.replace(',', "")
}

#[test]
fn html_report_renders_in_chromium_with_the_numbers_of_status_json() {
    let server = Dovecot::start();
    let big = seed(&server);
    let store = tempfile::tempdir().unwrap();
    let accounts = server.migration_csv(&[
        ("alice", "alice-pw", "alice-365", "alice-365-pw"),
        ("bob", "bob-pw", "bob-365", "bob-365-pw"),
    ]);
    let (run, _) = mirror(&server, store.path(), &accounts, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (run, summary) = upload(
        &server,
        store.path(),
        &accounts,
        &["--target-kind", "imap", "--max-message-mib", "1"],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    assert_eq!(total(&summary, "appended"), 9, "{summary}");
    assert_eq!(total(&summary, "skipped"), 1, "{summary}");

    let store_arg = store.path().to_str().unwrap();
    let status = mailferry(&["--store", store_arg, "status", "--json"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    let status = status.json();

    let out = tempfile::tempdir().unwrap();
    let page = out.path().join("page.html");
    let report = mailferry(&[
        "--store",
        store_arg,
        "report",
        "--html",
        page.to_str().unwrap(),
    ]);
    assert_eq!(report.code, 0, "{}", report.stderr);
    assert_eq!(report.stdout.trim(), page.to_str().unwrap());
    let html = std::fs::read_to_string(&page).unwrap();
    // Self-contained: nothing to fetch, nothing to run.
    for bad in [
        "<script", "<link", "<img", "src=", "http://", "https://", "url(",
    ] {
        assert!(
            !html.to_ascii_lowercase().contains(bad),
            "the page has {bad}"
        );
    }
    // Written atomically: no temporary file is left next to it.
    let names: Vec<PathBuf> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(names, std::slice::from_ref(&page));

    // The screenshot: a real PNG of the requested size.
    let profile = tempfile::tempdir().unwrap();
    let shot = out.path().join("shot.png");
    let started = Instant::now();
    chromium(
        profile.path(),
        &page,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,2000".into(),
        ],
        &out.path().join("screenshot.out"),
    );
    let png = std::fs::read(&shot).expect("chromium wrote no screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&png[12..16], b"IHDR");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (1280, 2000));
    assert!(png.len() > 20_000, "screenshot of {} bytes", png.len());
    if let Some(keep) = std::env::var_os("MAILFERRY_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }

    // The DOM as the browser built it.
    let dom_file = out.path().join("dom.html");
    chromium(profile.path(), &page, &["--dump-dom".into()], &dom_file);
    eprintln!("chromium ran twice in {:?}", started.elapsed());
    let dom = std::fs::read_to_string(&dom_file).unwrap();
    assert!(dom.contains("Mailbox migration report"), "{dom}");
    assert!(!dom.to_ascii_lowercase().contains("<script"), "{dom}");
    // The hostile subject is text (escaped when serialized), not markup.
    assert!(
        dom.contains("Q3 figures &lt;script&gt;alert(1)&lt;/script&gt; &amp; \"plans\""),
        "{dom}"
    );
    let elements = marked_elements(&dom);
    let skipped_rows: Vec<&Element> = elements
        .iter()
        .filter(|e| e.attrs.get("data-state").map(String::as_str) == Some("skipped"))
        .collect();
    assert_eq!(skipped_rows.len(), 1);
    assert_eq!(skipped_rows[0].attrs["data-account"], "alice@example.com");
    assert!(dom.contains("alice@example.com"));

    let field = |e: &Element, k: &str| e.attrs.get(k).cloned();
    // Account totals, keyed by (account, field).
    let mut account_cells: BTreeMap<(String, String), &Element> = BTreeMap::new();
    // Folder numbers, keyed by (account, folder, field).
    let mut folder_cells: BTreeMap<(String, String, String), &Element> = BTreeMap::new();
    for e in &elements {
        let (Some(account), Some(f)) = (field(e, "data-account"), field(e, "data-field")) else {
            continue;
        };
        match field(e, "data-folder") {
            Some(folder) => {
                let old = folder_cells.insert((account.clone(), folder.clone(), f.clone()), e);
                assert!(old.is_none(), "{account} {folder} {f} twice");
            }
            None => {
                let old = account_cells.insert((account.clone(), f.clone()), e);
                assert!(old.is_none(), "{account} {f} twice");
            }
        }
    }

    let json_accounts = status["accounts"].as_array().unwrap();
    assert_eq!(json_accounts.len(), 2, "{status}");
    let count_el = elements
        .iter()
        .find(|e| field(e, "data-field").as_deref() == Some("account_count"))
        .unwrap();
    assert_eq!(count_el.text, "2");
    assert!(
        dom.contains("<title>Mailbox migration report — 2 accounts — "),
        "{dom}"
    );

    let check =
        |e: &Element, what: &str, field: &str, value: &serde_json::Value| match value.as_u64() {
            Some(n) => {
                assert_eq!(e.attrs["data-value"], n.to_string(), "{what} {field}");
                let shown = if field == "stored_bytes" {
                    mailferry::format::bytes(n)
                } else {
                    n.to_string()
                };
                let text = if field == "stored_bytes" {
                    e.text.clone()
                } else {
                    group_digits(&e.text)
                };
                assert_eq!(text, shown, "{what} {field}");
            }
            None => {
                assert!(value.is_null(), "{what} {field}: {value}");
                assert_eq!(e.attrs["data-value"], "", "{what} {field}");
            }
        };
    const ACCOUNT_FIELDS: [&str; 10] = [
        "folders",
        "at_source",
        "stored",
        "stored_bytes",
        "expunged",
        "uploaded",
        "already_present",
        "skipped",
        "failed",
        "pending",
    ];
    for a in json_accounts {
        let name = a["account"].as_str().unwrap();
        for f in ACCOUNT_FIELDS {
            let e = account_cells
                .get(&(name.to_string(), f.to_string()))
                .unwrap_or_else(|| panic!("no {f} for {name} in the page"));
            check(e, name, f, &a[f]);
        }
        let target = a["target"].as_str().unwrap();
        let misses = status["not_uploaded"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["target"] == target)
            .count();
        let e = account_cells[&(name.to_string(), "not_uploaded".to_string())];
        assert_eq!(e.attrs["data-value"], misses.to_string(), "{name}");
        // The state badge says what status --json says.
        let e = account_cells[&(name.to_string(), "state".to_string())];
        assert_eq!(
            e.attrs["data-value"],
            a["state"].as_str().unwrap(),
            "{name}"
        );
    }
    assert_eq!(
        account_cells.len(),
        json_accounts.len() * (ACCOUNT_FIELDS.len() + 2),
        "{:?}",
        account_cells.keys()
    );
    // The numbers the test expects, so a wrong status would fail too.
    let alice = &json_accounts[0];
    assert_eq!(alice["account"], "alice@example.com");
    assert_eq!(
        (&alice["stored"], &alice["uploaded"], &alice["skipped"]),
        (&7.into(), &6.into(), &1.into())
    );

    const FOLDER_FIELDS: [&str; 9] = [
        "at_source",
        "stored",
        "expunged",
        "stored_bytes",
        "uploaded",
        "already_present",
        "skipped",
        "failed",
        "pending",
    ];
    let json_folders = status["folders"].as_array().unwrap();
    for f in json_folders {
        let account = f["account"].as_str().unwrap();
        let folder = f["folder"].as_str().unwrap();
        for k in FOLDER_FIELDS {
            let e = folder_cells
                .get(&(account.to_string(), folder.to_string(), k.to_string()))
                .unwrap_or_else(|| panic!("no {k} for {account} {folder} in the page"));
            check(e, &format!("{account} {folder}"), k, &f[k]);
        }
    }
    assert_eq!(folder_cells.len(), json_folders.len() * FOLDER_FIELDS.len());
    let folders: Vec<&str> = json_folders
        .iter()
        .map(|f| f["folder"].as_str().unwrap())
        .collect();
    assert!(folders.contains(&"Projects & Plans"), "{folders:?}");
    assert!(folders.contains(&"Empty"), "{folders:?}");

    // Batch totals are the sums over the accounts.
    for (total, json) in [
        ("stored", "stored"),
        ("skipped", "skipped"),
        ("failed", "failed"),
        ("pending", "pending"),
    ] {
        let sum: u64 = json_accounts
            .iter()
            .map(|a| a[json].as_u64().unwrap())
            .sum();
        let e = elements
            .iter()
            .find(|e| field(e, "data-total").as_deref() == Some(total))
            .unwrap();
        assert_eq!(e.attrs["data-value"], sum.to_string(), "{total}");
    }
    // When each phase last ran.
    for phase in ["preflight", "mirror", "upload", "cutover"] {
        let e = elements
            .iter()
            .find(|e| field(e, "data-phase").as_deref() == Some(phase))
            .unwrap();
        let want = &status["last_runs"][phase];
        match want.as_i64() {
            Some(t) => {
                assert_eq!(e.attrs["data-value"], t.to_string(), "{phase}");
                assert!(e.text.ends_with(" UTC"), "{phase}: {}", e.text);
            }
            None => assert_eq!(e.attrs["data-value"], "", "{phase}"),
        }
    }
    let cutover = elements
        .iter()
        .find(|e| field(e, "data-field").as_deref() == Some("cutover_state"))
        .unwrap();
    let state = match status["cutover"]["complete"].as_bool() {
        None => "none",
        Some(true) => "complete",
        Some(false) => "incomplete",
    };
    assert_eq!(cutover.attrs["data-value"], state);
    // The skipped message is the big one, kept in the store.
    assert!(
        stored_messages(store.path())
            .iter()
            .any(|m| m.hash == sha256_hex(&big))
    );

    // One account only; an unknown one is an error.
    let bob_page = out.path().join("bob.html");
    let run = mailferry(&[
        "--store",
        store_arg,
        "report",
        "--html",
        bob_page.to_str().unwrap(),
        "--account",
        "bob@example.com",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let bob = std::fs::read_to_string(&bob_page).unwrap();
    assert!(bob.contains("data-account=\"bob@example.com\""));
    assert!(!bob.contains("alice@example.com"));
    assert!(!bob.contains("alert(1)"));
    let run = mailferry(&[
        "--store",
        store_arg,
        "report",
        "--html",
        out.path().join("nobody.html").to_str().unwrap(),
        "--account",
        "nobody@example.com",
    ]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    assert!(run.stderr.contains("nobody@example.com"), "{}", run.stderr);
    assert!(!out.path().join("nobody.html").exists());
}
