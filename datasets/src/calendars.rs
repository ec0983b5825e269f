//! Shipped working-day calendars (DOMAIN.md §2).
//!
//! [`KAZAKHSTAN`] is `datasets/calendars/kazakhstan.cal`: Kazakhstan's public holidays,
//! their weekend carry-overs and the government's yearly day-off transfers for
//! 2020-01-01 ..= 2027-12-31, in the text format of
//! [`markledger_operators::calendar`]. `datasets/calendars/README.md` gives the rules it
//! encodes, the source of every transfer and what is provisional. A user replaces it with
//! `markledger run --calendar FILE`; outside a calendar's `range` only weekends are off.

use markledger_operators::WorkingCalendar;

/// The text of the shipped Kazakhstan calendar (`datasets/calendars/kazakhstan.cal`).
pub const KAZAKHSTAN: &str = include_str!("../calendars/kazakhstan.cal");

/// The shipped Kazakhstan calendar, parsed.
///
/// # Panics
///
/// Only if the shipped file itself is malformed, which this module's tests rule out.
pub fn kazakhstan() -> WorkingCalendar {
    match WorkingCalendar::parse(KAZAKHSTAN) {
        Ok(calendar) => calendar,
        Err(error) => {
            panic!("the shipped calendar datasets/calendars/kazakhstan.cal is broken: {error}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, NaiveDate, Weekday};
    use markledger_operators::calendar::DayKind;
    use markledger_operators::Ts;
    use std::collections::{BTreeMap, BTreeSet};

    const FIRST_YEAR: i32 = 2020;
    const LAST_YEAR: i32 = 2027;

    fn date(year: i32, month: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(year, month, day).unwrap()
    }

    fn is_weekend(day: NaiveDate) -> bool {
        matches!(day.weekday(), Weekday::Sat | Weekday::Sun)
    }

    fn weekday_name(day: NaiveDate) -> &'static str {
        match day.weekday() {
            Weekday::Mon => "Monday",
            Weekday::Tue => "Tuesday",
            Weekday::Wed => "Wednesday",
            Weekday::Thu => "Thursday",
            Weekday::Fri => "Friday",
            Weekday::Sat => "Saturday",
            Weekday::Sun => "Sunday",
        }
    }

    /// DOMAIN.md §2's fixed-date public holidays of `year`, with the names the file uses.
    fn fixed_holidays(year: i32) -> Vec<(NaiveDate, &'static str)> {
        let mut days = vec![
            (date(year, 1, 1), "New Year"),
            (date(year, 1, 2), "New Year"),
            (date(year, 1, 7), "Orthodox Christmas"),
            (date(year, 3, 8), "International Women's Day"),
            (date(year, 3, 21), "Nauryz"),
            (date(year, 3, 22), "Nauryz"),
            (date(year, 3, 23), "Nauryz"),
            (date(year, 5, 1), "Unity Day"),
            (date(year, 5, 7), "Defender of the Fatherland Day"),
            (date(year, 5, 9), "Victory Day"),
            (date(year, 7, 6), "Capital Day"),
            (date(year, 8, 30), "Constitution Day"),
            (date(year, 12, 16), "Independence Day"),
        ];
        if year >= 2022 {
            days.push((date(year, 10, 25), "Republic Day"));
        }
        if year <= 2021 {
            days.push((date(year, 12, 17), "Independence Day"));
        }
        days.sort();
        days
    }

    /// The file's listed days of one kind.
    fn listed_of(calendar: &WorkingCalendar, kind: DayKind) -> BTreeMap<NaiveDate, String> {
        calendar
            .listed()
            .filter(|(_, day)| day.kind == kind)
            .map(|(day, listed)| (*day, listed.note.clone()))
            .collect()
    }

    #[test]
    fn shipped_file_parses_and_covers_2020_to_2027() {
        // Parses the embedded file through the public constructor and checks its `range`.
        let calendar = kazakhstan();
        assert_eq!(calendar.range, (date(2020, 1, 1), date(2027, 12, 31)));
        assert!(calendar.listed().count() > 100, "the file lists too few days");
        for (day, _) in calendar.listed() {
            assert!(
                (calendar.range.0..=calendar.range.1).contains(day),
                "{day} lies outside the file's range"
            );
        }
    }

    /// Every way `calendar` departs from DOMAIN.md §2's holiday and carry-over rules for
    /// 2020–2027 (empty when it follows them).
    ///
    /// The holidays and carry-overs are re-derived: fixed dates + the file's own Kurban Ait
    /// line for each year + carry-overs processed in date order. "Already a day off", for a
    /// carry-over's search, is: Saturday or Sunday, a holiday (Jan 7 and Kurban Ait
    /// included), an earlier carry-over, or a `dayoff` transfer line.
    ///
    /// Choice for `workday` lines: a Saturday or Sunday worked under a transfer still
    /// counts as a weekend day here, so it never receives a carry-over. Decrees are drafted
    /// after the statutory carry-overs, and the worked weekend day is the make-up day for
    /// the day the decree moved. A worked weekend day inside a carry-over's search is
    /// reported, so the choice provably changes nothing for the shipped years. A `workday`
    /// line on a weekday is the one other case: the decree moved a carried-over day off
    /// elsewhere (2020: Victory Day's Monday 11 May went to Friday 8 May). Such a day must
    /// be a derived carry-over, and it leaves the derived set before the comparison.
    fn rule_violations(calendar: &WorkingCalendar) -> Vec<String> {
        let mut violations = Vec::new();
        let dayoffs = listed_of(calendar, DayKind::DayOff);
        let workdays = listed_of(calendar, DayKind::Workday);
        let holidays = listed_of(calendar, DayKind::Holiday);

        let mut derived: BTreeMap<NaiveDate, (DayKind, String)> = BTreeMap::new();
        let mut carry_spans = Vec::new();
        for year in FIRST_YEAR..=LAST_YEAR {
            let kurban: Vec<(&NaiveDate, &String)> = holidays
                .iter()
                .filter(|(day, note)| day.year() == year && note.starts_with("Kurban Ait"))
                .collect();
            let [(kurban_day, kurban_note)] = kurban[..] else {
                violations.push(format!("{year}: {} Kurban Ait holiday lines, not 1", kurban.len()));
                continue;
            };

            let fixed = fixed_holidays(year);
            let mut off: BTreeSet<NaiveDate> = fixed.iter().map(|(day, _)| *day).collect();
            off.insert(*kurban_day);
            off.extend(dayoffs.keys().filter(|day| day.year() == year));
            for (day, name) in &fixed {
                derived.insert(*day, (DayKind::Holiday, name.to_string()));
            }
            derived.insert(*kurban_day, (DayKind::Holiday, kurban_note.clone()));

            for (day, name) in &fixed {
                let carried = *day != date(year, 1, 7) && is_weekend(*day);
                if !carried {
                    continue;
                }
                let mut target = day.succ_opt().unwrap();
                while is_weekend(target) || off.contains(&target) {
                    target = target.succ_opt().unwrap();
                }
                off.insert(target);
                let note = format!("{name} falls on {} {day}", weekday_name(*day));
                derived.insert(target, (DayKind::Carryover, note));
                carry_spans.push((*day, target));
            }
        }

        for (from, to) in &carry_spans {
            for worked in workdays.keys().filter(|day| is_weekend(**day)) {
                if from < worked && worked < to {
                    violations.push(format!("worked weekend day {worked} inside carry-over {from} -> {to}"));
                }
            }
        }
        for (day, note) in &workdays {
            if is_weekend(*day) {
                continue;
            }
            if !matches!(derived.remove(day), Some((DayKind::Carryover, _))) {
                violations.push(format!("weekday workday line {day} ({note}) moves no carry-over"));
            }
        }

        let in_file: BTreeMap<NaiveDate, (DayKind, String)> = calendar
            .listed()
            .filter(|(_, day)| matches!(day.kind, DayKind::Holiday | DayKind::Carryover))
            .map(|(day, listed)| (*day, (listed.kind, listed.note.clone())))
            .collect();
        for (day, expected) in &derived {
            if in_file.get(day) != Some(expected) {
                violations.push(format!(
                    "{day}: rules give {expected:?}, file has {:?}",
                    in_file.get(day)
                ));
            }
        }
        for (day, found) in &in_file {
            if !derived.contains_key(day) {
                violations.push(format!("{day}: file lists {found:?}, the rules do not"));
            }
        }
        violations
    }

    #[test]
    fn holiday_and_carryover_lines_follow_the_domain_rules() {
        // Re-derives every holiday and carry-over of 2020–2027 from DOMAIN.md §2 (see
        // rule_violations) and asserts the file's holiday/carryover lines equal that set.
        let violations = rule_violations(&kazakhstan());
        assert!(violations.is_empty(), "{violations:#?}");
    }

    #[test]
    fn rule_check_rejects_a_drifted_file() {
        // Feeds the rule check edited copies of the file (a carry-over dropped, one added,
        // a holiday renamed, Jan 7 carried over) and asserts each edit is reported.
        let edits: [(&str, &str); 4] = [
            ("2026-03-25 carryover Nauryz falls on Sunday 2026-03-22\n", ""),
            ("2026-12-16 holiday", "2026-12-17 carryover Independence Day falls on Wednesday 2026-12-16\n2026-12-16 holiday"),
            ("2027-07-06 holiday Capital Day", "2027-07-06 holiday Astana Day"),
            ("2023-01-07 holiday Orthodox Christmas\n", "2023-01-07 holiday Orthodox Christmas\n2023-01-09 carryover Orthodox Christmas falls on Saturday 2023-01-07\n"),
        ];
        for (from, to) in edits {
            assert!(KAZAKHSTAN.contains(from), "edit target {from:?} not in the file");
            let drifted = WorkingCalendar::parse(&KAZAKHSTAN.replacen(from, to, 1)).unwrap();
            assert!(!rule_violations(&drifted).is_empty(), "edit {from:?} went unnoticed");
        }
    }

    #[test]
    fn nauryz_2026_carryovers_match_domain_example() {
        // DOMAIN.md §2's worked example: Nauryz on Sat 21 and Sun 22 March 2026 with
        // Mon 23 a holiday itself makes Tue 24 and Wed 25 days off; Thu 26 is worked.
        let calendar = kazakhstan();
        for day in 21..=25 {
            assert!(
                !calendar.is_working_day(date(2026, 3, day)),
                "2026-03-{day} is a day off"
            );
        }
        assert!(calendar.is_working_day(date(2026, 3, 20)));
        assert!(calendar.is_working_day(date(2026, 3, 26)));
    }

    #[test]
    fn expiry_deadline_of_an_emission_on_2026_03_10() {
        // Counts 30 working days after Tue 2026-03-10 by hand and compares deadline_after.
        // Working days: Mar 11-13 (3), 16-20 (8), 26-27 (10), Mar 30-Apr 3 (15),
        // Apr 6-10 (20), 13-17 (25), 20-24 (30). Skipped days off: the weekends
        // Mar 14-15, 21-22 (also Nauryz), 28-29, Apr 4-5, 11-12, 18-19; Mon Mar 23
        // (Nauryz); Tue Mar 24 and Wed Mar 25 (Nauryz carry-overs). No 2026 transfers.
        // The 30th working day is Fri 2026-04-24, so the codes expire at its end:
        // 2026-04-25T00:00+05:00 (Almaty is UTC+5 since 2024-03-01).
        let calendar = kazakhstan();
        let emitted = date(2026, 3, 10);
        assert_eq!(calendar.nth_working_day_after(emitted, 30), date(2026, 4, 24));
        let expected = Ts::parse_rfc3339("2026-04-25T00:00:00+05:00").unwrap();
        assert_eq!(calendar.deadline_after(emitted, 30), expected);
    }

    #[test]
    fn orthodox_christmas_on_a_weekend_is_not_carried_over() {
        // Jan 7 fell on Saturday in 2023 and on Sunday in 2024; the following Mondays
        // (2023-01-09, 2024-01-08) carry no other holiday or transfer, so they are worked.
        let calendar = kazakhstan();
        assert_eq!(date(2023, 1, 7).weekday(), Weekday::Sat);
        assert_eq!(date(2024, 1, 7).weekday(), Weekday::Sun);
        assert!(!calendar.is_working_day(date(2023, 1, 7)));
        assert!(calendar.is_working_day(date(2023, 1, 9)));
        assert!(calendar.is_working_day(date(2024, 1, 8)));
        let christmas_carryovers = calendar
            .listed()
            .filter(|(_, day)| day.kind == DayKind::Carryover)
            .filter(|(_, day)| day.note.starts_with("Orthodox Christmas"))
            .count();
        assert_eq!(christmas_carryovers, 0);
    }
}
