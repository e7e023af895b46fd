#!/usr/bin/env bash
# The whole test run: formatting, lints, docs, and every test of every crate (unit,
# conformance, model, crash and end-to-end tests). End-to-end tests install what they need
# (workerd from npm, boto3 and the AWS CLI from PyPI) under target/ on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

step "cargo test"
cargo test --workspace
