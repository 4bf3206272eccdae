//! TLS and connection health for the relay's own PostgreSQL connection (tokio-postgres).
//!
//! Job: make the relay connect the way libpq (and so Diesel, in the same process) does for the
//! same connection string: `sslmode` `disable`, `prefer` (TLS when the server offers it: the
//! default), `require` (TLS, certificate not checked), `verify-ca` (chain checked against
//! `sslrootcert`, or the system roots) and `verify-full` (chain and host name), with
//! `sslrootcert`, `sslcert` and `sslkey` as files. tokio-postgres knows only the first three
//! modes and none of the file settings, so they are taken out of the string here.
//!
//! Connection health: unless the string sets them, TCP keepalives (idle 10 s, interval 5 s,
//! 3 probes) and a 30 s TCP user timeout, so a half-open connection (a failover, a cut
//! network) is noticed in seconds instead of hours; and the session asks the server to probe
//! the relay the same way, so the server ends a vanished relay's session and its leader lock.

use std::time::Duration;

use native_tls::{Certificate, Identity, TlsConnector};
use postgres_native_tls::MakeTlsConnector;
use tokio_postgres::config::SslMode;

/// Settings libpq knows and tokio-postgres does not; taken out of the connection string.
const LIBPQ_TLS_SETTINGS: [&str; 7] = [
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcrl",
    "sslsni",
];

/// Session settings: the server notices a vanished relay (its keepalive probes), and the
/// relay's prepared reads are planned for their actual cursor, horizon and shards each time
/// (a generic plan guesses a third of the table for `txid >= $2` and may scan all of it, dead
/// rows included, where the index finds a few: 10× slower reads were measured); no parallel
/// workers for its small, frequent statements.
pub(crate) const SESSION_SQL: &str = "SET tcp_keepalives_idle = 10; \
     SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3; \
     SET plan_cache_mode = force_custom_plan; SET max_parallel_workers_per_gather = 0";

/// How the relay's connection is secured.
#[derive(Clone)]
pub(crate) enum Tls {
    /// `sslmode=disable`.
    Disable,
    /// TLS through this connector (`prefer` falls back to plaintext when the server has no TLS).
    Native(MakeTlsConnector),
}

/// Why the connection string's TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsSetupError {
    /// An unknown `sslmode`.
    #[error("sslmode `{0}` is not one of disable, allow, prefer, require, verify-ca, verify-full")]
    Mode(String),
    /// A certificate or key file could not be read or parsed.
    #[error("cannot use `{setting}` = `{path}`: {reason}")]
    File {
        setting: &'static str,
        path: String,
        reason: String,
    },
    /// The TLS library refused the settings.
    #[error("cannot set up TLS: {0}")]
    Native(#[from] native_tls::Error),
    /// What remains of the string is not a valid connection string.
    #[error(transparent)]
    Parse(#[from] tokio_postgres::Error),
}

/// Parses `conn` (URL or key/value form) the way libpq does for the relay: the tokio-postgres
/// configuration (with health defaults) and the TLS to connect with.
pub(crate) fn relay_connection(conn: &str) -> Result<(tokio_postgres::Config, Tls), TlsSetupError> {
    let (rest, settings) = split_settings(conn);
    let get = |name: &str| {
        settings
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let mode = get("sslmode").unwrap_or("prefer");
    let mut config: tokio_postgres::Config = rest.parse()?;
    let (ssl_mode, verify) = match mode {
        "disable" => (SslMode::Disable, None),
        // libpq's `allow` tries plaintext first; tokio-postgres cannot, so it prefers TLS.
        "allow" | "prefer" => (SslMode::Prefer, Some(Verify::None)),
        "require" => (SslMode::Require, Some(Verify::None)),
        "verify-ca" => (SslMode::Require, Some(Verify::Chain)),
        "verify-full" => (SslMode::Require, Some(Verify::Full)),
        other => return Err(TlsSetupError::Mode(other.to_owned())),
    };
    config.ssl_mode(ssl_mode);
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
        config.keepalives_idle(Duration::from_secs(10));
    }
    if config.get_keepalives_interval().is_none() {
        config.keepalives_interval(Duration::from_secs(5));
    }
    if config.get_keepalives_retries().is_none() {
        config.keepalives_retries(3);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(Duration::from_secs(30));
    }
    if config.get_application_name().is_none() {
        config.application_name("procon-relay");
    }
    let Some(verify) = verify else {
        return Ok((config, Tls::Disable));
    };
    let mut builder = TlsConnector::builder();
    match verify {
        Verify::None => {
            builder
                .danger_accept_invalid_certs(true)
                .danger_accept_invalid_hostnames(true);
        }
        Verify::Chain => {
            builder.danger_accept_invalid_hostnames(true);
        }
        Verify::Full => {}
    }
    if verify != Verify::None {
        if let Some(path) = get("sslrootcert") {
            let pem = read("sslrootcert", path)?;
            let root =
                Certificate::from_pem(&pem).map_err(|e| file_error("sslrootcert", path, e))?;
            builder.add_root_certificate(root);
        }
    }
    if let (Some(cert), Some(key)) = (get("sslcert"), get("sslkey")) {
        let identity = Identity::from_pkcs8(&read("sslcert", cert)?, &read("sslkey", key)?)
            .map_err(|e| file_error("sslkey", key, e))?;
        builder.identity(identity);
    }
    Ok((config, Tls::Native(MakeTlsConnector::new(builder.build()?))))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verify {
    None,
    Chain,
    Full,
}

fn read(setting: &'static str, path: &str) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path).map_err(|e| file_error(setting, path, e))
}

fn file_error(setting: &'static str, path: &str, reason: impl std::fmt::Display) -> TlsSetupError {
    TlsSetupError::File {
        setting,
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// The connection string without libpq's TLS settings, and those settings.
fn split_settings(conn: &str) -> (String, Vec<(String, String)>) {
    let mut taken = Vec::new();
    if let Some(query_start) = conn.find('?').filter(|_| conn.contains("://")) {
        let mut kept = Vec::new();
        for pair in conn[query_start + 1..].split('&') {
            match pair.split_once('=') {
                Some((name, value)) if LIBPQ_TLS_SETTINGS.contains(&name) => {
                    taken.push((name.to_owned(), percent_decode(value)));
                }
                _ if pair.is_empty() => {}
                _ => kept.push(pair),
            }
        }
        let mut rest = conn[..query_start].to_owned();
        if !kept.is_empty() {
            rest.push('?');
            rest.push_str(&kept.join("&"));
        }
        return (rest, taken);
    }
    if conn.contains("://") {
        return (conn.to_owned(), taken);
    }
    let mut rest = String::with_capacity(conn.len());
    let mut remaining = conn;
    while let Some(eq) = remaining.find('=') {
        let name = remaining[..eq].trim();
        let after = remaining[eq + 1..].trim_start();
        let len = crate::secrets::value_length(after);
        let raw = &after[..len];
        if LIBPQ_TLS_SETTINGS.contains(&name) {
            taken.push((name.to_owned(), unquote(raw)));
        } else {
            if !rest.is_empty() {
                rest.push(' ');
            }
            rest.push_str(name);
            rest.push('=');
            rest.push_str(raw);
        }
        remaining = &after[len..];
    }
    (rest, taken)
}

fn unquote(value: &str) -> String {
    match value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        Some(inner) => inner.replace("\\'", "'").replace("\\\\", "\\"),
        None => value.to_owned(),
    }
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(byte) = u8::from_str_radix(&value[i + 1..i + 3], 16) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_tls_settings_are_taken_out_of_both_forms() {
        let (rest, taken) = split_settings(
            "postgres://u@h/db?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem&application_name=x",
        );
        assert_eq!(rest, "postgres://u@h/db?application_name=x");
        assert_eq!(
            taken,
            vec![
                ("sslmode".to_owned(), "verify-full".to_owned()),
                ("sslrootcert".to_owned(), "/tmp/ca.pem".to_owned())
            ]
        );
        let (rest, taken) =
            split_settings("host=h sslmode=require sslrootcert='/a b.pem' dbname=d");
        assert_eq!(rest, "host=h dbname=d");
        assert_eq!(taken[1], ("sslrootcert".to_owned(), "/a b.pem".to_owned()));
    }

    #[test]
    fn every_libpq_mode_is_accepted_and_unknown_ones_are_named() {
        for mode in [
            "disable",
            "allow",
            "prefer",
            "require",
            "verify-ca",
            "verify-full",
        ] {
            let (config, _) = relay_connection(&format!("postgres://u@h/db?sslmode={mode}"))
                .unwrap_or_else(|e| panic!("{mode}: {e}"));
            let expected = match mode {
                "disable" => SslMode::Disable,
                "allow" | "prefer" => SslMode::Prefer,
                _ => SslMode::Require,
            };
            assert_eq!(config.get_ssl_mode(), expected, "{mode}");
        }
        let error = relay_connection("host=h sslmode=sometimes").err().unwrap();
        assert!(error.to_string().contains("sometimes"), "{error}");
    }

    #[test]
    fn connections_get_keepalives_and_timeouts_unless_set() {
        let (config, _) = relay_connection("postgres://u@h/db").unwrap();
        assert_eq!(config.get_keepalives_idle(), Duration::from_secs(10));
        assert_eq!(config.get_keepalives_retries(), Some(3));
        assert_eq!(
            config.get_tcp_user_timeout(),
            Some(&Duration::from_secs(30))
        );
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(5)));
        let (config, _) =
            relay_connection("postgres://u@h/db?keepalives_idle=60&connect_timeout=9").unwrap();
        assert_eq!(config.get_keepalives_idle(), Duration::from_secs(60));
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(9)));
    }
}
