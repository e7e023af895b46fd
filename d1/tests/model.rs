//! Model test: random batches (some failing on a primary key or a UNIQUE column) against an
//! in-memory model; after every batch the table must equal the model, row for row.

use std::collections::BTreeMap;

use bindery_core::d1::{D1Database, D1DatabaseExt, D1Statement, D1Value};
use bindery_d1::Database;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Insert(i64, i64),
    Update(i64, i64),
    Delete(i64),
    Incr(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0i64..8, 0i64..12).prop_map(|(k, v)| Op::Insert(k, v)),
        2 => (0i64..8, 0i64..12).prop_map(|(k, v)| Op::Update(k, v)),
        2 => (0i64..8).prop_map(Op::Delete),
        1 => (0i64..8).prop_map(Op::Incr),
    ]
}

type Model = BTreeMap<i64, i64>;

/// Applies `op` to the model; `false` when SQLite would reject it.
fn apply(m: &mut Model, op: &Op) -> bool {
    let used = |m: &Model, v: i64, except: Option<i64>| {
        m.iter().any(|(k, x)| *x == v && Some(*k) != except)
    };
    match *op {
        Op::Insert(k, v) => {
            if m.contains_key(&k) || used(m, v, None) {
                return false;
            }
            m.insert(k, v);
        }
        Op::Update(k, v) => {
            if m.contains_key(&k) {
                if used(m, v, Some(k)) {
                    return false;
                }
                m.insert(k, v);
            }
        }
        Op::Delete(k) => {
            m.remove(&k);
        }
        Op::Incr(k) => {
            if let Some(&v) = m.get(&k) {
                if used(m, v + 1, Some(k)) {
                    return false;
                }
                m.insert(k, v + 1);
            }
        }
    }
    true
}

fn stmt(op: &Op) -> D1Statement {
    match *op {
        Op::Insert(k, v) => D1Statement::new("INSERT INTO t (k, v) VALUES (?, ?)").bind([k, v]),
        Op::Update(k, v) => D1Statement::new("UPDATE t SET v = ?2 WHERE k = ?1").bind([k, v]),
        Op::Delete(k) => D1Statement::new("DELETE FROM t WHERE k = ?").bind([k]),
        Op::Incr(k) => D1Statement::new("UPDATE t SET v = v + 1 WHERE k = ?").bind([k]),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_batches_match_the_model(batches in prop::collection::vec(prop::collection::vec(op(), 1..5), 1..25)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let dir = tempfile::tempdir().expect("temp dir");
            let db = Database::open(dir.path().join("model.sqlite")).await.expect("open");
            db.exec("CREATE TABLE t (k INTEGER PRIMARY KEY, v INTEGER NOT NULL UNIQUE)").await.expect("schema");
            let mut model = Model::new();
            for batch in &batches {
                let mut next = model.clone();
                let ok = batch.iter().all(|op| apply(&mut next, op));
                let stmts: Vec<D1Statement> = batch.iter().map(stmt).collect();
                let r = db.batch(&stmts).await;
                assert_eq!(r.is_ok(), ok, "batch {batch:?}: {r:?}");
                if ok {
                    model = next;
                }
                let rows = db.all(&D1Statement::new("SELECT k, v FROM t ORDER BY k")).await.expect("select").rows;
                let want: Vec<Vec<D1Value>> = model.iter().map(|(k, v)| vec![D1Value::from(*k), D1Value::from(*v)]).collect();
                assert_eq!(rows, want, "after {batch:?}");
            }
        });
    }
}
