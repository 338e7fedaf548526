//! Hourly colour counts per province, city and county: a step series kept
//! beside the current counts.
//!
//! - [`Hour`]: an hour bucket of the log. Buckets follow the log's commit
//!   time (`recorded_at`, which never goes backwards), so "the counts at the
//!   end of an hour" is what `colourCounts` showed then — the same meaning
//!   the auditors' time travel gives a time. UTC and China Standard Time
//!   (UTC+8) hours share their boundaries; hours are shown in CST.
//! - [`CountDelta`]: what one colour change does to one region's counts.
//! - [`HourlyTally`]: the projection's working set for a batch. It moves
//!   each region's totals ([`RegionTotals`]) and writes one [`HourRow`] per
//!   region and hour with changes (`before` and `after` the hour), so a
//!   query reads only the rows inside its window.
//! - [`step_series`]: turns the stored rows into one value per hour,
//!   carrying the last value forward through hours without changes.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tongban_kernel::{DivisionCode, DivisionLevel, CHINA_STANDARD_TIME};

use super::views::ColourCounts;

const SECONDS_PER_HOUR: i64 = 3600;

/// An hour bucket: whole hours since the Unix epoch. A bucket is the same
/// hour in UTC and in China Standard Time (the offset is a whole 8 hours).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Hour(i64);

impl Hour {
    /// The hour `at` falls in.
    pub fn of(at: OffsetDateTime) -> Self {
        Self(at.unix_timestamp().div_euclid(SECONDS_PER_HOUR))
    }

    /// The hour with this index (hours since the Unix epoch).
    pub const fn from_index(index: i64) -> Self {
        Self(index)
    }

    /// Hours since the Unix epoch.
    pub const fn index(self) -> i64 {
        self.0
    }

    /// The hour after this one.
    pub const fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }

    /// The hour before this one.
    pub const fn previous(self) -> Self {
        Self(self.0.saturating_sub(1))
    }

    /// Hours from `self` to `later`, both included (0 if `later` is earlier).
    pub fn span_to(self, later: Hour) -> u64 {
        u64::try_from(later.0.saturating_sub(self.0).saturating_add(1)).unwrap_or(0)
    }

    /// When the hour starts, in China Standard Time.
    pub fn start(self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(self.0.saturating_mul(SECONDS_PER_HOUR))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
            .to_offset(CHINA_STANDARD_TIME)
    }
}

/// What one change does to one region's counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CountDelta {
    /// Change of green.
    pub green: i64,
    /// Change of yellow.
    pub yellow: i64,
    /// Change of red.
    pub red: i64,
}

impl CountDelta {
    /// A person counted under `from` (if any) now counts under `to` (if
    /// any). Colours other than green and yellow count as red, as in the
    /// current counts.
    pub fn moving(from: Option<&str>, to: Option<&str>) -> Self {
        let mut d = Self::default();
        if let Some(c) = from {
            *d.slot(c) -= 1;
        }
        if let Some(c) = to {
            *d.slot(c) += 1;
        }
        d
    }

    fn slot(&mut self, colour: &str) -> &mut i64 {
        match colour {
            "green" => &mut self.green,
            "yellow" => &mut self.yellow,
            _ => &mut self.red,
        }
    }

    /// Both changes together.
    pub fn plus(self, other: Self) -> Self {
        Self {
            green: self.green + other.green,
            yellow: self.yellow + other.yellow,
            red: self.red + other.red,
        }
    }

    /// The opposite change.
    pub fn negated(self) -> Self {
        Self {
            green: -self.green,
            yellow: -self.yellow,
            red: -self.red,
        }
    }

    /// Whether it changes nothing.
    pub fn is_zero(self) -> bool {
        self == Self::default()
    }
}

impl ColourCounts {
    /// The counts after `delta` (never below zero).
    pub fn with(self, delta: CountDelta) -> Self {
        Self {
            green: self.green.saturating_add_signed(delta.green),
            yellow: self.yellow.saturating_add_signed(delta.yellow),
            red: self.red.saturating_add_signed(delta.red),
        }
    }
}

/// The regions a county counts in, top down: its province, its city and
/// the county itself (2, 4 and 6 digits). Any code at county level or below
/// counts in its county's; anything else counts nowhere (empty).
pub fn counted_regions(code: &str) -> Vec<String> {
    let Some(county) = DivisionCode::parse(code).ok().and_then(|c| c.county()) else {
        return Vec::new();
    };
    [
        DivisionLevel::Province,
        DivisionLevel::City,
        DivisionLevel::County,
    ]
    .into_iter()
    .filter_map(|level| county.ancestor_at(level))
    .map(|c| c.to_string())
    .collect()
}

/// The regions whose counts a step series is kept for: provinces, cities
/// and counties.
pub fn has_series(code: &DivisionCode) -> bool {
    code.level() <= DivisionLevel::County
}

/// One stored hour of a region's series.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HourRow {
    /// The counts when the hour began.
    pub before: ColourCounts,
    /// The counts when it ended (or now, for the current hour).
    pub after: ColourCounts,
}

/// A region's current counts, with where its series stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionTotals {
    /// The counts now.
    pub counts: ColourCounts,
    /// The hour of the region's latest row (`None`: no row yet).
    pub hour: Option<Hour>,
    /// The counts when that hour began.
    pub hour_began: ColourCounts,
}

/// A batch's changes to the hourly counts: totals and rows of the regions
/// it touched. Totals must be [loaded](Self::load) before a region is
/// counted in, so a batch continues where the last one stopped.
#[derive(Debug, Default)]
pub struct HourlyTally {
    totals: HashMap<String, RegionTotals>,
    rows: BTreeMap<(String, Hour), HourRow>,
}

impl HourlyTally {
    /// Whether `region`'s totals are in the working set.
    pub fn has(&self, region: &str) -> bool {
        self.totals.contains_key(region)
    }

    /// Puts `region`'s stored totals (none: never counted) into the working
    /// set.
    pub fn load(&mut self, region: &str, stored: Option<RegionTotals>) {
        self.totals
            .entry(region.to_owned())
            .or_insert_with(|| stored.unwrap_or_default());
    }

    /// Counts `delta` in `region` at `hour`. A change never goes into an
    /// hour before the region's latest row (the series is never rewritten);
    /// it joins that row instead.
    pub fn record(&mut self, region: &str, delta: CountDelta, hour: Hour) {
        if delta.is_zero() {
            return;
        }
        if !self.totals.contains_key(region) {
            self.totals
                .insert(region.to_owned(), RegionTotals::default());
        }
        let Some(totals) = self.totals.get_mut(region) else {
            return;
        };
        let hour = match totals.hour {
            Some(latest) if latest >= hour => latest,
            _ => {
                totals.hour_began = totals.counts;
                hour
            }
        };
        totals.hour = Some(hour);
        totals.counts = totals.counts.with(delta);
        self.rows.insert(
            (region.to_owned(), hour),
            HourRow {
                before: totals.hour_began,
                after: totals.counts,
            },
        );
    }

    /// The totals of `region` in the working set.
    pub fn totals(&self, region: &str) -> Option<&RegionTotals> {
        self.totals.get(region)
    }

    /// What to write: the touched regions' totals and their rows.
    pub fn into_parts(
        self,
    ) -> (
        HashMap<String, RegionTotals>,
        BTreeMap<(String, Hour), HourRow>,
    ) {
        (self.totals, self.rows)
    }
}

/// One hour of a step series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HourCounts {
    /// The hour.
    pub hour: Hour,
    /// The counts at its end.
    pub counts: ColourCounts,
    /// Whether the counts changed during the hour.
    pub changed: bool,
}

/// The series from `from` to `to` (both included), one value per hour:
/// the counts at the end of each hour, carried forward through hours
/// without changes. `rows` are a region's stored rows from `from` on, in
/// hour order (rows after `to` are allowed: the first tells what the counts
/// were before it); `now` are its current totals, for a window after the
/// last row.
pub fn step_series(
    rows: &[(Hour, HourRow)],
    now: &RegionTotals,
    from: Hour,
    to: Hour,
) -> Vec<HourCounts> {
    let mut rows = rows.iter().filter(|(h, _)| *h >= from).peekable();
    // The counts when `from` began: the first row's `before`, or, with no
    // row from `from` on, the current counts.
    let mut current = match rows.peek() {
        Some((_, row)) => row.before,
        None => now.counts,
    };
    let mut out = Vec::with_capacity(usize::try_from(from.span_to(to)).unwrap_or(0));
    let mut hour = from;
    while hour <= to {
        let changed = match rows.next_if(|(h, _)| *h == hour) {
            Some((_, row)) => {
                current = row.after;
                true
            }
            None => {
                // A later row tells how the counts stood before it.
                if let Some((_, row)) = rows.peek() {
                    current = row.before;
                }
                false
            }
        };
        out.push(HourCounts {
            hour,
            counts: current,
            changed,
        });
        if hour == to {
            break;
        }
        hour = hour.next();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn counts(green: u64, yellow: u64, red: u64) -> ColourCounts {
        ColourCounts { green, yellow, red }
    }

    fn at(hour: OffsetDateTime) -> Hour {
        Hour::of(hour)
    }

    #[test]
    fn an_hour_bucket_is_the_same_hour_in_utc_and_in_china_standard_time() {
        // Given a change at 17:59 UTC, i.e. 01:59 CST the next day
        let hour = Hour::of(datetime!(2020-06-13 17:59:59 UTC));
        // Then it falls in the hour that starts at 01:00 CST (17:00 UTC)
        assert_eq!(hour.start(), datetime!(2020-06-14 01:00 +8));
        assert_eq!(hour.start(), datetime!(2020-06-13 17:00 UTC));
        assert_eq!(Hour::of(datetime!(2020-06-13 18:00 UTC)), hour.next());
        assert_eq!(Hour::of(datetime!(2020-06-14 01:00 +8)), hour);
    }

    #[test]
    fn times_before_the_epoch_fall_in_the_hour_that_contains_them() {
        let hour = Hour::of(datetime!(1969-12-31 23:30 UTC));
        assert_eq!(hour.index(), -1);
        assert_eq!(hour.start(), datetime!(1969-12-31 23:00 UTC));
    }

    #[test]
    fn a_county_counts_in_its_province_its_city_and_itself() {
        assert_eq!(counted_regions("110106"), ["11", "1101", "110106"]);
        // A community counts in the regions of its county.
        assert_eq!(counted_regions("110106018002"), ["11", "1101", "110106"]);
        assert!(counted_regions("11").is_empty());
        assert!(counted_regions("not a code").is_empty());
    }

    #[test]
    fn a_move_from_green_to_red_takes_one_from_green_and_gives_one_to_red() {
        let d = CountDelta::moving(Some("green"), Some("red"));
        assert_eq!(
            d,
            CountDelta {
                green: -1,
                yellow: 0,
                red: 1
            }
        );
        assert!(d.plus(d.negated()).is_zero());
        assert_eq!(counts(3, 0, 0).with(d), counts(2, 0, 1));
    }

    #[test]
    fn changes_within_one_hour_make_one_row_with_the_counts_before_and_after_it() {
        // Given a region that had 10 green people before 10:00
        let mut tally = HourlyTally::default();
        tally.load(
            "110106",
            Some(RegionTotals {
                counts: counts(10, 0, 0),
                hour: Some(at(datetime!(2020-06-13 09:00 +8))),
                hour_began: counts(9, 0, 0),
            }),
        );
        // When two people turn yellow and one turns red between 10:00 and 11:00 CST
        let ten = at(datetime!(2020-06-13 10:05 +8));
        let yellow = CountDelta::moving(Some("green"), Some("yellow"));
        tally.record("110106", yellow, ten);
        tally.record("110106", yellow, ten);
        tally.record(
            "110106",
            CountDelta::moving(Some("yellow"), Some("red")),
            ten,
        );
        // Then the 10:00 row goes from 10 green to 8 green, 1 yellow and 1 red
        let (totals, rows) = tally.into_parts();
        assert_eq!(
            rows.get(&("110106".to_string(), ten)),
            Some(&HourRow {
                before: counts(10, 0, 0),
                after: counts(8, 1, 1),
            })
        );
        assert_eq!(rows.len(), 1);
        assert_eq!(totals["110106"].counts, counts(8, 1, 1));
        assert_eq!(totals["110106"].hour, Some(ten));
    }

    #[test]
    fn a_change_stamped_before_the_latest_row_joins_that_row_and_never_rewrites_the_series() {
        // Given a region whose latest row is 12:00
        let noon = at(datetime!(2020-06-13 12:00 +8));
        let mut tally = HourlyTally::default();
        tally.load("11", None);
        tally.record("11", CountDelta::moving(None, Some("green")), noon);
        // When a change arrives stamped 11:00
        tally.record(
            "11",
            CountDelta::moving(None, Some("red")),
            at(datetime!(2020-06-13 11:00 +8)),
        );
        // Then it counts in the 12:00 row
        let (_, rows) = tally.into_parts();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows.get(&("11".to_string(), noon)).map(|r| r.after),
            Some(counts(1, 0, 1))
        );
    }

    #[test]
    fn a_change_that_changes_nothing_stores_no_row() {
        let mut tally = HourlyTally::default();
        tally.load("1101", None);
        tally.record("1101", CountDelta::default(), Hour::from_index(5));
        assert!(tally.into_parts().1.is_empty());
    }

    #[test]
    fn the_series_carries_the_last_value_through_hours_without_changes() {
        // Given rows at 10:00 and 13:00
        let h = |i: i64| Hour::from_index(1000 + i);
        let rows = vec![
            (
                h(0),
                HourRow {
                    before: counts(5, 0, 0),
                    after: counts(4, 1, 0),
                },
            ),
            (
                h(3),
                HourRow {
                    before: counts(4, 1, 0),
                    after: counts(4, 0, 1),
                },
            ),
        ];
        let now = RegionTotals {
            counts: counts(4, 0, 1),
            hour: Some(h(3)),
            hour_began: counts(4, 1, 0),
        };
        // When the series from 09:00 to 14:00 is read
        let series = step_series(&rows, &now, h(-1), h(4));
        // Then 09:00 shows the counts before the first row, 11:00 and 12:00
        // carry 10:00 forward, 14:00 carries 13:00 forward
        let values: Vec<_> = series.iter().map(|s| (s.counts, s.changed)).collect();
        assert_eq!(
            values,
            vec![
                (counts(5, 0, 0), false),
                (counts(4, 1, 0), true),
                (counts(4, 1, 0), false),
                (counts(4, 1, 0), false),
                (counts(4, 0, 1), true),
                (counts(4, 0, 1), false),
            ]
        );
        assert_eq!(series.first().map(|s| s.hour), Some(h(-1)));
        assert_eq!(series.last().map(|s| s.hour), Some(h(4)));
    }

    #[test]
    fn a_window_between_rows_shows_the_counts_the_next_row_began_with() {
        let h = Hour::from_index;
        let rows = vec![(
            h(20),
            HourRow {
                before: counts(7, 2, 0),
                after: counts(7, 1, 1),
            },
        )];
        let now = RegionTotals {
            counts: counts(0, 0, 9),
            hour: Some(h(30)),
            hour_began: counts(0, 0, 8),
        };
        let series = step_series(&rows, &now, h(10), h(12));
        assert!(series
            .iter()
            .all(|s| s.counts == counts(7, 2, 0) && !s.changed));
        assert_eq!(series.len(), 3);
    }

    #[test]
    fn a_window_after_the_last_row_shows_the_current_counts() {
        let now = RegionTotals {
            counts: counts(3, 2, 1),
            hour: Some(Hour::from_index(4)),
            hour_began: counts(3, 2, 0),
        };
        let series = step_series(&[], &now, Hour::from_index(10), Hour::from_index(11));
        assert_eq!(series.len(), 2);
        assert!(series.iter().all(|s| s.counts == counts(3, 2, 1)));
    }

    #[test]
    fn a_region_never_counted_shows_zeros() {
        let series = step_series(
            &[],
            &RegionTotals::default(),
            Hour::from_index(1),
            Hour::from_index(1),
        );
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].counts, ColourCounts::default());
    }
}
