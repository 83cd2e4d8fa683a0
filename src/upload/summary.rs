//! How an upload reads on a terminal: its summary, and `plan`'s table.

use std::fmt::Write as _;

use super::UploadSummary;
use crate::format::bytes;

/// The end-of-run summary of an upload.
impl std::fmt::Display for UploadSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = String::new();
        if self.interrupted {
            let _ = writeln!(
                out,
                "INTERRUPTED — run again to continue (what was in flight is settled then)\n"
            );
        }
        if self.dry_run {
            let _ = writeln!(out, "dry run: nothing was changed\n");
            for a in &self.accounts {
                let _ = writeln!(out, "{} -> {}", a.account, a.target);
                if let Some(e) = &a.error {
                    let _ = writeln!(out, "  FAILED: {e}");
                }
                for p in &a.planned {
                    let _ = writeln!(
                        out,
                        "  {:>6} messages {:>10}  to {:<32} from {}",
                        p.append,
                        bytes(p.bytes),
                        p.target_folder,
                        p.sources.join(", ")
                    );
                }
            }
            let _ = writeln!(
                out,
                "\nwould append {} messages ({})",
                self.totals.would_append,
                bytes(self.totals.would_append_bytes)
            );
            return f.write_str(&out);
        }
        let _ = writeln!(
            out,
            "{:<32} {:>9} {:>10} {:>8} {:>8} {:>8} {:>7} {:>7}",
            "account", "appended", "bytes", "earlier", "skipped", "failed", "flags", "trips"
        );
        for a in &self.accounts {
            let c = &a.counts;
            let _ = writeln!(
                out,
                "{:<32} {:>9} {:>10} {:>8} {:>8} {:>8} {:>7} {:>7}",
                a.account,
                c.appended,
                bytes(c.bytes_appended),
                c.already_present,
                c.skipped,
                c.failed,
                c.flags_pushed,
                c.round_trips
            );
            crate::format::problems(&mut out, a.error.as_deref(), &a.folder_errors);
        }
        let t = &self.totals;
        let reasons: Vec<String> = t
            .skipped_by_reason
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect();
        let otherwise: String = t
            .sent_otherwise
            .iter()
            .map(|(k, v)| format!(", {v} sent with {k}"))
            .collect();
        let complete = self.accounts.iter().filter(|a| a.complete).count();
        let _ = writeln!(
            out,
            "\n{complete} of {} accounts complete in {:.1}s: {} appended ({}), {} at the target from \
             earlier runs{}{otherwise}, {} skipped{}, {} failed, {} flag changes pushed, {} throttled \
             ({} ms waited), {} round trips.",
            self.accounts.len(),
            self.seconds,
            t.appended,
            bytes(t.bytes_appended),
            t.already_present,
            if t.duplicates > 0 {
                format!(
                    ", {} extra copies of messages already in the same folder (each uploaded once)",
                    t.duplicates
                )
            } else {
                String::new()
            },
            t.skipped,
            if reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", reasons.join(", "))
            },
            t.failed,
            t.flags_pushed,
            t.throttled,
            t.throttle_wait_ms,
            t.round_trips,
        );
        f.write_str(&out)
    }
}

/// `plan`: each account's folders and where they go.
impl std::fmt::Display for super::mapping::FolderPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for account in &self.accounts {
            writeln!(f, "{}:", account.account)?;
            for e in &account.folders {
                writeln!(
                    f,
                    "  {:<36} -> {:<36} ({})",
                    e.source,
                    e.target.as_deref().unwrap_or("(not uploaded)"),
                    e.why
                )?;
            }
        }
        Ok(())
    }
}
