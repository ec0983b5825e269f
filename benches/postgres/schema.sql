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

-- The working-day calendar file, one row per line (datasets/calendars/README.md).
CREATE UNLOGGED TABLE calendar_lines (
    line bigserial,
    body text
);

-- ------------------------------------------------------------------------------- state

-- Accounts, numbered densely in name order by prepare.sql. `shown_*` is what the last
-- balance record said, so a record is written only when something it shows changed.
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
    shown_pending_orders bigint,
    dirty boolean NOT NULL DEFAULT false
);
CREATE INDEX accounts_dirty ON accounts (aid) WHERE dirty;

-- Every code the operator issued. fillfactor leaves room on each page so that a status
-- change is a heap-only update (no new index entry).
CREATE UNLOGGED TABLE codes (
    code text COLLATE "C" PRIMARY KEY,
    aid int NOT NULL,
    gtin text NOT NULL,
    status smallint NOT NULL,
    paid boolean NOT NULL DEFAULT false,
    emission int NOT NULL           -- events.seq of the emission that created it
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
