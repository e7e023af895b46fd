//! Cron triggers: 5-field schedules in UTC, fired by the clock through the driver Worker's
//! `scheduled()` call.
//!
//! Fields are minute (0-59), hour (0-23), day of month (1-31), month (1-12 or `JAN`-`DEC`)
//! and day of week (0-7 or `SUN`-`SAT`, 0 and 7 both Sunday), each `*`, a value, a range
//! `a-b`, a step `*/n` or `a-b/n`, or a comma list of those. When both day fields are
//! restricted, a day matching either fires (as in Vixie cron). Cloudflare's `L`, `W` and `#`
//! extensions are refused with a clear error.

use std::sync::Arc;

use async_trait::async_trait;
use bindery_core::SharedClock;

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    days_restricted: bool,
    weekdays_restricted: bool,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

fn value(text: &str, min: u32, max: u32, names: &[&str], name_base: u32) -> Result<u32, String> {
    let upper = text.to_ascii_uppercase();
    if let Some(i) = names.iter().position(|n| *n == upper) {
        return Ok(i as u32 + name_base);
    }
    let v: u32 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number between {min} and {max}"))?;
    if v < min || v > max {
        return Err(format!("{v} is outside {min}-{max}"));
    }
    Ok(v)
}

/// Parses one field into a bit set; returns the set and whether it was `*`.
fn field(
    text: &str,
    min: u32,
    max: u32,
    names: &[&str],
    name_base: u32,
) -> Result<(u64, bool), String> {
    if text.contains(['L', 'W', '#'])
        && !names.iter().any(|n| text.to_ascii_uppercase().contains(n))
    {
        return Err(format!(
            "{text:?}: the L, W and # extensions are not supported"
        ));
    }
    let mut bits = 0u64;
    let mut star = false;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let s: u32 = s
                    .parse()
                    .map_err(|_| format!("step {s:?} is not a number"))?;
                if s == 0 {
                    return Err("a step of 0".to_owned());
                }
                (r, s)
            }
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" {
            if step == 1 {
                star = true;
            }
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            let a = value(a, min, max, names, name_base)?;
            let b = value(b, min, max, names, name_base)?;
            if a > b {
                return Err(format!("range {range:?} runs backwards"));
            }
            (a, b)
        } else {
            let a = value(range, min, max, names, name_base)?;
            if part.contains('/') { (a, max) } else { (a, a) }
        };
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, star))
}

/// Days since 1970-01-01 of a civil date.
#[cfg(test)]
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of days since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

impl Schedule {
    /// Parses a 5-field expression.
    ///
    /// # Errors
    ///
    /// A message naming the bad field.
    pub fn parse(expr: &str) -> Result<Self, String> {
        let fields: Vec<&str> = expr.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "cron {expr:?} has {} fields; expected 5 (minute hour day month weekday)",
                fields.len()
            ));
        }
        let named = |i: usize, r: Result<(u64, bool), String>| {
            let names = ["minute", "hour", "day of month", "month", "day of week"];
            r.map_err(|e| format!("cron {expr:?}, {} field: {e}", names[i]))
        };
        let (minutes, _) = named(0, field(fields[0], 0, 59, &[], 0))?;
        let (hours, _) = named(1, field(fields[1], 0, 23, &[], 0))?;
        let (days, day_star) = named(2, field(fields[2], 1, 31, &[], 0))?;
        let (months, _) = named(3, field(fields[3], 1, 12, &MONTHS, 1))?;
        let (mut weekdays, weekday_star) = named(4, field(fields[4], 0, 7, &WEEKDAYS, 0))?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        Ok(Self {
            minutes,
            hours: hours as u32,
            days: days as u32,
            months: months as u16,
            weekdays: (weekdays & 0x7f) as u8,
            days_restricted: !day_star,
            weekdays_restricted: !weekday_star,
        })
    }

    fn day_matches(&self, days: i64, dom: u32) -> bool {
        let weekday = (days + 4).rem_euclid(7) as u32;
        let dom_ok = self.days & (1 << dom) != 0;
        let dow_ok = self.weekdays & (1 << weekday) != 0;
        if self.days_restricted && self.weekdays_restricted {
            dom_ok || dow_ok
        } else {
            dom_ok && dow_ok
        }
    }

    /// The first minute strictly after `after_ms` that matches, in ms since the epoch;
    /// `None` if nothing matches within 5 years (such as February 30).
    pub fn next_after(&self, after_ms: u64) -> Option<u64> {
        let start_min = after_ms / 60_000 + 1;
        let mut day = (start_min / 1440) as i64;
        let mut minute_of_day = (start_min % 1440) as u32;
        let last_day = day + 5 * 366;
        while day <= last_day {
            let (_, month, dom) = civil_from_days(day);
            if self.months & (1 << month) != 0 && self.day_matches(day, dom) {
                for m in minute_of_day..1440 {
                    if self.hours & (1 << (m / 60)) != 0 && self.minutes & (1 << (m % 60)) != 0 {
                        return Some((day as u64 * 1440 + u64::from(m)) * 60_000);
                    }
                }
            }
            day += 1;
            minute_of_day = 0;
        }
        None
    }
}

/// What the scheduler calls when a schedule fires.
#[async_trait]
pub trait Fire: Send + Sync + 'static {
    /// Fires `cron` for the instant `scheduled_ms`.
    async fn fire(&self, cron: &str, scheduled_ms: u64);
}

/// Runs every schedule by `clock` until the task is aborted. Each schedule fires once per
/// matching minute; a fire that is late (the clock jumped) fires once, not once per missed
/// minute.
pub fn spawn(
    schedules: Vec<(String, Schedule)>,
    clock: SharedClock,
    fire: Arc<dyn Fire>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tasks = Vec::new();
        for (cron, schedule) in schedules {
            let clock = Arc::clone(&clock);
            let fire = Arc::clone(&fire);
            tasks.push(tokio::spawn(async move {
                let mut after = clock.now_ms();
                while let Some(next) = schedule.next_after(after) {
                    clock.sleep_until(next).await;
                    fire.fire(&cron, next).await;
                    after = next.max(clock.now_ms().saturating_sub(1));
                }
            }));
        }
        struct AbortAll(Vec<tokio::task::JoinHandle<()>>);
        impl Drop for AbortAll {
            fn drop(&mut self) {
                for t in &self.0 {
                    t.abort();
                }
            }
        }
        let guard = AbortAll(tasks);
        std::future::pending::<()>().await;
        drop(guard);
    })
}

/// Fires schedules through the driver Worker's `/scheduled`.
#[derive(Debug)]
pub struct DriverFire {
    client: crate::driver::DriverClient,
}

impl DriverFire {
    /// Fires through `client`.
    pub fn new(client: crate::driver::DriverClient) -> Self {
        Self { client }
    }
}

#[async_trait]
impl Fire for DriverFire {
    async fn fire(&self, cron: &str, scheduled_ms: u64) {
        let body = serde_json::json!({"cron": cron, "scheduledTime": scheduled_ms});
        match self
            .client
            .post_json("/scheduled", &body, std::time::Duration::from_secs(15 * 60))
            .await
        {
            Ok(r) => tracing::info!(cron, scheduled_ms, result = %r, "fired cron trigger"),
            Err(e) => tracing::warn!(cron, error = %e, "cron trigger failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bindery_core::{Clock, ManualClock};
    use parking_lot::Mutex;

    /// 2026-11-27 00:00:00 UTC, a Friday.
    const FRI: u64 = 1_795_737_600_000;

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        assert_eq!(days_from_civil(2026, 11, 27) as u64 * 86_400_000, FRI);
    }

    #[test]
    fn every_five_minutes_fires_on_the_next_multiple() {
        let s = Schedule::parse("*/5 * * * *").unwrap();
        assert_eq!(s.next_after(FRI), Some(FRI + 5 * 60_000));
        assert_eq!(s.next_after(FRI + 60_000), Some(FRI + 5 * 60_000));
        assert_eq!(s.next_after(FRI - 1), Some(FRI));
    }

    #[test]
    fn weekday_and_month_names_work() {
        // Mondays at 09:30: the next one after Friday is three days later.
        let s = Schedule::parse("30 9 * * MON").unwrap();
        assert_eq!(
            s.next_after(FRI),
            Some(FRI + 3 * 86_400_000 + (9 * 60 + 30) * 60_000)
        );
        // Midnight on the first of January.
        let s = Schedule::parse("0 0 1 JAN *").unwrap();
        assert_eq!(
            s.next_after(FRI),
            Some(days_from_civil(2027, 1, 1) as u64 * 86_400_000)
        );
        // 7 is Sunday too.
        assert_eq!(
            Schedule::parse("0 0 * * 7").unwrap(),
            Schedule::parse("0 0 * * SUN").unwrap()
        );
    }

    #[test]
    fn restricted_day_fields_match_either() {
        // The 1st of the month or any Friday: this Friday itself, at 12:00.
        let s = Schedule::parse("0 12 1 * FRI").unwrap();
        assert_eq!(s.next_after(FRI), Some(FRI + 12 * 3_600_000));
    }

    #[test]
    fn bad_expressions_name_the_field() {
        let e = Schedule::parse("61 * * * *").unwrap_err();
        assert!(e.contains("minute field"), "{e}");
        assert!(Schedule::parse("* * *").unwrap_err().contains("expected 5"));
        assert!(
            Schedule::parse("0 0 L * *")
                .unwrap_err()
                .contains("not supported")
        );
        assert_eq!(Schedule::parse("0 0 30 2 *").unwrap().next_after(FRI), None);
    }

    struct Record(Mutex<Vec<(String, u64)>>, tokio::sync::Notify);

    #[async_trait]
    impl Fire for Record {
        async fn fire(&self, cron: &str, scheduled_ms: u64) {
            self.0.lock().push((cron.to_owned(), scheduled_ms));
            self.1.notify_one();
        }
    }

    #[tokio::test]
    async fn schedules_fire_when_the_clock_reaches_them() {
        let clock = ManualClock::new(FRI + 30_000);
        let record = Arc::new(Record(Mutex::new(Vec::new()), tokio::sync::Notify::new()));
        let task = spawn(
            vec![(
                "*/2 * * * *".into(),
                Schedule::parse("*/2 * * * *").unwrap(),
            )],
            Arc::new(clock.clone()),
            record.clone(),
        );
        tokio::task::yield_now().await;
        assert!(
            record.0.lock().is_empty(),
            "nothing fires before its minute"
        );
        for expected in 1..=3u64 {
            clock.advance_ms(120_000);
            tokio::time::timeout(std::time::Duration::from_secs(5), record.1.notified())
                .await
                .expect("the schedule fired");
            assert_eq!(record.0.lock().len() as u64, expected);
        }
        let fired: Vec<u64> = record.0.lock().iter().map(|(_, t)| *t).collect();
        assert_eq!(fired, vec![FRI + 120_000, FRI + 240_000, FRI + 360_000]);
        assert!(clock.now_ms() >= FRI + 360_000);
        task.abort();
    }
}
