//! The embedded store: one SQLite file in WAL mode.
//!
//! All writes go through one writer thread ([`writer`]) that commits the operations that
//! arrived together in one transaction (group commit): under load, one fsync serves many
//! requests, yet no caller hears back before its write is committed. Reads use a small pool
//! beside it. Migrations run at open, before the writer starts.

mod buyer;
mod inbox;
mod ledger;
mod outbox;
mod writer;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::Connection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use tokio::sync::{mpsc, oneshot};

use super::backend::{Backend, Outcome, Work};
use super::sql::Dialect;
use super::{StoreError, StoreResult};
use crate::clock::{Clock, SharedClock, SystemClock};
use writer::{Message, Op};

pub struct SqliteStore {
    writer: mpsc::Sender<Message>,
    read: SqlitePool,
    clock: SharedClock,
}

/// When a commit counts as done (`?synchronous=` of the store URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=FULL` (the default): every commit is synced to disk (fsync of the WAL)
    /// before anyone hears of it. Nothing acknowledged is lost, even on power loss.
    #[default]
    Full,
    /// `synchronous=NORMAL`: a commit is written to the WAL file but synced only at
    /// checkpoints. Nothing acknowledged is lost when the process dies (killed, crashed: the
    /// operating system still writes what it was handed); the last commits before a power
    /// loss or kernel crash can be. The database itself is never corrupted either way.
    Normal,
}

/// Splits `path?synchronous=full|normal` into the path and its durability.
pub fn parse_location(location: &str) -> StoreResult<(&str, Durability)> {
    let bad = || StoreError::BadUrl(format!("sqlite://{location}"));
    let Some((path, query)) = location.split_once('?') else {
        return Ok((location, Durability::Full));
    };
    let mut durability = Durability::Full;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        durability = match pair.split_once('=').ok_or_else(bad)? {
            ("synchronous", v) if v.eq_ignore_ascii_case("full") => Durability::Full,
            ("synchronous", v) if v.eq_ignore_ascii_case("normal") => Durability::Normal,
            _ => return Err(bad()),
        };
    }
    Ok((path, durability))
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database at `location`: a path, optionally
    /// followed by `?synchronous=normal` (see [`Durability`]).
    pub async fn open(location: &str) -> StoreResult<Self> {
        SqliteStore::open_with_clock(location, SystemClock::shared()).await
    }

    /// [`SqliteStore::open`], recording the times of `clock`.
    pub async fn open_with_clock(location: &str, clock: SharedClock) -> StoreResult<Self> {
        let (path, durability) = parse_location(location)?;
        private_files(Path::new(path)).map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match durability {
                Durability::Full => SqliteSynchronous::Full,
                Durability::Normal => SqliteSynchronous::Normal,
            })
            .busy_timeout(Duration::from_secs(10));
        let mut conn = SqliteConnection::connect_with(&options).await?;
        sqlx::migrate!("./migrations/sqlite").run(&mut conn).await?;
        conn.close().await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        let (path, writes) = (path.to_string(), clock.clone());
        let (tx, rx) = mpsc::channel(8192);
        let channel = (rx, tx.downgrade());
        tokio::task::spawn_blocking(move || writer::spawn(&path, durability, channel, writes))
            .await
            .map_err(|_| StoreError::Closed)??;
        Ok(SqliteStore {
            writer: tx,
            read,
            clock,
        })
    }
}

impl Backend for SqliteStore {
    type Reader = SqlitePool;

    const DIALECT: Dialect = Dialect::Sqlite;

    /// One process per file: SQLite is the embedded, single-node store.
    fn shared(&self) -> bool {
        false
    }

    /// Hands `work` to the writer; its outcome once committed (with the others of its batch).
    fn write(&self, work: Work) -> BoxFuture<'_, StoreResult<Outcome>> {
        Box::pin(async move {
            let (reply, rx) = oneshot::channel();
            self.writer
                .send(Message::Op(Op { work, reply }))
                .await
                .map_err(|_| StoreError::Closed)?;
            match rx.await.map_err(|_| StoreError::Closed)?? {
                Outcome::ClaimLost => Err(StoreError::ClaimLost),
                outcome => Ok(outcome),
            }
        })
    }

    fn reader(&self) -> &SqlitePool {
        &self.read
    }

    fn clock(&self) -> &dyn Clock {
        &*self.clock
    }
}

/// The store holds personal data until its work is done: its directory, when the adapter
/// creates it, is the owner's alone (0700), and so are the database file and its `-wal` and
/// `-shm` companions (0600), created that way and narrowed if they were not.
fn private_files(path: &Path) -> std::io::Result<()> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
        if let Some(parent) = parent {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        for suffix in ["", "-wal", "-shm"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            let file = Path::new(&name);
            let Ok(meta) = std::fs::metadata(file) else {
                continue;
            };
            if meta.permissions().mode() & 0o077 != 0 {
                std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))?;
                tracing::warn!(file = %file.display(), "store file was readable by others; now 0600");
            }
        }
    }
    #[cfg(not(unix))]
    if let Some(parent) = parent {
        std::fs::create_dir_all(parent)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Admission, Inbound, InboundKey, InboxStore, now_ms};
    use bytes::Bytes;

    fn inbound(message_id: &str) -> Inbound {
        Inbound {
            key: InboundKey {
                flow: "lab".into(),
                action: "search".into(),
                message_id: message_id.into(),
            },
            transaction_id: "t1".into(),
            counterpart: "bap.example".into(),
            role: "bpp".into(),
            body: Bytes::from_static(b"{}"),
            headers: "{}".into(),
            callback_base: "http://127.0.0.1:9/bap".into(),
            owner: "p1".into(),
            lease_until: now_ms() + 60_000,
        }
    }

    #[test]
    fn store_locations_name_their_durability() {
        assert_eq!(
            parse_location("a/s.db").unwrap(),
            ("a/s.db", Durability::Full)
        );
        assert_eq!(
            parse_location("a/s.db?synchronous=normal").unwrap(),
            ("a/s.db", Durability::Normal)
        );
        assert_eq!(
            parse_location("s.db?synchronous=FULL").unwrap(),
            ("s.db", Durability::Full)
        );
        assert!(parse_location("s.db?synchronous=off").is_err());
        assert!(parse_location("s.db?cache=shared").is_err());
    }

    /// A store in a directory of its own, to be shared by concurrent writers.
    async fn shared_store() -> (tempfile::TempDir, std::sync::Arc<SqliteStore>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
        (dir, std::sync::Arc::new(store))
    }

    /// Operations share a commit: one that fails is undone alone, the others are recorded.
    #[tokio::test]
    async fn a_failed_write_does_not_undo_the_others_of_its_commit() {
        let (_dir, store) = shared_store().await;
        let mut tasks = Vec::new();
        for i in 0..100 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                if i % 10 == 5 {
                    let bad = Work::Execute(vec![("INSERT INTO nowhere VALUES (1)", vec![])]);
                    return s.write(bad).await.map(|_| Admission::New).is_err();
                }
                s.accept(inbound(&format!("m{i}"))).await.unwrap() == Admission::New
            }));
        }
        for t in tasks {
            assert!(t.await.unwrap());
        }
        let recorded = store.claim_unfinished("p", now_ms(), 1, 500, true);
        assert_eq!(recorded.await.unwrap().len(), 90);
    }

    #[tokio::test]
    async fn concurrent_writes_are_all_committed() {
        let (_dir, store) = shared_store().await;
        let mut tasks = Vec::new();
        for i in 0..200 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                s.accept(inbound(&format!("m{i}"))).await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), Admission::New);
        }
        assert_eq!(
            store
                .claim_unfinished("p", now_ms(), 1, 500, true)
                .await
                .unwrap()
                .len(),
            200
        );
    }
}
