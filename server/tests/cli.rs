//! The command line: wrangler-like data commands and the rules of `bindery serve`.

mod common;

use common::*;

#[test]
fn d1_execute_export_and_list_work_on_the_data_folder() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data");
    let data_arg = data.to_string_lossy().into_owned();
    let schema = tmp.path().join("schema.sql");
    std::fs::write(
        &schema,
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);\nINSERT INTO notes (body) VALUES ('first');\nINSERT INTO notes (body) VALUES ('second');\n",
    )?;
    let schema_arg = schema.to_string_lossy().into_owned();
    let (ok, _, err) = bindery_cli(
        &[
            "d1",
            "execute",
            "notes-db",
            "--file",
            &schema_arg,
            "--data",
            &data_arg,
        ],
        tmp.path(),
    );
    assert!(ok, "{err}");
    let (ok, out, err) = bindery_cli(
        &[
            "d1",
            "execute",
            "notes-db",
            "--command",
            "SELECT body FROM notes ORDER BY id",
            "--data",
            &data_arg,
        ],
        tmp.path(),
    );
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(
        v[0]["results"],
        serde_json::json!([{"body": "first"}, {"body": "second"}])
    );
    let dump = tmp.path().join("dump.sql");
    let dump_arg = dump.to_string_lossy().into_owned();
    let (ok, _, err) = bindery_cli(
        &[
            "d1", "export", "notes-db", "--output", &dump_arg, "--data", &data_arg,
        ],
        tmp.path(),
    );
    assert!(ok, "{err}");
    let sql = std::fs::read_to_string(&dump)?;
    assert!(
        sql.contains("CREATE TABLE") && sql.contains("second"),
        "{sql}"
    );
    let (ok, out, _) = bindery_cli(&["d1", "list", "--data", &data_arg], tmp.path());
    assert!(ok);
    assert_eq!(out.trim(), "notes-db");
    let (ok, _, err) = bindery_cli(
        &[
            "d1",
            "execute",
            "notes-db",
            "--command",
            "SELECT * FROM missing",
            "--data",
            &data_arg,
        ],
        tmp.path(),
    );
    assert!(!ok);
    assert!(err.contains("no such table"), "{err}");
    Ok(())
}

#[test]
fn d1_time_travel_restores_to_a_bookmark() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let data_arg = tmp.path().join("data").to_string_lossy().into_owned();
    let run = |sql: &str| {
        let (ok, out, err) = bindery_cli(
            &["d1", "execute", "tt", "--command", sql, "--data", &data_arg],
            tmp.path(),
        );
        assert!(ok, "{sql}: {err}");
        out
    };
    run("CREATE TABLE t (x INTEGER)");
    run("INSERT INTO t VALUES (1)");
    let (ok, bookmark, err) = bindery_cli(
        &["d1", "time-travel", "info", "tt", "--data", &data_arg],
        tmp.path(),
    );
    assert!(ok, "{err}");
    let bookmark = bookmark.trim().to_owned();
    run("INSERT INTO t VALUES (2)");
    let (ok, out, err) = bindery_cli(
        &[
            "d1",
            "time-travel",
            "restore",
            "tt",
            "--bookmark",
            &bookmark,
            "--data",
            &data_arg,
        ],
        tmp.path(),
    );
    assert!(ok, "{err}");
    assert!(out.contains("undo with --bookmark"), "{out}");
    let rows: serde_json::Value = serde_json::from_str(&run("SELECT x FROM t ORDER BY x"))?;
    assert_eq!(rows[0]["results"], serde_json::json!([{"x": 1}]));
    Ok(())
}

#[test]
fn r2_bucket_and_object_commands_round_trip() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data");
    let data_arg = data.to_string_lossy().into_owned();
    let file = tmp.path().join("photo.bin");
    std::fs::write(&file, b"\x00\x01binary\xff")?;
    let file_arg = file.to_string_lossy().into_owned();
    let (ok, _, err) = bindery_cli(
        &["r2", "bucket", "create", "photos", "--data", &data_arg],
        tmp.path(),
    );
    assert!(ok, "{err}");
    let (ok, _, err) = bindery_cli(
        &[
            "r2",
            "object",
            "put",
            "photos/cats/tabby.bin",
            "--file",
            &file_arg,
            "--content-type",
            "image/x-test",
            "--data",
            &data_arg,
        ],
        tmp.path(),
    );
    assert!(ok, "{err}");
    let back = tmp.path().join("back.bin");
    let back_arg = back.to_string_lossy().into_owned();
    let (ok, _, err) = bindery_cli(
        &[
            "r2",
            "object",
            "get",
            "photos/cats/tabby.bin",
            "--file",
            &back_arg,
            "--data",
            &data_arg,
        ],
        tmp.path(),
    );
    assert!(ok, "{err}");
    assert_eq!(std::fs::read(&back)?, b"\x00\x01binary\xff");
    let (ok, out, _) = bindery_cli(&["r2", "bucket", "list", "--data", &data_arg], tmp.path());
    assert!(ok && out.trim() == "photos", "{out}");
    let (ok, _, err) = bindery_cli(
        &["r2", "bucket", "delete", "photos", "--data", &data_arg],
        tmp.path(),
    );
    assert!(!ok && err.contains("not empty"), "{err}");
    let (ok, _, err) = bindery_cli(
        &[
            "r2",
            "object",
            "delete",
            "photos/cats/tabby.bin",
            "--data",
            &data_arg,
        ],
        tmp.path(),
    );
    assert!(ok, "{err}");
    let (ok, _, err) = bindery_cli(
        &[
            "r2",
            "object",
            "get",
            "photos/cats/tabby.bin",
            "--data",
            &data_arg,
        ],
        tmp.path(),
    );
    assert!(!ok && err.contains("does not exist"), "{err}");
    let (ok, _, err) = bindery_cli(
        &["r2", "bucket", "delete", "photos", "--data", &data_arg],
        tmp.path(),
    );
    assert!(ok, "{err}");
    Ok(())
}

#[test]
fn kv_commands_need_a_namespace_and_report_misses() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let data_arg = tmp.path().join("data").to_string_lossy().into_owned();
    let (ok, _, err) = bindery_cli(&["kv", "key", "get", "k", "--data", &data_arg], tmp.path());
    assert!(!ok && err.contains("--binding"), "{err}");
    let (ok, _, err) = bindery_cli(
        &[
            "kv",
            "key",
            "put",
            "k",
            "v",
            "--namespace-id",
            "ns",
            "--metadata",
            "{\"a\":1}",
            "--data",
            &data_arg,
        ],
        tmp.path(),
    );
    assert!(ok, "{err}");
    let (ok, out, _) = bindery_cli(
        &[
            "kv",
            "key",
            "list",
            "--namespace-id",
            "ns",
            "--data",
            &data_arg,
        ],
        tmp.path(),
    );
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(v, serde_json::json!([{"name": "k", "metadata": {"a": 1}}]));
    let (ok, _, _) = bindery_cli(
        &[
            "kv",
            "key",
            "delete",
            "k",
            "--namespace-id",
            "ns",
            "--data",
            &data_arg,
        ],
        tmp.path(),
    );
    assert!(ok);
    let (ok, _, err) = bindery_cli(
        &[
            "kv",
            "key",
            "get",
            "k",
            "--namespace-id",
            "ns",
            "--data",
            &data_arg,
        ],
        tmp.path(),
    );
    assert!(!ok && err.contains("Value not found"), "{err}");
    Ok(())
}

#[test]
fn serve_refuses_a_non_loopback_address_without_a_token() {
    let tmp = tempfile::tempdir().unwrap();
    let data_arg = tmp.path().join("data").to_string_lossy().into_owned();
    let (ok, _, err) = bindery_cli(
        &["serve", "--listen", "0.0.0.0:0", "--data", &data_arg],
        tmp.path(),
    );
    assert!(!ok);
    assert!(
        err.contains("refusing to listen on 0.0.0.0:0 without a token"),
        "{err}"
    );
}

#[test]
fn serve_refuses_an_invalid_wrangler_file() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("wrangler.jsonc"),
        "{ \"triggers\": { \"crons\": [\"61 * * * *\"] } }",
    )
    .unwrap();
    let data_arg = tmp.path().join("data").to_string_lossy().into_owned();
    let (ok, _, err) = bindery_cli(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--wrangler",
            "wrangler.jsonc",
            "--data",
            &data_arg,
        ],
        tmp.path(),
    );
    assert!(!ok);
    assert!(err.contains("minute field"), "{err}");
}

#[test]
fn r2_notification_rules_are_created_listed_and_deleted() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let data_arg = tmp.path().join("data").to_string_lossy().into_owned();
    let (ok, _, err) = bindery_cli(
        &[
            "r2",
            "bucket",
            "notification",
            "create",
            "photos",
            "--event-type",
            "object-create",
            "--queue",
            "photo-events",
            "--prefix",
            "raw/",
            "--data",
            &data_arg,
        ],
        tmp.path(),
    );
    assert!(ok, "{err}");
    let (ok, _, err) = bindery_cli(
        &[
            "r2",
            "bucket",
            "notification",
            "create",
            "photos",
            "--event-type",
            "object-moved",
            "--queue",
            "q",
            "--data",
            &data_arg,
        ],
        tmp.path(),
    );
    assert!(
        !ok && err.contains("object-create or object-delete"),
        "{err}"
    );
    let (ok, out, _) = bindery_cli(
        &[
            "r2",
            "bucket",
            "notification",
            "list",
            "photos",
            "--data",
            &data_arg,
        ],
        tmp.path(),
    );
    assert!(ok);
    let rules: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(rules[0]["queue"], "photo-events");
    assert_eq!(rules[0]["prefix"], "raw/");
    let (ok, _, err) = bindery_cli(
        &[
            "r2",
            "bucket",
            "notification",
            "delete",
            "photos",
            "--queue",
            "photo-events",
            "--data",
            &data_arg,
        ],
        tmp.path(),
    );
    assert!(ok, "{err}");
    let (ok, out, _) = bindery_cli(
        &[
            "r2",
            "bucket",
            "notification",
            "list",
            "photos",
            "--data",
            &data_arg,
        ],
        tmp.path(),
    );
    assert!(ok && out.trim() == "[]", "{out}");
    Ok(())
}
