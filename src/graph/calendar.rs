//! iCalendar items as Graph events (MS "event resource type") and To Do
//! tasks (MS "todoTask resource type"): times with a zone Graph knows,
//! recurrence as `patternedRecurrence` (MS "recurrencePattern resource
//! type", "recurrenceRange resource type"), reminders, and the series'
//! cancelled and changed instances for the upload to apply.

use calcard::common::PartialDateTime;
use calcard::common::timezone::Tz;
use calcard::icalendar::{
    ICalendar, ICalendarComponent, ICalendarComponentType, ICalendarEntry, ICalendarFrequency,
    ICalendarParameterValue, ICalendarParticipationRole, ICalendarProperty,
    ICalendarRecurrenceRule, ICalendarValue, ICalendarWeekday,
};
use calcard::{Entry, Parser};
use std::str::FromStr as _;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Map, Value, json};

use super::zones::windows_name;

pub fn parse(text: &str) -> Option<ICalendar> {
    match Parser::new(text).entry() {
        Entry::ICalendar(cal) => Some(cal),
        _ => None,
    }
}

/// An event ready to send.
pub struct EventBody {
    pub json: Value,
    /// Instances of the series to cancel or change after it is created.
    pub exceptions: Vec<Exception>,
    pub losses: Vec<String>,
}

/// A change to one instance of a series, known by its original start.
pub enum Exception {
    Cancelled {
        original: DateTime<Utc>,
    },
    Changed {
        original: DateTime<Utc>,
        json: Value,
    },
}

impl Exception {
    pub fn original(&self) -> DateTime<Utc> {
        match self {
            Exception::Cancelled { original } | Exception::Changed { original, .. } => *original,
        }
    }
}

/// A time as Graph takes it (`dateTimeTimeZone`).
struct When {
    local: NaiveDateTime,
    zone: String,
    all_day: bool,
    utc: Option<DateTime<Utc>>,
    /// The zone the local time is in, where it is a real one.
    tz: Option<Tz>,
}

impl When {
    fn json(&self) -> Value {
        json!({
            "dateTime": self.local.format("%Y-%m-%dT%H:%M:%S").to_string(),
            "timeZone": self.zone,
        })
    }
}

struct Reader<'a> {
    cal: &'a ICalendar,
    losses: Vec<String>,
}

impl Reader<'_> {
    /// A DTSTART-like entry's time, in the zone Graph is told.
    fn when(&mut self, e: &ICalendarEntry) -> Option<When> {
        let d = e.values.first()?.as_partial_date_time()?;
        let naive = d.to_date_time()?;
        let all_day = d.hour.is_none();
        if naive.offset.is_some() {
            let utc = naive.to_date_time_with_tz(Tz::UTC)?.with_timezone(&Utc);
            return Some(When {
                local: utc.naive_utc(),
                zone: "UTC".into(),
                all_day,
                utc: Some(utc),
                tz: Some(Tz::UTC),
            });
        }
        let Some(name) = e.tz_id() else {
            // Floating (and all-day dates): the same clock time wherever,
            // which Graph cannot say; the calendar's own zone
            // (X-WR-TIMEZONE) is the user's, else UTC.
            let (zone, tz) = self.calendar_zone();
            return Some(When {
                local: naive.date_time,
                utc: tz
                    .and_then(|t| d.to_date_time_with_tz(t))
                    .map(|t| t.with_timezone(&Utc)),
                zone,
                all_day,
                tz,
            });
        };
        let resolver = self.cal.build_tz_resolver();
        match resolver.resolve(name) {
            Some(tz @ Tz::Tz(_)) => {
                let utc = d.to_date_time_with_tz(tz).map(|t| t.with_timezone(&Utc));
                let Some(zone) = windows_name(name, &tz) else {
                    // Sent as the same instants in UTC: exact for one
                    // event, an hour off across daylight saving for a series.
                    let utc = utc?;
                    self.losses.push(format!(
                        "time zone {name:?} has no Windows name known to mailferry; its times \
                         went as UTC (a series keeps its UTC time across daylight saving)"
                    ));
                    return Some(When {
                        local: utc.naive_utc(),
                        zone: "UTC".into(),
                        all_day,
                        utc: Some(utc),
                        tz: Some(Tz::UTC),
                    });
                };
                Some(When {
                    local: naive.date_time,
                    zone,
                    all_day,
                    utc,
                    tz: Some(tz),
                })
            }
            Some(tz @ Tz::Fixed(_)) => {
                let utc = d.to_date_time_with_tz(tz)?.with_timezone(&Utc);
                Some(When {
                    local: utc.naive_utc(),
                    zone: "UTC".into(),
                    all_day,
                    utc: Some(utc),
                    tz: Some(Tz::UTC),
                })
            }
            _ => {
                self.losses.push(format!(
                    "time zone {name:?} is not known; its times are taken as UTC"
                ));
                Some(When {
                    local: naive.date_time,
                    zone: "UTC".into(),
                    all_day,
                    utc: Some(naive.date_time.and_utc()),
                    tz: Some(Tz::UTC),
                })
            }
        }
    }

    /// The calendar's own zone (X-WR-TIMEZONE, as Google and Apple write
    /// it) by the name Graph takes, else UTC.
    fn calendar_zone(&self) -> (String, Option<Tz>) {
        let named = self
            .cal
            .components
            .iter()
            .filter(|c| c.component_type == ICalendarComponentType::VCalendar)
            .flat_map(|c| c.entries.iter())
            .find(|e| e.name.as_str().eq_ignore_ascii_case("X-WR-TIMEZONE"))
            .and_then(|e| e.values.first())
            .and_then(|v| v.as_text())
            .map(str::trim);
        match named.and_then(|n| Some((n, Tz::from_str(n).ok()?))) {
            Some((n, tz @ Tz::Tz(_))) => match windows_name(n, &tz) {
                Some(w) => (w, Some(tz)),
                None => ("UTC".into(), Some(Tz::UTC)),
            },
            _ => ("UTC".into(), Some(Tz::UTC)),
        }
    }

    fn instant(&mut self, e: &ICalendarEntry, d: &PartialDateTime) -> Option<DateTime<Utc>> {
        let naive = d.to_date_time()?;
        if naive.offset.is_some() {
            return Some(naive.to_date_time_with_tz(Tz::UTC)?.with_timezone(&Utc));
        }
        let tz = e
            .tz_id()
            .and_then(|n| self.cal.build_tz_resolver().resolve(n))
            .filter(|t| !t.is_floating())
            .unwrap_or(Tz::UTC);
        Some(d.to_date_time_with_tz(tz)?.with_timezone(&Utc))
    }
}

fn text(c: &ICalendarComponent, p: ICalendarProperty) -> Option<String> {
    c.property(&p)
        .and_then(|e| e.values.first())
        .and_then(|v| v.as_text())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn categories(c: &ICalendarComponent) -> Vec<Value> {
    c.properties(&ICalendarProperty::Categories)
        .flat_map(|e| e.values.iter().filter_map(|v| v.as_text()))
        .map(|s| Value::String(s.trim().to_string()))
        .collect()
}

fn importance(c: &ICalendarComponent) -> Option<&'static str> {
    let p = c
        .property(&ICalendarProperty::Priority)?
        .values
        .first()?
        .as_integer()?;
    // RFC 5545 §3.8.1.9: 1–4 high, 5 medium, 6–9 low; 0 undefined.
    match p {
        1..=4 => Some("high"),
        5 => Some("normal"),
        6..=9 => Some("low"),
        _ => None,
    }
}

/// A VALARM's lead before the start, in minutes, if it is relative to it.
fn reminder_minutes(cal: &ICalendar, c: &ICalendarComponent) -> Option<i64> {
    let alarm = c.component_ids.iter().find_map(|id| {
        cal.component_by_id(*id)
            .filter(|a| a.component_type == ICalendarComponentType::VAlarm)
    })?;
    let trigger = alarm.property(&ICalendarProperty::Trigger)?;
    match trigger.values.first()? {
        ICalendarValue::Duration(d) => {
            let minutes = (d.weeks as i64 * 7 + d.days as i64) * 1440
                + d.hours as i64 * 60
                + d.minutes as i64;
            Some(if d.neg { minutes } else { -minutes }.max(0))
        }
        _ => None,
    }
}

fn weekday(d: ICalendarWeekday) -> &'static str {
    match d {
        ICalendarWeekday::Sunday => "sunday",
        ICalendarWeekday::Monday => "monday",
        ICalendarWeekday::Tuesday => "tuesday",
        ICalendarWeekday::Wednesday => "wednesday",
        ICalendarWeekday::Thursday => "thursday",
        ICalendarWeekday::Friday => "friday",
        ICalendarWeekday::Saturday => "saturday",
    }
}

fn weekday_of(t: &NaiveDateTime) -> &'static str {
    use chrono::Datelike as _;
    match t.weekday() {
        chrono::Weekday::Sun => "sunday",
        chrono::Weekday::Mon => "monday",
        chrono::Weekday::Tue => "tuesday",
        chrono::Weekday::Wed => "wednesday",
        chrono::Weekday::Thu => "thursday",
        chrono::Weekday::Fri => "friday",
        chrono::Weekday::Sat => "saturday",
    }
}

fn index(n: i32) -> Option<&'static str> {
    match n {
        1 => Some("first"),
        2 => Some("second"),
        3 => Some("third"),
        4 => Some("fourth"),
        -1 => Some("last"),
        _ => None,
    }
}

/// An RRULE as Graph's pattern and range, or the words saying why it cannot be.
fn recurrence(
    rule: &ICalendarRecurrenceRule,
    start: &When,
    until: Option<DateTime<Utc>>,
) -> Result<Value, String> {
    use chrono::Datelike as _;
    let said = || format!("RRULE:{rule}");
    let cannot = |why: &str| {
        Err(format!(
            "{why} ({}), which Microsoft 365 cannot express",
            said()
        ))
    };
    if !rule.bysecond.is_empty()
        || !rule.byminute.is_empty()
        || !rule.byhour.is_empty()
        || !rule.byyearday.is_empty()
        || !rule.byweekno.is_empty()
    {
        return cannot("a rule by second, minute, hour, day of the year or week number");
    }
    if rule.bymonthday.len() > 1 || rule.bymonth.len() > 1 || rule.bysetpos.len() > 1 {
        return cannot("a rule with several days of the month, months or positions");
    }
    if !rule.bymonth.is_empty() && rule.freq != ICalendarFrequency::Yearly {
        return cannot("a rule limited to some months");
    }
    let interval = rule.interval.unwrap_or(1).max(1);
    let plain_days: Vec<&str> = rule
        .byday
        .iter()
        .filter(|d| d.ordwk.is_none())
        .map(|d| weekday(d.weekday))
        .collect();
    let ordinal_days: Vec<(i16, &str)> = rule
        .byday
        .iter()
        .filter_map(|d| d.ordwk.map(|o| (o, weekday(d.weekday))))
        .collect();
    if !plain_days.is_empty() && !ordinal_days.is_empty() {
        return cannot("a rule mixing weekdays with and without positions");
    }
    let month = rule
        .bymonth
        .first()
        .map(|m| m.month())
        .unwrap_or(start.local.month() as u8);
    let day_of_month = match rule.bymonthday.first() {
        Some(&d) if d > 0 => d as u32,
        Some(_) => return cannot("a day of the month counted from its end"),
        None => start.local.day(),
    };
    // Several days with one position: Graph takes "the first day that
    // satisfies the pattern" (recurrencePattern resource type).
    let relative =
        |days: Vec<&'static str>, n: i32| -> Result<(Vec<&'static str>, &'static str), String> {
            match index(n) {
                Some(i) => Ok((days, i)),
                None => Err(format!(
                    "position {n} ({}), which Microsoft 365 cannot express",
                    said()
                )),
            }
        };
    let mut pattern = Map::new();
    pattern.insert("interval".into(), json!(interval));
    match rule.freq {
        ICalendarFrequency::Daily if rule.byday.is_empty() && rule.bymonthday.is_empty() => {
            pattern.insert("type".into(), json!("daily"));
        }
        ICalendarFrequency::Daily | ICalendarFrequency::Weekly
            if ordinal_days.is_empty()
                && rule.bymonthday.is_empty()
                && rule.bysetpos.is_empty() =>
        {
            let days = if plain_days.is_empty() {
                vec![weekday_of(&start.local)]
            } else {
                plain_days
            };
            if rule.freq == ICalendarFrequency::Daily && interval != 1 {
                return cannot("a daily rule limited to weekdays with an interval");
            }
            pattern.insert("type".into(), json!("weekly"));
            pattern.insert("daysOfWeek".into(), json!(days));
            pattern.insert(
                "firstDayOfWeek".into(),
                json!(weekday(rule.wkst.unwrap_or(ICalendarWeekday::Monday))),
            );
        }
        ICalendarFrequency::Monthly | ICalendarFrequency::Yearly => {
            let yearly = rule.freq == ICalendarFrequency::Yearly;
            let relative_days = match (&ordinal_days[..], rule.bysetpos.first()) {
                ([], Some(&pos)) if !plain_days.is_empty() => Some(relative(plain_days, pos)?),
                ([(n, day)], None) => Some(relative(vec![*day], *n as i32)?),
                ([], None) if plain_days.is_empty() => None,
                _ => return cannot("a rule with several weekday positions"),
            };
            match relative_days {
                Some((days, i)) => {
                    pattern.insert(
                        "type".into(),
                        json!(if yearly {
                            "relativeYearly"
                        } else {
                            "relativeMonthly"
                        }),
                    );
                    pattern.insert("daysOfWeek".into(), json!(days));
                    pattern.insert("index".into(), json!(i));
                }
                None => {
                    pattern.insert(
                        "type".into(),
                        json!(if yearly {
                            "absoluteYearly"
                        } else {
                            "absoluteMonthly"
                        }),
                    );
                    pattern.insert("dayOfMonth".into(), json!(day_of_month));
                }
            }
            if yearly {
                pattern.insert("month".into(), json!(month));
            }
        }
        _ => return cannot("a rule of this frequency"),
    }
    let start_date = start.local.date().format("%Y-%m-%d").to_string();
    let range = match (rule.count, until) {
        (Some(n), _) => json!({"type": "numbered", "startDate": start_date,
                               "numberOfOccurrences": n.max(1)}),
        (None, Some(u)) => {
            // endDate is a date in the series' zone: the day of the last
            // start at or before UNTIL (RFC 5545 §3.3.10 includes UNTIL).
            let local = match start.tz {
                Some(tz) => u.with_timezone(&tz).naive_local(),
                None => u.naive_utc(),
            };
            let end = if local.time() < start.local.time() {
                local.date() - chrono::Duration::days(1)
            } else {
                local.date()
            };
            json!({"type": "endDate", "startDate": start_date,
                   "endDate": end.format("%Y-%m-%d").to_string()})
        }
        (None, None) => json!({"type": "noEnd", "startDate": start_date}),
    };
    Ok(json!({ "pattern": Value::Object(pattern), "range": range }))
}

/// Builds an event from a calendar item (a series and the instances it
/// overrides). `Err` holds the words saying why Graph cannot hold it.
pub fn event(cal: &ICalendar, with_attendees: bool) -> Result<EventBody, String> {
    let mut r = Reader {
        cal,
        losses: Vec::new(),
    };
    let events: Vec<&ICalendarComponent> = cal
        .components
        .iter()
        .filter(|c| c.component_type == ICalendarComponentType::VEvent)
        .collect();
    let master = events
        .iter()
        .find(|c| !c.is_recurrence_override())
        .or(events.first())
        .copied()
        .ok_or("no VEVENT in the item")?;
    let mut json = body_of(&mut r, master, with_attendees)?;
    let start = master
        .property(&ICalendarProperty::Dtstart)
        .and_then(|e| r.when(e))
        .ok_or("the event has no start (DTSTART)")?;
    let rules: Vec<&ICalendarRecurrenceRule> = master
        .properties(&ICalendarProperty::Rrule)
        .flat_map(|e| e.values.iter())
        .filter_map(|v| match v {
            ICalendarValue::RecurrenceRule(r) => Some(r.as_ref()),
            _ => None,
        })
        .collect();
    let mut exceptions = Vec::new();
    // What Graph cannot express: the first occurrence goes, with the
    // rule in its description, and the loss is recorded (never dropped).
    let mut unexpressed: Option<String> = None;
    if master.has_property(&ICalendarProperty::Rdate) {
        unexpressed =
            Some("it also falls on extra dates (RDATE), which Microsoft 365 cannot express".into());
    }
    match rules[..] {
        [] => {}
        [_] if unexpressed.is_some() => {}
        [rule] => {
            let until = match &rule.until {
                Some(u) => {
                    let e = master.property(&ICalendarProperty::Dtstart).expect("start");
                    r.instant(e, u)
                }
                None => None,
            };
            match recurrence(rule, &start, until) {
                Ok(rec) => {
                    if rec["pattern"]["type"] == "absoluteMonthly"
                        && rec["pattern"]["dayOfMonth"].as_u64().unwrap_or(0) > 28
                    {
                        r.losses.push(format!(
                            "it repeats on day {} of the month: Outlook puts it on the last day \
                             of shorter months, which the source skips",
                            rec["pattern"]["dayOfMonth"]
                        ));
                    }
                    json["recurrence"] = rec;
                }
                Err(words) => unexpressed = Some(words),
            }
            for e in master.properties(&ICalendarProperty::Exdate) {
                for v in &e.values {
                    if let Some(d) = v.as_partial_date_time()
                        && let Some(original) = r.instant(e, d)
                    {
                        exceptions.push(Exception::Cancelled { original });
                    }
                }
            }
            for o in events.iter().filter(|c| c.is_recurrence_override()) {
                let id = o
                    .property(&ICalendarProperty::RecurrenceId)
                    .expect("override");
                let Some(original) = id
                    .values
                    .first()
                    .and_then(|v| v.as_partial_date_time())
                    .and_then(|d| r.instant(id, d))
                else {
                    r.losses
                        .push("an overridden instance with an unreadable RECURRENCE-ID".into());
                    continue;
                };
                let mut changed = body_of(&mut r, o, with_attendees)?;
                if let Some(m) = changed.as_object_mut() {
                    m.remove("recurrence");
                }
                exceptions.push(Exception::Changed {
                    original,
                    json: changed,
                });
            }
        }
        _ => {
            unexpressed =
                Some("several recurrence rules, which Microsoft 365 cannot express".into())
        }
    }
    if let Some(why) = unexpressed {
        json.as_object_mut()
            .expect("an object")
            .remove("recurrence");
        exceptions.clear();
        let said: Vec<String> = master
            .entries
            .iter()
            .filter(|e| {
                matches!(
                    e.name,
                    ICalendarProperty::Rrule | ICalendarProperty::Rdate | ICalendarProperty::Exdate
                )
            })
            .filter_map(|e| {
                let values: Vec<String> = e
                    .values
                    .iter()
                    .filter_map(|v| v.clone().into_text().map(|t| t.into_owned()))
                    .collect();
                (!values.is_empty()).then(|| format!("{}:{}", e.name.as_str(), values.join(",")))
            })
            .collect();
        let note = format!(
            "This event repeats by a rule Microsoft 365 cannot express; only its first \
             occurrence was created. The rule as exported: {}",
            said.join(" ")
        );
        let body = json["body"]["content"].as_str().unwrap_or("").to_string();
        json["body"] = json!({"contentType": "text",
            "content": if body.is_empty() { note } else { format!("{body}\n\n{note}") }});
        r.losses.push(format!(
            "only the first occurrence was created: {why} (the rule is in the description)"
        ));
    }
    Ok(EventBody {
        json,
        exceptions,
        losses: r.losses,
    })
}

/// The fields one VEVENT gives (a series or an instance).
fn body_of(r: &mut Reader, c: &ICalendarComponent, with_attendees: bool) -> Result<Value, String> {
    let mut j = Map::new();
    j.insert(
        "subject".into(),
        json!(text(c, ICalendarProperty::Summary).unwrap_or_default()),
    );
    let start = c
        .property(&ICalendarProperty::Dtstart)
        .and_then(|e| r.when(e))
        .ok_or("the event has no start (DTSTART)")?;
    let end = match c
        .property(&ICalendarProperty::Dtend)
        .and_then(|e| r.when(e))
    {
        Some(e) => e,
        None => {
            let length = c
                .property(&ICalendarProperty::Duration)
                .and_then(|e| e.values.first())
                .and_then(|v| match v {
                    ICalendarValue::Duration(d) => Some(
                        chrono::Duration::weeks(d.weeks as i64)
                            + chrono::Duration::days(d.days as i64)
                            + chrono::Duration::hours(d.hours as i64)
                            + chrono::Duration::minutes(d.minutes as i64)
                            + chrono::Duration::seconds(d.seconds as i64),
                    ),
                    _ => None,
                })
                // RFC 5545 §3.6.1: a date lasts the day; a time, no time.
                .unwrap_or(if start.all_day {
                    chrono::Duration::days(1)
                } else {
                    chrono::Duration::zero()
                });
            When {
                local: start.local + length,
                zone: start.zone.clone(),
                all_day: start.all_day,
                utc: start.utc.map(|u| u + length),
                tz: start.tz,
            }
        }
    };
    if start.all_day {
        j.insert("isAllDay".into(), json!(true));
    }
    j.insert("start".into(), start.json());
    // All-day: both at midnight in one zone (event resource type).
    let end_json = if start.all_day {
        json!({"dateTime": end.local.format("%Y-%m-%dT00:00:00").to_string(),
               "timeZone": start.zone})
    } else {
        end.json()
    };
    j.insert("end".into(), end_json);
    if let Some(l) = text(c, ICalendarProperty::Location) {
        j.insert("location".into(), json!({ "displayName": l }));
    }
    let mut body = text(c, ICalendarProperty::Description).unwrap_or_default();
    let organizer = c.property(&ICalendarProperty::Organizer).map(person);
    let attendees: Vec<(String, String, bool)> = c
        .properties(&ICalendarProperty::Attendee)
        .map(|e| {
            let (name, address) = person(e);
            let optional = e.params.iter().any(|p| {
                matches!(
                    p.value,
                    ICalendarParameterValue::Role(ICalendarParticipationRole::OptParticipant)
                )
            });
            (name, address, optional)
        })
        .collect();
    if with_attendees {
        let list: Vec<Value> = attendees
            .iter()
            .map(|(name, address, optional)| {
                json!({"emailAddress": {"address": address, "name": name},
                       "type": if *optional { "optional" } else { "required" }})
            })
            .collect();
        if !list.is_empty() {
            j.insert("attendees".into(), Value::Array(list));
        }
    } else if !attendees.is_empty() || organizer.is_some() {
        // Graph invites every attendee of an event it creates and cannot
        // be told not to (user-post-events): the list goes in the body.
        let mut lines = Vec::new();
        if let Some((name, address)) = &organizer {
            lines.push(format!("Organizer: {name} <{address}>"));
        }
        for (name, address, optional) in &attendees {
            lines.push(format!(
                "Attendee{}: {name} <{address}>",
                if *optional { " (optional)" } else { "" }
            ));
        }
        if !body.is_empty() {
            body.push_str("\n\n");
        }
        body.push_str(&lines.join("\n"));
    }
    if !body.is_empty() {
        j.insert(
            "body".into(),
            json!({"contentType": "text", "content": body}),
        );
    }
    match reminder_minutes(r.cal, c) {
        Some(m) => {
            j.insert("isReminderOn".into(), json!(true));
            j.insert("reminderMinutesBeforeStart".into(), json!(m));
        }
        // Graph's default is a reminder 15 minutes before (Create event).
        None => {
            j.insert("isReminderOn".into(), json!(false));
        }
    }
    let cats = categories(c);
    if !cats.is_empty() {
        j.insert("categories".into(), Value::Array(cats));
    }
    if let Some(i) = importance(c) {
        j.insert("importance".into(), json!(i));
    }
    match text(c, ICalendarProperty::Class).as_deref() {
        Some("PRIVATE") => {
            j.insert("sensitivity".into(), json!("private"));
        }
        Some("CONFIDENTIAL") => {
            j.insert("sensitivity".into(), json!("confidential"));
        }
        _ => {}
    }
    if text(c, ICalendarProperty::Transp).as_deref() == Some("TRANSPARENT") {
        j.insert("showAs".into(), json!("free"));
    }
    if text(c, ICalendarProperty::Status).as_deref() == Some("TENTATIVE") {
        j.insert("showAs".into(), json!("tentative"));
    }
    Ok(Value::Object(j))
}

/// An ORGANIZER or ATTENDEE: its name (CN) and address.
fn person(e: &ICalendarEntry) -> (String, String) {
    let address = e
        .values
        .first()
        .and_then(|v| v.as_text())
        .map(|a| calcard::icalendar::utils::strip_mailto_scheme(a).to_string())
        .unwrap_or_default();
    let name = e
        .params
        .iter()
        .find(|p| matches!(p.name, calcard::icalendar::ICalendarParameterName::Cn))
        .and_then(|p| p.value.as_text().map(str::to_string))
        .unwrap_or_else(|| address.clone());
    (name, address)
}

/// A task ready to send.
pub struct TaskBody {
    pub json: Value,
    pub losses: Vec<String>,
}

/// Builds a To Do task from a VTODO.
pub fn task(cal: &ICalendar) -> Result<TaskBody, String> {
    let mut r = Reader {
        cal,
        losses: Vec::new(),
    };
    let c = cal
        .components
        .iter()
        .find(|c| c.component_type == ICalendarComponentType::VTodo)
        .ok_or("no VTODO in the item")?;
    let mut j = Map::new();
    j.insert(
        "title".into(),
        json!(text(c, ICalendarProperty::Summary).unwrap_or_default()),
    );
    if let Some(d) = text(c, ICalendarProperty::Description) {
        j.insert("body".into(), json!({"contentType": "text", "content": d}));
    }
    let status = match text(c, ICalendarProperty::Status).as_deref() {
        Some("COMPLETED") => "completed",
        Some("IN-PROCESS") => "inProgress",
        Some("CANCELLED") => "deferred",
        _ if c.has_property(&ICalendarProperty::Completed) => "completed",
        _ => "notStarted",
    };
    j.insert("status".into(), json!(status));
    if let Some(i) = importance(c) {
        j.insert("importance".into(), json!(i));
    }
    for (p, key) in [
        (ICalendarProperty::Due, "dueDateTime"),
        (ICalendarProperty::Dtstart, "startDateTime"),
        (ICalendarProperty::Completed, "completedDateTime"),
    ] {
        if let Some(w) = c.property(&p).and_then(|e| r.when(e)) {
            j.insert(key.into(), w.json());
        }
    }
    let cats = categories(c);
    if !cats.is_empty() {
        j.insert("categories".into(), Value::Array(cats));
    }
    if let Some(rule) = c
        .property(&ICalendarProperty::Rrule)
        .and_then(|e| e.values.first())
        .and_then(|v| match v {
            ICalendarValue::RecurrenceRule(r) => Some(r.as_ref().clone()),
            _ => None,
        })
    {
        // To Do repeats from the due date.
        let anchor = c
            .property(&ICalendarProperty::Due)
            .or(c.property(&ICalendarProperty::Dtstart))
            .and_then(|e| r.when(e));
        let until = match (&rule.until, c.property(&ICalendarProperty::Due)) {
            (Some(u), Some(e)) => r.instant(e, u),
            _ => None,
        };
        match anchor.map(|a| recurrence(&rule, &a, until)) {
            Some(Ok(rec)) if j.contains_key("dueDateTime") => {
                j.insert("recurrence".into(), rec);
            }
            _ => r.losses.push(format!(
                "the task repeats (RRULE:{rule}), which To Do cannot hold here"
            )),
        }
    }
    Ok(TaskBody {
        json: Value::Object(j),
        losses: r.losses,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailfiles::calendar::read_ics;

    fn items(name: &str) -> Vec<ICalendar> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/items")
            .join(name);
        let (items, problems) = read_ics(&std::fs::read(path).unwrap(), name);
        assert!(problems.is_empty(), "{problems:?}");
        items.iter().map(|i| parse(&i.text).unwrap()).collect()
    }

    #[test]
    fn an_outlook_series_keeps_its_zone_rule_reminder_and_exceptions() {
        let cals = items("outlook.ics");
        let b = event(&cals[0], false).unwrap();
        let j = &b.json;
        assert_eq!(j["subject"], "Weekly sync");
        assert_eq!(
            j["start"],
            json!({"dateTime": "2025-01-06T10:00:00", "timeZone": "W. Europe Standard Time"})
        );
        assert_eq!(j["end"]["dateTime"], "2025-01-06T10:30:00");
        assert_eq!(j["recurrence"]["pattern"]["type"], "weekly");
        assert_eq!(j["recurrence"]["pattern"]["daysOfWeek"], json!(["monday"]));
        assert_eq!(
            j["recurrence"]["range"],
            json!({"type": "numbered", "startDate": "2025-01-06", "numberOfOccurrences": 10})
        );
        assert_eq!(j["isReminderOn"], true);
        assert_eq!(j["reminderMinutesBeforeStart"], 15);
        assert_eq!(j["location"]["displayName"], "Room 4.12");
        // No attendees (no invitations); they are named in the body.
        assert!(j.get("attendees").is_none());
        let body = j["body"]["content"].as_str().unwrap();
        assert!(
            body.contains("Attendee: Ben Ode <ben@contoso.example>"),
            "{body}"
        );
        assert!(
            body.contains("Organizer: Anna Berg <anna@contoso.example>"),
            "{body}"
        );
        // 13 Jan 10:00 Berlin (UTC+1) is cancelled; 20 Jan moved to the 21st.
        let originals: Vec<String> = b
            .exceptions
            .iter()
            .map(|e| e.original().to_rfc3339())
            .collect();
        assert_eq!(
            originals,
            ["2025-01-13T09:00:00+00:00", "2025-01-20T09:00:00+00:00"]
        );
        match &b.exceptions[1] {
            Exception::Changed { json, .. } => {
                assert_eq!(json["subject"], "Weekly sync (moved)");
                assert_eq!(json["start"]["dateTime"], "2025-01-21T14:00:00");
            }
            Exception::Cancelled { .. } => panic!("the second is a change"),
        }
        let with = event(&cals[0], true).unwrap();
        assert_eq!(
            with.json["attendees"][0]["emailAddress"]["address"],
            "ben@contoso.example"
        );

        let holiday = event(&cals[1], false).unwrap().json;
        assert_eq!(holiday["isAllDay"], true);
        assert_eq!(holiday["start"]["dateTime"], "2025-05-01T00:00:00");
        assert_eq!(holiday["end"]["dateTime"], "2025-05-02T00:00:00");
        assert_eq!(holiday["showAs"], "free");
        assert_eq!(holiday["isReminderOn"], false);
    }

    #[test]
    fn a_google_monthly_rule_with_until_becomes_relative_monthly() {
        let cals = items("google.ics");
        let j = event(&cals[0], false).unwrap().json;
        assert_eq!(j["start"]["timeZone"], "W. Europe Standard Time");
        assert_eq!(
            j["recurrence"]["pattern"],
            json!({"type": "relativeMonthly", "interval": 1, "daysOfWeek": ["saturday"],
                   "index": "first"})
        );
        // UNTIL 2025-12-31T22:59:59Z is 23:59:59 in Berlin: the last day.
        assert_eq!(j["recurrence"]["range"]["endDate"], "2025-12-31");
        let dentist = event(&cals[1], false).unwrap().json;
        assert_eq!(
            dentist["start"],
            json!({"dateTime": "2025-04-15T09:00:00", "timeZone": "UTC"})
        );
    }

    #[test]
    fn rules_graph_cannot_express_keep_the_first_occurrence_and_name_the_loss() {
        let cal = parse(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:h\r\n\
             DTSTART:20250101T090000Z\r\nRRULE:FREQ=HOURLY;COUNT=3\r\nSUMMARY:x\r\n\
             END:VEVENT\r\nEND:VCALENDAR\r\n",
        )
        .unwrap();
        let b = event(&cal, false).unwrap();
        assert!(b.json.get("recurrence").is_none(), "{}", b.json);
        let body = b.json["body"]["content"].as_str().unwrap();
        assert!(body.contains("FREQ=HOURLY"), "{body}");
        assert_eq!(b.losses.len(), 1, "{:?}", b.losses);
        assert!(b.losses[0].contains("cannot express"), "{:?}", b.losses);
    }

    fn one(text: &str) -> ICalendar {
        parse(&format!(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\n{text}END:VCALENDAR\r\n"
        ))
        .unwrap()
    }

    #[test]
    fn until_ends_on_the_last_start_in_the_series_zone() {
        // 23:59:59 Berlin on 31 Dec is the last day; 08:00 Berlin on 31 Jan
        // is before the 09:00 start, so 30 Jan is the last one.
        for (until, end) in [
            ("20251231T225959Z", "2025-12-31"),
            ("20250131T070000Z", "2025-01-30"),
        ] {
            let cal = one(&format!(
                "BEGIN:VEVENT\r\nUID:u\r\nDTSTART;TZID=Europe/Berlin:20250106T090000\r\n\
                 RRULE:FREQ=DAILY;UNTIL={until}\r\nEND:VEVENT\r\n"
            ));
            let j = event(&cal, false).unwrap().json;
            assert_eq!(j["recurrence"]["range"]["endDate"], end, "{until}");
        }
    }

    #[test]
    fn a_rule_limited_to_some_months_is_not_taken_for_every_month() {
        let cal = one("BEGIN:VEVENT\r\nUID:m\r\nDTSTART:20251201T090000Z\r\n\
             RRULE:FREQ=DAILY;BYMONTH=12\r\nEND:VEVENT\r\n");
        let b = event(&cal, false).unwrap();
        assert!(b.json.get("recurrence").is_none(), "{}", b.json);
        assert!(b.losses[0].contains("some months"), "{:?}", b.losses);
    }

    #[test]
    fn floating_times_and_all_day_dates_take_the_calendars_own_zone() {
        let cal = parse(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nX-WR-TIMEZONE:Europe/Berlin\r\n\
             BEGIN:VEVENT\r\nUID:f\r\nDTSTART;VALUE=DATE:20250601\r\nEND:VEVENT\r\n\
             END:VCALENDAR\r\n",
        )
        .unwrap();
        let j = event(&cal, false).unwrap().json;
        assert_eq!(j["start"]["timeZone"], "W. Europe Standard Time");
        assert_eq!(j["end"]["timeZone"], "W. Europe Standard Time");
    }

    #[test]
    fn tasks_keep_due_dates_priority_and_completion() {
        let cals = items("tasks.ics");
        let taxes = task(&cals[0]).unwrap().json;
        assert_eq!(taxes["title"], "File taxes");
        assert_eq!(taxes["importance"], "high");
        assert_eq!(taxes["status"], "notStarted");
        assert_eq!(taxes["dueDateTime"]["dateTime"], "2025-04-15T00:00:00");
        let passport = task(&cals[1]).unwrap().json;
        assert_eq!(passport["status"], "completed");
        assert_eq!(
            passport["completedDateTime"],
            json!({"dateTime": "2025-01-10T15:30:00", "timeZone": "UTC"})
        );
    }
}
