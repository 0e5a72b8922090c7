//! The category vocabulary of national records, most severe first.
//!
//! The order ranks a professional standards department's inbox: a person on
//! the barred list must not be working in policing at all, so that comes
//! first; then the advisory list (left while under investigation); then
//! offences against people, with sexual and domestic abuse before other
//! violence because of the abuse-of-position risk they carry in policing;
//! then dishonesty (integrity of evidence), drugs, recorded misconduct,
//! unproven intelligence and anything else.

/// Every category, most severe first.
pub const CATEGORIES: &[(&str, &str)] = &[
    ("barred", "on the police barred list"),
    ("advisory", "on the police advisory list (left while under investigation)"),
    ("sexual_offence", "sexual offence"),
    ("domestic_abuse", "domestic abuse"),
    ("violence", "violence against the person"),
    ("dishonesty", "fraud, theft or other dishonesty"),
    ("drugs", "drugs offence"),
    ("misconduct", "recorded misconduct"),
    ("intelligence", "intelligence report (unproven)"),
    ("other", "any other record"),
];

/// Severity rank of a category: 0 is the most severe. `None` if the
/// category is not in the vocabulary.
pub fn rank(category: &str) -> Option<usize> {
    CATEGORIES.iter().position(|(c, _)| *c == category)
}

/// Whether `category` is in the vocabulary.
pub fn is_known(category: &str) -> bool {
    rank(category).is_some()
}

#[cfg(test)]
mod tests {
    #[test]
    fn order() {
        assert_eq!(super::rank("barred"), Some(0));
        assert!(super::rank("sexual_offence") < super::rank("violence"));
        assert!(super::rank("intelligence") < super::rank("other"));
        assert_eq!(super::rank("parking"), None);
    }
}
