//! Calendars and tasks as iCalendar files (`.ics`): events (VEVENT, with
//! their recurrence rules, exceptions and overridden instances) and tasks
//! (VTODO), as Outlook, Google, Apple and Thunderbird export them.
//!
//! Each item is every component of one UID (a series and the instances it
//! overrides go together), in a calendar of its own with the time zones it
//! uses. The file is cut into components by their BEGIN and END lines, so
//! one that is cut short, or whose time zone or rule cannot be read, costs
//! that item alone: it is named in a problem and the others are kept.

use std::collections::BTreeMap;
use std::str::FromStr as _;

use calcard::common::timezone::Tz;
use calcard::icalendar::{ICalendar, ICalendarProperty, ICalendarValue};
use calcard::{Entry, Parser};

use super::{ItemProblem, decode_text, lines_with_numbers};
use crate::store::BlobHash;
use crate::store::items::{ItemKind, ProblemKind};

/// One event series or task read from a file.
#[derive(Debug, Clone)]
pub struct CalendarItem {
    pub kind: ItemKind,
    /// Its UID, else the sha256 of its text.
    pub uid: String,
    /// SUMMARY of its first component, for people.
    pub summary: String,
    /// A whole iCalendar object: the file's calendar properties, the time
    /// zones the item uses and its components, as in the file.
    pub text: String,
    /// The calendar's name (X-WR-CALNAME), where the file gives one.
    pub calendar: Option<String>,
    /// Where its first component starts in the file (1-based).
    pub line: usize,
    pub parsed: ICalendar,
}

/// A component's lines as cut from the file.
struct Block {
    name: String,
    line: usize,
    text: String,
}

/// Reads every event and task of an iCalendar file; `file` names it in
/// problems.
pub fn read_ics(bytes: &[u8], file: &str) -> (Vec<CalendarItem>, Vec<ItemProblem>) {
    let text = decode_text(bytes);
    let mut problems = Vec::new();
    let problem = |line: usize, item: Option<&str>, kind: ProblemKind, what: String| ItemProblem {
        file: file.to_string(),
        line,
        item: item.map(str::to_string),
        kind,
        problem: what,
    };
    // The calendar's own properties, its time zones and its items.
    let mut header = String::new();
    let mut zones: BTreeMap<String, String> = BTreeMap::new();
    let mut blocks: Vec<Block> = Vec::new();
    let mut open: Option<Block> = None;
    let mut depth = 0usize;
    let mut in_calendar = false;
    for (number, _, line) in lines_with_numbers(&text) {
        let word = line.trim_end();
        let begin = strip_word(word, "BEGIN:");
        let end = strip_word(word, "END:");
        if !in_calendar {
            if begin.is_some_and(|c| c.eq_ignore_ascii_case("VCALENDAR")) {
                in_calendar = true;
            } else if !word.trim().is_empty() {
                problems.push(problem(
                    number,
                    None,
                    ProblemKind::OutsideText,
                    "text outside any calendar (no BEGIN:VCALENDAR before it); skipped".into(),
                ));
            }
            continue;
        }
        if let Some(block) = open.as_mut() {
            if let Some(inner) = begin {
                depth += 1;
                if depth > 1 && !inner.trim().is_empty() {
                    block.text.push_str(line);
                    continue;
                }
            }
            if let Some(name) = end {
                if depth > 1 {
                    depth -= 1;
                    block.text.push_str(line);
                    continue;
                }
                if name.eq_ignore_ascii_case(&block.name) {
                    block.text.push_str(line);
                    depth = 0;
                    blocks.push(open.take().expect("open block"));
                    continue;
                }
                // The calendar (or another component) ends first.
                let cut = open.take().expect("open block");
                problems.push(problem(
                    cut.line,
                    name_of_block(&cut).as_deref(),
                    ProblemKind::CutShort,
                    format!(
                        "a {} is cut short (END:{} before END:{}); not imported",
                        cut.name,
                        name.trim(),
                        cut.name
                    ),
                ));
                depth = 0;
                if name.eq_ignore_ascii_case("VCALENDAR") {
                    in_calendar = false;
                }
                continue;
            }
            block.text.push_str(line);
            continue;
        }
        if let Some(name) = begin {
            open = Some(Block {
                name: name.trim().to_ascii_uppercase(),
                line: number,
                text: line.to_string(),
            });
            depth = 1;
        } else if end.is_some_and(|c| c.eq_ignore_ascii_case("VCALENDAR")) {
            in_calendar = false;
        } else {
            header.push_str(line);
        }
    }
    if let Some(cut) = open {
        problems.push(problem(
            cut.line,
            name_of_block(&cut).as_deref(),
            ProblemKind::CutShort,
            format!(
                "a {} is cut short (the file ends before END:{}); not imported",
                cut.name, cut.name
            ),
        ));
    }

    // Time zones by TZID; items grouped by kind and UID, in file order.
    let mut items: Vec<(ItemKind, String, Vec<Block>)> = Vec::new();
    for block in blocks {
        let props = unfolded(&block.text);
        match block.name.as_str() {
            "VTIMEZONE" => {
                if let Some(id) = value_of(&props, "TZID") {
                    zones.insert(id, block.text);
                }
            }
            "VEVENT" | "VTODO" => {
                let kind = if block.name == "VEVENT" {
                    ItemKind::Event
                } else {
                    ItemKind::Task
                };
                let uid = value_of(&props, "UID")
                    .filter(|u| !u.trim().is_empty())
                    .unwrap_or_else(|| BlobHash::of(block.text.as_bytes()).to_hex());
                match items.iter_mut().find(|(k, u, _)| *k == kind && *u == uid) {
                    Some((_, _, group)) => group.push(block),
                    None => items.push((kind, uid, vec![block])),
                }
            }
            other => problems.push(problem(
                block.line,
                value_of(&props, "SUMMARY").as_deref(),
                ProblemKind::NoCounterpart,
                format!("a {other} has no Microsoft 365 counterpart; not imported"),
            )),
        }
    }
    let calendar = value_of(&unfolded(&header), "X-WR-CALNAME");

    let mut out = Vec::new();
    for (kind, uid, group) in items {
        let line = group[0].line;
        let props: Vec<(String, String, String)> =
            group.iter().flat_map(|b| unfolded(&b.text)).collect();
        let summary = value_of(&props, "SUMMARY").unwrap_or_else(|| uid.clone());
        let mut needed: Vec<String> = props
            .iter()
            .filter_map(|(_, params, _)| param_of(params, "TZID"))
            .collect();
        needed.sort();
        needed.dedup();
        let unknown: Vec<&String> = needed
            .iter()
            .filter(|z| !zones.contains_key(*z) && Tz::from_str(z).is_err())
            .collect();
        if !unknown.is_empty() {
            problems.push(problem(
                line,
                Some(&summary),
                ProblemKind::UnknownZone,
                format!(
                    "uses the time zone {}, which the file does not define (no VTIMEZONE) and \
                     which is no known zone name; not imported",
                    unknown
                        .iter()
                        .map(|z| format!("{z:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
            continue;
        }
        let mut text = String::from("BEGIN:VCALENDAR\r\n");
        text.push_str(&header);
        for zone in needed.iter().filter_map(|z| zones.get(z)) {
            text.push_str(zone);
        }
        for block in &group {
            text.push_str(&block.text);
        }
        text.push_str("END:VCALENDAR\r\n");
        let parsed = match Parser::new(&text).entry() {
            Entry::ICalendar(cal) => cal,
            other => {
                problems.push(problem(
                    line,
                    Some(&summary),
                    ProblemKind::NotReadable,
                    format!("cannot be read as iCalendar ({other:?}); not imported"),
                ));
                continue;
            }
        };
        if let Some(bad) = unreadable_rule(&parsed, &props) {
            problems.push(problem(
                line,
                Some(&summary),
                ProblemKind::UnreadableRule,
                format!("its recurrence rule {bad:?} cannot be read; not imported"),
            ));
            continue;
        }
        out.push(CalendarItem {
            kind,
            uid,
            summary,
            text,
            calendar: calendar.clone(),
            line,
            parsed,
        });
    }
    (out, problems)
}

/// `line` without `word` at its start, in any case.
fn strip_word<'a>(line: &'a str, word: &str) -> Option<&'a str> {
    line.get(..word.len())
        .filter(|head| head.eq_ignore_ascii_case(word))
        .map(|_| &line[word.len()..])
}

/// A component's SUMMARY, else its UID, for problems.
fn name_of_block(block: &Block) -> Option<String> {
    let props = unfolded(&block.text);
    value_of(&props, "SUMMARY").or_else(|| value_of(&props, "UID"))
}

/// The parts a recurrence rule may have (RFC 5545 section 3.3.10, and
/// RFC 7529's RSCALE and SKIP).
const RULE_PARTS: &[&str] = &[
    "FREQ",
    "UNTIL",
    "COUNT",
    "INTERVAL",
    "BYSECOND",
    "BYMINUTE",
    "BYHOUR",
    "BYDAY",
    "BYMONTHDAY",
    "BYYEARDAY",
    "BYWEEKNO",
    "BYMONTH",
    "BYSETPOS",
    "WKST",
    "RSCALE",
    "SKIP",
];

/// The first RRULE of `props` that has a part no standard defines, or
/// that the parser did not read as a rule: its meaning would be guessed.
fn unreadable_rule(cal: &ICalendar, props: &[(String, String, String)]) -> Option<String> {
    let rules = props.iter().filter(|(name, _, _)| name == "RRULE");
    let unknown_part = |value: &str| {
        value.split(';').any(|part| {
            let key = part.split_once('=').map_or(part, |(k, _)| k).trim();
            !RULE_PARTS.iter().any(|p| p.eq_ignore_ascii_case(key))
        })
    };
    let read = cal
        .components
        .iter()
        .flat_map(|c| c.entries.iter())
        .filter(|e| e.name == ICalendarProperty::Rrule)
        .map(|e| matches!(e.values.first(), Some(ICalendarValue::RecurrenceRule(_))))
        .collect::<Vec<_>>();
    for (i, (_, _, value)) in rules.enumerate() {
        if unknown_part(value) || !read.get(i).copied().unwrap_or(false) {
            return Some(value.clone());
        }
    }
    None
}

/// The content lines of `text`, unfolded, as (upper-case name, raw
/// parameters, value).
fn unfolded(text: &str) -> Vec<(String, String, String)> {
    let mut logical: Vec<String> = Vec::new();
    for line in text.lines() {
        match line.strip_prefix([' ', '\t']) {
            Some(rest) if !logical.is_empty() => logical.last_mut().expect("a line").push_str(rest),
            _ => logical.push(line.to_string()),
        }
    }
    logical
        .into_iter()
        .filter_map(|l| {
            let (head, value) = l.split_once(':')?;
            let (name, params) = head.split_once(';').unwrap_or((head, ""));
            Some((
                name.trim().to_ascii_uppercase(),
                params.to_string(),
                value.trim().to_string(),
            ))
        })
        .collect()
}

fn value_of(props: &[(String, String, String)], name: &str) -> Option<String> {
    props
        .iter()
        .find(|(n, _, _)| n == name)
        .map(|(_, _, v)| v.clone())
}

/// A parameter's value (quotes removed) from raw `A=1;B="x y"` text.
fn param_of(params: &str, name: &str) -> Option<String> {
    params.split(';').find_map(|p| {
        let (key, value) = p.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().trim_matches('"').to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> (Vec<CalendarItem>, Vec<ItemProblem>) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/items")
            .join(name);
        read_ics(&std::fs::read(&path).unwrap(), name)
    }

    #[test]
    fn a_series_travels_with_its_overridden_instance_and_its_time_zone() {
        let (items, problems) = fixture("outlook.ics");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(items.len(), 2);
        let series = &items[0];
        assert_eq!(series.kind, ItemKind::Event);
        assert_eq!(series.summary, "Weekly sync");
        assert_eq!(series.calendar.as_deref(), Some("Calendar"));
        assert_eq!(series.text.matches("BEGIN:VEVENT").count(), 2);
        assert_eq!(series.text.matches("BEGIN:VTIMEZONE").count(), 1);
        // The parser sees the same series: EXDATE removed, the moved
        // instance in place of the one it overrides.
        let expanded = series.parsed.expand_dates(Tz::UTC, 100);
        assert!(expanded.errors.is_empty(), "{:?}", expanded.errors);
        let starts: Vec<String> = expanded
            .events
            .iter()
            .map(|e| e.start.to_string())
            .collect();
        assert_eq!(starts.len(), 9, "{starts:?}");
        assert!(
            starts.iter().all(|s| !s.starts_with("2025-01-13")),
            "{starts:?}"
        );
        assert!(
            starts.iter().any(|s| s.starts_with("2025-01-21 14:00")),
            "{starts:?}"
        );
        let holiday = &items[1];
        assert_eq!(holiday.summary, "Labour Day");
        assert!(!holiday.text.contains("VTIMEZONE"));
    }

    #[test]
    fn zone_names_without_vtimezone_are_taken_when_they_are_known() {
        let (items, problems) = fixture("google.ics");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            items.iter().map(|i| i.summary.as_str()).collect::<Vec<_>>(),
            ["Family dinner", "Dentist"]
        );
        assert_eq!(items[0].calendar.as_deref(), Some("Family"));
    }

    #[test]
    fn component_names_are_read_in_any_case() {
        let text = "Begin:VCalendar\r\nVERSION:2.0\r\nbegin:vevent\r\nUID:a\r\nSUMMARY:Lower\r\n\
                    DTSTART:20250101T100000Z\r\nEnd:VEvent\r\nEND:VCALENDAR\r\n";
        let (items, problems) = read_ics(text.as_bytes(), "mixed.ics");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].summary, "Lower");
    }

    #[test]
    fn tasks_are_tasks() {
        let (items, problems) = fixture("tasks.ics");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(items.len(), 2);
        assert!(items.iter().all(|i| i.kind == ItemKind::Task));
        assert_eq!(items[1].summary, "Renew passport");
    }

    #[test]
    fn each_broken_item_is_named_and_the_rest_is_kept() {
        let (items, problems) = fixture("broken.ics");
        assert_eq!(
            items.iter().map(|i| i.summary.as_str()).collect::<Vec<_>>(),
            ["Still here"],
            "{problems:?}"
        );
        let said: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        let expect = [
            "broken.ics line 26 (Cut short): a VEVENT is cut short (END:VCALENDAR before \
             END:VEVENT); not imported",
            "broken.ics line 16 (Diary): a VJOURNAL has no Microsoft 365 counterpart; not \
             imported",
            "broken.ics line 4 (Launch window): uses the time zone \"Mars/Olympus_Mons\", which \
             the file does not define (no VTIMEZONE) and which is no known zone name; not \
             imported",
            "broken.ics line 10 (Odd rule): its recurrence rule \
             \"FREQ=WEEKLY;BYDAY=MO;X-EVERY-OTHER-FULL-MOON=1\" cannot be read; not imported",
        ];
        assert_eq!(said, expect);
    }
}
