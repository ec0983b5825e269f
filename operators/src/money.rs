//! Exact money (DOMAIN.md §3): `rust_decimal`, never floating point, and never rounded.
//!
//! Balances and aggregates keep every digit (a balance can read 0.9952); rounding half-up
//! to two decimals happens only when a document is rendered ([`round_document`]).
//!
//! **Bounds** (docs/ARCHITECTURE.md, "Decisions: money bounds", has the arithmetic). A
//! `rust_decimal` holds 28 significant digits; beyond them it does not fail, it *rounds*,
//! silently. Every amount that enters is therefore bounded ([`AMOUNT_MAX`], tariff prices
//! and rates by [`NET_PRICE_MAX`] and their decimals, an account's balance by
//! [`BALANCE_MAX`]), so every value the pipeline keeps has at most [`SCALE_MAX`] decimals
//! and stays below [`EXACT_MAX`]: 6 + 22 digits, always exact. [`Money`]'s arithmetic checks
//! that on every operation and panics rather than keep a rounded value — a broken invariant
//! ends the process with a message (STYLE.md), it never writes a wrong reconciliation.

pub use rust_decimal::Decimal;
use rust_decimal::RoundingStrategy;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Neg, Sub, SubAssign};

/// The most decimals any kept amount has: amounts have 2, a tariff's net price 2 and its
/// VAT rate 4, so a charge (`net × (1 + rate)`) has at most 6, and sums keep the largest.
pub const SCALE_MAX: u32 = 6;

/// Every kept amount is below this in absolute value (10²²): with [`SCALE_MAX`] decimals
/// that is 28 digits, what a `rust_decimal` holds exactly.
pub const EXACT_MAX: Decimal = Decimal::from_parts(0xB240_0000, 0x19E0_C9BA, 0x0000_021E, false, 0);

/// The largest payment, compensation or refund: 10¹² KZT (about 2 billion USD), about ten
/// times the whole country's yearly bill for codes.
pub const AMOUNT_MAX: Decimal = Decimal::from_parts(0xD4A5_1000, 0xE8, 0, false, 0);

/// Decimals of a payment, compensation or refund (tiyn).
pub const AMOUNT_DECIMALS_MAX: u32 = 2;

/// The largest net price of one code in a tariff: 10 000 KZT (today's is 2.68).
pub const NET_PRICE_MAX: Decimal = Decimal::from_parts(10_000, 0, 0, false, 0);

/// Decimals of a tariff's net price (tiyn).
pub const NET_PRICE_DECIMALS_MAX: u32 = 2;

/// Decimals of a VAT rate (`0.125` is 12.5 %).
pub const VAT_RATE_DECIMALS_MAX: u32 = 4;

/// The largest balance an account may hold: 10¹⁵ KZT. A credit that would take a balance
/// above it is refused (`BAD_AMOUNT`), so no account's figures can approach [`EXACT_MAX`].
pub const BALANCE_MAX: Decimal = Decimal::from_parts(0xA4C6_8000, 0x38D7E, 0, false, 0);

/// An exact amount of tenge, always within [`EXACT_MAX`] and [`SCALE_MAX`] decimals.
///
/// Serialized as the decimal itself (its text), so checkpoints and records are unchanged.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Money(Decimal);

impl Money {
    /// Zero tenge.
    pub const ZERO: Money = Money(Decimal::ZERO);

    /// An amount known to be in range (a test's, a literal's); panics otherwise.
    pub fn exact(value: Decimal) -> Money {
        Money::try_exact(value).unwrap_or_else(|| panic!("amount {value} is outside money's exact range"))
    }

    /// The amount, if it has at most [`SCALE_MAX`] decimals and is below [`EXACT_MAX`].
    pub fn try_exact(value: Decimal) -> Option<Money> {
        (value.scale() <= SCALE_MAX && value.abs() < EXACT_MAX).then_some(Money(value))
    }

    /// The decimal value.
    pub fn value(self) -> Decimal {
        self.0
    }

    /// True for zero.
    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }

    /// This amount times a rate (a net price times a VAT rate), exact: the product's
    /// decimals are the sum of both, and a bounded price and rate keep it within range.
    pub fn times_rate(self, rate: Decimal) -> Money {
        let product = self.0.checked_mul(rate);
        match product {
            Some(product) if product.scale() == self.0.scale() + rate.scale() => {
                checked(Some(product), self, "×", rate)
            }
            _ => overflow(self, "×", rate),
        }
    }

    /// This amount `count` times (a number of codes times their charge), exact.
    pub fn times(self, count: u64) -> Money {
        checked(self.0.checked_mul(Decimal::from(count)), self, "×", count)
    }

    /// `self + other`, or None when the sum would leave the exact range.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).and_then(Money::try_exact)
    }
}

fn checked(value: Option<Decimal>, a: Money, op: &str, b: impl fmt::Display) -> Money {
    match value.and_then(Money::try_exact) {
        Some(money) => money,
        None => overflow(a, op, b),
    }
}

#[cold]
fn overflow(a: Money, op: &str, b: impl fmt::Display) -> ! {
    panic!(
        "money out of its exact range: {a} {op} {b} (every input amount is bounded so that this \
         cannot happen; docs/ARCHITECTURE.md, \"Decisions: money bounds\")"
    )
}

impl Add for Money {
    type Output = Money;
    fn add(self, other: Money) -> Money {
        checked(self.0.checked_add(other.0), self, "+", other)
    }
}

impl Sub for Money {
    type Output = Money;
    fn sub(self, other: Money) -> Money {
        checked(self.0.checked_sub(other.0), self, "−", other)
    }
}

/// `&a + &b`, `a + &b`, `&a − b`, …: the same checked operations on references.
macro_rules! by_reference {
    ($trait:ident, $method:ident) => {
        impl $trait<&Money> for Money {
            type Output = Money;
            fn $method(self, other: &Money) -> Money {
                $trait::$method(self, *other)
            }
        }
        impl $trait<Money> for &Money {
            type Output = Money;
            fn $method(self, other: Money) -> Money {
                $trait::$method(*self, other)
            }
        }
        impl $trait<&Money> for &Money {
            type Output = Money;
            fn $method(self, other: &Money) -> Money {
                $trait::$method(*self, *other)
            }
        }
    };
}

by_reference!(Add, add);
by_reference!(Sub, sub);

impl AddAssign for Money {
    fn add_assign(&mut self, other: Money) {
        *self = *self + other;
    }
}

impl SubAssign for Money {
    fn sub_assign(&mut self, other: Money) {
        *self = *self - other;
    }
}

impl AddAssign<&Money> for Money {
    fn add_assign(&mut self, other: &Money) {
        *self = *self + *other;
    }
}

impl SubAssign<&Money> for Money {
    fn sub_assign(&mut self, other: &Money) {
        *self = *self - *other;
    }
}

impl Neg for Money {
    type Output = Money;
    fn neg(self) -> Money {
        Money(-self.0)
    }
}

impl Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::ZERO, Add::add)
    }
}

impl<'a> Sum<&'a Money> for Money {
    fn sum<I: Iterator<Item = &'a Money>>(iter: I) -> Money {
        iter.copied().sum()
    }
}

/// Whole tenge: every `i64` is within the exact range (|x| < 9.3 × 10¹⁸ < 10²²).
impl From<i64> for Money {
    fn from(tenge: i64) -> Money {
        Money(Decimal::from(tenge))
    }
}

/// Whole tenge (for literals: `5.into()`).
impl From<i32> for Money {
    fn from(tenge: i32) -> Money {
        Money(Decimal::from(tenge))
    }
}

/// The decimal as it is (`50`, `0.9952`): rejection details quote amounts as they came;
/// records render with [`render`].
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&render(*self))
    }
}

impl std::str::FromStr for Money {
    type Err = AmountError;
    /// Parses a decimal within money's exact range (tests and fixtures; input amounts go
    /// through [`check_amount`]).
    fn from_str(text: &str) -> Result<Money, AmountError> {
        let value = Decimal::from_str_exact(text).map_err(|_| AmountError::NotDecimal(text.to_string()))?;
        Money::try_exact(value).ok_or(AmountError::TooLarge(value))
    }
}

/// Why an amount was refused (rendered into a `BAD_AMOUNT` rejection's detail).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// The field is not a decimal string.
    #[error("amount \"{0}\" is not a decimal string")]
    NotDecimal(String),
    /// Zero or negative.
    #[error("amount {0} is not greater than zero")]
    NotPositive(Decimal),
    /// More than two decimals by value (tiyn are the smallest unit).
    #[error("amount {0} has more than 2 decimals")]
    TooPrecise(Decimal),
    /// Above [`AMOUNT_MAX`].
    #[error("amount {0} exceeds the largest accepted amount, 1000000000000.00")]
    TooLarge(Decimal),
}

/// Checks a payment, compensation or refund amount: greater than zero, at most two
/// decimals by value (`"1.000"` is fine, `"1.005"` is not), at most [`AMOUNT_MAX`].
/// Returns it normalised.
pub fn check_amount(amount: Decimal) -> Result<Money, AmountError> {
    let normal = amount.normalize();
    if normal <= Decimal::ZERO {
        return Err(AmountError::NotPositive(amount));
    }
    if normal.scale() > AMOUNT_DECIMALS_MAX {
        return Err(AmountError::TooPrecise(amount));
    }
    if normal > AMOUNT_MAX {
        return Err(AmountError::TooLarge(amount));
    }
    Ok(Money(normal))
}

/// Why a tariff was refused (`BAD_AMOUNT`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TariffError {
    /// The net price is not above zero, above [`NET_PRICE_MAX`], or has more than 2 decimals.
    #[error("tariff net_price {0} must be above 0 and at most 10000 with at most 2 decimals")]
    NetPrice(Decimal),
    /// The VAT rate is outside `[0, 1)` or has more than 4 decimals.
    #[error("tariff vat_rate {0} must be at least 0 and below 1 with at most 4 decimals")]
    VatRate(Decimal),
}

/// Checks a tariff's net price and VAT rate against their bounds; returns them normalised.
pub fn check_tariff(net_price: Decimal, vat_rate: Decimal) -> Result<(Money, Decimal), TariffError> {
    let net = net_price.normalize();
    if net <= Decimal::ZERO || net > NET_PRICE_MAX || net.scale() > NET_PRICE_DECIMALS_MAX {
        return Err(TariffError::NetPrice(net_price));
    }
    let rate = vat_rate.normalize();
    if rate.is_sign_negative() || rate >= Decimal::ONE || rate.scale() > VAT_RATE_DECIMALS_MAX {
        return Err(TariffError::VatRate(vat_rate));
    }
    Ok((Money(net), rate))
}

/// The canonical text of an exact amount: trailing zeros removed, at least two decimals
/// (`10` → `"10.00"`, `0.99520` → `"0.9952"`). Two engines that compute the same value by
/// different paths therefore print the same text.
pub fn render(amount: Money) -> String {
    let mut normal = amount.0.normalize();
    if normal.scale() < 2 {
        normal.rescale(2);
    }
    normal.to_string()
}

/// Rounds half-up (away from zero at .5) to two decimals, for rendered documents only.
pub fn round_document(amount: Money) -> Money {
    Money(
        amount
            .0
            .round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    fn m(text: &str) -> Money {
        Money::from_str(text).unwrap()
    }

    #[test]
    fn the_bounds_are_the_powers_of_ten_they_claim() {
        // Constants built from their parts must equal the decimal text the docs quote.
        assert_eq!(EXACT_MAX, d("10000000000000000000000"));
        assert_eq!(AMOUNT_MAX, d("1000000000000"));
        assert_eq!(BALANCE_MAX, d("1000000000000000"));
        assert_eq!(NET_PRICE_MAX, d("10000"));
        // 22 integer digits and 6 decimals fit a rust_decimal's 28 digits exactly.
        let largest = EXACT_MAX - d("0.000001");
        assert_eq!(largest.to_string(), "9999999999999999999999.999999");
        assert_eq!(largest + d("0.000001"), EXACT_MAX);
    }

    #[test]
    fn amounts_have_at_most_two_decimals_by_value_and_a_maximum() {
        // Each refusal reason of check_amount, and its boundaries.
        assert_eq!(check_amount(d("1.000")), Ok(m("1")));
        assert_eq!(check_amount(d("1.005")), Err(AmountError::TooPrecise(d("1.005"))));
        assert_eq!(check_amount(d("0")), Err(AmountError::NotPositive(d("0"))));
        assert_eq!(check_amount(d("-5.00")), Err(AmountError::NotPositive(d("-5.00"))));
        assert_eq!(check_amount(d("1000000000000.00")), Ok(m("1000000000000")));
        assert_eq!(
            check_amount(d("1000000000000.01")),
            Err(AmountError::TooLarge(d("1000000000000.01")))
        );
        let max = Decimal::MAX;
        assert_eq!(check_amount(max), Err(AmountError::TooLarge(max)));
    }

    #[test]
    fn tariffs_are_bounded_in_value_and_decimals() {
        // A tariff's price and rate: each bound, on both sides.
        assert_eq!(check_tariff(d("2.68"), d("0.12")), Ok((m("2.68"), d("0.12"))));
        assert_eq!(check_tariff(d("10000"), d("0.9999")), Ok((m("10000"), d("0.9999"))));
        assert!(check_tariff(d("10000.01"), d("0.12")).is_err());
        assert!(check_tariff(d("2.685"), d("0.12")).is_err());
        assert!(check_tariff(d("0"), d("0.12")).is_err());
        assert!(check_tariff(d("2.68"), d("0.12345")).is_err());
        assert!(check_tariff(d("2.68"), d("1")).is_err());
        assert!(check_tariff(d("2.68"), d("-0.01")).is_err());
    }

    #[test]
    fn a_charge_at_the_bounds_is_exact() {
        // The largest price times the most precise rate keeps every digit.
        let (net, rate) = check_tariff(d("9999.99"), d("0.9999")).unwrap();
        let charge = net + net.times_rate(rate);
        assert_eq!(charge.value(), d("19998.980001"));
    }

    #[test]
    fn arithmetic_that_would_round_panics_instead() {
        // 10²¹ + 0.000001 is exact; past EXACT_MAX the sum is refused, never rounded.
        let big = Money::exact(d("1000000000000000000000"));
        assert_eq!((big + m("0.000001")).value(), d("1000000000000000000000.000001"));
        let result = std::panic::catch_unwind(|| big + big + big + big + big + big + big + big + big + big);
        assert!(result.is_err(), "a sum past the exact range must not be kept");
        assert!(big.checked_add(Money::exact(d("9000000000000000000000"))).is_none());
        assert!(
            Money::try_exact(d("0.0000001")).is_none(),
            "7 decimals are outside the range"
        );
    }

    #[test]
    fn render_is_canonical() {
        assert_eq!(render(m("10")), "10.00");
        assert_eq!(render(m("0.99520")), "0.9952");
        assert_eq!(render(m("3.0016")), "3.0016");
        assert_eq!(render(m("-2.5")), "-2.50");
    }

    #[test]
    fn documents_round_half_up() {
        assert_eq!(round_document(m("3.0016")), m("3.00"));
        assert_eq!(round_document(m("0.125")), m("0.13"));
        assert_eq!(round_document(m("2.9936")), m("2.99"));
    }
}
