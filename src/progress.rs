//! How mirror and upload report what they do, without knowing who listens:
//! the binary draws progress bars or writes log lines; tests count.

/// Events of a run. Every method has a do-nothing default.
pub trait Progress: Send + Sync {
    /// An account's folders were listed and its work is known so far.
    fn account_started(&self, _account: &str) {}
    /// More messages to fetch were found (they add to the totals).
    fn planned(&self, _account: &str, _messages: u64, _bytes: u64) {}
    /// Messages were moved (fetched into the store, or appended to the target).
    fn moved(&self, _account: &str, _messages: u64, _bytes: u64) {}
    /// A folder was checked (and synced if it had changed).
    fn folder_done(&self, _account: &str, _folder: &str) {}
    /// Something went wrong that did not stop the account.
    fn warn(&self, _account: &str, _message: &str) {}
    /// The account is finished; `error` is why it stopped early, if it did.
    fn account_finished(&self, _account: &str, _error: Option<&str>) {}
}

/// Reports nothing.
pub struct Silent;
impl Progress for Silent {}
