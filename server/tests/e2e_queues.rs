//! End to end: a Worker in a real workerd sends messages through its queue binding; Bindery
//! delivers them back to the Worker's queue() handler through the driver Worker, applies
//! its acks and retries, dead-letters what exhausts its retries, and fires its scheduled()
//! handler.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The server's token: bindings, the driver Worker and the cron endpoint all need it.
const TOKEN: &str = "queues-e2e-token";

const EXPECTED: &[&str] = &[
    "e2e-jobs/1/1",
    "e2e-jobs/2/1",
    "e2e-jobs/2/2",
    "e2e-jobs/3/1",
    "e2e-jobs/3/2",
    "e2e-jobs/4/1",
    "e2e-jobs/4/2",
    "e2e-jobs/plain text/1",
    "e2e-jobs/bytes/1",
    "e2e-jobs/7/1",
    "e2e-jobs/8/1",
    "e2e-jobs/9/1",
    "e2e-jobs/batch text/1",
    "e2e-jobs/11/1",
    "e2e-dlq/2/1",
];

fn seen(addr: &str) -> Result<BTreeMap<String, Value>, Box<dyn std::error::Error>> {
    let r = http("GET", addr, "/seen", &[], b"", Duration::from_secs(30))?;
    let mut out = BTreeMap::new();
    for item in r.json().as_array().cloned().unwrap_or_default() {
        let key = item["key"]
            .as_str()
            .unwrap_or("")
            .trim_start_matches("seen/")
            .to_owned();
        out.insert(key, item["value"].clone());
    }
    Ok(out)
}

#[test]
fn a_worker_in_workerd_sends_and_consumes_through_bindery_queues() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let project = tmp.path().join("project");
    copy_fixture("queues", &project);
    let driver_port = free_port();
    let driver = format!("127.0.0.1:{driver_port}");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let wrangler = project.join("wrangler.jsonc");
    let wrangler_arg = wrangler.to_string_lossy().into_owned();
    let server = Bindery::start(
        &tmp.path().join("data"),
        &[
            "--wrangler",
            &wrangler_arg,
            "--strict",
            "--driver",
            &driver,
            "--token",
            TOKEN,
        ],
    );
    let (ok, out, err) = bindery_cli(
        &[
            "workerd-config",
            "--out",
            "bindery.capnp",
            "--bindery",
            &server.addr,
            "--listen",
            &listen,
            "--driver-listen",
            &driver,
            "--token",
            TOKEN,
        ],
        &project,
    );
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("--experimental"),
        "the driver needs --experimental: {out}"
    );
    let workerd = Workerd::start(&project.join("bindery.capnp"), true, port);

    let r = http("GET", &listen, "/send", &[], b"", Duration::from_secs(60))?;
    let report = r.json();
    assert_eq!(
        report["failures"],
        serde_json::json!([]),
        "{report}\nworkerd: {}\nbindery: {}",
        workerd.log(),
        server.log()
    );

    // Wait for every delivery, retries and the dead-letter queue included.
    let deadline = Instant::now() + Duration::from_secs(45);
    let records = loop {
        let records = seen(&listen)?;
        if EXPECTED.iter().all(|k| records.contains_key(*k)) || Instant::now() > deadline {
            break records;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let keys: Vec<&str> = records.keys().map(String::as_str).collect();
    let mut expected: Vec<&str> = EXPECTED.to_vec();
    expected.sort();
    assert_eq!(
        keys,
        expected,
        "deliveries\nworkerd: {}\nbindery: {}",
        workerd.log(),
        server.log()
    );

    // Message bodies arrive as the consumer expects each content type.
    assert_eq!(
        records["e2e-jobs/bytes/1"]["body"],
        serde_json::json!({"bytes": [1, 2, 3]})
    );
    assert_eq!(records["e2e-jobs/plain text/1"]["body"], "plain text");
    assert_eq!(
        records["e2e-jobs/7/1"]["v8"], true,
        "v8 messages keep Dates and Sets"
    );
    assert_eq!(records["e2e-jobs/1/1"]["isDate"], true);
    // The dead-lettered message keeps its id.
    assert_eq!(records["e2e-dlq/2/1"]["id"], records["e2e-jobs/2/1"]["id"]);
    // Delays hold messages back.
    for (key, secs) in [("e2e-jobs/8/1", 2), ("e2e-jobs/11/1", 1)] {
        let r = &records[key];
        let waited = r["deliveredAt"].as_u64().unwrap_or(0)
            - r["body"]["sentAt"].as_u64().unwrap_or(u64::MAX / 2);
        assert!(
            waited + 50 >= secs * 1000,
            "{key} delivered after {waited} ms; delay was {secs} s"
        );
    }
    // A retry with a delay waits too.
    let first = records["e2e-jobs/3/1"]["deliveredAt"].as_u64().unwrap_or(0);
    let second = records["e2e-jobs/3/2"]["deliveredAt"].as_u64().unwrap_or(0);
    assert!(
        second >= first + 950,
        "retry after {} ms",
        second.saturating_sub(first)
    );

    // The driver refuses callers without the token.
    let refused = http(
        "POST",
        &driver,
        "/scheduled",
        &[],
        br#"{"cron":"* * * * *","scheduledTime":0}"#,
        Duration::from_secs(10),
    )?;
    assert_eq!(refused.status, 401);
    let refused = http(
        "POST",
        &server.addr,
        "/cdn-cgi/handler/scheduled?cron=*",
        &[],
        b"",
        Duration::from_secs(10),
    )?;
    assert_eq!(refused.status, 401);

    // Cron triggers reach scheduled() through the driver.
    let fired = http(
        "POST",
        &server.addr,
        "/cdn-cgi/handler/scheduled?cron=*%2F5+*+*+*+*",
        &[("Authorization", &format!("Bearer {TOKEN}"))],
        b"",
        Duration::from_secs(30),
    )?;
    assert_eq!(fired.status, 200, "{}", fired.text());
    assert_eq!(fired.json()["outcome"], "ok");
    let records = seen(&listen)?;
    let cron: Vec<&Value> = records
        .iter()
        .filter(|(k, _)| k.starts_with("cron/"))
        .map(|(_, v)| v)
        .collect();
    assert_eq!(cron.len(), 1, "{records:?}");
    assert_eq!(cron[0]["cron"], "*/5 * * * *");
    drop(workerd);
    Ok(())
}
