-- Decodes one partition's lines (psql variable `part`) into `events`, the checks of
-- connectors/src/codec/json.rs in its order (id, type, ts, account, then the type's own
-- fields); a null field counts as missing. The loader runs this right after the
-- partition's COPY, partitions in parallel, as markledger's readers decode as they read.
--
-- Each line is parsed once (the OFFSET 0 fences keep the planner from copying the parse
-- into every use of it), checked, and only the fields its kind needs are kept.

INSERT INTO events (part, line, id, kind, ts, account, refusal, order_id, gtin, quantity, amount,
                    channel, act_date, effective_from, net_price, vat_rate, codes)
SELECT r.part, r.line, f.id, f.kind, f.ts, f.account, c.refusal,
    CASE WHEN c.refusal IS NULL THEN j.doc->>'order' END,
    CASE WHEN c.refusal IS NULL THEN j.doc->>'gtin' END,
    CASE WHEN c.refusal IS NULL AND f.kind = 'order' THEN (j.doc->>'quantity')::numeric END,
    CASE WHEN c.refusal IS NULL AND f.kind IN ('payment', 'compensation', 'refund') THEN j.doc->'amount' END,
    CASE WHEN c.refusal IS NULL AND f.kind = 'payment' THEN j.doc->>'channel' END,
    CASE WHEN c.refusal IS NULL AND f.kind = 'defect' THEN ml_date(j.doc->'act_date') END,
    CASE WHEN c.refusal IS NULL AND f.kind = 'tariff' THEN ml_ts(j.doc->'effective_from') END,
    CASE WHEN c.refusal IS NULL AND f.kind = 'tariff' THEN j.doc->'net_price' END,
    CASE WHEN c.refusal IS NULL AND f.kind = 'tariff' THEN j.doc->'vat_rate' END,
    CASE WHEN c.refusal IS NULL AND f.kind IN ('emission', 'application', 'dropout', 'defect', 'introduction')
         THEN ARRAY(SELECT jsonb_array_elements_text(j.doc->'codes')) END
FROM raw_lines r
CROSS JOIN LATERAL (SELECT ml_try_jsonb(r.body) AS doc OFFSET 0) AS j
CROSS JOIN LATERAL (
    SELECT CASE WHEN ml_string(j.doc->'id') THEN j.doc->>'id' END AS id,
           CASE WHEN ml_string(j.doc->'type') THEN j.doc->>'type' END AS kind,
           ml_ts(j.doc->'ts') AS ts,
           CASE WHEN ml_string(j.doc->'account') THEN j.doc->>'account' END AS account
    OFFSET 0
) AS f
CROSS JOIN LATERAL (
    SELECT CASE
        WHEN jsonb_typeof(j.doc) IS DISTINCT FROM 'object' THEN 'MALFORMED'
        WHEN f.id IS NULL OR char_length(f.id) NOT BETWEEN 1 AND 128 THEN 'MALFORMED'
        WHEN f.kind IS NULL THEN 'MALFORMED'
        WHEN f.kind NOT IN ('tariff', 'payment', 'compensation', 'order', 'order_cancel', 'emission',
                            'application', 'dropout', 'defect', 'introduction', 'refund') THEN 'UNKNOWN_TYPE'
        WHEN f.ts IS NULL THEN 'MALFORMED'
        WHEN f.account IS NULL THEN 'MALFORMED'
        WHEN f.kind = 'tariff' AND f.account <> '*' THEN 'MALFORMED'
        WHEN f.kind <> 'tariff' AND f.account !~ '^[A-Za-z0-9._-]{1,64}$' THEN 'MALFORMED'
        WHEN NOT ml_body_ok(f.kind, j.doc) THEN 'MALFORMED'
    END AS refusal
    OFFSET 0
) AS c
WHERE r.part = :part;
