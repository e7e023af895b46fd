//! The redb engine: the tables, and the operations the committer applies in one transaction.
//!
//! Tables:
//! - `queues`: queue id to its settings and backlog counters (count, bytes);
//! - `messages`: (queue id, sequence) to an encoded [`Record`]; sequences grow with time, so
//!   a queue's first message is its oldest (messages moved to a dead-letter queue keep their
//!   timestamp and are the one exception);
//! - `visible`: (queue id, visible-at ms, index sequence) to the message's sequence. A message
//!   is ready when its visible-at time has passed; delays, retries and leases move its entry.
//!   The consumers read this index in order, so delayed messages cost an index entry each and
//!   one timer per queue, never a timer each;
//! - `meta`: the next sequence number.
//!
//! Only the committer thread touches the database after [`Engine::open`]; every batch of ops
//! is one write transaction, committed durably when any op wrote.

use std::collections::{HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;

use bindery_core::SharedClock;
use bindery_core::queues::{QueueError, QueueMessage, QueueMetrics, QueueResult, QueueSettings};
use bytes::Bytes;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, Table, TableDefinition};

use crate::record::Record;
use crate::registry::{QueueState, Registry};

const QUEUES: TableDefinition<u32, &[u8]> = TableDefinition::new("queues");
const MESSAGES: TableDefinition<(u32, u64), &[u8]> = TableDefinition::new("messages");
const VISIBLE: TableDefinition<(u32, u64, u64), u64> = TableDefinition::new("visible");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Body bytes after which a fetch stops early, bounding the push consumer's buffer.
pub(crate) const FETCH_BYTES: usize = 32 * 1024 * 1024;

fn err<E: Into<redb::Error>>(op: &'static str) -> impl FnOnce(E) -> QueueError {
    move |e| QueueError::engine(op, e.into())
}

/// A queue's persisted row.
#[derive(Debug, Clone)]
struct QueueRow {
    name: String,
    settings: QueueSettings,
    count: u64,
    bytes: u64,
}

impl QueueRow {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.name.len());
        out.extend_from_slice(&self.settings.delivery_delay_secs.to_le_bytes());
        out.extend_from_slice(&self.settings.message_retention_period_secs.to_le_bytes());
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&self.bytes.to_le_bytes());
        out.extend_from_slice(self.name.as_bytes());
        out
    }

    fn decode(raw: &[u8]) -> Option<Self> {
        let u = |i: usize| {
            raw.get(i..i + 8)
                .and_then(|s| s.try_into().ok())
                .map(u64::from_le_bytes)
        };
        Some(Self {
            settings: QueueSettings {
                delivery_delay_secs: u(0)?,
                message_retention_period_secs: u(8)?,
            },
            count: u(16)?,
            bytes: u(24)?,
            name: String::from_utf8(raw.get(32..)?.to_vec()).ok()?,
        })
    }

    fn retention_ms(&self) -> u64 {
        self.settings
            .message_retention_period_secs
            .saturating_mul(1000)
    }
}

/// A message to append.
#[derive(Debug)]
pub(crate) struct NewMessage {
    pub id: String,
    pub body: Bytes,
    pub content_type: bindery_core::queues::ContentType,
    pub delay_ms: u64,
}

/// What to do with a delivered message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Delete it.
    Ack,
    /// Make it visible again after `delay_ms`. `bump` counts a delivery that has not been
    /// counted yet (push consumers count at settlement, pull consumers at lease).
    Retry { delay_ms: u64, bump: bool },
}

/// Where exhausted messages go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    /// Most deliveries of one message (`max_retries + 1`).
    pub max_deliveries: u32,
    /// The dead-letter queue's id; `None` deletes exhausted messages.
    pub dead_letter: Option<u32>,
}

/// One operation for the committer.
#[derive(Debug)]
pub(crate) enum Op {
    /// Creates a queue, or updates its settings when `settings` is given.
    Ensure {
        name: String,
        settings: Option<QueueSettings>,
    },
    /// Appends messages.
    Send {
        queue: u32,
        messages: Vec<NewMessage>,
        max_backlog_bytes: u64,
    },
    /// A read snapshot of committed data, for the push consumer's fetch. The committer
    /// answers it between write transactions (see [`Engine::snapshot`]).
    Snapshot { queue: u32 },
    /// Leases up to `max` ready messages for `visibility_ms` (pull).
    Lease {
        queue: u32,
        max: usize,
        visibility_ms: u64,
        policy: RetryPolicy,
    },
    /// Acks or retries delivered messages by sequence. Acks apply first. `batch` says the
    /// items are one push batch: fetched together, so their index entries sit together
    /// and acks may delete by range.
    Settle {
        queue: u32,
        items: Vec<(u64, Action)>,
        policy: RetryPolicy,
        batch: bool,
    },
    /// Deletes messages past their queue's retention, at most `max`.
    Sweep { max: usize },
}

/// The ready messages a fetch found.
#[derive(Debug, Default)]
pub(crate) struct Fetched {
    /// (sequence, visible-at ms, message) in index order.
    pub messages: Vec<(u64, u64, QueueMessage)>,
    /// The last index key read; pass it as `after` next time.
    pub cursor: Option<(u64, u64)>,
    /// Whether `max` entries were read (more may be ready).
    pub full: bool,
    /// When the next entry after the cursor becomes visible, if none is ready now.
    pub next_visible_at: Option<u64>,
}

/// Committed data as of one moment, read off the committer thread.
pub(crate) struct Snapshot {
    txn: redb::ReadTransaction,
    queue: u32,
    now: u64,
    retention_ms: u64,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("queue", &self.queue)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

impl Snapshot {
    /// Reads up to `max` ready messages after `after` in the queue's visibility index.
    pub fn fetch(&self, after: Option<(u64, u64)>, max: usize) -> QueueResult<Fetched> {
        let visible = self.txn.open_table(VISIBLE).map_err(err("read"))?;
        let messages = self.txn.open_table(MESSAGES).map_err(err("read"))?;
        fetch_in(
            &visible,
            &messages,
            self.queue,
            after,
            max,
            self.now,
            self.retention_ms,
        )
    }
}

/// The answer to one op.
#[derive(Debug)]
pub(crate) enum Reply {
    Queue(Arc<QueueState>),
    Sent { queue: u32, metrics: QueueMetrics },
    Snapshot(Snapshot),
    Leased(Vec<(u64, QueueMessage)>),
    Settled,
    Swept { removed: usize, more: bool },
}

/// The database and the state only the committer thread changes.
pub(crate) struct Engine {
    db: Database,
    durability: Durability,
    clock: SharedClock,
    registry: Arc<Registry>,
    rows: HashMap<u32, QueueRow>,
    next_seq: u64,
    last_now: u64,
}

struct Tables<'t> {
    queues: Table<'t, u32, &'static [u8]>,
    messages: Table<'t, (u32, u64), &'static [u8]>,
    visible: Table<'t, (u32, u64, u64), u64>,
}

/// One transaction's working state.
struct Cx<'e, 't> {
    t: Tables<'t>,
    rows: &'e mut HashMap<u32, QueueRow>,
    registry: &'e Registry,
    next_seq: &'e mut u64,
    now: u64,
    touched: HashSet<u32>,
    dirty: bool,
}

impl Engine {
    /// Prepares the tables and loads every queue into `registry`.
    pub fn open(
        db: Database,
        durability: Durability,
        clock: SharedClock,
        registry: Arc<Registry>,
    ) -> QueueResult<Self> {
        let txn = db.begin_write().map_err(err("open"))?;
        let mut rows = HashMap::new();
        let next_seq;
        {
            let queues = txn.open_table(QUEUES).map_err(err("open"))?;
            let messages = txn.open_table(MESSAGES).map_err(err("open"))?;
            txn.open_table(VISIBLE).map_err(err("open"))?;
            let meta = txn.open_table(META).map_err(err("open"))?;
            next_seq = meta
                .get("next_seq")
                .map_err(err("open"))?
                .map_or(1, |v| v.value());
            for entry in queues.iter().map_err(err("open"))? {
                let (id, raw) = entry.map_err(err("open"))?;
                let id = id.value();
                let row = QueueRow::decode(raw.value()).ok_or_else(|| {
                    QueueError::engine("open", format!("corrupt row of queue {id}"))
                })?;
                let oldest = oldest_in(&messages, id)?;
                let state = registry.insert(id, &row.name, row.settings);
                *state.backlog.lock() = QueueMetrics {
                    backlog_count: row.count,
                    backlog_bytes: row.bytes,
                    oldest_message_timestamp_ms: oldest,
                };
                rows.insert(id, row);
            }
        }
        txn.commit().map_err(err("open"))?;
        Ok(Self {
            db,
            durability,
            clock,
            registry,
            rows,
            next_seq,
            last_now: 0,
        })
    }

    /// The clock's time, never less than the time of an earlier transaction.
    fn now(&mut self) -> u64 {
        self.last_now = self.last_now.max(self.clock.now_ms());
        self.last_now
    }

    /// A snapshot of committed data for fetching from queue `q`. The committer takes it
    /// between write transactions, so no commit is in progress: any index entry written
    /// later has a visible-at time of at least the snapshot's time and a newer index
    /// sequence, and so sorts after every cursor a fetch from this snapshot returns.
    pub fn snapshot(&mut self, q: u32) -> QueueResult<Snapshot> {
        let now = self.now();
        Ok(Snapshot {
            txn: self.db.begin_read().map_err(err("read"))?,
            queue: q,
            now,
            retention_ms: self.rows.get(&q).map_or(u64::MAX, QueueRow::retention_ms),
        })
    }

    /// Applies `ops` in one transaction. The outer error is an engine failure that fails the
    /// whole batch; inner errors belong to single ops.
    pub fn apply(&mut self, ops: Vec<Op>) -> QueueResult<Vec<QueueResult<Reply>>> {
        let now = self.now();
        let mut txn = self.db.begin_write().map_err(err("commit"))?;
        txn.set_durability(self.durability).map_err(err("commit"))?;
        let mut results = Vec::with_capacity(ops.len());
        let (touched, dirty, backlogs) = {
            let t = Tables {
                queues: txn.open_table(QUEUES).map_err(err("commit"))?,
                messages: txn.open_table(MESSAGES).map_err(err("commit"))?,
                visible: txn.open_table(VISIBLE).map_err(err("commit"))?,
            };
            let mut cx = Cx {
                t,
                rows: &mut self.rows,
                registry: &self.registry,
                next_seq: &mut self.next_seq,
                now,
                touched: HashSet::new(),
                dirty: false,
            };
            for op in ops {
                results.push(cx.apply(op)?);
            }
            let mut backlogs = Vec::with_capacity(cx.touched.len());
            for &q in &cx.touched {
                let Some(row) = cx.rows.get(&q) else {
                    return Err(QueueError::engine(
                        "commit",
                        format!("unknown queue id {q}"),
                    ));
                };
                cx.t.queues
                    .insert(q, row.encode().as_slice())
                    .map_err(err("commit"))?;
                backlogs.push((
                    q,
                    QueueMetrics {
                        backlog_count: row.count,
                        backlog_bytes: row.bytes,
                        oldest_message_timestamp_ms: oldest_in(&cx.t.messages, q)?,
                    },
                ));
            }
            (cx.touched, cx.dirty, backlogs)
        };
        if dirty {
            {
                let mut meta = txn.open_table(META).map_err(err("commit"))?;
                meta.insert("next_seq", self.next_seq)
                    .map_err(err("commit"))?;
            }
            txn.commit().map_err(err("commit"))?;
        } else {
            txn.abort().map_err(err("commit"))?;
        }
        let mut oldest_changed = false;
        for (q, metrics) in backlogs {
            if let Some(state) = self.registry.get(q) {
                let mut b = state.backlog.lock();
                oldest_changed |=
                    b.oldest_message_timestamp_ms != metrics.oldest_message_timestamp_ms;
                *b = metrics;
            }
        }
        for r in results.iter_mut() {
            if let Ok(Reply::Sent { queue, metrics }) = r
                && let Some(state) = self.registry.get(*queue)
            {
                *metrics = *state.backlog.lock();
            }
        }
        for q in touched {
            if let Some(state) = self.registry.get(q) {
                state.notify.notify_one();
            }
        }
        if oldest_changed {
            self.registry.sweep.notify_one();
        }
        Ok(results)
    }
}

fn oldest_in(
    messages: &impl ReadableTable<(u32, u64), &'static [u8]>,
    q: u32,
) -> QueueResult<Option<u64>> {
    let mut range = messages
        .range((q, 0)..=(q, u64::MAX))
        .map_err(err("read"))?;
    match range.next() {
        None => Ok(None),
        Some(entry) => {
            let (_, raw) = entry.map_err(err("read"))?;
            Ok(Record::decode(raw.value()).map(|r| r.timestamp_ms))
        }
    }
}

/// Reads up to `max` ready entries after `after` in a queue's visibility index.
fn fetch_in(
    visible: &impl ReadableTable<(u32, u64, u64), u64>,
    messages: &impl ReadableTable<(u32, u64), &'static [u8]>,
    q: u32,
    after: Option<(u64, u64)>,
    max: usize,
    now: u64,
    retention_ms: u64,
) -> QueueResult<Fetched> {
    let lower = match after {
        Some((va, is)) => Bound::Excluded((q, va, is)),
        None => Bound::Included((q, 0, 0)),
    };
    let upper = Bound::Included((q, now, u64::MAX));
    let mut keys = Vec::with_capacity(max.min(1024));
    for entry in visible.range((lower, upper)).map_err(err("read"))? {
        if keys.len() >= max {
            break;
        }
        let (k, v) = entry.map_err(err("read"))?;
        let (_, va, is) = k.value();
        keys.push((va, is, v.value()));
    }
    let mut out = Fetched {
        full: keys.len() >= max,
        ..Default::default()
    };
    let mut bytes = 0usize;
    for (va, is, seq) in keys {
        if bytes >= FETCH_BYTES {
            // Stop here: the cursor is the last key handed out, and more are ready.
            out.full = true;
            break;
        }
        out.cursor = Some((va, is));
        let Some(raw) = messages.get((q, seq)).map_err(err("read"))? else {
            continue;
        };
        let rec = Record::decode(raw.value()).ok_or_else(|| {
            QueueError::engine("read", format!("corrupt message {seq} of queue {q}"))
        })?;
        let expired = rec.timestamp_ms.saturating_add(retention_ms) <= now;
        if (rec.visible_at, rec.iseq) != (va, is) || expired {
            continue;
        }
        bytes += rec.body.len();
        out.messages.push((seq, rec.visible_at, rec.to_message()));
    }
    if !out.full {
        let from = (q, now.saturating_add(1), 0);
        if let Some(entry) = visible
            .range(from..=(q, u64::MAX, u64::MAX))
            .map_err(err("read"))?
            .next()
        {
            let (k, _) = entry.map_err(err("read"))?;
            out.next_visible_at = Some(k.value().1);
        }
    }
    Ok(out)
}

impl Cx<'_, '_> {
    fn seq(&mut self) -> u64 {
        let s = *self.next_seq;
        *self.next_seq += 1;
        s
    }

    fn row(&mut self, q: u32) -> QueueResult<&mut QueueRow> {
        self.rows
            .get_mut(&q)
            .ok_or_else(|| QueueError::engine("lookup", format!("unknown queue id {q}")))
    }

    fn apply(&mut self, op: Op) -> QueueResult<QueueResult<Reply>> {
        match op {
            Op::Ensure { name, settings } => self.ensure(name, settings).map(Ok),
            Op::Send {
                queue,
                messages,
                max_backlog_bytes,
            } => self.send(queue, messages, max_backlog_bytes),
            Op::Snapshot { .. } => Ok(Err(QueueError::engine(
                "snapshot",
                "a snapshot cannot be taken inside a write transaction",
            ))),
            Op::Lease {
                queue,
                max,
                visibility_ms,
                policy,
            } => self.lease(queue, max, visibility_ms, policy).map(Ok),
            Op::Settle {
                queue,
                items,
                policy,
                batch,
            } => {
                let acks: Vec<u64> = items
                    .iter()
                    .filter(|(_, a)| *a == Action::Ack)
                    .map(|(s, _)| *s)
                    .collect();
                if batch {
                    self.ack_batch(queue, &acks)?;
                } else {
                    for &seq in &acks {
                        self.ack(queue, seq)?;
                    }
                }
                for (seq, action) in items {
                    if action != Action::Ack {
                        self.settle(queue, seq, action, policy)?;
                    }
                }
                Ok(Ok(Reply::Settled))
            }
            Op::Sweep { max } => self.sweep(max).map(Ok),
        }
    }

    fn ensure(&mut self, name: String, settings: Option<QueueSettings>) -> QueueResult<Reply> {
        if let Some(state) = self.registry.by_name(&name) {
            if let Some(settings) = settings {
                let row = self.row(state.id)?;
                if row.settings != settings {
                    row.settings = settings;
                    *state.settings.lock() = settings;
                    self.touched.insert(state.id);
                    self.dirty = true;
                    self.registry.sweep.notify_one();
                }
            }
            return Ok(Reply::Queue(state));
        }
        let id = self.rows.keys().max().map_or(1, |m| m + 1);
        let settings = settings.unwrap_or_default();
        self.rows.insert(
            id,
            QueueRow {
                name: name.clone(),
                settings,
                count: 0,
                bytes: 0,
            },
        );
        self.touched.insert(id);
        self.dirty = true;
        Ok(Reply::Queue(self.registry.insert(id, &name, settings)))
    }

    fn send(
        &mut self,
        q: u32,
        messages: Vec<NewMessage>,
        max_backlog_bytes: u64,
    ) -> QueueResult<QueueResult<Reply>> {
        let add: u64 = messages.iter().map(|m| m.body.len() as u64).sum();
        let row = self.row(q)?;
        if row.bytes.saturating_add(add) > max_backlog_bytes {
            return Ok(Err(QueueError::BacklogFull {
                queue: row.name.clone(),
                bytes: row.bytes.saturating_add(add),
                limit: max_backlog_bytes,
            }));
        }
        row.count += messages.len() as u64;
        row.bytes += add;
        for m in messages {
            let seq = self.seq();
            let rec = Record {
                id: m.id,
                timestamp_ms: self.now,
                visible_at: self.now.saturating_add(m.delay_ms),
                iseq: seq,
                attempts: 1,
                content_type: m.content_type,
                body: m.body,
            };
            self.put(q, seq, &rec)?;
        }
        self.touched.insert(q);
        self.dirty = true;
        Ok(Ok(Reply::Sent {
            queue: q,
            metrics: QueueMetrics::default(),
        }))
    }

    /// Writes `rec` and its index entry.
    fn put(&mut self, q: u32, seq: u64, rec: &Record) -> QueueResult<()> {
        self.t
            .messages
            .insert((q, seq), rec.encode().as_slice())
            .map_err(err("write"))?;
        self.t
            .visible
            .insert((q, rec.visible_at, rec.iseq), seq)
            .map_err(err("write"))?;
        Ok(())
    }

    fn get(&self, q: u32, seq: u64) -> QueueResult<Option<Record>> {
        let Some(raw) = self.t.messages.get((q, seq)).map_err(err("read"))? else {
            return Ok(None);
        };
        Record::decode(raw.value()).map(Some).ok_or_else(|| {
            QueueError::engine("read", format!("corrupt message {seq} of queue {q}"))
        })
    }

    /// Removes a message and its index entry, updating the counters.
    fn delete(&mut self, q: u32, seq: u64, rec: &Record) -> QueueResult<()> {
        self.t.messages.remove((q, seq)).map_err(err("write"))?;
        self.t
            .visible
            .remove((q, rec.visible_at, rec.iseq))
            .map_err(err("write"))?;
        let row = self.row(q)?;
        row.count = row.count.saturating_sub(1);
        row.bytes = row.bytes.saturating_sub(rec.body.len() as u64);
        self.touched.insert(q);
        self.dirty = true;
        Ok(())
    }

    /// Moves a message to a new visible-at time.
    fn reschedule(
        &mut self,
        q: u32,
        seq: u64,
        mut rec: Record,
        visible_at: u64,
    ) -> QueueResult<()> {
        self.t
            .visible
            .remove((q, rec.visible_at, rec.iseq))
            .map_err(err("write"))?;
        rec.visible_at = visible_at;
        rec.iseq = self.seq();
        self.put(q, seq, &rec)?;
        self.touched.insert(q);
        self.dirty = true;
        Ok(())
    }

    /// Deletes an exhausted message, copying it to the dead-letter queue if there is one.
    fn dead_letter(
        &mut self,
        q: u32,
        seq: u64,
        rec: Record,
        policy: RetryPolicy,
    ) -> QueueResult<()> {
        self.delete(q, seq, &rec)?;
        if let Some(d) = policy.dead_letter.filter(|&d| d != q) {
            let new_seq = self.seq();
            let len = rec.body.len() as u64;
            let moved = Record {
                visible_at: self.now,
                iseq: new_seq,
                attempts: 1,
                ..rec
            };
            self.put(d, new_seq, &moved)?;
            let row = self.row(d)?;
            row.count += 1;
            row.bytes += len;
            self.touched.insert(d);
        }
        Ok(())
    }

    fn expired(&self, q: u32, rec: &Record) -> bool {
        let retention = self.rows.get(&q).map_or(u64::MAX, QueueRow::retention_ms);
        rec.timestamp_ms.saturating_add(retention) <= self.now
    }

    fn lease(
        &mut self,
        q: u32,
        max: usize,
        visibility_ms: u64,
        policy: RetryPolicy,
    ) -> QueueResult<Reply> {
        let mut out = Vec::new();
        let mut leased = HashSet::new();
        let mut after = Bound::Included((q, 0, 0));
        while out.len() < max {
            let want = max - out.len();
            let mut keys = Vec::with_capacity(want);
            for entry in self
                .t
                .visible
                .range((after, Bound::Included((q, self.now, u64::MAX))))
                .map_err(err("read"))?
            {
                if keys.len() >= want {
                    break;
                }
                let (k, v) = entry.map_err(err("read"))?;
                keys.push((k.value(), v.value()));
            }
            let Some(&(last, _)) = keys.last() else { break };
            after = Bound::Excluded(last);
            for ((_, va, is), seq) in keys {
                // With a zero visibility timeout a leased message is ready again at once;
                // one pull hands it out only once.
                if !leased.insert(seq) {
                    continue;
                }
                let Some(mut rec) = self.get(q, seq)? else {
                    self.t.visible.remove((q, va, is)).map_err(err("write"))?;
                    self.dirty = true;
                    continue;
                };
                if self.expired(q, &rec) {
                    self.delete(q, seq, &rec)?;
                    continue;
                }
                if rec.attempts > policy.max_deliveries {
                    self.dead_letter(q, seq, rec, policy)?;
                    continue;
                }
                out.push((seq, rec.to_message()));
                rec.attempts += 1;
                let until = self.now.saturating_add(visibility_ms);
                self.reschedule(q, seq, rec, until)?;
            }
        }
        Ok(Reply::Leased(out))
    }

    /// Deletes a message by key, reading only its header (the ack path).
    fn ack(&mut self, q: u32, seq: u64) -> QueueResult<()> {
        let header = {
            let Some(old) = self.t.messages.remove((q, seq)).map_err(err("write"))? else {
                return Ok(());
            };
            Record::header(old.value()).ok_or_else(|| {
                QueueError::engine("ack", format!("corrupt message {seq} of queue {q}"))
            })?
        };
        self.t
            .visible
            .remove((q, header.visible_at, header.iseq))
            .map_err(err("write"))?;
        let row = self.row(q)?;
        row.count = row.count.saturating_sub(1);
        row.bytes = row.bytes.saturating_sub(header.body_len as u64);
        self.touched.insert(q);
        self.dirty = true;
        Ok(())
    }

    /// Acks the messages of one push batch. When their sequences are dense, both tables are
    /// trimmed with one range pass each instead of one descent per message: the batch was
    /// fetched in index order, so between its first and last index entries lie only
    /// entries fetched with it or before it (in flight, or expired and not yet swept).
    fn ack_batch(&mut self, q: u32, seqs: &[u64]) -> QueueResult<()> {
        let (Some(&lo), Some(&hi)) = (seqs.iter().min(), seqs.iter().max()) else {
            return Ok(());
        };
        if seqs.len() < 8 || hi - lo >= 4 * seqs.len() as u64 {
            for &seq in seqs {
                self.ack(q, seq)?;
            }
            return Ok(());
        }
        let wanted: HashSet<u64> = seqs.iter().copied().collect();
        let mut removed = Vec::with_capacity(seqs.len());
        let mut corrupt = None;
        self.t
            .messages
            .retain_in((q, lo)..=(q, hi), |(_, seq), raw| {
                if !wanted.contains(&seq) {
                    return true;
                }
                match Record::header(raw) {
                    Some(h) => {
                        removed.push(h);
                        false
                    }
                    None => {
                        corrupt = Some(seq);
                        true
                    }
                }
            })
            .map_err(err("ack"))?;
        if let Some(seq) = corrupt {
            return Err(QueueError::engine(
                "ack",
                format!("corrupt message {seq} of queue {q}"),
            ));
        }
        let (Some(klo), Some(khi)) = (
            removed.iter().map(|h| (h.visible_at, h.iseq)).min(),
            removed.iter().map(|h| (h.visible_at, h.iseq)).max(),
        ) else {
            return Ok(());
        };
        let keys: HashSet<(u64, u64)> = removed.iter().map(|h| (h.visible_at, h.iseq)).collect();
        self.t
            .visible
            .retain_in((q, klo.0, klo.1)..=(q, khi.0, khi.1), |(_, va, is), _| {
                !keys.contains(&(va, is))
            })
            .map_err(err("ack"))?;
        let bytes: u64 = removed.iter().map(|h| h.body_len as u64).sum();
        let row = self.row(q)?;
        row.count = row.count.saturating_sub(removed.len() as u64);
        row.bytes = row.bytes.saturating_sub(bytes);
        self.touched.insert(q);
        self.dirty = true;
        Ok(())
    }

    /// Settles one message; one already gone is left alone.
    fn settle(&mut self, q: u32, seq: u64, action: Action, policy: RetryPolicy) -> QueueResult<()> {
        if action == Action::Ack {
            return self.ack(q, seq);
        }
        let Some(mut rec) = self.get(q, seq)? else {
            return Ok(());
        };
        match action {
            Action::Ack => self.delete(q, seq, &rec)?,
            Action::Retry { delay_ms, bump } => {
                if bump {
                    rec.attempts = rec.attempts.saturating_add(1);
                }
                if rec.attempts > policy.max_deliveries {
                    self.dead_letter(q, seq, rec, policy)?;
                } else {
                    let at = self.now.saturating_add(delay_ms);
                    self.reschedule(q, seq, rec, at)?;
                }
            }
        }
        Ok(())
    }

    fn sweep(&mut self, max: usize) -> QueueResult<Reply> {
        let mut removed = 0;
        let ids: Vec<u32> = self.rows.keys().copied().collect();
        for q in ids {
            let retention = self.rows.get(&q).map_or(u64::MAX, QueueRow::retention_ms);
            let mut doomed = Vec::new();
            for entry in self
                .t
                .messages
                .range((q, 0)..=(q, u64::MAX))
                .map_err(err("read"))?
            {
                if removed + doomed.len() >= max {
                    break;
                }
                let (k, raw) = entry.map_err(err("read"))?;
                let rec = Record::decode(raw.value())
                    .ok_or_else(|| QueueError::engine("sweep", "corrupt message record"))?;
                if rec.timestamp_ms.saturating_add(retention) > self.now {
                    break;
                }
                doomed.push((k.value().1, rec));
            }
            for (seq, rec) in doomed {
                self.delete(q, seq, &rec)?;
                removed += 1;
            }
        }
        Ok(Reply::Swept {
            removed,
            more: removed >= max,
        })
    }
}
