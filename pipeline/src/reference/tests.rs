//! Unit tests of the reference engine: see tests/ for the rule-by-rule suite.
