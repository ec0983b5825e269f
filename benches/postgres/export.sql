-- Writes the four outputs as JSON lines in INTERFACE.md's shapes, in the order they were
-- produced. psql variable out_dir names the directory. COPY's CSV mode with a quote and a
-- delimiter that JSON text never contains raw (U+0001, U+0002) writes each line verbatim.

\o :out_dir/status.jsonl
COPY (
    SELECT json_build_object('event', s.event, 'account', a.name, 'gtin', s.gtin,
        'from', ml_status_name(s.from_status), 'to', ml_status_name(s.to_status),
        'ts', ml_render_ts(s.ts), 'late', s.late, 'codes', s.codes)::text
    FROM status_out s JOIN accounts a USING (aid) ORDER BY s.seq
) TO STDOUT WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02');

\o :out_dir/ledger.jsonl
COPY (
    SELECT json_build_object('account', a.name, 'entry', l.entry, 'amount', ml_money(l.amount),
        'balance', ml_money(l.balance), 'ts', ml_render_ts(l.ts), 'event', l.event,
        'codes', l.codes, 'late', l.late)::text
    FROM ledger_out l JOIN accounts a USING (aid) ORDER BY l.seq
) TO STDOUT WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02');

\o :out_dir/balances.jsonl
COPY (
    SELECT json_build_object('account', a.name, 'balance', ml_money(b.balance),
        'unpaid_codes', b.unpaid_codes, 'unpaid_amount', ml_money(b.unpaid_amount),
        'pending_orders', b.pending_orders, 'ts', ml_render_ts(b.ts))::text
    FROM balance_out b JOIN accounts a USING (aid) ORDER BY b.seq
) TO STDOUT WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02');

\o :out_dir/rejections.jsonl
COPY (
    SELECT json_build_object('event', event, 'type', type, 'account', account, 'code', code,
        'reason', reason, 'detail', detail, 'raw', raw)::text
    FROM rejection_out ORDER BY seq
) TO STDOUT WITH (FORMAT csv, QUOTE E'\x01', DELIMITER E'\x02');

\o
