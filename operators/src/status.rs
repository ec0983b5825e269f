//! Code lifecycle states (DOMAIN.md §2).

use serde::{Deserialize, Serialize};

/// The status of one marking code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Status {
    /// Issued on an order, not yet printed.
    Emitted,
    /// Printed on a pack; its charge is waiting in the account's FIFO queue.
    AppliedUnpaid,
    /// Printed and paid.
    AppliedPaid,
    /// Goods put into circulation.
    Introduced,
    /// Spoiled before or while printing (terminal, never charged).
    Rejected,
    /// Goods found defective after printing (terminal; the charge stays).
    Annulled,
    /// Not applied within 30 working days of its emission (terminal, never charged).
    Expired,
}

impl Status {
    /// All statuses, in lifecycle order.
    pub const ALL: [Status; 7] = [
        Status::Emitted,
        Status::AppliedUnpaid,
        Status::AppliedPaid,
        Status::Introduced,
        Status::Rejected,
        Status::Annulled,
        Status::Expired,
    ];

    /// The stable wire form (`APPLIED_UNPAID`).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Emitted => "EMITTED",
            Status::AppliedUnpaid => "APPLIED_UNPAID",
            Status::AppliedPaid => "APPLIED_PAID",
            Status::Introduced => "INTRODUCED",
            Status::Rejected => "REJECTED",
            Status::Annulled => "ANNULLED",
            Status::Expired => "EXPIRED",
        }
    }

    /// Parses the wire form.
    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|status| status.as_str() == text)
    }

    /// `REJECTED`, `ANNULLED` and `EXPIRED` are terminal: the code can never be used again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Rejected | Status::Annulled | Status::Expired)
    }
}
