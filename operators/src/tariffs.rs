//! "Tariffs: check, broadcast" — tariff events on their way to every worker's accounts.
//!
//! In: tariff events, on the worker that de-duplicated them (no exchange: no state). Out:
//! refusals (`BAD_AMOUNT`, `TARIFF_RETROACTIVE`: rules::tariff), and each accepted tariff
//! once per worker, addressed to it (`AccountIn::Tariff`, routed by that address): every
//! worker's accounts need every tariff.

use crate::event::Body;
use crate::flow::{AccountIn, Placed, Time};
use crate::output::Output;
use crate::rules;
use timely::dataflow::operators::vec::{Broadcast, Map, Partition};
use timely::dataflow::StreamVec;

/// The tariff stage's typed outputs.
pub struct TariffEdges<'scope> {
    /// Refused tariffs (`BAD_AMOUNT`, `TARIFF_RETROACTIVE`).
    pub refusals: StreamVec<'scope, Time, Output>,
    /// Accepted tariffs, one copy addressed to every worker's accounts.
    pub to_accounts: StreamVec<'scope, Time, AccountIn>,
}

/// "Tariffs": checks each tariff (rules::tariff: no state needed) and broadcasts the
/// accepted ones: every worker's accounts need every tariff. `worker` is this worker's
/// index, which addresses the copy it receives (`AccountIn::route`).
pub fn tariffs_to_accounts<'scope>(tariffs: StreamVec<'scope, Time, Placed>, worker: usize) -> TariffEdges<'scope> {
    let checked = |placed: Placed| {
        let Body::Tariff {
            effective_from,
            net_price,
            vat_rate,
        } = &placed.event.body
        else {
            return Ok(placed);
        };
        match rules::tariff(*effective_from, net_price, vat_rate, placed.effective) {
            Ok(_) => Ok(placed),
            Err((reason, detail)) => Err(Box::new(placed.rejection(None, reason, detail))),
        }
    };
    let mut parts = tariffs
        .map(checked)
        .partition(2, |checked| (u64::from(checked.is_ok()), checked))
        .into_iter();
    let mut next = || parts.next().expect("two parts");
    let refusals = next().flat_map(|checked| checked.err().map(|refusal| *refusal));
    let to_accounts = next()
        .flat_map(Result::ok)
        .broadcast()
        .map(move |placed| AccountIn::Tariff {
            worker: worker as u64,
            placed: Box::new(placed),
        });
    TariffEdges { refusals, to_accounts }
}
