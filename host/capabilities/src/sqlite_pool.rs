//! A small pool of SQLite connections to one database file, shared by the embedded key-value
//! and SQL stores.
//!
//! Statements run inline on the calling thread: a point query on a WAL database takes a few
//! microseconds, far less than handing it to a blocking thread would cost.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context as _, Result};
use rusqlite::Connection;

/// Connections to one database, opened on demand and reused.
pub struct SqlitePool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    setup: fn(&Connection) -> rusqlite::Result<()>,
}

impl SqlitePool {
    /// Open `path` (creating it and its folder), run `setup` on every new connection.
    pub fn open(path: &Path, setup: fn(&Connection) -> rusqlite::Result<()>) -> Result<Self> {
        let pool = Self {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
            setup,
        };
        let first = pool.connect()?;
        pool.put(first);
        Ok(pool)
    }

    fn connect(&self) -> Result<Connection> {
        Self::connect_to(&self.path, self.setup)
    }

    /// Open one connection to `path` with the pool's settings, then run `setup` on it.
    pub fn connect_to(
        path: &Path,
        setup: impl FnOnce(&Connection) -> rusqlite::Result<()>,
    ) -> Result<Connection> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        // The host's own paths only: no `file:` URIs, so no URI parameters either.
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
            | rusqlite::OpenFlags::SQLITE_OPEN_CREATE
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .with_context(|| format!("opening SQLite database {}", path.display()))?;
        // WAL lets readers run beside the writer; NORMAL syncs at checkpoints, not every commit
        // (a crash loses nothing, a power cut may lose the last commits).
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // Writers on other connections wait for the lock instead of failing at once.
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        setup(&conn)?;
        Ok(conn)
    }

    /// Take a connection (opening one when none is idle).
    pub fn take(&self) -> Result<Connection> {
        match self.idle.lock().unwrap().pop() {
            Some(c) => Ok(c),
            None => self.connect(),
        }
    }

    /// Return a connection for reuse.
    pub fn put(&self, conn: Connection) {
        self.idle.lock().unwrap().push(conn);
    }

    /// Run `f` on a pooled connection.
    pub fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let mut conn = self.take()?;
        let out = f(&mut conn);
        // A connection left inside a transaction (a failed COMMIT) must not be reused as is.
        if conn.is_autocommit() {
            self.put(conn);
        }
        out
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
