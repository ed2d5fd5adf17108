//! Small helpers every layer may use; they import nothing else from the crate.
//!
//! - [`clock`]: wall-clock time behind a trait, so everything time-dependent runs on virtual
//!   time in tests and in the simulation.
//! - [`time`]: UTC RFC 3339 timestamps with milliseconds, on chrono (pure).
//! - [`atomic`]: atomic file replacement: write a temporary file, fsync, rename (I/O).
//! - [`net`]: address checks shared by the listeners' settings (pure).
//! - [`user`]: the name of a local user (an approver), from the user database.

pub mod atomic;
pub mod clock;
pub mod net;
pub mod time;
pub mod user;
