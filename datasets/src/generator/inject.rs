//! Deliberately bad input (`--bad-rate`), built so that its rejections can be predicted
//! exactly.
//!
//! Raw lines (`MALFORMED`, `UNKNOWN_TYPE`) are refused by the decoder whatever the state,
//! move no high-water mark and register no id. `BAD_AMOUNT` payments and compensations are
//! well-formed events the engine refuses whole, and they move no money. Unknown and
//! foreign codes ride inside otherwise normal applications ([`super::sim`] adds them). Each
//! builder here returns one record; the caller counts it.

use super::rng::Rng;
use markledger_operators::event::{Body, DecimalField};
use markledger_operators::{Event, Reason, Ts};
use rust_decimal::Decimal;

/// What one injection does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    /// A raw line the decoder refuses as `MALFORMED`.
    Malformed,
    /// A well-formed object with an unknown `type`.
    UnknownType,
    /// A payment or compensation whose amount is refused.
    BadAmount,
    /// The partition's next application also names codes nobody emitted.
    UnknownCode,
    /// The partition's next application also names codes another account emitted.
    WrongAccount,
    /// An eligible event is re-sent, same id and bytes, 10 s to 50 min later.
    Duplicate,
    /// The partition's next payment or compensation is written out of order.
    Late,
}

impl Category {
    /// Every category, in the order of [`CATEGORY_WEIGHTS`].
    pub const ALL: [Category; 7] = [
        Category::Malformed,
        Category::UnknownType,
        Category::BadAmount,
        Category::UnknownCode,
        Category::WrongAccount,
        Category::Duplicate,
        Category::Late,
    ];

    /// The rejection reason it produces (none for out-of-order writes).
    pub fn reason(self) -> Option<Reason> {
        match self {
            Category::Malformed => Some(Reason::Malformed),
            Category::UnknownType => Some(Reason::UnknownType),
            Category::BadAmount => Some(Reason::BadAmount),
            Category::UnknownCode => Some(Reason::UnknownCode),
            Category::WrongAccount => Some(Reason::WrongAccount),
            Category::Duplicate => Some(Reason::Duplicate),
            Category::Late => None,
        }
    }
}

/// Relative frequency of each category among injections.
pub const CATEGORY_WEIGHTS: [u32; 7] = [3, 2, 2, 2, 2, 3, 3];

/// Types order stations might send that the wire format does not know.
const UNKNOWN_TYPES: [&str; 6] = [
    "transfer",
    "order_update",
    "code_return",
    "aggregation",
    "Payment",
    "invoice",
];

/// Amounts refused with `BAD_AMOUNT`: not a decimal, negative, zero, three decimals, a
/// locale-formatted number.
const BAD_AMOUNTS: [&str; 5] = ["abc", "-5.00", "0", "1.005", "1 500,00"];

/// A raw line the JSON decoder refuses as `MALFORMED`: a cut-off line, a missing required
/// field, a bad timestamp, a zero quantity, a CSV line, an account with a space.
pub fn malformed_line(rng: &mut Rng, id: &str, account: &str, ts: Ts, gtin: &str) -> Vec<u8> {
    let when = ts.render();
    let date = &when[..10];
    let line = match rng.below(7) {
        0 => {
            // A line cut off mid-write: a valid payment missing its tail.
            let whole = format!(
                r#"{{"id":"{id}","type":"payment","ts":"{when}","account":"{account}","amount":"25000.00","channel":"Kaspi Bank"}}"#
            );
            let cut = rng.between(12, whole.len() as u64 - 2) as usize;
            whole[..cut].to_string()
        }
        1 => format!(r#"{{"id":"{id}","type":"application","ts":"{when}","account":"{account}","report":"R-lost"}}"#),
        2 => format!(r#"{{"id":"{id}","type":"payment","ts":"{when}","account":"{account}","amount":"1000.00"}}"#),
        3 => format!(
            r#"{{"id":"{id}","type":"payment","ts":"{date}T25:61:00+05:00","account":"{account}","amount":"1000.00","channel":"Halyk Bank"}}"#
        ),
        4 => format!(
            r#"{{"id":"{id}","type":"order","ts":"{when}","account":"{account}","order":"ORD-ZERO-{id}","gtin":"{gtin}","quantity":0}}"#
        ),
        5 => format!("payment;{account};{date};1500.00;ForteBank"),
        _ => format!(
            r#"{{"id":"{id}","type":"introduction","ts":"{when}","account":"{} ","codes":[]}}"#,
            account.replace('-', " ")
        ),
    };
    line.into_bytes()
}

/// A well-formed object whose `type` is not a known one.
pub fn unknown_type_line(rng: &mut Rng, id: &str, account: &str, ts: Ts) -> Vec<u8> {
    let kind = rng.pick(&UNKNOWN_TYPES);
    let amount = rng.between(1, 500) * 100;
    format!(
        r#"{{"id":"{id}","type":"{kind}","ts":"{}","account":"{account}","amount":"{amount}.00"}}"#,
        ts.render()
    )
    .into_bytes()
}

/// A payment or compensation the engine refuses with `BAD_AMOUNT` (its id is set by the
/// writer).
pub fn bad_amount_event(rng: &mut Rng, account: &str, ts: Ts, channel: &str) -> Event {
    let text = *rng.pick(&BAD_AMOUNTS);
    let amount = match text.parse::<Decimal>() {
        Ok(value) if !text.contains(' ') => DecimalField::Parsed(value),
        _ => DecimalField::Invalid(text.to_string()),
    };
    let body = if rng.chance(0.7) {
        Body::Payment {
            amount,
            channel: channel.to_string(),
        }
    } else {
        Body::Compensation {
            amount,
            reason: "manual correction".to_string(),
        }
    };
    Event {
        id: String::new(),
        ts,
        account: account.to_string(),
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use markledger_connectors::codec::json::{decode_event, encode_event};
    use markledger_connectors::codec::Decoded;
    use markledger_operators::money::check_amount;

    #[test]
    fn raw_lines_are_refused_by_the_decoder_with_their_reason() {
        // Builds 500 lines of each raw category and decodes each with the JSON decoder.
        let mut rng = Rng::new(3);
        let ts = Ts::parse_rfc3339("2026-01-15T09:30:00+05:00").unwrap();
        for n in 0..500 {
            let id = format!("p0-{n:09}");
            let line = malformed_line(&mut rng, &id, "KZ-940000000017", ts, "04870000010013");
            assert!(!line.contains(&b'\n'));
            match decode_event(&line) {
                Decoded::Refused(rejection) => assert_eq!(
                    rejection.reason,
                    Reason::Malformed,
                    "{}",
                    String::from_utf8_lossy(&line)
                ),
                Decoded::Event(event) => panic!("decoded {event:?}"),
            }
            let line = unknown_type_line(&mut rng, &id, "KZ-940000000017", ts);
            match decode_event(&line) {
                Decoded::Refused(rejection) => assert_eq!(rejection.reason, Reason::UnknownType),
                Decoded::Event(event) => panic!("decoded {event:?}"),
            }
        }
    }

    #[test]
    fn bad_amounts_survive_encoding_and_fail_the_amount_check() {
        // Encodes bad-amount events, decodes them back and checks the amount is refused.
        let mut rng = Rng::new(4);
        let ts = Ts::parse_rfc3339("2026-01-15T09:30:00+05:00").unwrap();
        for n in 0..200 {
            let mut event = bad_amount_event(&mut rng, "KZ-940000000017", ts, "Kaspi Bank");
            event.id = format!("p0-{n:09}");
            let Decoded::Event(decoded) = decode_event(encode_event(&event).as_bytes()) else {
                panic!()
            };
            let amount = match &decoded.body {
                Body::Payment { amount, .. } | Body::Compensation { amount, .. } => amount.clone(),
                _ => panic!(),
            };
            match amount {
                DecimalField::Parsed(value) => assert!(check_amount(value).is_err()),
                DecimalField::Invalid(_) => {}
            }
        }
    }
}
