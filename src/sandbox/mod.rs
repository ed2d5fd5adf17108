//! The built-in CCPayment simulator (being written).
