//! Input events (INTERFACE.md "Input events").
//!
//! An [`Event`] is what a decoder produces from one well-formed input record: the common
//! fields plus a typed [`Body`]. Structural checks (JSON shape, required fields, the
//! timestamp, the account and id alphabets) are the decoder's; semantic checks (amounts,
//! GTINs, code alphabet, lifecycle) are the engine's, because a refused-but-well-formed
//! event still takes part in de-duplication and moves its partition's high-water mark.

use crate::time::Ts;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// One well-formed input event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Producer-assigned unique id, used for de-duplication.
    pub id: String,
    /// Business time.
    pub ts: Ts,
    /// The account (`"*"` for tariffs).
    pub account: String,
    /// The type-specific fields.
    pub body: Body,
}

/// A decimal field as it arrived: parsed, or the text that did not parse (kept for the
/// rejection's detail). Range checks happen in the engine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DecimalField {
    /// A decimal string that parsed.
    Parsed(Decimal),
    /// Anything else (a number instead of a string, text that is not a decimal).
    Invalid(String),
}

impl std::fmt::Display for DecimalField {
    /// The value as a person reads it in a rejection: the number, or the text that did not
    /// parse, quoted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecimalField::Parsed(value) => write!(f, "{value}"),
            DecimalField::Invalid(text) => write!(f, "\"{text}\""),
        }
    }
}

/// The type-specific part of an event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// A request for `quantity` codes of one product.
    Order {
        /// Order id (account-scoped).
        order: String,
        /// Product.
        gtin: String,
        /// Number of codes ordered, > 0.
        quantity: u64,
    },
    /// Cancels what remains of an order.
    OrderCancel {
        /// Order id.
        order: String,
    },
    /// Codes issued on an order.
    Emission {
        /// Order id.
        order: String,
        /// Product.
        gtin: String,
        /// The new codes.
        codes: Vec<String>,
    },
    /// Report that codes were printed on packs.
    Application {
        /// The client's report id.
        report: String,
        /// The codes applied.
        codes: Vec<String>,
    },
    /// Codes spoiled before or while printing.
    Dropout {
        /// The codes.
        codes: Vec<String>,
        /// Free text.
        reason: String,
    },
    /// Goods found defective after printing.
    Defect {
        /// The codes.
        codes: Vec<String>,
        /// The date of the client's defect act.
        act_date: NaiveDate,
    },
    /// Goods put into circulation.
    Introduction {
        /// The codes.
        codes: Vec<String>,
    },
    /// A top-up of the prepaid balance.
    Payment {
        /// Amount, KZT.
        amount: DecimalField,
        /// Bank or payment system.
        channel: String,
    },
    /// An operator credit for a failed service.
    Compensation {
        /// Amount, KZT.
        amount: DecimalField,
        /// Free text.
        reason: String,
    },
    /// A request to return unused advance.
    Refund {
        /// Amount, KZT.
        amount: DecimalField,
    },
    /// A new tariff version (account `"*"`).
    Tariff {
        /// When it takes effect.
        effective_from: Ts,
        /// Net price per code.
        net_price: DecimalField,
        /// VAT rate (`0.12`).
        vat_rate: DecimalField,
    },
    /// The account's contract ends at the event's effective time (DOMAIN.md §9).
    Terminate,
    /// The client's request for its reports after termination (DOMAIN.md §9).
    Export,
}

/// The type of an event, in the rank order that breaks ties between events taking effect
/// at the same instant (DOMAIN.md §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// `tariff`
    Tariff,
    /// `payment`
    Payment,
    /// `compensation`
    Compensation,
    /// `order`
    Order,
    /// `order_cancel`
    OrderCancel,
    /// `emission`
    Emission,
    /// `application`
    Application,
    /// `dropout`
    Dropout,
    /// `defect`
    Defect,
    /// `introduction`
    Introduction,
    /// `refund`
    Refund,
    /// `terminate`
    Terminate,
    /// `export`
    Export,
}

impl Kind {
    /// Every kind, in rank order.
    pub const ALL: [Kind; 13] = [
        Kind::Tariff,
        Kind::Payment,
        Kind::Compensation,
        Kind::Order,
        Kind::OrderCancel,
        Kind::Emission,
        Kind::Application,
        Kind::Dropout,
        Kind::Defect,
        Kind::Introduction,
        Kind::Refund,
        Kind::Terminate,
        Kind::Export,
    ];

    /// The wire `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Tariff => "tariff",
            Kind::Payment => "payment",
            Kind::Compensation => "compensation",
            Kind::Order => "order",
            Kind::OrderCancel => "order_cancel",
            Kind::Emission => "emission",
            Kind::Application => "application",
            Kind::Dropout => "dropout",
            Kind::Defect => "defect",
            Kind::Introduction => "introduction",
            Kind::Refund => "refund",
            Kind::Terminate => "terminate",
            Kind::Export => "export",
        }
    }

    /// Parses the wire `type`.
    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.as_str() == text)
    }

    /// The rank: tariff < payment < … < refund < terminate < export.
    pub fn rank(self) -> u8 {
        self as u8
    }
}

impl Body {
    /// The kind of this body.
    pub fn kind(&self) -> Kind {
        match self {
            Body::Order { .. } => Kind::Order,
            Body::OrderCancel { .. } => Kind::OrderCancel,
            Body::Emission { .. } => Kind::Emission,
            Body::Application { .. } => Kind::Application,
            Body::Dropout { .. } => Kind::Dropout,
            Body::Defect { .. } => Kind::Defect,
            Body::Introduction { .. } => Kind::Introduction,
            Body::Payment { .. } => Kind::Payment,
            Body::Compensation { .. } => Kind::Compensation,
            Body::Refund { .. } => Kind::Refund,
            Body::Tariff { .. } => Kind::Tariff,
            Body::Terminate => Kind::Terminate,
            Body::Export => Kind::Export,
        }
    }

    /// The codes an event names, if it is a code command or an emission.
    pub fn codes(&self) -> &[String] {
        match self {
            Body::Emission { codes, .. }
            | Body::Application { codes, .. }
            | Body::Dropout { codes, .. }
            | Body::Defect { codes, .. }
            | Body::Introduction { codes } => codes,
            _ => &[],
        }
    }

    /// Moves the codes out (the codes are then empty): a stage that sends each code on
    /// need not copy it.
    pub fn take_codes(&mut self) -> Vec<String> {
        match self {
            Body::Emission { codes, .. }
            | Body::Application { codes, .. }
            | Body::Dropout { codes, .. }
            | Body::Defect { codes, .. }
            | Body::Introduction { codes } => std::mem::take(codes),
            _ => Vec::new(),
        }
    }
}

impl Event {
    /// The kind of this event.
    pub fn kind(&self) -> Kind {
        self.body.kind()
    }

    /// The number of codes this event names (its weight in "code events").
    pub fn code_count(&self) -> usize {
        self.body.codes().len()
    }
}
