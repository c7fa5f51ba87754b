//! The integration tests build into one binary (one link instead of one per file; only the
//! browser test has its own, tests/browser). Each module is one area of behaviour; `common` holds
//! the harness: a fake upstream app, a gateway on port 0, and token minting.

mod common;

mod auth;
mod config;
mod emulator;
mod flows;
mod gate;
mod inquiry;
mod metrics;
mod persona_rules;
mod proxy;
mod ratelimit;
mod reload;
mod replicas;
mod seam;
mod server;
mod trace_context;
mod webhook;
