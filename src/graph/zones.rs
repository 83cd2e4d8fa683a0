//! Zone names Graph takes for an event's times. It takes "any of the time
//! zones currently supported by Windows" and only some IANA names (MS
//! "dateTimeTimeZone resource type"), so an IANA zone is sent by its
//! Windows name where one is known (Unicode CLDR's windowsZones mapping,
//! for the zones migrations meet most), else by its IANA name.

use calcard::common::timezone::Tz;

/// IANA zone → Windows zone, by CLDR's territory-"001" mapping and the
/// common aliases.
const WINDOWS: &[(&str, &str)] = &[
    ("Etc/UTC", "UTC"),
    ("UTC", "UTC"),
    ("Etc/GMT", "UTC"),
    ("Europe/London", "GMT Standard Time"),
    ("Europe/Dublin", "GMT Standard Time"),
    ("Europe/Lisbon", "GMT Standard Time"),
    ("Atlantic/Reykjavik", "Greenwich Standard Time"),
    ("Europe/Berlin", "W. Europe Standard Time"),
    ("Europe/Amsterdam", "W. Europe Standard Time"),
    ("Europe/Rome", "W. Europe Standard Time"),
    ("Europe/Stockholm", "W. Europe Standard Time"),
    ("Europe/Vienna", "W. Europe Standard Time"),
    ("Europe/Zurich", "W. Europe Standard Time"),
    ("Europe/Oslo", "W. Europe Standard Time"),
    ("Europe/Paris", "Romance Standard Time"),
    ("Europe/Brussels", "Romance Standard Time"),
    ("Europe/Madrid", "Romance Standard Time"),
    ("Europe/Copenhagen", "Romance Standard Time"),
    ("Europe/Warsaw", "Central European Standard Time"),
    ("Europe/Zagreb", "Central European Standard Time"),
    ("Europe/Prague", "Central Europe Standard Time"),
    ("Europe/Budapest", "Central Europe Standard Time"),
    ("Europe/Athens", "GTB Standard Time"),
    ("Europe/Bucharest", "GTB Standard Time"),
    ("Europe/Helsinki", "FLE Standard Time"),
    ("Europe/Kiev", "FLE Standard Time"),
    ("Europe/Kyiv", "FLE Standard Time"),
    ("Europe/Istanbul", "Turkey Standard Time"),
    ("Europe/Moscow", "Russian Standard Time"),
    ("Asia/Jerusalem", "Israel Standard Time"),
    ("Africa/Cairo", "Egypt Standard Time"),
    ("Africa/Johannesburg", "South Africa Standard Time"),
    ("Africa/Lagos", "W. Central Africa Standard Time"),
    ("Africa/Nairobi", "E. Africa Standard Time"),
    ("Asia/Dubai", "Arabian Standard Time"),
    ("Asia/Riyadh", "Arab Standard Time"),
    ("Asia/Karachi", "Pakistan Standard Time"),
    ("Asia/Kolkata", "India Standard Time"),
    ("Asia/Calcutta", "India Standard Time"),
    ("Asia/Dhaka", "Bangladesh Standard Time"),
    ("Asia/Bangkok", "SE Asia Standard Time"),
    ("Asia/Jakarta", "SE Asia Standard Time"),
    ("Asia/Singapore", "Singapore Standard Time"),
    ("Asia/Kuala_Lumpur", "Singapore Standard Time"),
    ("Asia/Manila", "Singapore Standard Time"),
    ("Asia/Shanghai", "China Standard Time"),
    ("Asia/Hong_Kong", "China Standard Time"),
    ("Asia/Taipei", "Taipei Standard Time"),
    ("Asia/Tokyo", "Tokyo Standard Time"),
    ("Asia/Seoul", "Korea Standard Time"),
    ("Australia/Perth", "W. Australia Standard Time"),
    ("Australia/Adelaide", "Cen. Australia Standard Time"),
    ("Australia/Darwin", "AUS Central Standard Time"),
    ("Australia/Brisbane", "E. Australia Standard Time"),
    ("Australia/Sydney", "AUS Eastern Standard Time"),
    ("Australia/Melbourne", "AUS Eastern Standard Time"),
    ("Pacific/Auckland", "New Zealand Standard Time"),
    ("Pacific/Honolulu", "Hawaiian Standard Time"),
    ("America/Anchorage", "Alaskan Standard Time"),
    ("America/Los_Angeles", "Pacific Standard Time"),
    ("America/Vancouver", "Pacific Standard Time"),
    ("America/Phoenix", "US Mountain Standard Time"),
    ("America/Denver", "Mountain Standard Time"),
    ("America/Edmonton", "Mountain Standard Time"),
    ("America/Chicago", "Central Standard Time"),
    ("America/Winnipeg", "Central Standard Time"),
    ("America/Mexico_City", "Central Standard Time (Mexico)"),
    ("America/New_York", "Eastern Standard Time"),
    ("America/Toronto", "Eastern Standard Time"),
    ("America/Detroit", "Eastern Standard Time"),
    ("America/Halifax", "Atlantic Standard Time"),
    ("America/St_Johns", "Newfoundland Standard Time"),
    ("America/Bogota", "SA Pacific Standard Time"),
    ("America/Lima", "SA Pacific Standard Time"),
    ("America/Caracas", "Venezuela Standard Time"),
    ("America/Santiago", "Pacific SA Standard Time"),
    ("America/Sao_Paulo", "E. South America Standard Time"),
    ("America/Argentina/Buenos_Aires", "Argentina Standard Time"),
    ("America/Buenos_Aires", "Argentina Standard Time"),
];

/// The name to send for a time given with `tzid`, which resolves to `tz`;
/// None when no Windows name is known (Graph refuses many IANA names).
pub fn windows_name(tzid: &str, tz: &Tz) -> Option<String> {
    let tzid = tzid.trim();
    // Outlook writes Windows names as TZIDs: they are what Graph wants.
    if WINDOWS.iter().any(|(_, w)| w.eq_ignore_ascii_case(tzid)) || tzid.ends_with("Standard Time")
    {
        return Some(tzid.to_string());
    }
    let iana = tz.name().map(|n| n.into_owned());
    for name in [Some(tzid.to_string()), iana.clone()].into_iter().flatten() {
        let bare = name.trim_start_matches('/');
        if let Some((_, w)) = WINDOWS.iter().find(|(i, _)| i.eq_ignore_ascii_case(bare)) {
            return Some(w.to_string());
        }
    }
    tz.is_utc().then(|| "UTC".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr as _;

    #[test]
    fn iana_and_windows_names_become_windows_names() {
        let berlin = Tz::from_str("Europe/Berlin").unwrap();
        let w = Some("W. Europe Standard Time".to_string());
        assert_eq!(windows_name("Europe/Berlin", &berlin), w);
        assert_eq!(windows_name("W. Europe Standard Time", &berlin), w);
        // A zone Outlook named in its own words, resolved by its rules.
        assert_eq!(
            windows_name("(UTC+01:00) Amsterdam, Berlin, Bern", &berlin),
            w
        );
        let other = Tz::from_str("Asia/Kathmandu").unwrap();
        assert_eq!(windows_name("Asia/Kathmandu", &other), None);
    }
}
