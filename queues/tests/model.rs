//! Model-based test: random sequences of send, pull, ack, retry, clock advances and reopens
//! against a plain in-memory model of a pull-consumed queue.
//!
//! The model predicts exactly which messages each pull leases (ready messages in order of
//! the time they became visible, then of when that happened), with which `attempts`, and
//! which messages are gone (acked, exhausted, or past retention).

use std::collections::BTreeMap;
use std::sync::Arc;

use bindery_core::queues::{
    AckRequest, MessageSendRequest, PullConsumer, PullConsumerSettings, PullOptions, PullRetry,
    QueueBroker, QueueLimits, QueueSettings, SendBatchOptions,
};
use bindery_core::{Clock, ManualClock};
use bindery_queues::Queues;
use proptest::prelude::*;

const MAX_RETRIES: u32 = 2;
const RETENTION_SECS: u64 = 60;

#[derive(Debug, Clone)]
enum Step {
    Send {
        count: usize,
        delay_secs: Option<u64>,
    },
    Pull {
        batch: usize,
        visibility_ms: u64,
    },
    Ack {
        lease: usize,
    },
    Retry {
        lease: usize,
        delay_secs: u64,
    },
    Advance {
        ms: u64,
    },
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (1usize..4, proptest::option::of(0u64..4))
            .prop_map(|(count, delay_secs)| Step::Send { count, delay_secs }),
        3 => (1usize..6, prop_oneof![Just(0u64), 500u64..4000])
            .prop_map(|(batch, visibility_ms)| Step::Pull { batch, visibility_ms }),
        2 => any::<usize>().prop_map(|lease| Step::Ack { lease }),
        1 => (any::<usize>(), 0u64..3).prop_map(|(lease, delay_secs)| Step::Retry { lease, delay_secs }),
        3 => (0u64..8000).prop_map(|ms| Step::Advance { ms }),
        1 => Just(Step::Reopen),
    ]
}

/// One stored message in the model.
#[derive(Debug, Clone)]
struct Msg {
    body: String,
    timestamp: u64,
    visible_at: u64,
    /// Orders messages that become visible at the same moment.
    order: u64,
    /// The number of the next delivery.
    attempts: u32,
}

#[derive(Debug, Default)]
struct Model {
    /// By body (bodies are unique: "m0", "m1", ...).
    msgs: BTreeMap<String, Msg>,
    order: u64,
}

impl Model {
    fn next_order(&mut self) -> u64 {
        self.order += 1;
        self.order
    }

    fn expired(m: &Msg, now: u64) -> bool {
        m.timestamp + RETENTION_SECS * 1000 <= now
    }

    /// The (body, attempts) a pull leases, applying the lease to the model.
    fn pull(&mut self, batch: usize, visibility_ms: u64, now: u64) -> Vec<(String, u32)> {
        let mut ready: Vec<(u64, u64, String)> = self
            .msgs
            .iter()
            .filter(|(_, m)| m.visible_at <= now)
            .map(|(b, m)| (m.visible_at, m.order, b.clone()))
            .collect();
        ready.sort();
        let mut out = Vec::new();
        for (_, _, body) in ready {
            if out.len() >= batch {
                break;
            }
            let m = self.msgs[&body].clone();
            if Self::expired(&m, now) || m.attempts > MAX_RETRIES + 1 {
                self.msgs.remove(&body);
                continue;
            }
            out.push((body.clone(), m.attempts));
            let order = self.next_order();
            let m = self.msgs.get_mut(&body).expect("present");
            m.attempts += 1;
            m.visible_at = now + visibility_ms;
            m.order = order;
        }
        out
    }

    fn retry(&mut self, body: &str, delay_secs: u64, now: u64) {
        let Some(m) = self.msgs.get(body) else { return };
        if m.attempts > MAX_RETRIES + 1 {
            self.msgs.remove(body);
            return;
        }
        let order = self.next_order();
        let m = self.msgs.get_mut(body).expect("present");
        m.visible_at = now + delay_secs * 1000;
        m.order = order;
    }
}

async fn open(path: &std::path::Path, clock: &ManualClock) -> (Queues, Arc<dyn PullConsumer>) {
    let queues = Queues::builder()
        .clock(clock.shared())
        .limits(QueueLimits::unbounded())
        .open(path)
        .await
        .expect("open");
    queues
        .create_queue(
            "q",
            QueueSettings {
                message_retention_period_secs: RETENTION_SECS,
                ..Default::default()
            },
        )
        .await
        .expect("create");
    let consumer = queues
        .pull_consumer(
            "q",
            PullConsumerSettings {
                max_retries: MAX_RETRIES,
                dead_letter_queue: None,
            },
        )
        .await
        .expect("pull consumer");
    (queues, consumer)
}

async fn run(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("q.redb");
    let clock = ManualClock::at_2026();
    let (mut queues, mut consumer) = open(&path, &clock).await;
    let mut model = Model::default();
    // (lease id, body) of every lease handed out so far.
    let mut leases: Vec<(String, String)> = Vec::new();
    let mut next_body = 0;
    for step in steps {
        let now = clock.now_ms();
        match step {
            Step::Send { count, delay_secs } => {
                let producer = queues.producer("q").await.expect("producer");
                let batch: Vec<_> = (0..count)
                    .map(|i| {
                        let mut m = MessageSendRequest::text(format!("m{}", next_body + i));
                        m.delay_seconds = delay_secs;
                        m
                    })
                    .collect();
                producer
                    .send_batch(batch, SendBatchOptions::default())
                    .await
                    .expect("send");
                for i in 0..count {
                    let order = model.next_order();
                    model.msgs.insert(
                        format!("m{}", next_body + i),
                        Msg {
                            body: format!("m{}", next_body + i),
                            timestamp: now,
                            visible_at: now + delay_secs.unwrap_or(0) * 1000,
                            order,
                            attempts: 1,
                        },
                    );
                }
                next_body += count;
            }
            Step::Pull {
                batch,
                visibility_ms,
            } => {
                let got = consumer
                    .pull(PullOptions {
                        batch_size: batch,
                        visibility_timeout_ms: visibility_ms,
                    })
                    .await
                    .expect("pull");
                let got: Vec<(String, String, u32)> = got
                    .into_iter()
                    .map(|g| (g.lease_id, g.message.text(), g.message.attempts))
                    .collect();
                let want = model.pull(batch, visibility_ms, now);
                let seen: Vec<(String, u32)> =
                    got.iter().map(|(_, b, a)| (b.clone(), *a)).collect();
                prop_assert_eq!(seen, want);
                for (lease, body, _) in got {
                    leases.push((lease, body));
                }
            }
            Step::Ack { lease } => {
                if leases.is_empty() {
                    continue;
                }
                let (id, body) = leases[lease % leases.len()].clone();
                let r = consumer
                    .ack(AckRequest {
                        acks: vec![id],
                        retries: vec![],
                    })
                    .await
                    .expect("ack");
                prop_assert_eq!(r.ack_count, 1);
                model.msgs.remove(&body);
            }
            Step::Retry { lease, delay_secs } => {
                if leases.is_empty() {
                    continue;
                }
                let (id, body) = leases[lease % leases.len()].clone();
                consumer
                    .ack(AckRequest {
                        acks: vec![],
                        retries: vec![PullRetry {
                            lease_id: id,
                            delay_seconds: Some(delay_secs),
                        }],
                    })
                    .await
                    .expect("retry");
                model.retry(&body, delay_secs, now);
            }
            Step::Advance { ms } => clock.advance_ms(ms),
            Step::Reopen => {
                drop(consumer);
                drop(queues);
                (queues, consumer) = open(&path, &clock).await;
            }
        }
        // The backlog counts every message the model still holds, minus any that the
        // retention sweeper has already deleted.
        let backlog = queues.metrics("q").await.expect("metrics").backlog_count;
        let now = clock.now_ms();
        let live = model
            .msgs
            .values()
            .filter(|m| !Model::expired(m, now))
            .count() as u64;
        prop_assert!(
            live <= backlog && backlog <= model.msgs.len() as u64,
            "backlog {} outside [{}, {}]",
            backlog,
            live,
            model.msgs.len()
        );
        for m in model.msgs.values() {
            prop_assert!(m.body.starts_with('m'));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn pull_consumer_matches_the_model(steps in proptest::collection::vec(step(), 1..40)) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(run(steps))?;
    }
}
