//! `ticketctl stress`: checks the flags and turns them into a
//! [`WorkMode`] before any request, runs the load with Ctrl-C as the
//! shutdown signal (a partial report still follows), prints the report,
//! writes `--json` and `--plot`, and turns broken `--fail-if` rules and
//! audit violations into their exit statuses.

use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::Context;

use crate::cli::StressArgs;
use crate::stress::client::Target;
use crate::stress::{self, report, rules, ProgressMode, Scenario, Stop, StressError, WorkMode};
use crate::{CheckFailed, Interrupted, UsageError};

pub async fn run(a: StressArgs) -> anyhow::Result<()> {
    let rules = rules::parse_all(&a.fail_if).map_err(UsageError)?;
    let mode = work_mode(&a).await?;
    // An output that cannot be written fails now, not after the load.
    let json_to_stdout = a.json.as_deref() == Some(Path::new("-"));
    let json_file = a.json.as_deref().filter(|_| !json_to_stdout);
    for path in [json_file, a.plot.as_deref()].into_iter().flatten() {
        check_writable(path)?;
    }
    let shutdown = async {
        // Without a signal handler the run simply cannot be interrupted;
        // it must not be interrupted at once.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let report = stress::run(mode, shutdown).await.map_err(|e| match e {
        StressError::Usage(m) => anyhow::Error::new(UsageError(m)),
        other => anyhow::Error::new(other),
    })?;

    let violations = rules::violations(&rules, &report.stats);
    // Files first: a closed stdout (a pager quit early) must not lose them.
    if let Some(path) = &a.plot {
        std::fs::write(path, report::svg(&report.stats))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let mut json_printed = Ok(());
    if let Some(path) = &a.json {
        let doc = report::json(&report, &a.fail_if, &violations);
        let text = serde_json::to_string_pretty(&doc).expect("JSON values serialise") + "\n";
        if json_to_stdout {
            json_printed = std::io::stdout().lock().write_all(text.as_bytes());
        } else {
            std::fs::write(path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    // With the JSON on stdout, the report goes to stderr (whether or not
    // stdout's reader is still there).
    let printed = if json_to_stdout {
        let table = report::write_text(&mut std::io::stderr().lock(), &report, &violations);
        json_printed.and(table)
    } else {
        report::write_text(&mut std::io::stdout().lock(), &report, &violations)
    };
    match printed {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            return Err(e).context("cannot print the report")
        }
        _ => {}
    }
    if let Some(audit) = report.audit.as_ref().filter(|a| !a.violations.is_empty()) {
        // Each violation is in the report above; the error line stays short.
        let n = audit.violations.len();
        let more = match n {
            1 => String::new(),
            _ => format!(" (and {} more in the report)", n - 1),
        };
        return Err(
            CheckFailed::Audit(format!("audit failed: {}{more}", audit.violations[0])).into(),
        );
    }
    if !violations.is_empty() {
        let list: Vec<String> = violations.iter().map(|v| v.to_string()).collect();
        return Err(CheckFailed::Rule(format!("--fail-if violated: {}", list.join("; "))).into());
    }
    // A run cut short by Ctrl-C did not do what was asked: its report is
    // printed, and the exit status says it is partial.
    if report.interrupted {
        return Err(
            Interrupted("interrupted: the report covers the run until Ctrl-C".into()).into(),
        );
    }
    Ok(())
}

/// Fails when `path` plainly cannot be written: a directory, or in a
/// directory that does not exist. Nothing is opened or created here (a
/// named pipe or a symbolic link must meet only the real write).
fn check_writable(path: &Path) -> anyhow::Result<()> {
    if path.is_dir() {
        anyhow::bail!("cannot write {}: it is a directory", path.display());
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        anyhow::bail!(
            "cannot write {}: no directory {}",
            path.display(),
            dir.display()
        );
    }
    Ok(())
}

/// Checks every flag and decides the whole run.
async fn work_mode(a: &StressArgs) -> anyhow::Result<WorkMode> {
    let usage = |m: String| anyhow::Error::new(UsageError(m));
    if !crate::model::valid_event_id(&a.event) {
        return Err(usage(format!(
            "--event {:?} must be 1-64 characters of a-z A-Z 0-9 - _",
            a.event
        )));
    }
    match a.url.parse::<hyper::Uri>() {
        Ok(u) if u.scheme_str() == Some("http") && u.authority().is_some() => {}
        _ => {
            return Err(usage(format!(
                "--url {:?} must be an http:// URL such as http://127.0.0.1:3000",
                a.url
            )))
        }
    }
    if let Some(r) = a.rate {
        if !(r.is_finite() && r > 0.0) {
            return Err(usage(format!("--rate must be a positive number (got {r})")));
        }
    }
    if !(0.0..=100.0).contains(&a.abandon) {
        return Err(usage(format!(
            "--abandon must be 0..=100 (got {})",
            a.abandon
        )));
    }
    if a.timeout.is_zero() {
        return Err(usage("--timeout must be greater than 0".into()));
    }
    let scenario = a.scenario;
    if a.quantity.is_some() && matches!(scenario, Scenario::Hot | Scenario::Browse) {
        return Err(usage(
            "--quantity applies to the reserve and reserve-buy scenarios".into(),
        ));
    }
    let stop = match (a.requests, a.duration) {
        (Some(n), _) => Stop::Requests(n),
        (None, Some(d)) if d.is_zero() => {
            return Err(usage("--duration must be greater than 0".into()))
        }
        (None, Some(d)) => Stop::Duration(d),
        (None, None) => Stop::Duration(std::time::Duration::from_secs(10)),
    };
    let target = Target::resolve(&a.url)
        .await
        .map_err(|m| anyhow::anyhow!(m))?;
    let seed = a.seed.unwrap_or_else(|| {
        getrandom::u64().unwrap_or_else(|_| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        })
    });
    let progress = if a.quiet {
        ProgressMode::Off
    } else if std::io::stderr().is_terminal() {
        ProgressMode::Bar
    } else {
        ProgressMode::Lines
    };
    Ok(WorkMode {
        target,
        event: a.event.clone(),
        scenario,
        connections: a.connections as usize,
        stop,
        rate: a.rate,
        ramp: a.ramp,
        quantity: a.quantity,
        section: a.section.clone(),
        pay: match (
            a.pay,
            &a.payment_secret
                .clone()
                .or_else(|| std::env::var("TICKETCTL_PAYMENT_SECRET").ok()),
        ) {
            (None, _) => None,
            (Some(p), Some(s)) if !s.is_empty() => Some((p / 100.0, s.clone())),
            (Some(_), _) => return Err(UsageError(
                "--pay needs --payment-secret (or TICKETCTL_PAYMENT_SECRET): results are signed"
                    .into(),
            )
            .into()),
        },
        jwt: jwt_signing(a)?,
        think: a.think,
        poll: a.poll,
        abandon: a.abandon / 100.0,
        hot_tickets: a.hot_tickets,
        path: a.path.clone(),
        seed,
        timeout: a.timeout,
        audit: a.audit,
        progress,
    })
}

/// `--jwt-secret` (with `--jwt-issuer`, `--jwt-audience`).
fn jwt_signing(a: &StressArgs) -> anyhow::Result<Option<crate::stress::JwtSigning>> {
    let claims_asked = a.jwt_issuer.is_some() || a.jwt_audience.is_some();
    match a.jwt_secret.clone() {
        None if claims_asked => {
            Err(UsageError("--jwt-issuer and --jwt-audience need --jwt-secret".into()).into())
        }
        None => Ok(None),
        Some(s) if s.is_empty() => Err(UsageError("--jwt-secret must not be empty".into()).into()),
        Some(secret) => Ok(Some(crate::stress::JwtSigning {
            secret,
            issuer: a.jwt_issuer.clone(),
            audience: a.jwt_audience.clone(),
            // Valid for the whole run and then some.
            ttl_secs: 24 * 3600,
        })),
    }
}
