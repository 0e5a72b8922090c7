//! Match-key kinds of scheme v1.
//!
//! A kind names what a match key is made of (docs/matching.md has the exact
//! fields). Both sides refer to kinds: nodes derive one token subkey per kind,
//! the coordinator's policy weighs agreement per kind. The short names are
//! stable: they appear in policy files, audit entries and reports.

pub use crate::v1::KeyKind;

/// Every kind of scheme v1, in wire order.
pub const ALL: [KeyKind; 9] = [
    KeyKind::Nino,
    KeyKind::NameDob,
    KeyKind::CanonNameDob,
    KeyKind::InitialSurnameDob,
    KeyKind::PhoneticDob,
    KeyKind::NamePairDob,
    KeyKind::NameDobUnordered,
    KeyKind::NameYobDistrict,
    KeyKind::ForenameDob,
];

/// The version of the match-key scheme these kinds belong to.
pub const SCHEME_VERSION: u32 = 1;

impl KeyKind {
    /// Stable short name (`nino`, `name_dob`, ...), used in policy files,
    /// audit entries, reports and key-derivation contexts.
    pub fn short_name(self) -> &'static str {
        match self {
            KeyKind::Unspecified => "unspecified",
            KeyKind::Nino => "nino",
            KeyKind::NameDob => "name_dob",
            KeyKind::CanonNameDob => "canon_name_dob",
            KeyKind::InitialSurnameDob => "initial_surname_dob",
            KeyKind::PhoneticDob => "phonetic_dob",
            KeyKind::NamePairDob => "name_pair_dob",
            KeyKind::NameDobUnordered => "name_dob_unordered",
            KeyKind::NameYobDistrict => "name_yob_district",
            KeyKind::ForenameDob => "forename_dob",
        }
    }

    /// The kind with this short name, if any (never `Unspecified`).
    pub fn from_short_name(name: &str) -> Option<KeyKind> {
        ALL.into_iter().find(|k| k.short_name() == name)
    }

    /// The kind with this wire number, if it is a real kind.
    pub fn from_wire(n: i32) -> Option<KeyKind> {
        match KeyKind::try_from(n) {
            Ok(KeyKind::Unspecified) | Err(_) => None,
            Ok(k) => Some(k),
        }
    }

    /// The short names of the real kinds among wire numbers (as a message's
    /// `agreeing` field carries them), in order; unknown numbers are left out.
    pub fn names_of_wire(kinds: &[i32]) -> Vec<String> {
        kinds.iter().filter_map(|k| KeyKind::from_wire(*k)).map(|k| k.short_name().to_string()).collect()
    }

    /// Position of this kind in a [`KindSet`] (0 for NINO ... 8).
    pub fn index(self) -> usize {
        (self as i32 - 1).max(0) as usize
    }

    /// What a key of this kind is made of, in a sentence.
    pub fn meaning(self) -> &'static str {
        match self {
            KeyKind::Unspecified => "not a kind",
            KeyKind::Nino => "National Insurance number alone (prefix and digits)",
            KeyKind::NameDob => "first forename, surname and date of birth, as written",
            KeyKind::CanonNameDob => "nickname-canonical first forename, surname and date of birth",
            KeyKind::InitialSurnameDob => "first initial, surname and date of birth",
            KeyKind::PhoneticDob => "Double Metaphone of forename and surname, and date of birth",
            KeyKind::NamePairDob => "forename and surname in either order, and date of birth",
            KeyKind::NameDobUnordered => "forename, surname and date of birth with day and month unordered",
            KeyKind::NameYobDistrict => "forename and surname in either order, year of birth, postcode district",
            KeyKind::ForenameDob => "forename and date of birth (corroboration only)",
        }
    }
}

/// A set of kinds, as a bit mask (bit `k.index()`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct KindSet(pub u16);

impl KindSet {
    /// The empty set.
    pub const EMPTY: KindSet = KindSet(0);

    /// Adds a kind.
    pub fn insert(&mut self, k: KeyKind) {
        self.0 |= 1 << k.index();
    }

    /// Whether the set holds `k`.
    pub fn contains(self, k: KeyKind) -> bool {
        self.0 & (1 << k.index()) != 0
    }

    /// Number of kinds in the set.
    pub fn len(self) -> u32 {
        self.0.count_ones()
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The kinds in the set, in wire order.
    pub fn iter(self) -> impl Iterator<Item = KeyKind> {
        ALL.into_iter().filter(move |k| self.contains(*k))
    }
}

impl FromIterator<KeyKind> for KindSet {
    fn from_iter<I: IntoIterator<Item = KeyKind>>(iter: I) -> Self {
        let mut s = KindSet::EMPTY;
        for k in iter {
            s.insert(k);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_round_trip_and_are_unique() {
        for k in ALL {
            assert_eq!(KeyKind::from_short_name(k.short_name()), Some(k));
            assert_eq!(KeyKind::from_wire(k as i32), Some(k));
        }
        let mut names: Vec<_> = ALL.iter().map(|k| k.short_name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        assert_eq!(KeyKind::from_wire(0), None);
        assert_eq!(KeyKind::from_wire(99), None);
    }

    #[test]
    fn kind_sets() {
        let s: KindSet = [KeyKind::Nino, KeyKind::NameYobDistrict].into_iter().collect();
        assert_eq!(s.len(), 2);
        assert!(s.contains(KeyKind::Nino));
        assert!(!s.contains(KeyKind::NameDob));
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![KeyKind::Nino, KeyKind::NameYobDistrict]);
    }
}
