//! The tutorial's flow in a real browser. A binary of its own: cargo runs test binaries one after
//! another, so Chromium starts on an idle machine instead of racing the `it` suite for the CPU
//! (under that load it once missed chromedriver's start-up deadline in CI).

// The shared harness; this binary uses a part of it.
#[allow(dead_code)]
#[path = "../it/common.rs"]
mod common;

mod tutorial;
mod webdriver;
