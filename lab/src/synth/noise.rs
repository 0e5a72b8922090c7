//! The heavy corruption profile (`synth --noise heavy`): record-linkage
//! errors as published corruption generators model them (FEBRL and its
//! successors: Christen and Pudjijono, "Accurate synthetic generation of
//! realistic personal information", 2009; Christen and Vatsalan,
//! "Flexible and extensible generation and corruption of personal data",
//! 2013), applied on top of the mild view of each national record.
//!
//! Each record gets one to four modifications (1: 35%, 2: 35%, 3: 20%,
//! 4: 10%), at most two per field, spread over all the fields a national
//! record has, as FEBRL spreads them: forename 10%, surname 15%, date of
//! birth 10%, postcode 5%, NI number 5%, and the other 55% on fields Vigil
//! does not match on (address lines, event details), which change nothing
//! here. So a record carries on average one error in its five identity
//! fields. Independently, 5% of records have forename and surname swapped
//! (FEBRL's `field_swap_prob` for given name and surname).
//! Error types per field:
//!
//! | field | errors (probability) |
//! |---|---|
//! | names | keyboard slip 30%, phonetic respelling 20%, deleted letter 15%, inserted letter 10%, transposed letters 10%, OCR confusion 5%, missing 4%, another name 4%, inserted space 2% |
//! | date of birth | digit slip 45%, transposed digits 20%, day and month swapped 15%, missing 10%, year off by one or ten 10% |
//! | postcode | character slip 40%, transposed characters 30%, missing 15%, another postcode 15% |
//! | NI number | digit slip 50%, transposed digits 30%, missing 20% |
//!
//! A slip is a keyboard neighbour 60% of the time and any character
//! otherwise; errors fall on the first character 10% of the time. The
//! profile also draws two thirds of surnames and a fifth of forenames from a
//! long tail of rarer names.

use super::{Gen, NationalRow};

/// QWERTY neighbours of letters and digits.
fn neighbours(c: char) -> &'static str {
    match c {
        'a' => "qwsz",
        'b' => "vghn",
        'c' => "xdfv",
        'd' => "serfcx",
        'e' => "wsdr",
        'f' => "drtgvc",
        'g' => "ftyhbv",
        'h' => "gyujnb",
        'i' => "ujko",
        'j' => "huikmn",
        'k' => "jiolm",
        'l' => "kop",
        'm' => "njk",
        'n' => "bhjm",
        'o' => "iklp",
        'p' => "ol",
        'q' => "wa",
        'r' => "edft",
        's' => "awedxz",
        't' => "rfgy",
        'u' => "yhji",
        'v' => "cfgb",
        'w' => "qase",
        'x' => "zsdc",
        'y' => "tghu",
        'z' => "asx",
        '0' => "9",
        '1' => "2",
        '2' => "13",
        '3' => "24",
        '4' => "35",
        '5' => "46",
        '6' => "57",
        '7' => "68",
        '8' => "79",
        '9' => "80",
        _ => "",
    }
}

/// Respellings that sound alike.
const PHONETIC: &[(&str, &str)] = &[
    ("ph", "f"),
    ("f", "ph"),
    ("ck", "k"),
    ("c", "k"),
    ("k", "c"),
    ("y", "i"),
    ("i", "y"),
    ("ie", "y"),
    ("y", "ie"),
    ("ll", "l"),
    ("l", "ll"),
    ("nn", "n"),
    ("n", "nn"),
    ("tt", "t"),
    ("t", "tt"),
    ("ee", "ea"),
    ("ea", "ee"),
    ("s", "z"),
    ("z", "s"),
    ("th", "t"),
    ("ou", "ow"),
    ("ow", "ou"),
    ("er", "a"),
    ("ey", "ie"),
    ("son", "sen"),
    ("sen", "son"),
    ("mac", "mc"),
    ("mc", "mac"),
    ("ai", "ay"),
    ("ay", "ai"),
];

/// Characters an OCR pass confuses.
const OCR: &[(&str, &str)] = &[
    ("m", "rn"),
    ("rn", "m"),
    ("cl", "d"),
    ("d", "cl"),
    ("w", "vv"),
    ("vv", "w"),
    ("li", "h"),
    ("h", "li"),
    ("u", "v"),
    ("v", "u"),
    ("e", "c"),
    ("c", "e"),
    ("i", "l"),
    ("l", "i"),
];

#[derive(Clone, Copy)]
enum Field {
    Forename,
    Surname,
    Dob,
    Postcode,
    Nino,
    /// A field Vigil does not match on.
    Other,
}

const FIELD_WEIGHTS: [(Field, u32); 6] = [
    (Field::Forename, 10),
    (Field::Surname, 15),
    (Field::Dob, 10),
    (Field::Postcode, 5),
    (Field::Nino, 5),
    (Field::Other, 55),
];

fn pick<T: Copy>(g: &mut Gen, table: &[(T, u32)]) -> T {
    let total: u32 = table.iter().map(|(_, w)| w).sum();
    let mut x = g.rng.below(total as usize) as u32;
    for (t, w) in table {
        if x < *w {
            return *t;
        }
        x -= w;
    }
    table[table.len() - 1].0
}

/// Where an error falls: the first character 10% of the time.
fn position(g: &mut Gen, len: usize) -> usize {
    if len <= 1 || g.rng.chance(0.1) { 0 } else { 1 + g.rng.below(len - 1) }
}

/// A slip: a keyboard neighbour, or any character of the same class.
fn slip(g: &mut Gen, c: char) -> char {
    let lower = c.to_ascii_lowercase();
    let n = neighbours(lower);
    let out = if !n.is_empty() && g.rng.chance(0.6) {
        n.as_bytes()[g.rng.below(n.len())] as char
    } else if c.is_ascii_digit() {
        (b'0' + g.rng.below(10) as u8) as char
    } else {
        (b'a' + g.rng.below(26) as u8) as char
    };
    if c.is_ascii_uppercase() { out.to_ascii_uppercase() } else { out }
}

/// Positions (byte offsets) of characters of `s` that `ok` accepts.
fn positions(s: &str, ok: impl Fn(char) -> bool) -> Vec<usize> {
    s.char_indices().filter(|(_, c)| ok(*c)).map(|(i, _)| i).collect()
}

fn replace_at(s: &str, at: usize, with: &str) -> String {
    let len = s[at..].chars().next().map_or(0, char::len_utf8);
    format!("{}{}{}", &s[..at], with, &s[at + len..])
}

/// Substitutes one character of the class `ok` accepts.
fn slip_one(g: &mut Gen, s: &str, ok: impl Fn(char) -> bool) -> String {
    let pos = positions(s, ok);
    if pos.is_empty() {
        return s.to_string();
    }
    let at = pos[position(g, pos.len())];
    let c = s[at..].chars().next().unwrap_or('a');
    replace_at(s, at, &slip(g, c).to_string())
}

/// Swaps two neighbouring characters of the class `ok` accepts.
fn transpose_one(g: &mut Gen, s: &str, ok: impl Fn(char) -> bool) -> String {
    let pos = positions(s, ok);
    if pos.len() < 2 {
        return s.to_string();
    }
    let i = position(g, pos.len() - 1).min(pos.len() - 2);
    let (a, b) = (pos[i], pos[i + 1]);
    let (ca, cb) = (s[a..].chars().next().unwrap_or(' '), s[b..].chars().next().unwrap_or(' '));
    let mut out = replace_at(s, b, &ca.to_string());
    out = replace_at(&out, a, &cb.to_string());
    out
}

fn respell(g: &mut Gen, s: &str, table: &[(&str, &str)]) -> Option<String> {
    let lower = s.to_lowercase();
    let start = g.rng.below(table.len());
    for k in 0..table.len() {
        let (from, to) = table[(start + k) % table.len()];
        if let Some(i) = lower.get(1..).and_then(|rest| rest.find(from)).map(|i| i + 1)
            && s.is_char_boundary(i)
            && s.is_char_boundary(i + from.len())
        {
            let to = if s[i..].starts_with(|c: char| c.is_uppercase()) { to.to_uppercase() } else { to.to_string() };
            return Some(format!("{}{}{}", &s[..i], to, &s[i + from.len()..]));
        }
    }
    None
}

impl Gen {
    /// Applies the heavy profile to one national record.
    pub(super) fn corrupt_heavily(&mut self, r: &mut NationalRow, female: bool) {
        if self.rng.chance(0.05) {
            std::mem::swap(&mut r.forenames, &mut r.surname);
        }
        let n = match self.rng.below(100) {
            0..=34 => 1,
            35..=69 => 2,
            70..=89 => 3,
            _ => 4,
        };
        let mut per_field = [0u8; 6];
        let mut done = 0;
        let mut tries = 0;
        while done < n && tries < 50 {
            tries += 1;
            let f = pick(self, &FIELD_WEIGHTS);
            if per_field[f as usize] >= 2 && !matches!(f, Field::Other) {
                continue;
            }
            per_field[f as usize] += 1;
            done += 1;
            match f {
                Field::Forename => {
                    let other = self.forename(female);
                    r.forenames = self.corrupt_name(&r.forenames, &other);
                }
                Field::Surname => {
                    let other = self.surname();
                    r.surname = self.corrupt_name(&r.surname, &other);
                }
                Field::Dob => r.dob = self.corrupt_date(&r.dob),
                Field::Postcode => r.postcode = self.corrupt_postcode(&r.postcode),
                Field::Nino => r.nino = self.corrupt_nino(&r.nino),
                Field::Other => {}
            }
        }
    }

    fn corrupt_name(&mut self, s: &str, other: &str) -> String {
        if s.is_empty() {
            return String::new();
        }
        let letter = |c: char| c.is_alphabetic();
        let op = pick(self, &[(0u8, 30), (1, 20), (2, 15), (3, 10), (4, 10), (5, 5), (6, 4), (7, 4), (8, 2)]);
        match op {
            0 => slip_one(self, s, letter),
            1 => respell(self, s, PHONETIC).unwrap_or_else(|| slip_one(self, s, letter)),
            2 => {
                let pos = positions(s, letter);
                if pos.len() < 3 {
                    return s.to_string();
                }
                replace_at(s, pos[position(self, pos.len())], "")
            }
            3 => {
                let pos = positions(s, letter);
                let at = pos.get(position(self, pos.len().max(1))).copied().unwrap_or(s.len());
                let c = (b'a' + self.rng.below(26) as u8) as char;
                format!("{}{}{}", &s[..at], c, &s[at..])
            }
            4 => transpose_one(self, s, letter),
            5 => respell(self, s, OCR).unwrap_or_else(|| slip_one(self, s, letter)),
            6 => String::new(),
            7 => other.to_string(),
            _ => {
                let pos = positions(s, letter);
                if pos.len() < 4 {
                    return s.to_string();
                }
                let at = pos[1 + self.rng.below(pos.len() - 2)];
                format!("{} {}", &s[..at], &s[at..])
            }
        }
    }

    fn corrupt_date(&mut self, s: &str) -> String {
        if s.len() != 10 {
            return s.to_string();
        }
        let digit = |c: char| c.is_ascii_digit();
        match pick(self, &[(0u8, 45), (1, 20), (2, 15), (3, 10), (4, 10)]) {
            0 => slip_one(self, s, digit),
            1 => transpose_one(self, s, digit),
            2 => format!("{}-{}-{}", &s[..4], &s[8..10], &s[5..7]),
            3 => String::new(),
            _ => {
                let y: i32 = s[..4].parse().unwrap_or(1970);
                let d = *self.rng.pick(&[-10, -1, 1, 10]);
                format!("{:04}{}", (y + d).clamp(1900, 2025), &s[4..])
            }
        }
    }

    fn corrupt_postcode(&mut self, s: &str) -> String {
        if s.is_empty() {
            return String::new();
        }
        let alnum = |c: char| c.is_ascii_alphanumeric();
        match pick(self, &[(0u8, 40), (1, 30), (2, 15), (3, 15)]) {
            0 => slip_one(self, s, alnum),
            1 => transpose_one(self, s, alnum),
            2 => String::new(),
            _ => {
                let area = self.rng.below(super::AREAS.len());
                let p = self.postcode_in(area);
                p.render()
            }
        }
    }

    fn corrupt_nino(&mut self, s: &str) -> String {
        if s.is_empty() {
            return String::new();
        }
        let digit = |c: char| c.is_ascii_digit();
        match pick(self, &[(0u8, 50), (1, 30), (2, 20)]) {
            0 => slip_one(self, s, digit),
            1 => transpose_one(self, s, digit),
            _ => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corruptions_change_one_thing_and_keep_utf8() {
        let mut g = Gen::new(5);
        for _ in 0..2000 {
            let s = g.corrupt_name("Zoë O'Brien", "Smith");
            assert!(s.chars().count() <= 13);
            let d = g.corrupt_date("1984-07-02");
            assert!(d.is_empty() || d.len() == 10, "{d}");
            let n = g.corrupt_nino("AB123456C");
            assert!(n.is_empty() || n.len() == 9, "{n}");
        }
        assert_eq!(transpose_one(&mut g, "12", |c| c.is_ascii_digit()), "21");
    }
}
