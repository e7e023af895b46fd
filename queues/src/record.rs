//! The stored form of a message.
//!
//! Layout (little endian): timestamp u64, visible_at u64, index sequence u64, attempts u32,
//! content type u8, id length u8, the id, then the body. `visible_at` and the index sequence
//! are the message's key in the visibility index, so an ack or retry can remove that entry.

use bindery_core::queues::{ContentType, QueueMessage};
use bytes::Bytes;

const HEADER: usize = 8 + 8 + 8 + 4 + 1 + 1;

/// A message as the engine stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub id: String,
    pub timestamp_ms: u64,
    pub visible_at: u64,
    pub iseq: u64,
    /// The number of the next delivery, from 1.
    pub attempts: u32,
    pub content_type: ContentType,
    pub body: Bytes,
}

/// The fixed part of a record, read without copying the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub visible_at: u64,
    pub iseq: u64,
    pub body_len: usize,
}

impl Record {
    pub fn header(raw: &[u8]) -> Option<Header> {
        if raw.len() < HEADER {
            return None;
        }
        let u64_at = |i: usize| u64::from_le_bytes(raw[i..i + 8].try_into().unwrap_or([0; 8]));
        let id_len = raw[29] as usize;
        Some(Header {
            visible_at: u64_at(8),
            iseq: u64_at(16),
            body_len: raw.len().checked_sub(HEADER + id_len)?,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let id = self.id.as_bytes();
        let id_len = id.len().min(255);
        let mut out = Vec::with_capacity(HEADER + id_len + self.body.len());
        out.extend_from_slice(&self.timestamp_ms.to_le_bytes());
        out.extend_from_slice(&self.visible_at.to_le_bytes());
        out.extend_from_slice(&self.iseq.to_le_bytes());
        out.extend_from_slice(&self.attempts.to_le_bytes());
        out.push(self.content_type.tag());
        out.push(id_len as u8);
        out.extend_from_slice(&id[..id_len]);
        out.extend_from_slice(&self.body);
        out
    }

    pub fn decode(raw: &[u8]) -> Option<Self> {
        if raw.len() < HEADER {
            return None;
        }
        let u64_at = |i: usize| u64::from_le_bytes(raw[i..i + 8].try_into().unwrap_or([0; 8]));
        let attempts = u32::from_le_bytes(raw[24..28].try_into().ok()?);
        let content_type = ContentType::from_tag(raw[28])?;
        let id_len = raw[29] as usize;
        let id = raw.get(HEADER..HEADER + id_len)?;
        Some(Self {
            id: String::from_utf8(id.to_vec()).ok()?,
            timestamp_ms: u64_at(0),
            visible_at: u64_at(8),
            iseq: u64_at(16),
            attempts,
            content_type,
            body: Bytes::copy_from_slice(&raw[HEADER + id_len..]),
        })
    }

    /// The message as delivered now (`attempts` is this delivery's number).
    pub fn to_message(&self) -> QueueMessage {
        QueueMessage {
            id: self.id.clone(),
            timestamp_ms: self.timestamp_ms,
            body: self.body.clone(),
            content_type: self.content_type,
            attempts: self.attempts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_survives_encoding() {
        let r = Record {
            id: "0123456789abcdef".into(),
            timestamp_ms: 1_767_225_600_000,
            visible_at: 1_767_225_630_000,
            iseq: 42,
            attempts: 3,
            content_type: ContentType::V8,
            body: Bytes::from_static(b"\xff\x0f\x01"),
        };
        let raw = r.encode();
        assert_eq!(
            Record::header(&raw),
            Some(Header {
                visible_at: r.visible_at,
                iseq: r.iseq,
                body_len: 3
            })
        );
        assert_eq!(Record::decode(&raw), Some(r));
        assert_eq!(Record::decode(b"short"), None);
    }
}
