//! Named quantities that both engines count (DOMAIN.md §6): money movements, from which
//! reconciliation and turnover rows derive, and emission SLA counts. Fields, never
//! positions: a swapped index in `[Money; 4]` would misstate a reconciliation silently.
//!
//! Serialized as their fields in order, so checkpoints written when these were arrays
//! (`[payments, compensations, services, refunds]`, `[orders, within 4 h, late, pending]`)
//! read back unchanged.

use crate::money::Money;
use serde::{Deserialize, Serialize};

/// Money moved on one account (or on all of them) in one period.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Movements {
    /// Payments received.
    pub payments: Money,
    /// Compensations credited.
    pub compensations: Money,
    /// Charges settled (services).
    pub services: Money,
    /// Refunds paid out.
    pub refunds: Money,
}

impl Movements {
    /// A payment.
    pub fn payment(amount: Money) -> Movements {
        Movements {
            payments: amount,
            ..Movements::default()
        }
    }

    /// A compensation.
    pub fn compensation(amount: Money) -> Movements {
        Movements {
            compensations: amount,
            ..Movements::default()
        }
    }

    /// Charges settled.
    pub fn services(amount: Money) -> Movements {
        Movements {
            services: amount,
            ..Movements::default()
        }
    }

    /// A refund.
    pub fn refund(amount: Money) -> Movements {
        Movements {
            refunds: amount,
            ..Movements::default()
        }
    }

    /// What the movements add to a balance: credits less debits.
    pub fn net(&self) -> Money {
        self.payments + self.compensations - self.services - self.refunds
    }

    /// Adds `other`, field by field.
    pub fn add(&mut self, other: &Movements) {
        self.payments += other.payments;
        self.compensations += other.compensations;
        self.services += other.services;
        self.refunds += other.refunds;
    }

    /// No money moved.
    pub fn is_zero(&self) -> bool {
        self.payments.is_zero() && self.compensations.is_zero() && self.services.is_zero() && self.refunds.is_zero()
    }
}

/// Emission SLA counts of one account and period (DOMAIN.md §6), or a change to them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SlaCounts {
    /// Orders placed.
    pub orders: i64,
    /// Orders emitted in full before their 4-hour deadline.
    pub emitted_within_4h: i64,
    /// Orders still pending when their deadline fired.
    pub late: i64,
    /// Orders neither emitted in full nor cancelled.
    pub pending: i64,
}

impl SlaCounts {
    /// An order placed (it is pending).
    pub const PLACED: SlaCounts = SlaCounts {
        orders: 1,
        emitted_within_4h: 0,
        late: 0,
        pending: 1,
    };

    /// An order's deadline fired while it was pending.
    pub const LATE: SlaCounts = SlaCounts {
        orders: 0,
        emitted_within_4h: 0,
        late: 1,
        pending: 0,
    };

    /// An order stopped being pending (cancelled, or emitted in full after its deadline).
    pub const FINISHED: SlaCounts = SlaCounts {
        orders: 0,
        emitted_within_4h: 0,
        late: 0,
        pending: -1,
    };

    /// An order emitted in full before its deadline.
    pub const EMITTED_WITHIN_4H: SlaCounts = SlaCounts {
        orders: 0,
        emitted_within_4h: 1,
        late: 0,
        pending: -1,
    };

    /// Adds `other`, field by field.
    pub fn add(&mut self, other: &SlaCounts) {
        self.orders += other.orders;
        self.emitted_within_4h += other.emitted_within_4h;
        self.late += other.late;
        self.pending += other.pending;
    }

    /// No count changes.
    pub fn is_zero(&self) -> bool {
        *self == SlaCounts::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn named_quantities_save_as_the_arrays_they_replace() {
        // A checkpoint written with [Money; 4] and [i64; 4] must restore into the named
        // structs: bincode writes both as their elements in order.
        let m = |text| Money::from_str(text).unwrap();
        let named = Movements {
            payments: m("1"),
            compensations: m("2"),
            services: m("3.0016"),
            refunds: m("4"),
        };
        let array = [m("1"), m("2"), m("3.0016"), m("4")];
        assert_eq!(crate::checkpoint::encode(&named), crate::checkpoint::encode(&array));
        let sla = SlaCounts {
            orders: 1,
            emitted_within_4h: 2,
            late: 3,
            pending: -4,
        };
        assert_eq!(
            crate::checkpoint::encode(&sla),
            crate::checkpoint::encode(&[1i64, 2, 3, -4])
        );
    }

    #[test]
    fn movements_net_credits_less_debits() {
        // net = payments + compensations − services − refunds.
        let m = |text| Money::from_str(text).unwrap();
        let mut total = Movements::payment(m("10"));
        total.add(&Movements::services(m("3.0016")));
        total.add(&Movements::refund(m("1")));
        total.add(&Movements::compensation(m("0.5")));
        assert_eq!(total.net(), m("6.4984"));
        assert!(!total.is_zero() && Movements::default().is_zero());
    }
}
