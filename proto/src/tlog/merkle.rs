//! RFC 6962 / RFC 9162 Merkle trees over SHA-256: hashing, an append-only
//! tree that produces roots and proofs, and proof verification.

use ring::digest::{Context, SHA256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// Why a proof did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The indices or sizes are impossible (leaf beyond the tree, size 0, ...).
    #[error("proof parameters are out of range: {0}")]
    Range(&'static str),
    /// The proof has the wrong number of hashes.
    #[error("proof has the wrong length")]
    Length,
    /// The recomputed root differs from the expected one.
    #[error("proof does not lead to the expected root")]
    Mismatch,
}

fn sha256(parts: &[&[u8]]) -> Hash {
    let mut c = Context::new(&SHA256);
    for p in parts {
        c.update(p);
    }
    let mut h = [0u8; 32];
    h.copy_from_slice(c.finish().as_ref());
    h
}

/// The hash of an empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    sha256(&[])
}

/// The leaf hash of an entry: SHA-256(0x00 || entry).
pub fn leaf_hash(entry: &[u8]) -> Hash {
    sha256(&[&[0u8], entry])
}

/// The hash of an interior node: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    sha256(&[&[1u8], left, right])
}

/// SHA-256(0x01 || left || right) over arbitrary bytes (RFC 6962's
/// HashChildren, as the conformance vectors state it).
pub fn hash_children(left: &[u8], right: &[u8]) -> Hash {
    sha256(&[&[1u8], left, right])
}

/// The largest power of two strictly less than `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// An append-only Merkle tree that keeps the hash of every complete
/// power-of-two subtree (two hashes per leaf), so roots and proofs for any
/// earlier size cost O(log² n) hashes at most.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    /// `levels[l][i]` is the hash of leaves `i << l .. (i + 1) << l`.
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Tree {
        Tree::default()
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Appends a leaf hash; returns its index.
    pub fn push(&mut self, leaf: Hash) -> u64 {
        if self.levels.is_empty() {
            self.levels.push(Vec::new());
        }
        self.levels[0].push(leaf);
        let index = self.size() - 1;
        let mut level = 0;
        while self.levels[level].len().is_multiple_of(2) {
            let n = self.levels[level].len();
            let h = node_hash(&self.levels[level][n - 2], &self.levels[level][n - 1]);
            if self.levels.len() == level + 1 {
                self.levels.push(Vec::new());
            }
            self.levels[level + 1].push(h);
            level += 1;
        }
        index
    }

    /// The leaf hash at `index`.
    pub fn leaf(&self, index: u64) -> Option<Hash> {
        self.levels.first().and_then(|l| l.get(index as usize)).copied()
    }

    /// MTH(D[start:end]) for a range the RFC recursion produces (aligned).
    fn subtree(&self, start: u64, end: u64) -> Hash {
        let n = end - start;
        if n.is_power_of_two() {
            let level = n.trailing_zeros() as usize;
            if start.is_multiple_of(n)
                && let Some(h) = self.levels.get(level).and_then(|l| l.get((start >> level) as usize))
            {
                return *h;
            }
        }
        if n == 1 {
            // unreachable for a consistent tree: a single leaf is always stored
            return self.levels[0][start as usize];
        }
        let k = split(n);
        node_hash(&self.subtree(start, start + k), &self.subtree(start + k, end))
    }

    /// The root of the tree's first `size` leaves.
    pub fn root(&self, size: u64) -> Option<Hash> {
        if size > self.size() {
            return None;
        }
        Some(if size == 0 { empty_root() } else { self.subtree(0, size) })
    }

    /// The inclusion proof of leaf `index` in the tree of `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Option<Vec<Hash>> {
        if index >= size || size > self.size() {
            return None;
        }
        let mut proof = Vec::new();
        self.path(index, 0, size, &mut proof);
        Some(proof)
    }

    fn path(&self, m: u64, start: u64, end: u64, out: &mut Vec<Hash>) {
        let n = end - start;
        if n <= 1 {
            return;
        }
        let k = split(n);
        if m < k {
            self.path(m, start, start + k, out);
            out.push(self.subtree(start + k, end));
        } else {
            self.path(m - k, start + k, end, out);
            out.push(self.subtree(start, start + k));
        }
    }

    /// The consistency proof from size `m` to size `n`.
    pub fn consistency_proof(&self, m: u64, n: u64) -> Option<Vec<Hash>> {
        if m == 0 || m > n || n > self.size() {
            return None;
        }
        let mut proof = Vec::new();
        self.subproof(m, 0, n, true, &mut proof);
        Some(proof)
    }

    fn subproof(&self, m: u64, start: u64, end: u64, whole: bool, out: &mut Vec<Hash>) {
        let n = end - start;
        if m == n {
            if !whole {
                out.push(self.subtree(start, end));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            self.subproof(m, start, start + k, whole, out);
            out.push(self.subtree(start + k, end));
        } else {
            self.subproof(m - k, start + k, end, false, out);
            out.push(self.subtree(start, start + k));
        }
    }
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &[u8]) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::Range("leaf index is not below the tree size"));
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(ProofError::Length);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::Length);
    }
    if r.as_slice() != root {
        return Err(ProofError::Mismatch);
    }
    Ok(())
}

/// Verifies a consistency proof between two tree sizes (RFC 9162 §2.1.4.2).
/// Equal sizes need an empty proof and equal roots; size 0 is refused.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    proof: &[Hash],
    root1: &[u8],
    root2: &[u8],
) -> Result<(), ProofError> {
    if size1 == 0 {
        return Err(ProofError::Range("the first tree size is 0"));
    }
    if size1 > size2 {
        return Err(ProofError::Range("the first tree is larger than the second"));
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(ProofError::Length);
        }
        return if root1 == root2 { Ok(()) } else { Err(ProofError::Mismatch) };
    }
    if proof.is_empty() {
        return Err(ProofError::Length);
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if size1.is_power_of_two() {
        path.push(root1.try_into().map_err(|_| ProofError::Mismatch)?);
    }
    path.extend_from_slice(proof);
    let (mut fnode, mut snode) = (size1 - 1, size2 - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let mut fr = path[0];
    let mut sr = path[0];
    for c in &path[1..] {
        if snode == 0 {
            return Err(ProofError::Length);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::Length);
    }
    if fr.as_slice() != root1 || sr.as_slice() != root2 {
        return Err(ProofError::Mismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(n: u64) -> Tree {
        let mut t = Tree::new();
        for i in 0..n {
            t.push(leaf_hash(&i.to_le_bytes()));
        }
        t
    }

    /// Reference MTH by the RFC's definition, straight from leaves.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn every_root_proof_and_consistency_up_to_70_leaves() {
        let t = tree(70);
        let leaves: Vec<Hash> = (0..70).map(|i| t.leaf(i).unwrap()).collect();
        for n in 0..=70u64 {
            let root = t.root(n).unwrap();
            assert_eq!(root, mth(&leaves[..n as usize]), "root {n}");
            for i in 0..n {
                let p = t.inclusion_proof(i, n).unwrap();
                verify_inclusion(&leaves[i as usize], i, n, &p, &root).unwrap();
                let wrong = leaf_hash(b"not a leaf");
                assert_eq!(verify_inclusion(&wrong, i, n, &p, &root), Err(ProofError::Mismatch));
            }
            for m in 1..=n {
                let p = t.consistency_proof(m, n).unwrap();
                verify_consistency(m, n, &p, &t.root(m).unwrap(), &root).unwrap();
                if m < n {
                    assert!(verify_consistency(m, n, &p, &root, &root).is_err());
                }
            }
        }
        assert!(t.root(71).is_none());
        assert!(t.inclusion_proof(5, 5).is_none());
        assert!(t.consistency_proof(0, 5).is_none());
    }
}
