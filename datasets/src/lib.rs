//! Placeholder, filled in next.

pub mod calendars;
