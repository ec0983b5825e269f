//! How figures print: amounts already rounded by the model, shown with exactly two decimals
//! (grouped for a person in the PDF, plain for a spreadsheet in the CSV), timestamps and
//! dates as a person in Kazakhstan reads them.

use crate::texts::Lang;
use markledger_operators::{Money, Period};

/// A rounded amount with exactly two decimals, no grouping: `1234.50`, `-0.01` (CSV).
pub fn plain(amount: Money) -> String {
    let mut fixed = amount.value();
    fixed.rescale(2);
    fixed.to_string()
}

/// A rounded amount for a person: `1 234,50` in Russian and Kazakh, `1,234.50` in English.
pub fn grouped(amount: Money, lang: Lang) -> String {
    let text = plain(amount);
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text.as_str()),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, "00"));
    let (decimal, thousands) = lang.separators();
    let mut out = String::with_capacity(text.len() + whole.len() / 3 + 1);
    out.push_str(sign);
    for (i, digit) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            out.push(thousands);
        }
        out.push(digit);
    }
    out.push(decimal);
    out.push_str(fraction);
    out
}

/// A count for a person: `1 234 567` (Russian, Kazakh), `1,234,567` (English).
pub fn count(value: u64, lang: Lang) -> String {
    let digits = value.to_string();
    let (_, thousands) = lang.separators();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(thousands);
        }
        out.push(digit);
    }
    out
}

/// `2026-01-30T11:00:00+05:00` → `30.01.2026 11:00` (the pipeline already wrote it in
/// Almaty local time); anything else is shown as it is.
pub fn local_time(ts: &str) -> String {
    match chrono::DateTime::parse_from_rfc3339(ts) {
        Ok(time) => time.format("%d.%m.%Y %H:%M").to_string(),
        Err(_) => ts.to_string(),
    }
}

/// `2026-01-30` → `30.01.2026`.
pub fn date(day: &str) -> String {
    match chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d") {
        Ok(date) => date.format("%d.%m.%Y").to_string(),
        Err(_) => day.to_string(),
    }
}

/// The period's last local day, the date every document of the period carries.
pub fn period_last_day(period: Period) -> chrono::NaiveDate {
    period.next().first_day().pred_opt().unwrap_or_default()
}

/// `01.01.2026 – 31.01.2026`.
pub fn period_range(period: Period) -> String {
    format!(
        "{} – {}",
        period.first_day().format("%d.%m.%Y"),
        period_last_day(period).format("%d.%m.%Y")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(text: &str) -> Money {
        text.parse().unwrap()
    }

    #[test]
    fn amounts_print_two_decimals_grouped_per_language() {
        // Checks grouping and separators on values with 0, 1 and 2 stored decimals and a sign.
        assert_eq!(plain(m("0")), "0.00");
        assert_eq!(plain(m("12.5")), "12.50");
        assert_eq!(grouped(m("1234567.8"), Lang::Ru), "1 234 567,80");
        assert_eq!(grouped(m("1234567.8"), Lang::En), "1,234,567.80");
        assert_eq!(grouped(m("-0.01"), Lang::Kk), "-0,01");
        assert_eq!(grouped(m("999.99"), Lang::Ru), "999,99");
        assert_eq!(count(1_000, Lang::Ru), "1 000");
        assert_eq!(count(999, Lang::En), "999");
    }

    #[test]
    fn times_and_periods_read_as_local_dates() {
        // Checks the local rendering of an output timestamp and a period's range.
        assert_eq!(local_time("2026-01-30T11:00:00+05:00"), "30.01.2026 11:00");
        assert_eq!(period_range(Period::new(2024, 2)), "01.02.2024 – 29.02.2024");
        assert_eq!(date("2026-03-02"), "02.03.2026");
    }
}
