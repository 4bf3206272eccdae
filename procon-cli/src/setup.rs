//! Setting procon up and running its relay: `init`, `migrate`, `relay`, and the database
//! connection every command opens.

use std::collections::BTreeMap;
use std::path::Path;

use diesel::{Connection, PgConnection};

use crate::args::Database;
use crate::BoxError;

/// The settings template `procon init` writes.
const SETTINGS_TEMPLATE: &str = "\
# procon settings (every variable: procon::Config::from_vars, or the README's Configuration).
PROCON_DATABASE_URL=postgres://user@127.0.0.1:5432/app
PROCON_SERVICE_NAME=my-service
# kafka (default) or kinesis
PROCON_TRANSPORT=kafka
PROCON_BROKERS=127.0.0.1:9092
# PROCON_KINESIS_REGION=eu-west-1
# PROCON_RELAY_TOPICS=accounts=prod.accounts
# PROCON_CONSUMER_TOPICS=accounts=prod.accounts
# PROCON_CONSUMER_ON_FAILURE=stop
# PROCON_ADMIN_ENABLED=true
# PROCON_ADMIN_BIND=127.0.0.1:9464
";

/// `procon init`: the migrations as one SQL file and the settings template, in `dir`; never
/// overwrites a file.
pub(crate) fn init(dir: &Path) -> Result<(), BoxError> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut sql = String::from(
        "-- procon's migrations, in order. Apply them once, with your migration tool;\n\
         -- `procon migrate` does the same and records what it applied.\n",
    );
    for (name, up) in procon::runtime::store::migration_sql() {
        sql.push_str(&format!("\n-- {name}\n{up}\n"));
    }
    for (file, text) in [
        ("procon-migrations.sql", sql.as_str()),
        ("procon.env", SETTINGS_TEMPLATE),
    ] {
        let path = dir.join(file);
        if path.exists() {
            return Err(format!(
                "{} exists; remove it or choose another --dir",
                path.display()
            )
            .into());
        }
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// `procon migrate`.
pub(crate) fn migrate(db: Database) -> Result<(), BoxError> {
    let mut conn = connect(db)?;
    let applied = procon::migrate(&mut conn)?;
    if applied.is_empty() {
        println!("procon tables are up to date");
    }
    for version in applied {
        println!("applied {version}");
    }
    Ok(())
}

/// `procon relay`: the environment's settings with `--set` and `--topic` over them, run until
/// SIGINT or SIGTERM.
pub(crate) fn relay(topics: Vec<String>, settings: Vec<String>) -> Result<(), BoxError> {
    let mut vars: BTreeMap<String, String> = std::env::vars().collect();
    for setting in settings {
        let (name, value) = setting.split_once('=').ok_or_else(|| {
            format!("--set {setting}: expected NAME=VALUE, e.g. PROCON_RELAY_BATCH_SIZE=500")
        })?;
        vars.insert(name.trim().to_owned(), value.to_owned());
    }
    if !topics.is_empty() {
        let mut map = vars.remove("PROCON_RELAY_TOPICS").unwrap_or_default();
        for topic in topics {
            if !map.is_empty() {
                map.push(',');
            }
            map.push_str(&topic);
        }
        vars.insert("PROCON_RELAY_TOPICS".to_owned(), map);
    }
    let config = procon::Config::from_vars(vars)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let procon = procon::start(config)?;
        procon.run_until_signal().await?;
        Ok(())
    })
}

/// Settings for reading topics: the environment's, with `brokers` over PROCON_BROKERS.
/// Reading needs no database, but the settings want a URL: a placeholder stands in when none
/// is set.
pub(crate) fn kafka_settings(brokers: Option<String>) -> Result<procon::Config, BoxError> {
    let mut vars: BTreeMap<String, String> = std::env::vars().collect();
    if let Some(brokers) = brokers {
        vars.insert("PROCON_BROKERS".to_owned(), brokers);
    }
    vars.entry("PROCON_DATABASE_URL".to_owned())
        .or_insert_with(|| "postgres://localhost/unused".to_owned());
    Ok(procon::Config::from_vars(vars)?)
}

/// Connects to the database of `--database-url`, PROCON_DATABASE_URL or DATABASE_URL; the
/// error names the URL without its password.
pub(crate) fn connect(db: Database) -> Result<PgConnection, BoxError> {
    let url = db
        .database_url
        .or_else(|| std::env::var("DATABASE_URL").ok())
        .ok_or("no database: pass --database-url or set PROCON_DATABASE_URL")?;
    PgConnection::establish(&url).map_err(|e| {
        format!(
            "cannot connect to {}: {e} (is PostgreSQL running, and the URL right?)",
            procon::config::redact(&url)
        )
        .into()
    })
}
