//! The Merkle tree over the audit chain (RFC 6962 / RFC 9162, SHA-256): a
//! record's leaf is `SHA-256(0x00 ‖ its 32-byte chain hash)`, an interior
//! node `SHA-256(0x01 ‖ left ‖ right)`, the tree of `n` leaves split at the
//! largest power of two below `n`. A checkpoint (its size and root) then
//! commits to every record up to it: a ledger rolled back, cut or forked
//! afterwards no longer has that root at that size.
//!
//! Pure functions over leaf hashes: roots, inclusion and consistency proofs,
//! and their verification, each written after the RFC's definitions (the
//! verifiers after RFC 9162 §2.1.3.2 and §2.1.4.2).

use sha2::{Digest, Sha256};

/// A node of the tree.
pub type Hash = [u8; 32];

/// The root of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// A record's leaf hash from its chain hash.
pub fn leaf_hash(chain_hash: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(chain_hash);
    h.finalize().into()
}

/// A record's leaf hash from its chain hash in hex (as the ledger stores
/// it); `None` for text that is not 64 hex digits.
pub fn leaf_of_hex(chain_hash: &str) -> Option<Hash> {
    from_hex(chain_hash).map(|h| leaf_hash(&h))
}

/// An interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two strictly below `n` (`n` ≥ 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// A tree of two or more leaves split into its left (a complete subtree,
/// the largest power of two below the size) and right parts.
fn halves(leaves: &[Hash]) -> Option<(&[Hash], &[Hash])> {
    if leaves.len() < 2 {
        return None;
    }
    leaves.split_at_checked(split(leaves.len()))
}

/// The root of the tree over `leaves` (already leaf hashes).
pub fn root(leaves: &[Hash]) -> Hash {
    match (leaves, halves(leaves)) {
        ([], _) => empty_root(),
        ([only], _) => *only,
        (_, Some((left, right))) => node_hash(&root(left), &root(right)),
        (_, None) => empty_root(),
    }
}

/// The inclusion proof of leaf `index` in the tree over `leaves` (RFC 6962
/// `PATH`); `None` when the index is outside the tree.
pub fn inclusion_proof(index: usize, leaves: &[Hash]) -> Option<Vec<Hash>> {
    if index >= leaves.len() {
        return None;
    }
    let mut proof = Vec::new();
    path(index, leaves, &mut proof);
    Some(proof)
}

fn path(m: usize, leaves: &[Hash], proof: &mut Vec<Hash>) {
    let Some((left, right)) = halves(leaves) else {
        return;
    };
    if m < left.len() {
        path(m, left, proof);
        proof.push(root(right));
    } else {
        path(m - left.len(), right, proof);
        proof.push(root(left));
    }
}

/// The consistency proof from the tree of the first `old_size` leaves to
/// the tree over all `leaves` (RFC 6962 `PROOF`); `None` unless
/// `0 < old_size ≤ leaves.len()`.
pub fn consistency_proof(old_size: usize, leaves: &[Hash]) -> Option<Vec<Hash>> {
    if old_size == 0 || old_size > leaves.len() {
        return None;
    }
    let mut proof = Vec::new();
    subproof(old_size, leaves, true, &mut proof);
    Some(proof)
}

fn subproof(m: usize, leaves: &[Hash], whole: bool, proof: &mut Vec<Hash>) {
    if m == leaves.len() {
        if !whole {
            proof.push(root(leaves));
        }
        return;
    }
    let Some((left, right)) = halves(leaves) else {
        return;
    };
    if m <= left.len() {
        subproof(m, left, whole, proof);
        proof.push(root(right));
    } else {
        subproof(m - left.len(), right, false, proof);
        proof.push(root(left));
    }
}

/// Whether `proof` shows `leaf` at `index` in a tree of `size` leaves with
/// `root`.
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return false;
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
    snode == 0 && r == *root
}

/// Whether `proof` shows the tree of `old_size` leaves with `old_root` is a
/// prefix of the tree of `new_size` leaves with `new_root`.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old_size == 0 || old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    let mut proof = proof.to_vec();
    // When the old tree is a complete subtree, its root starts the path.
    if old_size.is_power_of_two() {
        proof.insert(0, *old_root);
    }
    let Some((first, rest)) = proof.split_first() else {
        return false;
    };
    let (mut fnode, mut snode) = (old_size - 1, new_size - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if snode == 0 {
            return false;
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
    snode == 0 && fr == *old_root && sr == *new_root
}

/// The right edge of a tree as leaves are appended: the roots of its
/// complete subtrees, largest first (one per set bit of the size). Enough to
/// give the root after each append in O(log n), without the leaves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash>,
}

impl Frontier {
    /// The number of leaves appended.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut node = leaf;
        let mut size = self.size;
        while size & 1 == 1 {
            match self.nodes.pop() {
                Some(left) => node = node_hash(&left, &node),
                None => break,
            }
            size >>= 1;
        }
        self.nodes.push(node);
        self.size += 1;
    }

    /// The root of the tree so far.
    pub fn root(&self) -> Hash {
        let mut nodes = self.nodes.iter().rev();
        let Some(last) = nodes.next() else {
            return empty_root();
        };
        nodes.fold(*last, |right, left| node_hash(left, &right))
    }

    /// `SIZE HEX,HEX,…`, as a note holds it.
    pub fn to_text(&self) -> String {
        let nodes: Vec<String> = self.nodes.iter().map(to_hex).collect();
        format!("{} {}", self.size, nodes.join(","))
    }

    /// Reads [`to_text`](Self::to_text); `None` for anything else, or for
    /// a node count that does not match the size.
    pub fn from_text(text: &str) -> Option<Frontier> {
        let (size, nodes) = text.split_once(' ')?;
        let size: u64 = size.parse().ok()?;
        let nodes: Vec<Hash> = if nodes.is_empty() {
            Vec::new()
        } else {
            nodes.split(',').map(from_hex).collect::<Option<_>>()?
        };
        (nodes.len() == size.count_ones() as usize).then_some(Frontier { size, nodes })
    }
}

/// Lowercase hex.
pub fn to_hex(hash: &Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// 64 hex digits (either case) as a hash.
pub fn from_hex(text: &str) -> Option<Hash> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    let digit = |c: u8| (c as char).to_digit(16);
    for (slot, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let [hi, lo] = pair else {
            return None;
        };
        *slot = u8::try_from(digit(*hi)? * 16 + digit(*lo)?).ok()?;
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// RFC 6962's test leaves (the data each leaf hashes, as in the CT
    /// reference implementations' vectors), hashed as data leaves.
    fn vector_leaves() -> Vec<Hash> {
        let data: [&[u8]; 8] = [
            b"",
            &[0x00],
            &[0x10],
            &[0x20, 0x21],
            &[0x30, 0x31],
            &[0x40, 0x41, 0x42, 0x43],
            &[0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57],
            &[
                0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d,
                0x6e, 0x6f,
            ],
        ];
        data.iter()
            .map(|d| {
                let mut h = Sha256::new();
                h.update([0u8]);
                h.update(d);
                h.finalize().into()
            })
            .collect()
    }

    #[test]
    fn roots_match_the_published_vectors() {
        let leaves = vector_leaves();
        let expected = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        for (n, root_hex) in expected.iter().enumerate() {
            assert_eq!(to_hex(&root(&leaves[..=n])), *root_hex, "size {}", n + 1);
        }
        assert_eq!(
            to_hex(&empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn every_inclusion_and_consistency_proof_verifies_and_no_other_does() {
        let leaves: Vec<Hash> = (0u8..20).map(|i| leaf_hash(&[i; 32])).collect();
        for n in 1..=leaves.len() {
            let tree = &leaves[..n];
            let r = root(tree);
            for m in 0..n {
                let proof = inclusion_proof(m, tree).unwrap();
                assert!(verify_inclusion(m as u64, n as u64, &tree[m], &proof, &r));
                // Another leaf or index does not verify (the size is bound
                // by the signed checkpoint the root comes from).
                let other = leaf_hash(&[99; 32]);
                assert!(!verify_inclusion(m as u64, n as u64, &other, &proof, &r));
                assert!(!verify_inclusion(n as u64, n as u64, &tree[m], &proof, &r));
                if n > 1 {
                    let wrong = (m + 1) % n;
                    assert!(!verify_inclusion(
                        wrong as u64,
                        n as u64,
                        &tree[m],
                        &proof,
                        &r
                    ));
                }
            }
            for m in 1..=n {
                let proof = consistency_proof(m, tree).unwrap();
                let old = root(&tree[..m]);
                assert!(
                    verify_consistency(m as u64, n as u64, &old, &r, &proof),
                    "{m} → {n}"
                );
                // A forked old tree is not consistent with this one.
                let mut forked = tree[..m].to_vec();
                forked[m - 1] = leaf_hash(&[200; 32]);
                assert!(!verify_consistency(
                    m as u64,
                    n as u64,
                    &root(&forked),
                    &r,
                    &proof
                ));
            }
        }
        assert!(inclusion_proof(3, &leaves[..3]).is_none());
        assert!(consistency_proof(0, &leaves).is_none());
    }

    #[test]
    fn the_frontier_gives_every_root_and_survives_its_text() {
        let leaves: Vec<Hash> = (0u8..70).map(|i| leaf_hash(&[i; 32])).collect();
        let mut frontier = Frontier::default();
        assert_eq!(frontier.root(), empty_root());
        for n in 1..=leaves.len() {
            frontier.push(leaves[n - 1]);
            assert_eq!(frontier.root(), root(&leaves[..n]), "size {n}");
            assert_eq!(
                Frontier::from_text(&frontier.to_text()),
                Some(frontier.clone())
            );
        }
        assert_eq!(
            Frontier::from_text("3 "),
            None,
            "three leaves need two nodes"
        );
        assert_eq!(Frontier::from_text("0 "), Some(Frontier::default()));
    }

    #[test]
    fn hex_round_trips_and_rejects_non_hex() {
        let h = leaf_hash(&[7; 32]);
        assert_eq!(from_hex(&to_hex(&h)), Some(h));
        assert_eq!(from_hex("zz"), None);
        assert_eq!(from_hex(&"g".repeat(64)), None);
    }
}
