//! Period aggregates of the reference engine (DOMAIN.md §6, §8), kept as plain ordered maps.
//!
//! Figures accumulate per key as events are accounted; reconciliation and turnover rows are
//! derived from per-(account, period) money movements, so an opening is always the sum of
//! everything before it. At the end of every instant the engine asks [`Aggregates::flush`]
//! for the records that changed; each change is one revision (`rev`), and a period's close
//! adds the revision that carries `final: true`. Closed periods never change: accounting
//! into one is a bug and asserts.

use markledger_operators::money::Money;
use markledger_operators::movements::{Movements, SlaCounts};
use markledger_operators::output::{AggregateKind, Figures, PeriodKey, PeriodRecord, RefundReason};
use markledger_operators::{Period, Ts};
use std::collections::{BTreeMap, BTreeSet};

/// The account used for totals and registers.
pub const ALL_ACCOUNTS: &str = "*";

/// Every aggregate, its last emitted revision, and what changed in the current instant.
#[derive(Debug, Default)]
pub struct Aggregates {
    /// Days into the next month a period stays open.
    pub close_after_days: u32,
    /// The latest period the watermark has entered.
    pub current_period: Option<Period>,
    /// Figures that are accumulated directly (act, product, debtors, payments, sla,
    /// refund_due).
    figures: BTreeMap<PeriodKey, Figures>,
    /// Money movements per (account, period).
    movements: BTreeMap<(String, Period), Movements>,
    /// Money movements of all accounts per period (the turnover total row).
    totals: BTreeMap<Period, Movements>,
    /// Last emitted revision of every existing record.
    emitted: BTreeMap<PeriodKey, (u64, bool, Figures)>,
    /// Keys of existing records per period (to finalise them at close).
    by_period: BTreeMap<Period, BTreeSet<PeriodKey>>,
    /// Keys that may have changed in the current instant.
    dirty: BTreeSet<PeriodKey>,
    /// Balances of deleted accounts, by the period of their deletion: no longer carried into
    /// the `"*"` rows of later periods (DOMAIN.md §9).
    forgotten: BTreeMap<Period, Money>,
}

fn key(kind: AggregateKind, account: &str, period: Period, sub: Option<String>) -> PeriodKey {
    PeriodKey {
        kind,
        account: account.to_string(),
        period,
        sub,
    }
}

impl Aggregates {
    /// Empty aggregates.
    pub fn new(close_after_days: u32) -> Aggregates {
        Aggregates {
            close_after_days,
            ..Aggregates::default()
        }
    }

    /// True when `period` has closed by `now`.
    pub fn is_closed(&self, period: Period, now: Ts) -> bool {
        period.close_instant(self.close_after_days) <= now
    }

    /// The period an event with business time `ts` taking effect at `now` is accounted
    /// in: its own, or, when that has closed, the oldest period still open (an adjustment).
    pub fn accounting_period(&self, ts: Ts, now: Ts) -> Period {
        let own = ts.period();
        if !self.is_closed(own, now) {
            return own;
        }
        let mut oldest_open = now.period();
        while !self.is_closed(oldest_open.prev(), now) {
            oldest_open = oldest_open.prev();
        }
        oldest_open
    }

    fn touch(&mut self, key: PeriodKey, now: Ts) {
        assert!(
            !self.is_closed(key.period, now),
            "closed period {} changed at {}: {}",
            key.period,
            now,
            key.render()
        );
        self.dirty.insert(key);
    }

    fn entry(&mut self, key: &PeriodKey, empty: Figures) -> &mut Figures {
        self.figures.entry(key.clone()).or_insert(empty)
    }

    /// Records a money movement of `account` accounted in `period`.
    pub fn add_movement(&mut self, account: &str, period: Period, delta: Movements, now: Ts) {
        self.movements
            .entry((account.to_string(), period))
            .or_default()
            .add(&delta);
        self.totals.entry(period).or_default().add(&delta);
        // The movement changes this period and moves the opening of every later one.
        let last = self.current_period.unwrap_or(period).max(period);
        let mut p = period;
        loop {
            for kind in [AggregateKind::Reconciliation, AggregateKind::Turnover] {
                self.touch(key(kind, account, p, None), now);
            }
            self.touch(key(AggregateKind::Turnover, ALL_ACCOUNTS, p, None), now);
            if p >= last {
                break;
            }
            p = p.next();
        }
    }

    /// Codes paid: the act and the product detail of the settling event's period.
    pub fn add_paid(&mut self, account: &str, period: Period, gtin: &str, net: Money, vat: Money, now: Ts) {
        let act = key(AggregateKind::Act, account, period, None);
        if let Figures::Act {
            codes_paid,
            net: n,
            vat: v,
            gross,
        } = self.entry(
            &act,
            Figures::Act {
                codes_paid: 0,
                net: Money::ZERO,
                vat: Money::ZERO,
                gross: Money::ZERO,
            },
        ) {
            *codes_paid += 1;
            *n += net;
            *v += vat;
            *gross += net + vat;
        }
        self.touch(act, now);
        self.product(account, period, gtin, now, |codes_paid_field| codes_paid_field.2 += 1);
    }

    /// Codes emitted, for the product detail.
    pub fn add_emitted(&mut self, account: &str, period: Period, gtin: &str, count: u64, now: Ts) {
        self.product(account, period, gtin, now, |fields| fields.0 += count);
    }

    /// One code applied at `application_ts`, for the product detail.
    pub fn add_applied(&mut self, account: &str, period: Period, gtin: &str, application_ts: Ts, now: Ts) {
        let product_key = key(AggregateKind::Product, account, period, Some(gtin.to_string()));
        if let Figures::Product {
            codes_applied,
            first_application,
            last_application,
            ..
        } = self.entry(&product_key, empty_product())
        {
            *codes_applied += 1;
            *first_application = Some(first_application.map_or(application_ts, |t| t.min(application_ts)));
            *last_application = Some(last_application.map_or(application_ts, |t| t.max(application_ts)));
        }
        self.touch(product_key, now);
    }

    fn product(
        &mut self,
        account: &str,
        period: Period,
        gtin: &str,
        now: Ts,
        change: impl FnOnce(&mut (u64, u64, u64)),
    ) {
        let product_key = key(AggregateKind::Product, account, period, Some(gtin.to_string()));
        if let Figures::Product {
            codes_emitted,
            codes_applied,
            codes_paid,
            ..
        } = self.entry(&product_key, empty_product())
        {
            let mut fields = (*codes_emitted, *codes_applied, *codes_paid);
            change(&mut fields);
            (*codes_emitted, *codes_applied, *codes_paid) = fields;
        }
        self.touch(product_key, now);
    }

    /// One payment, for the payment register (per channel per month and per day).
    pub fn add_payment(&mut self, period: Period, channel: &str, day: &str, amount: Money, now: Ts) {
        for sub in [channel.to_string(), format!("{channel}/{day}")] {
            let register = key(AggregateKind::Payments, ALL_ACCOUNTS, period, Some(sub));
            if let Figures::Payments { count, amount: sum } = self.entry(
                &register,
                Figures::Payments {
                    count: 0,
                    amount: Money::ZERO,
                },
            ) {
                *count += 1;
                *sum += amount;
            }
            self.touch(register, now);
        }
    }

    /// Changes the emission SLA record of the period an order was accounted in. Once that
    /// period has closed its SLA record is frozen and later outcomes are not counted.
    pub fn change_sla(&mut self, account: &str, period: Period, now: Ts, change: SlaCounts) {
        if self.is_closed(period, now) {
            return;
        }
        let sla = key(AggregateKind::Sla, account, period, None);
        let zero = Figures::Sla {
            orders: 0,
            emitted_within_4h: 0,
            late: 0,
            pending: 0,
        };
        if let Figures::Sla {
            orders,
            emitted_within_4h,
            late,
            pending,
        } = self.entry(&sla, zero)
        {
            for (count, delta) in [
                (orders, change.orders),
                (emitted_within_4h, change.emitted_within_4h),
                (late, change.late),
                (pending, change.pending),
            ] {
                *count = count.checked_add_signed(delta).expect("SLA counts never go negative");
            }
        }
        self.touch(sla, now);
    }

    /// The debtors snapshot of `account` at the end of `period`.
    pub fn set_debtor(&mut self, account: &str, period: Period, figures: Figures, now: Ts) {
        let debtor = key(AggregateKind::Debtors, account, period, None);
        self.figures.insert(debtor.clone(), figures);
        self.touch(debtor, now);
    }

    /// A refund due reported at `now` (a dormant advance, or a termination's balance: the
    /// latter replaces the former in its period, DOMAIN.md §9).
    pub fn set_refund_due(&mut self, account: &str, balance: Money, since: Ts, reason: RefundReason, now: Ts) {
        let due = key(AggregateKind::RefundDue, account, now.period(), None);
        self.figures
            .insert(due.clone(), Figures::RefundDue { balance, since, reason });
        self.touch(due, now);
    }

    /// Every record of `account` in the periods `first..=last` as it stands at `now` (the
    /// revision the end of this instant emits, when one is pending), final ones only, in
    /// export order (DOMAIN.md §9).
    pub fn export(&self, account: &str, first: Period, last: Period, now: Ts) -> Vec<PeriodRecord> {
        let mut records: Vec<PeriodRecord> = self
            .emitted
            .keys()
            .filter(|k| k.account == account && k.period >= first && k.period <= last)
            .filter_map(|k| self.as_it_stands(k, now))
            .filter(|record| record.is_final)
            .collect();
        records.sort_by(|a, b| markledger_operators::rules::export_order(&a.key, &b.key));
        records
    }

    /// A record as it stands at `now`: its last revision, or the one `flush` would emit
    /// next.
    fn as_it_stands(&self, record: &PeriodKey, now: Ts) -> Option<PeriodRecord> {
        let (rev, last_final, last) = self.emitted.get(record)?;
        let figures = self.figures(record);
        let is_final = self.is_closed(record.period, now);
        let rev = if *last == figures && *last_final == is_final {
            *rev
        } else {
            rev + 1
        };
        Some(PeriodRecord {
            key: record.clone(),
            rev,
            is_final,
            figures,
        })
    }

    /// Emits the revisions pending for `account`'s records (before they are deleted).
    pub fn flush_account(&mut self, account: &str, now: Ts, emit: impl FnMut(PeriodRecord)) {
        let (mine, others): (BTreeSet<PeriodKey>, BTreeSet<PeriodKey>) = std::mem::take(&mut self.dirty)
            .into_iter()
            .partition(|k| k.account == account);
        self.dirty = mine;
        self.flush(now, emit);
        self.dirty = others;
    }

    /// Forgets everything of `account` (DOMAIN.md §9's deletion at `now`): gives every key
    /// it ever had a record for with that record's last revision, and stops carrying its
    /// balance into later periods' `"*"` rows. The `"*"` rows up to `now`'s period keep its
    /// share.
    pub fn delete_account(&mut self, account: &str, now: Ts) -> Vec<(PeriodKey, u64)> {
        let keys: Vec<(PeriodKey, u64)> = self
            .emitted
            .iter()
            .filter(|(k, _)| k.account == account)
            .map(|(k, (rev, _, _))| (k.clone(), *rev))
            .collect();
        for (k, _) in &keys {
            self.emitted.remove(k);
            self.figures.remove(k);
            if let Some(set) = self.by_period.get_mut(&k.period) {
                set.remove(k);
            }
        }
        self.figures.retain(|k, _| k.account != account);
        self.dirty.retain(|k| k.account != account);
        let mine: Vec<(String, Period)> = self.movements.keys().filter(|(a, _)| a == account).cloned().collect();
        let mut balance = Money::ZERO;
        for k in mine {
            if let Some(m) = self.movements.remove(&k) {
                balance += m.net();
            }
        }
        *self.forgotten.entry(now.period()).or_default() += balance;
        keys
    }

    /// A new month began at `now`: reconciliation and turnover rows carry every account's
    /// balance into it.
    pub fn begin_period(&mut self, period: Period, now: Ts) {
        self.current_period = Some(self.current_period.map_or(period, |p| p.max(period)));
        let accounts: BTreeSet<String> = self.movements.keys().map(|(account, _)| account.clone()).collect();
        for account in accounts {
            self.touch(key(AggregateKind::Reconciliation, &account, period, None), now);
            self.touch(key(AggregateKind::Turnover, &account, period, None), now);
        }
        self.touch(key(AggregateKind::Turnover, ALL_ACCOUNTS, period, None), now);
    }

    /// `period` closed at `now`: every record of it gets its final revision.
    pub fn close(&mut self, period: Period) {
        if let Some(keys) = self.by_period.get(&period) {
            self.dirty.extend(keys.iter().cloned());
        }
    }

    fn opening(&self, account: &str, period: Period) -> Money {
        if account == ALL_ACCOUNTS {
            let forgotten: Money = self.forgotten.range(..period).map(|(_, m)| *m).sum();
            return self.totals.range(..period).map(|(_, m)| m.net()).sum::<Money>() - forgotten;
        }
        let from = (account.to_string(), Period::new(i32::MIN, 1));
        let to = (account.to_string(), period);
        self.movements.range(from..to).map(|(_, m)| m.net()).sum()
    }

    fn movements_of(&self, account: &str, period: Period) -> Movements {
        if account == ALL_ACCOUNTS {
            return self.totals.get(&period).copied().unwrap_or_default();
        }
        self.movements
            .get(&(account.to_string(), period))
            .copied()
            .unwrap_or_default()
    }

    /// The current figures of a record.
    pub fn figures(&self, record: &PeriodKey) -> Figures {
        match record.kind {
            AggregateKind::Reconciliation | AggregateKind::Turnover => {
                let opening = self.opening(&record.account, record.period);
                let m = self.movements_of(&record.account, record.period);
                let closing = opening + m.payments + m.compensations - m.services - m.refunds;
                // The reconciliation identity of DOMAIN.md §6, exact.
                assert_eq!(
                    closing - opening,
                    m.net(),
                    "reconciliation identity broken for {}",
                    record.render()
                );
                if record.kind == AggregateKind::Reconciliation {
                    Figures::Reconciliation {
                        opening,
                        payments: m.payments,
                        compensations: m.compensations,
                        services: m.services,
                        refunds: m.refunds,
                        closing,
                    }
                } else {
                    Figures::Turnover {
                        opening,
                        charged: m.services,
                        paid: m.payments,
                        compensations: m.compensations,
                        refunds: m.refunds,
                        closing,
                    }
                }
            }
            _ => self
                .figures
                .get(record)
                .cloned()
                .unwrap_or_else(|| empty_of(record.kind)),
        }
    }

    /// The closing balance of `account` in `period` (for end-of-run checks).
    pub fn closing(&self, account: &str, period: Period) -> Money {
        self.opening(account, period.next())
    }

    /// Emits a revision for every record that changed (or became final) in this instant.
    pub fn flush(&mut self, now: Ts, mut emit: impl FnMut(PeriodRecord)) {
        let dirty = std::mem::take(&mut self.dirty);
        for record in dirty {
            let figures = self.figures(&record);
            let is_final = self.is_closed(record.period, now);
            let rev = match self.emitted.get(&record) {
                None if figures.is_zero() => continue,
                None => 1,
                Some((_, last_final, last)) if *last == figures && *last_final == is_final => continue,
                Some((rev, last_final, _)) => {
                    assert!(!last_final, "a final record changed: {}", record.render());
                    rev + 1
                }
            };
            self.emitted.insert(record.clone(), (rev, is_final, figures.clone()));
            self.by_period.entry(record.period).or_default().insert(record.clone());
            emit(PeriodRecord {
                key: record,
                rev,
                is_final,
                figures,
            });
        }
    }
}

fn empty_product() -> Figures {
    Figures::Product {
        codes_emitted: 0,
        codes_applied: 0,
        codes_paid: 0,
        first_application: None,
        last_application: None,
    }
}

fn empty_of(kind: AggregateKind) -> Figures {
    match kind {
        AggregateKind::Act => Figures::Act {
            codes_paid: 0,
            net: Money::ZERO,
            vat: Money::ZERO,
            gross: Money::ZERO,
        },
        AggregateKind::Product => empty_product(),
        AggregateKind::Debtors => Figures::Debtors {
            unpaid_codes: 0,
            amount_owed: Money::ZERO,
            oldest_unpaid_application: None,
        },
        AggregateKind::Payments => Figures::Payments {
            count: 0,
            amount: Money::ZERO,
        },
        AggregateKind::Sla => Figures::Sla {
            orders: 0,
            emitted_within_4h: 0,
            late: 0,
            pending: 0,
        },
        AggregateKind::RefundDue => Figures::RefundDue {
            balance: Money::ZERO,
            since: Ts(0),
            reason: RefundReason::Dormant,
        },
        AggregateKind::Reconciliation | AggregateKind::Turnover => unreachable!("derived from movements"),
    }
}
