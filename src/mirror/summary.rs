//! How a mirror reads on a terminal.

use std::fmt::Write as _;

use super::MirrorSummary;
use crate::format::bytes;

/// The end-of-run summary of a mirror.
impl std::fmt::Display for MirrorSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = String::new();
        if self.interrupted {
            let _ = writeln!(
                out,
                "INTERRUPTED — run again to continue (the store is safe)\n"
            );
        }
        let _ = writeln!(
            out,
            "{:<32} {:>8} {:>8} {:>9} {:>10} {:>9} {:>8} {:>8} {:>7}",
            "account",
            "folders",
            "changed",
            "fetched",
            "bytes",
            "skipped",
            "expunged",
            "flags",
            "trips"
        );
        for a in &self.accounts {
            let c = &a.counts;
            let _ = writeln!(
                out,
                "{:<32} {:>8} {:>8} {:>9} {:>10} {:>9} {:>8} {:>8} {:>7}",
                a.account,
                c.folders_checked,
                c.folders_synced,
                c.bodies_fetched,
                bytes(c.bytes_fetched),
                c.bodies_skipped_as_stored,
                c.messages_expunged,
                c.flags_updated,
                c.round_trips
            );
            crate::format::problems(&mut out, a.error.as_deref(), &a.folder_errors);
        }
        let t = &self.totals;
        let complete = self.accounts.iter().filter(|a| a.complete).count();
        let _ = writeln!(
            out,
            "\n{complete} of {} accounts complete in {:.1}s: {} folders checked, {} bodies fetched \
             ({}), {} skipped as already stored, {} fetched but already stored, {} expunged at \
             source, {} flag changes, {} round trips, {} on the wire.",
            self.accounts.len(),
            self.seconds,
            t.folders_checked,
            t.bodies_fetched,
            bytes(t.bytes_fetched),
            t.bodies_skipped_as_stored,
            t.bodies_already_stored,
            t.messages_expunged,
            t.flags_updated,
            t.round_trips,
            bytes(t.wire_bytes_in + t.wire_bytes_out),
        );
        f.write_str(&out)
    }
}
