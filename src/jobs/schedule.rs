//! Cron maths for scheduled jobs: when a schedule fires next, what to do at start-up about runs
//! missed while the daemon was down, and which instants a late wake-up or a slow run coalesces.
//!
//! Everything here is pure: time comes in as Unix milliseconds and goes out the same way, so the
//! loop in [`super::driver`] and the tests decide what "now" is.
//!
//! The cron engine is [croner](https://docs.rs/croner/4). A schedule is evaluated in its IANA
//! time zone (never a fixed UTC offset), so "09:00 Europe/Berlin" stays 09:00 local time across
//! daylight-saving changes. What croner 4 does on the two awkward days, verified by the tests at
//! the bottom of this file for Europe/Berlin 2026:
//!
//! - **Spring forward** (a local time that does not exist, 2026-03-29 02:00–03:00 is skipped): a
//!   *fixed-time* schedule (single second, minute and hour, such as `0 30 2 * * *`) whose time
//!   falls in the gap fires once, at the first real instant after the gap (03:00 CEST). An
//!   *interval* schedule (a wildcard, list, range or step in the second, minute or hour field,
//!   such as `0 */30 * * * *`) simply has no runs inside the gap.
//! - **Fall back** (a local time that occurs twice, 2026-10-25 02:00–03:00 is repeated): a
//!   fixed-time schedule fires once, at the first (summer-time) occurrence; an interval schedule
//!   fires in both passes of the repeated hour.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// At most this many missed or coalesced instants are counted; beyond it the count says "at
/// least". Counting walks the schedule one instant at a time, and an every-second schedule after
/// a week of downtime must not stall the start.
pub const COUNT_CAP: u32 = 1_000;

/// A parsed cron expression together with the time zone it is evaluated in.
#[derive(Debug, Clone)]
pub struct Schedule {
    expr: String,
    tz: Tz,
    cron: Cron,
}

impl Schedule {
    /// Parses a cron expression and an IANA time zone name.
    ///
    /// The expression has six fields, seconds first (`0 0 9 1 * *`: 09:00:00 on the 1st). Also
    /// accepted, as croner reads them: five fields (seconds are then 0), seven fields (a year
    /// last), and the nicknames `@yearly`, `@monthly`, `@weekly` (Sunday), `@daily`, `@hourly`.
    /// The error is a message without a key; the caller knows which key it belongs to.
    pub fn parse(expr: &str, tz: &str) -> Result<Schedule, String> {
        let tz = parse_tz(tz)?;
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(expr)
            .map_err(|e| format!("{expr:?} is not a cron expression: {e}"))?;
        Ok(Schedule {
            expr: expr.trim().to_owned(),
            tz,
            cron,
        })
    }

    /// The expression as written (trimmed).
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The time zone the expression is evaluated in.
    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// The first fire time strictly after `after_ms`, in Unix milliseconds (always a whole
    /// second). `None` when the schedule never fires again (a pattern limited to past years, or
    /// one that matches no real date such as the 30th of February).
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        // croner works in whole seconds. Searching exclusively from the second that contains
        // `after_ms` gives the first fire time at or after the next whole second, which is
        // strictly after `after_ms` whatever its milliseconds.
        let start = DateTime::<Utc>::from_timestamp(after_ms.div_euclid(1000), 0)?.with_timezone(&self.tz);
        let next = self.cron.find_next_occurrence(&start, false).ok()?;
        Some(next.timestamp_millis())
    }

    /// The latest fire time at or before `at_ms`, consistent with [`Schedule::next_after`]: it is
    /// always an instant that `next_after` yields, even around a repeated hour.
    pub fn latest_at_or_before(&self, at_ms: i64) -> Option<i64> {
        let start = DateTime::<Utc>::from_timestamp(at_ms.div_euclid(1000), 0)?.with_timezone(&self.tz);
        let rough = self
            .cron
            .find_previous_occurrence(&start, true)
            .ok()?
            .timestamp_millis();
        // A backward search may settle a repeated or skipped hour differently from the forward
        // one the loop fires by; walk forward from just before it so the answer is a real fire
        // time of this schedule. This is one or two steps in practice.
        let mut latest = None;
        let mut cursor = rough - 1;
        for _ in 0..=COUNT_CAP {
            match self.next_after(cursor) {
                Some(t) if t <= at_ms => {
                    latest = Some(t);
                    cursor = t;
                }
                _ => break,
            }
        }
        latest
    }

    /// How many fire times lie in `(after_ms, upto_ms]`, counting at most [`COUNT_CAP`].
    pub fn count_between(&self, after_ms: i64, upto_ms: i64) -> u32 {
        let mut n = 0;
        let mut cursor = after_ms;
        while n < COUNT_CAP {
            match self.next_after(cursor) {
                Some(t) if t <= upto_ms => {
                    n += 1;
                    cursor = t;
                }
                _ => break,
            }
        }
        n
    }

    /// The next `n` fire times strictly after `from_ms`.
    pub fn next_n(&self, from_ms: i64, n: usize) -> Vec<i64> {
        let mut out = Vec::with_capacity(n);
        let mut cursor = from_ms;
        while out.len() < n {
            match self.next_after(cursor) {
                Some(t) => {
                    out.push(t);
                    cursor = t;
                }
                None => break,
            }
        }
        out
    }

    /// An instant as RFC 3339 in this schedule's zone (`2026-04-01T09:00:00+02:00`).
    pub fn local_rfc3339(&self, ms: i64) -> String {
        local_rfc3339(self.tz, ms)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\" {}", self.expr, self.tz.name())
    }
}

/// Parses an IANA time zone name such as `UTC` or `Europe/Berlin`. Abbreviations and offsets
/// (`CET`, `+02:00`) are refused: they do not follow daylight-saving rules.
pub fn parse_tz(name: &str) -> Result<Tz, String> {
    let refuse = || {
        format!(
            "{name:?} is not an IANA time zone name; use a name such as \"UTC\" or \"Europe/Berlin\" \
             (abbreviations and fixed offsets do not follow daylight saving)"
        )
    };
    // The tz database still carries a few legacy abbreviation zones (`CET`, `EST`, `MST7MDT`);
    // they are accepted by the parser but are exactly the ambiguity this setting is meant to
    // avoid, so only "UTC" and Area/Location names pass.
    if name != "UTC" && !name.contains('/') {
        return Err(refuse());
    }
    name.parse::<Tz>().map_err(|_| refuse())
}

/// An instant as RFC 3339 in `tz`, whole seconds, `Z` for UTC.
pub fn local_rfc3339(tz: Tz, ms: i64) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(t) => t.with_timezone(&tz).to_rfc3339_opts(SecondsFormat::Secs, true),
        None => format!("{ms} ms"),
    }
}

/// The local calendar date of an instant in `tz` (`2026-04-01`).
pub fn local_date(tz: Tz, ms: i64) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(t) => t.with_timezone(&tz).format("%Y-%m-%d").to_string(),
        None => format!("{ms} ms"),
    }
}

/// What to do with runs missed while the daemon was not running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Missed {
    /// Fire one run at start-up for the latest missed instant (never more than one).
    #[default]
    CatchUp,
    /// Fire nothing for missed instants; wait for the next one.
    Skip,
}

impl Missed {
    /// The spelling in job files.
    pub fn as_str(self) -> &'static str {
        match self {
            Missed::CatchUp => "catch-up",
            Missed::Skip => "skip",
        }
    }
}

/// The start-up decision for one scheduled job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartDecision {
    /// Fire one catch-up run now, for this scheduled instant (the latest one missed).
    pub catch_up: Option<i64>,
    /// How many instants passed since the last run (capped at [`COUNT_CAP`]), caught up or not.
    pub missed: u32,
    /// The next regular fire time after now (and after the last run).
    pub next: Option<i64>,
}

/// Decides at start-up whether to fire one catch-up run and when the next regular run is.
///
/// `last_scheduled_ms` is the scheduled instant of the last run that was started (persisted
/// before it fired). With no last run (the job's first start ever) nothing is caught up: the job
/// waits for its next instant. Otherwise every instant in `(last, now]` was missed; with
/// [`Missed::CatchUp`] the latest of them fires once now, with [`Missed::Skip`] none does.
pub fn decide_start(schedule: &Schedule, missed: Missed, last_scheduled_ms: Option<i64>, now_ms: i64) -> StartDecision {
    let Some(last) = last_scheduled_ms else {
        return StartDecision {
            catch_up: None,
            missed: 0,
            next: schedule.next_after(now_ms),
        };
    };
    let latest_missed = schedule.latest_at_or_before(now_ms).filter(|&t| t > last);
    let n_missed = match latest_missed {
        Some(_) => schedule.count_between(last, now_ms),
        None => 0,
    };
    StartDecision {
        catch_up: latest_missed.filter(|_| missed == Missed::CatchUp),
        missed: n_missed,
        // A last run in the future means the clock went back: never fire an instant at or before
        // one already fired.
        next: schedule.next_after(now_ms.max(last)),
    }
}

/// A fire time that has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// The instant to fire for: the latest one that has passed.
    pub scheduled_ms: i64,
    /// Earlier instants that passed too and are folded into this run (a late wake-up after a
    /// suspend or a wall-clock jump forward); capped at [`COUNT_CAP`].
    pub coalesced: u32,
}

/// Whether the awaited fire time `next_ms` has come at `now_ms`, and if so which instant fires.
pub fn due(schedule: &Schedule, next_ms: i64, now_ms: i64) -> Option<Due> {
    if now_ms < next_ms {
        return None;
    }
    let count = schedule.count_between(next_ms - 1, now_ms);
    let scheduled_ms = schedule
        .latest_at_or_before(now_ms)
        .filter(|&t| t >= next_ms)
        .unwrap_or(next_ms);
    Some(Due {
        scheduled_ms,
        coalesced: count.saturating_sub(1),
    })
}

/// What follows a finished run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AfterRun {
    /// Instants that passed while the run was going on; they are skipped, not fired late
    /// (capped at [`COUNT_CAP`]).
    pub skipped: u32,
    /// The next fire time: the first instant after both now and the run's instant.
    pub next: Option<i64>,
}

/// The next fire time after a run for `scheduled_ms` that ended at `now_ms`. Runs of one job
/// never overlap, so instants that passed during a long run are skipped and counted.
pub fn after_run(schedule: &Schedule, scheduled_ms: i64, now_ms: i64) -> AfterRun {
    AfterRun {
        skipped: schedule.count_between(scheduled_ms, now_ms),
        next: schedule.next_after(now_ms.max(scheduled_ms)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix ms of an RFC 3339 instant.
    fn ms(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().timestamp_millis()
    }

    fn utc(ms: i64) -> String {
        local_rfc3339(Tz::UTC, ms)
    }

    fn berlin(expr: &str) -> Schedule {
        Schedule::parse(expr, "Europe/Berlin").unwrap()
    }

    #[test]
    fn daily_berlin_morning_follows_summer_time() {
        let s = berlin("0 0 9 * * *");
        let fires: Vec<String> = s.next_n(ms("2026-03-27T12:00:00Z"), 4).into_iter().map(utc).collect();
        assert_eq!(
            fires,
            [
                "2026-03-28T08:00:00Z",
                "2026-03-29T07:00:00Z",
                "2026-03-30T07:00:00Z",
                "2026-03-31T07:00:00Z"
            ]
        );
        let autumn: Vec<String> = s.next_n(ms("2026-10-24T12:00:00Z"), 2).into_iter().map(utc).collect();
        assert_eq!(autumn, ["2026-10-25T08:00:00Z", "2026-10-26T08:00:00Z"]);
    }

    #[test]
    fn next_after_is_strictly_after_even_within_the_same_second() {
        let s = berlin("0 0 9 * * *");
        let nine = ms("2026-03-28T08:00:00Z");
        assert_eq!(s.next_after(nine - 1), Some(nine));
        assert_eq!(s.next_after(nine - 1_000), Some(nine));
        assert_eq!(s.next_after(nine), Some(ms("2026-03-29T07:00:00Z")));
        assert_eq!(s.next_after(nine + 500), Some(ms("2026-03-29T07:00:00Z")));
    }

    #[test]
    fn spring_forward_fixed_time_in_the_gap_fires_once_at_the_end_of_the_gap() {
        // 02:30 does not exist in Berlin on 2026-03-29: 02:00 CET is followed by 03:00 CEST.
        let s = berlin("0 30 2 * * *");
        let fires: Vec<String> = s.next_n(ms("2026-03-28T00:00:00Z"), 3).into_iter().map(utc).collect();
        assert_eq!(
            fires,
            [
                "2026-03-28T01:30:00Z", // 02:30 CET
                "2026-03-29T01:00:00Z", // 03:00 CEST, the first real instant after the gap
                "2026-03-30T00:30:00Z", // 02:30 CEST
            ]
        );
    }

    #[test]
    fn spring_forward_interval_schedule_has_no_runs_in_the_gap() {
        let s = berlin("0 */30 * * * *");
        let fires: Vec<String> = s
            .next_n(ms("2026-03-29T00:00:00Z"), 4) // 01:00 CET
            .into_iter()
            .map(|t| s.local_rfc3339(t))
            .collect();
        assert_eq!(
            fires,
            [
                "2026-03-29T01:30:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-29T03:30:00+02:00",
                "2026-03-29T04:00:00+02:00"
            ]
        );
    }

    #[test]
    fn fall_back_fixed_time_in_the_repeated_hour_fires_once_at_the_first_pass() {
        // 02:30 happens twice in Berlin on 2026-10-25: at 00:30Z (CEST) and at 01:30Z (CET).
        let s = berlin("0 30 2 * * *");
        let fires: Vec<String> = s.next_n(ms("2026-10-24T12:00:00Z"), 2).into_iter().map(utc).collect();
        assert_eq!(fires, ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]);
        // Standing between the two passes, the second one is not a fire time.
        assert_eq!(
            s.next_after(ms("2026-10-25T01:00:00Z")),
            Some(ms("2026-10-26T01:30:00Z"))
        );
        // And the latest fire time seen from the second pass is the first pass.
        assert_eq!(
            s.latest_at_or_before(ms("2026-10-25T01:45:00Z")),
            Some(ms("2026-10-25T00:30:00Z"))
        );
    }

    #[test]
    fn fall_back_interval_schedule_fires_in_both_passes() {
        let s = berlin("0 */30 * * * *");
        let fires: Vec<String> = s
            .next_n(ms("2026-10-24T23:45:00Z"), 5) // 01:45 CEST
            .into_iter()
            .map(|t| s.local_rfc3339(t))
            .collect();
        assert_eq!(
            fires,
            [
                "2026-10-25T02:00:00+02:00",
                "2026-10-25T02:30:00+02:00",
                "2026-10-25T02:00:00+01:00",
                "2026-10-25T02:30:00+01:00",
                "2026-10-25T03:00:00+01:00"
            ]
        );
    }

    #[test]
    fn parse_accepts_croners_forms() {
        for expr in [
            "0 0 9 1 * *",
            "0 9 1 * *",
            "0 0 6 * * MON",
            "0 30 17 * * 1-5",
            "0 0 12 L * *",
            "0 0 9 * * FRI#2",
            "0 0 0 * * 7",
            "0 0 0 1 1 * 2099",
            "@daily",
            "@weekly",
        ] {
            Schedule::parse(expr, "UTC").unwrap_or_else(|e| panic!("{expr}: {e}"));
        }
        // Five fields: seconds are zero.
        let s = Schedule::parse("0 9 1 * *", "UTC").unwrap();
        assert_eq!(
            utc(s.next_after(ms("2026-03-27T00:00:00Z")).unwrap()),
            "2026-04-01T09:00:00Z"
        );
    }

    #[test]
    fn day_of_month_and_day_of_week_are_either_or() {
        // The 1st, or any Monday: from Friday 2026-03-27 the next is Monday the 30th, then the 1st.
        let s = Schedule::parse("0 0 0 1 * MON", "UTC").unwrap();
        let fires: Vec<String> = s.next_n(ms("2026-03-27T12:00:00Z"), 2).into_iter().map(utc).collect();
        assert_eq!(fires, ["2026-03-30T00:00:00Z", "2026-04-01T00:00:00Z"]);
        let last_day = Schedule::parse("0 0 12 L * *", "UTC").unwrap();
        assert_eq!(
            utc(last_day.next_after(ms("2026-04-02T00:00:00Z")).unwrap()),
            "2026-04-30T12:00:00Z"
        );
    }

    #[test]
    fn parse_refuses_bad_expressions_and_zones() {
        let e = Schedule::parse("0 0 25 * * *", "UTC").unwrap_err();
        assert!(e.contains("\"0 0 25 * * *\" is not a cron expression"), "{e}");
        assert!(Schedule::parse("every day", "UTC").is_err());
        assert!(Schedule::parse("", "UTC").is_err());
        for tz in ["Berlin", "CET", "+02:00", "Europe/Berlim", "utc"] {
            let e = Schedule::parse("0 0 9 * * *", tz).unwrap_err();
            assert!(e.contains("IANA") && e.contains("\"Europe/Berlin\""), "{tz}: {e}");
        }
        assert_eq!(Schedule::parse("0 0 9 * * *", "UTC").unwrap().tz(), Tz::UTC);
    }

    #[test]
    fn a_schedule_that_never_fires_has_no_next() {
        let s = Schedule::parse("0 0 0 1 1 * 2020", "UTC").unwrap();
        assert_eq!(s.next_after(ms("2026-01-01T00:00:00Z")), None);
        assert!(s.next_n(ms("2026-01-01T00:00:00Z"), 3).is_empty());
    }

    // The start-up decision table.

    #[test]
    fn first_start_ever_catches_nothing_up() {
        let s = berlin("0 0 9 * * *");
        let now = ms("2026-03-27T12:00:00Z");
        let d = decide_start(&s, Missed::CatchUp, None, now);
        assert_eq!(
            d,
            StartDecision {
                catch_up: None,
                missed: 0,
                next: Some(ms("2026-03-28T08:00:00Z")),
            }
        );
    }

    #[test]
    fn restart_after_a_recent_run_misses_nothing() {
        let s = berlin("0 0 9 * * *");
        let last = ms("2026-03-27T08:00:00Z");
        let d = decide_start(&s, Missed::CatchUp, Some(last), ms("2026-03-27T12:00:00Z"));
        assert_eq!(d.catch_up, None);
        assert_eq!(d.missed, 0);
        assert_eq!(d.next, Some(ms("2026-03-28T08:00:00Z")));
    }

    #[test]
    fn several_missed_runs_are_caught_up_exactly_once_at_the_latest() {
        let s = berlin("0 0 9 * * *");
        let last = ms("2026-03-24T08:00:00Z");
        let now = ms("2026-03-27T12:00:00Z"); // missed 25th, 26th, 27th
        let d = decide_start(&s, Missed::CatchUp, Some(last), now);
        assert_eq!(
            d,
            StartDecision {
                catch_up: Some(ms("2026-03-27T08:00:00Z")),
                missed: 3,
                next: Some(ms("2026-03-28T08:00:00Z")),
            }
        );
    }

    #[test]
    fn skip_fires_nothing_for_missed_runs() {
        let s = berlin("0 0 9 * * *");
        let d = decide_start(
            &s,
            Missed::Skip,
            Some(ms("2026-03-24T08:00:00Z")),
            ms("2026-03-27T12:00:00Z"),
        );
        assert_eq!(d.catch_up, None);
        assert_eq!(d.missed, 3);
        assert_eq!(d.next, Some(ms("2026-03-28T08:00:00Z")));
    }

    #[test]
    fn a_last_run_in_the_future_means_the_clock_went_back_and_nothing_repeats() {
        let s = berlin("0 0 9 * * *");
        let last = ms("2026-03-28T08:00:00Z");
        let d = decide_start(&s, Missed::CatchUp, Some(last), ms("2026-03-27T12:00:00Z"));
        assert_eq!(d.catch_up, None);
        assert_eq!(d.next, Some(ms("2026-03-29T07:00:00Z")));
    }

    #[test]
    fn missed_count_is_capped() {
        let s = Schedule::parse("* * * * * *", "UTC").unwrap();
        let now = ms("2026-03-27T12:00:00Z");
        let d = decide_start(&s, Missed::CatchUp, Some(now - 86_400_000), now);
        assert_eq!(d.missed, COUNT_CAP);
        assert_eq!(d.catch_up, Some(now));
    }

    #[test]
    fn due_fires_the_latest_passed_instant_and_counts_the_rest() {
        let s = Schedule::parse("0 */10 * * * *", "UTC").unwrap();
        let next = ms("2026-03-27T12:10:00Z");
        assert_eq!(due(&s, next, next - 1), None);
        assert_eq!(
            due(&s, next, next + 5),
            Some(Due {
                scheduled_ms: next,
                coalesced: 0
            })
        );
        assert_eq!(
            due(&s, next, ms("2026-03-27T12:35:00Z")),
            Some(Due {
                scheduled_ms: ms("2026-03-27T12:30:00Z"),
                coalesced: 2
            })
        );
    }

    #[test]
    fn after_a_slow_run_passed_instants_are_skipped() {
        let s = Schedule::parse("*/10 * * * * *", "UTC").unwrap();
        let start = ms("2026-03-27T12:00:00Z");
        assert_eq!(
            after_run(&s, start, start + 25_000),
            AfterRun {
                skipped: 2,
                next: Some(start + 30_000)
            }
        );
        assert_eq!(
            after_run(&s, start, start + 3_000),
            AfterRun {
                skipped: 0,
                next: Some(start + 10_000)
            }
        );
    }
}
