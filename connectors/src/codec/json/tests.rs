//! Tests of the JSON codec: round trips, every refusal path, exact rendered outputs.

use super::*;
use crate::samples::{decimal, every_kind, ts, CODE_WITH_GS};
use markledger_operators::output::{
    AggregateKind, Deletion, Entry, ExportItem, ExportLine, PeriodKey, RefundReason, RAW_BYTES_MAX,
};
use markledger_operators::{Period, Reason, Status};
use std::str::FromStr;

fn refused(decoded: Decoded) -> Rejection {
    match decoded {
        Decoded::Refused(rejection) => rejection,
        Decoded::Event(event) => panic!("expected a refusal, got {event:?}"),
    }
}

fn accepted(decoded: Decoded) -> Event {
    match decoded {
        Decoded::Event(event) => event,
        Decoded::Refused(rejection) => panic!("expected an event, got {rejection:?}"),
    }
}

fn money(text: &str) -> Money {
    Money::from_str(text).unwrap()
}

#[test]
fn every_kind_round_trips() {
    // Encodes each hand-made event of all 11 types, decodes the line, and compares with
    // the original; re-encoding must give the same line byte for byte.
    let events = every_kind();
    let kinds: std::collections::BTreeSet<Kind> = events.iter().map(Event::kind).collect();
    assert_eq!(kinds.len(), Kind::ALL.len(), "the samples cover every type");
    for event in events {
        let line = encode_event(&event);
        assert!(!line.contains('\n'), "one line: {line}");
        let decoded = accepted(decode_event(line.as_bytes()));
        assert_eq!(decoded, event, "line: {line}");
        assert_eq!(encode_event(&decoded), line);
    }
}

#[test]
fn encode_writes_the_interface_example_exactly() {
    // Builds the INTERFACE.md example event and compares encode_event with its text.
    let example = r#"{"id":"st7-000123","type":"application","ts":"2026-01-15T09:30:00+05:00","account":"KZ-940000000017","report":"R-881","codes":["010460123456789321sN3xkQ","010460123456789321sN3xkR"]}"#;
    let event = accepted(decode_event(example.as_bytes()));
    assert_eq!(encode_event(&event), example);
}

#[test]
fn encode_writes_every_type_in_interface_field_order() {
    // Compares encode_event of one event per type with hand-written lines (field order,
    // amounts as strings, GS escaped, act_date as a date, report/reason always present).
    let expected = [
        r#"{"id":"tariff-2026","type":"tariff","ts":"2025-12-20T10:00:00+05:00","account":"*","effective_from":"2026-01-01T00:00:00+05:00","net_price":"2.68","vat_rate":"0.12"}"#,
        r#"{"id":"st7-000001","type":"payment","ts":"2026-01-15T09:00:00.250+05:00","account":"KZ-940000000017","amount":"1000.00","channel":"Halyk Bank"}"#,
        r#"{"id":"op-comp-1","type":"compensation","ts":"2026-01-15T09:00:00+05:00","account":"KZ-940000000017","amount":"15.5","reason":"outage \"INC-7\" \\ сбой сервиса"}"#,
        r#"{"id":"st7-000002","type":"order","ts":"2026-01-15T09:10:00+05:00","account":"KZ-940000000017","order":"ORD-1","gtin":"04601234567893","quantity":3}"#,
        r#"{"id":"st7-000003","type":"order_cancel","ts":"2026-01-15T09:11:00+05:00","account":"KZ-940000000017","order":"ORD-2/отмена"}"#,
        r#"{"id":"st7-000004","type":"emission","ts":"2026-01-15T09:20:00+05:00","account":"KZ-940000000017","order":"ORD-1","gtin":"04601234567893","codes":["0104601234567893215abc\u001d91EE06\u001d92tail","010460123456789321sN3xkQ","x"]}"#,
    ];
    let events = every_kind();
    for (event, expected) in events.iter().zip(expected) {
        assert_eq!(encode_event(event), expected);
    }
    let by_id = |id: &str| events.iter().find(|event| event.id == id).unwrap();
    assert_eq!(
        encode_event(by_id("st7-000125")),
        r#"{"id":"st7-000125","type":"dropout","ts":"2026-01-15T09:40:00+05:00","account":"KZ-940000000017","codes":["0104601234567893215abc\u001d91EE06\u001d92tail"],"reason":""}"#
    );
    assert_eq!(
        encode_event(by_id("st7-000126")),
        r#"{"id":"st7-000126","type":"defect","ts":"2026-01-16T11:00:00+05:00","account":"KZ-940000000017","codes":["010460123456789321sN3xkR"],"act_date":"2026-01-14"}"#
    );
    assert_eq!(
        encode_event(by_id("st7-000127")),
        r#"{"id":"st7-000127","type":"introduction","ts":"2026-01-16T12:00:00+05:00","account":"KZ-940000000017","codes":[]}"#
    );
    assert_eq!(
        encode_event(by_id("st7-000128")),
        r#"{"id":"st7-000128","type":"refund","ts":"2026-02-01T12:00:00+05:00","account":"KZ-940000000017","amount":"-0.01"}"#
    );
}

#[test]
fn invalid_decimal_text_is_written_as_a_string() {
    // Encodes a payment whose amount is DecimalField::Invalid and checks the text is kept
    // as a JSON string, which decodes back to the same Invalid text.
    let mut event = every_kind().swap_remove(1);
    event.body = Body::Payment {
        amount: DecimalField::Invalid("12,50 \"KZT\"".to_owned()),
        channel: "Kaspi".to_owned(),
    };
    let line = encode_event(&event);
    assert!(line.contains(r#""amount":"12,50 \"KZT\"""#), "{line}");
    assert_eq!(accepted(decode_event(line.as_bytes())), event);
}

/// A payment line with `field` replaced by `value` (JSON text), or removed when `None`.
fn payment_with(field: &str, value: Option<&str>) -> String {
    let fields = [
        ("id", r#""p-1""#),
        ("type", r#""payment""#),
        ("ts", r#""2026-01-15T09:00:00+05:00""#),
        ("account", r#""KZ-1""#),
        ("amount", r#""100.00""#),
        ("channel", r#""Kaspi""#),
    ];
    let mut parts = Vec::new();
    for (name, text) in fields {
        if name == field {
            if let Some(value) = value {
                parts.push(format!("\"{name}\":{value}"));
            }
        } else {
            parts.push(format!("\"{name}\":{text}"));
        }
    }
    format!("{{{}}}", parts.join(","))
}

#[test]
fn decimal_fields_keep_what_did_not_parse() {
    // Decodes payments whose amount is each kind of JSON value and checks Parsed for plain
    // decimal strings and Invalid(text) for everything else (the engine says BAD_AMOUNT).
    let cases: &[(&str, DecimalField)] = &[
        (r#""100.00""#, decimal("100.00")),
        (r#""-2.5""#, decimal("-2.5")),
        (r#""+3""#, decimal("3")),
        (r#""\u0031.5""#, decimal("1.5")),
        (r#""0.000""#, decimal("0.000")),
        (r#""abc""#, DecimalField::Invalid("abc".to_owned())),
        (r#""""#, DecimalField::Invalid(String::new())),
        (r#""1e3""#, DecimalField::Invalid("1e3".to_owned())),
        (r#""1_000""#, DecimalField::Invalid("1_000".to_owned())),
        (r#"" 1.00""#, DecimalField::Invalid(" 1.00".to_owned())),
        (r#"".5""#, DecimalField::Invalid(".5".to_owned())),
        (r#""5.""#, DecimalField::Invalid("5.".to_owned())),
        (
            r#""1.00000000000000000000000000001""#,
            DecimalField::Invalid("1.00000000000000000000000000001".to_owned()),
        ),
        ("100.5", DecimalField::Invalid("100.5".to_owned())),
        ("100", DecimalField::Invalid("100".to_owned())),
        ("true", DecimalField::Invalid("true".to_owned())),
        (r#"{"v": 1}"#, DecimalField::Invalid(r#"{"v": 1}"#.to_owned())),
        ("[1]", DecimalField::Invalid("[1]".to_owned())),
    ];
    for (value, expected) in cases {
        let line = payment_with("amount", Some(value));
        let event = accepted(decode_event(line.as_bytes()));
        match event.body {
            Body::Payment { amount, .. } => assert_eq!(&amount, expected, "amount {value}"),
            other => panic!("not a payment: {other:?}"),
        }
    }
}

/// Checks a refusal: reason, readable fields, detail fragment, and for MALFORMED the raw
/// input.
fn assert_refused(line: &str, reason: Reason, event: Option<&str>, event_type: Option<&str>, detail_part: &str) {
    let rejection = refused(decode_event(line.as_bytes()));
    assert_eq!(rejection.reason, reason, "{line}: {rejection:?}");
    assert_eq!(rejection.event.as_deref(), event, "{line}");
    assert_eq!(rejection.event_type.as_deref(), event_type, "{line}");
    assert_eq!(rejection.code, None);
    assert!(
        rejection.detail.contains(detail_part),
        "{line}: detail {:?} lacks {detail_part:?}",
        rejection.detail
    );
    if reason == Reason::Malformed {
        assert_eq!(rejection.raw.as_deref(), Some(line.trim_end_matches('\r')));
    } else {
        assert_eq!(rejection.raw, None);
    }
}

#[test]
fn every_malformed_path_is_refused_with_readable_fields() {
    // Feeds one line per structural fault and checks MALFORMED, the id/type that could be
    // read, a detail naming the fault, and raw = the line.
    let m = Reason::Malformed;
    let p = Some("p-1");
    let pay = Some("payment");
    // Shape.
    assert_refused(r#"{"id":"p-1","#, m, None, None, "not valid JSON");
    assert_refused("{\"id\":\"p-1\"} trailing", m, None, None, "not valid JSON");
    assert_refused("\u{1}garbage", m, None, None, "not valid JSON");
    assert_refused("[1,2]", m, None, None, "not a JSON object");
    assert_refused(r#""just a string""#, m, None, None, "not a JSON object");
    assert_refused("42", m, None, None, "not a JSON object");
    assert_refused("null", m, None, None, "not a JSON object");
    assert_refused(
        r#"{"id":"a","id":"b","type":"payment"}"#,
        m,
        None,
        None,
        "duplicate field",
    );
    // id.
    assert_refused(&payment_with("id", None), m, None, pay, "missing field `id`");
    assert_refused(&payment_with("id", Some("null")), m, None, pay, "missing field `id`");
    assert_refused(
        &payment_with("id", Some("17")),
        m,
        None,
        pay,
        "field `id` is not a string",
    );
    assert_refused(
        &payment_with("id", Some(r#""""#)),
        m,
        Some(""),
        pay,
        "field `id` must be",
    );
    let long_id = format!("\"{}\"", "i".repeat(129));
    let long_id_value = "i".repeat(129);
    assert_refused(
        &payment_with("id", Some(&long_id)),
        m,
        Some(&long_id_value),
        pay,
        "field `id` must be",
    );
    // type.
    assert_refused(&payment_with("type", None), m, p, None, "missing field `type`");
    assert_refused(
        &payment_with("type", Some("[]")),
        m,
        p,
        None,
        "field `type` is not a string",
    );
    // ts.
    assert_refused(&payment_with("ts", None), m, p, pay, "missing field `ts`");
    assert_refused(
        &payment_with("ts", Some(r#""2026-01-15T09:00:00""#)),
        m,
        p,
        pay,
        "field `ts` is not an RFC 3339 timestamp",
    );
    assert_refused(
        &payment_with("ts", Some(r#""15.01.2026 09:00""#)),
        m,
        p,
        pay,
        "field `ts`",
    );
    assert_refused(
        &payment_with("ts", Some("1768449600000")),
        m,
        p,
        pay,
        "field `ts` is not a string",
    );
    // account.
    assert_refused(&payment_with("account", None), m, p, pay, "missing field `account`");
    assert_refused(
        &payment_with("account", Some(r#""KZ 94""#)),
        m,
        p,
        pay,
        "field `account` must be",
    );
    assert_refused(
        &payment_with("account", Some(r#""*""#)),
        m,
        p,
        pay,
        "field `account` must be",
    );
    assert_refused(
        &payment_with("account", Some(r#""""#)),
        m,
        p,
        pay,
        "field `account` must be",
    );
    let tariff = r#"{"id":"t-1","type":"tariff","ts":"2026-01-01T00:00:00+05:00","account":"KZ-1","effective_from":"2026-02-01T00:00:00+05:00","net_price":"2.68","vat_rate":"0.12"}"#;
    assert_refused(tariff, m, Some("t-1"), Some("tariff"), "of a tariff must be \"*\"");
    // order.
    let order = |quantity: &str| {
        format!(
            r#"{{"id":"o-1","type":"order","ts":"2026-01-15T09:00:00+05:00","account":"KZ-1","order":"ORD-1","gtin":"04601234567893","quantity":{quantity}}}"#
        )
    };
    let o = Some("o-1");
    let ord = Some("order");
    assert_refused(&order("0"), m, o, ord, "field `quantity` must be an integer > 0");
    assert_refused(&order("-1"), m, o, ord, "field `quantity` must be an integer > 0");
    assert_refused(&order(r#""3""#), m, o, ord, "field `quantity` must be an integer > 0");
    assert_refused(&order("2.5"), m, o, ord, "field `quantity` must be an integer > 0");
    assert_refused(&order("3.0"), m, o, ord, "field `quantity` must be an integer > 0");
    assert_refused(
        &order("18446744073709551616"),
        m,
        o,
        ord,
        "field `quantity` must be an integer > 0",
    );
    assert_refused(&order("null"), m, o, ord, "missing field `quantity`");
    assert_refused(
        r#"{"id":"o-1","type":"order","ts":"2026-01-15T09:00:00+05:00","account":"KZ-1","order":"","gtin":"04601234567893","quantity":1}"#,
        m,
        o,
        ord,
        "field `order` must be 1–64 characters",
    );
    assert_refused(
        r#"{"id":"o-1","type":"order","ts":"2026-01-15T09:00:00+05:00","account":"KZ-1","order":"ORD-1","quantity":1}"#,
        m,
        o,
        ord,
        "missing field `gtin`",
    );
    assert_refused(
        r#"{"id":"c-1","type":"order_cancel","ts":"2026-01-15T09:00:00+05:00","account":"KZ-1"}"#,
        m,
        Some("c-1"),
        Some("order_cancel"),
        "missing field `order`",
    );
    // codes.
    let application = |codes: &str| {
        format!(
            r#"{{"id":"a-1","type":"application","ts":"2026-01-15T09:00:00+05:00","account":"KZ-1","report":"R-1","codes":{codes}}}"#
        )
    };
    let a = Some("a-1");
    let app = Some("application");
    assert_refused(&application(r#""c1,c2""#), m, a, app, "field `codes` is not an array");
    assert_refused(&application(r#"{"c":1}"#), m, a, app, "field `codes` is not an array");
    assert_refused(
        &application(r#"["c1",2,"c3"]"#),
        m,
        a,
        app,
        "field `codes` element 1 is not a string",
    );
    assert_refused(
        &application(r#"["c1",null]"#),
        m,
        a,
        app,
        "field `codes` element 1 is not a string",
    );
    assert_refused(&application("null"), m, a, app, "missing field `codes`");
    assert_refused(
        r#"{"id":"a-1","type":"application","ts":"2026-01-15T09:00:00+05:00","account":"KZ-1","report":7,"codes":[]}"#,
        m,
        a,
        app,
        "field `report` is not a string",
    );
    // act_date.
    let defect = |act_date: &str| {
        format!(
            r#"{{"id":"d-1","type":"defect","ts":"2026-01-15T09:00:00+05:00","account":"KZ-1","codes":["c1"],"act_date":{act_date}}}"#
        )
    };
    let d = Some("d-1");
    let def = Some("defect");
    for bad in [
        r#""2026-13-01""#,
        r#""2026-02-30""#,
        r#""15.01.2026""#,
        r#""2026-1-5""#,
        r#""2026-01-15T00:00:00+05:00""#,
    ] {
        assert_refused(&defect(bad), m, d, def, "field `act_date` is not a date YYYY-MM-DD");
    }
    assert_refused(&defect("20260115"), m, d, def, "field `act_date` is not a string");
    // amounts and channel.
    assert_refused(&payment_with("amount", None), m, p, pay, "missing field `amount`");
    assert_refused(
        &payment_with("amount", Some("null")),
        m,
        p,
        pay,
        "missing field `amount`",
    );
    assert_refused(&payment_with("channel", None), m, p, pay, "missing field `channel`");
    assert_refused(
        &payment_with("channel", Some(r#""""#)),
        m,
        p,
        pay,
        "field `channel` must be a non-empty string",
    );
    assert_refused(
        &payment_with("channel", Some("1")),
        m,
        p,
        pay,
        "field `channel` is not a string",
    );
    assert_refused(
        r#"{"id":"r-1","type":"refund","ts":"2026-01-15T09:00:00+05:00","account":"KZ-1"}"#,
        m,
        Some("r-1"),
        Some("refund"),
        "missing field `amount`",
    );
    // tariff fields.
    let t = Some("t-1");
    let tar = Some("tariff");
    assert_refused(
        r#"{"id":"t-1","type":"tariff","ts":"2026-01-01T00:00:00+05:00","account":"*","effective_from":"soon","net_price":"2.68","vat_rate":"0.12"}"#,
        m,
        t,
        tar,
        "field `effective_from` is not an RFC 3339 timestamp",
    );
    assert_refused(
        r#"{"id":"t-1","type":"tariff","ts":"2026-01-01T00:00:00+05:00","account":"*","effective_from":"2026-02-01T00:00:00+05:00","vat_rate":"0.12"}"#,
        m,
        t,
        tar,
        "missing field `net_price`",
    );
    // Empty input.
    assert_refused("", m, None, None, "empty record");
    assert_refused("  \r", m, None, None, "empty record");
}

#[test]
fn malformed_keeps_the_account_when_it_is_a_string() {
    // Decodes a payment with a bad ts and checks account is carried; with a numeric
    // account it is not.
    let rejection = refused(decode_event(payment_with("ts", Some(r#""x""#)).as_bytes()));
    assert_eq!(rejection.account.as_deref(), Some("KZ-1"));
    let rejection = refused(decode_event(payment_with("account", Some("5")).as_bytes()));
    assert_eq!(rejection.account, None);
    assert_eq!(rejection.detail, "field `account` is not a string");
}

#[test]
fn unknown_type_keeps_id_type_and_account() {
    // Decodes a well-formed object with type "transfer" and checks UNKNOWN_TYPE with the
    // id, type and account carried, no code and no raw.
    let line = r#"{"id":"x-9","type":"transfer","ts":"not even checked","account":"KZ-77","amount":"5.00"}"#;
    let rejection = refused(decode_event(line.as_bytes()));
    assert_eq!(rejection.reason, Reason::UnknownType);
    assert_eq!(rejection.event.as_deref(), Some("x-9"));
    assert_eq!(rejection.event_type.as_deref(), Some("transfer"));
    assert_eq!(rejection.account.as_deref(), Some("KZ-77"));
    assert_eq!(rejection.code, None);
    assert_eq!(rejection.raw, None);
    assert_eq!(rejection.detail, "unknown event type \"transfer\"");
}

#[test]
fn raw_of_a_long_malformed_line_is_truncated_to_one_kibibyte() {
    // Builds a 5 KiB payment line with a bad ts and checks raw is its first 1024 bytes;
    // with multi-byte padding the cut lands on a char boundary.
    let padding = "x".repeat(5 * 1024);
    let line = format!(
        r#"{{"id":"p-1","type":"payment","ts":"bad","account":"KZ-1","amount":"1.00","channel":"Kaspi","note":"{padding}"}}"#
    );
    let rejection = refused(decode_event(line.as_bytes()));
    assert_eq!(rejection.reason, Reason::Malformed);
    assert_eq!(rejection.event.as_deref(), Some("p-1"));
    let raw = rejection.raw.unwrap();
    assert_eq!(raw.len(), RAW_BYTES_MAX);
    assert_eq!(raw, line[..RAW_BYTES_MAX]);

    let padding = "ж".repeat(3 * 1024);
    let line = format!(r#"{{"id":"p-2","type":"payment","note":"{padding}""#);
    let raw = refused(decode_event(line.as_bytes())).raw.unwrap();
    assert!(raw.len() <= RAW_BYTES_MAX && raw.len() >= RAW_BYTES_MAX - 1);
    assert!(line.starts_with(&raw));
}

#[test]
fn tolerated_variations_still_decode() {
    // Decodes lines with a trailing CR, surrounding spaces, unknown fields, a null free
    // text field, a wrong-typed field the type does not use, and escaped strings.
    let base = payment_with("channel", Some(r#""Kaspi""#));
    let expected = accepted(decode_event(base.as_bytes()));
    let variants = [
        format!("{base}\r"),
        format!("  {base}  "),
        base.replace(r#""channel""#, r#""extra":{"nested":[1,2,{"a":null}]},"channel""#),
        base.replace(r#""channel""#, r#""codes":5,"quantity":"many","order":[],"channel""#),
        base.replace(r#""p-1""#, r#""p\u002d1""#),
    ];
    for line in &variants {
        assert_eq!(accepted(decode_event(line.as_bytes())), expected, "{line}");
    }
    let dropout = r#"{"id":"d\"1","type":"dropout","ts":"2026-01-15T09:00:00Z","account":"KZ-1","codes":["a\u001db"],"reason":null}"#;
    let event = accepted(decode_event(dropout.as_bytes()));
    assert_eq!(event.id, "d\"1");
    assert_eq!(
        event.body,
        Body::Dropout {
            codes: vec!["a\u{1d}b".to_owned()],
            reason: String::new(),
        }
    );
    // Missing report and reason read as "".
    let application =
        r#"{"id":"a-1","type":"application","ts":"2026-01-15T09:00:00+05:00","account":"KZ-1","codes":["c"]}"#;
    match accepted(decode_event(application.as_bytes())).body {
        Body::Application { report, .. } => assert_eq!(report, ""),
        other => panic!("{other:?}"),
    }
}

#[test]
fn no_input_bytes_make_the_decoder_panic() {
    // Decodes every prefix of every sample line and 20,000 deterministic byte mutations of
    // them (a fixed-seed xorshift); success is not panicking and bounded raw.
    let lines: Vec<String> = every_kind().iter().map(encode_event).collect();
    for line in &lines {
        for end in 0..line.len().min(400) {
            let _ = decode_event(&line.as_bytes()[..end]);
        }
    }
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..20_000 {
        let mut bytes = lines[round % lines.len()].clone().into_bytes();
        for _ in 0..1 + next() % 4 {
            let position = (next() % bytes.len() as u64) as usize;
            bytes[position] = (next() % 256) as u8;
        }
        if let Decoded::Refused(rejection) = decode_event(&bytes) {
            assert!(rejection.raw.is_none_or(|raw| raw.len() <= RAW_BYTES_MAX));
        }
    }
}

// ---------------------------------------------------------------------------------------
// Rendering outputs

const ACCOUNT: &str = "KZ-940000000017";

#[test]
fn status_renders_exactly() {
    // Renders a status change with a GS code and an expiry with event null, and compares
    // with hand-written lines.
    let status = Output::Status(StatusChange {
        event: Some("st7-000123".to_owned()),
        account: ACCOUNT.to_owned(),
        gtin: "04601234567893".to_owned(),
        from: Some(Status::Emitted),
        to: Status::AppliedUnpaid,
        ts: ts("2026-01-15T04:30:00Z"),
        late: false,
        codes: vec![CODE_WITH_GS.to_owned(), "b".to_owned()],
    });
    assert_eq!(
        render_output(&status),
        r#"{"event":"st7-000123","account":"KZ-940000000017","gtin":"04601234567893","from":"EMITTED","to":"APPLIED_UNPAID","ts":"2026-01-15T09:30:00+05:00","late":false,"codes":["0104601234567893215abc\u001d91EE06\u001d92tail","b"]}"#
    );
    let emission = Output::Status(StatusChange {
        event: None,
        account: ACCOUNT.to_owned(),
        gtin: "04601234567893".to_owned(),
        from: None,
        to: Status::Emitted,
        ts: ts("2023-03-01T00:00:00.5+06:00"),
        late: true,
        codes: vec![],
    });
    assert_eq!(
        render_output(&emission),
        r#"{"event":null,"account":"KZ-940000000017","gtin":"04601234567893","from":null,"to":"EMITTED","ts":"2023-03-01T00:00:00.500+06:00","late":true,"codes":[]}"#
    );
}

#[test]
fn ledger_renders_exactly() {
    // Renders a late charge (codes settled, an adjustment period) and a payment (codes
    // null) and compares with hand-written lines.
    let charge = Output::Ledger(LedgerEntry {
        account: ACCOUNT.to_owned(),
        entry: Entry::Charge,
        amount: money("3.0016"),
        balance: money("996.99840"),
        ts: ts("2026-01-15T09:30:00+05:00"),
        event: "st7-000123".to_owned(),
        codes: Some(1),
        late: true,
        period: Period::new(2026, 2),
    });
    assert_eq!(
        render_output(&charge),
        r#"{"account":"KZ-940000000017","entry":"charge","amount":"3.0016","balance":"996.9984","ts":"2026-01-15T09:30:00+05:00","event":"st7-000123","codes":1,"late":true,"period":"2026-02"}"#
    );
    let payment = Output::Ledger(LedgerEntry {
        account: ACCOUNT.to_owned(),
        entry: Entry::Payment,
        amount: money("1000"),
        balance: money("1000"),
        ts: ts("2026-01-15T09:00:00+05:00"),
        event: "st7-000001".to_owned(),
        codes: None,
        late: false,
        period: Period::new(2026, 1),
    });
    assert_eq!(
        render_output(&payment),
        r#"{"account":"KZ-940000000017","entry":"payment","amount":"1000.00","balance":"1000.00","ts":"2026-01-15T09:00:00+05:00","event":"st7-000001","codes":null,"late":false,"period":"2026-01"}"#
    );
}

#[test]
fn balance_renders_exactly() {
    // Renders a balance record and compares with a hand-written line.
    let balance = Output::Balance(BalanceRecord {
        account: ACCOUNT.to_owned(),
        balance: money("0.9952"),
        unpaid_codes: 2,
        unpaid_amount: money("6.0032"),
        pending_orders: 1,
        ts: ts("2026-01-15T09:30:00+05:00"),
        rev: 1,
    });
    assert_eq!(
        render_output(&balance),
        r#"{"account":"KZ-940000000017","balance":"0.9952","unpaid_codes":2,"unpaid_amount":"6.0032","pending_orders":1,"ts":"2026-01-15T09:30:00+05:00","rev":1}"#
    );
}

#[test]
fn rejection_renders_exactly() {
    // Renders a per-code refusal (raw null) and a MALFORMED one whose raw needs escaping,
    // and compares with hand-written lines.
    let bad_code = Output::Rejection(Rejection {
        event: Some("st7-000123".to_owned()),
        event_type: Some("application".to_owned()),
        account: Some(ACCOUNT.to_owned()),
        code: Some("c\u{1d}1".to_owned()),
        reason: Reason::UnknownCode,
        detail: "code unknown after 60 s".to_owned(),
        raw: None,
    });
    assert_eq!(
        render_output(&bad_code),
        r#"{"event":"st7-000123","type":"application","account":"KZ-940000000017","code":"c\u001d1","reason":"UNKNOWN_CODE","detail":"code unknown after 60 s","raw":null}"#
    );
    let malformed = Output::Rejection(refused(decode_event(b"{\"id\":\"e1\",\t\"x\":\"\\\\\"")));
    assert_eq!(
        render_output(&malformed),
        r#"{"event":null,"type":null,"account":null,"code":null,"reason":"MALFORMED","detail":"not valid JSON: the input ends before its JSON does, at column 20","raw":"{\"id\":\"e1\",\t\"x\":\"\\\\\""}"#
    );
}

fn period_record(kind: AggregateKind, account: &str, sub: Option<&str>, figures: Figures) -> Output {
    Output::Period(PeriodRecord {
        key: PeriodKey {
            kind,
            account: account.to_owned(),
            period: Period::new(2026, 1),
            sub: sub.map(str::to_owned),
        },
        rev: 3,
        is_final: false,
        figures,
    })
}

#[test]
fn deletions_and_exports_render_exactly() {
    // DOMAIN.md §9 / INTERFACE.md: a deleted key is its key fields, the next rev and
    // "deleted": true; an export line wraps the period record, the closing line counts them.
    let t = Ts::parse_rfc3339("2026-02-15T09:30:00+05:00").unwrap();
    let Output::Period(record) = period_record(
        AggregateKind::Act,
        ACCOUNT,
        None,
        Figures::Act {
            codes_paid: 1,
            net: money("2.68"),
            vat: money("0.3216"),
            gross: money("3.0016"),
        },
    ) else {
        unreachable!()
    };
    let cases = [
        (
            Output::Deleted(Deletion::Balance {
                account: ACCOUNT.to_owned(),
                rev: 7,
                ts: t,
            }),
            OutputFile::Balances,
            r#"{"account":"KZ-940000000017","ts":"2026-02-15T09:30:00+05:00","rev":7,"deleted":true}"#,
        ),
        (
            Output::Deleted(Deletion::Period {
                key: record.key.clone(),
                rev: 4,
            }),
            OutputFile::Periods,
            r#"{"kind":"act","account":"KZ-940000000017","period":"2026-01","sub":null,"rev":4,"final":true,"deleted":true}"#,
        ),
        (
            Output::Export(ExportLine {
                export: "x-1".to_owned(),
                account: ACCOUNT.to_owned(),
                ts: t,
                item: ExportItem::Record { seq: 1, record },
            }),
            OutputFile::Exports,
            r#"{"export":"x-1","account":"KZ-940000000017","ts":"2026-02-15T09:30:00+05:00","seq":1,"record":{"kind":"act","account":"KZ-940000000017","period":"2026-01","sub":null,"rev":3,"final":false,"codes_paid":1,"net":"2.68","vat":"0.3216","gross":"3.0016"}}"#,
        ),
        (
            Output::Export(ExportLine {
                export: "x-1".to_owned(),
                account: ACCOUNT.to_owned(),
                ts: t,
                item: ExportItem::Complete { records: 1 },
            }),
            OutputFile::Exports,
            r#"{"export":"x-1","account":"KZ-940000000017","ts":"2026-02-15T09:30:00+05:00","complete":true,"records":1}"#,
        ),
    ];
    for (output, file, expected) in &cases {
        assert_eq!(render_output(output), *expected);
        assert_eq!(output_file(output), *file);
        serde_json::from_str::<serde_json::Value>(expected).expect("valid JSON");
    }
}

#[test]
fn terminate_and_export_decode_with_no_extra_fields() {
    for (line, body) in [
        (
            r#"{"id":"t1","type":"terminate","ts":"2026-01-15T09:30:00+05:00","account":"KZ-1"}"#,
            Body::Terminate,
        ),
        (
            r#"{"id":"x1","type":"export","ts":"2026-01-15T09:30:00+05:00","account":"KZ-1"}"#,
            Body::Export,
        ),
    ] {
        let Decoded::Event(event) = decode_event(line.as_bytes()) else {
            panic!("refused: {line}")
        };
        assert_eq!(event.body, body);
        assert_eq!(encode_event(&event), line);
    }
}

#[test]
fn periods_render_exactly() {
    // Renders one aggregate of every kind and compares each with a hand-written line:
    // figures in declaration order, money as canonical strings, absent times as null.
    let t = ts("2026-01-15T09:30:00+05:00");
    let cases = [
        (
            period_record(
                AggregateKind::Act,
                ACCOUNT,
                None,
                Figures::Act {
                    codes_paid: 2,
                    net: money("5.36"),
                    vat: money("0.6432"),
                    gross: money("6.0032"),
                },
            ),
            r#"{"kind":"act","account":"KZ-940000000017","period":"2026-01","sub":null,"rev":3,"final":false,"codes_paid":2,"net":"5.36","vat":"0.6432","gross":"6.0032"}"#,
        ),
        (
            period_record(
                AggregateKind::Reconciliation,
                ACCOUNT,
                None,
                Figures::Reconciliation {
                    opening: money("0"),
                    payments: money("1000"),
                    compensations: money("15.5"),
                    services: money("3.0016"),
                    refunds: money("0"),
                    closing: money("1012.4984"),
                },
            ),
            r#"{"kind":"reconciliation","account":"KZ-940000000017","period":"2026-01","sub":null,"rev":3,"final":false,"opening":"0.00","payments":"1000.00","compensations":"15.50","services":"3.0016","refunds":"0.00","closing":"1012.4984"}"#,
        ),
        (
            period_record(
                AggregateKind::Product,
                ACCOUNT,
                Some("04601234567893"),
                Figures::Product {
                    codes_emitted: 3,
                    codes_applied: 1,
                    codes_paid: 0,
                    first_application: Some(t),
                    last_application: None,
                },
            ),
            r#"{"kind":"product","account":"KZ-940000000017","period":"2026-01","sub":"04601234567893","rev":3,"final":false,"codes_emitted":3,"codes_applied":1,"codes_paid":0,"first_application":"2026-01-15T09:30:00+05:00","last_application":null}"#,
        ),
        (
            period_record(
                AggregateKind::Turnover,
                "*",
                None,
                Figures::Turnover {
                    opening: money("1"),
                    charged: money("2"),
                    paid: money("3"),
                    compensations: money("4"),
                    refunds: money("5"),
                    closing: money("1"),
                },
            ),
            r#"{"kind":"turnover","account":"*","period":"2026-01","sub":null,"rev":3,"final":false,"opening":"1.00","charged":"2.00","paid":"3.00","compensations":"4.00","refunds":"5.00","closing":"1.00"}"#,
        ),
        (
            period_record(
                AggregateKind::Debtors,
                ACCOUNT,
                None,
                Figures::Debtors {
                    unpaid_codes: 7,
                    amount_owed: money("21.0112"),
                    oldest_unpaid_application: Some(t),
                },
            ),
            r#"{"kind":"debtors","account":"KZ-940000000017","period":"2026-01","sub":null,"rev":3,"final":false,"unpaid_codes":7,"amount_owed":"21.0112","oldest_unpaid_application":"2026-01-15T09:30:00+05:00"}"#,
        ),
        (
            period_record(
                AggregateKind::Payments,
                "*",
                Some("Halyk \"Bank\"/2026-01-15"),
                Figures::Payments {
                    count: 2,
                    amount: money("1500.5"),
                },
            ),
            r#"{"kind":"payments","account":"*","period":"2026-01","sub":"Halyk \"Bank\"/2026-01-15","rev":3,"final":false,"count":2,"amount":"1500.50"}"#,
        ),
        (
            period_record(
                AggregateKind::Sla,
                ACCOUNT,
                None,
                Figures::Sla {
                    orders: 4,
                    emitted_within_4h: 2,
                    late: 1,
                    pending: 1,
                },
            ),
            r#"{"kind":"sla","account":"KZ-940000000017","period":"2026-01","sub":null,"rev":3,"final":false,"orders":4,"emitted_within_4h":2,"late":1,"pending":1}"#,
        ),
        (
            period_record(
                AggregateKind::RefundDue,
                ACCOUNT,
                None,
                Figures::RefundDue {
                    balance: money("12.3400"),
                    since: t,
                    reason: RefundReason::Termination,
                },
            ),
            r#"{"kind":"refund_due","account":"KZ-940000000017","period":"2026-01","sub":null,"rev":3,"final":false,"balance":"12.34","since":"2026-01-15T09:30:00+05:00","reason":"termination"}"#,
        ),
    ];
    for (output, expected) in &cases {
        assert_eq!(render_output(output), *expected);
    }
    let mut closed = cases[0].0.clone();
    if let Output::Period(record) = &mut closed {
        record.is_final = true;
    }
    assert!(render_output(&closed).contains(r#""rev":3,"final":true,"#));
}

#[test]
fn rendered_outputs_are_valid_json_objects_and_go_to_their_files() {
    // Parses every rendered sample back with serde_json (valid JSON, one object) and
    // checks output_file maps each output kind to its INTERFACE.md file.
    let t = ts("2026-01-15T09:30:00+05:00");
    let outputs = [
        (
            Output::Status(StatusChange {
                event: None,
                account: ACCOUNT.to_owned(),
                gtin: "g".to_owned(),
                from: None,
                to: Status::Emitted,
                ts: t,
                late: false,
                codes: vec!["\u{0}\"\\\n".to_owned()],
            }),
            "status.jsonl",
        ),
        (
            Output::Balance(BalanceRecord {
                account: ACCOUNT.to_owned(),
                balance: money("0"),
                unpaid_codes: 0,
                unpaid_amount: money("0"),
                pending_orders: 0,
                ts: t,
                rev: 1,
            }),
            "balances.jsonl",
        ),
        (
            Output::Rejection(refused(decode_event(b"\xff\xfe"))),
            "rejections.jsonl",
        ),
        (
            period_record(
                AggregateKind::Sla,
                "*",
                None,
                Figures::Sla {
                    orders: 0,
                    emitted_within_4h: 0,
                    late: 0,
                    pending: 0,
                },
            ),
            "periods.jsonl",
        ),
    ];
    for (output, file) in &outputs {
        let line = render_output(output);
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert!(value.is_object());
        assert_eq!(output_file(output).file_name(), *file);
    }
    let ledger = Output::Ledger(LedgerEntry {
        account: ACCOUNT.to_owned(),
        entry: Entry::Refund,
        amount: money("1"),
        balance: money("0"),
        ts: t,
        event: "r".to_owned(),
        codes: None,
        late: false,
        period: Period::new(2026, 1),
    });
    assert_eq!(output_file(&ledger), OutputFile::Ledger);
}

#[test]
fn timestamps_outputs_could_not_print_back_are_malformed() {
    // Regression for the fuzzer's first findings: a `ts` before 1924-05-01T18:52:12Z (Almaty
    // local mean time, printed 12 s off) or whose Almaty time is in year 10000 decoded, but
    // re-encoded as another instant or as text no reader accepts. Both are now MALFORMED,
    // as is such an `effective_from`; the bounds themselves decode and round-trip.
    let line = |ts: &str| {
        format!(r#"{{"id":"p-1","type":"payment","ts":"{ts}","account":"KZ-1","amount":"1.00","channel":"Halyk"}}"#)
    };
    for bad in [
        "1900-01-15T09:00:00+05:00",
        "9999-12-31T23:00:00Z",
        "1924-05-01T18:52:11.999Z",
    ] {
        assert_refused(
            &line(bad),
            Reason::Malformed,
            Some("p-1"),
            Some("payment"),
            "outputs can print",
        );
    }
    for good in ["1924-05-01T18:52:12Z", "9999-12-31T23:59:59.999+05:00"] {
        let event = accepted(decode_event(line(good).as_bytes()));
        assert_eq!(accepted(decode_event(encode_event(&event).as_bytes())), event, "{good}");
    }
    let tariff = r#"{"id":"t-1","type":"tariff","ts":"2026-01-01T00:00:00Z","account":"*","effective_from":"+10000-01-01T00:00:00Z","net_price":"2.68","vat_rate":"0.12"}"#;
    assert_refused(tariff, Reason::Malformed, Some("t-1"), Some("tariff"), "effective_from");
}
