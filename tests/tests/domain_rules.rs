//! One test per rule of DOMAIN.md, named after its section, each with hand-computed
//! expectations, run through the real JSON decoder and the reference engine. Every run
//! also asserts the reconciliation identity and revision order (`run_with`).

use markledger::config::Config;
use markledger_operators::output::{
    AggregateKind, Deletion, Entry, ExportItem, ExportLine, Figures, Output, RefundReason,
};
use markledger_operators::time::Ts;
use markledger_operators::Money;
use markledger_operators::{Reason, Status, WorkingCalendar};
use markledger_tests::*;
use std::collections::{BTreeMap, BTreeSet};

const A: &str = "KZ-A";
const B: &str = "KZ-B";

/// A calendar that holds just what these tests count across (2026 per DOMAIN.md §2), so a
/// correction to the shipped file's transfers cannot move a hand-computed deadline.
const TEST_CALENDAR: &str = "\
range 2025-01-01 2026-12-31
2026-01-01 holiday New Year
2026-01-02 holiday New Year
2026-01-07 holiday Orthodox Christmas
2026-03-08 holiday International Women's Day
2026-03-09 carryover International Women's Day falls on Sunday 2026-03-08
2026-03-21 holiday Nauryz
2026-03-22 holiday Nauryz
2026-03-23 holiday Nauryz
2026-03-24 carryover Nauryz falls on Saturday 2026-03-21
2026-03-25 carryover Nauryz falls on Sunday 2026-03-22
2026-05-01 holiday Unity Day
";

fn config() -> Config {
    Config::with_calendar(WorkingCalendar::parse(TEST_CALENDAR).expect("test calendar"))
}

fn go(lines: Vec<String>) -> Outcome {
    run_with(&config(), &[lines])
}

/// `2026-01-DD` at a local time (UTC+5 in 2026).
fn jan(day_time: &str) -> String {
    format!("2026-01-{day_time}+05:00")
}

fn codes(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix}{i}")).collect()
}

fn refs(codes: &[String]) -> Vec<&str> {
    codes.iter().map(String::as_str).collect()
}

/// An account with an order of `n` codes `c1..cn` emitted at 09:00 on 10 January.
fn emitted(account: &str, n: usize) -> Vec<String> {
    let c = codes(&format!("{account}-c"), n);
    vec![
        order(
            &format!("{account}-o"),
            &jan("10T08:00:00"),
            account,
            &format!("{account}-O1"),
            GTIN,
            n as u64,
        ),
        emission(
            &format!("{account}-e"),
            &jan("10T09:00:00"),
            account,
            &format!("{account}-O1"),
            GTIN,
            &refs(&c),
        ),
    ]
}

// ------------------------------------------------------------------------------ §3 money

#[test]
fn s3_fifo_settlement_worked_example() {
    // The issue's example: balance 10.00 and four codes at 3.0016 → three paid, 0.9952 left,
    // one unpaid; a later payment of 5.00 pays it → 2.9936.
    let mut lines = emitted(A, 4);
    let c = codes("KZ-A-c", 4);
    lines.push(payment("p1", &jan("10T09:30:00"), A, "10.00", "Kaspi Bank"));
    lines.push(application("a1", &jan("10T10:00:00"), A, &refs(&c)));
    lines.push(payment("p2", &jan("10T11:00:00"), A, "5.00", "Kaspi Bank"));
    let out = go(lines);
    let ledger: Vec<_> = out
        .ledger(A)
        .iter()
        .map(|l| (l.entry, l.amount, l.balance, l.event.clone(), l.codes))
        .collect();
    assert_eq!(
        ledger,
        vec![
            (Entry::Payment, dec("10.00"), dec("10.00"), "p1".into(), None),
            (Entry::Charge, dec("9.0048"), dec("0.9952"), "a1".into(), Some(3)),
            (Entry::Payment, dec("5.00"), dec("5.9952"), "p2".into(), None),
            (Entry::Charge, dec("3.0016"), dec("2.9936"), "p2".into(), Some(1)),
        ]
    );
    let changes: Vec<_> = out
        .status_changes()
        .iter()
        .map(|s| (s.event.clone(), s.from, s.to, s.codes.len()))
        .collect();
    assert_eq!(
        changes,
        vec![
            (Some("KZ-A-e".into()), None, Status::Emitted, 4),
            (Some("a1".into()), Some(Status::Emitted), Status::AppliedUnpaid, 1),
            (Some("a1".into()), Some(Status::Emitted), Status::AppliedPaid, 3),
            (Some("p2".into()), Some(Status::AppliedUnpaid), Status::AppliedPaid, 1),
        ]
    );
    assert_eq!(out.status_of("KZ-A-c4"), Some(Status::AppliedPaid));
    assert_eq!(out.balance_figures(A), (dec("2.9936"), 0, dec("0")));
}

#[test]
fn s3_fifo_never_skips_the_head() {
    // Head charged 3.0016 (old tariff); a later code charged 1.12 (net 1.00 + 12 %) after a
    // tariff change. A balance of 2.00 could pay the later code but must not skip the head.
    let mut lines = emitted(A, 2);
    lines.push(tariff("t1", &jan("10T09:10:00"), &jan("10T12:00:00"), "1.00", "0.12"));
    lines.push(application("a1", &jan("10T10:00:00"), A, &["KZ-A-c1"]));
    lines.push(application("a2", &jan("10T12:30:00"), A, &["KZ-A-c2"]));
    lines.push(payment("p1", &jan("10T13:00:00"), A, "2.00", "Halyk Bank"));
    let out = go(lines);
    assert_eq!(out.status_of("KZ-A-c1"), Some(Status::AppliedUnpaid));
    assert_eq!(out.status_of("KZ-A-c2"), Some(Status::AppliedUnpaid));
    assert_eq!(out.balance_figures(A), (dec("2.00"), 2, dec("4.1216")));
    // 1.12 more pays the head (3.12 ≥ 3.0016), leaving 0.1184 < 1.12: the second waits.
    let mut lines2 = emitted(A, 2);
    lines2.push(tariff("t1", &jan("10T09:10:00"), &jan("10T12:00:00"), "1.00", "0.12"));
    lines2.push(application("a1", &jan("10T10:00:00"), A, &["KZ-A-c1"]));
    lines2.push(application("a2", &jan("10T12:30:00"), A, &["KZ-A-c2"]));
    lines2.push(payment("p1", &jan("10T13:00:00"), A, "3.12", "Halyk Bank"));
    let out2 = go(lines2);
    assert_eq!(out2.status_of("KZ-A-c1"), Some(Status::AppliedPaid));
    assert_eq!(out2.status_of("KZ-A-c2"), Some(Status::AppliedUnpaid));
    assert_eq!(out2.balance(A).balance, dec("0.1184"));
}

#[test]
fn s3_tariff_change_mid_month_applies_from_its_instant() {
    // Net 3.00 + 16 % VAT from 15 January 00:00: a code applied before is charged 3.0016,
    // one applied after 3.48; the act splits net and VAT exactly.
    let mut lines = emitted(A, 2);
    lines.push(tariff("t1", &jan("12T10:00:00"), &jan("15T00:00:00"), "3.00", "0.16"));
    lines.push(payment("p1", &jan("10T09:30:00"), A, "100.00", "Kaspi Pay"));
    lines.push(application("a1", &jan("14T23:59:59"), A, &["KZ-A-c1"]));
    lines.push(application("a2", &jan("15T00:00:00"), A, &["KZ-A-c2"]));
    let out = go(lines);
    let charges: Vec<_> = out
        .ledger(A)
        .iter()
        .filter(|l| l.entry == Entry::Charge)
        .map(|l| l.amount)
        .collect();
    assert_eq!(charges, vec![dec("3.0016"), dec("3.48")]);
    let act = out.period(AggregateKind::Act, A, "2026-01", None).expect("act");
    assert_eq!(
        act.figures,
        Figures::Act {
            codes_paid: 2,
            net: dec("5.68"),
            vat: dec("0.8016"),
            gross: dec("6.4816")
        }
    );
}

#[test]
fn s3_tariff_retroactive_is_refused() {
    // A tariff whose effective_from is before its own event's effective time is refused;
    // charges keep the built-in tariff.
    let mut lines = emitted(A, 1);
    lines.push(tariff("t1", &jan("10T09:30:00"), &jan("10T09:00:00"), "5.00", "0.12"));
    lines.push(payment("p1", &jan("10T09:40:00"), A, "10.00", "Kaspi Pay"));
    lines.push(application("a1", &jan("10T10:00:00"), A, &["KZ-A-c1"]));
    let out = go(lines);
    assert_eq!(out.refusals(), vec![(Some("t1"), None, Reason::TariffRetroactive)]);
    assert_eq!(out.balance(A).balance, dec("6.9984"));
}

#[test]
fn s3_amounts_have_at_most_two_decimals() {
    // "1.000" is fine; 1.005, 0, -5.00 and "abc" are BAD_AMOUNT and move no money.
    let lines = vec![
        payment("p1", &jan("10T09:00:00"), A, "1.000", "Kaspi Bank"),
        payment("p2", &jan("10T09:00:01"), A, "1.005", "Kaspi Bank"),
        payment("p3", &jan("10T09:00:02"), A, "0", "Kaspi Bank"),
        compensation("k1", &jan("10T09:00:03"), A, "-5.00"),
        refund("r1", &jan("10T09:00:04"), A, "abc"),
    ];
    let out = go(lines);
    assert_eq!(
        out.refusals(),
        vec![
            (Some("p2"), None, Reason::BadAmount),
            (Some("p3"), None, Reason::BadAmount),
            (Some("k1"), None, Reason::BadAmount),
            (Some("r1"), None, Reason::BadAmount),
        ]
    );
    assert_eq!(out.balance(A).balance, dec("1"));
}

#[test]
fn s3_refund_reasons_in_order_then_accepted() {
    // Refused with the first failing reason: BAD_AMOUNT, REFUND_UNPAID_CODES,
    // REFUND_PENDING_ORDER, REFUND_EXCEEDS_BALANCE; accepted once all pass.
    let c = codes("KZ-A-c", 2);
    let lines = vec![
        payment("p1", &jan("10T07:00:00"), A, "2.00", "Kaspi Bank"),
        order("o1", &jan("10T08:00:00"), A, "O1", GTIN, 3),
        emission("e1", &jan("10T09:00:00"), A, "O1", GTIN, &refs(&c)),
        application("a1", &jan("10T09:10:00"), A, &["KZ-A-c1"]),
        // c1 unpaid (2.00 < 3.0016) and O1 pending (2 of 3 emitted).
        refund("r1", &jan("10T09:20:00"), A, "1.005"),
        refund("r2", &jan("10T09:21:00"), A, "1.00"),
        payment("p2", &jan("10T09:30:00"), A, "10.00", "Kaspi Bank"),
        // c1 paid → balance 8.9984; the order is still pending.
        refund("r3", &jan("10T09:31:00"), A, "1.00"),
        order_cancel("x1", &jan("10T09:40:00"), A, "O1"),
        refund("r4", &jan("10T09:41:00"), A, "9.00"),
        refund("r5", &jan("10T09:42:00"), A, "8.99"),
    ];
    let out = go(lines);
    assert_eq!(
        out.refusals(),
        vec![
            (Some("r1"), None, Reason::BadAmount),
            (Some("r2"), None, Reason::RefundUnpaidCodes),
            (Some("r3"), None, Reason::RefundPendingOrder),
            (Some("r4"), None, Reason::RefundExceedsBalance),
        ]
    );
    let last = *out.ledger(A).last().expect("ledger");
    assert_eq!(
        (last.entry, last.amount, last.balance),
        (Entry::Refund, dec("8.99"), dec("0.0084"))
    );
    assert_eq!(out.balance(A).pending_orders, 0);
}

#[test]
fn s3_compensation_credits_and_settles() {
    // A compensation is a credit like a payment: it settles the FIFO head.
    let mut lines = emitted(A, 1);
    lines.push(application("a1", &jan("10T10:00:00"), A, &["KZ-A-c1"]));
    lines.push(compensation("k1", &jan("10T11:00:00"), A, "5.00"));
    let out = go(lines);
    assert_eq!(out.status_of("KZ-A-c1"), Some(Status::AppliedPaid));
    let ledger: Vec<_> = out.ledger(A).iter().map(|l| (l.entry, l.balance)).collect();
    assert_eq!(
        ledger,
        vec![(Entry::Compensation, dec("5.00")), (Entry::Charge, dec("1.9984"))]
    );
}

#[test]
fn s3_dormant_advance_reported_once_a_year_after() {
    // A payment of 100.00 on 2025-01-10 10:00 (UTC+6 then) and nothing else on the account:
    // when the watermark reaches 2026-01-10 10:00 local it is reported as refund_due, once.
    let lines = vec![
        payment("p1", "2025-01-10T10:00:00+06:00", A, "100.00", "Halyk Bank"),
        payment("q1", "2026-01-10T10:00:00+05:00", B, "1.00", "Halyk Bank"),
        payment("q2", "2026-03-01T10:00:00+05:00", B, "1.00", "Halyk Bank"),
    ];
    let out = go(lines);
    let due: Vec<_> = out
        .period_records()
        .into_iter()
        .filter(|r| r.key.kind == AggregateKind::RefundDue)
        .collect();
    assert_eq!(due.len(), 2, "one revision, then its final one: {due:?}");
    assert_eq!(
        (due[0].key.account.as_str(), due[0].key.period.to_string()),
        (A, "2026-01".to_string())
    );
    assert_eq!(
        due[0].figures,
        Figures::RefundDue {
            balance: dec("100.00"),
            since: markledger_operators::Ts::parse_rfc3339("2025-01-10T10:00:00+06:00").unwrap(),
            reason: RefundReason::Dormant,
        }
    );
    assert!(due[1].is_final);
}

#[test]
fn s3_dormant_advance_of_a_year_old_payment_is_decided_at_once() {
    // A payment of 100.00 made on 2025-01-10 10:00 reaches the pipeline in a partition already
    // at 2026-01-20 10:00, so it takes effect at 09:59:55, over a year after its ts: the year
    // since the account's last payment has passed, and the dormant advance is decided right
    // after the payment, before the refund of 100.00 taking effect at the same instant. So
    // refund_due (balance 100.00, since the payment's ts) is reported once in January 2026,
    // and the refund then empties the balance.
    let lines = vec![
        payment("q1", "2026-01-20T10:00:00+05:00", B, "1.00", "Halyk Bank"),
        payment("p1", "2025-01-10T10:00:00+06:00", A, "100.00", "Halyk Bank"),
        refund("r1", "2025-01-10T10:00:01+06:00", A, "100.00"),
        payment("q2", "2026-01-21T10:00:00+05:00", B, "1.00", "Halyk Bank"),
    ];
    let out = go(lines);
    assert!(out.refusals().is_empty(), "{:?}", out.refusals());
    let due: Vec<_> = out
        .period_records()
        .into_iter()
        .filter(|r| r.key.kind == AggregateKind::RefundDue)
        .map(|r| {
            (
                r.key.account.as_str(),
                r.key.period.to_string(),
                r.rev,
                r.figures.clone(),
            )
        })
        .collect();
    let since = markledger_operators::Ts::parse_rfc3339("2025-01-10T10:00:00+06:00").unwrap();
    assert_eq!(
        due,
        vec![(
            A,
            "2026-01".to_string(),
            1,
            Figures::RefundDue {
                balance: dec("100.00"),
                since,
                reason: RefundReason::Dormant,
            }
        )]
    );
    assert_eq!(out.balance(A).balance, dec("0"));
}

// ------------------------------------------------------------------------------ §2 lifecycle

#[test]
fn s2_dropout_rejects_emitted_codes_and_never_charges() {
    // Dropout EMITTED → REJECTED; a dropped code cannot be applied (terminal).
    let mut lines = emitted(A, 2);
    lines.push(payment("p1", &jan("10T09:30:00"), A, "10.00", "Kaspi Bank"));
    lines.push(dropout("d1", &jan("10T09:40:00"), A, &["KZ-A-c1"]));
    lines.push(application("a1", &jan("10T10:00:00"), A, &["KZ-A-c1", "KZ-A-c2"]));
    let out = go(lines);
    assert_eq!(out.status_of("KZ-A-c1"), Some(Status::Rejected));
    assert_eq!(
        out.refusals(),
        vec![(Some("a1"), Some("KZ-A-c1"), Reason::InvalidTransition)]
    );
    assert_eq!(out.balance(A).balance, dec("6.9984"));
}

#[test]
fn s2_defect_after_payment_keeps_the_charge() {
    // A paid code found defective is ANNULLED; nothing is refunded; it cannot be introduced.
    let mut lines = emitted(A, 1);
    lines.push(payment("p1", &jan("10T09:30:00"), A, "10.00", "Kaspi Bank"));
    lines.push(application("a1", &jan("10T10:00:00"), A, &["KZ-A-c1"]));
    lines.push(defect("f1", &jan("12T10:00:00"), A, "2026-01-11", &["KZ-A-c1"]));
    lines.push(introduction("i1", &jan("12T11:00:00"), A, &["KZ-A-c1"]));
    let out = go(lines);
    assert_eq!(out.status_of("KZ-A-c1"), Some(Status::Annulled));
    assert_eq!(out.balance(A).balance, dec("6.9984"));
    assert_eq!(
        out.refusals(),
        vec![(Some("i1"), Some("KZ-A-c1"), Reason::InvalidTransition)]
    );
}

#[test]
fn s2_defect_of_unpaid_code_stays_in_fifo_and_is_settled() {
    // An unpaid annulled code stays in the queue, counts as unpaid, and is still paid
    // (without a status change) when money arrives.
    let mut lines = emitted(A, 1);
    lines.push(application("a1", &jan("10T10:00:00"), A, &["KZ-A-c1"]));
    lines.push(defect("f1", &jan("10T11:00:00"), A, "2026-01-10", &["KZ-A-c1"]));
    lines.push(payment("p1", &jan("10T12:00:00"), A, "5.00", "Kaspi Bank"));
    let out = go(lines);
    assert_eq!(out.status_of("KZ-A-c1"), Some(Status::Annulled));
    let charge = out
        .ledger(A)
        .into_iter()
        .find(|l| l.entry == Entry::Charge)
        .expect("charged");
    assert_eq!(
        (charge.amount, charge.balance, charge.event.as_str()),
        (dec("3.0016"), dec("1.9984"), "p1")
    );
    assert!(
        out.status_changes().iter().all(|s| s.event.as_deref() != Some("p1")),
        "no status change by p1"
    );
    assert_eq!(out.balance(A).unpaid_codes, 0);
}

#[test]
fn s2_introduction_needs_a_paid_code() {
    // APPLIED_PAID → INTRODUCED; APPLIED_UNPAID is CODE_UNPAID; EMITTED is INVALID_TRANSITION.
    let mut lines = emitted(A, 3);
    lines.push(payment("p1", &jan("10T09:30:00"), A, "4.00", "Kaspi Bank"));
    lines.push(application("a1", &jan("10T10:00:00"), A, &["KZ-A-c1", "KZ-A-c2"]));
    lines.push(introduction(
        "i1",
        &jan("10T11:00:00"),
        A,
        &["KZ-A-c1", "KZ-A-c2", "KZ-A-c3"],
    ));
    let out = go(lines);
    assert_eq!(out.status_of("KZ-A-c1"), Some(Status::Introduced));
    assert_eq!(
        out.refusals(),
        vec![
            (Some("i1"), Some("KZ-A-c2"), Reason::CodeUnpaid),
            (Some("i1"), Some("KZ-A-c3"), Reason::InvalidTransition)
        ]
    );
}

#[test]
fn s2_validation_is_per_code() {
    // A report of 10 codes with one of another account, one unknown-format and one applied
    // twice: 3 refusals, the other 7 codes take effect.
    let mut lines = emitted(A, 8);
    lines.extend(emitted(B, 1));
    let mut report: Vec<String> = codes("KZ-A-c", 8);
    report[7] = "KZ-A-c1".into(); // c1 twice
    report.push("KZ-B-c1".into());
    report.push("bad code".into());
    lines.push(payment("p1", &jan("10T09:30:00"), A, "100.00", "Kaspi Bank"));
    lines.push(application("a1", &jan("10T10:00:00"), A, &refs(&report)));
    let out = go(lines);
    assert_eq!(
        out.refusals(),
        vec![
            (Some("a1"), Some("KZ-A-c1"), Reason::InvalidTransition),
            (Some("a1"), Some("KZ-B-c1"), Reason::WrongAccount),
            (Some("a1"), Some("bad code"), Reason::BadCode),
        ]
    );
    let paid = out
        .status_changes()
        .into_iter()
        .find(|s| s.to == Status::AppliedPaid)
        .expect("paid");
    assert_eq!(paid.codes.len(), 7);
    assert_eq!(out.status_of("KZ-B-c1"), Some(Status::Emitted));
}

#[test]
fn s2_orders_bound_emissions() {
    // UNKNOWN_ORDER (another account's), GTIN_MISMATCH, ORDER_EXCEEDED (refused whole, and
    // on a cancelled order), BAD_GTIN, ALREADY_EXISTS (order id and code), and cancelling a
    // finished order is INVALID_TRANSITION.
    let lines = vec![
        order("o1", &jan("10T08:00:00"), A, "O1", GTIN, 3),
        order("o2", &jan("10T08:00:01"), B, "OB", GTIN, 3),
        order("o3", &jan("10T08:00:02"), A, "O1", GTIN, 5),
        order("o4", &jan("10T08:00:03"), A, "O4", "04601234567894", 5),
        emission("e1", &jan("10T09:00:00"), A, "OB", GTIN, &["x1"]),
        emission("e2", &jan("10T09:00:01"), A, "O1", GTIN2, &["x1"]),
        emission("e3", &jan("10T09:00:02"), A, "O1", GTIN, &["x1", "x2", "x3", "x4"]),
        emission("e4", &jan("10T09:00:03"), A, "O1", GTIN, &["x1", "x2"]),
        emission("e5", &jan("10T09:00:04"), B, "OB", GTIN, &["x2", "y1"]),
        order_cancel("k1", &jan("10T09:00:05"), B, "OB"),
        emission("e6", &jan("10T09:00:06"), B, "OB", GTIN, &["y2"]),
        emission("e7", &jan("10T09:00:07"), A, "O1", GTIN, &["x3"]),
        order_cancel("k2", &jan("10T09:00:08"), A, "O1"),
        order_cancel("k3", &jan("10T09:00:09"), A, "NOPE"),
    ];
    let out = go(lines);
    assert_eq!(
        out.refusals(),
        vec![
            (Some("o3"), None, Reason::AlreadyExists),
            (Some("o4"), None, Reason::BadGtin),
            (Some("e1"), None, Reason::UnknownOrder),
            (Some("e2"), None, Reason::GtinMismatch),
            (Some("e3"), None, Reason::OrderExceeded),
            (Some("e5"), Some("x2"), Reason::AlreadyExists),
            (Some("e6"), None, Reason::OrderExceeded),
            (Some("k2"), None, Reason::InvalidTransition),
            (Some("k3"), None, Reason::UnknownOrder),
        ]
    );
    assert_eq!(out.balance(A).pending_orders, 0);
    assert_eq!(out.balance(B).pending_orders, 0);
}

#[test]
fn s2_refused_codes_of_an_accepted_emission_count_against_its_order() {
    // docs/ARCHITECTURE.md: an emission that passes its whole-event checks counts every code
    // it names against the order. B's order of 2 gets x (taken by A: ALREADY_EXISTS) and y:
    // it is complete, so nothing is pending and a third code exceeds it.
    let lines = vec![
        order("o1", &jan("10T08:00:00"), A, "OA", GTIN, 1),
        order("o2", &jan("10T08:00:00"), B, "OB", GTIN, 2),
        emission("e1", &jan("10T09:00:00"), A, "OA", GTIN, &["x"]),
        emission("e2", &jan("10T09:00:01"), B, "OB", GTIN, &["x", "y"]),
        emission("e3", &jan("10T09:00:02"), B, "OB", GTIN, &["z"]),
    ];
    let out = go(lines);
    assert_eq!(
        out.refusals(),
        vec![
            (Some("e2"), Some("x"), Reason::AlreadyExists),
            (Some("e3"), None, Reason::OrderExceeded)
        ]
    );
    assert_eq!(out.balance(B).pending_orders, 0);
}

#[test]
fn s2_expiry_counts_working_days_across_nauryz() {
    // Emitted Tuesday 10 March 2026. Working days after it: 11,12,13,16,17,18,19,20 (8),
    // then 21–25 are off (weekend + Nauryz 21–23 + carry-overs 24, 25), 26,27 (10),
    // 30,31, Apr 1,2,3 (15), 6–10 (20), 13–17 (25), 20–24 (30): the codes expire at the end
    // of Friday 24 April = 2026-04-25T00:00+05:00. An application one second before takes
    // effect; one at the instant meets an EXPIRED code.
    let c = codes("m", 3);
    let lines = vec![
        payment("p1", "2026-03-01T09:00:00+05:00", A, "100.00", "Kaspi Bank"),
        order("o1", "2026-03-10T08:00:00+05:00", A, "O1", GTIN, 3),
        emission("e1", "2026-03-10T09:00:00+05:00", A, "O1", GTIN, &refs(&c)),
        application("a1", "2026-04-24T23:59:59+05:00", A, &["m1"]),
        application("a2", "2026-04-25T00:00:00+05:00", A, &["m2"]),
    ];
    let out = go(lines);
    assert_eq!(out.status_of("m1"), Some(Status::AppliedPaid));
    assert_eq!(
        out.refusals(),
        vec![(Some("a2"), Some("m2"), Reason::InvalidTransition)]
    );
    let expiry = out
        .status_changes()
        .into_iter()
        .find(|s| s.to == Status::Expired)
        .expect("expiry record");
    assert_eq!(expiry.event, None);
    assert_eq!(expiry.ts.render(), "2026-04-25T00:00:00+05:00");
    assert_eq!(expiry.codes, vec!["m2".to_string(), "m3".to_string()]);
}

#[test]
fn s2_late_emission_past_its_expiry_expires_at_once() {
    // An emission of Tuesday 10 March 2026 whose codes expire at 2026-04-25T00:00+05:00
    // (s2_expiry_counts_working_days_across_nauryz) arrives in its partition after a
    // payment of 27 April 10:00, so it takes effect at 09:59:55 on 27 April, past its expiry.
    // The expiry is decided right after the emission, before anything after it: an
    // application a2 (other partition, 09:59:40) held for m2 is released onto an EXPIRED
    // code, and the late application a1 of m1 at the same instant meets one too
    // (INVALID_TRANSITION both). Nothing is charged; the EXPIRED record carries the instant.
    let c = codes("m", 3);
    let p1 = vec![
        payment("p0", "2026-03-01T09:00:00+05:00", A, "100.00", "Kaspi Bank"),
        order("o1", "2026-03-10T08:00:00+05:00", A, "O1", GTIN, 3),
        payment("p1", "2026-04-27T10:00:00+05:00", B, "1.00", "Kaspi Bank"),
        emission("e1", "2026-03-10T09:00:00+05:00", A, "O1", GTIN, &refs(&c)),
        application("a1", "2026-03-10T10:00:00+05:00", A, &["m1"]),
        payment("p2", "2026-04-27T11:00:00+05:00", B, "1.00", "Kaspi Bank"),
    ];
    let p2 = vec![application("a2", "2026-04-27T09:59:40+05:00", A, &["m2"])];
    let out = run_with(&config(), &[p1, p2]);
    assert_eq!(
        out.refusals(),
        vec![
            (Some("a2"), Some("m2"), Reason::InvalidTransition),
            (Some("a1"), Some("m1"), Reason::InvalidTransition),
        ]
    );
    let changes: Vec<_> = out
        .status_changes()
        .into_iter()
        .map(|s| (s.event.clone(), s.from, s.to, s.ts.render(), s.codes.clone()))
        .collect();
    let instant = "2026-04-27T09:59:55+05:00".to_string();
    assert_eq!(
        changes,
        vec![
            (
                Some("e1".into()),
                None,
                Status::Emitted,
                "2026-03-10T09:00:00+05:00".into(),
                c.clone()
            ),
            (None, Some(Status::Emitted), Status::Expired, instant, c.clone()),
        ]
    );
    assert!(out.ledger(A).iter().all(|l| l.entry != Entry::Charge));
    assert_eq!(out.balance_figures(A), (dec("100.00"), 0, dec("0")));
}

#[test]
fn s2_defect_report_deadline_is_ten_working_days() {
    // Act dated Tuesday 10 March 2026: working days 11,12,13,16,17,18,19,20,26,27 → the
    // report must come before 2026-03-28T00:00+05:00; at that instant it is late (code null).
    let mut lines = vec![
        payment("p1", "2026-03-01T09:00:00+05:00", A, "100.00", "Kaspi Bank"),
        order("o1", "2026-03-10T08:00:00+05:00", A, "O1", GTIN, 2),
        emission("e1", "2026-03-10T09:00:00+05:00", A, "O1", GTIN, &["d1", "d2"]),
        application("a1", "2026-03-10T10:00:00+05:00", A, &["d1", "d2"]),
    ];
    lines.push(defect("f1", "2026-03-27T23:59:59+05:00", A, "2026-03-10", &["d1"]));
    lines.push(defect("f2", "2026-03-28T00:00:00+05:00", A, "2026-03-10", &["d2"]));
    let out = go(lines);
    assert_eq!(out.status_of("d1"), Some(Status::Annulled));
    assert_eq!(out.status_of("d2"), Some(Status::AppliedPaid));
    assert_eq!(out.refusals(), vec![(Some("f2"), None, Reason::DefectReportLate)]);
}

// ------------------------------------------------------------------------------ §4 time and order

#[test]
fn s4_late_event_takes_effect_at_high_water_minus_lateness() {
    // Partition 1: X (5.00 at 10:00:00), then Y (5.00 at 09:59:50, 10 s behind: late) which
    // takes effect at 09:59:55. Partition 2: a code applied at 09:59:53. Y therefore comes
    // after the application and settles it (charge caused by Y, flagged late, ts of Y).
    let p1 = vec![
        payment("X", &jan("10T10:00:00"), A, "5.00", "Kaspi Bank"),
        payment("Y", &jan("10T09:59:50"), A, "5.00", "Kaspi Bank"),
    ];
    let mut p2 = emitted(A, 1);
    p2.push(application("a1", &jan("10T09:59:53"), A, &["KZ-A-c1"]));
    let out = run_with(&config(), &[p1, p2]);
    let ledger: Vec<_> = out
        .ledger(A)
        .iter()
        .map(|l| (l.entry, l.event.as_str(), l.late, l.ts.render(), l.balance))
        .collect();
    assert_eq!(
        ledger,
        vec![
            (
                Entry::Payment,
                "Y",
                true,
                "2026-01-10T09:59:50+05:00".to_string(),
                dec("5.00")
            ),
            (
                Entry::Charge,
                "Y",
                true,
                "2026-01-10T09:59:50+05:00".to_string(),
                dec("1.9984")
            ),
            (
                Entry::Payment,
                "X",
                false,
                "2026-01-10T10:00:00+05:00".to_string(),
                dec("6.9984")
            ),
        ]
    );
    let paid = out
        .status_changes()
        .into_iter()
        .find(|s| s.to == Status::AppliedPaid)
        .expect("paid");
    assert_eq!((paid.event.as_deref(), paid.late), (Some("Y"), true));
}

#[test]
fn s4_same_instant_follows_kind_rank() {
    // A payment and an application at the same ts: payment ranks first, so the
    // application's own settlement pays the code (charge caused by the application).
    let mut lines = emitted(A, 1);
    lines.push(application("a1", &jan("10T10:00:00"), A, &["KZ-A-c1"]));
    lines.push(payment("p1", &jan("10T10:00:00"), A, "5.00", "Kaspi Bank"));
    let out = go(lines);
    let charge = out
        .ledger(A)
        .into_iter()
        .find(|l| l.entry == Entry::Charge)
        .expect("charge");
    assert_eq!(charge.event, "a1");
}

#[test]
fn s4_duplicate_ids_have_no_effect() {
    // A payment re-sent with the same id is credited once and reported DUPLICATE; so is an
    // id reused by another event type.
    let lines = vec![
        payment("p1", &jan("10T10:00:00"), A, "5.00", "Kaspi Bank"),
        payment("p1", &jan("10T10:00:00"), A, "5.00", "Kaspi Bank"),
        refund("p1", &jan("10T10:00:01"), A, "1.00"),
    ];
    let out = go(lines);
    assert_eq!(
        out.refusals(),
        vec![
            (Some("p1"), None, Reason::Duplicate),
            (Some("p1"), None, Reason::Duplicate)
        ]
    );
    assert_eq!(out.balance(A).balance, dec("5.00"));
}

#[test]
fn s4_hold_waits_for_the_emission_and_charges_at_the_commands_tariff() {
    // The application (10:00:00) names a code emitted 30 s later; a new tariff takes effect
    // at 10:00:15. The code takes effect right after its emission, charged 3.0016 (the
    // tariff at the application's ts), and its records carry the application's id and ts.
    let lines = vec![
        payment("p1", &jan("10T09:00:00"), A, "10.00", "Kaspi Bank"),
        order("o1", &jan("10T09:00:01"), A, "O1", GTIN, 1),
        tariff("t1", &jan("10T09:30:00"), &jan("10T10:00:15"), "3.00", "0.12"),
        application("a1", &jan("10T10:00:00"), A, &["h1"]),
        emission("e1", &jan("10T10:00:30"), A, "O1", GTIN, &["h1"]),
    ];
    let out = go(lines);
    assert!(out.refusals().is_empty(), "{:?}", out.refusals());
    let charge = out
        .ledger(A)
        .into_iter()
        .find(|l| l.entry == Entry::Charge)
        .expect("charge");
    assert_eq!((charge.amount, charge.event.as_str()), (dec("3.0016"), "a1"));
    let applied = out
        .status_changes()
        .into_iter()
        .find(|s| s.to == Status::AppliedPaid)
        .expect("applied");
    assert_eq!(
        (applied.event.as_deref(), applied.ts.render()),
        (Some("a1"), "2026-01-10T10:00:00+05:00".to_string())
    );
}

#[test]
fn s4_held_codes_join_the_queue_in_the_commands_order() {
    // The application names h1 then h2, both unknown; one emission creates them as h2, h1.
    // They join the FIFO queue in the report's order (§3), so a payment of one charge pays
    // h1, not h2.
    let lines = vec![
        order("o1", &jan("10T09:00:01"), A, "O1", GTIN, 2),
        application("a1", &jan("10T10:00:00"), A, &["h1", "h2"]),
        emission("e1", &jan("10T10:00:30"), A, "O1", GTIN, &["h2", "h1"]),
        payment("p1", &jan("10T11:00:00"), A, "3.01", "Kaspi Bank"),
    ];
    let out = go(lines);
    assert!(out.refusals().is_empty(), "{:?}", out.refusals());
    assert_eq!(out.status_of("h1"), Some(Status::AppliedPaid));
    assert_eq!(out.status_of("h2"), Some(Status::AppliedUnpaid));
    assert_eq!(out.balance_figures(A), (dec("0.0084"), 1, dec("3.0016")));
}

#[test]
fn s4_hold_ends_unknown_code() {
    // A code not emitted within 60 s is refused UNKNOWN_CODE (the report's other codes take
    // effect at once); a later emission of it does not revive the command. A hold still
    // open when the run ends is refused too. An emission by another account during the hold
    // makes it WRONG_ACCOUNT.
    let mut lines = emitted(A, 1);
    lines.extend(vec![
        order("oB", &jan("10T08:00:00"), B, "OB", GTIN, 2),
        application("a1", &jan("10T10:00:00"), A, &["KZ-A-c1", "u1"]),
        application("a2", &jan("10T10:00:00"), A, &["w1"]),
        emission("eB", &jan("10T10:00:20"), B, "OB", GTIN, &["w1"]),
        emission("eB2", &jan("10T10:01:01"), B, "OB", GTIN, &["u1"]),
        application("a3", &jan("10T11:00:00"), A, &["u2"]),
    ]);
    let out = go(lines);
    assert_eq!(
        out.refusals(),
        vec![
            (Some("a2"), Some("w1"), Reason::WrongAccount),
            (Some("a1"), Some("u1"), Reason::UnknownCode),
            (Some("a3"), Some("u2"), Reason::UnknownCode),
        ]
    );
    assert_eq!(out.status_of("KZ-A-c1"), Some(Status::AppliedUnpaid));
    assert_eq!(out.status_of("u1"), Some(Status::Emitted));
}

#[test]
fn s4_outputs_do_not_depend_on_partitioning() {
    // The same events (none late) split over 1, 2 or 3 partitions give identical outputs.
    // In ts order, so nothing is late whatever the split.
    let (a, b) = (emitted(A, 3), emitted(B, 2));
    let all = vec![
        a[0].clone(),
        b[0].clone(),
        a[1].clone(),
        b[1].clone(),
        payment("p1", &jan("10T09:30:00"), A, "5.00", "Kaspi Bank"),
        payment("p2", &jan("10T09:30:00"), B, "50.00", "Halyk Bank"),
        application("a1", &jan("10T10:00:00"), A, &["KZ-A-c1", "KZ-A-c2"]),
        application("b1", &jan("10T10:00:00"), B, &["KZ-B-c1", "KZ-B-c2"]),
        payment("p3", "2026-02-10T10:00:00+05:00", A, "5.00", "Kaspi Bank"),
    ];
    let one = go(all.clone());
    let (evens, odds): (Vec<_>, Vec<_>) = all.iter().cloned().enumerate().partition(|(i, _)| i % 2 == 0);
    let strip = |v: Vec<(usize, String)>| v.into_iter().map(|(_, l)| l).collect::<Vec<_>>();
    let two = run_with(&config(), &[strip(odds), strip(evens)]);
    let by_account_a: Vec<String> = all.iter().filter(|l| l.contains("\"KZ-A\"")).cloned().collect();
    let by_account_b: Vec<String> = all.iter().filter(|l| !l.contains("\"KZ-A\"")).cloned().collect();
    let three = run_with(&config(), &[by_account_b, vec![], by_account_a]);
    assert!(one.summary.late_events == 0 && two.summary.late_events == 0);
    assert_eq!(one.outputs, two.outputs);
    assert_eq!(one.outputs, three.outputs);
}

// ------------------------------------------------------------------------------ §5 bad input

#[test]
fn s5_malformed_input_is_kept_and_moves_nothing() {
    // A broken line between good ones: its neighbours take effect, its raw bytes are kept,
    // it does not move the partition's high-water mark (a later event 2 s behind the good
    // one is not late) and its id is not registered (the same id later is not DUPLICATE).
    let lines = vec![
        payment("p1", &jan("10T10:00:00"), A, "5.00", "Kaspi Bank"),
        r#"{"id":"p2","type":"payment","ts":"2026-01-10T12:00:00+05:00","account":"KZ A","amount":"1.00","channel":"x"}"#
            .to_string(),
        "this is not json".to_string(),
        r#"{"id":"u1","type":"inventory","ts":"2026-01-10T12:00:00+05:00","account":"KZ-A"}"#.to_string(),
        payment("p2", &jan("10T09:59:58"), A, "1.00", "Kaspi Bank"),
    ];
    let out = go(lines);
    let rejections = out.rejections();
    assert_eq!(
        rejections
            .iter()
            .map(|r| (r.event.as_deref(), r.reason))
            .collect::<Vec<_>>(),
        vec![
            (Some("p2"), Reason::Malformed),
            (None, Reason::Malformed),
            (Some("u1"), Reason::UnknownType)
        ]
    );
    assert_eq!(rejections[1].raw.as_deref(), Some("this is not json"));
    assert_eq!(out.summary.late_events, 0);
    assert_eq!(out.balance(A).balance, dec("6.00"));
}

// ------------------------------------------------------------------------------ §6 periods

/// January for two accounts, February activity, and events past January's close.
fn billing_month() -> Outcome {
    let mut lines = emitted(A, 4);
    let c = codes("KZ-A-c", 4);
    lines.extend(vec![
        payment("p1", &jan("10T09:30:00"), A, "10.00", "Kaspi Bank"),
        application("a1", &jan("10T10:00:00"), A, &refs(&c)),
        payment("p2", &jan("20T11:00:00"), A, "5.00", "Kaspi Bank"),
        payment("q1", &jan("20T12:00:00"), B, "7.00", "Halyk Bank"),
        compensation("k1", &jan("21T12:00:00"), B, "1.00"),
        refund("r1", &jan("22T12:00:00"), B, "3.00"),
        // February: A is short of money at the month's end.
        order("o2", "2026-02-02T09:00:00+05:00", A, "O2", GTIN, 1),
        emission("e2", "2026-02-02T10:00:00+05:00", A, "O2", GTIN, &["f1"]),
        application("a2", "2026-02-03T10:00:00+05:00", A, &["f1"]),
        payment("p3", "2026-03-02T10:00:00+05:00", A, "1.00", "Kaspi Pay"),
        // After February's close (end of 7 March): a January payment arriving late.
        payment("p4", "2026-03-09T10:00:00+05:00", A, "1.00", "Kaspi Pay"),
        payment("p5", "2026-01-31T12:00:00+05:00", A, "2.00", "Kaspi Bank"),
    ]);
    go(lines)
}

#[test]
fn s6_act_and_reconciliation_of_a_month() {
    // January of A: 4 codes paid (3 by a1, 1 by p2): net 10.72, VAT 1.2864, gross
    // 12.0064; reconciliation 0 + 15.00 − 12.0064 = 2.9936, final after 7 February.
    let out = billing_month();
    let act = out.period(AggregateKind::Act, A, "2026-01", None).expect("act");
    assert_eq!(
        act.figures,
        Figures::Act {
            codes_paid: 4,
            net: dec("10.72"),
            vat: dec("1.2864"),
            gross: dec("12.0064")
        }
    );
    assert!(act.is_final);
    let rec = out
        .period(AggregateKind::Reconciliation, A, "2026-01", None)
        .expect("reconciliation");
    assert_eq!(
        rec.figures,
        Figures::Reconciliation {
            opening: dec("0"),
            payments: dec("15.00"),
            compensations: dec("0"),
            services: dec("12.0064"),
            refunds: dec("0"),
            closing: dec("2.9936"),
        }
    );
    assert!(rec.is_final);
    // February opens with January's closing; f1 costs 3.0016 > 2.9936, so nothing is paid.
    let feb = out
        .period(AggregateKind::Reconciliation, A, "2026-02", None)
        .expect("february");
    assert_eq!(
        feb.figures,
        Figures::Reconciliation {
            opening: dec("2.9936"),
            payments: dec("0"),
            compensations: dec("0"),
            services: dec("0"),
            refunds: dec("0"),
            closing: dec("2.9936"),
        }
    );
    let b = out
        .period(AggregateKind::Reconciliation, B, "2026-01", None)
        .expect("B");
    assert_eq!(
        b.figures,
        Figures::Reconciliation {
            opening: dec("0"),
            payments: dec("7.00"),
            compensations: dec("1.00"),
            services: dec("0"),
            refunds: dec("3.00"),
            closing: dec("5.00"),
        }
    );
}

#[test]
fn s6_late_event_into_a_closed_period_is_an_adjustment() {
    // p5 (ts 31 January) takes effect on 9 March, after January and February closed: it is
    // accounted in March (the oldest open period) with its own ts in the ledger; January's
    // figures stay as they were.
    let out = billing_month();
    let p5 = out.ledger(A).into_iter().find(|l| l.event == "p5").expect("p5");
    assert_eq!(
        (p5.period.to_string(), p5.ts.render(), p5.late),
        ("2026-03".into(), "2026-01-31T12:00:00+05:00".into(), true)
    );
    let mar = out
        .period(AggregateKind::Reconciliation, A, "2026-03", None)
        .expect("march");
    // March: opening 2.9936 + 1.00 (p3) + 1.00 (p4) + 2.00 (p5) = 6.9936; f1 (3.0016) paid by p3
    // (2.9936 + 1.00 = 3.9936 ≥ 3.0016).
    assert_eq!(
        mar.figures,
        Figures::Reconciliation {
            opening: dec("2.9936"),
            payments: dec("4.00"),
            compensations: dec("0"),
            services: dec("3.0016"),
            refunds: dec("0"),
            closing: dec("3.992"),
        }
    );
    let jan_payments = out
        .period(AggregateKind::Payments, "*", "2026-01", Some("Kaspi Bank"))
        .expect("register");
    assert_eq!(
        jan_payments.figures,
        Figures::Payments {
            count: 2,
            amount: dec("15.00")
        }
    );
    let adjusted_day = out
        .period(AggregateKind::Payments, "*", "2026-03", Some("Kaspi Bank/2026-01-31"))
        .expect("late day kept");
    assert_eq!(
        adjusted_day.figures,
        Figures::Payments {
            count: 1,
            amount: dec("2.00")
        }
    );
    assert_eq!(out.balance(A).balance, dec("3.992"));
}

#[test]
fn s6_turnover_rows_and_total() {
    // Turnover of January: A opening 0, charged 12.0064, paid 15.00, closing 2.9936; B paid
    // 7.00, compensations 1.00, refunds 3.00, closing 5.00; the "*" row sums them.
    let out = billing_month();
    let total = out
        .period(AggregateKind::Turnover, "*", "2026-01", None)
        .expect("total");
    assert_eq!(
        total.figures,
        Figures::Turnover {
            opening: dec("0"),
            charged: dec("12.0064"),
            paid: dec("22.00"),
            compensations: dec("1.00"),
            refunds: dec("3.00"),
            closing: dec("7.9936"),
        }
    );
    assert!(total.is_final);
}

#[test]
fn s6_debtors_snapshot_at_the_months_end() {
    // At the end of February A owes f1 (3.0016, applied 3 February); at the end of January
    // nobody owed anything.
    let out = billing_month();
    let debtor = out.period(AggregateKind::Debtors, A, "2026-02", None).expect("debtor");
    assert_eq!(
        debtor.figures,
        Figures::Debtors {
            unpaid_codes: 1,
            amount_owed: dec("3.0016"),
            oldest_unpaid_application: markledger_operators::Ts::parse_rfc3339("2026-02-03T10:00:00+05:00"),
        }
    );
    assert!(out.period(AggregateKind::Debtors, A, "2026-01", None).is_none());
}

#[test]
fn s6_product_detail_per_gtin() {
    // January, GTIN of A: 4 emitted, 4 applied, 4 paid, first and last application 10 Jan.
    let out = billing_month();
    let product = out
        .period(AggregateKind::Product, A, "2026-01", Some(GTIN))
        .expect("product");
    let at = markledger_operators::Ts::parse_rfc3339("2026-01-10T10:00:00+05:00");
    assert_eq!(
        product.figures,
        Figures::Product {
            codes_emitted: 4,
            codes_applied: 4,
            codes_paid: 4,
            first_application: at,
            last_application: at
        }
    );
}

#[test]
fn s6_emission_sla() {
    // Three orders at 09:00: one emitted in full at 10:00 (within 4 h), one emitted at
    // exactly 13:00 (the deadline fires first: late), one never emitted (late and pending).
    let lines = vec![
        order("o1", &jan("10T09:00:00"), A, "O1", GTIN, 1),
        order("o2", &jan("10T09:00:00"), A, "O2", GTIN, 1),
        order("o3", &jan("10T09:00:00"), A, "O3", GTIN, 1),
        emission("e1", &jan("10T10:00:00"), A, "O1", GTIN, &["s1"]),
        emission("e2", &jan("10T13:00:00"), A, "O2", GTIN, &["s2"]),
        payment("p1", &jan("11T10:00:00"), B, "1.00", "Kaspi Bank"),
    ];
    let out = go(lines);
    let sla = out.period(AggregateKind::Sla, A, "2026-01", None).expect("sla");
    assert_eq!(
        sla.figures,
        Figures::Sla {
            orders: 3,
            emitted_within_4h: 1,
            late: 2,
            pending: 1
        }
    );
    assert!(!sla.is_final);
}

#[test]
fn s6_late_order_past_its_deadline_is_late_at_once() {
    // An order station's upload arrives hours late: after a payment at 14:00 (the partition's
    // high-water), orders o1 (09:00) and o2 (09:30) take effect at 13:59:55, after their
    // 4-hour deadlines (13:00, 13:30); o3 (11:00) takes effect then too, before its deadline
    // (15:00). The deadlines already passed are decided right after each order, before the
    // events after it at that instant: o1's emission e1 (ts 09:40, also at 13:59:55) finds o1
    // late, not "emitted within 4 h". Expected SLA revisions, one per instant: 13:59:55
    // orders 3, within 0, late 2 (o1, o2), pending 2 (o2, o3); 14:30 (e3 completes o3 in
    // time) within 1, pending 1; 15:00:01 (e2 completes o2) pending 0.
    let lines = vec![
        payment("p1", &jan("10T14:00:00"), B, "1.00", "Kaspi Bank"),
        order("o1", &jan("10T09:00:00"), A, "O1", GTIN, 1),
        emission("e1", &jan("10T09:40:00"), A, "O1", GTIN, &["s1"]),
        order("o2", &jan("10T09:30:00"), A, "O2", GTIN, 1),
        order("o3", &jan("10T11:00:00"), A, "O3", GTIN, 1),
        emission("e3", &jan("10T14:30:00"), A, "O3", GTIN, &["s3"]),
        emission("e2", &jan("10T15:00:01"), A, "O2", GTIN, &["s2"]),
        payment("p2", &jan("11T10:00:00"), B, "1.00", "Kaspi Bank"),
    ];
    let out = go(lines);
    assert!(out.refusals().is_empty(), "{:?}", out.refusals());
    let sla = |orders, emitted_within_4h, late, pending| Figures::Sla {
        orders,
        emitted_within_4h,
        late,
        pending,
    };
    let revisions: Vec<_> = out
        .period_records()
        .into_iter()
        .filter(|r| r.key.kind == AggregateKind::Sla && r.key.account == A)
        .map(|r| (r.rev, r.figures.clone()))
        .collect();
    assert_eq!(
        revisions,
        vec![(1, sla(3, 0, 2, 2)), (2, sla(3, 1, 2, 1)), (3, sla(3, 1, 2, 0))]
    );
    // Every record is revised at most once per instant: one balance record per change too.
    let pending: Vec<_> = out
        .outputs
        .iter()
        .filter_map(|o| match o {
            markledger_operators::Output::Balance(b) if b.account == A => Some((b.rev, b.pending_orders)),
            _ => None,
        })
        .collect();
    assert_eq!(pending, vec![(1, 2), (2, 1), (3, 0)]);
}

// ------------------------------------------------------------------------------ §7 retention

#[test]
fn s7_final_code_refused_alike_before_and_after_the_index_learns_it() {
    // A dropped code (REJECTED, final) is answered by its account until the national index
    // learns it is final (`FINALITY_DELAY_MS` later in a run without checkpoints), then by
    // the index. Commands just after the dropout, just before and at the handover, and hours
    // later are refused alike, and `run_with` holds the dataflow to the reference on every
    // record, wording included.
    let delay = markledger::dataflow::FINALITY_DELAY_MS;
    let dropped = Ts::parse_rfc3339(&jan("10T10:00:00")).expect("ts");
    let at = |millis: i64| dropped.plus_millis(millis).render();
    let lines = vec![
        order("o1", &jan("10T08:00:00"), A, "O1", GTIN, 1),
        emission("e1", &jan("10T09:00:00"), A, "O1", GTIN, &["r1"]),
        dropout("d1", &jan("10T10:00:00"), A, &["r1"]),
        application("a1", &at(1_000), A, &["r1"]),
        application("a2", &at(delay - 1), A, &["r1"]),
        application("a3", &at(delay), A, &["r1"]),
        introduction("i1", &at(delay + 5 * 3_600_000), A, &["r1"]),
    ];
    let out = go(lines);
    let refused: Vec<_> = out
        .rejections()
        .iter()
        .map(|r| (r.event.as_deref(), r.reason, r.detail.as_str()))
        .collect();
    assert_eq!(
        refused,
        vec![
            (
                Some("a1"),
                Reason::InvalidTransition,
                "application is not allowed from REJECTED"
            ),
            (
                Some("a2"),
                Reason::InvalidTransition,
                "application is not allowed from REJECTED"
            ),
            (
                Some("a3"),
                Reason::InvalidTransition,
                "application is not allowed from REJECTED"
            ),
            (
                Some("i1"),
                Reason::InvalidTransition,
                "introduction is not allowed from REJECTED"
            ),
        ]
    );
    assert_eq!(out.status_of("r1"), Some(Status::Rejected));
}

#[test]
fn s7_final_codes_are_compacted_after_retention() {
    // With a one-day retention, a dropped code is forgotten a day later: its code string
    // can be emitted again.
    let mut config = config();
    config.retention_ms = 24 * 3_600_000;
    let lines = vec![
        order("o1", &jan("10T08:00:00"), A, "O1", GTIN, 3),
        emission("e1", &jan("10T09:00:00"), A, "O1", GTIN, &["r1"]),
        dropout("d1", &jan("10T10:00:00"), A, &["r1"]),
        emission("e2", &jan("11T09:00:00"), A, "O1", GTIN, &["r1"]),
        emission("e3", &jan("12T10:00:01"), A, "O1", GTIN, &["r1"]),
    ];
    let out = run_with(&config, &[lines]);
    assert_eq!(out.refusals(), vec![(Some("e2"), Some("r1"), Reason::AlreadyExists)]);
    assert_eq!(out.status_of("r1"), Some(Status::Emitted));
}

// ------------------------------------------------------------------------------ every reason

#[test]
fn s5_every_reason_code_is_produced() {
    // One run with one case per reason of DOMAIN.md §3 and §5 (and BAD_CODE): the set of
    // reasons produced must be exactly Reason::ALL, so a reason added without a case fails.
    let mut lines = emitted(A, 3);
    lines.extend(emitted(B, 1));
    lines.extend(vec![
        "{not json".to_string(),
        r#"{"id":"u1","type":"inventory","ts":"2026-01-10T09:00:00+05:00","account":"KZ-A"}"#.to_string(),
        tariff("t1", &jan("10T09:10:00"), &jan("10T09:00:00"), "3.00", "0.12"),
        payment("p0", &jan("10T09:20:00"), A, "0.001", "Kaspi Bank"),
        payment("p1", &jan("10T09:30:00"), A, "4.00", "Kaspi Bank"),
        payment("p1", &jan("10T09:30:00"), A, "4.00", "Kaspi Bank"),
        order("o1", &jan("10T09:31:00"), A, "KZ-A-O1", GTIN, 1),
        order("o2", &jan("10T09:32:00"), A, "O2", "12345678901234", 1),
        order("o3", &jan("10T09:33:00"), A, "O3", GTIN, 1),
        emission("e1", &jan("10T09:34:00"), A, "KZ-B-O1", GTIN, &["z1"]),
        emission("e2", &jan("10T09:35:00"), A, "O3", GTIN2, &["z1"]),
        emission("e3", &jan("10T09:36:00"), A, "O3", GTIN, &["z1", "z2"]),
        refund("r1", &jan("10T09:37:00"), A, "1.00"),
        application(
            "a1",
            &jan("10T10:00:00"),
            A,
            &["KZ-A-c1", "KZ-A-c2", "KZ-B-c1", "no space", "ghost"],
        ),
        refund("r2", &jan("10T10:01:00"), A, "1.00"),
        introduction("i1", &jan("10T10:02:00"), A, &["KZ-A-c2", "KZ-A-c3"]),
        defect("f1", &jan("10T10:03:00"), A, "2025-12-01", &["KZ-A-c1"]),
        emission("e4", &jan("10T10:04:00"), A, "O3", GTIN, &["KZ-A-c1"]),
        payment("p2", &jan("10T10:05:00"), B, "9.00", "Kaspi Bank"),
        order_cancel("k1", &jan("10T10:05:30"), B, "KZ-B-O1"),
        refund("r3", &jan("10T10:06:00"), B, "10.00"),
        payment("p9", "9999-01-01T00:00:00Z", B, "1.00", "Kaspi Bank"),
        payment("q1", &jan("10T10:07:00"), B, "1.00", "Kaspi Bank"),
    ]);
    // INTERNAL_ERROR comes only from stream mode's quarantine (poison pills).
    let mut config = config();
    config.quarantine = std::sync::Arc::new([("q1".to_string(), "a stage failed twice".to_string())].into());
    let out = run_with(&config, &[lines]);
    let produced: std::collections::BTreeSet<Reason> = out.rejections().iter().map(|r| r.reason).collect();
    // §9's reasons have their own run (s9_every_reason_of_s9_is_produced).
    let all: std::collections::BTreeSet<Reason> = Reason::ALL.into_iter().filter(|r| !S9_REASONS.contains(r)).collect();
    assert_eq!(
        produced,
        all,
        "missing: {:?}",
        all.difference(&produced).collect::<Vec<_>>()
    );
}

// ------------------------------------------------------- §9 termination, export, deletion
//
// Every §9 test runs the reference engine, then the dataflow on 1, 2 and 4 workers, and
// requires the same records in the same per-key order (`both_engines`).

/// The reasons DOMAIN.md §9 adds.
const S9_REASONS: [Reason; 5] = [
    Reason::AccountTerminated,
    Reason::TerminationUnpaidCodes,
    Reason::TerminationPendingOrder,
    Reason::ExportNotTerminated,
    Reason::ExportOutOfWindow,
];

#[test]
fn s9_every_reason_of_s9_is_produced() {
    // One case per §9 reason in one run (the other reasons: s5_every_reason_code_is_produced).
    let mut lines = vec![terminate("t3", &jan("01T10:00:00"), "KZ-D")];
    lines.extend(emitted(A, 1));
    lines.extend([
        application("a1", &jan("10T10:00:00"), A, &["KZ-A-c1"]),
        terminate("t1", &jan("10T11:00:00"), A),
        order("o2", &jan("10T11:00:00"), B, "O2", GTIN, 1),
        terminate("t2", &jan("10T12:00:00"), B),
        export("x1", &jan("10T12:00:00"), "KZ-C"),
        export("x2", "2026-02-01T10:00:00+05:00", "KZ-D"),
        terminate("t4", "2026-02-01T10:00:01+05:00", "KZ-D"),
    ]);
    let out = go9(lines);
    let produced: BTreeSet<Reason> = out.rejections().iter().map(|r| r.reason).collect();
    assert_eq!(produced, S9_REASONS.into_iter().collect::<BTreeSet<_>>());
}

fn go9(lines: Vec<String>) -> Outcome {
    both_engines(&config(), lines)
}

/// The reference engine's outcome, after checking that the dataflow on 1, 2 and 4 workers
/// gives the same records (as a multiset) in the same order per key, and that the
/// reference's records have no anomaly (revisions in order, deletions after the key).
fn both_engines(config: &Config, lines: Vec<String>) -> Outcome {
    let partitions = [lines];
    let outcome = run_reference_only(config, &partitions);
    let reference = markledger_tests::compare::canonical(&outcome.outputs);
    assert!(reference.anomalies.is_empty(), "{:#?}", reference.anomalies);
    let expected = multiset(&outcome.outputs);
    let decoded: Vec<Vec<_>> = partitions
        .iter()
        .map(|lines| {
            lines
                .iter()
                .map(|l| markledger_connectors::codec::json::decode_event(l.as_bytes()))
                .collect()
        })
        .collect();
    for workers in [1, 2, 4] {
        let outputs = markledger::runtime::run(config, decoded.clone(), workers);
        let actual = multiset(&outputs);
        if actual != expected {
            let missing: Vec<_> = expected.iter().filter(|l| !actual.contains(l)).take(8).collect();
            let extra: Vec<_> = actual.iter().filter(|l| !expected.contains(l)).take(8).collect();
            panic!("dataflow on {workers} workers differs from the reference:\nmissing {missing:#?}\nextra {extra:#?}");
        }
        let dataflow = markledger_tests::compare::canonical(&outputs);
        let differences = markledger_tests::compare::diff_strict(&reference, &dataflow, "reference", "dataflow");
        assert!(
            differences.is_empty(),
            "dataflow on {workers} workers orders records differently:\n{}",
            differences.join("\n")
        );
    }
    outcome
}

fn at(text: &str) -> Ts {
    Ts::parse_rfc3339(text).expect("rfc3339")
}

/// A with 100.00 paid, three codes emitted on 10 January and the first applied (and paid)
/// on the 12th: balance 96.9984, two codes still EMITTED.
fn account_with_history() -> Vec<String> {
    let mut lines = vec![payment("p1", &jan("10T07:00:00"), A, "100.00", "Halyk Bank")];
    lines.extend(emitted(A, 3));
    lines.push(application("a1", &jan("12T10:00:00"), A, &["KZ-A-c1"]));
    lines
}

fn refund_due_of(out: &Outcome, account: &str, period: &str) -> Option<Figures> {
    out.period(AggregateKind::RefundDue, account, period, None)
        .map(|r| r.figures.clone())
}

#[test]
fn s9_terminate_expires_emitted_codes_and_reports_the_balance_owed_back() {
    // Terminate at 15 Jan 10:00: the two EMITTED codes expire, caused by the terminate (its
    // ts, not late, one record per GTIN, emission order); the balance 96.9984 is owed back:
    // refund_due (reason termination, since T) in January. No money moves.
    let mut lines = account_with_history();
    lines.push(terminate("t1", &jan("15T10:00:00"), A));
    let out = go9(lines);
    assert!(out.refusals().is_empty(), "{:?}", out.refusals());
    let expired: Vec<_> = out
        .status_changes()
        .into_iter()
        .filter(|s| s.to == Status::Expired)
        .collect();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].event.as_deref(), Some("t1"));
    assert_eq!(expired[0].from, Some(Status::Emitted));
    assert_eq!(expired[0].ts, at(&jan("15T10:00:00")));
    assert!(!expired[0].late);
    assert_eq!(expired[0].codes, vec!["KZ-A-c2", "KZ-A-c3"]);
    assert_eq!(
        refund_due_of(&out, A, "2026-01"),
        Some(Figures::RefundDue {
            balance: dec("96.9984"),
            since: at(&jan("15T10:00:00")),
            reason: RefundReason::Termination,
        })
    );
    assert_eq!(out.balance_figures(A), (dec("96.9984"), 0, Money::ZERO));
    assert!(out.ledger(A).iter().all(|l| l.entry != Entry::Refund));
}

#[test]
fn s9_terminate_expires_one_record_per_gtin() {
    // Codes of two products emitted on two orders: one EXPIRED record per GTIN.
    let mut lines = emitted(A, 2);
    lines.push(order("o2", &jan("10T08:00:00"), A, "O2", GTIN2, 1));
    lines.push(emission("e2", &jan("10T09:30:00"), A, "O2", GTIN2, &["KZ-A-d1"]));
    lines.push(terminate("t1", &jan("15T10:00:00"), A));
    let out = go9(lines);
    let expired: Vec<(String, Vec<String>)> = out
        .status_changes()
        .into_iter()
        .filter(|s| s.to == Status::Expired)
        .map(|s| (s.gtin.clone(), s.codes.clone()))
        .collect();
    assert_eq!(expired.len(), 2, "{expired:?}");
    assert!(expired.contains(&(GTIN.to_string(), vec!["KZ-A-c1".to_string(), "KZ-A-c2".to_string()])));
    assert!(expired.contains(&(GTIN2.to_string(), vec!["KZ-A-d1".to_string()])));
}

#[test]
fn s9_terminate_refusals_in_order() {
    // Unpaid codes and a pending order: TERMINATION_UNPAID_CODES first. Once paid, the
    // pending order: TERMINATION_PENDING_ORDER. Once cancelled, accepted; a second terminate
    // is ACCOUNT_TERMINATED. Every refusal is one record with code null.
    let mut lines = emitted(A, 1);
    lines.push(application("a1", &jan("11T10:00:00"), A, &["KZ-A-c1"]));
    lines.push(order("o2", &jan("11T11:00:00"), A, "O2", GTIN, 5));
    lines.push(terminate("t1", &jan("12T10:00:00"), A));
    lines.push(payment("p1", &jan("13T10:00:00"), A, "10.00", "Halyk Bank"));
    lines.push(terminate("t2", &jan("14T10:00:00"), A));
    lines.push(order_cancel("c2", &jan("15T10:00:00"), A, "O2"));
    lines.push(terminate("t3", &jan("16T10:00:00"), A));
    lines.push(terminate("t4", &jan("17T10:00:00"), A));
    let out = go9(lines);
    assert_eq!(
        out.refusals(),
        vec![
            (Some("t1"), None, Reason::TerminationUnpaidCodes),
            (Some("t2"), None, Reason::TerminationPendingOrder),
            (Some("t4"), None, Reason::AccountTerminated),
        ]
    );
}

#[test]
fn s9_terminate_of_an_account_never_seen_is_accepted() {
    // Nothing to expire, nothing owed: no output but a later refusal proves it took effect.
    let lines = vec![
        terminate("t1", &jan("15T10:00:00"), A),
        payment("p1", &jan("16T10:00:00"), A, "5.00", "Halyk Bank"),
    ];
    let out = go9(lines);
    assert_eq!(out.reasons(), vec![(Some("p1"), Reason::AccountTerminated)]);
    assert!(out.period_records().is_empty());
}

#[test]
fn s9_after_termination_only_refund_and_export_pass() {
    // After T every event of A is ACCOUNT_TERMINATED, one record with code null even for an
    // event naming codes; a refund follows §3's rules; B's command on A's code stays
    // WRONG_ACCOUNT; A's events before T at T's instant take effect first (rank order).
    let mut lines = account_with_history();
    lines.push(terminate("t1", &jan("15T10:00:00"), A));
    lines.push(payment("p2", &jan("15T10:00:00"), A, "1.00", "Halyk Bank"));
    lines.push(application("a2", &jan("16T10:00:00"), A, &["KZ-A-c2", "KZ-A-c3"]));
    lines.push(order("o9", &jan("16T10:00:00"), A, "O9", GTIN, 1));
    lines.push(refund("r0", &jan("17T10:00:00"), A, "200.00"));
    lines.push(refund("r1", &jan("17T11:00:00"), A, "50.00"));
    lines.push(export("x1", &jan("18T10:00:00"), A));
    lines.push(application("b1", &jan("18T10:00:00"), B, &["KZ-A-c1"]));
    let out = go9(lines);
    assert_eq!(
        out.refusals(),
        vec![
            (Some("o9"), None, Reason::AccountTerminated),
            (Some("a2"), None, Reason::AccountTerminated),
            (Some("r0"), None, Reason::RefundExceedsBalance),
            (Some("b1"), Some("KZ-A-c1"), Reason::WrongAccount),
        ]
    );
    // p2 took effect at T before the terminate (payment ranks first): owed back with it.
    assert_eq!(
        refund_due_of(&out, A, "2026-01"),
        Some(Figures::RefundDue {
            balance: dec("97.9984"),
            since: at(&jan("15T10:00:00")),
            reason: RefundReason::Termination,
        })
    );
    let refunds: Vec<_> = out.ledger(A).into_iter().filter(|l| l.entry == Entry::Refund).collect();
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0].balance, dec("47.9984"));
}

#[test]
fn s9_export_refusals_and_window() {
    // An export before termination: EXPORT_NOT_TERMINATED. A terminated on 31 January
    // 10:00: the window is [31 Jan 10:00, 28 Feb 10:00) (no 31 February): 28 Feb 09:59:59
    // is in; at 10:00 the account is deleted (D = T + 1 month, later than January's close)
    // and the export is ACCOUNT_TERMINATED. B terminated on 1 January 10:00: the window
    // ends 1 Feb 10:00, before January closes (8 Feb 00:00 = D): EXPORT_OUT_OF_WINDOW.
    let lines = vec![
        terminate("tb", &jan("01T10:00:00"), B),
        export("x0", &jan("20T10:00:00"), A),
        terminate("t1", &jan("31T10:00:00"), A),
        export("y1", "2026-02-01T09:59:59+05:00", B),
        export("y2", "2026-02-01T10:00:00+05:00", B),
        export("x1", "2026-02-28T09:59:59+05:00", A),
        export("x2", "2026-02-28T10:00:00+05:00", A),
    ];
    let out = go9(lines);
    assert_eq!(
        out.reasons(),
        vec![
            (Some("x0"), Reason::ExportNotTerminated),
            (Some("y2"), Reason::ExportOutOfWindow),
            (Some("x2"), Reason::AccountTerminated),
        ]
    );
    // x1 was accepted; its delivery (at its own effective time: January closed on 8 Feb) is
    // made at once. y1 is delivered at January's close.
    let x1: Vec<&ExportLine> = out.exports().into_iter().filter(|l| l.account == A).collect();
    assert!(x1
        .iter()
        .all(|l| l.export == "x1" && l.ts == at("2026-02-28T09:59:59+05:00")));
    assert!(matches!(
        x1.last().map(|l| &l.item),
        Some(ExportItem::Complete { records: 0 })
    ));
    let y1: Vec<&ExportLine> = out.exports().into_iter().filter(|l| l.account == B).collect();
    assert!(y1
        .iter()
        .all(|l| l.export == "y1" && l.ts == at("2026-02-08T00:00:00+05:00")));
    assert_eq!(y1.len(), 1);
}

#[test]
fn s9_export_delivers_final_records_at_the_close_in_order() {
    // Terminated 15 Jan, export requested 20 Jan: delivered when January closes (end of
    // 7 Feb = 8 Feb 00:00): every final record of A for January and the 36 months before,
    // sorted by (period, kind name, sub), seq from 1, each carrying the delivery instant,
    // then the count. A second request is a second full delivery. Nothing of "*".
    let mut lines = vec![payment("p0", "2025-12-20T10:00:00+05:00", A, "10.00", "Kaspi")];
    lines.extend(account_with_history());
    lines.push(terminate("t1", &jan("15T10:00:00"), A));
    lines.push(export("x1", &jan("20T10:00:00"), A));
    lines.push(export("x2", &jan("21T10:00:00"), A));
    lines.push(payment("q1", "2026-02-10T10:00:00+05:00", B, "1.00", "Kaspi"));
    let out = go9(lines);
    assert!(out.refusals().is_empty(), "{:?}", out.refusals());
    let close = at("2026-02-08T00:00:00+05:00");
    let exports = out.exports();
    let x1: Vec<&ExportLine> = exports.iter().copied().filter(|l| l.export == "x1").collect();
    let x2: Vec<&ExportLine> = exports.iter().copied().filter(|l| l.export == "x2").collect();
    assert!(x1.iter().chain(&x2).all(|l| l.ts == close && l.account == A));
    let keys: Vec<String> = x1
        .iter()
        .filter_map(|l| match &l.item {
            ExportItem::Record { record, .. } => Some(record.key.render()),
            ExportItem::Complete { .. } => None,
        })
        .collect();
    assert_eq!(
        keys,
        vec![
            "reconciliation/KZ-A/2025-12",
            "turnover/KZ-A/2025-12",
            "act/KZ-A/2026-01",
            &format!("product/KZ-A/2026-01/{GTIN}"),
            "reconciliation/KZ-A/2026-01",
            "refund_due/KZ-A/2026-01",
            "sla/KZ-A/2026-01",
            "turnover/KZ-A/2026-01",
        ],
        "{x1:#?}"
    );
    for (index, line) in x1.iter().enumerate() {
        match &line.item {
            ExportItem::Record { seq, record } => {
                assert_eq!(*seq, index as u64 + 1);
                assert!(record.is_final);
                // As it stands: the final revision the periods output has for that key.
                let latest = out.latest_periods()[&record.key.render()].clone();
                assert_eq!(&latest, record);
            }
            ExportItem::Complete { records } => {
                assert_eq!(index, x1.len() - 1);
                assert_eq!(*records, 8);
            }
        }
    }
    let strip = |lines: &[&ExportLine]| -> Vec<ExportItem> { lines.iter().map(|l| l.item.clone()).collect() };
    assert_eq!(strip(&x1), strip(&x2), "each request gets a full delivery");
    // x1's lines all come before x2's (requests in the order they took effect).
    let position = |id: &str| exports.iter().position(|l| l.export == id).unwrap();
    assert!(position("x1") < position("x2"));
}

#[test]
fn s9_export_reaches_back_36_months_only() {
    // Records of A from December 2022 (37 months before January 2026) are not exported;
    // January 2023 (36 months before) is. The calendar of these tests starts in 2025, so
    // the shipped one is used.
    let lines = vec![
        payment("p0", "2022-12-10T10:00:00+06:00", A, "10.00", "Kaspi"),
        refund("r0", "2022-12-11T10:00:00+06:00", A, "10.00"),
        payment("p1", "2023-01-10T10:00:00+06:00", A, "10.00", "Kaspi"),
        refund("r1", "2023-01-11T10:00:00+06:00", A, "10.00"),
        terminate("t1", &jan("15T10:00:00"), A),
        export("x1", &jan("16T10:00:00"), A),
        payment("q1", "2026-02-10T10:00:00+05:00", B, "1.00", "Kaspi"),
    ];
    let out = both_engines(&default_config(), lines);
    let periods: BTreeSet<String> = out
        .exports()
        .into_iter()
        .filter_map(|l| match &l.item {
            ExportItem::Record { record, .. } => Some(record.key.period.to_string()),
            ExportItem::Complete { .. } => None,
        })
        .collect();
    assert_eq!(periods.first().map(String::as_str), Some("2023-01"), "{periods:?}");
    assert!(!periods.contains("2022-12"));
}

#[test]
fn s9_deletion_a_month_after_termination() {
    // T = 15 Jan 10:00, January closes 8 Feb 00:00, D = 15 Feb 10:00. At D: a deletion of
    // A's balance key (next rev) and of every period key A ever had (next rev each),
    // February's carried rows included; "*" rows stay. After D: A's refund and export are
    // ACCOUNT_TERMINATED, A writes no balance record, A's codes stay known (B's command is
    // WRONG_ACCOUNT, B's emission of one ALREADY_EXISTS).
    let mut lines = account_with_history();
    lines.push(terminate("t1", &jan("15T10:00:00"), A));
    lines.push(payment("q1", "2026-02-10T10:00:00+05:00", B, "1.00", "Kaspi"));
    lines.push(refund("r1", "2026-02-15T10:00:00+05:00", A, "1.00"));
    lines.push(export("x1", "2026-02-15T10:00:00+05:00", A));
    lines.push(order("ob", "2026-02-16T09:00:00+05:00", B, "OB", GTIN, 1));
    lines.push(emission("eb", "2026-02-16T10:00:00+05:00", B, "OB", GTIN, &["KZ-A-c1"]));
    lines.push(application("ab", "2026-02-16T11:00:00+05:00", B, &["KZ-A-c2"]));
    lines.push(payment("q2", "2026-03-10T10:00:00+05:00", B, "1.00", "Kaspi"));
    let out = go9(lines);
    assert_eq!(
        out.refusals(),
        vec![
            (Some("r1"), None, Reason::AccountTerminated),
            (Some("x1"), None, Reason::AccountTerminated),
            (Some("eb"), Some("KZ-A-c1"), Reason::AlreadyExists),
            (Some("ab"), Some("KZ-A-c2"), Reason::WrongAccount),
        ]
    );
    let d = at("2026-02-15T10:00:00+05:00");
    let last_balance_rev = out.balances(A).last().unwrap().rev;
    let deletions = out.deletions();
    assert!(deletions.iter().all(|d| d.account() == A), "{deletions:?}");
    assert!(deletions.contains(&&Deletion::Balance {
        account: A.to_string(),
        rev: last_balance_rev + 1,
        ts: d,
    }));
    // Every key A ever had is deleted, with the rev after its last.
    let mut produced: BTreeMap<String, u64> = BTreeMap::new();
    for record in out.period_records().into_iter().filter(|r| r.key.account == A) {
        produced.insert(record.key.render(), record.rev);
    }
    let deleted: BTreeMap<String, u64> = deletions
        .iter()
        .filter_map(|d| match d {
            Deletion::Period { key, rev } => Some((key.render(), *rev)),
            Deletion::Balance { .. } => None,
        })
        .collect();
    let expected: BTreeMap<String, u64> = produced.iter().map(|(k, rev)| (k.clone(), rev + 1)).collect();
    assert_eq!(deleted, expected);
    assert!(
        deleted.contains_key("reconciliation/KZ-A/2026-02"),
        "carried month: {deleted:?}"
    );
    // Nothing of A after the deletion, and no balance record after it.
    let position = out
        .outputs
        .iter()
        .position(|o| matches!(o, Output::Deleted(_)))
        .unwrap();
    assert!(out.outputs[position..].iter().all(|o| match o {
        Output::Balance(b) => b.account != A,
        Output::Period(p) => p.key.account != A,
        _ => true,
    }));
}

#[test]
fn s9_star_rows_keep_the_share_up_to_the_deletion_period() {
    // A's 96.9984 is in the "*" turnover of January and February (D's period) and no longer
    // carried into March. Closed periods are not revised by the deletion.
    let mut lines = account_with_history();
    lines.push(terminate("t1", &jan("15T10:00:00"), A));
    lines.push(payment("q1", "2026-02-10T10:00:00+05:00", B, "1.00", "Kaspi"));
    lines.push(payment("q2", "2026-03-10T10:00:00+05:00", B, "2.00", "Kaspi"));
    let out = go9(lines);
    let star = |period: &str| match out
        .period(AggregateKind::Turnover, "*", period, None)
        .map(|r| r.figures.clone())
    {
        Some(Figures::Turnover { opening, closing, .. }) => (opening, closing),
        other => panic!("{other:?}"),
    };
    assert_eq!(star("2026-02"), (dec("96.9984"), dec("97.9984")));
    assert_eq!(star("2026-03"), (dec("1.00"), dec("3.00")));
    let januarys: Vec<_> = out
        .period_records()
        .into_iter()
        .filter(|r| r.key.render() == "turnover/*/2026-01")
        .collect();
    assert!(januarys.last().unwrap().is_final);
}

#[test]
fn s9_no_dormant_advance_after_termination_and_termination_replaces_dormant() {
    // A paid on 10 Jan 2025; the dormant advance fires 10 Jan 2026 (reason dormant); the
    // termination on 15 Jan replaces that record (same key, reason termination). Another
    // account terminated with money a year before nothing else: no dormant record follows.
    let lines = vec![
        payment("p1", "2025-01-10T10:00:00+06:00", A, "100.00", "Kaspi"),
        payment("p2", "2025-02-10T10:00:00+06:00", B, "50.00", "Kaspi"),
        terminate("tb", "2025-02-11T10:00:00+06:00", B),
        terminate("t1", &jan("15T10:00:00"), A),
        payment("q1", "2026-02-20T10:00:00+05:00", "KZ-C", "1.00", "Kaspi"),
    ];
    let out = go9(lines);
    let revisions: Vec<Figures> = out
        .period_records()
        .into_iter()
        .filter(|r| r.key.render() == "refund_due/KZ-A/2026-01")
        .map(|r| r.figures.clone())
        .collect();
    assert!(matches!(
        revisions.first(),
        Some(Figures::RefundDue {
            reason: RefundReason::Dormant,
            ..
        })
    ));
    assert_eq!(
        revisions.last(),
        Some(&Figures::RefundDue {
            balance: dec("100.00"),
            since: at(&jan("15T10:00:00")),
            reason: RefundReason::Termination,
        })
    );
    let b_due: Vec<_> = out
        .period_records()
        .into_iter()
        .filter(|r| r.key.kind == AggregateKind::RefundDue && r.key.account == B)
        .map(|r| r.key.period.to_string())
        .collect();
    assert!(b_due.iter().all(|p| p == "2025-02"), "{b_due:?}");
}

#[test]
fn s9_nothing_due_after_the_end_of_a_file_run_is_made() {
    // The run ends (largest ts) before January closes: no delivery, no deletion.
    let mut lines = account_with_history();
    lines.push(terminate("t1", &jan("15T10:00:00"), A));
    lines.push(export("x1", &jan("20T10:00:00"), A));
    let out = go9(lines);
    assert!(out.exports().is_empty());
    assert!(out.deletions().is_empty());
}

#[test]
fn s9_decision_deletion_at_the_close_emits_the_final_revision_first() {
    // Decision (docs/ARCHITECTURE.md): T = 1 Jan 00:00 and periods close 27 days into the
    // next month, so January closes 28 Feb 00:00, after T + 1 month (1 Feb): D is the close.
    // At D the close's final revisions of A's January records are emitted first, then the
    // deletions (the rev after them); an export due at D carries those final revisions.
    let mut config = config();
    config.close_after_days = 27;
    let lines = vec![
        payment("p1", &jan("01T00:00:00"), A, "10.00", "Kaspi"),
        terminate("t1", &jan("01T00:00:00"), A),
        export("x1", &jan("02T00:00:00"), A),
        payment("q1", "2026-03-02T10:00:00+05:00", B, "1.00", "Kaspi"),
    ];
    let out = both_engines(&config, lines);
    let d = at("2026-02-28T00:00:00+05:00");
    let exported: Vec<_> = out
        .exports()
        .into_iter()
        .filter_map(|l| match &l.item {
            ExportItem::Record { record, .. } => Some((l.ts, record.clone())),
            ExportItem::Complete { .. } => None,
        })
        .collect();
    assert!(!exported.is_empty());
    for (ts, record) in &exported {
        assert_eq!(*ts, d);
        assert!(record.is_final);
        let key = record.key.render();
        let revisions: Vec<u64> = out
            .period_records()
            .into_iter()
            .filter(|r| r.key.render() == key)
            .map(|r| r.rev)
            .collect();
        assert_eq!(revisions.last(), Some(&record.rev), "{key}");
        let deletion = out.deletions().into_iter().find_map(|d| match d {
            Deletion::Period { key: k, rev } if k.render() == key => Some(*rev),
            _ => None,
        });
        assert_eq!(deletion, Some(record.rev + 1), "{key}");
    }
}

#[test]
fn s9_the_dataflow_gate_refuses_an_emission_after_termination_before_it_makes_codes() {
    // The gate (operators/src/gate.rs) refuses a terminated account's emission before the
    // national index sees it: A's emission 1 ms after T is ACCOUNT_TERMINATED (not
    // UNKNOWN_ORDER, not a code), and B can then emit the same code. Both engines, 1/2/4
    // workers.
    let lines = vec![
        payment("p1", &jan("10T10:00:00"), A, "5.00", "Kaspi"),
        terminate("t1", &jan("15T10:00:00"), A),
        emission("e1", "2026-01-15T10:00:00.001+05:00", A, "OA", GTIN, &["X1"]),
        order("ob", &jan("15T10:00:10"), B, "OB", GTIN, 1),
        emission("eb", &jan("15T10:00:20"), B, "OB", GTIN, &["X1"]),
    ];
    let out = go9(lines);
    assert_eq!(out.reasons(), vec![(Some("e1"), Reason::AccountTerminated)]);
    let emitted: Vec<&str> = out
        .outputs
        .iter()
        .filter_map(|o| match o {
            Output::Status(s) if s.to == Status::Emitted => Some(s.account.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(emitted, vec![B]);
}

#[test]
fn s9_decision_the_termination_is_forgotten_a_retention_horizon_after_deletion() {
    // Decision (docs/ARCHITECTURE.md): DOMAIN.md §9 keeps "that the account was terminated"
    // for the retention horizon after D, and not before the end of D's period (so no period
    // key of the old account is made again); after it the id is a new account, whose
    // balance records continue the old key's revisions. With a 1-day horizon: D = 15 Feb
    // 10:00; payments on 16 Feb and 28 Feb 23:59 are ACCOUNT_TERMINATED; one on 1 March
    // opens a new balance: 2.00 with the rev after the deletion's (rev 1, deletion 2, now 3).
    let mut config = config();
    config.retention_ms = 24 * 60 * 60 * 1000;
    config.dedup_horizon_ms = config.retention_ms;
    let lines = vec![
        payment("p1", &jan("10T10:00:00"), A, "5.00", "Kaspi"),
        terminate("t1", &jan("15T10:00:00"), A),
        payment("p2", "2026-02-16T09:00:00+05:00", A, "1.00", "Kaspi"),
        payment("p3", "2026-02-28T23:59:00+05:00", A, "1.00", "Kaspi"),
        payment("p4", "2026-03-01T00:00:00+05:00", A, "2.00", "Kaspi"),
    ];
    let out = both_engines(&config, lines);
    assert_eq!(
        out.reasons(),
        vec![
            (Some("p2"), Reason::AccountTerminated),
            (Some("p3"), Reason::AccountTerminated)
        ]
    );
    let last = out.balance(A);
    assert_eq!((last.balance, last.rev), (dec("2.00"), 3));
    let canonical = markledger_tests::compare::canonical(&out.outputs);
    assert!(canonical.anomalies.is_empty(), "{:#?}", canonical.anomalies);
}

#[test]
fn s9_decision_held_codes_of_a_command_before_termination_resolve_as_section_8_says() {
    // Decision (docs/ARCHITECTURE.md): A's application of two unknown codes at 09:59:50 is
    // held; A terminates at 10:00 (held codes are not in its queue: accepted). B then emits
    // one of them at 10:00:20: A's held code is refused WRONG_ACCOUNT (it is B's); the other
    // is never emitted: UNKNOWN_CODE at the hold's end. Neither is ACCOUNT_TERMINATED: the
    // command took effect before the contract ended.
    let lines = vec![
        application("a1", &jan("15T09:59:50"), A, &["X1", "Y1"]),
        terminate("t1", &jan("15T10:00:00"), A),
        order("ob", &jan("15T10:00:10"), B, "OB", GTIN, 1),
        emission("eb", &jan("15T10:00:20"), B, "OB", GTIN, &["X1"]),
        payment("q1", &jan("15T11:00:00"), B, "1.00", "Kaspi"),
    ];
    let out = go9(lines);
    let mut refusals = out.refusals();
    refusals.sort();
    assert_eq!(
        refusals,
        vec![
            (Some("a1"), Some("X1"), Reason::WrongAccount),
            (Some("a1"), Some("Y1"), Reason::UnknownCode),
        ]
    );
}
