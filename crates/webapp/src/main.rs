//! `webapp` serves the leaky demo app; `webapp healthcheck` probes a running one.
//! Settings: `webapp --help` (each flag also reads its environment variable).

use std::process::ExitCode;

use clap::Parser;
use webapp::{healthcheck, telemetry, Cli, Command, Config};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) if !error.use_stderr() => {
            // --help, --version
            let _ = error.print();
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            // Exit 1, not clap's 2: Docker reserves exit code 2 for healthchecks.
            eprintln!("webapp: invalid configuration: {error}");
            return ExitCode::FAILURE;
        }
    };
    let config = match cli.settings.into_config() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("webapp: invalid configuration: {error}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config),
        Command::Healthcheck => healthcheck(&config),
    }
}

fn serve(config: Config) -> ExitCode {
    telemetry::init_tracing(config.log_format, &config.log_filter);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the tokio runtime");
            return ExitCode::FAILURE;
        }
    };
    let signal = webapp::shutdown_signal(config.ignore_sigterm);
    match runtime.block_on(webapp::run(config, signal)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "webapp failed");
            ExitCode::FAILURE
        }
    }
}

/// Exit 0 on a 200 from /health, 1 otherwise: what Docker's HEALTHCHECK expects.
fn healthcheck(config: &Config) -> ExitCode {
    let addr = config.healthcheck_addr();
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| error.to_string())
        .and_then(|runtime| {
            runtime
                .block_on(healthcheck::check(addr, healthcheck::DEFAULT_TIMEOUT))
                .map_err(|error| error.to_string())
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("webapp healthcheck: {error}");
            ExitCode::FAILURE
        }
    }
}
