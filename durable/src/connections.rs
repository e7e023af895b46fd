//! Hibernatable connections: kept by the namespace, not by the instance.
//!
//! A connection's record (tags, attachment, the transport's sink) lives in the namespace's
//! registry from the moment the object accepts it until it closes, so the instance can be
//! evicted while peers stay connected. A message from the peer is answered by the
//! auto-response pair when it matches exactly (the object is not woken); otherwise it is
//! delivered to the object as an event, which rebuilds the instance if needed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use bindery_core::SharedClock;
use bindery_core::durable::{
    ConnectionSink, DurableError, DurableObjectId, DurableResult, HibernatableConnection,
    InboundConnection, Message,
};
use bytes::Bytes;
use parking_lot::Mutex;

use crate::committer::Job;
use crate::runtime::current_storage;

/// How connection records reach their namespace (which is generic over the class).
pub(crate) trait ConnDispatch: Send + Sync + 'static {
    fn auto_response(&self, object: &DurableObjectId) -> Option<(String, String)>;
    fn message(&self, rec: Arc<ConnRecord>, message: Message);
    /// Drops the record from the registry (the object closed it).
    fn remove(&self, object: &DurableObjectId, conn_id: u64);
    /// The peer closed: drop the record and tell the object.
    fn closed(&self, rec: Arc<ConnRecord>, code: u16, reason: String);
}

/// One connection, as the registry keeps it.
pub(crate) struct ConnRecord {
    pub id: u64,
    pub object: DurableObjectId,
    pub tags: Mutex<Vec<String>>,
    attachment: Mutex<Option<Bytes>>,
    sink: Arc<dyn ConnectionSink>,
    auto_ts: Mutex<Option<u64>>,
    closed: AtomicBool,
    max_attachment: usize,
    max_message: usize,
    clock: SharedClock,
    dispatch: Weak<dyn ConnDispatch>,
}

impl ConnRecord {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: u64,
        object: DurableObjectId,
        sink: Arc<dyn ConnectionSink>,
        max_attachment: usize,
        max_message: usize,
        clock: SharedClock,
        dispatch: Weak<dyn ConnDispatch>,
    ) -> Self {
        Self {
            id,
            object,
            tags: Mutex::new(Vec::new()),
            attachment: Mutex::new(None),
            sink,
            auto_ts: Mutex::new(None),
            closed: AtomicBool::new(false),
            max_attachment,
            max_message,
            clock,
            dispatch,
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

impl HibernatableConnection for ConnRecord {
    fn id(&self) -> u64 {
        self.id
    }

    fn tags(&self) -> Vec<String> {
        self.tags.lock().clone()
    }

    fn send(&self, message: Message) -> DurableResult<()> {
        if self.is_closed() {
            return Err(DurableError::UnknownConnection { id: self.id });
        }
        // Inside an object's event, the output gate applies: the event's writes so far are
        // committed, and the message waits until they (and earlier ones) are durable.
        if let Some(storage) = current_storage() {
            storage.finish_event()?;
            let mark = storage.mark();
            if mark.gated() {
                let sink = Arc::clone(&self.sink);
                storage.committer().send(Job::Release {
                    mark,
                    release: Box::new(move |ok| {
                        if ok {
                            let _ = sink.send(message);
                        }
                    }),
                });
                return Ok(());
            }
        }
        self.sink.send(message)
    }

    fn close(&self, code: u16, reason: &str) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            self.sink.close(code, reason);
            if let Some(d) = self.dispatch.upgrade() {
                d.remove(&self.object, self.id);
            }
        }
    }

    fn serialize_attachment(&self, value: Bytes) -> DurableResult<()> {
        if value.len() > self.max_attachment {
            return Err(DurableError::TooLarge {
                what: "serialized attachment (bytes)",
                len: value.len(),
                limit: self.max_attachment,
            });
        }
        *self.attachment.lock() = Some(value);
        Ok(())
    }

    fn deserialize_attachment(&self) -> Option<Bytes> {
        self.attachment.lock().clone()
    }

    fn auto_response_timestamp(&self) -> Option<u64> {
        *self.auto_ts.lock()
    }
}

/// The transport's handle for one accepted connection.
pub(crate) struct Inbound {
    pub rec: Arc<ConnRecord>,
}

impl InboundConnection for Inbound {
    fn deliver(&self, message: Message) {
        let rec = &self.rec;
        if rec.is_closed() {
            return;
        }
        if message.len() > rec.max_message {
            rec.sink.close(1009, "message too big");
            self.closed(1009, "message too big");
            return;
        }
        let Some(d) = rec.dispatch.upgrade() else {
            return;
        };
        if let Message::Text(t) = &message
            && let Some((req, resp)) = d.auto_response(&rec.object)
            && *t == req
        {
            *rec.auto_ts.lock() = Some(rec.clock.now_ms());
            let _ = rec.sink.send(Message::Text(resp));
            return;
        }
        d.message(Arc::clone(rec), message);
    }

    fn closed(&self, code: u16, reason: &str) {
        if !self.rec.closed.swap(true, Ordering::AcqRel)
            && let Some(d) = self.rec.dispatch.upgrade()
        {
            d.closed(Arc::clone(&self.rec), code, reason.to_owned());
        }
    }
}
