//! Exact money (DOMAIN.md §3): `rust_decimal`, never floating point.
//!
//! Balances and aggregates keep every digit (a balance can read 0.9952); rounding half-up
//! to two decimals happens only when a document is rendered ([`round_document`]).

use rust_decimal::{Decimal, RoundingStrategy};

/// An exact amount of tenge.
pub type Money = Decimal;

/// Why an amount was refused (rendered into a `BAD_AMOUNT` rejection's detail).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// The field is not a decimal string.
    #[error("amount {0:?} is not a decimal string")]
    NotDecimal(String),
    /// Zero or negative.
    #[error("amount {0} is not greater than zero")]
    NotPositive(Decimal),
    /// More than two decimals by value (tiyn are the smallest unit).
    #[error("amount {0} has more than 2 decimals")]
    TooPrecise(Decimal),
}

/// Checks a payment, compensation or refund amount: greater than zero and at most two
/// decimals by value (`"1.000"` is fine, `"1.005"` is not). Returns it normalised.
pub fn check_amount(amount: Decimal) -> Result<Money, AmountError> {
    let normal = amount.normalize();
    if normal <= Decimal::ZERO {
        return Err(AmountError::NotPositive(amount));
    }
    if normal.scale() > 2 {
        return Err(AmountError::TooPrecise(amount));
    }
    Ok(normal)
}

/// The canonical text of an exact amount: trailing zeros removed, at least two decimals
/// (`10` → `"10.00"`, `0.99520` → `"0.9952"`). Two engines that compute the same value by
/// different paths therefore print the same text.
pub fn render(amount: Money) -> String {
    let mut normal = amount.normalize();
    if normal.scale() < 2 {
        normal.rescale(2);
    }
    normal.to_string()
}

/// Rounds half-up (away from zero at .5) to two decimals, for rendered documents only.
pub fn round_document(amount: Money) -> Money {
    amount.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    #[test]
    fn amounts_have_at_most_two_decimals_by_value() {
        assert_eq!(check_amount(d("1.000")), Ok(d("1")));
        assert_eq!(check_amount(d("1.005")), Err(AmountError::TooPrecise(d("1.005"))));
        assert_eq!(check_amount(d("0")), Err(AmountError::NotPositive(d("0"))));
        assert_eq!(check_amount(d("-5.00")), Err(AmountError::NotPositive(d("-5.00"))));
    }

    #[test]
    fn render_is_canonical() {
        assert_eq!(render(d("10")), "10.00");
        assert_eq!(render(d("0.99520")), "0.9952");
        assert_eq!(render(d("3.0016")), "3.0016");
        assert_eq!(render(d("-2.5")), "-2.50");
    }

    #[test]
    fn documents_round_half_up() {
        assert_eq!(round_document(d("3.0016")), d("3.00"));
        assert_eq!(round_document(d("0.125")), d("0.13"));
        assert_eq!(round_document(d("2.9936")), d("2.99"));
    }
}
