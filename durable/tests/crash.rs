//! SIGKILL crash test: acknowledged writes and set alarms survive a `kill -9` at a random
//! moment, and no event's writes are half applied.
//!
//! The test re-executes its own binary as a child (`crash_child`, selected by an env var).
//! The child writes from 8 concurrent callers to 8 objects (each event writes a key and its
//! pair) and sets alarms an hour ahead, printing a line for every acknowledgement. The
//! parent kills it after a random delay, then reopens the folder in-process and checks
//! every acknowledged write and alarm. `DURABLE_CRASH_ITERATIONS` overrides the count
//! (default 100).

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bindery_core::ManualClock;
use bindery_core::durable::{
    AlarmInfo, DurableNamespace, DurableObject, DurableResult, State, async_trait,
};
use bindery_durable::DurableRuntime;
use bytes::Bytes;
use parking_lot::Mutex;
use rand::Rng;

const CHILD_ENV: &str = "BINDERY_DURABLE_CRASH_DIR";

enum Req {
    Put(String, Bytes),
    Get(String),
    SetAlarm(u64),
}

#[derive(Debug, PartialEq)]
enum Resp {
    Unit,
    Pair(Option<Bytes>, Option<Bytes>),
}

struct Writer {
    state: State,
    fired: Arc<Mutex<HashSet<String>>>,
}

#[async_trait]
impl DurableObject for Writer {
    type Request = Req;
    type Response = Resp;

    async fn call(&mut self, req: Req) -> DurableResult<Resp> {
        let s = self.state.storage();
        Ok(match req {
            Req::Put(k, v) => {
                s.put(&k, v.clone())?;
                s.put(&format!("{k}#pair"), v)?;
                Resp::Unit
            }
            Req::Get(k) => Resp::Pair(s.get(&k)?, s.get(&format!("{k}#pair"))?),
            Req::SetAlarm(t) => {
                s.set_alarm(t)?;
                Resp::Unit
            }
        })
    }

    async fn alarm(&mut self, _info: AlarmInfo) -> DurableResult<()> {
        self.fired.lock().insert(self.state.id().to_hex());
        Ok(())
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The child: writes until killed. Run only by the crash test, as a child process.
#[test]
#[ignore = "child process of the SIGKILL crash test"]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let runtime = DurableRuntime::builder()
            .open(&dir)
            .await
            .expect("open runtime");
        let fired = Arc::new(Mutex::new(HashSet::new()));
        let ns = runtime
            .namespace("crash", move |state| Writer {
                state,
                fired: Arc::clone(&fired),
            })
            .await
            .expect("namespace");
        let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
        {
            let mut o = out.lock().expect("stdout");
            writeln!(o, "READY").expect("write");
            o.flush().expect("flush");
        }
        let mut tasks = Vec::new();
        for w in 0..8 {
            let ns = ns.clone();
            let out = Arc::clone(&out);
            tasks.push(tokio::spawn(async move {
                let name = format!("obj{w}");
                let stub = ns.get_by_name(&name);
                for i in 0u64.. {
                    if i % 10 == 5 {
                        let t = now_ms() + 3_600_000 + i;
                        stub.call(Req::SetAlarm(t)).await.expect("set alarm");
                        let mut o = out.lock().expect("stdout");
                        writeln!(o, "ALARM {name} {t}").expect("write");
                        o.flush().expect("flush");
                    } else {
                        let key = format!("k{i:08}");
                        let val = Bytes::from(format!("{name}:{i}"));
                        stub.call(Req::Put(key.clone(), val)).await.expect("put");
                        let mut o = out.lock().expect("stdout");
                        writeln!(o, "ACK {name} {key} {i}").expect("write");
                        o.flush().expect("flush");
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}

#[test]
fn acknowledged_writes_and_alarms_survive_sigkill() {
    let iterations: usize = std::env::var("DURABLE_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let exe = std::env::current_exe().expect("current exe");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut total_acks = 0usize;
    let mut total_alarms = 0usize;
    for iteration in 0..iterations {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn({
            let lines = Arc::clone(&lines);
            move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if line.ends_with("READY") {
                        let _ = ready_tx.send(());
                    }
                    lines.lock().push(line);
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("child never became ready");
        let delay = rand::rng().random_range(5..150);
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().expect("SIGKILL child");
        let _ = child.wait();
        reader.join().expect("reader");

        // What the child acknowledged before it died.
        let mut acked: Vec<(String, String, u64)> = Vec::new();
        let mut alarms: BTreeMap<String, u64> = BTreeMap::new();
        for line in lines.lock().iter() {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts.as_slice() {
                ["ACK", obj, key, i] => {
                    acked.push((obj.to_string(), key.to_string(), i.parse().expect("seq")))
                }
                ["ALARM", obj, t] => {
                    alarms.insert(obj.to_string(), t.parse().expect("time"));
                }
                _ => {}
            }
        }
        total_acks += acked.len();
        total_alarms += alarms.len();

        rt.block_on(async {
            // Two hours ahead: every alarm the child set is due when the namespace opens.
            let clock = ManualClock::new(now_ms() + 7_200_000);
            let runtime = DurableRuntime::builder()
                .clock(clock.shared())
                .open(dir.path())
                .await
                .expect("reopen after crash");
            let fired = Arc::new(Mutex::new(HashSet::new()));
            let f2 = Arc::clone(&fired);
            let ns = runtime
                .namespace("crash", move |state| Writer {
                    state,
                    fired: Arc::clone(&f2),
                })
                .await
                .expect("namespace");
            for (obj, key, i) in &acked {
                let expect = Bytes::from(format!("{obj}:{i}"));
                let got = ns
                    .get_by_name(obj)
                    .call(Req::Get(key.clone()))
                    .await
                    .expect("get");
                assert_eq!(
                    got,
                    Resp::Pair(Some(expect.clone()), Some(expect)),
                    "iteration {iteration}: acknowledged write {obj}/{key} lost or torn"
                );
            }
            // Unacknowledged writes may or may not be there, but never half.
            for w in 0..8 {
                let obj = format!("obj{w}");
                let last = acked
                    .iter()
                    .filter(|(o, _, _)| *o == obj)
                    .map(|(_, _, i)| *i)
                    .max()
                    .map_or(0, |i| i + 1);
                for i in last..last + 3 {
                    let r = ns
                        .get_by_name(&obj)
                        .call(Req::Get(format!("k{i:08}")))
                        .await
                        .expect("get");
                    if let Resp::Pair(a, b) = r {
                        assert_eq!(a, b, "iteration {iteration}: torn event in {obj}");
                    }
                }
            }
            let ids: Vec<String> = alarms.keys().map(|o| ns.id_from_name(o).to_hex()).collect();
            for _ in 0..1000 {
                if ids.iter().all(|id| fired.lock().contains(id)) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            for (obj, id) in alarms.keys().zip(&ids) {
                assert!(
                    fired.lock().contains(id),
                    "iteration {iteration}: acknowledged alarm of {obj} did not fire after restart"
                );
            }
            ns.shutdown().await;
        });
    }
    eprintln!(
        "{iterations} SIGKILL iterations: {total_acks} acknowledged writes and {total_alarms} alarms checked"
    );
    assert!(total_acks > 0, "the child never acknowledged a write");
}
