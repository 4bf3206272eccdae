//! Keeping secrets out of logs, errors and `Debug` output.
//!
//! Job: one place that knows which parts of a connection string or a client option are
//! secret. Every log line, error message and `Debug` implementation that shows a database URL
//! or client options goes through it.

/// Client options whose values are secret (librdkafka's SASL and TLS passwords, OAuth client
/// secrets): any option whose name contains one of these.
const SECRET_OPTION_PARTS: [&str; 4] = ["password", "secret", "sasl.jaas", "key.pem"];

/// The value shown instead of a secret.
pub(crate) const MASK: &str = "***";

/// True when the value of client option `name` must not be shown.
pub(crate) fn is_secret_option(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_OPTION_PARTS.iter().any(|part| name.contains(part))
}

/// A PostgreSQL connection string with its password hidden, in both forms libpq accepts: a
/// URL (`postgres://user:pw@host/db?password=pw`) and key/value pairs
/// (`host=h password=pw dbname=db`, values possibly quoted).
pub(crate) fn redact_connection_string(conn: &str) -> String {
    if conn.contains("://") {
        redact_url(conn)
    } else {
        redact_key_values(conn)
    }
}

fn redact_url(url: &str) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let query_start = url.find('?').unwrap_or(url.len());
    let authority_end = url[scheme_end..query_start]
        .find('/')
        .map_or(query_start, |i| scheme_end + i);
    let mut out = String::with_capacity(url.len());
    out.push_str(&url[..scheme_end]);
    let authority = &url[scheme_end..authority_end];
    match authority.rfind('@') {
        Some(at) => {
            let credentials = &authority[..at];
            match credentials.find(':') {
                Some(colon) => {
                    out.push_str(&credentials[..colon]);
                    out.push(':');
                    out.push_str(MASK);
                }
                None => out.push_str(credentials),
            }
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    out.push_str(&url[authority_end..query_start]);
    if query_start < url.len() {
        out.push('?');
        let query = &url[query_start + 1..];
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if is_secret_parameter(name) => format!("{name}={MASK}"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    out
}

/// `password`, and the TLS key's passphrase.
fn is_secret_parameter(name: &str) -> bool {
    matches!(name.trim(), "password" | "sslpassword")
}

fn redact_key_values(conn: &str) -> String {
    let mut out = String::with_capacity(conn.len());
    let mut rest = conn;
    while !rest.is_empty() {
        // Copy whitespace and the parameter name up to `=`.
        let Some(eq) = rest.find('=') else {
            out.push_str(rest);
            break;
        };
        let name = &rest[..eq];
        out.push_str(name);
        out.push('=');
        let after = rest[eq + 1..].trim_start();
        out.push_str(&rest[eq + 1..rest.len() - after.len()]);
        let value_len = value_length(after);
        if is_secret_parameter(name.trim()) {
            out.push_str(MASK);
        } else {
            out.push_str(&after[..value_len]);
        }
        rest = &after[value_len..];
    }
    out
}

/// Length of a key/value value at the start of `s`: quoted (with `\` escapes) or up to
/// whitespace.
pub(crate) fn value_length(s: &str) -> usize {
    let bytes = s.as_bytes();
    if bytes.first() == Some(&b'\'') {
        let mut i = 1;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => i += 2,
                b'\'' => return i + 1,
                _ => i += 1,
            }
        }
        return bytes.len();
    }
    s.find(char::is_whitespace).unwrap_or(s.len())
}

/// A copy of client options with secret values masked.
pub(crate) fn masked_options(
    options: &std::collections::BTreeMap<String, String>,
) -> std::collections::BTreeMap<String, String> {
    options
        .iter()
        .map(|(name, value)| {
            let shown = if is_secret_option(name) {
                MASK.to_owned()
            } else {
                value.clone()
            };
            (name.clone(), shown)
        })
        .collect()
}

/// `Debug` of client options with secret values masked.
pub(crate) struct RedactedOptions<'a>(pub(crate) &'a std::collections::BTreeMap<String, String>);

impl std::fmt::Debug for RedactedOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(name, value)| {
                let shown = if is_secret_option(name) {
                    MASK
                } else {
                    value.as_str()
                };
                (name, shown)
            }))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_passwords_are_hidden_in_the_authority_and_the_query() {
        assert_eq!(
            redact_connection_string("postgres://u:pw@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(
            redact_connection_string("postgres://u@h/db"),
            "postgres://u@h/db"
        );
        assert_eq!(
            redact_connection_string("postgresql://u@h:5432/db?password=s3cret&sslmode=require"),
            "postgresql://u@h:5432/db?password=***&sslmode=require"
        );
        assert_eq!(
            redact_connection_string("postgres://u:p%40ss@h/db?application_name=a@b"),
            "postgres://u:***@h/db?application_name=a@b"
        );
    }

    #[test]
    fn key_value_passwords_are_hidden_quoted_or_not() {
        assert_eq!(
            redact_connection_string("host=h password=s3cret dbname=db"),
            "host=h password=*** dbname=db"
        );
        assert_eq!(
            redact_connection_string("host=h password = 'a b\\' c' user=u"),
            "host=h password = *** user=u"
        );
        assert_eq!(redact_connection_string("password=x"), "password=***");
        let shown = redact_connection_string("host=h sslpassword=k dbname=passwords");
        assert_eq!(shown, "host=h sslpassword=*** dbname=passwords");
    }

    #[test]
    fn secret_client_options_are_recognised() {
        assert!(is_secret_option("sasl.password"));
        assert!(is_secret_option("ssl.key.password"));
        assert!(is_secret_option("sasl.oauthbearer.client.secret"));
        assert!(!is_secret_option("sasl.username"));
        assert!(!is_secret_option("linger.ms"));
    }
}
