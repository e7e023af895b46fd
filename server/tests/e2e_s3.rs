//! End to end: boto3 and the AWS CLI (installed from PyPI by this test into a venv under the
//! target folder) use Bindery's S3 API, and what they write is what a Worker's R2 binding
//! reads.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

const SECRET: &str = "e2e-s3-token";

fn aws(venv: &Path, endpoint: &str, config: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(venv.join("bin/aws"))
        .args(["--endpoint-url", endpoint])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "bindery")
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_DEFAULT_REGION", "auto")
        .env("AWS_CONFIG_FILE", config)
        .env("AWS_SHARED_CREDENTIALS_FILE", config.with_extension("none"))
        .env_remove("AWS_PROFILE")
        .output()
        .expect("running the AWS CLI");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn boto3_and_the_aws_cli_use_the_s3_api() -> TestResult {
    let venv = python_venv();
    let tmp = tempfile::tempdir()?;
    let server = Bindery::start(&tmp.path().join("data"), &["--token", SECRET]);
    let endpoint = format!("http://{}", server.addr);

    // boto3: every operation, checked by the script.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e/s3/boto3_checks.py");
    let out = Command::new(venv.join("bin/python"))
        .arg(&script)
        .env("BINDERY_S3_ENDPOINT", &endpoint)
        .env("AWS_ACCESS_KEY_ID", "bindery")
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_CONFIG_FILE", tmp.path().join("no-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            tmp.path().join("no-credentials"),
        )
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| {
            panic!(
                "boto3 script output is not JSON ({e}): {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    assert_eq!(
        report["failures"],
        serde_json::json!([]),
        "boto3 failures: {}\nbindery: {}",
        serde_json::to_string_pretty(&report["failures"])?,
        server.log()
    );
    let passed = report["passed"].as_array().map(Vec::len).unwrap_or(0);
    assert!(passed >= 45, "only {passed} boto3 checks ran: {report}");

    // The object boto3 left is visible through the R2 binding protocol.
    let head = http(
        "GET",
        &server.addr,
        "/",
        &[
            ("X-Bindery-Binding", "r2/boto-bucket"),
            ("Authorization", &format!("Bearer {SECRET}")),
            (
                "CF-R2-Request",
                r#"{"version":1,"method":"get","object":"from-s3.txt"}"#,
            ),
        ],
        b"",
        Duration::from_secs(10),
    )?;
    assert_eq!(head.status, 200, "{}", head.text());
    let meta_len: usize = head.header("cf-r2-metadata-size").unwrap_or("0").parse()?;
    let meta: serde_json::Value = serde_json::from_slice(&head.body[..meta_len])?;
    assert_eq!(
        meta["customFields"],
        serde_json::json!([{"k": "via", "v": "boto3"}])
    );
    assert_eq!(&head.body[meta_len..], b"written through S3");

    // The AWS CLI: high-level commands, including its own multipart upload.
    let config = tmp.path().join("aws-config");
    std::fs::write(&config, "[default]\ns3 =\n    addressing_style = path\n")?;
    let file = tmp.path().join("upload.bin");
    let data: Vec<u8> = (0..20 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &data)?;
    let file_arg = file.to_string_lossy().into_owned();
    let small = tmp.path().join("small.txt");
    std::fs::write(&small, "small file\n")?;
    let small_arg = small.to_string_lossy().into_owned();
    let back = tmp.path().join("back.bin");
    let back_arg = back.to_string_lossy().into_owned();
    let steps: Vec<Vec<&str>> = vec![
        vec!["s3", "mb", "s3://cli-bucket"],
        vec!["s3", "cp", &file_arg, "s3://cli-bucket/dir/big.bin"],
        vec!["s3", "cp", &small_arg, "s3://cli-bucket/dir/small.txt"],
        vec!["s3", "cp", "s3://cli-bucket/dir/big.bin", &back_arg],
    ];
    for step in &steps {
        let (ok, out, err) = aws(&venv, &endpoint, &config, step);
        assert!(
            ok,
            "aws {step:?} failed: {out}{err}\nbindery: {}",
            server.log()
        );
    }
    assert!(
        std::fs::read(&back)? == data,
        "the 20 MiB file came back different"
    );
    let (ok, out, err) = aws(
        &venv,
        &endpoint,
        &config,
        &["s3", "ls", "s3://cli-bucket/dir/"],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("big.bin") && out.contains("small.txt") && out.contains("20971520"),
        "{out}"
    );
    let (ok, out, err) = aws(
        &venv,
        &endpoint,
        &config,
        &[
            "s3api",
            "head-object",
            "--bucket",
            "cli-bucket",
            "--key",
            "dir/big.bin",
        ],
    );
    assert!(ok, "{err}");
    let head: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(head["ContentLength"], 20 * 1024 * 1024);
    assert!(
        head["ETag"].as_str().unwrap_or("").contains('-'),
        "the CLI uploaded in parts: {out}"
    );
    let (ok, _, err) = aws(
        &venv,
        &endpoint,
        &config,
        &["s3", "rm", "--recursive", "s3://cli-bucket/dir/"],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = aws(&venv, &endpoint, &config, &["s3", "rb", "s3://cli-bucket"]);
    assert!(ok, "{err}");
    let (ok, out, _) = aws(&venv, &endpoint, &config, &["s3", "ls"]);
    assert!(ok && !out.contains("cli-bucket"), "{out}");
    Ok(())
}
