//! amrelay's integration tests: the app on port 0 against fakes written from the vendors'
//! documentation, the binary killed mid-delivery, and the real Alertmanager.

mod dashboard_model;
mod email_fakes;
mod fakes;
mod helpers;
mod postgres;
mod recorder;
mod smtp_relay;

mod alertmanager;
mod backends;
mod cli;
mod collector;
mod dashboard;
mod delivery;
mod deploy;
mod drill;
mod drills;
mod email;
mod endpoint;
mod exposition;
mod full_disk;
mod ha;
mod heartbeat;
mod hostile;
mod ingest;
mod layers;
mod package;
mod process;
mod promotion;
