//! Outlook appointments (IPM.Appointment) and tasks (IPM.Task) as
//! iCalendar text, which then takes the path of an imported .ics file.
//!
//! Times are written in the appointment's own time zone when the file
//! names one that is known (Windows or IANA), so a series recurs at the
//! same local hour across daylight saving time; otherwise in UTC.

use std::str::FromStr as _;

use calcard::common::timezone::Tz;
use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, TimeZone as _, Utc};
use outlook_pst::messaging::message::Message;

use super::contact::date_of;
use super::lines::{Lines, escape};
use super::mail::subject;
use super::recurrence::{self, Recurrence};
use super::source::{KEYWORDS, PSETID_APPOINTMENT, PSETID_COMMON, PSETID_TASK, Props, Tag, rows};

fn appt(lid: u32) -> Tag {
    Tag::Named(PSETID_APPOINTMENT, lid)
}

fn task_tag(lid: u32) -> Tag {
    Tag::Named(PSETID_TASK, lid)
}

/// How times are written: in a named zone (local time with TZID), or as
/// UTC instants, local times first shifted by a fixed offset.
enum Clock {
    Zone(String, Tz),
    Offset(Duration),
}

impl Clock {
    /// The zone the appointment names: PidLidAppointmentTimeZoneDefinition*
    /// (a Windows zone key), else PidLidTimeZoneDescription (Outlook's
    /// display name), if calcard knows it.
    fn of(p: &Props) -> Option<Clock> {
        let key = [0x8260, 0x825E, 0x825F]
            .into_iter()
            .find_map(|lid| zone_key(p.bytes(appt(lid))?))
            .filter(|k| matches!(Tz::from_str(k), Ok(Tz::Tz(_))));
        if let Some(key) = key {
            let tz = Tz::from_str(&key).ok()?;
            return Some(Clock::Zone(key, tz));
        }
        let described = Tz::from_str(&p.text(appt(0x8234))?).ok()?;
        let Tz::Tz(_) = described else {
            return None;
        };
        Some(Clock::Zone(described.name()?.into_owned(), described))
    }

    fn params(&self) -> String {
        match self {
            Clock::Zone(id, _) => format!(";TZID={id}"),
            Clock::Offset(_) => String::new(),
        }
    }

    /// `name` with the local time `t`.
    fn local(&self, l: &mut Lines, name: &str, t: NaiveDateTime) {
        match self {
            Clock::Zone(..) => l.raw(&format!("{name}{}", self.params()), &stamp(t)),
            Clock::Offset(o) => l.raw(name, &format!("{}Z", stamp(t - *o))),
        }
    }

    fn to_local(&self, t: DateTime<Utc>) -> NaiveDateTime {
        match self {
            Clock::Zone(_, tz) => t.with_timezone(tz).naive_local(),
            Clock::Offset(o) => t.naive_utc() + *o,
        }
    }

    fn to_utc(&self, t: NaiveDateTime) -> DateTime<Utc> {
        match self {
            Clock::Zone(_, tz) => tz
                .from_local_datetime(&t)
                .earliest()
                .map_or_else(|| t.and_utc(), |d| d.with_timezone(&Utc)),
            Clock::Offset(o) => (t - *o).and_utc(),
        }
    }

    /// The day an all-day value starts.
    fn day(&self, t: DateTime<Utc>) -> NaiveDate {
        match self {
            Clock::Zone(..) => self.to_local(t).date(),
            Clock::Offset(_) => date_of(t),
        }
    }
}

/// The Windows zone key (e.g. "Pacific Standard Time") of a TZDEFINITION
/// (MS-OXOCAL 2.2.1.41).
fn zone_key(def: &[u8]) -> Option<String> {
    let chars = u16::from_le_bytes(def.get(6..8)?.try_into().ok()?) as usize;
    let units: Vec<u16> = def
        .get(8..8 + chars * 2)?
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let key = String::from_utf16_lossy(&units);
    (!key.trim().is_empty()).then_some(key)
}

fn stamp(t: NaiveDateTime) -> String {
    t.format("%Y%m%dT%H%M%S").to_string()
}

fn utc_stamp(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

fn begin(l: &mut Lines, component: &str) {
    l.raw("BEGIN", "VCALENDAR");
    l.raw("VERSION", "2.0");
    l.raw("PRODID", "-//mailferry//Outlook data file//EN");
    l.raw("BEGIN", component);
}

/// What the event and the task have in common: identity, text, class.
fn common(l: &mut Lines, p: &Props, uid: &str) {
    l.text("UID", uid);
    let changed = p.time(Tag::Id(0x3008)).or(p.time(Tag::Id(0x3007)));
    l.raw("DTSTAMP", &utc_stamp(changed.unwrap_or_default()));
    l.text("SUMMARY", &subject(p).unwrap_or_default());
    l.text_opt("DESCRIPTION", p.text(Tag::Id(0x1000)).as_deref());
    match p.int(Tag::Id(0x0036)) {
        Some(2) => l.raw("CLASS", "PRIVATE"),
        Some(3) => l.raw("CLASS", "CONFIDENTIAL"),
        _ => {}
    }
    match p.int(Tag::Id(0x0017)) {
        Some(0) => l.raw("PRIORITY", "9"),
        Some(2) => l.raw("PRIORITY", "1"),
        _ => {}
    }
    let categories: Vec<String> = p.texts(KEYWORDS).iter().map(|c| escape(c)).collect();
    if !categories.is_empty() {
        l.raw("CATEGORIES", &categories.join(","));
    }
}

/// An appointment as an iCalendar object; the error says why it cannot
/// be one. The words, if any, name what was not carried over.
pub fn appointment(
    p: &Props,
    msg: &dyn Message,
    uid: &str,
) -> Result<(String, Option<String>), String> {
    let start = p
        .time(appt(0x820D))
        .or(p.time(Tag::Id(0x0060)))
        .ok_or("it has no start time")?;
    let end = p
        .time(appt(0x820E))
        .or(p.time(Tag::Id(0x0061)))
        .unwrap_or(start);
    let all_day = p.flag(appt(0x8215)).unwrap_or(false);
    let mut loss = None;
    let recurrence = if p.flag(appt(0x8223)).unwrap_or(false) {
        let read = p
            .bytes(appt(0x8216))
            .ok_or_else(|| "the file keeps no pattern".to_string())
            .and_then(|blob| recurrence::read(blob, &|b| p.decode(b)));
        match read {
            Ok(r) => Some(r),
            Err(why) => {
                loss = Some(format!(
                    "a recurring series whose recurrence could not be read ({why}); only its \
                     first occurrence was imported"
                ));
                None
            }
        }
    } else {
        None
    };
    let clock = match (Clock::of(p), &recurrence) {
        (Some(c), _) => c,
        // No zone: the pattern's local times are as far from UTC as the
        // first instance is.
        (None, Some(r)) => Clock::Offset(r.first - start.naive_utc()),
        (None, None) => Clock::Offset(Duration::zero()),
    };

    let mut l = Lines::default();
    begin(&mut l, "VEVENT");
    common(&mut l, p, uid);
    l.text_opt("LOCATION", p.text(appt(0x8208)).as_deref());
    let (first, length) = match &recurrence {
        Some(r) => (r.first, if end > start { end - start } else { r.length }),
        None => (clock.to_local(start), end - start),
    };
    if all_day {
        let day = match &recurrence {
            Some(r) => r.first.date(),
            None => clock.day(start),
        };
        let days = (length.num_hours() + 12) / 24;
        l.raw("DTSTART;VALUE=DATE", &day.format("%Y%m%d").to_string());
        let last = day + Duration::days(days.max(1));
        l.raw("DTEND;VALUE=DATE", &last.format("%Y%m%d").to_string());
    } else {
        clock.local(&mut l, "DTSTART", first);
        clock.local(&mut l, "DTEND", first + length);
    }
    if let Some(r) = &recurrence {
        write_recurrence(&mut l, &clock, r, all_day);
    }
    // PidLidBusyStatus 0: free.
    l.raw(
        "TRANSP",
        if p.int(appt(0x8205)) == Some(0) {
            "TRANSPARENT"
        } else {
            "OPAQUE"
        },
    );
    // PidLidAppointmentStateFlags asfMeeting: it has attendees.
    if p.int(appt(0x8217)).unwrap_or(0) & 1 != 0 {
        attendees(&mut l, p, msg);
    }
    if p.flag(Tag::Named(PSETID_COMMON, 0x8503)) == Some(true) {
        let minutes = p.int(Tag::Named(PSETID_COMMON, 0x8501)).unwrap_or(15);
        l.raw("BEGIN", "VALARM");
        l.raw("ACTION", "DISPLAY");
        l.raw("DESCRIPTION", "Reminder");
        l.raw("TRIGGER", &format!("-PT{}M", minutes.max(0)));
        l.raw("END", "VALARM");
    }
    l.raw("END", "VEVENT");
    for c in recurrence.iter().flat_map(|r| &r.changed) {
        l.raw("BEGIN", "VEVENT");
        l.text("UID", uid);
        l.raw(
            "DTSTAMP",
            &utc_stamp(p.time(Tag::Id(0x3008)).unwrap_or_default()),
        );
        if all_day {
            l.raw(
                "RECURRENCE-ID;VALUE=DATE",
                &c.original.format("%Y%m%d").to_string(),
            );
            l.raw("DTSTART;VALUE=DATE", &c.start.format("%Y%m%d").to_string());
            l.raw("DTEND;VALUE=DATE", &c.end.format("%Y%m%d").to_string());
        } else {
            clock.local(&mut l, "RECURRENCE-ID", c.original);
            clock.local(&mut l, "DTSTART", c.start);
            clock.local(&mut l, "DTEND", c.end);
        }
        let summary = c.subject.clone().or(subject(p)).unwrap_or_default();
        l.text("SUMMARY", &summary);
        l.text_opt(
            "LOCATION",
            c.location.clone().or(p.text(appt(0x8208))).as_deref(),
        );
        l.raw("END", "VEVENT");
    }
    l.raw("END", "VCALENDAR");
    Ok((l.finish(), loss))
}

fn write_recurrence(l: &mut Lines, clock: &Clock, r: &Recurrence, all_day: bool) {
    let mut rule = r.rule.clone();
    if let Some(day) = r.until {
        // UNTIL is the last instance's start: a date, or an instant in UTC.
        let until = if all_day {
            day.format("%Y%m%d").to_string()
        } else {
            let last = day.and_time(r.first.time());
            utc_stamp(clock.to_utc(last))
        };
        rule.push_str(&format!(";UNTIL={until}"));
    }
    l.raw("RRULE", &rule);
    for d in &r.deleted {
        if all_day {
            l.raw("EXDATE;VALUE=DATE", &d.format("%Y%m%d").to_string());
        } else {
            clock.local(l, "EXDATE", *d);
        }
    }
}

/// ORGANIZER and ATTENDEE lines from the sender and the recipient table.
fn attendees(l: &mut Lines, p: &Props, msg: &dyn Message) {
    if let Some((cn, email)) =
        who(p, [0x0042, 0x0064, 0x0065, 0x5D02]).or(who(p, [0x0C1A, 0x0C1E, 0x0C1F, 0x5D01]))
    {
        l.raw(&format!("ORGANIZER{cn}"), &format!("mailto:{email}"));
    }
    for row in rows(msg.recipient_table()) {
        let r = p.with(&row);
        // recipOrganizer: the organizer's own row.
        if r.int(Tag::Id(0x5FFD)).unwrap_or(0) & 0x2 != 0 {
            continue;
        }
        let Some((cn, email)) = who(&r, [0x3001, 0x3002, 0x3003, 0x39FE]) else {
            continue;
        };
        let role = match r.int(Tag::Id(0x0C15)) {
            Some(2) => ";ROLE=OPT-PARTICIPANT",
            Some(3) => ";CUTYPE=RESOURCE;ROLE=NON-PARTICIPANT",
            _ => ";ROLE=REQ-PARTICIPANT",
        };
        l.raw(&format!("ATTENDEE{cn}{role}"), &format!("mailto:{email}"));
    }
}

/// The CN parameter and mail address of a person from properties [name,
/// address type, address, SMTP address]; `None` without a mail address.
fn who(p: &Props, [name, kind, addr, smtp]: [u16; 4]) -> Option<(String, String)> {
    let is_smtp = p
        .text(Tag::Id(kind))
        .is_none_or(|k| k.eq_ignore_ascii_case("SMTP"));
    let email = p
        .text(Tag::Id(smtp))
        .or(p.text(Tag::Id(addr)).filter(|a| is_smtp && a.contains('@')))?;
    let cn = p
        .text(Tag::Id(name))
        .map(|n| format!(";CN=\"{}\"", n.replace('"', "'")));
    Some((cn.unwrap_or_default(), email))
}

/// A task as an iCalendar object, and the words for what was not
/// carried over.
pub fn task(p: &Props, uid: &str) -> (String, Option<String>) {
    let mut l = Lines::default();
    begin(&mut l, "VTODO");
    common(&mut l, p, uid);
    // PidLidTaskStartDate and PidLidTaskDueDate are days.
    for (lid, name) in [(0x8104, "DTSTART;VALUE=DATE"), (0x8105, "DUE;VALUE=DATE")] {
        if let Some(t) = p.time(task_tag(lid)) {
            l.raw(name, &date_of(t).format("%Y%m%d").to_string());
        }
    }
    let status = match p.int(task_tag(0x8101)) {
        Some(1) => "IN-PROCESS",
        Some(2) => "COMPLETED",
        Some(4) => "CANCELLED", // deferred
        _ => "NEEDS-ACTION",
    };
    l.raw("STATUS", status);
    if let Some(done) = p.float(task_tag(0x8102)) {
        l.raw(
            "PERCENT-COMPLETE",
            &((done * 100.0).round().clamp(0.0, 100.0) as i64).to_string(),
        );
    }
    if let Some(t) = p.time(task_tag(0x810F)) {
        l.raw("COMPLETED", &utc_stamp(t));
    }
    l.raw("END", "VTODO");
    l.raw("END", "VCALENDAR");
    // PidLidTaskFRecurring: its pattern (PidLidTaskRecurrence) is not read.
    let loss = (p.flag(task_tag(0x8126)) == Some(true)).then(|| {
        "a recurring task; its recurrence is not read, so it was imported as one task".into()
    });
    (l.finish(), loss)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zone_definition_gives_its_windows_key() {
        let def = hex::decode(
            "0201300002001500500061006300690066006900630020005300740061006e0064006100720064\
             002000540069006d00650001",
        )
        .unwrap();
        assert_eq!(zone_key(&def).as_deref(), Some("Pacific Standard Time"));
        assert_eq!(zone_key(&def[..10]), None);
    }
}
