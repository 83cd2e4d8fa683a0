//! Throttling shared by all connections to one target mailbox.
//!
//! Exchange Online answers a busy mailbox with `NO ... Request is
//! throttled. Suggested Backoff Time: N milliseconds` and drops connections
//! that keep erring. The whole mailbox waits the suggested time (not just
//! the connection that was told), and later commands are paced until the
//! mailbox has been quiet for a while.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The pause between commands grows by half on each throttle and halves
/// after this many commands that went through.
const CALM_AFTER: u32 = 10;
const MAX_PACE: Duration = Duration::from_secs(2);
/// When the server asks to back off but names no time.
const DEFAULT_BACKOFF: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
struct Gate {
    not_before: Option<Instant>,
    pace: Duration,
    calm: u32,
    throttled: u64,
    waited: Duration,
}

/// One per target mailbox.
#[derive(Debug, Default)]
pub struct Throttle {
    gate: Mutex<Gate>,
}

impl Throttle {
    /// Waits until the mailbox may send again.
    pub async fn wait(&self) {
        let until = {
            let g = self.gate.lock().unwrap();
            g.not_before
        };
        if let Some(until) = until {
            let now = Instant::now();
            if until > now {
                let pause = until - now;
                tokio::time::sleep(pause).await;
                self.gate.lock().unwrap().waited += pause;
            }
        }
    }

    /// The server said back off (for `suggested`, if it said).
    pub fn throttled(&self, suggested: Option<Duration>) {
        let mut g = self.gate.lock().unwrap();
        let backoff = suggested.unwrap_or(DEFAULT_BACKOFF);
        g.pace = (g.pace * 3 / 2).max(backoff / 4).min(MAX_PACE);
        g.calm = 0;
        g.throttled += 1;
        let until = Instant::now() + backoff;
        g.not_before = Some(g.not_before.map_or(until, |t| t.max(until)));
    }

    /// A command went through: keep pacing, and ease off once calm.
    pub fn went_through(&self) {
        let mut g = self.gate.lock().unwrap();
        if g.pace.is_zero() {
            return;
        }
        g.calm += 1;
        if g.calm >= CALM_AFTER {
            g.calm = 0;
            g.pace /= 2;
            if g.pace < Duration::from_millis(10) {
                g.pace = Duration::ZERO;
            }
        }
        let next = Instant::now() + g.pace;
        g.not_before = Some(g.not_before.map_or(next, |t| t.max(next)));
    }

    /// Throttle replies seen, and total time waited.
    pub fn totals(&self) -> (u64, Duration) {
        let g = self.gate.lock().unwrap();
        (g.throttled, g.waited)
    }
}

/// A throttling reply, and the backoff it suggests, if any.
pub fn is_throttled(text: &str) -> Option<Option<Duration>> {
    let lower = text.to_ascii_lowercase();
    if !(lower.contains("throttl")
        || lower.contains("backoff")
        || lower.contains("[unavailable]")
        || lower.contains("server busy"))
    {
        return None;
    }
    let ms = lower
        .split("suggested backoff time:")
        .nth(1)
        .and_then(|rest| {
            rest.trim_start()
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse::<u64>().ok())
        });
    Some(ms.map(Duration::from_millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_exchanges_suggested_backoff() {
        assert_eq!(
            is_throttled(
                "[UNAVAILABLE] Request is throttled. Suggested Backoff Time: 1234 milliseconds"
            ),
            Some(Some(Duration::from_millis(1234)))
        );
        assert_eq!(is_throttled("Server busy, try later"), Some(None));
        assert_eq!(is_throttled("[TOOBIG] Message too large"), None);
    }

    #[tokio::test]
    async fn every_connection_of_the_mailbox_waits() {
        let t = std::sync::Arc::new(Throttle::default());
        t.throttled(Some(Duration::from_millis(200)));
        let start = Instant::now();
        let (a, b) = tokio::join!(t.wait(), t.wait());
        let _ = (a, b);
        assert!(start.elapsed() >= Duration::from_millis(190));
        assert_eq!(t.totals().0, 1);
        // Paced afterwards, calm again later.
        t.went_through();
        let paced = Instant::now();
        t.wait().await;
        assert!(paced.elapsed() >= Duration::from_millis(40));
    }
}
