-- Decoding, effective times and account order, set-based (DOMAIN.md §4, §5, §8).
-- Input: raw_lines (loaded by COPY), calendar_lines. psql variables: lateness_ms, hold_ms,
-- expiry_working_days, defect_working_days.
-- Output: events (one row per well-formed event, numbered `seq` in account order),
-- accounts, deadlines, run_info; refused lines (MALFORMED, UNKNOWN_TYPE) go straight to
-- rejection_out, as markledger's decoder refuses them before the engine sees them.

-- 1. decode.sql has turned every line into a row of `events` (its partitions in parallel).

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
SELECT max(ts) AS watermark_end, make_interval(secs => :hold_ms / 1000.0) AS hold, count(*) AS events,
       coalesce(sum(cardinality(codes)), 0) AS code_events,
       count(*) FILTER (WHERE late) AS late_events
FROM events;

-- The input lines are decoded: free their space for the run.
DROP TABLE raw_lines;
ANALYZE events, accounts, deadlines, calendar_days, run_info;
