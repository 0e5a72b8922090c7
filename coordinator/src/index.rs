//! A compact multimap from token keys to 32-bit ids: the coordinator's
//! in-memory index of national and roster tokens. Pure data structure.
//!
//! Tokens are peppered BLAKE3 outputs, so they are uniformly random: the
//! index keeps the first 8 bytes of each, which also serve as the hash
//! (64 bits: with 3·10^8 national tokens, 7·10^6 roster tokens and every
//! national token probing the roster index, the expected number of false
//! agreements over a whole national load is about 10^-4, and one would
//! only add a kind to a pair's evidence). A slot is 12 bytes (the 8-byte key
//! as two words and a 4-byte id) in one flat array with linear probing in
//! Robin Hood order: along a run, entries are ordered by home slot, so a lookup
//! stops as soon as it passes the block of its own home slot (a miss costs
//! about as much as a hit, two or three slots, one cache line). The capacity
//! is not a power of two: a token's home slot is the high half of
//! `hash * capacity`, so the table can grow by half and sit between 57% and
//! 85% full, 14 to 21 bytes per token. Removal shifts later entries back
//! (no tombstones), so a long-running coordinator's table does not decay.
//!
//! A key may map to several ids (a common name and date of birth held by
//! several records): lookups return every id and the count.

/// A token as the index keeps it: 8 bytes of a peppered token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IndexKey {
    /// The first 8 bytes (little endian): the key and its hash.
    pub hi: u64,
}

impl IndexKey {
    /// Takes the first 8 bytes of a (peppered) token.
    pub fn from_bytes(t: &[u8]) -> IndexKey {
        let mut hi = [0u8; 8];
        hi.copy_from_slice(&t[..8]);
        IndexKey { hi: u64::from_le_bytes(hi) }
    }
}

/// The one id that cannot be stored: slots keep `id + 1`, so that an
/// all-zero slot is empty.
const EMPTY: u32 = u32::MAX;

/// A slot: the key as two 32-bit words and `id + 1` (so that a slot is 12
/// bytes, not 16 with a 64-bit field's alignment, and **all zero when
/// empty**: a new table is one zeroed allocation, whose pages the kernel
/// hands out already zeroed as they are first touched, instead of a pass
/// writing an empty marker into every slot: about 9 s for the 4 GiB
/// national table at 13M records).
type Slot = [u32; 3];

#[inline]
fn slot(hi: u64, id: u32) -> Slot {
    [hi as u32, (hi >> 32) as u32, id.wrapping_add(1)]
}

#[inline]
fn slot_hi(s: &Slot) -> u64 {
    u64::from(s[0]) | (u64::from(s[1]) << 32)
}

#[inline]
fn slot_id(s: &Slot) -> u32 {
    s[2].wrapping_sub(1)
}

#[inline]
fn is_empty(s: &Slot) -> bool {
    s[2] == 0
}

const EMPTY_SLOT: Slot = [0; 3];

/// A zeroed table of `n` slots (`vec!` of an all-zero array allocates
/// zeroed memory: no pass over it).
fn empty_slots(n: usize) -> Vec<Slot> {
    vec![[0u32; 3]; n]
}

/// The multimap.
pub struct TokenIndex {
    slots: Vec<Slot>,
    len: usize,
}

impl Default for TokenIndex {
    fn default() -> Self {
        TokenIndex::with_capacity(0)
    }
}

const MAX_LOAD: f64 = 0.85;
const TARGET_LOAD: f64 = 0.75;

impl TokenIndex {
    /// An index sized for `n` entries without growing.
    pub fn with_capacity(n: usize) -> TokenIndex {
        let cap = ((n as f64 / TARGET_LOAD) as usize).max(16);
        TokenIndex { slots: empty_slots(cap), len: 0 }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of memory held by the table.
    pub fn memory_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
    }

    #[inline]
    fn home(&self, hi: u64) -> usize {
        ((u128::from(hi) * self.slots.len() as u128) >> 64) as usize
    }

    #[inline]
    fn next(&self, i: usize) -> usize {
        if i + 1 == self.slots.len() { 0 } else { i + 1 }
    }

    /// Makes room for `extra` more entries.
    pub fn reserve(&mut self, extra: usize) {
        let want = self.len + extra;
        if (want as f64) <= self.slots.len() as f64 * MAX_LOAD {
            return;
        }
        let new_cap = ((want as f64 / TARGET_LOAD) as usize).max(self.slots.len() * 3 / 2);
        let old = std::mem::replace(&mut self.slots, empty_slots(new_cap));
        self.len = 0;
        for s in old.into_iter().filter(|s| !is_empty(s)) {
            self.insert_unchecked(s);
        }
    }

    /// How far slot `i` holds its entry from that entry's home.
    #[inline]
    fn distance(&self, i: usize, hi: u64) -> usize {
        let h = self.home(hi);
        if i >= h { i - h } else { i + self.slots.len() - h }
    }

    fn insert_unchecked(&mut self, mut s: Slot) {
        let mut i = self.home(slot_hi(&s));
        let mut dist = 0usize;
        loop {
            let cur = self.slots[i];
            if is_empty(&cur) {
                self.slots[i] = s;
                self.len += 1;
                return;
            }
            // Robin Hood: an entry closer to its home than we are to ours
            // gives up its slot and moves on, keeping runs ordered by home.
            let cd = self.distance(i, slot_hi(&cur));
            if cd < dist {
                self.slots[i] = s;
                s = cur;
                dist = cd;
            }
            i = self.next(i);
            dist += 1;
        }
    }

    /// Adds `key → id`. Adding the same pair twice stores it twice; callers
    /// remove a subject's or record's old tokens before adding new ones.
    pub fn insert(&mut self, key: IndexKey, id: u32) {
        debug_assert!(id != EMPTY);
        self.reserve(1);
        self.insert_unchecked(slot(key.hi, id));
    }

    /// Removes one `key → id` entry. Returns whether it was there.
    pub fn remove(&mut self, key: IndexKey, id: u32) -> bool {
        let mut i = self.home(key.hi);
        let mut dist = 0usize;
        loop {
            let s = self.slots[i];
            if is_empty(&s) || self.distance(i, slot_hi(&s)) < dist {
                return false;
            }
            if slot_hi(&s) == key.hi && slot_id(&s) == id {
                break;
            }
            i = self.next(i);
            dist += 1;
        }
        // Backward shift: pull the rest of the run one slot closer to home.
        loop {
            let j = self.next(i);
            let s = self.slots[j];
            if is_empty(&s) || self.distance(j, slot_hi(&s)) == 0 {
                break;
            }
            self.slots[i] = s;
            i = j;
        }
        self.slots[i] = EMPTY_SLOT;
        self.len -= 1;
        true
    }

    /// Calls `f(id)` for every id stored under `key`; returns how many.
    #[inline]
    pub fn for_each(&self, key: IndexKey, mut f: impl FnMut(u32)) -> u32 {
        let h = self.home(key.hi);
        let mut i = h;
        let mut dist = 0usize;
        let mut n = 0;
        loop {
            let s = &self.slots[i];
            if is_empty(s) {
                return n;
            }
            let sh = self.home(slot_hi(s));
            let sd = if i >= sh { i - sh } else { i + self.slots.len() - sh };
            if sd < dist {
                return n;
            }
            if slot_hi(s) == key.hi {
                f(slot_id(s));
                n += 1;
            }
            i = self.next(i);
            dist += 1;
        }
    }

    /// How many ids are stored under `key`.
    pub fn count(&self, key: IndexKey) -> u32 {
        self.for_each(key, |_| {})
    }

    /// Touches the home slot of every key, so that the cache misses of a
    /// batch of lookups overlap instead of queueing one after another.
    /// Lookups right after this find their slots in cache.
    #[inline]
    pub fn warm<'a>(&self, keys: impl Iterator<Item = &'a IndexKey>) {
        let mut acc = 0u64;
        for k in keys {
            acc ^= u64::from(self.slots[self.home(k.hi)][0]);
        }
        std::hint::black_box(acc);
    }

    /// Counts for many keys, in order, warming slots a batch at a time.
    pub fn count_many(&self, keys: &[IndexKey], out: &mut Vec<u32>) {
        out.clear();
        for chunk in keys.chunks(16) {
            self.warm(chunk.iter());
            out.extend(chunk.iter().map(|k| self.count(*k)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn key(n: u64) -> IndexKey {
        let h = blake3::hash(&n.to_le_bytes());
        IndexKey::from_bytes(h.as_bytes())
    }

    #[test]
    fn insert_lookup_remove() {
        let mut ix = TokenIndex::default();
        for i in 0..10_000u64 {
            ix.insert(key(i), i as u32);
        }
        ix.insert(key(5), 99);
        assert_eq!(ix.len(), 10_001);
        let mut got = Vec::new();
        assert_eq!(ix.for_each(key(5), |id| got.push(id)), 2);
        got.sort();
        assert_eq!(got, vec![5, 99]);
        assert!(ix.remove(key(5), 5));
        assert!(!ix.remove(key(5), 5));
        assert_eq!(ix.count(key(5)), 1);
        for i in 0..10_000u64 {
            if i != 5 {
                assert_eq!(ix.count(key(i)), 1, "{i}");
            }
        }
        assert_eq!(ix.count(key(123_456)), 0);
        let mut counts = Vec::new();
        ix.count_many(&[key(5), key(6), key(123_456)], &mut counts);
        assert_eq!(counts, vec![1, 1, 0]);
        assert!(ix.memory_bytes() / ix.len() <= 32);
    }

    proptest! {
        /// The index behaves as a multiset of (key, id) pairs under any
        /// sequence of inserts and removes, including on a tiny table where
        /// runs wrap around the end.
        #[test]
        fn behaves_like_a_multiset(ops in proptest::collection::vec((any::<bool>(), 0u64..40, 0u32..4), 0..400)) {
            let mut ix = TokenIndex::with_capacity(0);
            let mut model: HashMap<(u64, u32), usize> = HashMap::new();
            for (add, k, id) in ops {
                if add {
                    ix.insert(key(k), id);
                    *model.entry((k, id)).or_default() += 1;
                } else {
                    let present = model.get(&(k, id)).copied().unwrap_or(0) > 0;
                    prop_assert_eq!(ix.remove(key(k), id), present);
                    if present {
                        *model.get_mut(&(k, id)).unwrap() -= 1;
                    }
                }
                prop_assert_eq!(ix.len(), model.values().sum::<usize>());
            }
            for k in 0..40u64 {
                let mut got: Vec<u32> = Vec::new();
                ix.for_each(key(k), |id| got.push(id));
                got.sort();
                let mut want: Vec<u32> = model.iter().filter(|((mk, _), n)| *mk == k && **n > 0)
                    .flat_map(|((_, id), n)| std::iter::repeat_n(*id, *n)).collect();
                want.sort();
                prop_assert_eq!(got, want);
            }
        }
    }
}
