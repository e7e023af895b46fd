//! Object ids: 16 bytes of identity plus a 16-byte tag that binds them to a namespace.
//!
//! `id_from_name` derives the identity bytes from the namespace key and the name, so the
//! same name always gives the same id and different namespaces give different ids.
//! `new_unique_id` draws them at random. The tag is a hash of the namespace key and the
//! identity bytes, which is how `id_from_string` recognises ids of its own namespace.

use std::sync::Arc;

use bindery_core::durable::{DurableError, DurableObjectId, DurableResult};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The secret-free key of one namespace, derived from its name.
#[derive(Debug, Clone)]
pub(crate) struct IdMaker {
    key: [u8; 32],
}

impl IdMaker {
    pub(crate) fn new(namespace: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"bindery-durable/namespace/v1\0");
        h.update(namespace.as_bytes());
        Self {
            key: h.finalize().into(),
        }
    }

    fn tag(&self, ident: &[u8]) -> [u8; 16] {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update(b"tag\0");
        h.update(ident);
        let d = h.finalize();
        let mut t = [0u8; 16];
        t.copy_from_slice(&d[..16]);
        t
    }

    fn assemble(&self, ident: [u8; 16], name: Option<Arc<str>>) -> DurableObjectId {
        let mut bytes = [0u8; 32];
        bytes[..16].copy_from_slice(&ident);
        bytes[16..].copy_from_slice(&self.tag(&ident));
        DurableObjectId::from_parts(bytes, name)
    }

    pub(crate) fn named(&self, name: &str) -> DurableObjectId {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update(b"name\0");
        h.update(name.as_bytes());
        let d = h.finalize();
        let mut ident = [0u8; 16];
        ident.copy_from_slice(&d[..16]);
        // The platform does not pass names longer than 1,024 bytes through to the id.
        let name = (name.len() <= 1024).then(|| Arc::from(name));
        self.assemble(ident, name)
    }

    pub(crate) fn unique(&self) -> DurableObjectId {
        let mut ident = [0u8; 16];
        rand::rng().fill_bytes(&mut ident);
        self.assemble(ident, None)
    }

    pub(crate) fn parse(&self, s: &str) -> DurableResult<DurableObjectId> {
        if s.len() != 64 {
            return Err(DurableError::InvalidId {
                reason: format!("expected 64 hex digits, got {} characters", s.len()),
            });
        }
        let mut bytes = [0u8; 32];
        for (i, pair) in s.as_bytes().chunks(2).enumerate() {
            let hi = hex_val(pair[0]);
            let lo = hex_val(pair[1]);
            match (hi, lo) {
                (Some(h), Some(l)) => bytes[i] = (h << 4) | l,
                _ => {
                    return Err(DurableError::InvalidId {
                        reason: format!("{s:?} is not hexadecimal"),
                    });
                }
            }
        }
        if bytes[16..] != self.tag(&bytes[..16]) {
            return Err(DurableError::InvalidId {
                reason: format!("{s} is not an id of this namespace"),
            });
        }
        Ok(DurableObjectId::from_parts(bytes, None))
    }

    /// Checks that `id` belongs to this namespace (ids are plain values and could come from
    /// another namespace).
    pub(crate) fn check(&self, id: &DurableObjectId) -> DurableResult<()> {
        let b = id.as_bytes();
        if b[16..] == self.tag(&b[..16]) {
            Ok(())
        } else {
            Err(DurableError::InvalidId {
                reason: format!("{id} is not an id of this namespace"),
            })
        }
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_deterministic_and_namespaced() {
        let a = IdMaker::new("a");
        let b = IdMaker::new("b");
        assert_eq!(a.named("x"), a.named("x"));
        assert_ne!(a.named("x"), b.named("x"));
        let id = a.named("x");
        assert_eq!(a.parse(&id.to_hex()).unwrap(), id);
        assert!(b.parse(&id.to_hex()).is_err());
        assert!(a.parse(&id.to_hex().to_uppercase()).is_err());
    }
}
