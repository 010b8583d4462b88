//! amrelay's integration tests: the app on port 0 against fakes written from the vendors'
//! documentation, the binary killed mid-delivery, and the real Alertmanager.

mod fakes;
mod helpers;

mod alertmanager;
mod collector;
mod delivery;
mod ingest;
mod process;
