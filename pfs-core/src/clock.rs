//! Time stamps as the reference prints them.

use crate::sys::local_time;

/// `ctime(3)` without the trailing newline: `Sat Nov 21 14:14:58 2026`, in
/// local time (set `TZ=UTC` for the reference's golden output).
pub fn ctime(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    match i64::try_from(secs).ok().and_then(local_time) {
        Some(t) => format!(
            "{} {} {:>2} {:02}:{:02}:{:02} {}",
            DAYS.get(t.wday as usize).unwrap_or(&"???"),
            MONTHS.get(t.mon as usize).unwrap_or(&"???"),
            t.mday,
            t.hour,
            t.min,
            t.sec,
            i64::from(t.year) + 1900
        ),
        None => format!("{secs}"),
    }
}

/// Seconds since the epoch now.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_like_ctime() {
        // Only meaningful in UTC; the test sets nothing global, so check the
        // shape and the epoch in a UTC-independent way.
        let s = super::ctime(0);
        assert_eq!(s.len(), 24, "{s}");
        assert!(s.ends_with("1970") || s.ends_with("1969"), "{s}");
    }
}
