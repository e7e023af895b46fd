//! End to end: a Worker in a real workerd (installed from npm by this test) calls every KV
//! operation through its kvNamespace binding, backed by `bindery serve`.

mod common;

use std::time::Duration;

use common::*;

const TOKEN: &str = "e2e-secret-token";

#[test]
fn a_worker_in_workerd_uses_bindery_for_every_kv_operation() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let project = tmp.path().join("project");
    copy_fixture("kv", &project);
    let data = tmp.path().join("data");
    let mut server = Bindery::start(&data, &["--token", TOKEN]);

    let (config, port) = workerd_config(&project, &server.addr, Some(TOKEN), "bindery.capnp");
    let workerd = Workerd::start(&config, false, port);
    let addr = format!("127.0.0.1:{port}");
    let r = http("GET", &addr, "/", &[], b"", Duration::from_secs(120))?;
    let report = r.json();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        report["failures"],
        serde_json::json!([]),
        "failed checks: {}\nworkerd: {}\nbindery: {}",
        serde_json::to_string_pretty(&report["failures"])?,
        workerd.log(),
        server.log()
    );
    let passed = report["passed"].as_u64().unwrap_or(0);
    eprintln!("{passed} KV checks passed: {}", report["passedNames"]);
    assert!(passed >= 50, "only {passed} checks ran: {report}");

    // The same Worker with a wrong token gets the platform's error, not a hang.
    let (bad_config, bad_port) =
        workerd_config(&project, &server.addr, Some("wrong-token"), "bad.capnp");
    let bad = Workerd::start(&bad_config, false, bad_port);
    let r = http(
        "GET",
        &format!("127.0.0.1:{bad_port}"),
        "/probe",
        &[],
        b"",
        Duration::from_secs(30),
    )?;
    assert_eq!(
        r.json()["error"],
        "KV GET failed: 401 missing or wrong bearer token",
        "{}",
        bad.log()
    );
    drop(bad);

    // A server that serves only declared namespaces: the Worker gets an error, not a miss.
    let declared = tmp.path().join("declared.jsonc");
    std::fs::write(
        &declared,
        r#"{"kv_namespaces": [{"binding": "OTHER", "id": "other-ns"}]}"#,
    )?;
    let declared_arg = declared.to_string_lossy().into_owned();
    let strict = Bindery::start(
        &tmp.path().join("strict-data"),
        &["--strict", "--wrangler", &declared_arg],
    );
    let (strict_config, strict_port) = workerd_config(&project, &strict.addr, None, "strict.capnp");
    let strict_workerd = Workerd::start(&strict_config, false, strict_port);
    let r = http(
        "GET",
        &format!("127.0.0.1:{strict_port}"),
        "/probe",
        &[],
        b"",
        Duration::from_secs(30),
    )?;
    assert_eq!(
        r.json()["error"],
        "KV GET failed: 403 unknown binding kv/e2e-kv: it is not declared in the configuration",
        "{}",
        strict_workerd.log()
    );
    drop(strict_workerd);
    drop(workerd);

    // SIGTERM closes the stores cleanly; the data is on disk for the CLI to read.
    assert!(
        server.stop(),
        "bindery did not exit cleanly: {}",
        server.log()
    );
    assert!(server.log().contains("stores closed"), "{}", server.log());
    let data_arg = data.to_string_lossy().into_owned();
    let (ok, out, err) = bindery_cli(
        &[
            "kv",
            "key",
            "get",
            "greeting",
            "--binding",
            "KV",
            "--data",
            &data_arg,
            "--text",
        ],
        &project,
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim_end(), "hello world");
    let (ok, out, err) = bindery_cli(
        &[
            "kv",
            "key",
            "list",
            "--namespace-id",
            "e2e-kv",
            "--prefix",
            "list/",
            "--data",
            &data_arg,
        ],
        &project,
    );
    assert!(ok, "{err}");
    let listed: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(listed.as_array().map(Vec::len), Some(6), "{out}");
    Ok(())
}
