//! The load and abuse tools `scripts/chaos.sh` drives: each subcommand does one job against real
//! processes on loopback and prints what it saw as `key=value` lines on stdout (progress and
//! diagnostics go to stderr). Judging those figures is the script's business, so the expected
//! values of every case are written in one place, next to the case.
//!
//! - `app`: the upstream app: answers everything, delays `/slow`, records webhook forwards
//!   (optionally failing the first delivery of half the events), reports them on `/_stats`.
//! - `load`: a steady HTTP/1.1 load at a fixed rate over keep-alive connections, with latency
//!   percentiles, status and error counts, and optionally every request on a timeline;
//!   `window`: the percentiles of a timeline's requests begun in a window of time.
//! - `drain`: slow requests in flight, then SIGTERM to the gateway: what happened to each.
//! - `storm`: get-or-create calls for many users across replicas; `inquiries`: what Persona
//!   (the emulator) holds per user afterwards.
//! - `slowloris`: connections that trickle a request head forever, and when each was cut.
//! - `h2abuse`: HTTP/2 written by hand: reset floods, SETTINGS/PING floods, too many streams,
//!   endless CONTINUATION.
//! - `fuzz`: mutated request heads, bodies, tokens and webhook signatures at rate;
//!   `fuzz-config`: mutated config files through the real `persona-gate` binary.
//! - `users`: a million distinct users' tokens through the proxy, with the gateway's RSS.
//! - `webhooks`: signed events, each delivered several times at once across replicas, retried
//!   like Persona retries.
//! - `sample`: the gateway's connections, file descriptors, RSS and CPU over time.
//! - `ports`: free loopback ports.
//!
//! Not part of the gateway: an example built with the `chaos` profile (see Cargo.toml).

mod app;
mod drain;
mod fuzz;
mod h2abuse;
mod load;
mod sample;
mod slowloris;
mod storm;
mod users;
mod util;
mod webhooks;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "persona-gate's chaos tools (driven by scripts/chaos.sh)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    App(app::Args),
    Load(load::Args),
    Window(load::WindowArgs),
    Drain(drain::Args),
    Storm(storm::Args),
    Inquiries(storm::InquiriesArgs),
    Slowloris(slowloris::Args),
    H2abuse(h2abuse::Args),
    Fuzz(fuzz::Args),
    FuzzConfig(fuzz::ConfigArgs),
    Users(users::Args),
    Webhooks(webhooks::Args),
    Sample(sample::Args),
    Ports(util::PortsArgs),
    Token(util::TokenArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("chaos: starting the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::App(args) => app::run(args).await,
            Command::Load(args) => load::run(args).await,
            Command::Window(args) => load::window(&args),
            Command::Drain(args) => drain::run(args).await,
            Command::Storm(args) => storm::run(args).await,
            Command::Inquiries(args) => storm::inquiries(args).await,
            Command::Slowloris(args) => slowloris::run(args).await,
            Command::H2abuse(args) => h2abuse::run(args).await,
            Command::Fuzz(args) => fuzz::run(args).await,
            Command::FuzzConfig(args) => fuzz::run_config(args).await,
            Command::Users(args) => users::run(args).await,
            Command::Webhooks(args) => webhooks::run(args).await,
            Command::Sample(args) => sample::run(args).await,
            Command::Ports(args) => util::ports(&args),
            Command::Token(args) => util::token(&args),
        }
    });
    // Stray tasks (connections still open) must not keep the process alive.
    runtime.shutdown_background();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chaos: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
