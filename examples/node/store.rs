//! Storage: one SQLite database per node, shared by its channels. Each channel writes under its
//! own name (`spilman`, `duplex`, `lightning`) and its fee bumper under `NAME/bumper`.
//!
//! Two tables: `snapshots` (the last full snapshot of each name and the update id of the last
//! write) and `records` (the append-only log of each name, in order). One [`StateUpdate`] is ONE
//! SQLite transaction, and [`paychan::driver::Driver`] writes it before it sends or broadcasts
//! anything of the same effects.

use std::path::Path;

use paychan::driver::Storage;
use paychan::driving::StateUpdate;
use rusqlite::{params, Connection, OptionalExtension};

use crate::Error;

/// One channel's view of the node's database.
pub struct Db {
    conn: Connection,
    name: &'static str,
    /// Extra records written with the next channel update, in the same transaction, under
    /// `NAME/outbox` (replacing the previous ones): what the channel itself cannot resend.
    pub outbox: Option<Vec<u8>>,
}

impl Db {
    /// Opens (or creates) the database at `path` for the channel `name`.
    pub fn open(path: &Path, name: &'static str) -> Result<Self, Error> {
        let conn = Connection::open(path)?;
        // WAL with full sync: a committed transaction survives a crash of the process and of
        // the machine.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS snapshots (
                 name TEXT PRIMARY KEY,
                 update_id INTEGER NOT NULL,
                 bytes BLOB NOT NULL
             );
             CREATE TABLE IF NOT EXISTS records (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 name TEXT NOT NULL,
                 bytes BLOB NOT NULL
             );",
        )?;
        Ok(Db { conn, name, outbox: None })
    }

    /// The channel's stored snapshot and the update id of its last write (which may be a delta
    /// after the snapshot).
    pub fn snapshot(&self) -> Result<Option<(u64, Vec<u8>)>, Error> {
        self.snapshot_of(self.name)
    }

    /// The channel's records (its log), oldest first.
    pub fn records(&self) -> Result<Vec<Vec<u8>>, Error> {
        self.records_of(self.name)
    }

    /// The bumper's snapshot.
    pub fn bumper(&self) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.snapshot_of(&format!("{}/bumper", self.name))?.map(|(_, b)| b))
    }

    /// The outbox's last entry.
    pub fn outbox(&self) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.records_of(&format!("{}/outbox", self.name))?.pop())
    }

    fn snapshot_of(&self, name: &str) -> Result<Option<(u64, Vec<u8>)>, Error> {
        Ok(self
            .conn
            .query_row("SELECT update_id, bytes FROM snapshots WHERE name = ?1", [name], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
            })
            .optional()?)
    }

    fn records_of(&self, name: &str) -> Result<Vec<Vec<u8>>, Error> {
        let mut stmt = self.conn.prepare("SELECT bytes FROM records WHERE name = ?1 ORDER BY seq")?;
        let rows = stmt.query_map([name], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Appends the update's records, then replaces the snapshot if it carries one (else only
    /// moves the update id on: the update is a delta in the records).
    fn write(tx: &rusqlite::Transaction<'_>, name: &str, u: &StateUpdate) -> rusqlite::Result<()> {
        for r in &u.records {
            tx.execute("INSERT INTO records (name, bytes) VALUES (?1, ?2)", params![name, r])?;
        }
        match &u.snapshot {
            Some(bytes) => tx.execute(
                "INSERT INTO snapshots (name, update_id, bytes) VALUES (?1, ?2, ?3)
                 ON CONFLICT(name) DO UPDATE SET update_id = excluded.update_id, bytes = excluded.bytes",
                params![name, u.update_id as i64, bytes],
            )?,
            None => {
                tx.execute("UPDATE snapshots SET update_id = ?2 WHERE name = ?1", params![name, u.update_id as i64])?
            }
        };
        Ok(())
    }
}

impl Storage for Db {
    type Error = rusqlite::Error;

    fn persist_channel(&mut self, update: &StateUpdate) -> Result<(), Self::Error> {
        let tx = self.conn.transaction()?;
        Db::write(&tx, self.name, update)?;
        if let Some(entry) = &self.outbox {
            let outbox = format!("{}/outbox", self.name);
            tx.execute("DELETE FROM records WHERE name = ?1", [&outbox])?;
            tx.execute("INSERT INTO records (name, bytes) VALUES (?1, ?2)", params![outbox, entry])?;
        }
        tx.commit()?;
        self.outbox = None;
        Ok(())
    }

    fn persist_bumper(&mut self, update: &StateUpdate) -> Result<(), Self::Error> {
        let tx = self.conn.transaction()?;
        Db::write(&tx, &format!("{}/bumper", self.name), update)?;
        tx.commit()
    }
}
