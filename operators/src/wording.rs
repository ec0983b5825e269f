//! The words of every rejection detail, written once for both engines (the decisions to
//! refuse stay written twice: the reference must stay independent of the dataflow). Details
//! are for people at order stations and support: values quoted as they came, never Rust's
//! debug text; programs match on the reason, never on these words.

use crate::event::Kind;
use crate::status::Status;
use crate::time::Ts;
use std::fmt::Display;

/// `DUPLICATE`: the id was first seen at `first`.
pub fn duplicate(first: Ts) -> String {
    format!("event id already seen at {first}")
}

/// `BAD_GTIN`.
pub fn bad_gtin(gtin: &str) -> String {
    format!("\"{gtin}\" is not a GTIN-14 with a valid check digit")
}

/// `BAD_CODE`.
pub fn bad_code() -> String {
    "not 1–128 printable ASCII characters".into()
}

/// `ALREADY_EXISTS` of an order id.
pub fn order_exists(order: &str) -> String {
    format!("order \"{order}\" already exists")
}

/// `ALREADY_EXISTS` of a code.
pub fn code_exists() -> String {
    "code exists".into()
}

/// `UNKNOWN_ORDER`.
pub fn unknown_order(order: &str) -> String {
    format!("account has no order \"{order}\"")
}

/// `INVALID_TRANSITION` of an order cancel.
pub fn order_finished(order: &str) -> String {
    format!("order \"{order}\" is already finished")
}

/// `GTIN_MISMATCH`.
pub fn gtin_mismatch(order: &str, order_gtin: &str, gtin: &str) -> String {
    format!("order \"{order}\" is for GTIN {order_gtin}, emission is for {gtin}")
}

/// `ORDER_EXCEEDED`.
pub fn order_exceeded(codes: usize, remaining: u64, order: &str) -> String {
    format!("{codes} codes exceed the {remaining} remaining on order \"{order}\"")
}

/// `UNKNOWN_CODE`: a held command's code was not emitted before its hold ended.
pub fn unknown_code(hold_end: Ts) -> String {
    format!("code was not emitted within the hold ending {hold_end}")
}

/// `WRONG_ACCOUNT`.
pub fn wrong_account() -> String {
    "code belongs to another account".into()
}

/// `CODE_UNPAID`.
pub fn code_unpaid() -> String {
    "the code's charge is not paid yet".into()
}

/// `INVALID_TRANSITION` of a code command.
pub fn invalid_transition(kind: Kind, from: Status) -> String {
    format!("{} is not allowed from {}", kind.as_str(), from.as_str())
}

/// `REFUND_UNPAID_CODES`.
pub fn refund_unpaid_codes(codes: usize) -> String {
    format!("{codes} codes are unpaid")
}

/// `REFUND_PENDING_ORDER`.
pub fn refund_pending_orders(orders: u64) -> String {
    format!("{orders} orders are pending")
}

/// `REFUND_EXCEEDS_BALANCE`.
pub fn refund_exceeds_balance(amount: impl Display, balance: impl Display) -> String {
    format!("refund {amount} exceeds balance {balance}")
}

/// `ACCOUNT_TERMINATED`: the account's contract ended at `terminated`; after `deleted` its
/// data is gone too (DOMAIN.md §9).
pub fn account_terminated(terminated: Ts, deleted: Option<Ts>) -> String {
    match deleted {
        Some(deleted) => format!("the account was terminated at {terminated} and deleted at {deleted}"),
        None => format!("the account was terminated at {terminated}"),
    }
}

/// `TERMINATION_UNPAID_CODES`.
pub fn termination_unpaid_codes(codes: usize) -> String {
    format!("{codes} codes are unpaid")
}

/// `TERMINATION_PENDING_ORDER`.
pub fn termination_pending_orders(orders: u64) -> String {
    format!("{orders} orders are pending")
}

/// `EXPORT_NOT_TERMINATED`.
pub fn export_not_terminated() -> String {
    "the account is not terminated: an export is made only after termination".to_string()
}

/// `EXPORT_OUT_OF_WINDOW`: the window is `[from, to)`.
pub fn export_out_of_window(from: Ts, to: Ts) -> String {
    format!("an export is accepted from {from} until before {to}")
}

/// Fragments of Rust's debug formatting that must not appear outside quoted values.
pub const DEBUG_FRAGMENTS: [&str; 16] = [
    "{",
    "}",
    "Some(",
    "None",
    "Ok(",
    "Err(",
    "Parsed(",
    "Invalid(",
    "Utf8",
    "UnexpectedEnd",
    "additional",
    "inner",
    "Error",
    "::",
    "Custom",
    "kind:",
];

/// `Ok` when `detail` has no debug formatting outside its quoted values ("…" in Rust's
/// string quoting, as the decoders write a preview of bad input, and `…` in backquotes, as
/// field names and serde_json's expected characters are written). Every test of details
/// uses this one check: the decoders', the engines', the fuzzers'.
pub fn for_people(detail: &str) -> Result<(), String> {
    let mut outside = String::new();
    let mut chars = detail.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                // A Rust-quoted value: skip to its closing quote, over escapes.
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
                outside.push_str("<quoted>");
            }
            '`' => {
                for c in chars.by_ref() {
                    if c == '`' {
                        break;
                    }
                }
                outside.push_str("<quoted>");
            }
            c => outside.push(c),
        }
    }
    match DEBUG_FRAGMENTS.iter().find(|fragment| outside.contains(**fragment)) {
        Some(fragment) => Err(format!("{fragment:?} in detail {detail:?}")),
        None if detail.is_empty() => Err("empty detail".to_owned()),
        None => Ok(()),
    }
}
