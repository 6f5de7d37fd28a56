use super::*;

fn cli(args: &[&str]) -> Result<Settings, String> {
    let mut all = vec!["webhook-receiver"];
    all.extend_from_slice(args);
    Cli::try_parse_from(all)
        .map(|c| c.settings)
        .map_err(|e| e.to_string())
}

fn parse(args: &[&str]) -> Result<Settings, String> {
    let s = cli(args)?;
    s.validate().map_err(|e| e.to_string())?;
    Ok(s)
}

fn with_secrets(args: &[&str], vars: &[(&str, &str)]) -> Result<Settings, String> {
    let mut s = cli(args)?;
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    s.secrets =
        Secrets::from_lookup(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.into()))
            .map_err(|e| e.to_string())?;
    s.validate().map_err(|e| e.to_string())?;
    Ok(s)
}

#[test]
fn defaults_are_valid() {
    let s = parse(&[]).unwrap();
    assert_eq!(s.services(), ["webapp"]);
    assert_eq!(s.listen_addr.port(), 5001);
    assert!(s.docker_events && !s.dry_run);
    assert_eq!(
        s.budget_state().unwrap(),
        PathBuf::from("restart-budget.json")
    );
    assert_eq!(s.restart_window, Duration::from_secs(600));
    assert_eq!(s.restart_backoff, Duration::from_secs(1));
    assert_eq!(s.restart_backoff_max, Duration::from_secs(2));
    assert_eq!(s.stops_state().unwrap(), PathBuf::from("stops.json"));
    assert_eq!(s.restart_stable, Duration::from_secs(10));
    assert_eq!(s.verify_timeout, Duration::from_secs(30));
    assert_eq!(s.debounce, Duration::from_millis(100));
    assert_eq!(s.drain_timeout, Duration::from_secs(20));
    assert_eq!(s.llm_timeout, Duration::from_secs(60));
    assert_eq!(s.incident_log_max_bytes, 10 << 20);
    assert_eq!(s.incident_log_keep, 3);
    assert!(s.token().is_none());
    assert_eq!(s.gemini_model, "gemini-3.8-flash");
    assert_eq!(
        s.gemini_thinking_level,
        crate::llm::gemini::ThinkingLevel::Low
    );
    let s = parse(&["--gemini-thinking-level", "default"]).unwrap();
    assert_eq!(
        s.gemini_thinking_level,
        crate::llm::gemini::ThinkingLevel::ModelDefault
    );
}

#[test]
fn durations_take_humantime_or_the_unit_of_their_name() {
    let s = parse(&[
        "--restart-window-secs",
        "15m",
        "--restart-backoff-ms",
        "250",
        "--restart-backoff-max-ms",
        "1m",
        "--restart-stable-secs",
        "0",
        "--verify-timeout-secs",
        "45",
        "--debounce-ms",
        "1s",
        "--drain-timeout",
        "5s",
        "--llm-timeout-secs",
        "2m",
    ])
    .unwrap();
    assert_eq!(s.restart_window, Duration::from_secs(900));
    assert_eq!(s.restart_backoff, Duration::from_millis(250));
    assert_eq!(s.restart_backoff_max, Duration::from_secs(60));
    assert_eq!(s.restart_stable, Duration::ZERO);
    assert_eq!(s.verify_timeout, Duration::from_secs(45));
    assert_eq!(s.debounce, Duration::from_secs(1));
    assert_eq!(s.drain_timeout, Duration::from_secs(5));
    assert_eq!(s.llm_timeout, Duration::from_secs(120));
}

#[test]
fn every_bad_value_names_its_variable() {
    let cases: &[(&str, &str, &str)] = &[
        ("--heal-services", "web app", "HEAL_SERVICES"),
        ("--heal-services", ",", "HEAL_SERVICES"),
        ("--heal-project", "a/b", "HEAL_PROJECT"),
        ("--health-url", "not a url", "HEALTH_URL"),
        ("--health-url", "ftp://x/", "HEALTH_URL"),
        ("--gemini-base-url", "::", "GEMINI_BASE_URL"),
        ("--openai-base-url", "file:///etc", "OPENAI_BASE_URL"),
        ("--restart-budget", "0", "RESTART_BUDGET"),
        ("--restart-budget", "99999999999", "RESTART_BUDGET"),
        ("--restart-budget", "-1", "RESTART_BUDGET"),
        (
            "--restart-window-secs",
            "18446744073709551615",
            "RESTART_WINDOW_SECS",
        ),
        ("--restart-window-secs", "0", "RESTART_WINDOW_SECS"),
        ("--restart-window-secs", "soon", "RESTART_WINDOW_SECS"),
        (
            "--restart-backoff-ms",
            "18446744073709551615",
            "RESTART_BACKOFF_MS",
        ),
        ("--restart-backoff-max-ms", "2h", "RESTART_BACKOFF_MAX_MS"),
        ("--restart-stable-secs", "-1", "RESTART_STABLE_SECS"),
        (
            "--verify-timeout-secs",
            "18446744073709551615",
            "VERIFY_TIMEOUT_SECS",
        ),
        ("--verify-timeout-secs", "0", "VERIFY_TIMEOUT_SECS"),
        ("--debounce-ms", "1h", "DEBOUNCE_MS"),
        ("--drain-timeout", "20", "DRAIN_TIMEOUT"),
        ("--drain-timeout", "1d", "DRAIN_TIMEOUT"),
        ("--incident-log-max-bytes", "100", "INCIDENT_LOG_MAX_BYTES"),
        ("--incident-log-max-bytes", "10MB", "INCIDENT_LOG_MAX_BYTES"),
        ("--incident-log-keep", "1000", "INCIDENT_LOG_KEEP"),
        ("--webhook-max-bytes", "10", "WEBHOOK_MAX_BYTES"),
        (
            "--webhook-max-bytes",
            "99999999999999999999",
            "WEBHOOK_MAX_BYTES",
        ),
        ("--llm-max-turns", "0", "LLM_MAX_TURNS"),
        ("--llm-timeout-secs", "0", "LLM_TIMEOUT_SECS"),
        (
            "--llm-timeout-secs",
            "18446744073709551615",
            "LLM_TIMEOUT_SECS",
        ),
        ("--llm-provider", "gemini", "GEMINI_API_KEY"),
        ("--llm-provider", "claude", "LLM_PROVIDER"),
        (
            "--gemini-thinking-level",
            "extreme",
            "GEMINI_THINKING_LEVEL",
        ),
        ("--dry-run", "maybe", "DRY_RUN"),
        ("--listen-addr", "localhost", "LISTEN_ADDR"),
        ("--reconcile-interval", "500ms", "RECONCILE_INTERVAL"),
        ("--reconcile-interval", "10", "RECONCILE_INTERVAL"),
        ("--reconcile-interval", "2d", "RECONCILE_INTERVAL"),
        ("--replica-probe-port", "70000", "REPLICA_PROBE_PORT"),
        ("--replica-probe-path", "health", "REPLICA_PROBE_PATH"),
        ("--replica-probe-timeout", "1h", "REPLICA_PROBE_TIMEOUT"),
        ("--escalate-after", "1001", "ESCALATE_AFTER"),
        (
            "--escalate-window",
            "18446744073709551615s",
            "ESCALATE_WINDOW",
        ),
        ("--crash-on-start-tries", "0", "CRASH_ON_START_TRIES"),
        ("--notify-format", "xml", "NOTIFY_FORMAT"),
        ("--notify-timeout", "0", "NOTIFY_TIMEOUT"),
    ];
    for (flag, value, var) in cases {
        // `--flag=value`, so that "-1" is a value and not a flag.
        let e = parse(&[&format!("{flag}={value}")])
            .expect_err(&format!("{flag} {value} was accepted"));
        assert!(e.contains(var), "{flag} {value}: {e:?} should name {var}");
    }
    assert!(parse(&["--dry-run", "yes"]).unwrap().dry_run);
}

#[test]
fn secrets_are_not_flags() {
    for flag in [
        "--webhook-token",
        "--gemini-api-key",
        "--google-api-key",
        "--openai-api-key",
    ] {
        let e = cli(&[flag, "s3cret"]).expect_err(flag);
        assert!(e.contains("unexpected argument"), "{flag}: {e}");
    }
    let s = with_secrets(
        &["--llm-provider", "gemini"],
        &[("GEMINI_API_KEY", "AIza-k"), ("WEBHOOK_TOKEN", "t0k")],
    )
    .unwrap();
    assert_eq!(s.gemini_key().unwrap().expose(), "AIza-k");
    assert!(s.token().unwrap().matches("t0k"));
    let debug = format!("{s:?}");
    assert!(
        !debug.contains("AIza-k") && !debug.contains("t0k"),
        "{debug}"
    );
}

#[test]
fn openai_needs_a_model_and_auto_does_not_guess() {
    let e = with_secrets(&["--llm-provider", "openai"], &[("OPENAI_API_KEY", "sk-1")]).unwrap_err();
    assert!(e.contains("OPENAI_MODEL"), "{e}");
    let s = with_secrets(&[], &[("OPENAI_API_KEY", "sk-1"), ("WEBHOOK_TOKEN", "t")]).unwrap();
    let w = s.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("OPENAI_MODEL"));
    let s = with_secrets(
        &["--openai-model", "llama3.1"],
        &[("OPENAI_API_KEY", "sk-1"), ("WEBHOOK_TOKEN", "t")],
    )
    .unwrap();
    assert!(s.warnings().is_empty());
    assert!(parse(&[]).unwrap().warnings().is_empty());
    assert!(parse(&["--webhook-auth", "none"]).unwrap().warnings()[0].contains("WEBHOOK_AUTH"));
}

#[test]
fn well_known_tokens_are_refused_unless_allowed() {
    for weak in ["change-me", "CHANGE-ME", "changeme", "secret"] {
        let e = with_secrets(&[], &[("WEBHOOK_TOKEN", weak)]).unwrap_err();
        assert!(
            e.contains("WEBHOOK_TOKEN") && e.contains("ALLOW_WEAK_TOKEN"),
            "{e}"
        );
        assert!(
            !e.contains(weak) || weak.to_ascii_lowercase() == weak,
            "{e}"
        );
    }
    let s = with_secrets(
        &["--allow-weak-token", "true"],
        &[("WEBHOOK_TOKEN", "change-me")],
    )
    .unwrap();
    assert!(s.warnings()[0].contains("well-known"), "{:?}", s.warnings());
    assert!(with_secrets(&[], &[("WEBHOOK_TOKEN", "change-me-3f9a1c")]).is_ok());
    let s = parse(&["--incident-log", "/data/incidents.jsonl"]).unwrap();
    assert_eq!(
        s.token_state().unwrap(),
        PathBuf::from("/data/webhook-token")
    );
    assert_eq!(s.webhook_auth, WebhookAuth::Bearer);
    assert!(s.token_share().is_none());
}
