//! Rejection reasons (DOMAIN.md §3, §5): an enum with a stable string form.

use serde::{Deserialize, Serialize};

/// Why an input event, or one code of it, was refused. The string form is a stable
/// interface: consumers match on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Reason {
    /// Not a JSON object of the wire format (or a broken binary record), or a required
    /// field missing or of the wrong shape.
    Malformed,
    /// A well-formed object whose `type` is none of the known ones.
    UnknownType,
    /// An amount that is not a decimal string > 0 with at most 2 decimals (tariff prices
    /// and rates: not a decimal, or out of range).
    BadAmount,
    /// A GTIN that is not 14 digits with a valid GS1 check digit.
    BadGtin,
    /// A code string that is not 1–128 printable ASCII characters (GS allowed, no space).
    BadCode,
    /// A command on a code still unknown when its hold ended.
    UnknownCode,
    /// A command on a code that belongs to another account.
    WrongAccount,
    /// An event id seen before.
    Duplicate,
    /// An emission of a code that exists, or an order id the account already used.
    AlreadyExists,
    /// A command not allowed from the code's (or order's) current status.
    InvalidTransition,
    /// Introduction of a code whose charge is still unpaid.
    CodeUnpaid,
    /// An emission of more codes than remain on its order.
    OrderExceeded,
    /// An emission or cancellation naming an order the account does not have.
    UnknownOrder,
    /// An emission whose GTIN differs from its order's.
    GtinMismatch,
    /// A defect report after the end of the 10th working day after its act date.
    DefectReportLate,
    /// A tariff taking effect before the moment its event takes effect.
    TariffRetroactive,
    /// A refund while the account has unpaid codes.
    RefundUnpaidCodes,
    /// A refund while the account has a pending order.
    RefundPendingOrder,
    /// A refund larger than the balance.
    RefundExceedsBalance,
    /// A `ts` outside the accepted window: before the system's epoch or beyond the
    /// working-day calendar (and, in stream mode, too far ahead of the wall clock). The
    /// event neither moves its partition's high-water mark nor registers its id.
    TsOutOfRange,
    /// An event that made a stage of the pipeline fail twice in a row (a bug, not bad
    /// input): refused after the restart so that billing goes on (docs/ARCHITECTURE.md,
    /// "Decisions: failures").
    InternalError,
    /// An event of a terminated account (DOMAIN.md §9): a second `terminate`, and after
    /// termination everything but `refund` and `export` (after deletion, those too).
    AccountTerminated,
    /// A `terminate` while the account has codes in its FIFO queue.
    TerminationUnpaidCodes,
    /// A `terminate` while the account has a pending order.
    TerminationPendingOrder,
    /// An `export` of an account that is not terminated.
    ExportNotTerminated,
    /// An `export` outside the month after termination.
    ExportOutOfWindow,
}

impl Reason {
    /// Every reason, in declaration order.
    pub const ALL: [Reason; 26] = [
        Reason::Malformed,
        Reason::UnknownType,
        Reason::BadAmount,
        Reason::BadGtin,
        Reason::BadCode,
        Reason::UnknownCode,
        Reason::WrongAccount,
        Reason::Duplicate,
        Reason::AlreadyExists,
        Reason::InvalidTransition,
        Reason::CodeUnpaid,
        Reason::OrderExceeded,
        Reason::UnknownOrder,
        Reason::GtinMismatch,
        Reason::DefectReportLate,
        Reason::TariffRetroactive,
        Reason::RefundUnpaidCodes,
        Reason::RefundPendingOrder,
        Reason::RefundExceedsBalance,
        Reason::TsOutOfRange,
        Reason::InternalError,
        Reason::AccountTerminated,
        Reason::TerminationUnpaidCodes,
        Reason::TerminationPendingOrder,
        Reason::ExportNotTerminated,
        Reason::ExportOutOfWindow,
    ];

    /// The stable wire form (`WRONG_ACCOUNT`).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Malformed => "MALFORMED",
            Reason::UnknownType => "UNKNOWN_TYPE",
            Reason::BadAmount => "BAD_AMOUNT",
            Reason::BadGtin => "BAD_GTIN",
            Reason::BadCode => "BAD_CODE",
            Reason::UnknownCode => "UNKNOWN_CODE",
            Reason::WrongAccount => "WRONG_ACCOUNT",
            Reason::Duplicate => "DUPLICATE",
            Reason::AlreadyExists => "ALREADY_EXISTS",
            Reason::InvalidTransition => "INVALID_TRANSITION",
            Reason::CodeUnpaid => "CODE_UNPAID",
            Reason::OrderExceeded => "ORDER_EXCEEDED",
            Reason::UnknownOrder => "UNKNOWN_ORDER",
            Reason::GtinMismatch => "GTIN_MISMATCH",
            Reason::DefectReportLate => "DEFECT_REPORT_LATE",
            Reason::TariffRetroactive => "TARIFF_RETROACTIVE",
            Reason::RefundUnpaidCodes => "REFUND_UNPAID_CODES",
            Reason::RefundPendingOrder => "REFUND_PENDING_ORDER",
            Reason::RefundExceedsBalance => "REFUND_EXCEEDS_BALANCE",
            Reason::TsOutOfRange => "TS_OUT_OF_RANGE",
            Reason::InternalError => "INTERNAL_ERROR",
            Reason::AccountTerminated => "ACCOUNT_TERMINATED",
            Reason::TerminationUnpaidCodes => "TERMINATION_UNPAID_CODES",
            Reason::TerminationPendingOrder => "TERMINATION_PENDING_ORDER",
            Reason::ExportNotTerminated => "EXPORT_NOT_TERMINATED",
            Reason::ExportOutOfWindow => "EXPORT_OUT_OF_WINDOW",
        }
    }

    /// Parses the wire form.
    pub fn parse(text: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|reason| reason.as_str() == text)
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
