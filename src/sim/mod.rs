//! The deterministic simulation (being built).
