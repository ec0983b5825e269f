//! Tests of the file connectors: listing, format detection, reading in order through bad
//! records, writer/reader equivalence across formats, and the five output files.

use super::*;
use crate::codec::binary::{encode_record, split_frames, BinaryRecord, MAGIC, MAGIC_V1};
use crate::codec::json::{encode_event, render_output};
use crate::codec::Decoded;
use crate::samples::{every_kind, ts, TempDir};
use markledger_operators::output::{AggregateKind, Figures, PeriodKey, PeriodRecord};
use markledger_operators::output::{BalanceRecord, Entry, LedgerEntry, Rejection, StatusChange};
use markledger_operators::{Output, Period, Reason, Status};
use std::fs;
use std::path::{Path, PathBuf};

fn read_partition(path: &std::path::Path) -> (Format, Vec<Decoded>, u64) {
    let mut reader = PartitionReader::open(path).unwrap();
    assert_eq!(
        reader.format(),
        None,
        "nothing is read before the first record is asked for"
    );
    assert!(!reader.holds_file());
    let decoded: Vec<Decoded> = reader.by_ref().collect();
    assert!(reader.io_error().is_none());
    assert!(!reader.holds_file(), "the file is closed at its end");
    assert_eq!(reader.buffer_capacity(), 0, "the buffer is freed at the end");
    (reader.format().unwrap(), decoded, reader.bytes_read())
}

fn reason(decoded: &Decoded) -> Option<Reason> {
    match decoded {
        Decoded::Event(_) => None,
        Decoded::Refused(rejection) => Some(rejection.reason),
    }
}

#[test]
fn list_partitions_sorts_and_skips_hidden_files_and_the_manifest() {
    // Fills a directory with files, a hidden file, manifest.json and a subdirectory, and
    // checks the listing: regular files only, sorted by name, after a file given first.
    let dir = TempDir::new("list");
    let inputs = dir.join("inputs");
    fs::create_dir(&inputs).unwrap();
    for name in ["p10.jsonl", "p02.bin", ".hidden.jsonl", "manifest.json", "P01.jsonl"] {
        fs::write(inputs.join(name), b"").unwrap();
    }
    fs::create_dir(inputs.join("nested")).unwrap();
    fs::write(inputs.join("nested").join("deep.jsonl"), b"").unwrap();
    let single = dir.join("single.jsonl");
    fs::write(&single, b"").unwrap();

    let listed = list_partitions(&[single.clone(), inputs.clone()]).unwrap();
    let expected: Vec<PathBuf> = vec![
        single,
        inputs.join("P01.jsonl"),
        inputs.join("p02.bin"),
        inputs.join("p10.jsonl"),
    ];
    assert_eq!(listed, expected);

    let empty = dir.join("empty");
    fs::create_dir(&empty).unwrap();
    assert_eq!(list_partitions(&[empty]).unwrap(), Vec::<PathBuf>::new());
}

#[test]
fn missing_paths_are_reported_not_panicked() {
    // Lists and opens a path that does not exist, and opens a directory, checking the
    // error variants and that their messages name the path.
    let dir = TempDir::new("missing");
    let missing = dir.join("nope.jsonl");
    let error = list_partitions(std::slice::from_ref(&missing)).unwrap_err();
    assert!(matches!(error, SourceError::Missing { .. }), "{error:?}");
    assert!(error.to_string().contains("nope.jsonl"));
    assert!(matches!(
        PartitionReader::open(&missing),
        Err(SourceError::Missing { .. })
    ));
    assert!(matches!(
        PartitionReader::open(dir.path()),
        Err(SourceError::IsDirectory { .. })
    ));
}

#[test]
fn format_is_detected_from_the_first_bytes() {
    // Writes a JSON file, a binary file, an empty file, a file shorter than the magic,
    // a file starting with part of the magic and a JSON file with a BOM, and checks the
    // detected format and the records.
    let dir = TempDir::new("detect");
    let event = every_kind().swap_remove(1);
    let line = encode_event(&event);

    let json = dir.join("a.jsonl");
    fs::write(&json, format!("{line}\n")).unwrap();
    let (format, decoded, _) = read_partition(&json);
    assert_eq!(format, Format::Json);
    assert_eq!(decoded, vec![Decoded::Event(event.clone())]);

    let binary = dir.join("a.bin");
    let mut bytes = MAGIC.to_vec();
    encode_record(&BinaryRecord::Event(event.clone()), &mut bytes);
    fs::write(&binary, &bytes).unwrap();
    let (format, decoded, read) = read_partition(&binary);
    assert_eq!(format, Format::Binary);
    assert_eq!(decoded, vec![Decoded::Event(event.clone())]);
    assert_eq!(read, bytes.len() as u64);

    let empty = dir.join("empty");
    fs::write(&empty, b"").unwrap();
    assert_eq!(read_partition(&empty), (Format::Json, vec![], 0));

    let magic_only = dir.join("magic-only.bin");
    fs::write(&magic_only, MAGIC).unwrap();
    assert_eq!(read_partition(&magic_only), (Format::Binary, vec![], 8));

    let short = dir.join("short");
    fs::write(&short, b"{}").unwrap();
    let (format, decoded, _) = read_partition(&short);
    assert_eq!(format, Format::Json);
    assert_eq!(reason(&decoded[0]), Some(Reason::Malformed));

    let almost = dir.join("almost");
    fs::write(&almost, b"MLEDGER\x03rest").unwrap();
    let (format, decoded, _) = read_partition(&almost);
    assert_eq!(format, Format::Json);
    assert_eq!(decoded.len(), 1);
    assert_eq!(reason(&decoded[0]), Some(Reason::Malformed));

    let bom = dir.join("bom.jsonl");
    fs::write(&bom, format!("\u{feff}{line}\r\n")).unwrap();
    let (format, decoded, read) = read_partition(&bom);
    assert_eq!(format, Format::Json);
    assert_eq!(decoded, vec![Decoded::Event(event)]);
    assert_eq!(read, fs::metadata(&bom).unwrap().len());
}

#[test]
fn a_bad_json_line_in_the_middle_yields_good_bad_good() {
    // Writes good, bad, good lines with blank lines, CRLF endings and no final newline, and
    // checks the records come in file order and bytes_read reaches the file size.
    let dir = TempDir::new("good-bad-good");
    let events = every_kind();
    let content = format!(
        "{}\r\n\n   \n{{\"id\":\"bad-7\",\"type\":\"payment\",\"ts\":17}}\r\n\r\n{}",
        encode_event(&events[1]),
        encode_event(&events[2]),
    );
    let path = dir.join("p.jsonl");
    fs::write(&path, &content).unwrap();
    let (_, decoded, read) = read_partition(&path);
    assert_eq!(decoded.len(), 3);
    assert_eq!(decoded[0], Decoded::Event(events[1].clone()));
    match &decoded[1] {
        Decoded::Refused(rejection) => {
            assert_eq!(rejection.reason, Reason::Malformed);
            assert_eq!(rejection.event.as_deref(), Some("bad-7"));
            assert_eq!(
                rejection.raw.as_deref(),
                Some("{\"id\":\"bad-7\",\"type\":\"payment\",\"ts\":17}")
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(decoded[2], Decoded::Event(events[2].clone()));
    assert_eq!(read, content.len() as u64);
}

#[test]
fn lines_straddling_the_read_buffer_are_assembled() {
    // Writes 12 events of ~100 KiB each (so lines cross the read buffer's edges)
    // and checks every one reads back equal, in order.
    let dir = TempDir::new("straddle");
    let template = every_kind().swap_remove(6);
    let events: Vec<_> = (0..12)
        .map(|index| {
            let mut event = template.clone();
            event.id = format!("big-{index}");
            event.body = markledger_operators::Body::Application {
                report: format!("R-{index}"),
                codes: (0..3000)
                    .map(|code| format!("01046012345678932{index:02}{code:08}"))
                    .collect(),
            };
            event
        })
        .collect();
    let path = dir.join("big.jsonl");
    let mut writer = PartitionWriter::create(&path, Format::Json).unwrap();
    for event in &events {
        writer.write_event(event).unwrap();
    }
    let written = writer.finish().unwrap();
    assert!(written > 3 * READ_BUFFER_BYTES as u64);
    let (_, decoded, read) = read_partition(&path);
    assert_eq!(read, written);
    let expected: Vec<Decoded> = events.into_iter().map(Decoded::Event).collect();
    assert_eq!(decoded, expected);
}

#[test]
fn a_line_over_the_limit_is_one_malformed_record_carrying_its_id() {
    // Writes a good line, a line one byte over LINE_BYTES_MAX whose id, type and account
    // come first (the id with an escape), one whose id comes after the scanned prefix, and
    // a good line; checks good, MALFORMED with the readable fields (raw bounded, detail
    // giving the length), MALFORMED with `event: null`, good; and that writers refuse to
    // write such a line.
    let dir = TempDir::new("long-line");
    let events = every_kind();
    let path = dir.join("long.jsonl");
    let mut content = encode_event(&events[1]).into_bytes();
    content.push(b'\n');
    let line_start = content.len();
    content.extend_from_slice(br#"{"id":"huge\u002d1","type":"emission","ts":5,"account":"KZ-1","codes":[""#);
    content.resize(line_start + LINE_BYTES_MAX + 1, b'x');
    content.push(b'\n');
    let second_start = content.len();
    content.extend_from_slice(br#"{"codes":[""#);
    content.resize(second_start + LINE_HEADING_SCAN_BYTES + 100, b'y');
    content.extend_from_slice(br#""],"id":"late-id","#);
    content.resize(second_start + LINE_BYTES_MAX + 10, b' ');
    content.extend_from_slice(b"}\r\n");
    content.extend_from_slice(encode_event(&events[2]).as_bytes());
    content.push(b'\n');
    fs::write(&path, &content).unwrap();
    let (_, decoded, read) = read_partition(&path);
    assert_eq!(read, content.len() as u64);
    assert_eq!(decoded.len(), 4);
    assert_eq!(decoded[0], Decoded::Event(events[1].clone()));
    match &decoded[1] {
        Decoded::Refused(rejection) => {
            assert_eq!(rejection.reason, Reason::Malformed);
            assert_eq!(rejection.event.as_deref(), Some("huge-1"));
            assert_eq!(rejection.event_type.as_deref(), Some("emission"));
            assert_eq!(rejection.account.as_deref(), Some("KZ-1"));
            assert_eq!(
                rejection.detail,
                format!(
                    "the line is {} bytes long, over the limit of {LINE_BYTES_MAX} bytes per line",
                    LINE_BYTES_MAX + 1
                )
            );
            let raw = rejection.raw.as_deref().unwrap();
            assert_eq!(raw.len(), 1024);
            assert!(raw.starts_with("{\"id\":\"huge\\u002d1\""));
        }
        other => panic!("{other:?}"),
    }
    match &decoded[2] {
        Decoded::Refused(rejection) => {
            assert_eq!(rejection.event, None, "the id is beyond the scanned prefix");
            assert!(rejection
                .detail
                .starts_with(&format!("the line is {} bytes long", LINE_BYTES_MAX + 12)));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(decoded[3], Decoded::Event(events[2].clone()));

    // Writers refuse such a line in both formats rather than write what readers refuse.
    let long_line = &content[line_start..line_start + LINE_BYTES_MAX + 1];
    for format in [Format::Json, Format::Binary] {
        let mut writer = PartitionWriter::create(&dir.join("refused"), format).unwrap();
        let error = writer.write_raw(long_line).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
        assert_eq!(writer.finish().unwrap(), if format == Format::Binary { 8 } else { 0 });
    }
}

#[test]
fn an_emission_of_200k_realistic_codes_reads_back_in_both_formats() {
    // Writes an emission of 200,000 codes shaped like real ones (GTIN, serial, GS, crypto
    // tail: a ~20 MB JSON line, over the old 16 MiB limit) in both formats and reads each
    // back as the same event.
    let dir = TempDir::new("big-emission");
    let mut event = every_kind().swap_remove(5);
    let codes: Vec<String> = (0..200_000)
        .map(|index| {
            format!(
                "0104601234567893215{index:013}\u{1d}91EE06\u{1d}92{:0>44}",
                index * 7_919
            )
        })
        .collect();
    event.body = markledger_operators::Body::Emission {
        order: "ORD-1".to_owned(),
        gtin: "04601234567893".to_owned(),
        codes,
    };
    let line_bytes = encode_event(&event).len();
    assert!(
        line_bytes > 16 * 1024 * 1024 && line_bytes < LINE_BYTES_MAX,
        "{line_bytes}"
    );
    for format in [Format::Json, Format::Binary] {
        let path = dir.join(&format!("p.{}", format.extension()));
        let mut writer = PartitionWriter::create(&path, format).unwrap();
        writer.write_event(&event).unwrap();
        writer.write_event(&every_kind()[1]).unwrap();
        writer.finish().unwrap();
        let (_, decoded, _) = read_partition(&path);
        assert_eq!(
            decoded,
            vec![Decoded::Event(event.clone()), Decoded::Event(every_kind()[1].clone())]
        );
    }
}

#[test]
fn many_small_partitions_hold_no_file_and_a_buffer_of_their_own_size() {
    // Opens 3,000 one-line partitions (JSON and binary) and reads the first record of each
    // while all readers stay alive, as a merge over partitions does: no reader holds its
    // file before or after that read (each read its whole file and saw its end), each
    // buffer is at most its file's size + 1 byte, and the next read frees it.
    let dir = TempDir::new("many");
    let event = every_kind().swap_remove(1);
    let mut paths = Vec::new();
    for index in 0..3_000 {
        let format = if index % 2 == 0 { Format::Json } else { Format::Binary };
        let path = dir.join(&format!("p{index:04}.{}", format.extension()));
        let mut writer = PartitionWriter::create(&path, format).unwrap();
        let mut event = event.clone();
        event.id = format!("e-{index}");
        writer.write_event(&event).unwrap();
        writer.finish().unwrap();
        paths.push(path);
    }
    let mut readers: Vec<PartitionReader> = paths.iter().map(|path| PartitionReader::open(path).unwrap()).collect();
    assert!(readers
        .iter()
        .all(|reader| !reader.holds_file() && reader.buffer_capacity() == 0));
    for (index, reader) in readers.iter_mut().enumerate() {
        match reader.next() {
            Some(Decoded::Event(read)) => assert_eq!(read.id, format!("e-{index}")),
            other => panic!("{other:?}"),
        }
    }
    for (reader, path) in readers.iter().zip(&paths) {
        let size = fs::metadata(path).unwrap().len() as usize;
        assert!(!reader.holds_file(), "{}", path.display());
        assert!(
            reader.buffer_capacity() <= size + 1,
            "{} > {size} + 1",
            reader.buffer_capacity()
        );
    }
    for reader in &mut readers {
        assert_eq!(reader.next(), None);
        assert_eq!(reader.buffer_capacity(), 0);
    }
}

#[test]
fn a_long_partition_streams_through_one_read_buffer() {
    // Writes 30,000 events (several MB) and reads them: the file stays open until its end
    // is read, the buffer never exceeds READ_BUFFER_BYTES, and everything reads back.
    let dir = TempDir::new("long-partition");
    let template = every_kind().swap_remove(6);
    for format in [Format::Json, Format::Binary] {
        let path = dir.join(&format!("p.{}", format.extension()));
        let mut writer = PartitionWriter::create(&path, format).unwrap();
        for index in 0..30_000 {
            let mut event = template.clone();
            event.id = format!("e-{index}");
            writer.write_event(&event).unwrap();
        }
        let written = writer.finish().unwrap();
        assert!(written > 20 * READ_BUFFER_BYTES as u64);
        let mut reader = PartitionReader::open(&path).unwrap();
        let mut count = 0;
        while let Some(decoded) = reader.next() {
            assert!(matches!(decoded, Decoded::Event(_)));
            assert!(
                reader.buffer_capacity() <= READ_BUFFER_BYTES,
                "{}",
                reader.buffer_capacity()
            );
            count += 1;
            if count == 100 {
                assert!(reader.holds_file());
            }
        }
        assert_eq!(count, 30_000);
        assert_eq!(reader.bytes_read(), written);
        assert!(!reader.holds_file());
    }
}

#[test]
fn a_damaged_binary_header_is_refused_and_the_frames_still_read() {
    // Flips each byte of a binary file's 8-byte header (the version byte included) with
    // several xor values: the file is still read as binary, as one MALFORMED record for
    // the header and then every event. A v1 file and an unknown version stay as before.
    let dir = TempDir::new("damaged-header");
    let events = every_kind();
    let path = dir.join("p.bin");
    let mut writer = PartitionWriter::create(&path, Format::Binary).unwrap();
    for event in &events {
        writer.write_event(event).unwrap();
    }
    writer.finish().unwrap();
    let clean = fs::read(&path).unwrap();
    for position in 0..MAGIC.len() {
        for flip in [0x01, 0x03, 0x80, 0xFF] {
            let mut bytes = clean.clone();
            bytes[position] ^= flip;
            fs::write(&path, &bytes).unwrap();
            let (format, decoded, read) = read_partition(&path);
            assert_eq!(format, Format::Binary);
            assert_eq!(read, bytes.len() as u64);
            match &decoded[0] {
                Decoded::Refused(rejection) => {
                    assert_eq!(rejection.reason, Reason::Malformed);
                    assert!(rejection.detail.contains("read as binary format version 2"));
                    assert_eq!(rejection.raw.as_deref().map(str::len), Some(16));
                }
                other => panic!("{other:?}"),
            }
            let rest: Vec<Decoded> = events.iter().cloned().map(Decoded::Event).collect();
            assert_eq!(decoded[1..], rest, "flip {flip:#x} at {position}");
        }
    }
    assert_eq!(
        detect_format(b"MLEDGER\x03 and twenty more bytes..."),
        Detected::Json { skip: 0 }
    );
}

#[test]
fn version_1_files_still_read_and_truncated_version_2_files_end_in_one_refusal() {
    // Writes a version-1 file by hand (MLEDGER\x01, then u32 length + payload frames) and
    // reads every event back; cuts a version-2 file inside its last frame and reads the
    // events before it and one MALFORMED record.
    let dir = TempDir::new("versions");
    let events = every_kind();
    let mut stream = Vec::new();
    for event in &events {
        encode_record(&BinaryRecord::Event(event.clone()), &mut stream);
    }
    let mut version_1 = MAGIC_V1.to_vec();
    for payload in split_frames(&stream).unwrap() {
        // Version 2 writes 0xFF as FF 00; version 1 holds the bincode as it is.
        let mut bincode = Vec::new();
        let mut bytes = payload.iter();
        while let Some(&byte) = bytes.next() {
            bincode.push(byte);
            if byte == 0xFF {
                bytes.next();
            }
        }
        version_1.extend_from_slice(&u32::try_from(bincode.len()).unwrap().to_le_bytes());
        version_1.extend_from_slice(&bincode);
    }
    let path = dir.join("v1.bin");
    fs::write(&path, &version_1).unwrap();
    let (format, decoded, read) = read_partition(&path);
    assert_eq!(format, Format::Binary);
    assert_eq!(decoded, events.iter().cloned().map(Decoded::Event).collect::<Vec<_>>());
    assert_eq!(read, version_1.len() as u64);

    let mut version_2 = MAGIC.to_vec();
    version_2.extend_from_slice(&stream[..stream.len() - 3]);
    let path = dir.join("v2.bin");
    fs::write(&path, &version_2).unwrap();
    let (_, decoded, _) = read_partition(&path);
    assert_eq!(decoded.len(), events.len());
    assert_eq!(
        decoded[..events.len() - 1],
        events[..events.len() - 1]
            .iter()
            .cloned()
            .map(Decoded::Event)
            .collect::<Vec<_>>()
    );
    assert_eq!(reason(&decoded[events.len() - 1]), Some(Reason::Malformed));
}

#[test]
fn writers_in_both_formats_read_back_as_the_same_records() {
    // Writes the same events and raw lines (good JSON, malformed, unknown type, blank)
    // with PartitionWriter in JSON and in binary; both files must read back as the same
    // Decoded sequence, and finish() must report the file sizes.
    let dir = TempDir::new("equivalence");
    let events = every_kind();
    let raw_lines: [&[u8]; 4] = [
        br#"{"id":"u-1","type":"gift","ts":"2026-01-15T09:00:00+05:00","account":"KZ-1"}"#,
        b"{\"id\":\"m-1\",\"type\":\"order\",\"quantity\":-1",
        b"  ",
        b"\xff\xfe not utf-8",
    ];
    let mut decoded_by_format = Vec::new();
    for format in [Format::Json, Format::Binary] {
        let path = dir.join(&format!("p.{}", format.extension()));
        let mut writer = PartitionWriter::create(&path, format).unwrap();
        assert_eq!(writer.format(), format);
        for (index, event) in events.iter().enumerate() {
            writer.write_event(event).unwrap();
            if let Some(raw) = raw_lines.get(index) {
                writer.write_raw(raw).unwrap();
            }
        }
        assert_eq!(
            writer.write_raw(b"two\nlines").unwrap_err().kind(),
            std::io::ErrorKind::InvalidInput
        );
        let written = writer.finish().unwrap();
        assert_eq!(written, fs::metadata(&path).unwrap().len());
        let (detected, decoded, read) = read_partition(&path);
        assert_eq!(detected, format);
        assert_eq!(read, written);
        decoded_by_format.push(decoded);
    }
    let binary = decoded_by_format.pop().unwrap();
    let json = decoded_by_format.pop().unwrap();
    assert_eq!(json, binary);
    assert_eq!(json.len(), events.len() + 3, "the blank raw line is skipped");
    let reasons: Vec<Option<Reason>> = json.iter().map(reason).collect();
    assert_eq!(reasons[1], Some(Reason::UnknownType));
    assert_eq!(reasons[3], Some(Reason::Malformed));
    assert_eq!(reasons[6], Some(Reason::Malformed));
    assert_eq!(reasons.iter().flatten().count(), 3);
}

fn sample_outputs() -> Vec<Output> {
    let t = ts("2026-01-15T09:30:00+05:00");
    let account = "KZ-940000000017".to_owned();
    let rejection = Rejection {
        event: Some("e-1".to_owned()),
        event_type: Some("refund".to_owned()),
        account: Some(account.clone()),
        code: None,
        reason: Reason::RefundUnpaidCodes,
        detail: "2 unpaid codes".to_owned(),
        raw: None,
    };
    let status = StatusChange {
        event: Some("e-2".to_owned()),
        account: account.clone(),
        gtin: "04601234567893".to_owned(),
        from: Some(Status::AppliedUnpaid),
        to: Status::AppliedPaid,
        ts: t,
        late: false,
        codes: vec!["c1".to_owned()],
    };
    vec![
        Output::Status(status.clone()),
        Output::Ledger(LedgerEntry {
            account: account.clone(),
            entry: Entry::Compensation,
            amount: 5.into(),
            balance: 5.into(),
            ts: t,
            event: "e-3".to_owned(),
            codes: None,
            late: false,
            period: Period::new(2026, 1),
        }),
        Output::Rejection(rejection.clone()),
        Output::Status(StatusChange {
            to: Status::Introduced,
            ..status
        }),
        Output::Balance(BalanceRecord {
            account: account.clone(),
            balance: 5.into(),
            unpaid_codes: 0,
            unpaid_amount: 0.into(),
            pending_orders: 0,
            ts: t,
            rev: 1,
        }),
        Output::Period(PeriodRecord {
            key: PeriodKey {
                kind: AggregateKind::Payments,
                account: "*".to_owned(),
                period: Period::new(2026, 1),
                sub: Some("Kaspi".to_owned()),
            },
            rev: 1,
            is_final: true,
            figures: Figures::Payments {
                count: 1,
                amount: 5.into(),
            },
        }),
        Output::Rejection(Rejection {
            event: None,
            ..rejection
        }),
        Output::Status(StatusChange {
            event: None,
            account,
            gtin: "04601234567893".to_owned(),
            from: Some(Status::Emitted),
            to: Status::Expired,
            ts: t,
            late: false,
            codes: vec!["c2".to_owned()],
        }),
    ]
}

#[test]
fn output_files_hold_one_line_per_record_in_emission_order() {
    // Emits outputs of every kind into a fresh --out dir (created with its parents), and
    // checks the five files exist, each holds exactly the rendered lines of its records in
    // order, and the counts match; re-creating the dir truncates the files.
    let dir = TempDir::new("out");
    let out = dir.join("nested").join("out");
    let mut files = OutputFiles::create(&out).unwrap();
    let outputs = sample_outputs();
    for output in outputs.clone() {
        files.write(&output);
    }
    assert_eq!(files.counts().total(), outputs.len() as u64);
    let counts = files.finish().unwrap();
    assert_eq!(
        counts,
        OutputCounts {
            status: 3,
            ledger: 1,
            balances: 1,
            rejections: 2,
            periods: 1,
            exports: 0,
        }
    );
    for file in OutputFile::ALL {
        let content = fs::read_to_string(out.join(file.file_name())).unwrap();
        let expected: String = outputs
            .iter()
            .filter(|output| crate::codec::json::output_file(output) == file)
            .map(|output| render_output(output) + "\n")
            .collect();
        assert_eq!(content, expected, "{}", file.file_name());
        assert_eq!(content.lines().count() as u64, counts.get(file));
    }

    let files = OutputFiles::create(&out).unwrap();
    assert_eq!(files.finish().unwrap(), OutputCounts::default());
    for file in OutputFile::ALL {
        assert_eq!(fs::metadata(out.join(file.file_name())).unwrap().len(), 0);
    }
}

#[test]
fn output_files_report_the_writer_threads_io_error() {
    // status.jsonl is a link to /dev/full: the writer thread's first write fails, later
    // records are dropped without blocking, and `finish` returns the error.
    if !Path::new("/dev/full").exists() {
        return;
    }
    let dir = TempDir::new("out-full");
    let out = dir.join("out");
    fs::create_dir_all(&out).unwrap();
    std::os::unix::fs::symlink("/dev/full", out.join("status.jsonl")).unwrap();
    let mut files = OutputFiles::create(&out).unwrap();
    let status = sample_outputs()
        .into_iter()
        .find(|output| matches!(output, Output::Status(_)))
        .unwrap();
    // Enough lines for many full buffers, more than the writer can have in flight.
    for _ in 0..(40 * WRITE_BUFFER_BYTES / 100) {
        files.write(&status);
    }
    let error = files.finish().unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::StorageFull, "{error}");
}

#[test]
fn output_file_names_and_formats() {
    // Checks the six file names of INTERFACE.md and the command-line format names.
    let names: Vec<&str> = OutputFile::ALL.iter().map(|file| file.file_name()).collect();
    assert_eq!(
        names,
        [
            "status.jsonl",
            "ledger.jsonl",
            "balances.jsonl",
            "rejections.jsonl",
            "periods.jsonl",
            "exports.jsonl"
        ]
    );
    for (index, file) in OutputFile::ALL.iter().enumerate() {
        assert_eq!(file.index(), index);
    }
    assert_eq!(Format::parse("json"), Some(Format::Json));
    assert_eq!(Format::parse("bin"), Some(Format::Binary));
    assert_eq!(Format::parse(Format::Binary.as_str()), Some(Format::Binary));
    assert_eq!(Format::parse("xml"), None);
}

/// An error and its sources as `{:#}` prints them (anyhow joins the chain with ": ").
pub(crate) fn chain_text(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[test]
fn an_os_error_is_printed_once_in_the_whole_chain() {
    // Builds an unreadable-path error and renders its whole source chain as `{:#}` does:
    // the OS error's text appears exactly once (it used to appear twice: in the message and
    // again as the source).
    let error = SourceError::Io {
        path: PathBuf::from("/data/p001.jsonl"),
        cause: std::io::Error::new(std::io::ErrorKind::PermissionDenied, "Permission denied (os error 13)"),
    };
    let text = chain_text(&error);
    assert_eq!(
        text,
        "cannot read input path /data/p001.jsonl: Permission denied (os error 13)"
    );
    assert_eq!(text.matches("os error 13").count(), 1);
}
