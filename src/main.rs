//! The `persona-gate` command: parses arguments and calls into the library. Nothing else.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Identity-verification sidecar for Persona: JWT identity, rate limits, get-or-create
/// inquiries, verified webhooks, and a reverse proxy to your app.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Config file, used when no subcommand is given.
    #[arg(long, short, global = true, default_value = "config.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Run,
    /// Validate the config file: exit 0 if it is valid, 1 listing every problem by key.
    Check,
    /// Run the Persona emulator on its own, for local development against a real app.
    Emulator {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8099")]
        listen: std::net::SocketAddr,
    },
}

/// EX_USAGE: bad config, nothing bound yet.
const EXIT_CONFIG: u8 = 64;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Check => check(&cli.config),
        Command::Run => run(&cli.config).await,
        Command::Emulator { listen } => {
            persona_gate::telemetry::init(&persona_gate::config::LogConfig {
                format: persona_gate::config::LogFormat::Pretty,
                level: "info".into(),
            });
            match persona_gate::emulator::run_standalone(listen, persona_gate::shutdown::signal()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("persona-gate emulator: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    match persona_gate::config::load(path) {
        Ok(_) => {
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: invalid", path.display());
            for problem in e.problems() {
                eprintln!("  - {problem}");
            }
            ExitCode::from(1)
        }
    }
}

async fn run(path: &std::path::Path) -> ExitCode {
    let config = match persona_gate::config::load(path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("persona-gate: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    persona_gate::telemetry::init(&config.log);
    match persona_gate::run(config, persona_gate::shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("persona-gate: {e}");
            ExitCode::FAILURE
        }
    }
}
