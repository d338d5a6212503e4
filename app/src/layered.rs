//! Configuration in layers, as users expect: built-in defaults → an optional TOML file
//! (`--config path` or `SESSION_CRYPTO_CONFIG`) → environment variables → command-line
//! flags, each overriding the one before.
//!
//! The file's keys are the settings' environment-variable names, in either case
//! (`port = 3000`, `DATABASE_URL = "…"`); lists may be TOML arrays
//! (`cors_origins = ["https://a.example"]`). Its values become the defaults of the
//! `serve` and `check-config` arguments, so clap's own precedence (flag > environment >
//! default) gives the order above and the same validation applies to every layer.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};

use crate::config::{Cli, args_with_default_subcommand};

/// Subcommands whose arguments the file configures.
const CONFIGURED: [&str; 2] = ["serve", "check-config"];

/// The parsed command line, with where each `serve` setting came from.
#[derive(Debug)]
pub struct Parsed {
    /// The typed arguments.
    pub cli: Cli,
    /// The raw matches (for value sources).
    pub matches: ArgMatches,
    /// The file, if one was read.
    pub file: Option<PathBuf>,
    /// Argument ids whose value the file provided.
    pub from_file: BTreeSet<String>,
}

/// `--config <path>` / `--config=<path>` in the arguments, else `SESSION_CRYPTO_CONFIG`.
fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let Some(a) = a.to_str() else { continue };
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(p) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(p));
        }
    }
    std::env::var_os("SESSION_CRYPTO_CONFIG").map(PathBuf::from)
}

/// The file's settings as `(argument id, value text)`.
///
/// # Errors
/// A message naming the file and the offending key.
pub fn read_file(path: &Path) -> Result<Vec<(String, String)>, crate::Error> {
    let name = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("config file {name}: {e}"))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("config file {name}: not valid TOML: {e}"))?;
    let serve = Cli::command();
    let serve = serve
        .find_subcommand("serve")
        .ok_or("internal error: no serve subcommand")?;
    let mut settings = Vec::new();
    for (key, value) in table {
        if key == "gateway" {
            let routes = crate::gateway_settings::routes_from_file(&name.to_string(), value)?;
            settings.push(("gateway_routes".to_owned(), routes));
            continue;
        }
        let id = key.to_ascii_lowercase().replace('-', "_");
        let known = serve
            .get_arguments()
            .any(|a| a.get_id().as_str() == id && a.get_long().is_some());
        if !known || id == "config" || id == "gateway_routes" {
            return Err(crate::Error::Config(format!(
                "config file {name}: unknown setting `{key}` (settings are named as in \
                 `session-crypto serve --help`, by environment variable, e.g. `port` or \
                 `DATABASE_URL`)"
            )));
        }
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .into_iter()
                .map(|v| match v {
                    toml::Value::String(s) => Ok(s),
                    toml::Value::Integer(i) => Ok(i.to_string()),
                    _ => Err(crate::Error::Config(format!(
                        "config file {name}: `{key}`: list items must be strings or integers"
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()?
                .join(","),
            _ => {
                return Err(crate::Error::Config(format!(
                    "config file {name}: `{key}` must be a string, number, boolean or list"
                )));
            }
        };
        settings.push((id, text));
    }
    Ok(settings)
}

/// Parses the command line over the file's settings. Help, version and usage errors
/// exit the process, as with plain clap.
///
/// # Errors
/// An unreadable or invalid config file.
pub fn parse() -> Result<Parsed, crate::Error> {
    let args = args_with_default_subcommand();
    let file = config_path(&args);
    let settings = match &file {
        Some(path) => read_file(path)?,
        None => Vec::new(),
    };
    let mut command = Cli::command();
    for name in CONFIGURED {
        command = command.mut_subcommand(name, |mut sub| {
            for (id, value) in &settings {
                sub = sub.mut_arg(id.as_str(), |a| a.default_value(value.clone()));
            }
            sub
        });
    }
    let matches = command.get_matches_from(args);
    let cli = Cli::from_arg_matches(&matches).map_err(|e| e.to_string())?;
    Ok(Parsed {
        cli,
        matches,
        file,
        from_file: settings.into_iter().map(|(id, _)| id).collect(),
    })
}

/// Hides every password in a connection string: the `user:password@` of a URL, a
/// `password=` (or `sslpassword=`, …) query parameter, and a `password=` pair of a
/// libpq key=value string (`host=db password='x y'`).
pub(crate) fn redact_url(url: &str) -> String {
    if !url.contains("://") {
        return redact_key_values(url);
    }
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let mut out = match before_query.rsplit_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:<redacted>@{host}"),
            None => format!("{scheme}://{before_query}"),
        },
        None => format!("{scheme}://{before_query}"),
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if is_secret_key(key) => format!("{key}=<redacted>"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

fn is_secret_key(key: &str) -> bool {
    key.trim().to_ascii_lowercase().ends_with("password")
}

/// `key=value` pairs separated by spaces, values optionally in single quotes (libpq).
fn redact_key_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else {
            out.push_str(rest);
            break;
        };
        let (key, after) = rest.split_at(eq);
        let after = &after[1..];
        let value_len = if let Some(inner) = after.strip_prefix('\'') {
            // Up to the closing quote that is not escaped with a backslash.
            let mut end = inner.len();
            let mut escaped = false;
            for (i, c) in inner.char_indices() {
                match c {
                    '\\' if !escaped => escaped = true,
                    '\'' if !escaped => {
                        end = i;
                        break;
                    }
                    _ => escaped = false,
                }
            }
            (end + 2).min(after.len())
        } else {
            after.find(char::is_whitespace).unwrap_or(after.len())
        };
        let (value, tail) = after.split_at(value_len);
        out.push_str(key);
        out.push('=');
        let name = key.rsplit(char::is_whitespace).next().unwrap_or(key);
        if is_secret_key(name) {
            out.push_str("<redacted>");
        } else {
            out.push_str(value);
        }
        rest = tail;
    }
    out
}

/// The effective `serve` configuration, one `NAME = value  # source` line per setting,
/// secrets redacted.
pub fn describe(parsed: &Parsed, subcommand: &str) -> String {
    let Some(sub_matches) = parsed.matches.subcommand_matches(subcommand) else {
        return String::new();
    };
    let command = Cli::command();
    let Some(sub) = command.find_subcommand(subcommand) else {
        return String::new();
    };
    let mut out = String::new();
    if let Some(path) = &parsed.file {
        out.push_str(&format!("# config file: {}\n", path.display()));
    }
    for arg in sub.get_arguments() {
        let id = arg.get_id().as_str();
        if arg.get_long().is_none() || id == "config" || arg.is_hide_set() {
            continue;
        }
        let name = arg
            .get_env()
            .and_then(|e| e.to_str())
            .map_or_else(|| id.to_ascii_uppercase(), str::to_owned);
        let raw: Option<Vec<String>> = sub_matches
            .get_raw(id)
            .map(|values| values.map(|v| v.to_string_lossy().into_owned()).collect());
        let value = match raw {
            None => "(unset)".to_owned(),
            Some(values) => {
                let joined = values.join(",");
                match id {
                    "session_kek"
                    | "session_kek_previous"
                    | "server_signing_key"
                    | "server_signing_key_next"
                    | "server_signing_key_previous" => "<redacted>".to_owned(),
                    "database_url"
                    | "pg_read_url"
                    | "redis_url"
                    | "redis_cluster_urls"
                    | "redis_sentinel_urls" => {
                        let each: Vec<String> = values.iter().map(|v| redact_url(v)).collect();
                        format!("{:?}", each.join(","))
                    }
                    _ => format!("{joined:?}"),
                }
            }
        };
        let source = match sub_matches.value_source(id) {
            Some(ValueSource::CommandLine) => "flag",
            Some(ValueSource::EnvVariable) => "environment",
            Some(ValueSource::DefaultValue) if parsed.from_file.contains(id) => "file",
            Some(ValueSource::DefaultValue) => "default",
            _ => "unset",
        };
        out.push_str(&format!("{name} = {value}  # {source}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_and_query_passwords_are_redacted() {
        assert_eq!(
            redact_url("host=db.example user=app password=s3cret dbname=sc"),
            "host=db.example user=app password=<redacted> dbname=sc"
        );
        assert_eq!(
            redact_url("host=db password='a b\\' c' sslmode=require"),
            "host=db password=<redacted> sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://db.example/sc?user=app&password=s3cret&sslmode=require"),
            "postgres://db.example/sc?user=app&password=<redacted>&sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://app:pw@db/sc?sslpassword=k"),
            "postgres://app:<redacted>@db/sc?sslpassword=<redacted>"
        );
        for text in [
            "host=db user=app",
            "redis://localhost:6379/0?protocol=resp3",
        ] {
            assert!(!redact_url(text).contains("redacted"), "{text}");
        }
    }

    #[test]
    fn url_passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cr:et@db.example:5432/sc"),
            "postgres://app:<redacted>@db.example:5432/sc"
        );
        assert_eq!(
            redact_url("redis://localhost:6379"),
            "redis://localhost:6379"
        );
        assert_eq!(
            redact_url("redis://:pw@localhost:6379/0"),
            "redis://:<redacted>@localhost:6379/0"
        );
    }
}
