//! Progress on the terminal: bars when stderr is a terminal, plain log
//! lines otherwise, nothing with --quiet.

use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use mailferry::progress::{Progress, Silent};

/// The progress reporter for a command over `accounts` accounts.
pub fn progress(quiet: bool, accounts: usize) -> Arc<dyn Progress> {
    if quiet {
        Arc::new(Silent)
    } else if std::io::stderr().is_terminal() {
        Arc::new(Bars::new(accounts))
    } else {
        Arc::new(LogLines::new())
    }
}

/// Plain lines on stderr, for logs and pipes: account start and end,
/// warnings, and a progress line per account at most every 30 seconds.
struct LogLines {
    accounts: Mutex<HashMap<String, Tally>>,
}

#[derive(Default)]
struct Tally {
    messages: u64,
    planned: u64,
    bytes: u64,
    planned_bytes: u64,
    last_line: Option<std::time::Instant>,
}

impl Tally {
    /// "38/39 messages, 1.2 MiB of 1.3 MiB moved"
    fn moved_so_far(&self) -> String {
        format!(
            "{}/{} messages, {} of {} moved",
            self.messages,
            self.planned,
            mailferry::format::bytes(self.bytes),
            mailferry::format::bytes(self.planned_bytes)
        )
    }
}

impl LogLines {
    fn new() -> LogLines {
        LogLines {
            accounts: Mutex::new(HashMap::new()),
        }
    }
}

impl Progress for LogLines {
    fn account_started(&self, account: &str) {
        eprintln!("{account}: folders listed");
    }
    fn planned(&self, account: &str, messages: u64, bytes: u64) {
        let mut all = self.accounts.lock().unwrap();
        let t = all.entry(account.to_string()).or_default();
        t.planned += messages;
        t.planned_bytes += bytes;
    }
    fn moved(&self, account: &str, messages: u64, bytes: u64) {
        let mut all = self.accounts.lock().unwrap();
        let t = all.entry(account.to_string()).or_default();
        t.messages += messages;
        t.bytes += bytes;
        let now = std::time::Instant::now();
        if t.last_line
            .is_none_or(|l| now - l >= Duration::from_secs(30))
        {
            t.last_line = Some(now);
            eprintln!("{account}: {}", t.moved_so_far());
        }
    }
    fn warn(&self, account: &str, message: &str) {
        eprintln!("{account}: warning: {message}");
    }
    fn account_finished(&self, account: &str, error: Option<&str>) {
        // The totals, so a log never ends on the first progress line.
        let totals = self
            .accounts
            .lock()
            .unwrap()
            .get(account)
            .map(Tally::moved_so_far)
            .unwrap_or_else(|| "nothing to move".to_string());
        match error {
            None => eprintln!("{account}: done, {totals}"),
            Some(e) => eprintln!("{account}: FAILED ({totals}): {e}"),
        }
    }
}

/// Progress bars on a terminal: one per account and one overall.
struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    accounts: Mutex<HashMap<String, (ProgressBar, Tally)>>,
}

const BAR_TEMPLATE: &str = "{prefix:>28} [{bar:30}] {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12} ETA {eta:>4} {msg}";

impl Bars {
    fn new(accounts: usize) -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(5));
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(
            ProgressStyle::with_template(BAR_TEMPLATE)
                .expect("template")
                .progress_chars("=> "),
        );
        overall.set_prefix(format!("all {accounts} accounts"));
        overall.enable_steady_tick(Duration::from_millis(500));
        Bars {
            multi,
            overall,
            accounts: Mutex::new(HashMap::new()),
        }
    }

    fn with_bar(&self, account: &str, f: impl FnOnce(&ProgressBar, &mut Tally)) {
        let mut bars = self.accounts.lock().unwrap();
        let (bar, tally) = bars.entry(account.to_string()).or_insert_with(|| {
            let bar = self.multi.insert_before(&self.overall, ProgressBar::new(0));
            bar.set_style(
                ProgressStyle::with_template(BAR_TEMPLATE)
                    .expect("template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(shorten(account, 28));
            (bar, Tally::default())
        });
        f(bar, tally);
    }
}

fn shorten(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let tail: Vec<char> = s.chars().rev().take(n - 1).collect();
        format!("…{}", tail.into_iter().rev().collect::<String>())
    }
}

impl Progress for Bars {
    fn account_started(&self, account: &str) {
        self.with_bar(account, |bar, _| bar.set_message("checking folders"));
    }
    fn planned(&self, account: &str, messages: u64, bytes: u64) {
        self.with_bar(account, |bar, t| {
            t.planned += messages;
            bar.inc_length(bytes);
            bar.set_message(format!("{}/{} msgs", t.messages, t.planned));
        });
        self.overall.inc_length(bytes);
    }
    fn moved(&self, account: &str, messages: u64, bytes: u64) {
        self.with_bar(account, |bar, t| {
            t.messages += messages;
            bar.inc(bytes);
            bar.set_message(format!("{}/{} msgs", t.messages, t.planned));
        });
        self.overall.inc(bytes);
    }
    fn warn(&self, account: &str, message: &str) {
        self.multi
            .suspend(|| eprintln!("{account}: warning: {message}"));
    }
    fn account_finished(&self, account: &str, error: Option<&str>) {
        self.with_bar(account, |bar, t| match error {
            None => bar.finish_with_message(format!("{} msgs, done", t.messages)),
            Some(_) => bar.abandon_with_message("FAILED"),
        });
        if let Some(e) = error {
            self.multi.suspend(|| eprintln!("{account}: FAILED: {e}"));
        }
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        self.overall.finish();
    }
}

/// One bar of bytes for a whole-store operation (verify), fed by a
/// [`Progress`] with the account name "": `planned` sets the total,
/// `moved` advances it. Hidden unless `shown` and stderr is a terminal.
pub struct ByteBar {
    bar: Option<ProgressBar>,
}

impl ByteBar {
    pub fn new(shown: bool, template: &str) -> ByteBar {
        let bar = (shown && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(template)
                    .expect("template")
                    .progress_chars("=> "),
            );
            bar
        });
        ByteBar { bar }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Progress for ByteBar {
    fn planned(&self, _account: &str, _messages: u64, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc_length(bytes);
        }
    }

    fn moved(&self, _account: &str, _messages: u64, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }
}
