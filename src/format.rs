//! How numbers and times read in summaries, reports and errors.

/// 1536 → "1.5 KiB".
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A Unix time as "YYYY-MM-DD HH:MM UTC", or "never".
pub fn when(t: Option<i64>) -> String {
    t.and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| "never".to_string())
}

/// "date | from | subject | size" of a message named in a list.
pub fn message_line(
    date: &Option<String>,
    from: &Option<String>,
    subject: &Option<String>,
    size: u64,
) -> String {
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    format!(
        "{} | {} | {} | {}",
        or_dash(date),
        or_dash(from),
        or_dash(subject),
        bytes(size)
    )
}

/// An account's problems under its line in a summary: why it stopped,
/// then each folder left incomplete.
pub fn problems(out: &mut String, error: Option<&str>, folder_errors: &[String]) {
    use std::fmt::Write as _;
    if let Some(e) = error {
        let _ = writeln!(out, "  FAILED: {e}");
    }
    for e in folder_errors {
        let _ = writeln!(out, "  incomplete: {e}");
    }
}
