//! A pool of read-only connections. In WAL mode each sees the last commit as of the start of
//! its read, never a writer's uncommitted work, and never blocks the writer.

use std::path::PathBuf;
use std::sync::Arc;

use bindery_core::d1::{D1Error, D1Limits, D1Result};
use parking_lot::{Condvar, Mutex};
use rusqlite::Connection;

use crate::guard::{self, Control, Durability, Role};

/// One pooled reader.
pub(crate) struct Reader {
    pub conn: Connection,
    pub control: Arc<Control>,
}

struct Slots {
    idle: Vec<Reader>,
    open: usize,
}

pub(crate) struct Readers {
    manual_checkpoints: bool,
    path: PathBuf,
    limits: D1Limits,
    max: usize,
    slots: Mutex<Slots>,
    freed: Condvar,
    /// Every reader's control, to cancel their queries (restore).
    controls: Mutex<Vec<Arc<Control>>>,
}

impl Readers {
    pub fn new(path: PathBuf, limits: D1Limits, max: usize, manual_checkpoints: bool) -> Self {
        Self {
            manual_checkpoints,
            path,
            limits,
            max: max.max(1),
            slots: Mutex::new(Slots {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
            controls: Mutex::new(Vec::new()),
        }
    }

    fn open_one(&self) -> D1Result<Reader> {
        let control = Arc::new(Control::new());
        let conn = guard::open(
            &self.path,
            Role::Reader,
            &self.limits,
            Durability::PowerLoss,
            &control,
            self.manual_checkpoints,
        )
        .map_err(|e| D1Error::engine("opening a reader", e))?;
        self.controls.lock().push(Arc::clone(&control));
        Ok(Reader { conn, control })
    }

    /// An idle reader, a new one if the pool has room, or `None` if every reader is busy.
    pub fn try_take(&self) -> D1Result<Option<Reader>> {
        let mut slots = self.slots.lock();
        if let Some(r) = slots.idle.pop() {
            return Ok(Some(r));
        }
        if slots.open < self.max {
            slots.open += 1;
            drop(slots);
            return match self.open_one() {
                Ok(r) => Ok(Some(r)),
                Err(e) => {
                    self.slots.lock().open -= 1;
                    Err(e)
                }
            };
        }
        Ok(None)
    }

    /// A reader, waiting for one to be returned when all are busy. Blocking.
    pub fn take(&self) -> D1Result<Reader> {
        loop {
            if let Some(r) = self.try_take()? {
                return Ok(r);
            }
            let mut slots = self.slots.lock();
            if slots.idle.is_empty() && slots.open >= self.max {
                self.freed.wait(&mut slots);
            }
        }
    }

    pub fn put(&self, reader: Reader) {
        reader.control.set_budget(-1);
        reader.control.clear_deadline();
        self.slots.lock().idle.push(reader);
        self.freed.notify_one();
    }

    /// Stops (or lets run again) every query running on the readers.
    pub fn set_cancel(&self, on: bool) {
        for c in self.controls.lock().iter() {
            c.set_cancel(on);
        }
    }

    /// Closes every idle reader (they reopen on demand).
    pub fn close_idle(&self) {
        let mut slots = self.slots.lock();
        let n = slots.idle.len();
        slots.idle.clear();
        slots.open -= n;
        drop(slots);
        self.controls.lock().retain(|c| Arc::strong_count(c) > 1);
    }
}
