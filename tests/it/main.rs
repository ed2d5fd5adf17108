//! The one integration-test binary of ccpayout. Every test runs against the built-in sandbox on
//! loopback with temporary folders; nothing touches the internet.

mod bundles;
mod check;
mod cli;
mod client;
mod console;
mod controls;
mod daemon;
mod diff;
mod doctor;
mod errors;
mod helpers;
mod independent_client;
mod jobs;
mod layers;
mod notices;
mod operator;
mod readings;
mod retry;
mod secrets;
mod sim;
mod submit;
mod survive;
mod upgrade;
mod v1;
mod webdriver;
mod webhook;
