//! The one place where the runtime opens database connections for its blocking parts (the
//! consumer's processors, its intake loop and housekeeping): a connection pool.
//!
//! The pool connects lazily: a database that is down at start is not an error, a connection is
//! tried when one is needed and its failure is reported to the caller, which backs off. A
//! connection returned while still inside a transaction (a handler panicked in a nested
//! transaction) is discarded by the pool, never reused.

use std::time::Duration;

use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, Pool, PooledConnection};

/// A pool of connections to the service's database.
pub(crate) type DbPool = Pool<ConnectionManager<PgConnection>>;

/// A connection taken from the pool.
pub(crate) type DbConn = PooledConnection<ConnectionManager<PgConnection>>;

/// How long taking a connection may wait (the database is down, or every connection is busy).
const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);

/// A pool of at most `size` connections to `url`; nothing is connected yet.
pub(crate) fn pool(url: &str, size: usize) -> DbPool {
    Pool::builder()
        .max_size(u32::try_from(size.max(1)).unwrap_or(u32::MAX))
        .min_idle(Some(0))
        .connection_timeout(CHECKOUT_TIMEOUT)
        .build_unchecked(ConnectionManager::new(url))
}
