//! "Periods: revisions" — period aggregates as revisions (DOMAIN.md §6, §8).
//!
//! In: facts, exchanged by the account they belong to (`"*"` for the turnover total row and
//! the payment register). Out: period records. Facts are additive, so a late fact only adds
//! to its record; every record changed in an instant gets one new revision at the end of the
//! instant, and a period's close adds the revision with `final: true`. Reconciliation and
//! turnover rows derive from money movements per (account, period): an opening is the sum
//! of every earlier period's movements, and each month the watermark enters carries every
//! account's balance into it. Closed periods never change (asserted).

use crate::flow::{time_of, ts_of, Fact};
use crate::machine::{Machine, Time};
use crate::money::Money;
use crate::output::{AggregateKind, Figures, Output, PeriodKey, PeriodRecord};
use crate::time::{Period, Ts};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    MonthStart(Period),
    Close(Period),
}

/// The aggregates of one worker's accounts.
pub struct Periods {
    close_after_days: u32,
    figures: BTreeMap<PeriodKey, Figures>,
    movements: BTreeMap<String, BTreeMap<Period, [Money; 4]>>,
    emitted: BTreeMap<PeriodKey, (u64, bool, Figures)>,
    by_period: BTreeMap<Period, BTreeSet<PeriodKey>>,
    dirty: BTreeSet<PeriodKey>,
    current: Option<Period>,
    timers: BTreeSet<(Ts, Timer)>,
}

fn key(kind: AggregateKind, account: &str, period: Period, sub: Option<String>) -> PeriodKey {
    PeriodKey {
        kind,
        account: account.to_string(),
        period,
        sub,
    }
}

fn zero(kind: AggregateKind) -> Figures {
    match kind {
        AggregateKind::Act => Figures::Act {
            codes_paid: 0,
            net: Money::ZERO,
            vat: Money::ZERO,
            gross: Money::ZERO,
        },
        AggregateKind::Product => Figures::Product {
            codes_emitted: 0,
            codes_applied: 0,
            codes_paid: 0,
            first_application: None,
            last_application: None,
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
        _ => unreachable!("set whole, or derived from movements"),
    }
}

fn add_count(count: &mut u64, delta: i64) {
    *count = count
        .checked_add_signed(delta)
        .expect("a counter never goes below zero");
}

impl Periods {
    /// No aggregates yet.
    pub fn new(close_after_days: u32) -> Periods {
        Periods {
            close_after_days,
            figures: BTreeMap::new(),
            movements: BTreeMap::new(),
            emitted: BTreeMap::new(),
            by_period: BTreeMap::new(),
            dirty: BTreeSet::new(),
            current: None,
            timers: BTreeSet::new(),
        }
    }

    fn closed(&self, period: Period, now: Ts) -> bool {
        period.close_instant(self.close_after_days) <= now
    }

    fn mark(&mut self, record: PeriodKey, now: Ts) {
        assert!(
            !self.closed(record.period, now),
            "closed period changed: {}",
            record.render()
        );
        self.dirty.insert(record);
    }

    fn accumulate(&mut self, record: PeriodKey, now: Ts, change: impl FnOnce(&mut Figures)) {
        let figures = self.figures.entry(record.clone()).or_insert_with(|| zero(record.kind));
        change(figures);
        self.mark(record, now);
    }

    fn money_rows(&mut self, account: &str, period: Period, now: Ts) {
        if account != "*" {
            self.mark(key(AggregateKind::Reconciliation, account, period, None), now);
        }
        self.mark(key(AggregateKind::Turnover, account, period, None), now);
    }

    fn apply(&mut self, fact: Fact, now: Ts) {
        match fact {
            Fact::Movement {
                account,
                period,
                amounts,
            } => {
                let row = self
                    .movements
                    .entry(account.clone())
                    .or_default()
                    .entry(period)
                    .or_default();
                for (total, amount) in row.iter_mut().zip(amounts) {
                    *total += amount;
                }
                // This period changes, and the opening of every later one up to now.
                let last = self.current.unwrap_or(period).max(period);
                let mut p = period;
                loop {
                    self.money_rows(&account, p, now);
                    if p >= last {
                        break;
                    }
                    p = p.next();
                }
            }
            Fact::Paid {
                account,
                period,
                gtin,
                count,
                net,
                vat,
            } => {
                self.accumulate(key(AggregateKind::Act, &account, period, None), now, |f| {
                    if let Figures::Act {
                        codes_paid,
                        net: n,
                        vat: v,
                        gross,
                    } = f
                    {
                        *codes_paid += count;
                        *n += net;
                        *v += vat;
                        *gross += net + vat;
                    }
                });
                self.accumulate(key(AggregateKind::Product, &account, period, Some(gtin)), now, |f| {
                    if let Figures::Product { codes_paid, .. } = f {
                        *codes_paid += count;
                    }
                });
            }
            Fact::Emitted {
                account,
                period,
                gtin,
                count,
            } => {
                self.accumulate(key(AggregateKind::Product, &account, period, Some(gtin)), now, |f| {
                    if let Figures::Product { codes_emitted, .. } = f {
                        *codes_emitted += count;
                    }
                });
            }
            Fact::Applied {
                account,
                period,
                gtin,
                count,
                at,
            } => {
                self.accumulate(key(AggregateKind::Product, &account, period, Some(gtin)), now, |f| {
                    if let Figures::Product {
                        codes_applied,
                        first_application,
                        last_application,
                        ..
                    } = f
                    {
                        *codes_applied += count;
                        *first_application = Some(first_application.map_or(at, |t| t.min(at)));
                        *last_application = Some(last_application.map_or(at, |t| t.max(at)));
                    }
                });
            }
            Fact::Payment {
                period,
                channel,
                day,
                amount,
            } => {
                for sub in [channel.clone(), format!("{channel}/{day}")] {
                    self.accumulate(key(AggregateKind::Payments, "*", period, Some(sub)), now, |f| {
                        if let Figures::Payments { count, amount: sum } = f {
                            *count += 1;
                            *sum += amount;
                        }
                    });
                }
            }
            Fact::Sla { account, period, delta } => {
                self.accumulate(key(AggregateKind::Sla, &account, period, None), now, |f| {
                    if let Figures::Sla {
                        orders,
                        emitted_within_4h,
                        late,
                        pending,
                    } = f
                    {
                        add_count(orders, delta[0]);
                        add_count(emitted_within_4h, delta[1]);
                        add_count(late, delta[2]);
                        add_count(pending, delta[3]);
                    }
                });
            }
            Fact::Debtor {
                account,
                period,
                unpaid_codes,
                amount_owed,
                oldest,
            } => {
                let record = key(AggregateKind::Debtors, &account, period, None);
                let figures = Figures::Debtors {
                    unpaid_codes,
                    amount_owed,
                    oldest_unpaid_application: oldest,
                };
                self.figures.insert(record.clone(), figures);
                self.mark(record, now);
            }
            Fact::RefundDue {
                account,
                period,
                balance,
                since,
            } => {
                let record = key(AggregateKind::RefundDue, &account, period, None);
                self.figures
                    .insert(record.clone(), Figures::RefundDue { balance, since });
                self.mark(record, now);
            }
        }
    }

    fn figures_of(&self, record: &PeriodKey) -> Figures {
        if !matches!(record.kind, AggregateKind::Reconciliation | AggregateKind::Turnover) {
            return self.figures.get(record).cloned().unwrap_or_else(|| zero(record.kind));
        }
        let rows = self.movements.get(&record.account);
        let net = |m: &[Money; 4]| m[0] + m[1] - m[2] - m[3];
        let opening: Money = rows.map_or(Money::ZERO, |rows| {
            rows.range(..record.period).map(|(_, m)| net(m)).sum()
        });
        let m = rows
            .and_then(|rows| rows.get(&record.period))
            .copied()
            .unwrap_or_default();
        let closing = opening + net(&m);
        if record.kind == AggregateKind::Reconciliation {
            Figures::Reconciliation {
                opening,
                payments: m[0],
                compensations: m[1],
                services: m[2],
                refunds: m[3],
                closing,
            }
        } else {
            Figures::Turnover {
                opening,
                charged: m[2],
                paid: m[0],
                compensations: m[1],
                refunds: m[3],
                closing,
            }
        }
    }

    fn flush(&mut self, now: Ts, out: &mut Vec<Output>) {
        for record in std::mem::take(&mut self.dirty) {
            let figures = self.figures_of(&record);
            let is_final = self.closed(record.period, now);
            let rev = match self.emitted.get(&record) {
                None if figures.is_zero() => continue,
                None => 1,
                Some((_, was_final, last)) if *last == figures && *was_final == is_final => continue,
                Some((rev, was_final, _)) => {
                    assert!(!was_final, "a final record changed: {}", record.render());
                    rev + 1
                }
            };
            self.emitted.insert(record.clone(), (rev, is_final, figures.clone()));
            if self.by_period.entry(record.period).or_default().insert(record.clone()) {
                let close = record.period.close_instant(self.close_after_days);
                if close > now {
                    self.timers.insert((close, Timer::Close(record.period)));
                }
            }
            out.push(Output::Period(PeriodRecord {
                key: record,
                rev,
                is_final,
                figures,
            }));
        }
    }
}

impl Machine for Periods {
    type In = Fact;
    type Out = Output;

    fn step(&mut self, now: Time, inputs: Vec<Fact>, out: &mut Vec<Output>) {
        let now = ts_of(now);
        if self.current.is_none() {
            let period = now.period();
            self.current = Some(period);
            self.timers.insert((period.end(), Timer::MonthStart(period.next())));
        }
        while self.timers.first().is_some_and(|(at, _)| *at <= now) {
            match self.timers.pop_first().expect("peeked").1 {
                Timer::MonthStart(period) => {
                    self.current = Some(period);
                    let accounts: Vec<String> = self.movements.keys().cloned().collect();
                    for account in accounts {
                        self.money_rows(&account, period, now);
                    }
                    self.timers.insert((period.end(), Timer::MonthStart(period.next())));
                }
                Timer::Close(period) => {
                    if let Some(records) = self.by_period.get(&period) {
                        self.dirty.extend(records.iter().cloned());
                    }
                }
            }
        }
        // Facts of one instant are additive: their order does not matter.
        for fact in inputs {
            self.apply(fact, now);
        }
        self.flush(now, out);
    }

    fn next_timer(&self) -> Option<Time> {
        self.timers.first().map(|(at, _)| time_of(*at))
    }

    fn finish(&mut self, _end: Time, _out: &mut Vec<Output>) {}
}
