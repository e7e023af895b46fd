//! Group durability across objects: the output gate's back end.
//!
//! Objects commit their SQLite transactions on their own task (WAL mode, no fsync on the
//! caller's thread) and hand the committer the files to make durable. The committer thread
//! takes every job waiting, fsyncs each distinct file once (in parallel when there are
//! many), and then releases every reply and outgoing message that was waiting for those
//! writes. Many commits of many objects therefore share one round, and one fsync of a file
//! covers every commit appended to it since the last.
//!
//! Ordering: a [`Job::Release`] sent after a [`Job::Sync`] is fired in the same round or a
//! later one, so a gated message never overtakes the writes made before it.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex};

/// Longest a round waits for more commits before its fsyncs.
const MAX_LINGER: Duration = Duration::from_millis(2);
/// A round stops waiting when no commit arrived for this long.
const FOLLOWER_GAP: Duration = Duration::from_micros(100);

/// What an object's output gate reads: how far its commits have been made durable.
#[derive(Debug, Default)]
pub(crate) struct Mark {
    /// Sequence number of the last commit handed to the committer.
    pub submitted: AtomicU64,
    /// Sequence number of the last commit known durable.
    pub durable: AtomicU64,
    /// Set when making a commit durable failed: the object must be reset.
    pub failed: AtomicBool,
}

impl Mark {
    /// Whether a message sent now must wait for the committer.
    pub(crate) fn gated(&self) -> bool {
        self.durable.load(Ordering::Acquire) < self.submitted.load(Ordering::Acquire)
    }
}

/// A file to make durable: a data file (`sync_data`) or a directory (`sync_all`).
pub(crate) enum Target {
    File(Arc<File>),
    Dir(PathBuf),
}

/// A callback fired by the committer: `true` when the writes before it are durable.
pub(crate) type Release = Box<dyn FnOnce(bool) + Send>;

pub(crate) enum Job {
    Sync {
        targets: Vec<Target>,
        mark: Arc<Mark>,
        seq: u64,
    },
    Release {
        mark: Arc<Mark>,
        release: Release,
    },
}

/// Test hooks: hold rounds, fail the next fsyncs.
#[derive(Default)]
pub(crate) struct Faults {
    pub hold: Mutex<bool>,
    pub resume: Condvar,
    pub fail_next: AtomicU32,
}

pub(crate) struct Committer {
    tx: Option<Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub faults: Arc<Faults>,
    pub rounds: Arc<AtomicU64>,
}

impl Committer {
    pub(crate) fn start() -> std::io::Result<Self> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let faults = Arc::new(Faults::default());
        let rounds = Arc::new(AtomicU64::new(0));
        let thread = std::thread::Builder::new()
            .name("bindery-durable-commit".into())
            .spawn({
                let faults = Arc::clone(&faults);
                let rounds = Arc::clone(&rounds);
                move || run(rx, faults, rounds)
            })?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
            faults,
            rounds,
        })
    }

    pub(crate) fn send(&self, job: Job) {
        if let Some(tx) = &self.tx
            && let Err(e) = tx.send(job)
        {
            // The thread is gone (only during teardown): fail what waits.
            if let Job::Release { release, .. } = e.into_inner() {
                release(false);
            }
        }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.tx = None;
        *self.faults.hold.lock() = false;
        self.faults.resume.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn sync_target(t: &Target) -> std::io::Result<()> {
    match t {
        Target::File(f) => f.sync_data(),
        Target::Dir(p) => File::open(p)?.sync_all(),
    }
}

fn run(rx: Receiver<Job>, faults: Arc<Faults>, rounds: Arc<AtomicU64>) {
    // How long the last fsyncs took, and how many commits they covered: a round lingers
    // for followers only when commits arrive concurrently, and never longer than a fraction
    // of an fsync.
    let mut last_sync = Duration::ZERO;
    let mut last_commits = 0usize;
    while let Ok(first) = rx.recv() {
        {
            let mut held = faults.hold.lock();
            while *held {
                faults.resume.wait(&mut held);
            }
        }
        let mut jobs = vec![first];
        while let Ok(j) = rx.try_recv() {
            jobs.push(j);
        }
        if last_commits > 1 && jobs.iter().any(|j| matches!(j, Job::Sync { .. })) {
            let until = Instant::now() + (last_sync / 2).min(MAX_LINGER);
            loop {
                let now = Instant::now();
                if now >= until {
                    break;
                }
                match rx.recv_timeout((until - now).min(FOLLOWER_GAP)) {
                    Ok(j) => {
                        jobs.push(j);
                        while let Ok(j) = rx.try_recv() {
                            jobs.push(j);
                        }
                    }
                    Err(_) => break,
                }
            }
        }
        last_commits = jobs
            .iter()
            .filter(|j| matches!(j, Job::Sync { .. }))
            .count();
        let sync_started = Instant::now();
        // Distinct targets, and the marks (with their highest seq) depending on them.
        let mut files: Vec<(usize, Arc<File>, Vec<usize>)> = Vec::new();
        let mut dirs: Vec<(PathBuf, Vec<usize>)> = Vec::new();
        let mut marks: Vec<(Arc<Mark>, u64, bool)> = Vec::new();
        let mut releases = Vec::new();
        for job in jobs {
            match job {
                Job::Sync { targets, mark, seq } => {
                    let mi = match marks.iter().position(|(m, _, _)| Arc::ptr_eq(m, &mark)) {
                        Some(i) => {
                            marks[i].1 = marks[i].1.max(seq);
                            i
                        }
                        None => {
                            marks.push((mark, seq, true));
                            marks.len() - 1
                        }
                    };
                    for t in targets {
                        match t {
                            Target::File(f) => {
                                let p = Arc::as_ptr(&f) as usize;
                                match files.iter_mut().find(|(q, _, _)| *q == p) {
                                    Some(e) => e.2.push(mi),
                                    None => files.push((p, f, vec![mi])),
                                }
                            }
                            Target::Dir(d) => match dirs.iter_mut().find(|(q, _)| *q == d) {
                                Some(e) => e.1.push(mi),
                                None => dirs.push((d, vec![mi])),
                            },
                        }
                    }
                }
                Job::Release { mark, release } => releases.push((mark, release)),
            }
        }
        // Directories first (new files' entries), then data files.
        let mut failed_marks = Vec::new();
        for (d, users) in &dirs {
            if sync_target(&Target::Dir(d.clone())).is_err() || injected(&faults) {
                failed_marks.extend(users.iter().copied());
            }
        }
        let results: Vec<bool> = if files.len() > 4 {
            let chunk = files.len().div_ceil(4);
            std::thread::scope(|s| {
                let handles: Vec<_> = files
                    .chunks(chunk)
                    .map(|c| {
                        s.spawn(move || {
                            c.iter()
                                .map(|(_, f, _)| f.sync_data().is_ok())
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().unwrap_or_default())
                    .collect()
            })
        } else {
            files
                .iter()
                .map(|(_, f, _)| f.sync_data().is_ok())
                .collect()
        };
        for (i, (_, _, users)) in files.iter().enumerate() {
            let ok = results.get(i).copied().unwrap_or(false) && !injected(&faults);
            if !ok {
                failed_marks.extend(users.iter().copied());
            }
        }
        if !files.is_empty() {
            last_sync = sync_started.elapsed();
        }
        for i in failed_marks {
            marks[i].2 = false;
            marks[i].0.failed.store(true, Ordering::Release);
        }
        // Fire releases before publishing the new durable marks, so that an object that
        // still sees itself gated queues behind these messages instead of overtaking them.
        for (mark, release) in releases {
            release(!mark.failed.load(Ordering::Acquire));
        }
        for (mark, seq, ok) in marks {
            if ok {
                mark.durable.fetch_max(seq, Ordering::AcqRel);
            }
        }
        rounds.fetch_add(1, Ordering::Release);
    }
}

fn injected(faults: &Faults) -> bool {
    faults
        .fail_next
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .is_ok()
}
