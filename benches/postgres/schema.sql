-- markledger's PostgreSQL peer: tables and helper functions (DOMAIN.md, INTERFACE.md).
--
-- Every table is UNLOGGED: the run is a batch recomputed from its input files, like
-- markledger's file run, which does not fsync its outputs either. A crash loses the run
-- in both; neither pays for write-ahead logging of state it can recompute.
--
-- Status codes are small integers in the state tables and names only in the exports:
--   0 EMITTED, 1 APPLIED_UNPAID, 2 APPLIED_PAID, 3 INTRODUCED, 4 REJECTED, 5 ANNULLED,
--   6 EXPIRED.

-- ------------------------------------------------------------------------------- input

-- One row per input line, in read order per partition (`line` grows within one COPY).
-- `part` comes from the session setting ml.part that the loader sets before each COPY.
CREATE UNLOGGED TABLE raw_lines (
    part int NOT NULL DEFAULT current_setting('ml.part')::int,
    line bigserial,
    body text
);
-- Lines are stored as read, uncompressed: compressing a gigabyte of JSON on the way in and
-- decompressing it to decode costs more than it saves.
ALTER TABLE raw_lines ALTER COLUMN body SET STORAGE EXTERNAL;

-- The working-day calendar file, one row per line (datasets/calendars/README.md).
CREATE UNLOGGED TABLE calendar_lines (
    line bigserial,
    body text
);

-- One row per input line once decode.sql has run; prepare.sql moves the refused ones to
-- rejection_out and numbers the rest in account order (`seq`).
-- The codes arrays are stored uncompressed (STORAGE EXTERNAL): compressing ~1 KB of
-- random code text per code event buys nothing and costs seconds.
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


-- ------------------------------------------------------------------------------- state

-- Accounts, numbered densely in name order by prepare.sql. `shown_*` is what the last
-- balance record said, so a record is written only when something it shows changed.
-- Updated once or more per event: no index on a column that changes, so every update is
-- heap-only and the table stays a few pages.
CREATE UNLOGGED TABLE accounts (
    aid int PRIMARY KEY,
    name text NOT NULL,
    balance numeric NOT NULL DEFAULT 0,
    unpaid_codes bigint NOT NULL DEFAULT 0,
    unpaid_amount numeric NOT NULL DEFAULT 0,
    pending_orders bigint NOT NULL DEFAULT 0,
    last_change_ts timestamptz,
    shown_balance numeric,
    shown_unpaid_codes bigint,
    shown_unpaid_amount numeric,
    shown_pending_orders bigint
) WITH (fillfactor = 50);      -- room for heap-only updates: nothing indexed ever changes

-- Every code the operator issued. fillfactor leaves room on each page so that a status
-- change is a heap-only update (no new index entry).
CREATE UNLOGGED TABLE codes (
    code text COLLATE "C" PRIMARY KEY,
    aid int NOT NULL,
    gtin text NOT NULL,
    status smallint NOT NULL,
    paid boolean NOT NULL DEFAULT false,
    emission int NOT NULL,          -- events.seq of the emission that created it
    moved_by int                    -- events.seq of the command that last moved it
) WITH (fillfactor = 60);

-- The FIFO queue of unpaid applied codes per account (DOMAIN.md §3), in application order.
CREATE UNLOGGED TABLE unpaid_queue (
    aid int NOT NULL,
    qseq bigint NOT NULL,
    code text COLLATE "C" NOT NULL,
    gtin text NOT NULL,
    charge numeric NOT NULL,
    PRIMARY KEY (aid, qseq)
);

CREATE UNLOGGED TABLE orders (
    aid int NOT NULL,
    order_id text NOT NULL,
    gtin text NOT NULL,
    quantity bigint NOT NULL,
    emitted bigint NOT NULL DEFAULT 0,
    cancelled boolean NOT NULL DEFAULT false,
    PRIMARY KEY (aid, order_id)
);

-- Tariff versions; the built-in 2.68 KZT + 12 % VAT from 2020-10-01 (operators/src/tariff.rs).
CREATE UNLOGGED TABLE tariffs (
    effective_from timestamptz PRIMARY KEY,
    net_price numeric NOT NULL,
    vat_rate numeric NOT NULL
);
INSERT INTO tariffs VALUES ('2020-10-01T00:00:00+06:00', 2.68, 0.12);

-- Pending expiry timers: unapplied codes of an emission expire at its deadline.
CREATE UNLOGGED TABLE expiries (
    deadline timestamptz NOT NULL,
    emission int NOT NULL,
    aid int NOT NULL,
    gtin text NOT NULL,
    PRIMARY KEY (deadline, emission)
);

-- Commands waiting for their codes' emission (DOMAIN.md §4, §8): one row per held code,
-- `hold` being the command's events.seq.
CREATE UNLOGGED TABLE holds (
    hold int NOT NULL,
    ord bigint NOT NULL,
    code text COLLATE "C" NOT NULL,
    deadline timestamptz NOT NULL,
    PRIMARY KEY (hold, ord)
);
CREATE INDEX holds_code ON holds (code);
CREATE INDEX holds_deadline ON holds (deadline);

-- ------------------------------------------------------------------------------- outputs

CREATE UNLOGGED TABLE status_out (
    seq bigserial,
    event text,                     -- null for time-driven changes (expiry)
    aid int NOT NULL,
    gtin text NOT NULL,
    from_status smallint,           -- null for new codes
    to_status smallint NOT NULL,
    ts timestamptz NOT NULL,
    late boolean NOT NULL,
    codes text[] NOT NULL
);
-- Stored uncompressed: compressing random code text costs more than it saves.
ALTER TABLE status_out ALTER COLUMN codes SET STORAGE EXTERNAL;

CREATE UNLOGGED TABLE ledger_out (
    seq bigserial,
    aid int NOT NULL,
    entry text NOT NULL,
    amount numeric NOT NULL,
    balance numeric NOT NULL,
    ts timestamptz NOT NULL,
    event text NOT NULL,
    codes bigint,
    late boolean NOT NULL
);

CREATE UNLOGGED TABLE balance_out (
    seq bigserial,
    aid int NOT NULL,
    balance numeric NOT NULL,
    unpaid_codes bigint NOT NULL,
    unpaid_amount numeric NOT NULL,
    pending_orders bigint NOT NULL,
    ts timestamptz
);

CREATE UNLOGGED TABLE rejection_out (
    seq bigserial,
    event text,
    type text,
    account text,
    code text,
    reason text NOT NULL,
    detail text NOT NULL,
    raw text
);

-- ------------------------------------------------------------------------------- helpers

-- Parses a line as JSON, or null when it is not JSON (the line is then MALFORMED).
CREATE FUNCTION ml_try_jsonb(body text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN body::jsonb;
EXCEPTION WHEN others THEN
    RETURN NULL;
END $$;

-- An RFC 3339 timestamp with offset, truncated to milliseconds, or null.
CREATE FUNCTION ml_ts(value jsonb) RETURNS timestamptz
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    text_value text;
BEGIN
    IF jsonb_typeof(value) IS DISTINCT FROM 'string' THEN
        RETURN NULL;
    END IF;
    text_value := value #>> '{}';
    IF text_value !~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ]([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$' THEN
        RETURN NULL;
    END IF;
    RETURN date_trunc('milliseconds', text_value::timestamptz);
EXCEPTION WHEN others THEN
    RETURN NULL;
END $$;

-- A YYYY-MM-DD date, or null.
CREATE FUNCTION ml_date(value jsonb) RETURNS date
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF jsonb_typeof(value) IS DISTINCT FROM 'string' OR (value #>> '{}') !~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$' THEN
        RETURN NULL;
    END IF;
    RETURN (value #>> '{}')::date;
EXCEPTION WHEN others THEN
    RETURN NULL;
END $$;

-- A decimal string (`"1000.00"`, `"-2.5"`) as a number; null when the field is not a
-- JSON string of plain decimal notation (the engine then refuses it BAD_AMOUNT).
CREATE FUNCTION ml_decimal(value jsonb) RETURNS numeric
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN jsonb_typeof(value) = 'string' AND (value #>> '{}') ~ '^[+-]?[0-9]+(\.[0-9]+)?$'
        THEN (value #>> '{}')::numeric
    END
$$;

-- A payment, compensation or refund amount: > 0 with at most 2 decimals by value.
CREATE FUNCTION ml_amount_ok(amount numeric) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT amount IS NOT NULL AND amount > 0 AND amount = round(amount, 2)
$$;

-- GTIN-14 with a valid GS1 check digit (operators/src/validate.rs).
CREATE FUNCTION ml_is_gtin(gtin text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN gtin ~ '^[0-9]{14}$' THEN
        (10 - (SELECT sum(substr(gtin, p, 1)::int * CASE WHEN (13 - p) % 2 = 0 THEN 3 ELSE 1 END)
               FROM generate_series(1, 13) AS p) % 10) % 10 = substr(gtin, 14, 1)::int
    ELSE false END
$$;

-- A code: 1–128 bytes of printable ASCII without space, or the GS1 group separator.
CREATE FUNCTION ml_is_code(code text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT octet_length(code) BETWEEN 1 AND 128 AND code ~ '^[\x21-\x7e\x1d]+$'
$$;

-- Canonical money text: trailing zeros removed, at least two decimals (operators/src/money.rs).
CREATE FUNCTION ml_money(amount numeric) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN scale(trim_scale(amount)) < 2 THEN round(amount, 2)::text
                ELSE trim_scale(amount)::text END
$$;

-- RFC 3339 in Almaty local time, milliseconds only when non-zero (operators/src/time.rs).
-- The session time zone is Asia/Almaty (postgres.sh sets it).
CREATE FUNCTION ml_render_ts(ts timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN date_trunc('second', ts) = ts
                THEN to_char(ts, 'YYYY-MM-DD"T"HH24:MI:SSTZH:TZM')
                ELSE to_char(ts, 'YYYY-MM-DD"T"HH24:MI:SS.MSTZH:TZM') END
$$;

CREATE FUNCTION ml_status_name(status smallint) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT (ARRAY['EMITTED', 'APPLIED_UNPAID', 'APPLIED_PAID', 'INTRODUCED', 'REJECTED',
                  'ANNULLED', 'EXPIRED'])[status + 1]
$$;

-- ------------------------------------------------------------------------------- decoding

-- Decoding helpers (decode.sql): the checks of connectors/src/codec/json.rs in its order (id,
-- type, ts, account, then the type's own fields). A null field counts as missing.
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

