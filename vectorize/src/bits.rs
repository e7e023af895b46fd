//! A fixed-size bit set over node numbers.

/// A set of node numbers below a fixed bound.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Bits {
    words: Vec<u64>,
}

impl Bits {
    /// An empty set over `n` nodes.
    pub fn new(n: usize) -> Self {
        Self {
            words: vec![0; n.div_ceil(64)],
        }
    }

    /// Grows the bound to `n` nodes (new nodes absent).
    pub fn grow(&mut self, n: usize) {
        let w = n.div_ceil(64);
        if self.words.len() < w {
            self.words.resize(w, 0);
        }
    }

    /// Adds `i`.
    #[inline]
    pub fn set(&mut self, i: u32) {
        let i = i as usize;
        if let Some(w) = self.words.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }

    /// Removes `i`.
    #[inline]
    pub fn clear(&mut self, i: u32) {
        let i = i as usize;
        if let Some(w) = self.words.get_mut(i / 64) {
            *w &= !(1 << (i % 64));
        }
    }

    /// Adds every node in `list`.
    pub fn set_all(&mut self, list: &[u32]) {
        for &i in list {
            self.set(i);
        }
    }

    /// Whether `i` is in the set.
    #[inline]
    pub fn get(&self, i: u32) -> bool {
        let i = i as usize;
        self.words
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Keeps only nodes also in `other`.
    pub fn and(&mut self, other: &Bits) {
        for (i, w) in self.words.iter_mut().enumerate() {
            *w &= other.words.get(i).copied().unwrap_or(0);
        }
    }

    /// Removes nodes in `other`.
    pub fn and_not(&mut self, other: &Bits) {
        for (w, o) in self.words.iter_mut().zip(&other.words) {
            *w &= !o;
        }
    }

    /// Number of nodes in the set.
    pub fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// The nodes in the set, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let b = w.trailing_zeros();
                w &= w - 1;
                Some((i * 64) as u32 + b)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_operations_match_a_plain_model() {
        let mut a = Bits::new(200);
        a.set_all(&[0, 5, 64, 130, 199]);
        let mut b = Bits::new(200);
        b.set_all(&[5, 130, 150]);
        let mut and = a.clone();
        and.and(&b);
        assert_eq!(and.iter().collect::<Vec<_>>(), vec![5, 130]);
        a.and_not(&b);
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![0, 64, 199]);
        assert_eq!(a.count(), 3);
        assert!(a.get(199) && !a.get(5) && !a.get(10_000));
        a.clear(199);
        assert!(!a.get(199) && a.get(64));
    }
}
