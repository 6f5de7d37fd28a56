//! `e2e-report DIR`: analyses every run folder under DIR (alphabetical order), prints the table,
//! writes DIR/summary.json, and exits 1 when any check failed.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("e2e-report: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<bool> {
    let dir = PathBuf::from(std::env::args().nth(1).context("usage: e2e-report DIR")?);
    let mut runs = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries.iter().filter(|p| p.join("meta.json").exists()) {
        runs.push(
            e2e::report::analyse(path).with_context(|| format!("analysing {}", path.display()))?,
        );
    }
    anyhow::ensure!(
        !runs.is_empty(),
        "no run folders (with meta.json) in {}",
        dir.display()
    );
    println!("{}", e2e::report::table(&runs));
    let mut ok = true;
    for r in &runs {
        for c in &r.checks {
            println!(
                "[{}] {}: {}{}",
                if c.ok { "ok" } else { "FAIL" },
                r.name,
                c.what,
                if c.ok {
                    String::new()
                } else {
                    format!(" ({})", c.detail)
                }
            );
            ok &= c.ok;
        }
    }
    let across = e2e::report::compare_served(&runs);
    for c in &across {
        println!(
            "[{}] {}: {}",
            if c.ok { "ok" } else { "FAIL" },
            c.what,
            c.detail
        );
        ok &= c.ok;
    }
    let summary =
        serde_json::json!({ "runs": runs, "across_runs": across, "all_checks_passed": ok });
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    println!("summary: {}", dir.join("summary.json").display());
    Ok(ok)
}
