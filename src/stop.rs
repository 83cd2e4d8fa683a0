//! A stop the user asked for (Ctrl-C, SIGTERM): the binary calls
//! [`request`] from its signal handler; operations stop taking new work at
//! [`requested`] and abandon what is in flight at [`wait`]. What is
//! abandoned is safe by the store's rules: a blob is durable before a row
//! names it, and an APPEND is pending in the ledger before it is sent.

use std::sync::OnceLock;

use tokio::sync::watch;

/// The signal that asked for the stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Interrupt,
    Terminate,
}

impl Signal {
    /// The exit code a shell gives a process killed by this signal.
    pub fn exit_code(self) -> i32 {
        match self {
            Signal::Interrupt => 130,
            Signal::Terminate => 143,
        }
    }
}

fn channel() -> &'static watch::Sender<Option<Signal>> {
    static STOP: OnceLock<watch::Sender<Option<Signal>>> = OnceLock::new();
    STOP.get_or_init(|| watch::Sender::new(None))
}

/// Asks every operation of this process to stop.
pub fn request(signal: Signal) {
    channel().send_if_modified(|s| {
        let first = s.is_none();
        if first {
            *s = Some(signal);
        }
        first
    });
}

/// Whether a stop was asked for, and by which signal.
pub fn requested() -> Option<Signal> {
    *channel().borrow()
}

/// Resolves once a stop is asked for (at once if it already was).
pub async fn wait() {
    let mut rx = channel().subscribe();
    // The sender lives in a static: the channel never closes.
    let _ = rx.wait_for(Option::is_some).await;
}
