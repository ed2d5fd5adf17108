//! Batch files: parsing, validation and the plan.

pub mod parse;
