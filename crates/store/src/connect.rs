//! Opening a database by URL and bringing its schema up to date.

use crate::error::{Result, StoreError};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::str::FromStr;
use std::time::Duration;

/// How long a SQLite connection waits for another writer before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// Pool size for a SQLite file (writes are serialised by SQLite anyway).
const SQLITE_MAX_CONNECTIONS: u32 = 8;
/// Pool size for Postgres.
const PG_MAX_CONNECTIONS: u32 = 16;
/// How long to wait for a pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// An open connection pool of one of the supported backends.
#[derive(Clone, Debug)]
pub(crate) enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Opens `url` (`sqlite:…` or `postgres://…`) and runs the embedded migrations.
pub(crate) async fn open(url: &str) -> Result<Backend> {
    if url.starts_with("sqlite:") {
        open_sqlite(url).await.map(Backend::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        open_postgres(url).await.map(Backend::Postgres)
    } else {
        Err(StoreError::InvalidUrl {
            url: url.to_string(),
            reason: "expected sqlite://PATH, sqlite::memory: or postgres://…".into(),
        })
    }
}

fn is_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

async fn open_sqlite(url: &str) -> Result<SqlitePool> {
    let invalid = |e: sqlx::Error| StoreError::InvalidUrl {
        url: url.to_string(),
        reason: e.to_string(),
    };
    let in_memory = is_in_memory(url);
    let mut options = SqliteConnectOptions::from_str(url)
        .map_err(invalid)?
        .create_if_missing(true)
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
        .foreign_keys(true);
    let mut pool = SqlitePoolOptions::new().acquire_timeout(ACQUIRE_TIMEOUT);
    if in_memory {
        // One connection keeps the private in-memory database alive and consistent.
        pool = pool
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None);
    } else {
        let file = options.get_filename().to_path_buf();
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        options = options
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);
        pool = pool.max_connections(SQLITE_MAX_CONNECTIONS);
    }
    let pool = pool.connect_with(options).await?;
    // SQLite has no migration lock: two processes opening a fresh file at once can race on
    // the first migration. The loser sees the schema on its next try.
    let migrator = sqlx::migrate!("./migrations/sqlite");
    let mut tries = 0;
    loop {
        match migrator.run(&pool).await {
            Ok(()) => break,
            Err(e) if tries < 3 => {
                tries += 1;
                tracing::debug!("sqlite migration attempt {tries} failed, retrying: {e}");
                tokio::time::sleep(Duration::from_millis(100 * tries)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(pool)
}

async fn open_postgres(url: &str) -> Result<PgPool> {
    create_postgres_database(url).await;
    let pool = PgPoolOptions::new()
        .max_connections(PG_MAX_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect(url)
        .await?;
    // sqlx takes a Postgres advisory lock while migrating, so concurrent starts are safe.
    sqlx::migrate!("./migrations/postgres").run(&pool).await?;
    Ok(pool)
}

/// Creates the URL's database when it does not exist yet (needs the CREATEDB privilege). Any
/// failure is left for the real connection to report.
async fn create_postgres_database(url: &str) {
    use sqlx::migrate::MigrateDatabase;
    match sqlx::Postgres::database_exists(url).await {
        Ok(false) => match sqlx::Postgres::create_database(url).await {
            Ok(()) => tracing::info!("created the Postgres database named in the store URL"),
            Err(e) => tracing::warn!("could not create the Postgres database: {e}"),
        },
        Ok(true) => {}
        Err(e) => tracing::debug!("could not check whether the Postgres database exists: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_urls_are_recognised() {
        assert!(is_in_memory("sqlite::memory:"));
        assert!(is_in_memory("sqlite://file:x?mode=memory&cache=shared"));
        assert!(!is_in_memory("sqlite://data/jobs.db"));
    }
}
