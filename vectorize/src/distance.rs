//! Distance kernels: dot product and squared L2 distance over `f32` slices.
//!
//! The kernels are plain Rust loops over 32-lane chunks with independent accumulators, a
//! shape the compiler vectorizes by itself. Each is compiled three times: for the x86-64
//! baseline (SSE2), for AVX2 with FMA and for AVX-512; the widest one the CPU supports is
//! picked once, at first use. Calling a `#[target_feature]` function is the one unsafe thing
//! in this crate, and it is sound because the feature was detected at run time.
//!
//! Search works with a *distance*, lower is closer, for every metric: cosine and dot-product
//! use the negative dot product (cosine over unit vectors), euclidean the squared L2
//! distance. Scores are derived from it at the end (see [`crate::index`]).
#![allow(unsafe_code)]

use std::sync::LazyLock;

use bindery_core::vectorize::DistanceMetric;

/// Lanes per step: two AVX-512 registers, four AVX2 registers.
const LANES: usize = 32;

/// How a metric measures distance during search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Negative dot product (cosine on normalized vectors, and dot-product).
    NegDot,
    /// Squared L2 distance.
    L2Sq,
}

impl Kind {
    /// The distance kind of a metric.
    pub fn of(metric: DistanceMetric) -> Self {
        match metric {
            DistanceMetric::Euclidean => Kind::L2Sq,
            DistanceMetric::Cosine | DistanceMetric::DotProduct => Kind::NegDot,
        }
    }

    /// Distance between two vectors of equal length.
    #[inline]
    pub fn distance(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Kind::NegDot => -dot(a, b),
            Kind::L2Sq => l2sq(a, b),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    Portable,
}

static LEVEL: LazyLock<Level> = LazyLock::new(detect);

fn detect() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        if std::env::var_os("BINDERY_VECTORIZE_NO_SIMD").is_some() {
            return Level::Portable;
        }
        if is_x86_feature_detected!("avx512f") {
            return Level::Avx512;
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return Level::Avx2;
        }
    }
    Level::Portable
}

/// The instruction set the kernels use: `avx512`, `avx2` or `portable`.
pub fn simd_level() -> &'static str {
    match *LEVEL {
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => "avx512",
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => "avx2",
        Level::Portable => "portable",
    }
}

/// Dot product of two slices of equal length.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    match *LEVEL {
        // SAFETY: `detect` found avx512f on this CPU.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { dot_avx512(a, b) },
        // SAFETY: `detect` found avx2 and fma on this CPU.
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { dot_avx2(a, b) },
        Level::Portable => dot_plain(a, b),
    }
}

/// Squared L2 distance of two slices of equal length.
#[inline]
pub fn l2sq(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    match *LEVEL {
        // SAFETY: `detect` found avx512f on this CPU.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { l2_avx512(a, b) },
        // SAFETY: `detect` found avx2 and fma on this CPU.
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { l2_avx2(a, b) },
        Level::Portable => l2_plain(a, b),
    }
}

/// Hints the CPU to start loading all of `v` into cache, so that the next distance does not
/// stall line by line on memory.
#[inline]
pub fn prefetch(v: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let p = v.as_ptr().cast::<i8>();
        let lines = (v.len() * 4).div_ceil(64);
        for i in 0..lines {
            // SAFETY: prefetching is a hint that never faults, and the address stays inside
            // `v`, computed with wrapping arithmetic.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(i * 64)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
}

#[inline(always)]
fn dot_body_fma(a: &[f32], b: &[f32]) -> f32 {
    let (ca, ra) = a.as_chunks::<LANES>();
    let (cb, rb) = b.as_chunks::<LANES>();
    let mut acc = [0f32; LANES];
    for (x, y) in ca.iter().zip(cb) {
        for i in 0..LANES {
            acc[i] = x[i].mul_add(y[i], acc[i]);
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for (x, y) in ra.iter().zip(rb) {
        s = x.mul_add(*y, s);
    }
    s
}

#[inline(always)]
fn l2_body_fma(a: &[f32], b: &[f32]) -> f32 {
    let (ca, ra) = a.as_chunks::<LANES>();
    let (cb, rb) = b.as_chunks::<LANES>();
    let mut acc = [0f32; LANES];
    for (x, y) in ca.iter().zip(cb) {
        for i in 0..LANES {
            let d = x[i] - y[i];
            acc[i] = d.mul_add(d, acc[i]);
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for (x, y) in ra.iter().zip(rb) {
        let d = x - y;
        s = d.mul_add(d, s);
    }
    s
}

#[inline(always)]
fn dot_plain(a: &[f32], b: &[f32]) -> f32 {
    let (ca, ra) = a.as_chunks::<LANES>();
    let (cb, rb) = b.as_chunks::<LANES>();
    let mut acc = [0f32; LANES];
    for (x, y) in ca.iter().zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

#[inline(always)]
fn l2_plain(a: &[f32], b: &[f32]) -> f32 {
    let (ca, ra) = a.as_chunks::<LANES>();
    let (cb, rb) = b.as_chunks::<LANES>();
    let mut acc = [0f32; LANES];
    for (x, y) in ca.iter().zip(cb) {
        for i in 0..LANES {
            let d = x[i] - y[i];
            acc[i] += d * d;
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for (x, y) in ra.iter().zip(rb) {
        let d = x - y;
        s += d * d;
    }
    s
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    dot_body_fma(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_body_fma(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn l2_avx512(a: &[f32], b: &[f32]) -> f32 {
    l2_body_fma(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn l2_avx2(a: &[f32], b: &[f32]) -> f32 {
    l2_body_fma(a, b)
}

/// Scales `v` to unit length in place; a zero vector stays zero.
pub fn normalize(v: &mut [f32]) {
    let norm = dot(v, v).sqrt();
    if norm > 0.0 {
        for x in v {
            *x /= norm;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
    }

    #[test]
    fn kernels_agree_with_a_naive_sum_for_every_length() {
        for len in [1usize, 3, 31, 32, 33, 64, 100, 768, 1536] {
            let a: Vec<f32> = (0..len)
                .map(|i| ((i * 7 % 13) as f32 - 6.0) / 3.0)
                .collect();
            let b: Vec<f32> = (0..len)
                .map(|i| ((i * 5 % 11) as f32 - 5.0) / 2.0)
                .collect();
            let d = naive_dot(&a, &b);
            assert!(
                (dot(&a, &b) as f64 - d).abs() < 1e-3 * (1.0 + d.abs()),
                "dot {len}"
            );
            assert!((dot_plain(&a, &b) as f64 - d).abs() < 1e-3 * (1.0 + d.abs()));
            let l: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| ((x - y) as f64).powi(2))
                .sum();
            assert!(
                (l2sq(&a, &b) as f64 - l).abs() < 1e-3 * (1.0 + l),
                "l2 {len}"
            );
            assert!((l2_plain(&a, &b) as f64 - l).abs() < 1e-3 * (1.0 + l));
        }
    }

    #[test]
    fn normalize_makes_unit_vectors_and_keeps_zero_vectors() {
        let mut v = vec![3.0, 4.0];
        normalize(&mut v);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        let mut z = vec![0.0; 4];
        normalize(&mut z);
        assert_eq!(z, vec![0.0; 4]);
    }
}
