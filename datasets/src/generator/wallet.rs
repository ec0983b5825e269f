//! The generator's model of one account's money: prepaid balance and FIFO settlement,
//! exactly as DOMAIN.md §3 has the engine do it, so the generator knows which codes are
//! paid (introductions of paid codes only, `CODE_UNPAID` on purpose) and how a refund
//! will be judged.
//!
//! Money is an integer number of ten-thousandths of a tenge ([`UNITS_PER_TENGE`]): every
//! charge (2.68 × 1.12 = 3.0016, 2.95 × 1.12 = 3.304) and every amount of at most two
//! decimals is whole in that unit, so the model is exact without decimals.
//!
//! The unpaid queue is run-length encoded as (charge, count), and paid codes are a prefix
//! of the application sequence: code number `k` (counting every applied code of the
//! account, in account order) is paid exactly when `k < paid_total`. Settlement pays from
//! the head while the balance covers the head's charge and never skips it, so after any
//! event `paid_total` is the largest `k ≤ applied_total` whose first `k` charges sum to at
//! most credits − refunds: a function of the totals alone, not of the order credits came
//! in. That is why a payment the model credits later than the engine does (a payment
//! written out of order) can only make the model see fewer paid codes, never more.

use std::collections::VecDeque;

/// Model units per tenge: 1 unit = 0.0001 KZT.
pub const UNITS_PER_TENGE: i64 = 10_000;
/// Model units per tiyn (0.01 KZT), the smallest amount a payment can carry.
pub const UNITS_PER_TIYN: i64 = 100;

/// One account's balance and unpaid queue.
#[derive(Clone, Debug, Default)]
pub struct Wallet {
    balance: i64,
    /// (charge per code, codes) in application order.
    unpaid: VecDeque<(i64, u64)>,
    unpaid_codes: u64,
    unpaid_amount: i64,
    applied_total: u64,
    paid_total: u64,
}

impl Wallet {
    /// The balance.
    pub fn balance(&self) -> i64 {
        self.balance
    }

    /// Codes waiting in the FIFO queue.
    pub fn unpaid_codes(&self) -> u64 {
        self.unpaid_codes
    }

    /// What the queued codes owe.
    pub fn unpaid_amount(&self) -> i64 {
        self.unpaid_amount
    }

    /// Codes applied so far (the next applied code gets this sequence number).
    pub fn applied_total(&self) -> u64 {
        self.applied_total
    }

    /// Codes with a sequence number below this are paid.
    pub fn paid_total(&self) -> u64 {
        self.paid_total
    }

    /// `codes` codes applied at `charge` each: queued, then settled as far as the balance
    /// goes.
    pub fn apply(&mut self, codes: u64, charge: i64) {
        debug_assert!(charge > 0);
        if codes == 0 {
            return;
        }
        match self.unpaid.back_mut() {
            Some((last_charge, count)) if *last_charge == charge => *count += codes,
            _ => self.unpaid.push_back((charge, codes)),
        }
        self.unpaid_codes += codes;
        self.unpaid_amount += charge * codes as i64;
        self.applied_total += codes;
        self.settle();
    }

    /// A payment or compensation arrived.
    pub fn credit(&mut self, amount: i64) {
        debug_assert!(amount > 0);
        self.balance += amount;
        self.settle();
    }

    /// An accepted refund.
    pub fn debit_refund(&mut self, amount: i64) {
        debug_assert!(self.unpaid_codes == 0 && amount <= self.balance);
        self.balance -= amount;
    }

    /// Pays from the head of the queue while the balance covers the head's charge.
    fn settle(&mut self) {
        while let Some((charge, count)) = self.unpaid.front_mut() {
            let affordable = (self.balance / *charge) as u64;
            let paid = affordable.min(*count);
            if paid == 0 {
                break;
            }
            let amount = *charge * paid as i64;
            self.balance -= amount;
            self.unpaid_amount -= amount;
            self.unpaid_codes -= paid;
            self.paid_total += paid;
            *count -= paid;
            if *count == 0 {
                self.unpaid.pop_front();
            }
        }
        debug_assert!(self.balance >= 0, "the balance never goes negative");
        debug_assert!(self.unpaid.front().is_none_or(|(charge, _)| self.balance < *charge));
        debug_assert_eq!(self.paid_total + self.unpaid_codes, self.applied_total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_never_skips_the_head() {
        // Applies codes at two tariffs, credits in pieces and checks paid counts and the
        // balance left, by hand arithmetic.
        let mut wallet = Wallet::default();
        wallet.apply(3, 30_016);
        assert_eq!(wallet.paid_total(), 0);
        wallet.credit(70_000); // 7.00: pays two codes (6.0032), 0.9968 left
        assert_eq!(wallet.paid_total(), 2);
        assert_eq!(wallet.balance(), 70_000 - 60_032);
        wallet.apply(1, 33_040);
        wallet.credit(100_000); // 10.9968: pays 3.0016 then 3.304, 4.6912 left
        assert_eq!(wallet.paid_total(), 4);
        assert_eq!(wallet.unpaid_codes(), 0);
        assert_eq!(wallet.balance(), 46_912);
        wallet.debit_refund(46_912);
        assert_eq!(wallet.balance(), 0);
    }
}
