//! "Commands: pre-checks" — application, dropout, defect and introduction events on their
//! way to the national index.
//!
//! In: code commands, on the worker that de-duplicated them (no exchange: no state). Out: a
//! late defect report's one `DEFECT_REPORT_LATE` rejection (rules::defect_report), per code
//! a `BAD_CODE` rejection for a code outside the alphabet, and every other code with its
//! event's header and position, for the index (which sends it on to its owner's account,
//! where the command's codes are put back in the command's order).

use crate::calendar::WorkingCalendar;
use crate::event::Body;
use crate::flow::{edges, take, CodeIn, CodesIn, Edge, Header, Placed, Time};
use crate::output::Output;
use crate::reason::Reason;
use crate::rules;
use std::sync::Arc;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::StreamVec;

/// What the pre-checks emit: one variant per edge.
#[derive(Clone, Debug)]
pub enum CommandOut {
    /// A refused report or code (→ the rejections output).
    Refused(Box<Output>),
    /// A code for the national index.
    Code(CodeIn),
}

impl From<Output> for CommandOut {
    fn from(output: Output) -> CommandOut {
        CommandOut::Refused(Box::new(output))
    }
}

impl From<CodeIn> for CommandOut {
    fn from(code: CodeIn) -> CommandOut {
        CommandOut::Code(code)
    }
}

impl Edge for CommandOut {
    const EDGES: u64 = 2;
    fn edge(&self) -> u64 {
        match self {
            CommandOut::Refused(_) => 0,
            CommandOut::Code(_) => 1,
        }
    }
}

/// The pre-checks' typed outputs.
pub struct CommandEdges<'scope> {
    /// Rejections (`DEFECT_REPORT_LATE`, `BAD_CODE`).
    pub refusals: StreamVec<'scope, Time, Output>,
    /// Codes for the national index.
    pub codes: StreamVec<'scope, Time, CodesIn>,
}

/// What the pre-checks need to know.
#[derive(Clone)]
pub struct CommandRules {
    /// Working days and days off.
    pub calendar: WorkingCalendar,
    /// Working days after its act a defect report may arrive.
    pub defect_working_days: u32,
}

/// One command's pre-checks: its rejection, or its codes for the index.
pub fn pre_check(mut placed: Placed, rules: &CommandRules) -> Vec<CommandOut> {
    if let Body::Defect { act_date, .. } = &placed.event.body {
        let on_time = rules::defect_report(*act_date, placed.event.ts, &rules.calendar, rules.defect_working_days);
        if let Err(detail) = on_time {
            return vec![CommandOut::from(placed.rejection(
                None,
                Reason::DefectReportLate,
                detail,
            ))];
        }
    }
    let mut out = Vec::with_capacity(placed.event.body.codes().len());
    let header = Arc::new(Header::of(&placed, ""));
    placed.codes_to_index(header, &mut out);
    out
}

/// "Commands: pre-checks" over the code commands (module docs).
pub fn command_codes<'scope>(commands: StreamVec<'scope, Time, Placed>, rules: CommandRules) -> CommandEdges<'scope> {
    let mut parts = edges(commands.flat_map(move |placed| pre_check(placed, &rules)));
    CommandEdges {
        refusals: take(parts.next(), |out| {
            if let CommandOut::Refused(r) = out {
                Some(*r)
            } else {
                None
            }
        }),
        codes: take(parts.next(), |out| {
            if let CommandOut::Code(c) = out {
                Some(CodesIn::Code(c))
            } else {
                None
            }
        }),
    }
}
