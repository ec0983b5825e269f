-- The code lifecycle and FIFO settlement in PL/pgSQL (DOMAIN.md §2, §3, §4, §8).
--
-- ml_run() visits the events of `events` in account order (seq), one at a time, the way
-- markledger's reference engine does (pipeline/src/reference/mod.rs); the work on the
-- codes of one event (often ~1,000 of them) is set-based. Time-driven changes (expiry)
-- at instant T come before the events taking effect at T; balance records are written
-- at the end of each instant for the accounts whose shown values changed.
--
-- Out of scope (documented in README.md): period aggregates, SLA, dormant advance and
-- retention (5 years, longer than any generated dataset).

-- A rejection of a whole event (code null) or of one code.
CREATE FUNCTION ml_reject(e events, p_code text, p_reason text, p_detail text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rejection_out (event, type, account, code, reason, detail)
    VALUES (e.id, e.kind, e.account, p_code, p_reason, p_detail);
END $$;

-- Marks the account changed by `e` (its next balance record carries e.ts at the latest).
CREATE FUNCTION ml_touch(e events) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE accounts SET last_change_ts = greatest(last_change_ts, e.ts) WHERE aid = e.aid;
END $$;

-- A ledger entry carrying the account's balance after it.
CREATE FUNCTION ml_ledger(e events, p_entry text, p_amount numeric, p_codes bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ledger_out (aid, entry, amount, balance, ts, event, codes, late)
    SELECT e.aid, p_entry, p_amount, balance, e.ts, e.id, p_codes, e.late
    FROM accounts WHERE aid = e.aid;
END $$;

-- End of an instant: a balance record for every account whose shown values moved. Only
-- the accounts of the instant's events can have moved (an event changes its own account
-- only; expiry changes no balance), so only they are looked at.
CREATE FUNCTION ml_flush_balances(p_accounts int[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    WITH moved AS (
        UPDATE accounts
        SET shown_balance = balance, shown_unpaid_codes = unpaid_codes,
            shown_unpaid_amount = unpaid_amount, shown_pending_orders = pending_orders
        WHERE aid = ANY (p_accounts)
          AND (balance, unpaid_codes, unpaid_amount, pending_orders) IS DISTINCT FROM
              (shown_balance, shown_unpaid_codes, shown_unpaid_amount, shown_pending_orders)
        RETURNING aid, balance, unpaid_codes, unpaid_amount, pending_orders, last_change_ts
    )
    INSERT INTO balance_out (aid, balance, unpaid_codes, unpaid_amount, pending_orders, ts)
    SELECT aid, balance, unpaid_codes, unpaid_amount, pending_orders, last_change_ts
    FROM moved ORDER BY aid;
END $$;

-- The tariff in force at `at` (before the first version, the first version).
CREATE FUNCTION ml_charge_at(p_at timestamptz) RETURNS numeric
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_charge numeric;
BEGIN
    SELECT net_price + net_price * vat_rate INTO v_charge FROM tariffs WHERE effective_from <= p_at
    ORDER BY effective_from DESC LIMIT 1;
    IF v_charge IS NULL THEN
        SELECT net_price + net_price * vat_rate INTO v_charge FROM tariffs ORDER BY effective_from LIMIT 1;
    END IF;
    RETURN v_charge;
END $$;

-- Per code of a code command: its row (ctid, to update it without a second index lookup),
-- state, and the reason it is refused (null: it moves). Checks in the reference's order:
-- code text, known, account, transition. A code named twice in one command: the second
-- sees the state the first left (INVALID_TRANSITION after a move, the same refusal after
-- a refusal).
CREATE FUNCTION ml_classify(e events)
RETURNS TABLE (ord bigint, code text, tid tid, gtin text, status smallint, reason text)
LANGUAGE sql STABLE AS $$
    WITH input AS (
        SELECT u.ord, u.code, c.ctid AS tid, c.aid AS owner, c.gtin, c.status,
               row_number() OVER (PARTITION BY u.code ORDER BY u.ord) AS occurrence
        FROM unnest(e.codes) WITH ORDINALITY AS u(code, ord)
        LEFT JOIN codes c ON c.code = u.code
    ), classified AS (
        SELECT ord, code, tid, gtin, status, occurrence,
            CASE
                WHEN NOT ml_is_code(code) THEN 'BAD_CODE'
                WHEN owner IS NULL THEN 'UNKNOWN_CODE'
                WHEN owner <> e.aid THEN 'WRONG_ACCOUNT'
                WHEN e.kind IN ('application', 'dropout') AND status = 0 THEN NULL
                WHEN e.kind = 'defect' AND status IN (1, 2) THEN NULL
                WHEN e.kind = 'introduction' AND status = 2 THEN NULL
                WHEN e.kind = 'introduction' AND status = 1 THEN 'CODE_UNPAID'
                ELSE 'INVALID_TRANSITION'
            END AS reason
        FROM input
    )
    SELECT ord, code, tid, gtin, status,
        CASE WHEN occurrence > 1 THEN coalesce(reason, 'INVALID_TRANSITION') ELSE reason END
    FROM classified
    ORDER BY ord
$$;

CREATE FUNCTION ml_reject_codes(e events, p_codes text[], p_reasons text[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rejection_out (event, type, account, code, reason, detail)
    SELECT e.id, e.kind, e.account, c, r, r
    FROM unnest(p_codes, p_reasons) AS x(c, r);
END $$;

-- After ml_move_codes' update, per code of the command in its order: the reason it was
-- refused (null: it moved). The update left every code it did not move as it was, so the
-- checks read the state the command met; `moved_by` tells the moved ones apart.
CREATE FUNCTION ml_classify_moved(e events)
RETURNS TABLE (ord bigint, code text, gtin text, reason text)
LANGUAGE sql STABLE AS $$
    WITH input AS (
        SELECT u.ord, u.code, c.aid AS owner, c.gtin, c.status, c.moved_by,
               row_number() OVER (PARTITION BY u.code ORDER BY u.ord) AS occurrence
        FROM unnest(e.codes) WITH ORDINALITY AS u(code, ord)
        LEFT JOIN codes c ON c.code = u.code
    ), classified AS (
        SELECT ord, code, gtin, occurrence,
            CASE
                WHEN NOT ml_is_code(code) THEN 'BAD_CODE'
                WHEN owner IS NULL THEN 'UNKNOWN_CODE'
                WHEN owner <> e.aid THEN 'WRONG_ACCOUNT'
                WHEN moved_by = e.seq THEN NULL
                WHEN e.kind = 'introduction' AND status = 1 THEN 'CODE_UNPAID'
                ELSE 'INVALID_TRANSITION'
            END AS reason
        FROM input
    )
    SELECT ord, code, gtin,
        CASE WHEN occurrence > 1 THEN coalesce(reason, 'INVALID_TRANSITION') ELSE reason END
    FROM classified
    ORDER BY ord
$$;

-- Moves the command's codes that are the account's and in `p_from` to `p_to` in one
-- statement (an index scan over the sorted codes), and returns the moved codes in command
-- order. When every code moved and they are of one product (nearly always), the command's
-- own array is the answer; otherwise ml_classify_moved sorts out which moved and why the
-- others were refused, and those are refused or held.
CREATE FUNCTION ml_move_codes(e events, p_from smallint, p_to smallint, p_paid boolean, p_may_hold boolean,
                              OUT moved_codes text[], OUT moved_gtins text[])
LANGUAGE plpgsql AS $$
DECLARE
    v_moved bigint;
    v_first_gtin text;
    v_last_gtin text;
    v_refused text[];
    v_reasons text[];
BEGIN
    WITH moved AS (
        UPDATE codes SET status = p_to, paid = paid OR p_paid, moved_by = e.seq
        WHERE code = ANY (e.codes) AND aid = e.aid AND status = p_from
        RETURNING gtin
    )
    SELECT count(*), min(gtin), max(gtin) INTO v_moved, v_first_gtin, v_last_gtin FROM moved;
    IF v_moved = cardinality(e.codes) AND v_first_gtin = v_last_gtin THEN
        moved_codes := e.codes;
        moved_gtins := array_fill(v_first_gtin, ARRAY[v_moved::int]);
        RETURN;
    END IF;
    SELECT array_agg(code) FILTER (WHERE reason IS NULL),
           array_agg(gtin) FILTER (WHERE reason IS NULL),
           array_agg(code) FILTER (WHERE reason IS NOT NULL),
           array_agg(reason) FILTER (WHERE reason IS NOT NULL)
    INTO moved_codes, moved_gtins, v_refused, v_reasons
    FROM ml_classify_moved(e);
    IF v_refused IS NOT NULL THEN
        PERFORM ml_refuse_or_hold(e, v_refused, v_reasons, p_may_hold);
    END IF;
END $$;

-- Refused codes of a command; on its first attempt, a code nobody emitted yet is held
-- instead, until ts + hold (or the instant it took effect, if later).
CREATE FUNCTION ml_refuse_or_hold(e events, p_codes text[], p_reasons text[], p_may_hold boolean)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_may_hold AND 'UNKNOWN_CODE' = ANY (p_reasons) THEN
        INSERT INTO holds (hold, ord, code, deadline)
        SELECT e.seq, ord, code, greatest(e.ts + (SELECT hold FROM run_info), e.effective)
        FROM unnest(p_codes, p_reasons) WITH ORDINALITY AS u(code, reason, ord)
        WHERE reason = 'UNKNOWN_CODE';
        INSERT INTO rejection_out (event, type, account, code, reason, detail)
        SELECT e.id, e.kind, e.account, code, reason, reason
        FROM unnest(p_codes, p_reasons) AS u(code, reason)
        WHERE reason <> 'UNKNOWN_CODE';
    ELSE
        PERFORM ml_reject_codes(e, p_codes, p_reasons);
    END IF;
END $$;

-- A held code takes effect right after its emission: each command waiting for some of
-- the codes just created is applied to them, in hold order, codes in the command's own
-- order (DOMAIN.md §3: "the order of codes inside the report"; markledger's dataflow
-- does the same, its reference engine takes them in emission order), a code named twice
-- twice.
CREATE FUNCTION ml_resolve_holds(p_created text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    held events%ROWTYPE;
BEGIN
    FOR r IN
        SELECT hold, array_agg(code ORDER BY ord) AS codes
        FROM holds WHERE code = ANY (p_created)
        GROUP BY hold ORDER BY hold
    LOOP
        SELECT * INTO held FROM events WHERE seq = r.hold;
        held.codes := r.codes;
        IF held.kind = 'application' THEN
            PERFORM ml_application(held, false);
        ELSE
            PERFORM ml_code_command(held, false);
        END IF;
    END LOOP;
    DELETE FROM holds WHERE code = ANY (p_created);
END $$;

-- Holds whose deadline is before `p_until` end: their codes are refused UNKNOWN_CODE.
CREATE FUNCTION ml_end_holds(p_until timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    WITH ended AS (
        DELETE FROM holds WHERE deadline < p_until RETURNING *
    )
    INSERT INTO rejection_out (event, type, account, code, reason, detail)
    SELECT ev.id, ev.kind, ev.account, x.code, 'UNKNOWN_CODE', 'code was not emitted within the hold'
    FROM ended x JOIN events ev ON ev.seq = x.hold
    ORDER BY x.deadline, x.hold, x.ord;
END $$;

-- Status records of one command: one per (gtin, from, to), codes in command order. Most
-- commands name one product and move every code the same way: one record, no grouping.
CREATE FUNCTION ml_status_records(e events, p_codes text[], p_gtins text[], p_from smallint, p_to smallint)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF cardinality(p_codes) IS NULL OR cardinality(p_codes) = 0 THEN
        RETURN;
    END IF;
    IF p_gtins[1] = ALL (p_gtins) THEN
        INSERT INTO status_out (event, aid, gtin, from_status, to_status, ts, late, codes)
        VALUES (e.id, e.aid, p_gtins[1], p_from, p_to, e.ts, e.late, p_codes);
    ELSE
        INSERT INTO status_out (event, aid, gtin, from_status, to_status, ts, late, codes)
        SELECT e.id, e.aid, gtin, p_from, p_to, e.ts, e.late, array_agg(code ORDER BY ord)
        FROM unnest(p_codes, p_gtins) WITH ORDINALITY AS u(code, gtin, ord)
        GROUP BY gtin ORDER BY gtin;
    END IF;
END $$;

-- FIFO settlement (DOMAIN.md §3): pay from the head while the balance covers it, never
-- skipping the head. The paid codes are a prefix of the queue: those whose running total
-- of charges fits the balance. No more than balance / (cheapest charge) codes can be
-- paid, which bounds the rows read.
CREATE FUNCTION ml_settle_queue(e events) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_balance numeric;
    v_unpaid bigint;
    v_head numeric;
    v_limit bigint;
    v_last bigint;
    v_paid bigint;
    v_total numeric;
    v_codes text[];
BEGIN
    SELECT balance, unpaid_codes INTO v_balance, v_unpaid FROM accounts WHERE aid = e.aid;
    IF v_unpaid = 0 THEN
        RETURN;
    END IF;
    SELECT charge INTO v_head FROM unpaid_queue WHERE aid = e.aid ORDER BY qseq LIMIT 1;
    IF v_balance < v_head THEN
        RETURN;
    END IF;
    v_limit := floor(v_balance / (SELECT min(net_price + net_price * vat_rate) FROM tariffs));
    SELECT max(qseq), count(*), sum(charge) INTO v_last, v_paid, v_total
    FROM (SELECT qseq, charge, sum(charge) OVER (ORDER BY qseq) AS running
          FROM (SELECT qseq, charge FROM unpaid_queue WHERE aid = e.aid ORDER BY qseq LIMIT v_limit) AS head
         ) AS prefix
    WHERE running <= v_balance;
    WITH taken AS (
        DELETE FROM unpaid_queue WHERE aid = e.aid AND qseq <= v_last RETURNING code
    )
    SELECT array_agg(code) INTO v_codes FROM taken;
    -- An annulled code is paid but stays ANNULLED.
    WITH paid AS (
        UPDATE codes SET paid = true, status = CASE WHEN status = 1 THEN 2 ELSE status END
        WHERE code = ANY (v_codes)
        RETURNING code, gtin, status
    )
    INSERT INTO status_out (event, aid, gtin, from_status, to_status, ts, late, codes)
    SELECT e.id, e.aid, gtin, 1, 2, e.ts, e.late, array_agg(code ORDER BY code)
    FROM paid WHERE status = 2 GROUP BY gtin ORDER BY gtin;
    UPDATE accounts
    SET balance = balance - v_total, unpaid_codes = unpaid_codes - v_paid,
        unpaid_amount = unpaid_amount - v_total
    WHERE aid = e.aid;
    PERFORM ml_ledger(e, 'charge', v_total, v_paid);
    PERFORM ml_touch(e);
END $$;

-- payment and compensation.
CREATE FUNCTION ml_credit(e events) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_amount numeric := ml_decimal(e.amount);
BEGIN
    IF NOT ml_amount_ok(v_amount) THEN
        PERFORM ml_reject(e, NULL, 'BAD_AMOUNT', 'amount must be > 0 with at most 2 decimals');
        RETURN;
    END IF;
    UPDATE accounts SET balance = balance + v_amount WHERE aid = e.aid;
    PERFORM ml_ledger(e, e.kind, v_amount, NULL);
    PERFORM ml_touch(e);
    PERFORM ml_settle_queue(e);
END $$;

CREATE FUNCTION ml_refund(e events) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_amount numeric := ml_decimal(e.amount);
    a accounts%ROWTYPE;
BEGIN
    IF NOT ml_amount_ok(v_amount) THEN
        PERFORM ml_reject(e, NULL, 'BAD_AMOUNT', 'amount must be > 0 with at most 2 decimals');
        RETURN;
    END IF;
    SELECT * INTO a FROM accounts WHERE aid = e.aid;
    IF a.unpaid_codes > 0 THEN
        PERFORM ml_reject(e, NULL, 'REFUND_UNPAID_CODES', a.unpaid_codes || ' codes are unpaid');
    ELSIF a.pending_orders > 0 THEN
        PERFORM ml_reject(e, NULL, 'REFUND_PENDING_ORDER', a.pending_orders || ' orders are pending');
    ELSIF v_amount > a.balance THEN
        PERFORM ml_reject(e, NULL, 'REFUND_EXCEEDS_BALANCE', 'refund exceeds balance');
    ELSE
        UPDATE accounts SET balance = balance - v_amount WHERE aid = e.aid;
        PERFORM ml_ledger(e, 'refund', v_amount, NULL);
        PERFORM ml_touch(e);
    END IF;
END $$;

CREATE FUNCTION ml_tariff(e events) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_net numeric := ml_decimal(e.net_price);
    v_vat numeric := ml_decimal(e.vat_rate);
BEGIN
    IF v_net IS NULL OR v_vat IS NULL OR v_net <= 0 OR v_vat < 0 OR v_vat >= 1 THEN
        PERFORM ml_reject(e, NULL, 'BAD_AMOUNT', 'tariff needs net_price > 0 and 0 <= vat_rate < 1');
    ELSIF e.effective_from < e.effective THEN
        PERFORM ml_reject(e, NULL, 'TARIFF_RETROACTIVE', 'tariff takes effect before its event');
    ELSE
        INSERT INTO tariffs VALUES (e.effective_from, v_net, v_vat)
        ON CONFLICT (effective_from) DO UPDATE SET net_price = excluded.net_price, vat_rate = excluded.vat_rate;
    END IF;
END $$;

CREATE FUNCTION ml_order(e events) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT ml_is_gtin(e.gtin) THEN
        PERFORM ml_reject(e, NULL, 'BAD_GTIN', 'not a GTIN-14 with a valid check digit');
        RETURN;
    END IF;
    INSERT INTO orders (aid, order_id, gtin, quantity) VALUES (e.aid, e.order_id, e.gtin, e.quantity)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        PERFORM ml_reject(e, NULL, 'ALREADY_EXISTS', 'order already exists');
        RETURN;
    END IF;
    UPDATE accounts SET pending_orders = pending_orders + 1 WHERE aid = e.aid;
    PERFORM ml_touch(e);
END $$;

CREATE FUNCTION ml_order_cancel(e events) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    o orders%ROWTYPE;
BEGIN
    SELECT * INTO o FROM orders WHERE aid = e.aid AND order_id = e.order_id;
    IF NOT FOUND THEN
        PERFORM ml_reject(e, NULL, 'UNKNOWN_ORDER', 'account has no such order');
    ELSIF o.cancelled OR o.emitted >= o.quantity THEN
        PERFORM ml_reject(e, NULL, 'INVALID_TRANSITION', 'order is already finished');
    ELSE
        UPDATE orders SET cancelled = true WHERE aid = e.aid AND order_id = e.order_id;
        UPDATE accounts SET pending_orders = pending_orders - 1 WHERE aid = e.aid;
        PERFORM ml_touch(e);
    END IF;
END $$;

CREATE FUNCTION ml_emission(e events) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    o orders%ROWTYPE;
    v_count bigint := cardinality(e.codes);
    v_remaining bigint;
    v_created bigint;
    v_created_codes text[];
    v_deadline timestamptz;
BEGIN
    IF NOT ml_is_gtin(e.gtin) THEN
        PERFORM ml_reject(e, NULL, 'BAD_GTIN', 'not a GTIN-14 with a valid check digit');
        RETURN;
    END IF;
    SELECT * INTO o FROM orders WHERE aid = e.aid AND order_id = e.order_id;
    IF NOT FOUND THEN
        PERFORM ml_reject(e, NULL, 'UNKNOWN_ORDER', 'account has no such order');
        RETURN;
    END IF;
    IF o.gtin <> e.gtin THEN
        PERFORM ml_reject(e, NULL, 'GTIN_MISMATCH', 'the order is for another GTIN');
        RETURN;
    END IF;
    v_remaining := CASE WHEN o.cancelled THEN 0 ELSE o.quantity - o.emitted END;
    IF v_count > v_remaining THEN
        PERFORM ml_reject(e, NULL, 'ORDER_EXCEEDED', v_count || ' codes exceed the ' || v_remaining || ' remaining');
        RETURN;
    END IF;
    -- Every code named counts against the order, whatever becomes of it.
    UPDATE orders SET emitted = emitted + v_count WHERE aid = e.aid AND order_id = e.order_id;
    IF o.emitted + v_count = o.quantity AND v_count > 0 THEN
        UPDATE accounts SET pending_orders = pending_orders - 1 WHERE aid = e.aid;
        PERFORM ml_touch(e);
    END IF;
    -- Nearly always every code is new: a plain insert, whose unique index checks each code
    -- as it inserts it. If one exists already (or is named twice), the block rolls back
    -- and the insert is redone skipping the existing ones (a code named twice conflicts
    -- with its own first insertion).
    BEGIN
        WITH created AS (
            INSERT INTO codes (code, aid, gtin, status, emission)
            SELECT u.code, e.aid, e.gtin, 0, e.seq FROM unnest(e.codes) AS u(code)
            WHERE ml_is_code(u.code)
            RETURNING code
        ), status_record AS (
            INSERT INTO status_out (event, aid, gtin, from_status, to_status, ts, late, codes)
            SELECT e.id, e.aid, e.gtin, NULL, 0, e.ts, e.late, array_agg(code)
            FROM created HAVING count(*) > 0
        )
        SELECT count(*), array_agg(code) INTO v_created, v_created_codes FROM created;
    EXCEPTION WHEN unique_violation THEN
        WITH created AS (
            INSERT INTO codes (code, aid, gtin, status, emission)
            SELECT u.code, e.aid, e.gtin, 0, e.seq FROM unnest(e.codes) AS u(code)
            WHERE ml_is_code(u.code)
            ON CONFLICT (code) DO NOTHING
            RETURNING code
        ), status_record AS (
            INSERT INTO status_out (event, aid, gtin, from_status, to_status, ts, late, codes)
            SELECT e.id, e.aid, e.gtin, NULL, 0, e.ts, e.late, array_agg(code)
            FROM created HAVING count(*) > 0
        )
        SELECT count(*), array_agg(code) INTO v_created, v_created_codes FROM created;
    END;
    IF v_created < v_count THEN
        -- Some codes were refused (rare): find which, in the emission's order.
        INSERT INTO rejection_out (event, type, account, code, reason, detail)
        SELECT e.id, e.kind, e.account, code,
               CASE WHEN NOT ml_is_code(code) THEN 'BAD_CODE' ELSE 'ALREADY_EXISTS' END, 'code refused'
        FROM (SELECT u.ord, u.code, c.emission,
                     row_number() OVER (PARTITION BY u.code ORDER BY u.ord) AS occurrence
              FROM unnest(e.codes) WITH ORDINALITY AS u(code, ord)
              LEFT JOIN codes c ON c.code = u.code) AS named
        WHERE NOT ml_is_code(code) OR occurrence > 1 OR emission IS DISTINCT FROM e.seq
        ORDER BY ord;
    END IF;
    IF v_created > 0 THEN
        SELECT expiry_deadline INTO v_deadline FROM deadlines
        WHERE day = (e.ts AT TIME ZONE 'Asia/Almaty')::date;
        INSERT INTO expiries VALUES (greatest(v_deadline, e.effective), e.seq, e.aid, e.gtin);
        IF EXISTS (SELECT 1 FROM holds) THEN
            PERFORM ml_resolve_holds(v_created_codes);
        END IF;
    END IF;
END $$;

-- application: EMITTED codes join the FIFO queue at the tariff of the application's ts.
-- When the queue was empty, the first balance / charge of them are paid at once;
-- otherwise nothing is paid (the head was unaffordable and still is).
CREATE FUNCTION ml_application(e events, p_may_hold boolean) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_charge numeric := ml_charge_at(e.ts);
    v_balance numeric;
    v_unpaid bigint;
    v_cap bigint;
    v_all_paid boolean;
    v_applied bigint;
    v_paid bigint;
    v_codes text[];
    v_gtins text[];
BEGIN
    SELECT balance, unpaid_codes INTO v_balance, v_unpaid FROM accounts WHERE aid = e.aid;
    -- How many can be paid at once: none behind an unaffordable head, else balance / charge.
    v_cap := CASE WHEN v_unpaid = 0 THEN floor(v_balance / v_charge) ELSE 0 END;
    v_all_paid := v_cap >= cardinality(e.codes);
    SELECT * INTO v_codes, v_gtins
    FROM ml_move_codes(e, 0::smallint, CASE WHEN v_all_paid THEN 2 ELSE 1 END::smallint, v_all_paid, p_may_hold);
    v_applied := coalesce(cardinality(v_codes), 0);
    IF v_applied = 0 THEN
        RETURN;
    END IF;
    v_paid := least(v_applied, v_cap);
    IF NOT v_all_paid AND v_paid > 0 THEN
        UPDATE codes SET status = 2, paid = true WHERE code = ANY (v_codes[1:v_paid]);
    END IF;
    IF v_paid < v_applied THEN
        INSERT INTO unpaid_queue (aid, qseq, code, gtin, charge)
        SELECT e.aid, e.seq::bigint * 1000000000 + v_paid + ord, code, gtin, v_charge
        FROM unnest(v_codes[v_paid + 1:], v_gtins[v_paid + 1:]) WITH ORDINALITY AS u(code, gtin, ord);
    END IF;
    PERFORM ml_status_records(e, v_codes[1:v_paid], v_gtins[1:v_paid], 0::smallint, 2::smallint);
    PERFORM ml_status_records(e, v_codes[v_paid + 1:], v_gtins[v_paid + 1:], 0::smallint, 1::smallint);
    UPDATE accounts
    SET balance = balance - v_paid * v_charge,
        unpaid_codes = unpaid_codes + (v_applied - v_paid),
        unpaid_amount = unpaid_amount + (v_applied - v_paid) * v_charge
    WHERE aid = e.aid;
    PERFORM ml_touch(e);
    IF v_paid > 0 THEN
        PERFORM ml_ledger(e, 'charge', v_paid * v_charge, v_paid);
    END IF;
END $$;

-- dropout, defect, introduction: status changes only.
CREATE FUNCTION ml_code_command(e events, p_may_hold boolean) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v_to smallint := CASE e.kind WHEN 'dropout' THEN 4 WHEN 'defect' THEN 5 ELSE 3 END;
    v_source smallint;
    v_deadline timestamptz;
    v_tids tid[];
    v_codes text[];
    v_gtins text[];
    v_from smallint[];
    v_refused text[];
    v_reasons text[];
BEGIN
    -- A resolved hold was checked when it first took effect.
    IF e.kind = 'defect' AND p_may_hold THEN
        SELECT defect_deadline INTO v_deadline FROM deadlines WHERE day = e.act_date;
        IF e.ts >= v_deadline THEN
            PERFORM ml_reject(e, NULL, 'DEFECT_REPORT_LATE', 'defect act reported after its deadline');
            RETURN;
        END IF;
    END IF;
    IF e.kind <> 'defect' THEN
        -- dropout (from EMITTED) and introduction (from APPLIED_PAID): one source status.
        v_source := CASE e.kind WHEN 'introduction' THEN 2 ELSE 0 END;
        SELECT * INTO v_codes, v_gtins FROM ml_move_codes(e, v_source, v_to, false, p_may_hold);
        IF v_codes IS NOT NULL THEN
            PERFORM ml_status_records(e, v_codes, v_gtins, v_source, v_to);
        END IF;
        RETURN;
    END IF;
    -- defect (from APPLIED_UNPAID or APPLIED_PAID): classify first, then move.
    SELECT array_agg(tid) FILTER (WHERE reason IS NULL),
           array_agg(code) FILTER (WHERE reason IS NULL),
           array_agg(gtin) FILTER (WHERE reason IS NULL),
           array_agg(status) FILTER (WHERE reason IS NULL),
           array_agg(code) FILTER (WHERE reason IS NOT NULL),
           array_agg(reason) FILTER (WHERE reason IS NOT NULL)
    INTO v_tids, v_codes, v_gtins, v_from, v_refused, v_reasons
    FROM ml_classify(e);
    IF v_refused IS NOT NULL THEN
        PERFORM ml_refuse_or_hold(e, v_refused, v_reasons, p_may_hold);
    END IF;
    IF v_tids IS NULL THEN
        RETURN;
    END IF;
    UPDATE codes SET status = v_to, moved_by = e.seq WHERE ctid = ANY (v_tids);
    IF v_from[1] = ALL (v_from) THEN
        PERFORM ml_status_records(e, v_codes, v_gtins, v_from[1], v_to);
    ELSE
        -- A defect report naming both unpaid and paid codes.
        INSERT INTO status_out (event, aid, gtin, from_status, to_status, ts, late, codes)
        SELECT e.id, e.aid, gtin, from_status, v_to, e.ts, e.late, array_agg(code ORDER BY ord)
        FROM unnest(v_codes, v_gtins, v_from) WITH ORDINALITY AS u(code, gtin, from_status, ord)
        GROUP BY gtin, from_status ORDER BY gtin, from_status;
    END IF;
END $$;

-- Expiry (DOMAIN.md §2): at each due deadline, the emission's codes still EMITTED expire;
-- one record per emission, carrying the deadline as ts and no event.
CREATE FUNCTION ml_fire_expiries(p_until timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    due record;
    v_codes text[];
BEGIN
    FOR due IN DELETE FROM expiries WHERE deadline <= p_until RETURNING * LOOP
        SELECT codes INTO v_codes FROM events WHERE seq = due.emission;
        WITH expired AS (
            UPDATE codes SET status = 6
            WHERE code = ANY (v_codes) AND status = 0 AND emission = due.emission
            RETURNING code
        )
        INSERT INTO status_out (event, aid, gtin, from_status, to_status, ts, late, codes)
        SELECT NULL, due.aid, due.gtin, 0, 6, due.deadline, false, array_agg(code ORDER BY code)
        FROM expired HAVING count(*) > 0;
    END LOOP;
END $$;

-- The whole run: every event in account order, expiries and hold ends interleaved at
-- their instants.
CREATE FUNCTION ml_run() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    e events%ROWTYPE;
    v_instant timestamptz;
    v_next_expiry timestamptz;
    v_end timestamptz := (SELECT watermark_end FROM run_info);
    v_accounts int[] := '{}';      -- accounts of the current instant's events
BEGIN
    FOR e IN SELECT * FROM events ORDER BY seq LOOP
        IF v_instant IS DISTINCT FROM e.effective THEN
            -- The previous instant ends; then time-driven changes due by this one.
            -- Holds end after the events of their instant, so before the next instant.
            IF (SELECT min(deadline) FROM holds) < e.effective THEN
                PERFORM ml_end_holds(e.effective);
            END IF;
            PERFORM ml_flush_balances(v_accounts);
            v_accounts := '{}';
            v_instant := e.effective;
            SELECT min(deadline) INTO v_next_expiry FROM expiries;
            IF v_next_expiry <= v_instant THEN
                PERFORM ml_fire_expiries(v_instant);
            END IF;
        END IF;
        IF e.aid IS NOT NULL AND NOT e.aid = ANY (v_accounts) THEN
            v_accounts := v_accounts || e.aid;
        END IF;
        IF e.duplicate THEN
            PERFORM ml_reject(e, NULL, 'DUPLICATE', 'event id already seen');
            CONTINUE;
        END IF;
        CASE e.kind
            WHEN 'payment', 'compensation' THEN PERFORM ml_credit(e);
            WHEN 'refund' THEN PERFORM ml_refund(e);
            WHEN 'tariff' THEN PERFORM ml_tariff(e);
            WHEN 'order' THEN PERFORM ml_order(e);
            WHEN 'order_cancel' THEN PERFORM ml_order_cancel(e);
            WHEN 'emission' THEN PERFORM ml_emission(e);
            WHEN 'application' THEN PERFORM ml_application(e, true);
            ELSE PERFORM ml_code_command(e, true);
        END CASE;
    END LOOP;
    -- Commands still waiting for their codes at the end of the input are refused.
    PERFORM ml_end_holds('infinity');
    PERFORM ml_flush_balances(v_accounts);
    -- The watermark stops at the largest ts read: deadlines up to it fire, later ones never.
    PERFORM ml_fire_expiries(v_end);
END $$;
