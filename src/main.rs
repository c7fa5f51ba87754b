//! The `persona-gate` command: parses arguments and calls into the library, and owns the
//! process's allocator (its choice, and handing what it frees back: `freed`). Nothing else.

/// See Cargo.toml for why; the library leaves the choice of allocator to the binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Validate the config file: exit 0 if it is valid (printing any warnings), 1 listing every
    /// problem by key.
    Check,
    /// Run the Persona emulator on its own, for local development against a real app.
    #[cfg(feature = "emulator")]
    Emulator(EmulatorArgs),
}

#[cfg(feature = "emulator")]
#[derive(clap::Args)]
struct EmulatorArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8099")]
    listen: std::net::SocketAddr,
    /// Environment variable holding the API key to accept (default: the public demo key).
    #[arg(long)]
    api_key_env: Option<String>,
    /// Where to POST signed webhook events.
    #[arg(long)]
    webhook_url: Option<String>,
    /// Environment variable holding a webhook secret; repeat for rotation (the first signs).
    #[arg(long)]
    webhook_secret_env: Vec<String>,
    /// Delay before every API answer, e.g. "50ms".
    #[arg(long)]
    latency: Option<String>,
    /// Inquiry template id to accept; repeatable (default: itmpl_emulator_kyc).
    #[arg(long)]
    template: Vec<String>,
    /// Leave completed inquiries completed instead of approving them.
    #[arg(long)]
    no_auto_approve: bool,
}

/// EX_USAGE: bad config, nothing bound yet.
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match runtime() {
        Ok(runtime) => runtime.block_on(async {
            // The other half of `freed`, beside the park hook `runtime` installs.
            tokio::spawn(freed::tick());
            dispatch(cli).await
        }),
        Err(e) => {
            eprintln!("persona-gate: starting the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A single-threaded runtime when the process may use one CPU only (a sidecar pinned to a core):
/// a work-stealing scheduler with one worker pays for cross-thread wake-ups and atomics that buy
/// nothing there. With more CPUs, one worker per CPU as usual.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let mut builder = if cpus == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder.enable_all().on_thread_park(freed::collect_if_due).build()
}

/// Handing freed memory back to the system. mimalloc does it for a page emptied by frees only on
/// a later call into the allocator by the thread that owns the page. When a crowd of keep-alive
/// connections goes quiet, each frees hyper's buffers (see `timer` in the library) and then
/// nothing runs: their pages stay resident, twice what the connections still hold. So a thread
/// that has gone quiet collects its own heap as it parks, once per [`freed::PERIOD`]; a busy one
/// does not, as it would only hand back pages it is about to fault in again (about 4% more CPU
/// per request when every thread collected each period, under `scripts/bench-gateway.sh`'s load).
mod freed {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    pub const PERIOD: Duration = Duration::from_secs(1);

    /// A thread that parked at most this often in the last period is quiet. Under load a runtime
    /// thread parks thousands of times a second; a sidecar with nothing to do, about once.
    const QUIET_PARKS: u32 = 100;

    /// Counts the ticker's periods.
    static EPOCH: AtomicU64 = AtomicU64::new(0);

    thread_local! {
        /// The period this thread last parked in, and how often it parked in it.
        static PARKS: Cell<(u64, u32)> = const { Cell::new((0, 0)) };
    }

    /// Called as a runtime thread parks: a counter, unless a period has ended since it last
    /// parked.
    pub fn collect_if_due() {
        let (parks, collect) = park(PARKS.get(), EPOCH.load(Ordering::Relaxed));
        PARKS.set(parks);
        if collect {
            // SAFETY: mi_collect takes no pointers; `false` asks for the cheap collection, which
            // returns empty pages and leaves the rest of the heap as it is.
            unsafe { libmimalloc_sys::mi_collect(false) };
        }
    }

    /// One park of a thread that last parked in period `seen`, `parks` times: its new count, and
    /// whether it collects now.
    fn park((seen, parks): (u64, u32), epoch: u64) -> ((u64, u32), bool) {
        if seen == epoch {
            ((seen, parks.saturating_add(1)), false)
        } else {
            ((epoch, 0), parks <= QUIET_PARKS)
        }
    }

    /// Runs for the life of the process. A tick wakes one runtime thread, which collects as it
    /// parks again. A thread that stays parked through the ticks is not collected until it next
    /// wakes, and keeps what it freed just before.
    pub async fn tick() {
        let mut ticks = tokio::time::interval(PERIOD);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            EPOCH.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// Parks `times` times in period `epoch`, from `state`: the state after, and how many
        /// of those parks collected.
        fn parks(mut state: (u64, u32), epoch: u64, times: u32) -> ((u64, u32), u32) {
            let mut collected = 0;
            for _ in 0..times {
                let (next, collect) = park(state, epoch);
                state = next;
                collected += u32::from(collect);
            }
            (state, collected)
        }

        #[test]
        fn a_quiet_thread_collects_once_a_period_and_a_busy_one_never() {
            // Quiet: one park a period, each one a collection.
            let (state, collected) = parks((0, 0), 1, 1);
            assert_eq!(collected, 1);
            assert_eq!(parks(state, 2, 1).1, 1);
            // Busy through period 3: only its first park, after the quiet period 2, collects.
            let (state, collected) = parks(state, 3, 5_000);
            assert_eq!(collected, 1);
            // The first park after a busy period does not; the next period's, once quiet, does.
            let (state, collected) = parks(state, 4, 1);
            assert_eq!(collected, 0);
            assert_eq!(parks(state, 5, 1).1, 1);
        }
    }
}

async fn dispatch(cli: Cli) -> ExitCode {
    match cli.command.unwrap_or(Command::Run) {
        Command::Check => check(&cli.config),
        Command::Run => run(&cli.config).await,
        #[cfg(feature = "emulator")]
        Command::Emulator(args) => emulator(args).await,
    }
}

#[cfg(feature = "emulator")]
async fn emulator(args: EmulatorArgs) -> ExitCode {
    let flags = persona_gate::config::EmulatorFlags {
        listen: Some(args.listen),
        api_key_env: args.api_key_env,
        webhook_url: args.webhook_url,
        webhook_secret_envs: args.webhook_secret_env,
        latency: args.latency,
        templates: args.template,
        no_auto_approve: args.no_auto_approve,
    };
    let config = match persona_gate::config::EmulatorConfig::from_flags(flags) {
        Ok(config) => config,
        Err(problems) => {
            eprintln!("persona-gate emulator: invalid options");
            for problem in problems {
                eprintln!("  - {problem}");
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    persona_gate::telemetry::init(&persona_gate::config::LogConfig {
        format: persona_gate::config::LogFormat::Pretty,
        level: "info".into(),
    });
    match persona_gate::emulator::run(&config, persona_gate::shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("persona-gate emulator: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    match persona_gate::config::load(path) {
        Ok(config) => {
            println!("{}: ok", path.display());
            for warning in &config.warnings {
                println!("  warning: {warning}");
            }
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
    config.log_warnings();
    match persona_gate::run(config, persona_gate::shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("persona-gate: {e}");
            ExitCode::FAILURE
        }
    }
}
