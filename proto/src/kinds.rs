//! Match-key kinds of scheme v2, and what agreement of each shows about the
//! five identity fields.
//!
//! A kind names what a match key is made of (docs/matching.md has the exact
//! fields and an entropy estimate for each). Nodes derive one token subkey
//! per kind; the coordinator turns the set of kinds that agree for a pair
//! into a *level* per field ([`Field`], [`Level`]) and weighs those. The short
//! names are stable: they appear in audit entries, reports and key-derivation
//! contexts.
//!
//! Each kind *implies* a minimum level for each field it contains
//! ([`KeyKind::implies`]): `name_dob` agreeing means forename, surname and
//! date of birth all agree exactly. The kinds are chosen so that any single
//! field error, and most pairs of errors, still leave a kind that agrees, and
//! so that a field's disagreement can be seen when enough of the others
//! agree (see `coordinator/src/policy.rs`).

pub use crate::v1::KeyKind;

/// Every kind of scheme v2, in wire order. `name_yob_district` is retired:
/// nodes no longer form it (`name_district` holds the same names and
/// district without the year), but a coordinator still reads it from a side
/// that has not sent again since, so it keeps its place.
pub const ALL: [KeyKind; 22] = [
    KeyKind::Nino,
    KeyKind::NinoHeadYob,
    KeyKind::NinoTailYob,
    KeyKind::NinoDigitsBirthday,
    KeyKind::NameDob,
    KeyKind::ForenamePartSurnameDob,
    KeyKind::SurnamePartForenameDob,
    KeyKind::NameMd,
    KeyKind::PhoneticYm,
    KeyKind::NameYob,
    KeyKind::NamePostcode,
    KeyKind::NameYobDistrict,
    KeyKind::BirthdayPostcode,
    KeyKind::SurnamePostcode,
    KeyKind::ForenamePostcode,
    KeyKind::ForenameDob,
    KeyKind::SurnameDob,
    KeyKind::InitialsDob,
    KeyKind::ForenameInitialSurnameMd,
    KeyKind::InitialsPostcode,
    KeyKind::ForenameSurnamePartMd,
    KeyKind::NameDistrict,
];

/// Kinds nodes no longer form (see [`ALL`]).
pub const RETIRED: [KeyKind; 1] = [KeyKind::NameYobDistrict];

/// Most name variants one identity keeps (primary name, surname parts,
/// previous surnames, aliases); a node reports and ignores the rest.
pub const MAX_NAMES: usize = 12;
/// Most dates of birth one identity keeps.
pub const MAX_DOBS: usize = 4;
/// Most previous postcodes one identity keeps (a roster's address history).
pub const MAX_PREVIOUS_POSTCODES: usize = 4;

/// The most tokens of a kind that one identity forms (at most
/// [`MAX_NAMES`] names and [`MAX_DOBS`] dates of birth): one NI number;
/// the NI-number kinds once per date; the postcode kinds once per name
/// with the current postcode and once per previous postcode with the
/// primary name (`birthday_postcode` likewise with dates); the
/// name-and-date kinds once per name with the primary date
/// and once per other date with the primary name, the part kinds twice
/// that. A token set holding more of a kind than this is not one identity
/// (a check packing guesses, say) and is refused.
pub const fn max_per_identity(kind: KeyKind) -> usize {
    let combos = MAX_NAMES + MAX_DOBS - 1;
    match kind {
        KeyKind::Unspecified => 0,
        KeyKind::Nino => 1,
        KeyKind::NinoHeadYob | KeyKind::NinoTailYob | KeyKind::NinoDigitsBirthday => MAX_DOBS,
        KeyKind::BirthdayPostcode => MAX_DOBS + MAX_PREVIOUS_POSTCODES,
        KeyKind::NamePostcode
        | KeyKind::SurnamePostcode
        | KeyKind::ForenamePostcode
        | KeyKind::InitialsPostcode
        | KeyKind::NameDistrict => MAX_NAMES + MAX_PREVIOUS_POSTCODES,
        KeyKind::ForenamePartSurnameDob | KeyKind::SurnamePartForenameDob | KeyKind::ForenameSurnamePartMd => {
            2 * combos
        }
        KeyKind::NameDob
        | KeyKind::NameMd
        | KeyKind::PhoneticYm
        | KeyKind::NameYob
        | KeyKind::NameYobDistrict
        | KeyKind::ForenameDob
        | KeyKind::SurnameDob
        | KeyKind::InitialsDob
        | KeyKind::ForenameInitialSurnameMd => combos,
    }
}

/// The version of the match-key scheme these kinds belong to.
pub const SCHEME_VERSION: u32 = 2;

/// Token scheme 2: each node computes tokens itself, under the epoch's
/// linkage key (`BLAKE3-keyed`), and seals record details under it.
pub const TOKENS_LINKAGE_KEY: u32 = 2;

/// Token scheme 3: the same match keys (kinds of [`SCHEME_VERSION`]), each
/// evaluated obliviously by the key service (RFC 9497 POPRF); the token and
/// the record-key wrap secret are derived from the evaluation's output, and
/// no node holds a key that makes tokens offline.
pub const TOKENS_KEY_SERVICE: u32 = 3;

/// The wire number of the first scheme-v2 kind (v1 used 1 to 9).
const FIRST: i32 = KeyKind::Nino as i32;

/// An identity field, as the policy weighs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// Forename (first forename, nickname-canonical).
    Forename,
    /// Surname (all surname words joined).
    Surname,
    /// Date of birth.
    Dob,
    /// Postcode.
    Postcode,
    /// National Insurance number.
    Nino,
}

/// Every field, in the order policies list them.
pub const FIELDS: [Field; 5] = [Field::Forename, Field::Surname, Field::Dob, Field::Postcode, Field::Nino];

/// How well a field agrees: 0 is no agreement seen; higher is closer. The
/// meaning of each level per field is [`Field::level_name`].
pub type Level = u8;

impl Field {
    /// Position in [`FIELDS`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Stable short name (`forename`, ...), used in policy files.
    pub fn short_name(self) -> &'static str {
        match self {
            Field::Forename => "forename",
            Field::Surname => "surname",
            Field::Dob => "dob",
            Field::Postcode => "postcode",
            Field::Nino => "nino",
        }
    }

    /// One letter, for compact evidence strings (`F3 S2 D3 P- N0`).
    pub fn letter(self) -> char {
        match self {
            Field::Forename => 'F',
            Field::Surname => 'S',
            Field::Dob => 'D',
            Field::Postcode => 'P',
            Field::Nino => 'N',
        }
    }

    /// The highest level of this field.
    pub fn max_level(self) -> Level {
        match self {
            Field::Forename | Field::Surname | Field::Dob => 3,
            Field::Postcode | Field::Nino => 2,
        }
    }

    /// What a level of this field means.
    pub fn level_name(self, l: Level) -> &'static str {
        match (self, l) {
            (_, 0) => "no agreement seen",
            (Field::Forename, 1) => "initial or last three letters",
            (Field::Surname, 1) => "first three or last three letters",
            (Field::Forename | Field::Surname, 2) => "sounds alike",
            (Field::Forename | Field::Surname, _) => "exact",
            (Field::Dob, 1) => "year",
            (Field::Dob, 2) => "two of year, month and day",
            (Field::Dob, _) => "exact",
            (Field::Postcode, 1) => "district",
            (Field::Postcode, _) => "exact",
            (Field::Nino, 1) => "half",
            (Field::Nino, _) => "exact",
        }
    }
}

impl KeyKind {
    /// Stable short name (`nino`, `name_dob`, ...), used in audit entries,
    /// reports and key-derivation contexts.
    pub fn short_name(self) -> &'static str {
        match self {
            KeyKind::Unspecified => "unspecified",
            KeyKind::Nino => "nino",
            KeyKind::NinoHeadYob => "nino_head_yob",
            KeyKind::NinoTailYob => "nino_tail_yob",
            KeyKind::NameDob => "name_dob",
            KeyKind::ForenamePartSurnameDob => "forename_part_surname_dob",
            KeyKind::SurnamePartForenameDob => "surname_part_forename_dob",
            KeyKind::NameMd => "name_md",
            KeyKind::PhoneticYm => "phonetic_ym",
            KeyKind::NamePostcode => "name_postcode",
            KeyKind::NameYobDistrict => "name_yob_district",
            KeyKind::ForenameDob => "forename_dob",
            KeyKind::SurnameDob => "surname_dob",
            KeyKind::SurnamePostcode => "surname_postcode",
            KeyKind::ForenamePostcode => "forename_postcode",
            KeyKind::BirthdayPostcode => "birthday_postcode",
            KeyKind::NameYob => "name_yob",
            KeyKind::NinoDigitsBirthday => "nino_digits_birthday",
            KeyKind::InitialsDob => "initials_dob",
            KeyKind::ForenameInitialSurnameMd => "forename_initial_surname_md",
            KeyKind::InitialsPostcode => "initials_postcode",
            KeyKind::ForenameSurnamePartMd => "forename_surname_part_md",
            KeyKind::NameDistrict => "name_district",
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

    /// Position of this kind in a [`KindSet`] (0 for `nino`, then wire order).
    pub fn index(self) -> usize {
        (self as i32 - FIRST).max(0) as usize
    }

    /// [`KeyKind::implies`] as one level a field (0 for a field that is
    /// no part of the kind): the form the policy's hot paths read.
    pub fn needs(self) -> &'static [Level; FIELDS.len()] {
        static NONE: [Level; FIELDS.len()] = [0; FIELDS.len()];
        match self {
            KeyKind::Unspecified => &NONE,
            k => &NEEDS[k.index()],
        }
    }

    /// The level each field it contains must reach for a key of this kind
    /// to agree (so agreement shows at least that level).
    pub fn implies(self) -> &'static [(Field, Level)] {
        use Field::*;
        match self {
            KeyKind::Unspecified => &[],
            KeyKind::Nino => &[(Nino, 2)],
            KeyKind::NinoHeadYob | KeyKind::NinoTailYob => &[(Nino, 1), (Dob, 1)],
            KeyKind::NinoDigitsBirthday => &[(Nino, 1), (Dob, 2)],
            KeyKind::NameDob => &[(Forename, 3), (Surname, 3), (Dob, 3)],
            KeyKind::ForenamePartSurnameDob => &[(Forename, 1), (Surname, 3), (Dob, 3)],
            KeyKind::SurnamePartForenameDob => &[(Forename, 3), (Surname, 1), (Dob, 3)],
            KeyKind::NameMd => &[(Forename, 3), (Surname, 3), (Dob, 2)],
            KeyKind::PhoneticYm => &[(Forename, 2), (Surname, 2), (Dob, 2)],
            KeyKind::NamePostcode => &[(Forename, 3), (Surname, 3), (Postcode, 2)],
            KeyKind::NameYobDistrict => &[(Forename, 3), (Surname, 3), (Dob, 1), (Postcode, 1)],
            KeyKind::ForenameDob => &[(Forename, 3), (Dob, 3)],
            KeyKind::SurnameDob => &[(Surname, 3), (Dob, 3)],
            KeyKind::SurnamePostcode => &[(Surname, 3), (Postcode, 2)],
            KeyKind::ForenamePostcode => &[(Forename, 3), (Postcode, 2)],
            KeyKind::BirthdayPostcode => &[(Dob, 2), (Postcode, 2)],
            KeyKind::NameYob => &[(Forename, 3), (Surname, 3), (Dob, 1)],
            KeyKind::InitialsDob => &[(Forename, 1), (Surname, 1), (Dob, 3)],
            KeyKind::ForenameInitialSurnameMd => &[(Forename, 1), (Surname, 3), (Dob, 2)],
            KeyKind::InitialsPostcode => &[(Forename, 1), (Surname, 1), (Postcode, 2)],
            KeyKind::ForenameSurnamePartMd => &[(Forename, 3), (Surname, 1), (Dob, 2)],
            KeyKind::NameDistrict => &[(Forename, 3), (Surname, 3), (Postcode, 1)],
        }
    }

    /// What a key of this kind is made of, in a sentence.
    pub fn meaning(self) -> &'static str {
        match self {
            KeyKind::Unspecified => "not a kind",
            KeyKind::Nino => "NI number (prefix and six digits)",
            KeyKind::NinoHeadYob => "NI number prefix and first two digits, year of birth",
            KeyKind::NinoTailYob => "NI number last four digits, year of birth",
            KeyKind::NameDob => "forename and surname (either order), date of birth",
            KeyKind::ForenamePartSurnameDob => {
                "forename initial or forename's last three letters (two keys), surname, date of birth"
            }
            KeyKind::SurnamePartForenameDob => {
                "forename, surname's first three or last three letters (two keys), date of birth"
            }
            KeyKind::NameMd => "forename and surname, day and month of birth in either order",
            KeyKind::PhoneticYm => "Double Metaphone of forename and surname, year and month of birth",
            KeyKind::NamePostcode => "forename and surname, full postcode",
            KeyKind::NameYobDistrict => "forename and surname, year of birth, postcode district (retired)",
            KeyKind::ForenameDob => "forename and date of birth",
            KeyKind::SurnameDob => "surname and date of birth",
            KeyKind::SurnamePostcode => "surname and full postcode",
            KeyKind::ForenamePostcode => "forename and full postcode",
            KeyKind::BirthdayPostcode => "day and month of birth in either order, full postcode",
            KeyKind::NameYob => "forename and surname (either order), year of birth",
            KeyKind::NinoDigitsBirthday => {
                "NI number prefix and its digits in ascending order, day and month of birth in either order"
            }
            KeyKind::InitialsDob => "forename and surname initials (either order), date of birth",
            KeyKind::ForenameInitialSurnameMd => "forename initial, surname, day and month of birth in either order",
            KeyKind::InitialsPostcode => "forename and surname initials (either order), full postcode",
            KeyKind::ForenameSurnamePartMd => {
                "forename, surname's first three or last three letters (two keys), day and month of birth in either order"
            }
            KeyKind::NameDistrict => "forename and surname (either order), postcode district",
        }
    }
}

/// A set of kinds, as a bit mask (bit `k.index()`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct KindSet(pub u32);

/// [`KeyKind::implies`] of each kind by index, as a level per field.
static NEEDS: std::sync::LazyLock<[[Level; FIELDS.len()]; ALL.len()]> = std::sync::LazyLock::new(|| {
    let mut out = [[0; FIELDS.len()]; ALL.len()];
    for k in ALL {
        for (f, l) in k.implies() {
            out[k.index()][f.index()] = *l;
        }
    }
    out
});

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

    /// The kinds in the set, in wire order (bit order: `ALL[i].index() == i`).
    pub fn iter(self) -> impl Iterator<Item = KeyKind> {
        self.indices().map(|i| ALL[i])
    }

    /// The [`KeyKind::index`] of each kind in the set, in order (bits that
    /// name no kind are passed over).
    pub fn indices(self) -> impl Iterator<Item = usize> {
        let mut bits = self.0 & ((1u64 << ALL.len()) - 1) as u32;
        std::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            Some(i)
        })
    }

    /// The fields any kind of the set contains (which fields a side has).
    pub fn fields(self) -> [bool; FIELDS.len()] {
        let needs = &*NEEDS;
        let mut any = [0; FIELDS.len()];
        for i in self.indices() {
            for (slot, n) in any.iter_mut().zip(&needs[i]) {
                *slot |= *n;
            }
        }
        any.map(|n| n != 0)
    }

    /// The level each field is seen to reach when exactly these kinds agree:
    /// the highest any of them implies.
    pub fn levels(self) -> [Level; FIELDS.len()] {
        let needs = &*NEEDS;
        let mut out = [0; FIELDS.len()];
        for i in self.indices() {
            for (slot, n) in out.iter_mut().zip(&needs[i]) {
                *slot = (*slot).max(*n);
            }
        }
        out
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
        for (i, k) in ALL.iter().enumerate() {
            assert_eq!(KeyKind::from_short_name(k.short_name()), Some(*k));
            assert_eq!(KeyKind::from_wire(*k as i32), Some(*k));
            assert_eq!(k.index(), i, "{k:?} is out of wire order");
            assert!(!k.implies().is_empty());
        }
        let mut names: Vec<_> = ALL.iter().map(|k| k.short_name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        assert_eq!(KeyKind::from_wire(0), None);
        assert_eq!(KeyKind::from_wire(2), None, "scheme v1 numbers are not kinds");
        assert!(ALL.len() <= 32, "a KindSet holds 32 kinds");
    }

    #[test]
    fn kind_sets_give_field_presence_and_levels() {
        let s: KindSet = [KeyKind::Nino, KeyKind::ForenamePartSurnameDob, KeyKind::NameMd].into_iter().collect();
        assert_eq!(s.len(), 3);
        assert!(s.contains(KeyKind::Nino) && !s.contains(KeyKind::NameDob));
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![KeyKind::Nino, KeyKind::ForenamePartSurnameDob, KeyKind::NameMd]);
        // forename 3 (name_md), surname 3, dob 3 (forename_part_surname_dob), no postcode, NI exact
        assert_eq!(s.levels(), [3, 3, 3, 0, 2]);
        assert_eq!(s.fields(), [true, true, true, false, true]);
    }

    /// No kind is made of one field alone except the NI number, which
    /// identifies a person.
    #[test]
    fn no_kind_rests_on_one_low_entropy_field() {
        for k in ALL {
            let fields = k.implies().len();
            assert!(fields >= 2 || k == KeyKind::Nino, "{k:?} rests on one field");
        }
    }
}
