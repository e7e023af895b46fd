//! Read replicas fed from the Time Travel archive.
//!
//! A replica is a copy of the database file, in its own region, kept up to date by replaying
//! archived commits. It lags by a configurable time under the database's clock: it applies a
//! commit once the clock is at least `lag` past the commit's time. A read that carries a
//! bookmark the replica has not reached makes it catch up to that bookmark first (the replica
//! "waits" until it is at least that up to date, as D1's do). A restore on the primary reaches
//! replicas like any other commit.
//!
//! The replica file is kept in rollback-journal mode (its header is patched after every
//! catch-up), so that read-only connections need no WAL; its connection is reopened after
//! every catch-up, since the file changed underneath it.

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;

use bindery_core::SharedClock;
use bindery_core::d1::{D1Error, D1Limits, D1QueryResult, D1Result, D1Statement};
use parking_lot::Mutex;
use rusqlite::Connection;

use crate::guard::{self, Control, Durability, Role};
use crate::statement::{self, Ctx, ReadOutcome};
use crate::time_travel::TimeTravel;

/// A read replica's place and lag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// The region name it reports in `meta.served_by_region` (D1's are ENAM, WNAM, WEUR,
    /// EEUR, APAC and OC).
    pub region: String,
    /// How far behind the primary it runs, in milliseconds of the database's clock.
    pub lag_ms: u64,
}

struct State {
    /// The commit the replica file holds, `None` before its first build.
    applied: Option<u64>,
    conn: Option<(Connection, Arc<Control>)>,
}

pub(crate) struct Replica {
    pub config: ReplicaConfig,
    path: PathBuf,
    served_by: String,
    limits: D1Limits,
    state: Mutex<State>,
}

fn rw_err(e: impl Into<bindery_core::error::BoxError>) -> D1Error {
    D1Error::engine("updating a read replica", e)
}

/// Marks a database file as a rollback-journal database (bytes 18 and 19 of the header).
fn to_rollback_mode(f: &mut File) -> std::io::Result<()> {
    if f.metadata()?.len() >= 100 {
        f.seek(SeekFrom::Start(18))?;
        f.write_all(&[1, 1])?;
    }
    Ok(())
}

impl Replica {
    pub fn new(
        config: ReplicaConfig,
        history_dir: &std::path::Path,
        name: &str,
        limits: D1Limits,
    ) -> Self {
        let path = history_dir.join(format!("replica-{}.db", config.region));
        let served_by = format!("bindery-d1:{name}:{}", config.region);
        Self {
            config,
            path,
            served_by,
            limits,
            state: Mutex::new(State {
                applied: None,
                conn: None,
            }),
        }
    }

    /// Brings the file to the commit the lag allows, or to `at_least` if that is newer.
    fn catch_up(
        &self,
        state: &mut State,
        tt: &TimeTravel,
        clock: &SharedClock,
        at_least: u64,
    ) -> D1Result<()> {
        let mut a = tt.archive.lock();
        let lagged = a
            .last_at(clock.now_ms().saturating_sub(self.config.lag_ms))
            .map_or(0, |c| c.seq);
        let latest = a.last().map_or(0, |c| c.seq);
        let mut target = lagged.max(at_least).min(latest);
        if let Some(applied) = state.applied {
            // Replicas never go back in time.
            target = target.max(applied);
            if target == applied {
                return Ok(());
            }
        }
        if a.index.binary_search_by_key(&target, |c| c.seq).is_err() {
            // The lagged commit was pruned: start from the oldest one kept.
            target = a.index.first().map_or(latest, |c| c.seq).max(target);
        }
        state.conn = None;
        match state.applied {
            Some(applied) if a.can_replay(applied, target) => {
                let mut f = OpenOptions::new()
                    .write(true)
                    .open(&self.path)
                    .map_err(rw_err)?;
                a.replay_into(&mut f, applied, target).map_err(rw_err)?;
                to_rollback_mode(&mut f).map_err(rw_err)?;
            }
            _ => {
                let tmp = a.temp_path(&format!("replica-{}", self.config.region));
                a.materialize(target, &tmp).map_err(rw_err)?;
                let mut f = OpenOptions::new().write(true).open(&tmp).map_err(rw_err)?;
                to_rollback_mode(&mut f).map_err(rw_err)?;
                drop(f);
                fs::rename(&tmp, &self.path).map_err(rw_err)?;
            }
        }
        state.applied = Some(target);
        Ok(())
    }

    /// Runs a read on the replica, after it caught up as far as its lag (and `at_least`)
    /// require. Returns the result and the commit the replica held. Blocking.
    pub fn read(
        &self,
        tt: &TimeTravel,
        clock: &SharedClock,
        at_least: u64,
        stmt: &D1Statement,
    ) -> D1Result<(Option<D1QueryResult>, u64)> {
        let mut state = self.state.lock();
        self.catch_up(&mut state, tt, clock, at_least)?;
        let applied = state.applied.unwrap_or(0);
        if state.conn.is_none() {
            let control = Arc::new(Control::new());
            let conn = guard::open(
                &self.path,
                Role::Reader,
                &self.limits,
                Durability::PowerLoss,
                &control,
                true,
            )
            .map_err(|e| D1Error::engine("opening a read replica", e))?;
            state.conn = Some((conn, control));
        }
        let Some((conn, control)) = state.conn.as_ref() else {
            return Err(D1Error::Closed);
        };
        let checked = statement::check(stmt, &self.limits)?;
        let size = fs::metadata(&self.path).map_or(0, |m| m.len());
        let ctx = Ctx {
            conn,
            control,
            limits: &self.limits,
            served_by: &self.served_by,
            replica_region: Some(&self.config.region),
        };
        control.start_deadline(self.limits.max_query_ms);
        let r = statement::run(&ctx, stmt, &checked, true, Some(size), false);
        control.clear_deadline();
        match r? {
            ReadOutcome::Done(res) => Ok((Some(res), applied)),
            ReadOutcome::NeedsWriter => Ok((None, applied)),
        }
    }
}
