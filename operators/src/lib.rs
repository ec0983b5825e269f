//! Domain types of markledger and, beside them, the incremental operators built on them.
//!
//! The vocabulary follows `shared/DOMAIN.md`: input [`event`]s, code [`status`]es, rejection
//! [`reason`]s, exact [`money`], [`tariff`] history, the working-day [`calendar`], business
//! [`time`] and periods in `Asia/Almaty`, and the [`output`] records every engine emits.

#![deny(missing_docs)]

pub mod accounts;
pub mod aggregates;
pub mod calendar;
pub mod checkpoint;
pub mod codes;
pub mod commands;
pub mod console;
pub mod dedup;
pub mod driver;
pub mod event;
pub mod failure;
pub mod final_codes;
pub mod flow;
pub mod gate;
pub mod intern;
pub mod machine;
pub mod money;
pub mod movements;
pub mod orders;
pub mod output;
pub mod reason;
pub mod rules;
pub mod spill;
pub mod status;
pub mod tariff;
pub mod tariffs;
pub mod time;
pub mod validate;
pub mod wording;

pub use calendar::WorkingCalendar;
pub use event::{Body, DecimalField, Event, Kind};
pub use money::Money;
pub use output::{Output, Sink};
pub use reason::Reason;
pub use rules::TimeWindow;
pub use status::Status;
pub use tariff::{Tariff, TariffHistory};
pub use time::{Period, Ts};
