use std::process::ExitCode;

use clap::Parser;
use webhook_receiver::config::{Cli, Command, Secrets};
use webhook_receiver::{telemetry, Application};

#[tokio::main]
async fn main() -> ExitCode {
    if let Err(e) = load_dotenv() {
        eprintln!("webhook-receiver: {e}");
        return ExitCode::from(2);
    }
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Healthcheck) => return healthcheck(cli.settings.listen_addr.port()).await,
        Some(Command::Token) => return print_token(&cli.settings),
        None => {}
    }
    let mut settings = cli.settings;
    telemetry::init(settings.log_format);
    let checked = Secrets::from_env().and_then(|secrets| {
        settings.secrets = secrets;
        settings.validate()
    });
    if let Err(e) = checked {
        tracing::error!("{e}");
        eprintln!("webhook-receiver: {e}");
        return ExitCode::from(2);
    }
    let app = match Application::build(&settings).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("webhook-receiver: {e}");
            return ExitCode::FAILURE;
        }
    };
    match app.run(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server error");
            ExitCode::FAILURE
        }
    }
}

/// `.env` in the working directory, if there is one; variables already set win. A line that does
/// not parse stops the start (its text is not shown: it may hold a key).
fn load_dotenv() -> Result<(), String> {
    match dotenvy::dotenv() {
        Ok(_) => Ok(()),
        Err(e) if e.not_found() => Ok(()),
        Err(dotenvy::Error::LineParse(_, index)) => Err(format!(
            ".env: cannot parse it at character {index} (the line is not shown: it may hold a secret)"
        )),
        Err(dotenvy::Error::Io(e)) => Err(format!(".env: {e}")),
        Err(_) => Err(".env: a value is not valid UTF-8".into()),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown signal received");
}

/// `webhook-receiver token`: the token the agent checks, on stdout (the one thing this prints a
/// secret for): the configured one, else the one it generated and kept.
fn print_token(settings: &webhook_receiver::config::Settings) -> ExitCode {
    let configured = match Secrets::from_env() {
        Ok(s) => s.webhook_token,
        Err(e) => {
            eprintln!("webhook-receiver token: {e}");
            return ExitCode::from(2);
        }
    };
    let kept = || {
        let path = settings.token_state()?;
        webhook_receiver::token::read_kept(&path).ok().flatten()
    };
    match configured.or_else(kept) {
        Some(t) => {
            println!("{}", t.expose());
            ExitCode::SUCCESS
        }
        None => {
            eprintln!(
                "webhook-receiver token: no WEBHOOK_TOKEN is set and no token has been generated yet \
                 ({}): start the agent once",
                settings
                    .token_state()
                    .map_or("no INCIDENT_LOG or TOKEN_STATE".into(), |p| p.display().to_string())
            );
            ExitCode::FAILURE
        }
    }
}

/// `webhook-receiver healthcheck`: GET /healthz on our own port; exit 0 on 200.
async fn healthcheck(port: u16) -> ExitCode {
    let url = format!("http://127.0.0.1:{port}/healthz");
    let client = reqwest::Client::new();
    match client
        .get(&url)
        .timeout(std::time::Duration::from_secs(2))
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => ExitCode::SUCCESS,
        Ok(r) => {
            eprintln!("{url}: HTTP {}", r.status());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{url}: {e}");
            ExitCode::FAILURE
        }
    }
}
