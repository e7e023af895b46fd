//! Pull consumers: leases with visibility timeouts, acked and retried by lease id.
//!
//! A lease is durable: pulling moves the message's index entry to the end of the visibility
//! timeout and counts the delivery, in one group-committed transaction. A lease id names the
//! queue, the message and the delivery, so acks stay valid across restarts and are
//! permissive as the platform documents: an expired lease still acks its message.

use std::sync::Arc;

use async_trait::async_trait;
use bindery_core::queues::{
    AckRequest, AckResponse, PullConsumer, PullOptions, PulledMessage, QueueError, QueueResult,
};

use crate::broker::{Shared, check_range, unexpected};
use crate::engine::{Action, Op, Reply, RetryPolicy};
use crate::registry::{Attached, QueueState};

/// One pull consumer handle.
pub(crate) struct PullHandle {
    shared: Arc<Shared>,
    state: Arc<QueueState>,
    policy: RetryPolicy,
}

impl PullHandle {
    pub fn new(shared: Arc<Shared>, state: Arc<QueueState>, policy: RetryPolicy) -> Self {
        Self {
            shared,
            state,
            policy,
        }
    }
}

impl Drop for PullHandle {
    fn drop(&mut self) {
        let mut attached = self.state.attached.lock();
        if let Attached::Pull(n) = *attached {
            *attached = if n <= 1 {
                Attached::Nothing
            } else {
                Attached::Pull(n - 1)
            };
        }
    }
}

fn lease_id(queue: u32, seq: u64, attempts: u32) -> String {
    format!("{queue:08x}{seq:016x}{attempts:08x}")
}

/// The queue id and message sequence a lease id names.
fn parse_lease(id: &str) -> Option<(u32, u64)> {
    if id.len() != 32 || !id.is_ascii() {
        return None;
    }
    let queue = u32::from_str_radix(&id[..8], 16).ok()?;
    let seq = u64::from_str_radix(&id[8..24], 16).ok()?;
    u32::from_str_radix(&id[24..], 16).ok()?;
    Some((queue, seq))
}

#[async_trait]
impl PullConsumer for PullHandle {
    fn queue_name(&self) -> &str {
        &self.state.name
    }

    async fn pull(&self, options: PullOptions) -> QueueResult<Vec<PulledMessage>> {
        let l = &self.shared.limits;
        check_range(
            "batch_size",
            options.batch_size as u64,
            1,
            l.max_consumer_batch_size as u64,
        )?;
        check_range(
            "visibility_timeout_ms",
            options.visibility_timeout_ms,
            0,
            l.max_visibility_timeout_ms,
        )?;
        let op = Op::Lease {
            queue: self.state.id,
            max: options.batch_size,
            visibility_ms: options.visibility_timeout_ms,
            policy: self.policy,
        };
        match self.shared.committer.submit(op).await? {
            Reply::Leased(leased) => Ok(leased
                .into_iter()
                .map(|(seq, message)| PulledMessage {
                    lease_id: lease_id(self.state.id, seq, message.attempts),
                    message,
                })
                .collect()),
            other => Err(unexpected("pull", &other)),
        }
    }

    async fn ack(&self, request: AckRequest) -> QueueResult<AckResponse> {
        let max_delay = self.shared.limits.max_delay_secs;
        let mut response = AckResponse::default();
        let mut items = Vec::with_capacity(request.acks.len() + request.retries.len());
        let parse = |id: &str, warnings: &mut Vec<String>| match parse_lease(id) {
            Some((q, seq)) if q == self.state.id => Some(seq),
            Some(_) => {
                warnings.push(format!("lease id {id:?} belongs to another queue"));
                None
            }
            None => {
                warnings.push(format!("lease id {id:?} is not a lease id of this queue"));
                None
            }
        };
        for retry in &request.retries {
            if let Some(d) = retry.delay_seconds.filter(|&d| d > max_delay) {
                return Err(QueueError::InvalidDelay {
                    delay: d,
                    max: max_delay,
                });
            }
        }
        for id in &request.acks {
            if let Some(seq) = parse(id, &mut response.warnings) {
                items.push((seq, Action::Ack));
                response.ack_count += 1;
            }
        }
        for retry in &request.retries {
            if let Some(seq) = parse(&retry.lease_id, &mut response.warnings) {
                let delay_ms = retry.delay_seconds.unwrap_or(0).saturating_mul(1000);
                items.push((
                    seq,
                    Action::Retry {
                        delay_ms,
                        bump: false,
                    },
                ));
                response.retry_count += 1;
            }
        }
        if !items.is_empty() {
            let op = Op::Settle {
                queue: self.state.id,
                items,
                policy: self.policy,
                batch: false,
            };
            self.shared.committer.submit(op).await?;
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_id_names_its_queue_and_message() {
        let id = lease_id(7, 123_456_789, 2);
        assert_eq!(parse_lease(&id), Some((7, 123_456_789)));
        assert_eq!(parse_lease("not-a-lease"), None);
    }
}
