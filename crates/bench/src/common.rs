//! What the load generators (switchboard-bench, timer_load) share besides
//! the wire: the report flags and output, the runtime, the watchdog, checks
//! of the common flags, source addresses, rounding.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::procfs::unix_ns;

/// How the JSON report is given out.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportOpts {
    /// Print the JSON report on stdout (the table goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report to this file.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
    /// A label copied into the report.
    #[arg(long)]
    pub label: Option<String>,
}

/// Writes the report to --json-out if given, then prints the table on
/// stdout, or with --json the table on stderr and the report on stdout.
pub fn emit(opts: &ReportOpts, report: &Value, table: &str) -> Result<()> {
    use std::io::Write;
    let text = serde_json::to_string_pretty(report)?;
    if let Some(path) = &opts.json_out {
        std::fs::write(path, format!("{text}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if opts.json {
        eprint!("{table}");
        println!("{text}");
    } else {
        print!("{table}");
    }
    std::io::stdout().flush()?;
    Ok(())
}

/// A single-threaded runtime; exits with status 2 if there is none.
pub fn runtime(tool: &str) -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{tool}: runtime: {e}");
            std::process::exit(2);
        }
    }
}

/// Ends the process with status 3 (after `on_expiry`) once the wall clock
/// passes `deadline_ns`.
pub fn watchdog(deadline_ns: u64, tool: &'static str, what: &'static str, on_expiry: fn()) {
    std::thread::spawn(move || loop {
        let now = unix_ns();
        if now >= deadline_ns {
            eprintln!("{tool}: {what} passed its hard deadline; giving up");
            on_expiry();
            std::process::exit(3);
        }
        std::thread::sleep(Duration::from_nanos((deadline_ns - now).min(500_000_000)));
    });
}

/// Checks --duration and the other phases' seconds.
pub fn check_seconds(duration: f64, phases: &[(&str, f64)]) -> Result<()> {
    if !(duration > 0.0 && duration <= 86_400.0) {
        bail!("--duration must be within (0, 86400] seconds");
    }
    for &(name, v) in phases {
        if !(0.0..=3600.0).contains(&v) {
            bail!("{name} must be within [0, 3600] seconds");
        }
    }
    Ok(())
}

/// Checks --src-from and --src-to.
pub fn check_sources(from: u8, to: u8) -> Result<()> {
    if from == 0 || from > to || to == 255 {
        bail!("source addresses must satisfy 1 <= --src-from <= --src-to <= 254");
    }
    Ok(())
}

/// Source address of connection `i`: 127.0.0.from ..= 127.0.0.to in turn.
pub fn source_addr(from: u8, to: u8, i: usize) -> IpAddr {
    let span = usize::from(to - from) + 1;
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, from + (i % span) as u8))
}

/// `x` rounded to `places` decimals.
pub fn round(x: f64, places: i32) -> f64 {
    let m = 10f64.powi(places);
    (x * m).round() / m
}

/// A table's `label` suffix: ` [LABEL]`, or nothing.
pub fn label_suffix(label: &Value) -> String {
    label
        .as_str()
        .map(|l| format!(" [{l}]"))
        .unwrap_or_default()
}

/// ` (TEXT)` for a string value, or nothing.
pub fn paren_suffix(text: &Value) -> String {
    text.as_str().map(|x| format!(" ({x})")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(round(1.23456, 2), 1.23);
        assert_eq!(round(2.5, 0), 3.0);
        assert_eq!(
            source_addr(2, 4, 0),
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))
        );
        assert_eq!(
            source_addr(2, 4, 4),
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3))
        );
        assert!(check_sources(1, 254).is_ok());
        assert!(check_sources(0, 3).is_err());
        assert!(check_sources(5, 4).is_err());
        assert!(check_sources(2, 255).is_err());
        assert!(check_seconds(1.0, &[("--settle", 0.0)]).is_ok());
        assert!(check_seconds(0.0, &[]).is_err());
        assert!(check_seconds(1.0, &[("--settle", 3601.0)]).is_err());
        assert_eq!(label_suffix(&Value::from("x")), " [x]");
        assert_eq!(label_suffix(&Value::Null), "");
        assert_eq!(paren_suffix(&Value::from("y")), " (y)");
    }
}
