//! End to end: a Worker in a real workerd calls every D1 operation through its D1 binding,
//! backed by `bindery serve`.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn a_worker_in_workerd_uses_bindery_for_every_d1_operation() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let project = tmp.path().join("project");
    copy_fixture("d1", &project);
    let server = Bindery::start(&tmp.path().join("data"), &[]);
    let (config, port) = workerd_config(&project, &server.addr, None, "bindery.capnp");
    let workerd = Workerd::start(&config, false, port);
    let r = http(
        "GET",
        &format!("127.0.0.1:{port}"),
        "/",
        &[],
        b"",
        Duration::from_secs(120),
    )?;
    assert_eq!(r.status, 200, "{}", r.text());
    let report = r.json();
    assert_eq!(
        report["failures"],
        serde_json::json!([]),
        "failed checks: {}\nworkerd: {}\nbindery: {}",
        serde_json::to_string_pretty(&report["failures"])?,
        workerd.log(),
        server.log()
    );
    let passed = report["passed"].as_u64().unwrap_or(0);
    eprintln!(
        "{passed} D1 checks passed; session bookmark: {}",
        report["info"]["bookmark"]
    );
    assert!(passed >= 30, "only {passed} checks ran: {report}");
    Ok(())
}
