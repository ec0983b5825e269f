//! What a worker thread is doing, so that a failure can say it in one line: the stage and,
//! where it was processing one, the event (STYLE.md: "A failure ends the process").
//!
//! Each stage says when it starts an activation ([`enter_stage`]) and which event it is
//! processing ([`processing`]); both write into a buffer of the thread, reused, so the
//! bookkeeping costs a short copy per event and nothing per code. A panic hook, or the
//! runtime that catches a worker's panic, reads it back with [`current`].
//!
//! In debug builds (the tests), `MARKLEDGER_TEST_PANIC_ON_EVENT=<id>` makes the first stage
//! that processes event `<id>` panic, optionally only the stage whose name starts with
//! `MARKLEDGER_TEST_PANIC_STAGE`: a test-only hook that proves a failure ends the process
//! promptly. Release builds do not have it.

use std::cell::RefCell;

#[derive(Default)]
struct Doing {
    stage: String,
    event: String,
}

thread_local! {
    static DOING: RefCell<Doing> = RefCell::new(Doing::default());
}

/// This thread now runs `stage` (and processes no event yet).
pub fn enter_stage(stage: &str) {
    DOING.with(|doing| {
        if let Ok(mut doing) = doing.try_borrow_mut() {
            doing.stage.clear();
            doing.stage.push_str(stage);
            doing.event.clear();
        }
    });
}

/// This thread now processes event `id` in its current stage.
pub fn processing(id: &str) {
    let _injected = DOING.with(|doing| {
        let Ok(mut doing) = doing.try_borrow_mut() else {
            return false;
        };
        doing.event.clear();
        doing.event.push_str(id);
        #[cfg(debug_assertions)]
        return test_hook::hit(&doing.stage, id);
        #[cfg(not(debug_assertions))]
        false
    });
    // Outside the borrow: a panic hook reads what the thread was doing.
    #[cfg(debug_assertions)]
    if _injected {
        panic!("injected failure (MARKLEDGER_TEST_PANIC_ON_EVENT)");
    }
}

/// This thread left its stage.
pub fn leave_stage() {
    DOING.with(|doing| {
        if let Ok(mut doing) = doing.try_borrow_mut() {
            doing.stage.clear();
            doing.event.clear();
        }
    });
}

/// What this thread was doing: its stage (if in one) and the event it was processing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Activity {
    /// The stage's name.
    pub stage: Option<String>,
    /// The event id.
    pub event: Option<String>,
}

/// What this thread is doing now.
pub fn current() -> Activity {
    DOING.with(|doing| match doing.try_borrow() {
        Ok(doing) => Activity {
            stage: (!doing.stage.is_empty()).then(|| doing.stage.clone()),
            event: (!doing.event.is_empty()).then(|| doing.event.clone()),
        },
        Err(_) => Activity::default(),
    })
}

/// The text of a panic's payload.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_string()
    }
}

#[cfg(debug_assertions)]
mod test_hook {
    use std::sync::OnceLock;

    /// The event (and stage prefix) to fail on, read once.
    fn target() -> &'static Option<(String, String)> {
        static TARGET: OnceLock<Option<(String, String)>> = OnceLock::new();
        TARGET.get_or_init(|| {
            let event = std::env::var("MARKLEDGER_TEST_PANIC_ON_EVENT").ok()?;
            let stage = std::env::var("MARKLEDGER_TEST_PANIC_STAGE").unwrap_or_default();
            Some((event, stage))
        })
    }

    /// Whether to fail on event `id` in `stage`.
    pub(super) fn hit(stage: &str, id: &str) -> bool {
        target()
            .as_ref()
            .is_some_and(|(event, prefix)| event == id && stage.starts_with(prefix.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_says_what_it_was_doing() {
        // Stage, then event, then leaving: each is what current() reports.
        enter_stage("Accounts: lifecycle, balance, FIFO");
        assert_eq!(current().stage.as_deref(), Some("Accounts: lifecycle, balance, FIFO"));
        assert_eq!(current().event, None);
        processing("p-1");
        assert_eq!(current().event.as_deref(), Some("p-1"));
        leave_stage();
        assert_eq!(current(), Activity::default());
    }

    #[test]
    fn a_panic_names_the_stage_and_event_it_happened_in() {
        // A panic inside a stage, caught: the thread still says where it was.
        let result = std::panic::catch_unwind(|| {
            enter_stage("Orders: emission checks");
            processing("o-7");
            panic!("boom {}", 7);
        });
        let payload = result.unwrap_err();
        assert_eq!(panic_message(payload.as_ref()), "boom 7");
        let doing = current();
        assert_eq!(doing.stage.as_deref(), Some("Orders: emission checks"));
        assert_eq!(doing.event.as_deref(), Some("o-7"));
        leave_stage();
    }
}
