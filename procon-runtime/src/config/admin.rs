//! Settings of the admin server (`/metrics`, `/livez`, `/readyz`; the crate feature `admin`).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::{invalid, parse, ConfigError};

/// Settings of the admin server. It runs when `enabled` and the crate is built with the
/// `admin` feature; it binds to the loopback interface unless told otherwise.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Run the admin server. Default false.
    pub enabled: bool,
    /// Where it listens. Default `127.0.0.1:9464` (reachable from this host only).
    pub bind: SocketAddr,
    /// The token actions that change state must carry (`Authorization: Bearer <token>`); none
    /// means such actions are refused. Never logged or shown.
    pub token: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: false,
            bind: SocketAddr::from(([127, 0, 0, 1], 9464)),
            token: None,
        }
    }
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("enabled", &self.enabled)
            .field("bind", &self.bind)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Reads `PROCON_ADMIN_ENABLED`, `PROCON_ADMIN_BIND` and `PROCON_ADMIN_TOKEN`.
pub(super) fn from_vars(vars: &BTreeMap<String, String>) -> Result<AdminConfig, ConfigError> {
    let mut admin = AdminConfig::default();
    if let Some(v) = vars.get("PROCON_ADMIN_ENABLED") {
        admin.enabled = parse("PROCON_ADMIN_ENABLED", v)?;
    }
    if let Some(v) = vars.get("PROCON_ADMIN_BIND") {
        admin.bind = v.trim().parse().map_err(|_| {
            invalid(
                "PROCON_ADMIN_BIND",
                v,
                "expected an address and port, e.g. 127.0.0.1:9464",
            )
        })?;
    }
    if let Some(v) = vars.get("PROCON_ADMIN_TOKEN").filter(|v| !v.is_empty()) {
        admin.token = Some(v.clone());
    }
    Ok(admin)
}

/// Checks the admin settings.
pub(super) fn validate(admin: &AdminConfig) -> Result<(), ConfigError> {
    if admin.enabled && !cfg!(feature = "admin") {
        return Err(invalid(
            "admin.enabled",
            "true",
            "this build has no admin server: enable procon's `admin` feature",
        ));
    }
    if admin.token.as_deref().is_some_and(|t| t.len() < 16) {
        return Err(invalid(
            "admin.token",
            "<redacted>",
            "must be at least 16 characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    #[test]
    fn the_admin_server_is_off_by_default_and_its_token_never_shown() {
        let base = [
            ("PROCON_DATABASE_URL", "postgres://u@h/db"),
            ("PROCON_BROKERS", "k:9092"),
        ];
        let config = Config::from_vars(base).unwrap();
        assert!(!config.admin.enabled);
        assert_eq!(config.admin.bind.to_string(), "127.0.0.1:9464");
        let enabled = Config::from_vars(base.into_iter().chain([
            ("PROCON_ADMIN_ENABLED", "true"),
            ("PROCON_ADMIN_BIND", "0.0.0.0:9000"),
            ("PROCON_ADMIN_TOKEN", "a-token-of-sixteen-chars"),
        ]));
        if cfg!(feature = "admin") {
            let config = enabled.unwrap();
            assert!(config.admin.enabled);
            assert_eq!(config.admin.bind.port(), 9000);
            assert!(!format!("{config:?}").contains("a-token-of-sixteen"));
        } else {
            let error = enabled.unwrap_err().to_string();
            assert!(error.contains("`admin` feature"), "{error}");
        }
        let error = Config::from_vars(base.into_iter().chain([("PROCON_ADMIN_BIND", "nowhere")]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("PROCON_ADMIN_BIND"), "{error}");
        let error = Config::from_vars(base.into_iter().chain([("PROCON_ADMIN_TOKEN", "short")]))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("admin.token") && !error.contains("short"),
            "{error}"
        );
    }
}
