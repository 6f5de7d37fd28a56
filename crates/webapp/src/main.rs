//! `webapp` serves the leaky demo app; `webapp healthcheck` probes a running one.

use std::process::ExitCode;

use webapp::{healthcheck, telemetry, Config};

const USAGE: &str = "usage: webapp [healthcheck]\n\
    Configured by PORT, METRICS_PORT, BIND_ADDR, LEAK_BYTES_PER_REQUEST, LOG_FORMAT, RUST_LOG.";

fn main() -> ExitCode {
    let command = std::env::args().nth(1);
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            // Exit 1 even for `healthcheck`: Docker reserves exit code 2 there.
            eprintln!("webapp: invalid configuration: {error}");
            return ExitCode::FAILURE;
        }
    };
    match command.as_deref() {
        None | Some("serve") => serve(config),
        Some("healthcheck") => healthcheck(&config),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("webapp: unknown command {other:?}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn serve(config: Config) -> ExitCode {
    telemetry::init_tracing(config.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the tokio runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(webapp::run(config, webapp::shutdown_signal())) {
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
