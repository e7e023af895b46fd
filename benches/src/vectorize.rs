//! Quick Vectorize figures, with hnswlib (from PyPI) measured in the same run on the same
//! vectors and parameters.
//!
//! Data: `BINDERY_VECTORIZE_N` (default 100,000) clustered, seeded vectors of 768 dimensions
//! (200 clusters, each a 16-dimensional random subspace around a random centre, plus noise),
//! 1,000 queries drawn the same way, cosine metric, M = 16, ef_construction = 200. Ground
//! truth is an exact scan. Every vector carries `{"bucket": b}` with `b` uniform in 0..100,
//! so `{"bucket": 7}` passes 1% of the vectors and `{"bucket": {"$lt": 10}}` passes 10%.
//!
//! Bindery loads through the public `upsert` API (1,000 vectors per durable call, linking on
//! 2 threads); hnswlib builds with `add_items` on all cores. Queries run one at a time on one
//! thread (hnswlib: one `knn_query` over all queries with `num_threads=1`). `ef_search` is
//! swept; the reported recall is the first setting reaching 0.95, and `hnswlib.qps` is
//! hnswlib's speed at that same recall (interpolated between its sweep points).
//!
//! hnswlib is installed by this benchmark into a virtual environment under the target folder
//! (`python3 -m venv`, `pip install hnswlib numpy`); without Python or the package index the
//! hnswlib lines say so and the ratios are skipped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use bindery_core::vectorize::{
    DistanceMetric, IndexConfig, MetadataType, QueryOptions, Vector, VectorIndex, Vectorize,
};
use bindery_vectorize::serde_json::{Value, json};
use bindery_vectorize::{VectorizeAccount, VectorizeIndex};

use crate::disk;
use crate::report::{figure, ratio};

const DIM: usize = 768;
const CLUSTERS: usize = 200;
const LATENT: usize = 16;
const QUERIES: usize = 1000;
const K: usize = 10;
const EFS: [usize; 10] = [10, 16, 24, 32, 48, 64, 96, 128, 192, 256];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn gauss(&mut self) -> f32 {
        let (u, v) = (self.unit(), self.unit());
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    }
}

struct Data {
    base: Vec<f32>,
    queries: Vec<f32>,
    buckets: Vec<u32>,
}

fn generate(n: usize) -> Data {
    let mut rng = Rng(0x5EED_0768);
    let centres: Vec<f32> = (0..CLUSTERS * DIM).map(|_| rng.gauss()).collect();
    let bases: Vec<f32> = (0..CLUSTERS * DIM * LATENT)
        .map(|_| rng.gauss() * 0.35)
        .collect();
    let draw = |rng: &mut Rng, out: &mut Vec<f32>| {
        let c = (rng.next() % CLUSTERS as u64) as usize;
        let z: Vec<f32> = (0..LATENT).map(|_| rng.gauss()).collect();
        for d in 0..DIM {
            let b = &bases[(c * DIM + d) * LATENT..(c * DIM + d + 1) * LATENT];
            let latent: f32 = b.iter().zip(&z).map(|(x, y)| x * y).sum();
            out.push(centres[c * DIM + d] + latent + rng.gauss() * 0.1);
        }
    };
    let mut base = Vec::with_capacity(n * DIM);
    for _ in 0..n {
        draw(&mut rng, &mut base);
    }
    let mut queries = Vec::with_capacity(QUERIES * DIM);
    for _ in 0..QUERIES {
        draw(&mut rng, &mut queries);
    }
    let buckets = (0..n).map(|_| (rng.next() % 100) as u32).collect();
    Data {
        base,
        queries,
        buckets,
    }
}

fn normalized(v: &[f32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(v.len());
    for row in v.chunks(DIM) {
        let norm = row
            .iter()
            .map(|x| x * x)
            .sum::<f32>()
            .sqrt()
            .max(f32::MIN_POSITIVE);
        out.extend(row.iter().map(|x| x / norm));
    }
    out
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    for (x, y) in a.chunks_exact(16).zip(b.chunks_exact(16)) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum()
}

/// Exact top-10 ids per query: over all vectors, the 1% set and the 10% set.
fn ground_truth(data: &Data) -> [Vec<Vec<u32>>; 3] {
    let base = normalized(&data.base);
    let queries = normalized(&data.queries);
    let n = data.buckets.len();
    let per_query = |qi: usize| -> [Vec<u32>; 3] {
        let q = &queries[qi * DIM..(qi + 1) * DIM];
        let mut tops: [Vec<(f32, u32)>; 3] = Default::default();
        for i in 0..n {
            let s = -dot(q, &base[i * DIM..(i + 1) * DIM]);
            let b = data.buckets[i];
            for (t, pass) in [(0, true), (1, b == 7), (2, b < 10)] {
                if pass {
                    let top = &mut tops[t];
                    if top.len() < K || s < top[K - 1].0 {
                        let at = top.partition_point(|x| x.0 <= s);
                        top.insert(at, (s, i as u32));
                        top.truncate(K);
                    }
                }
            }
        }
        tops.map(|t| t.into_iter().map(|x| x.1).collect())
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut results: Vec<[Vec<u32>; 3]> = vec![Default::default(); QUERIES];
    std::thread::scope(|s| {
        for (t, chunk) in results.chunks_mut(QUERIES.div_ceil(threads)).enumerate() {
            let per_query = &per_query;
            s.spawn(move || {
                let start = t * QUERIES.div_ceil(threads);
                for (j, slot) in chunk.iter_mut().enumerate() {
                    *slot = per_query(start + j);
                }
            });
        }
    });
    let mut out: [Vec<Vec<u32>>; 3] = Default::default();
    for r in results {
        for (t, ids) in r.into_iter().enumerate() {
            out[t].push(ids);
        }
    }
    out
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// (recall@10, queries per second) for one setting.
async fn measure(
    index: &VectorizeIndex,
    data: &Data,
    truth: &[Vec<u32>],
    filter: Option<Value>,
) -> (f64, f64) {
    let mut hits = 0usize;
    let mut wanted = 0usize;
    let start = Instant::now();
    for (qi, want) in truth.iter().enumerate() {
        let q = &data.queries[qi * DIM..(qi + 1) * DIM];
        let o = QueryOptions {
            top_k: Some(K),
            filter: filter.clone(),
            ..Default::default()
        };
        let r = index.query(q, o).await.expect("query");
        let got: Vec<u32> = r.matches.iter().filter_map(|m| m.id.parse().ok()).collect();
        hits += want.iter().filter(|w| got.contains(w)).count();
        wanted += want.len();
    }
    let qps = truth.len() as f64 / start.elapsed().as_secs_f64();
    (hits as f64 / wanted.max(1) as f64, qps)
}

const HNSWLIB_SCRIPT: &str = r#"
import json, sys, time
import numpy as np
import hnswlib

folder, dim, n, nq, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
base = np.fromfile(folder + "/base.f32", dtype=np.float32).reshape(n, dim)
queries = np.fromfile(folder + "/queries.f32", dtype=np.float32).reshape(nq, dim)
truth = np.fromfile(folder + "/truth.u32", dtype=np.uint32).reshape(nq, 10)
index = hnswlib.Index(space="cosine", dim=dim)
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    cmd = line.split()
    if not cmd or cmd[0] == "quit":
        break
    if cmd[0] == "build":
        index.init_index(max_elements=n, ef_construction=200, M=16, random_seed=100)
        index.set_num_threads(threads)
        start = time.perf_counter()
        index.add_items(base, np.arange(n))
        print(json.dumps({"build_s": time.perf_counter() - start}), flush=True)
    elif cmd[0] == "query":
        ef = int(cmd[1])
        index.set_ef(ef)
        start = time.perf_counter()
        labels, _ = index.knn_query(queries, k=10, num_threads=1)
        elapsed = time.perf_counter() - start
        hits = sum(len(set(labels[i].tolist()) & set(truth[i].tolist())) for i in range(nq))
        print(json.dumps({"ef": ef, "recall": hits / (10.0 * nq), "qps": nq / elapsed}), flush=True)
"#;

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// A virtual environment with hnswlib and numpy, created on first use.
fn hnswlib_python() -> Result<PathBuf, String> {
    let venv = std::env::current_dir()
        .map_err(|e| e.to_string())?
        .join(target_dir())
        .join("bench-venv");
    let python = venv.join("bin").join("python");
    let ready = Command::new(&python)
        .args(["-c", "import hnswlib, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ready {
        return Ok(python);
    }
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .map_err(|e| format!("python3 -m venv: {e}"))?;
    if !made.success() {
        return Err("python3 -m venv failed".into());
    }
    let pip = Command::new(venv.join("bin").join("pip"))
        .args(["install", "--quiet", "hnswlib", "numpy"])
        .status()
        .map_err(|e| format!("pip: {e}"))?;
    if !pip.success() {
        return Err("pip install hnswlib numpy failed".into());
    }
    Ok(python)
}

fn write_f32(path: &Path, v: &[f32]) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    for x in v {
        f.write_all(&x.to_le_bytes()).expect("write");
    }
    f.flush().expect("flush");
}

/// Best of `REPEATS` runs: the machine is shared, and the best run is the one least disturbed.
const REPEATS: usize = 3;

async fn measure_best(
    index: &VectorizeIndex,
    data: &Data,
    truth: &[Vec<u32>],
    filter: Option<Value>,
) -> (f64, f64) {
    let mut best = (0.0, 0.0);
    for _ in 0..REPEATS {
        let (r, q) = measure(index, data, truth, filter.clone()).await;
        best = (r, f64::max(best.1, q));
    }
    best
}

/// A sweep point: (ef_search, recall@10, QPS).
type Point = (usize, f64, f64);

/// The first sweep point reaching 0.95 recall (or the last one).
async fn filtered_sweep(
    index: &VectorizeIndex,
    data: &Data,
    truth: &[Vec<u32>],
    filter: Value,
    label: &str,
) -> Point {
    let mut last = (0, 0.0, 0.0);
    for ef in EFS {
        index.set_ef_search(ef);
        let (recall, qps) = measure_best(index, data, truth, Some(filter.clone())).await;
        println!("# bindery {label}: ef_search {ef}: recall@10 {recall:.4}, {qps:.0} QPS");
        last = (ef, recall, qps);
        if recall >= 0.95 {
            break;
        }
    }
    last
}

/// hnswlib in a Python process that answers `build` and `query EF` commands, one JSON line
/// each, so that its measurements interleave with Bindery's.
struct Hnswlib {
    child: std::process::Child,
    out: std::io::BufReader<std::process::ChildStdout>,
}

impl Hnswlib {
    fn start(dir: &Path, data: &Data, truth: &[Vec<u32>]) -> Result<Self, String> {
        let python = hnswlib_python()?;
        write_f32(&dir.join("base.f32"), &data.base);
        write_f32(&dir.join("queries.f32"), &data.queries);
        let mut ids = Vec::with_capacity(truth.len() * K);
        for t in truth {
            ids.extend((0..K).map(|i| t.get(i).copied().unwrap_or(u32::MAX)));
        }
        let bytes: Vec<u8> = ids.iter().flat_map(|x| x.to_le_bytes()).collect();
        std::fs::write(dir.join("truth.u32"), bytes).map_err(|e| e.to_string())?;
        let script = dir.join("hnswlib_bench.py");
        std::fs::write(&script, HNSWLIB_SCRIPT).map_err(|e| e.to_string())?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut child = Command::new(python)
            .arg(&script)
            .arg(dir)
            .args([
                DIM.to_string(),
                data.buckets.len().to_string(),
                QUERIES.to_string(),
                threads.to_string(),
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("running hnswlib: {e}"))?;
        let out = std::io::BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut me = Self { child, out };
        me.reply()?;
        Ok(me)
    }

    fn reply(&mut self) -> Result<Value, String> {
        use std::io::BufRead;
        let mut line = String::new();
        self.out.read_line(&mut line).map_err(|e| e.to_string())?;
        bindery_vectorize::serde_json::from_str(&line)
            .map_err(|e| format!("hnswlib answered {line:?}: {e}"))
    }

    fn ask(&mut self, cmd: &str) -> Result<Value, String> {
        let stdin = self.child.stdin.as_mut().ok_or("no stdin")?;
        writeln!(stdin, "{cmd}").map_err(|e| e.to_string())?;
        stdin.flush().map_err(|e| e.to_string())?;
        self.reply()
    }

    fn build_s(&mut self) -> Result<f64, String> {
        self.ask("build")?
            .get("build_s")
            .and_then(Value::as_f64)
            .ok_or_else(|| "no build_s".to_owned())
    }

    /// (recall, best QPS of `REPEATS`).
    fn query(&mut self, ef: usize) -> Result<(f64, f64), String> {
        let mut best = (0.0, 0.0);
        for _ in 0..REPEATS {
            let v = self.ask(&format!("query {ef}"))?;
            let r = v.get("recall").and_then(Value::as_f64).unwrap_or(0.0);
            let q = v.get("qps").and_then(Value::as_f64).unwrap_or(0.0);
            best = (r, f64::max(best.1, q));
        }
        Ok(best)
    }
}

impl Drop for Hnswlib {
    fn drop(&mut self) {
        let _ = self.ask("quit");
        let _ = self.child.wait();
    }
}

/// hnswlib's QPS at `recall`, interpolated between the sweep points that bracket it.
fn qps_at(points: &[Point], recall: f64) -> Option<f64> {
    let above = points.iter().position(|p| p.1 >= recall)?;
    if above == 0 {
        return Some(points[0].2);
    }
    let (lo, hi) = (points[above - 1], points[above]);
    let t = (recall - lo.1) / (hi.1 - lo.1).max(1e-9);
    Some(lo.2 + t * (hi.2 - lo.2))
}

async fn open_bench_index(root: &Path) -> (VectorizeAccount, VectorizeIndex) {
    let account = VectorizeAccount::open(root).await.expect("open account");
    let index = account.index_handle("bench").await.expect("index");
    (account, index)
}

async fn run_async(dir: &Path, data: &Data, truth: &[Vec<Vec<u32>>; 3]) {
    let n = data.buckets.len();
    let mut peer = match Hnswlib::start(dir, data, &truth[0]) {
        Ok(p) => Some(p),
        Err(e) => {
            println!("hnswlib: unavailable ({e}); ratios skipped");
            None
        }
    };

    // Build: Bindery through its durable upsert API, then hnswlib's add_items.
    let root = dir.join("vectorize");
    let account = VectorizeAccount::open(&root).await.expect("open account");
    account
        .create_index("bench", IndexConfig::new(DIM, DistanceMetric::Cosine))
        .await
        .expect("create index");
    drop(account);
    let (account, index) = open_bench_index(&root).await;
    index
        .create_metadata_index("bucket", MetadataType::Number)
        .await
        .expect("metadata index");
    let start = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let batch: Vec<Vector> = chunk
            .iter()
            .map(|&i| {
                Vector::new(i.to_string(), data.base[i * DIM..(i + 1) * DIM].to_vec())
                    .with_metadata(json!({"bucket": data.buckets[i]}))
            })
            .collect();
        index.upsert(batch).await.expect("upsert");
    }
    let build_s = start.elapsed().as_secs_f64();
    figure("vectorize.build_s", build_s, "s");
    let peer_build = peer.as_mut().map(|p| p.build_s());
    match &peer_build {
        Some(Ok(b)) => figure("hnswlib.build_s", *b, "s"),
        Some(Err(e)) => println!("hnswlib.build_s: failed ({e})"),
        None => {}
    }

    // Unfiltered sweep, interleaved with hnswlib at the same ef.
    let mut ours: Option<Point> = None;
    let mut theirs: Vec<Point> = Vec::new();
    for ef in EFS {
        index.set_ef_search(ef);
        let (recall, qps) = measure_best(&index, data, &truth[0], None).await;
        println!("# bindery unfiltered: ef_search {ef}: recall@10 {recall:.4}, {qps:.0} QPS");
        if ours.is_none() && recall >= 0.95 {
            ours = Some((ef, recall, qps));
        }
        if let Some(p) = peer.as_mut() {
            match p.query(ef) {
                Ok((r, q)) => {
                    println!("# hnswlib: ef {ef}: recall@10 {r:.4}, {q:.0} QPS");
                    theirs.push((ef, r, q));
                }
                Err(e) => println!("# hnswlib query failed: {e}"),
            }
        }
        let peer_done =
            peer.is_none() || ours.is_some_and(|o| theirs.last().is_some_and(|t| t.1 >= o.1));
        if ours.is_some() && peer_done {
            break;
        }
        if ef == EFS[EFS.len() - 1] && ours.is_none() {
            ours = Some((ef, recall, qps));
        }
    }
    let ours = ours.unwrap_or((0, 0.0, 0.0));
    figure(
        "vectorize.recall_at_10",
        ours.1,
        &format!("(ef_search {})", ours.0),
    );
    figure("vectorize.qps", ours.2, "queries/s");

    let one = filtered_sweep(&index, data, &truth[1], json!({"bucket": 7}), "1% filter").await;
    let ten = filtered_sweep(
        &index,
        data,
        &truth[2],
        json!({"bucket": {"$lt": 10}}),
        "10% filter",
    )
    .await;
    let stats = index.stats();
    println!(
        "# bindery: {} exact scans, {} graph searches, {} exact fallbacks; SIMD {}",
        stats.exact_queries,
        stats.graph_queries,
        stats.exact_fallbacks,
        bindery_vectorize::simd_level()
    );
    figure(
        "vectorize.filtered_recall_at_10_1pct",
        one.1,
        &format!("(ef_search {})", one.0),
    );
    figure("vectorize.filtered_qps_1pct", one.2, "queries/s");
    figure(
        "vectorize.filtered_recall_at_10_10pct",
        ten.1,
        &format!("(ef_search {})", ten.0),
    );
    figure("vectorize.filtered_qps_10pct", ten.2, "queries/s");

    // Close (writes the snapshot) and reopen.
    let start = Instant::now();
    drop(index);
    drop(account);
    figure(
        "vectorize.close_s",
        start.elapsed().as_secs_f64(),
        "s (writes the graph snapshot)",
    );
    let start = Instant::now();
    let (_account, index) = open_bench_index(&root).await;
    let reopen_s = start.elapsed().as_secs_f64();
    let d = index.describe().await.expect("describe");
    assert_eq!(d.vector_count, n as u64, "vectors after reopen");
    figure("vectorize.reopen_s", reopen_s, "s");
    println!(
        "# bindery: reopened from snapshot: {}",
        index.stats().opened_from_snapshot
    );

    if let Some(qps) = qps_at(&theirs, ours.1) {
        figure(
            "hnswlib.qps",
            qps,
            &format!("queries/s (at recall@10 {:.4})", ours.1),
        );
        ratio("vectorize.qps/hnswlib.qps", ours.2 / qps, ">= 0.8");
    } else if peer.is_some() {
        println!("hnswlib.qps: hnswlib did not reach recall@10 {:.4}", ours.1);
    }
    if let Some(Ok(b)) = peer_build {
        ratio("vectorize.build_s/hnswlib.build_s", build_s / b, "<= 1.5");
    }
    ratio(
        "vectorize.filtered_qps_1pct/vectorize.qps",
        one.2 / ours.2,
        ">= 0.5",
    );
    ratio(
        "vectorize.filtered_qps_10pct/vectorize.qps",
        ten.2 / ours.2,
        ">= 0.5",
    );
    ratio("vectorize.reopen_s/2", reopen_s / 2.0, "< 1");
}

/// Prints the Vectorize figures.
pub fn run() {
    let n: usize = std::env::var("BINDERY_VECTORIZE_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let dir = disk::bench_dir();
    let data = generate(n);
    let truth = ground_truth(&data);
    println!(
        "# vectorize: {n} clustered vectors of {DIM} dimensions, {QUERIES} queries, cosine, M=16, ef_construction=200"
    );
    runtime().block_on(run_async(dir.path(), &data, &truth));
}
