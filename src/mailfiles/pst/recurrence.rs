//! The recurrence of an Outlook appointment series (PidLidAppointmentRecur,
//! MS-OXOCAL 2.2.1.44): its pattern as an RRULE, the instances deleted
//! from it and the ones changed. Every time in it is local to the series'
//! time zone, in minutes since 1601-01-01.

use chrono::{Datelike as _, Duration, NaiveDate, NaiveDateTime};

/// A series' recurrence, in the series' local time.
#[derive(Debug, PartialEq)]
pub struct Recurrence {
    /// The RRULE value without UNTIL, which is written in the caller's clock.
    pub rule: String,
    /// The day of the last instance, when the series ends on a date.
    pub until: Option<NaiveDate>,
    /// Start of the first instance.
    pub first: NaiveDateTime,
    /// Its length, from the pattern's start and end offsets.
    pub length: Duration,
    /// Original starts of the instances deleted (not those changed).
    pub deleted: Vec<NaiveDateTime>,
    pub changed: Vec<Changed>,
}

/// An instance moved or renamed.
#[derive(Debug, PartialEq)]
pub struct Changed {
    pub original: NaiveDateTime,
    pub start: NaiveDateTime,
    pub end: NaiveDateTime,
    pub subject: Option<String>,
    pub location: Option<String>,
}

// ExceptionInfo OverrideFlags (2.2.1.44.2).
const ARO_SUBJECT: u16 = 0x0001;
const ARO_MEETINGTYPE: u16 = 0x0002;
const ARO_REMINDERDELTA: u16 = 0x0004;
const ARO_REMINDER: u16 = 0x0008;
const ARO_LOCATION: u16 = 0x0010;
const ARO_BUSYSTATUS: u16 = 0x0020;
const ARO_ATTACHMENT: u16 = 0x0040;
const ARO_SUBTYPE: u16 = 0x0080;
const ARO_APPTCOLOR: u16 = 0x0100;

const DAYS: [&str; 7] = ["SU", "MO", "TU", "WE", "TH", "FR", "SA"];

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or_else(|| format!("the pattern ends early (byte {})", self.at))?;
        let out = &self.data[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(
            self.bytes(2)?.try_into().expect("2 bytes"),
        ))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.bytes(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn list(&mut self) -> Result<Vec<u32>, String> {
        let n = self.u32()? as usize;
        (0..n).map(|_| self.u32()).collect()
    }

    fn utf16(&mut self, chars: usize) -> Result<String, String> {
        let units: Vec<u16> = self
            .bytes(chars * 2)?
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        Ok(String::from_utf16_lossy(&units))
    }
}

/// Minutes since 1601-01-01 as a local time.
fn local(minutes: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(1601, 1, 1)
        .expect("a valid date")
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        + Duration::minutes(i64::from(minutes))
}

/// Reads the pattern; `decode` reads the 8-bit strings of older writers.
/// The error says what could not be read.
pub fn read(blob: &[u8], decode: &dyn Fn(&[u8]) -> String) -> Result<Recurrence, String> {
    let mut r = Reader { data: blob, at: 0 };
    let version = r.u16()?;
    r.u16()?;
    if version != 0x3004 {
        return Err(format!("unknown pattern version 0x{version:04X}"));
    }
    let frequency = r.u16()?;
    let pattern = r.u16()?;
    let calendar = r.u16()?;
    r.u32()?; // FirstDateTime
    let period = r.u32()?;
    r.u32()?; // SlidingFlag (tasks only)
    let (specific, nth) = match pattern {
        0x0000 => (0, 0),
        0x0001..=0x0003 | 0x000A | 0x000C => (r.u32()?, 0),
        0x0004 | 0x000B => (r.u32()?, r.u32()?),
        other => return Err(format!("unknown pattern type 0x{other:04X}")),
    };
    let end_type = r.u32()?;
    let count = r.u32()?;
    let first_day = r.u32()?;
    let deleted = r.list()?;
    let modified = r.list()?;
    let start_date = r.u32()?;
    let end_date = r.u32()?;
    r.u32()?; // ReaderVersion2
    let writer2 = r.u32()?;
    let start_offset = r.u32()?;
    let end_offset = r.u32()?;
    let exception_count = r.u16()?;

    // Gregorian, localized or not (CAL_GREGORIAN*); others count differently.
    if !matches!(calendar, 0 | 1 | 2 | 9..=12) || matches!(pattern, 0x000A..=0x000C) {
        return Err(format!(
            "a pattern in a non-Gregorian calendar (type {calendar})"
        ));
    }
    let first = local(start_date) + Duration::minutes(i64::from(start_offset));
    let by_day = |mask: u32| -> Vec<&str> {
        (0..7)
            .filter(|d| mask & (1 << d) != 0)
            .map(|d| DAYS[d])
            .collect()
    };
    let yearly = frequency == 0x200D;
    let months = if yearly {
        format!(
            "YEARLY;INTERVAL={};BYMONTH={}",
            (period / 12).max(1),
            first.month()
        )
    } else {
        format!("MONTHLY;INTERVAL={}", period.max(1))
    };
    let mut rule = match pattern {
        0x0000 if period >= 1440 => format!("FREQ=DAILY;INTERVAL={}", period / 1440),
        0x0001 if specific & 0x7F != 0 => format!(
            "FREQ=WEEKLY;INTERVAL={};BYDAY={};WKST={}",
            period.max(1),
            by_day(specific).join(","),
            DAYS.get(first_day as usize).unwrap_or(&"SU")
        ),
        0x0002 if (1..=31).contains(&specific) => format!("FREQ={months};BYMONTHDAY={specific}"),
        0x0003 => format!("FREQ={months};BYMONTHDAY=-1"),
        0x0004 if specific & 0x7F != 0 && (1..=5).contains(&nth) => {
            let n = if nth == 5 { -1 } else { nth as i32 };
            match by_day(specific).as_slice() {
                [one] => format!("FREQ={months};BYDAY={n}{one}"),
                many => format!("FREQ={months};BYDAY={};BYSETPOS={n}", many.join(",")),
            }
        }
        _ => {
            return Err(format!(
                "a pattern that cannot be read (type {pattern}, period {period})"
            ));
        }
    };
    let until = match end_type {
        0x2021 => Some(local(end_date).date()),
        0x2022 => {
            rule.push_str(&format!(";COUNT={count}"));
            None
        }
        _ => None,
    };

    let mut changed = Vec::new();
    let mut flags = Vec::new();
    for _ in 0..exception_count {
        let start = local(r.u32()?);
        let end = local(r.u32()?);
        let original = local(r.u32()?);
        let f = r.u16()?;
        let mut subject = None;
        let mut location = None;
        for (flag, what) in [
            (ARO_SUBJECT, 1),
            (ARO_MEETINGTYPE, 0),
            (ARO_REMINDERDELTA, 0),
            (ARO_REMINDER, 0),
            (ARO_LOCATION, 2),
            (ARO_BUSYSTATUS, 0),
            (ARO_ATTACHMENT, 0),
            (ARO_SUBTYPE, 0),
            (ARO_APPTCOLOR, 0),
        ] {
            if f & flag == 0 {
                continue;
            }
            if what == 0 {
                r.u32()?;
                continue;
            }
            r.u16()?; // length + 1
            let n = r.u16()? as usize;
            let text = Some(decode(r.bytes(n)?));
            if what == 1 {
                subject = text;
            } else {
                location = text;
            }
        }
        flags.push(f);
        changed.push(Changed {
            original,
            start,
            end,
            subject,
            location,
        });
    }
    // The same exceptions again with their strings in UTF-16; older
    // writers stop before them, so a short blob here is no error.
    let _ = extended(&mut r, writer2, &flags, &mut changed);

    let changed_days: Vec<NaiveDate> = modified.iter().map(|&m| local(m).date()).collect();
    let time = Duration::minutes(i64::from(start_offset));
    Ok(Recurrence {
        rule,
        until,
        first,
        length: Duration::minutes(i64::from(end_offset) - i64::from(start_offset)),
        deleted: deleted
            .iter()
            .map(|&d| local(d))
            .filter(|d| !changed_days.contains(&d.date()))
            .map(|d| d + time)
            .collect(),
        changed,
    })
}

/// ExtendedException (2.2.1.44.3): the subjects and locations in UTF-16.
fn extended(
    r: &mut Reader,
    writer2: u32,
    flags: &[u16],
    changed: &mut [Changed],
) -> Result<(), String> {
    let reserved = r.u32()? as usize; // ReservedBlock1Size
    r.bytes(reserved)?;
    for (f, c) in flags.iter().zip(changed.iter_mut()) {
        if writer2 >= 0x3009 {
            let n = r.u32()? as usize; // ChangeHighlightSize
            r.bytes(n)?;
        }
        let n = r.u32()? as usize; // ReservedBlockEE1Size
        r.bytes(n)?;
        if f & (ARO_SUBJECT | ARO_LOCATION) == 0 {
            continue;
        }
        r.bytes(12)?; // the three times again
        if f & ARO_SUBJECT != 0 {
            let n = r.u16()? as usize;
            c.subject = Some(r.utf16(n)?);
        }
        if f & ARO_LOCATION != 0 {
            let n = r.u16()? as usize;
            c.location = Some(r.utf16(n)?);
        }
        let n = r.u32()? as usize; // ReservedBlockEE2Size
        r.bytes(n)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    /// dist-list.pst's "Test appointment": every Tuesday 8:00–8:30, one
    /// instance deleted, two moved.
    const WEEKLY: &str = "043004300b2001000000c0210000010000000000000004000000232000000a000000\
        0000000003000000805c070d40ab070da0d2070d0200000040ab070da0d2070d2035070ddf80e95a\
        0630000009300000e0010000fe01000002005cad070d7aad070d20ad070d0002f8d4070d16d5070d\
        80d4070d00020000000004000000000000000000000004000000000000000000000000000000";

    #[test]
    fn a_weekly_series_with_a_deleted_and_two_moved_instances() {
        let blob = hex::decode(WEEKLY).unwrap();
        let r = read(&blob, &|b| String::from_utf8_lossy(b).into_owned()).unwrap();
        assert_eq!(r.rule, "FREQ=WEEKLY;INTERVAL=1;BYDAY=TU;WKST=SU");
        assert_eq!(r.until, None);
        assert_eq!(r.first, at("2016-08-02 08:00"));
        assert_eq!(r.length, Duration::minutes(30));
        assert_eq!(r.deleted, [at("2016-08-09 08:00")]);
        let moved: Vec<_> = r
            .changed
            .iter()
            .map(|c| (c.original, c.start, c.end))
            .collect();
        assert_eq!(
            moved,
            [
                (
                    at("2016-08-23 08:00"),
                    at("2016-08-23 09:00"),
                    at("2016-08-23 09:30")
                ),
                (
                    at("2016-08-30 08:00"),
                    at("2016-08-30 10:00"),
                    at("2016-08-30 10:30")
                ),
            ]
        );
    }

    #[test]
    fn a_blob_cut_short_is_an_error_not_a_panic() {
        let blob = hex::decode(WEEKLY).unwrap();
        for len in [0, 3, 20, 60, 90] {
            assert!(read(&blob[..len], &|_| String::new()).is_err(), "{len}");
        }
    }
}
