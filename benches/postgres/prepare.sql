-- Decoding, effective times and account order, set-based (DOMAIN.md §4, §5, §8).
-- Input: raw_lines (loaded by COPY), calendar_lines. psql variables: lateness_ms,
-- expiry_working_days, defect_working_days.
-- Output: events (one row per well-formed event, numbered `seq` in account order),
-- accounts, deadlines, run_info; refused lines (MALFORMED, UNKNOWN_TYPE) go straight to
-- rejection_out, as markledger's decoder refuses them before the engine sees them.

-- 1. Decoding helpers: the checks of connectors/src/codec/json.rs in its order (id,
--    type, ts, account, then the type's own fields). A null field counts as missing.
CREATE FUNCTION ml_present(value jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$ SELECT value IS NOT NULL AND jsonb_typeof(value) <> 'null' $$;

CREATE FUNCTION ml_string(value jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$ SELECT jsonb_typeof(value) = 'string' $$;

-- An optional free-text field: absent, null or a string.
CREATE FUNCTION ml_optional_string(value jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$ SELECT NOT ml_present(value) OR jsonb_typeof(value) = 'string' $$;

CREATE FUNCTION ml_order_ok(value jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_typeof(value) = 'string' AND char_length(value #>> '{}') BETWEEN 1 AND 64
$$;

CREATE FUNCTION ml_codes_ok(value jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_typeof(value) = 'array'
       AND NOT jsonb_path_exists(value, '$[*] ? (@.type() != "string")')
$$;

CREATE FUNCTION ml_body_ok(kind text, doc jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    -- coalesce: a missing field makes a check null, and null must read as "refused".
    SELECT coalesce(CASE kind
        WHEN 'order' THEN ml_order_ok(doc->'order') AND ml_string(doc->'gtin')
            AND jsonb_typeof(doc->'quantity') = 'number' AND (doc->>'quantity') ~ '^[0-9]+$'
            AND (doc->>'quantity')::numeric BETWEEN 1 AND 18446744073709551615
        WHEN 'order_cancel' THEN ml_order_ok(doc->'order')
        WHEN 'emission' THEN ml_order_ok(doc->'order') AND ml_string(doc->'gtin') AND ml_codes_ok(doc->'codes')
        WHEN 'application' THEN ml_optional_string(doc->'report') AND ml_codes_ok(doc->'codes')
        WHEN 'dropout' THEN ml_codes_ok(doc->'codes') AND ml_optional_string(doc->'reason')
        WHEN 'defect' THEN ml_codes_ok(doc->'codes') AND ml_date(doc->'act_date') IS NOT NULL
        WHEN 'introduction' THEN ml_codes_ok(doc->'codes')
        WHEN 'payment' THEN ml_present(doc->'amount') AND ml_string(doc->'channel') AND (doc->>'channel') <> ''
        WHEN 'compensation' THEN ml_present(doc->'amount') AND ml_optional_string(doc->'reason')
        WHEN 'refund' THEN ml_present(doc->'amount')
        WHEN 'tariff' THEN ml_ts(doc->'effective_from') IS NOT NULL
            AND ml_present(doc->'net_price') AND ml_present(doc->'vat_rate')
        ELSE false
    END, false)
$$;

-- 2. One pass over the lines: parse each once (the OFFSET 0 fences keep the planner from
--    copying the parse into every use), check it, and keep the fields each kind needs.
--    The codes arrays are stored uncompressed (STORAGE EXTERNAL): compressing ~1 KB of
--    random code text per code event buys nothing and costs seconds.
CREATE UNLOGGED TABLE events (
    seq int,                        -- place in account order (step 4)
    part int NOT NULL,
    line bigint NOT NULL,
    id text,
    kind text,
    rank int,
    ts timestamptz,
    effective timestamptz,
    late boolean,
    duplicate boolean,
    account text,
    aid int,
    refusal text,
    order_id text,
    gtin text,
    quantity numeric,
    amount jsonb,
    channel text,
    act_date date,
    effective_from timestamptz,
    net_price jsonb,
    vat_rate jsonb,
    codes text[]
);
ALTER TABLE events ALTER COLUMN codes SET STORAGE EXTERNAL;
-- Statistics of the codes arrays would read every code again and no plan needs them.
ALTER TABLE events ALTER COLUMN codes SET STATISTICS 0;

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
) AS c;

-- Refused lines: what could be read of them, the raw line truncated to 1 KiB for
-- MALFORMED. They are not events: no high-water mark, no id for de-duplication.
INSERT INTO rejection_out (event, type, account, code, reason, detail, raw)
SELECT e.id, e.kind, e.account, NULL, e.refusal, 'refused by the decoder',
       CASE WHEN e.refusal = 'MALFORMED' THEN left(r.body, 1024) END
FROM events e JOIN raw_lines r USING (part, line)
WHERE e.refusal IS NOT NULL
ORDER BY e.part, e.line;
DELETE FROM events WHERE refusal IS NOT NULL;

-- 3. Accounts, numbered in name order.
INSERT INTO accounts (aid, name)
SELECT row_number() OVER (ORDER BY account COLLATE "C"), account
FROM (SELECT DISTINCT account FROM events WHERE kind <> 'tariff') AS names;

-- 4. Effective time per partition: max(ts, high-water before it − lateness); late when
--    ts is below that. Then account order: (effective, kind rank, id); same-id
--    duplicates at the same place are ordered by read position. The first of each id in
--    account order counts; the others are DUPLICATE (the 5-year horizon outlasts any
--    dataset). Only the small columns are read: the codes arrays stay where they are.
UPDATE events e
SET seq = o.seq, rank = o.rank, effective = o.effective, late = o.late, duplicate = o.duplicate, aid = o.aid
FROM (
    SELECT part, line, seq, rank, effective, late, aid,
           row_number() OVER (PARTITION BY id ORDER BY seq) > 1 AS duplicate
    FROM (
        SELECT part, line, id, rank, aid,
            row_number() OVER (ORDER BY greatest(ts, coalesce(floor_ts, ts)), rank, id COLLATE "C", part, line)::int AS seq,
            greatest(ts, coalesce(floor_ts, ts)) AS effective,
            coalesce(ts < floor_ts, false) AS late
        FROM (
            SELECT ev.part, ev.line, ev.id, ev.ts, a.aid,
                max(ev.ts) OVER (PARTITION BY ev.part ORDER BY ev.line
                                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
                    - make_interval(secs => :lateness_ms / 1000.0) AS floor_ts,
                array_position(ARRAY['tariff', 'payment', 'compensation', 'order', 'order_cancel',
                                     'emission', 'application', 'dropout', 'defect', 'introduction',
                                     'refund'], ev.kind) AS rank
            FROM events ev LEFT JOIN accounts a ON a.name = ev.account
        ) AS timed
    ) AS ordered
) AS o
WHERE e.part = o.part AND e.line = o.line;
CREATE UNIQUE INDEX events_seq ON events (seq);

-- 5. Working days and deadlines: the end (24:00 local) of the n-th working day strictly
--    after a date (operators/src/calendar.rs). A `workday` line makes a day worked;
--    holiday, carryover and dayoff lines make it a day off; other days follow Mon–Fri.
CREATE UNLOGGED TABLE calendar_days AS
WITH listed AS (
    SELECT (m[1])::date AS day, m[2] AS kind
    FROM calendar_lines,
         regexp_match(body, '^\s*([0-9]{4}-[0-9]{2}-[0-9]{2})\s+(holiday|carryover|dayoff|workday)(\s|$)') AS m
), span AS (
    SELECT least(min((ts AT TIME ZONE 'Asia/Almaty')::date), min(act_date)) - 1 AS first_day,
           max((ts AT TIME ZONE 'Asia/Almaty')::date) + 400 AS last_day
    FROM events
)
SELECT g.day_ts::date AS day,
    CASE WHEN l.kind = 'workday' THEN true
         WHEN l.kind IS NOT NULL THEN false
         ELSE extract(isodow FROM g.day_ts) < 6 END AS working
FROM span
CROSS JOIN generate_series(span.first_day, span.last_day, interval '1 day') AS g(day_ts)
LEFT JOIN listed l ON l.day = g.day_ts::date;

CREATE UNLOGGED TABLE deadlines AS
WITH numbered AS (
    SELECT day, working, sum(working::int) OVER (ORDER BY day) AS working_index FROM calendar_days
), worked AS (
    SELECT working_index, day FROM numbered WHERE working
)
SELECT n.day,
    ((expiry.day + 1)::timestamp AT TIME ZONE 'Asia/Almaty') AS expiry_deadline,
    ((defect.day + 1)::timestamp AT TIME ZONE 'Asia/Almaty') AS defect_deadline
FROM numbered n
LEFT JOIN worked expiry ON expiry.working_index = n.working_index + :expiry_working_days
LEFT JOIN worked defect ON defect.working_index = n.working_index + :defect_working_days;
ALTER TABLE deadlines ADD PRIMARY KEY (day);

-- The watermark stops at the largest ts read (DOMAIN.md §4): later deadlines never fire.
CREATE UNLOGGED TABLE run_info AS
SELECT max(ts) AS watermark_end, count(*) AS events,
       coalesce(sum(cardinality(codes)), 0) AS code_events,
       count(*) FILTER (WHERE late) AS late_events
FROM events;

-- The input lines are decoded: free their space for the run.
DROP TABLE raw_lines;
ANALYZE events, accounts, deadlines, calendar_days, run_info;
