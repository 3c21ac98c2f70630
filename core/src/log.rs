//! Logs for people: to stderr or to the config's `logFile`, never to stdout
//! (stdout carries only the result or error JSON).
//!
//! Configured by the network config keys `logFile` and `logLevel`
//! (`error`, `warn`, `info`, `debug`), overridden by the environment
//! variables `NUAGE_LOG_FILE` and `NUAGE_LOG_LEVEL`. The default is `warn`
//! on stderr, and `info` when a log file is given: each operation then
//! writes one line with command, network, container id, ifname, duration
//! and outcome.

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        match s.to_ascii_lowercase().as_str() {
            "error" => Some(Level::Error),
            "warn" | "warning" => Some(Level::Warn),
            "info" => Some(Level::Info),
            "debug" => Some(Level::Debug),
            _ => None,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
        }
    }
}

struct Logger {
    level: Level,
    file: Option<PathBuf>,
    tag: String,
}

static LOGGER: Mutex<Option<Logger>> = Mutex::new(None);

/// Sets up logging for this process. `tag` prefixes every line (e.g. the
/// plugin name); `file`/`level` come from the config, the environment wins.
pub fn init(tag: &str, file: Option<&str>, level: Option<&str>) {
    let env_file = std::env::var("NUAGE_LOG_FILE")
        .ok()
        .filter(|s| !s.is_empty());
    let env_level = std::env::var("NUAGE_LOG_LEVEL")
        .ok()
        .filter(|s| !s.is_empty());
    let mut complaints = Vec::new();
    let file = env_file
        .or_else(|| file.map(str::to_string))
        .map(PathBuf::from)
        // Relative to what? The runtime's working directory is no place
        // to look for logs.
        .filter(|f| {
            let absolute = f.is_absolute();
            if !absolute {
                complaints.push(format!(
                    "log file {} is not an absolute path: logging to stderr instead",
                    f.display()
                ));
            }
            absolute
        });
    let asked = env_level.as_deref().or(level);
    let parsed = asked.and_then(Level::parse);
    if let (Some(a), None) = (asked, parsed) {
        complaints.push(format!(
            "log level {a:?} is not one of error, warn, info, debug: using the default"
        ));
    }
    let level = parsed.unwrap_or(if file.is_some() {
        Level::Info
    } else {
        Level::Warn
    });
    if let Ok(mut l) = LOGGER.lock() {
        *l = Some(Logger {
            level,
            file,
            tag: tag.to_string(),
        });
    }
    // A plugin sets logging up twice (before and after its config is
    // read): what is wrong is said by `flush_complaints`, once, where the
    // final setup logs.
    if let Ok(mut p) = PENDING.lock() {
        *p = complaints;
    }
}

/// What the last [`init`] found wrong with the log file or level.
static PENDING: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Says (as warnings, where the log goes) what the last [`init`] found
/// wrong with the requested log file or level; each only once.
pub fn flush_complaints() {
    let pending = PENDING
        .lock()
        .map(|mut p| std::mem::take(&mut *p))
        .unwrap_or_default();
    for c in pending {
        warn(c);
    }
}

/// Whether a line at `level` would be written.
pub fn enabled(level: Level) -> bool {
    let l = LOGGER.lock().ok();
    let configured = l
        .as_ref()
        .and_then(|l| l.as_ref())
        .map_or(Level::Warn, |l| l.level);
    level <= configured
}

/// Writes one line at `level`. Failures to write a log never fail the operation.
pub fn log(level: Level, msg: fmt::Arguments<'_>) {
    let Ok(mut guard) = LOGGER.lock() else { return };
    let (max, file, tag) = match guard.as_ref() {
        Some(l) => (l.level, l.file.clone(), l.tag.clone()),
        None => (Level::Warn, None, "nuage".to_string()),
    };
    if level > max {
        return;
    }
    let line = |level: Level, msg: &str| {
        format!(
            "{} {} {}[{}]: {}\n",
            timestamp(SystemTime::now()),
            level.as_str(),
            tag,
            std::process::id(),
            one_line(msg)
        )
    };
    let text = line(level, &msg.to_string());
    let written = match &file {
        None => Ok(()),
        Some(path) => OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes())),
    };
    let mut stderr = std::io::stderr();
    match (written, &file) {
        (Ok(()), Some(_)) => {}
        (Ok(()), None) => {
            let _ = stderr.write_all(text.as_bytes());
        }
        (Err(e), Some(path)) => {
            // Said once: later lines go to stderr without a word.
            if let Some(l) = guard.as_mut() {
                l.file = None;
            }
            let why = format!(
                "log file {} cannot be written ({e}): logging to stderr instead",
                path.display()
            );
            let _ = stderr.write_all(line(Level::Warn, &why).as_bytes());
            let _ = stderr.write_all(text.as_bytes());
        }
        (Err(_), None) => {}
    }
}

/// A log entry is one line: the values it quotes (a name from the
/// environment, a kernel message) cannot start a forged line of their own.
fn one_line(msg: &str) -> std::borrow::Cow<'_, str> {
    // Control characters, and the Unicode ones that end a line or turn
    // text around for a viewer (line/paragraph separators, bidi marks and
    // overrides, the byte order mark).
    let odd = |c: char| {
        c.is_control()
            || matches!(
                c,
                '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{feff}'
            )
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
    };
    if !msg.chars().any(odd) {
        return msg.into();
    }
    let mut out = String::with_capacity(msg.len() + 8);
    for c in msg.chars() {
        if odd(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.into()
}

pub fn error(msg: impl fmt::Display) {
    log(Level::Error, format_args!("{msg}"));
}
pub fn warn(msg: impl fmt::Display) {
    log(Level::Warn, format_args!("{msg}"));
}
pub fn info(msg: impl fmt::Display) {
    log(Level::Info, format_args!("{msg}"));
}
pub fn debug(msg: impl fmt::Display) {
    log(Level::Debug, format_args!("{msg}"));
}

/// RFC 3339 UTC with milliseconds, without pulling in a date crate.
fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil-from-days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn entries_are_one_plain_line() {
        assert_eq!(one_line("a\nb\rc"), "a\\nb\\rc");
        assert_eq!(one_line("x\u{2028}y\u{202e}z"), "x\\u{2028}y\\u{202e}z");
        assert_eq!(one_line("caf\u{e9}"), "caf\u{e9}");
    }

    #[test]
    fn formats_utc() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(timestamp(t), "2023-11-14T22:13:20.123Z");
        assert_eq!(
            timestamp(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00.000Z"
        );
    }
}
