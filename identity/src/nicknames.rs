//! The nickname table of the match keys (unchanged since scheme 1).
//!
//! Each group names a canonical forename and the short forms and variants
//! that map to it. A folded forename found in a group is replaced by the
//! group's canonical name in every key that holds the forename, so `Bob
//! Smith` and `Robert Smith` agree there.
//! Groups are deliberately conservative: a name that is commonly given in its
//! own right and is not a short form of one other name (Jack, Harvey) is left
//! alone, and no name belongs to two groups (a unit test checks it). Some
//! groups join male and female forms that share a short form (Alexander,
//! Alexandra, Alex): keys do not carry sex, and the date of birth and surname
//! still have to agree.
//!
//! Changing this table changes tokens: it is part of the scheme, and the
//! fixed token vector in `tokens.rs` is expected to fail when it changes.

use std::collections::HashMap;
use std::sync::OnceLock;

/// `(canonical, variants)`.
pub const GROUPS: &[(&str, &[&str])] = &[
    ("abigail", &["abi", "abby", "abbie", "gail"]),
    ("albert", &["al", "bert", "bertie"]),
    ("alexander", &["alex", "alec", "alexandra", "alexa", "sandy", "xander", "lexi"]),
    ("alfred", &["alf", "alfie", "fred", "freddie", "freddy", "frederick", "frederic"]),
    ("andrew", &["andy", "drew"]),
    ("anthony", &["tony", "antony", "ant"]),
    ("arthur", &["art", "artie"]),
    ("barbara", &["barb", "babs", "barbie"]),
    ("benjamin", &["ben", "benji", "benny"]),
    ("bernard", &["bernie"]),
    (
        "catherine",
        &["cath", "cathy", "kate", "katie", "katy", "kathryn", "katherine", "kathleen", "kath", "kat", "kitty", "cate"],
    ),
    ("charles", &["charlie", "chas", "chuck", "chaz"]),
    ("charlotte", &["lottie", "lotte", "charly"]),
    ("christopher", &["chris", "kit", "kristopher", "christine", "christina", "kris"]),
    ("daniel", &["dan", "danny"]),
    ("david", &["dave", "davy", "davie"]),
    ("deborah", &["debbie", "debra", "deb", "debby"]),
    ("dominic", &["dom"]),
    ("donald", &["don", "donny"]),
    ("dorothy", &["dot", "dotty", "dottie", "dolly"]),
    ("douglas", &["doug", "dougie"]),
    ("edward", &["ed", "eddie", "eddy", "ted", "teddy", "ned"]),
    (
        "elizabeth",
        &[
            "liz",
            "lizzie",
            "lizzy",
            "beth",
            "betty",
            "bette",
            "eliza",
            "elisabeth",
            "libby",
            "bess",
            "bessie",
            "liza",
            "elsie",
        ],
    ),
    ("eleanor", &["ellie", "elly", "nell", "nellie", "elinor", "ella"]),
    ("emily", &["em", "emmy"]),
    ("frances", &["fran", "fanny", "francesca"]),
    ("francis", &["frank", "frankie", "franky"]),
    ("gerald", &["gerry", "jerry", "ged", "gerard"]),
    ("gregory", &["greg"]),
    ("harold", &["hal"]),
    ("henry", &["harry", "hank"]),
    ("isabel", &["isabelle", "isabella", "izzy", "bella", "issy"]),
    ("jacqueline", &["jackie", "jacqui", "jacky"]),
    ("james", &["jim", "jimmy", "jamie", "jem", "jimmie"]),
    ("janet", &["jan", "jenny", "jennie", "janette", "jeanette"]),
    ("jennifer", &["jen", "jenn", "jenni"]),
    ("jeffrey", &["jeff", "geoffrey", "geoff"]),
    ("joanne", &["jo", "joanna", "joan", "jojo"]),
    ("john", &["johnny", "jon", "johnnie", "jonny"]),
    ("jonathan", &["jonty", "jonno"]),
    ("joseph", &["joe", "joey"]),
    ("joshua", &["josh"]),
    ("judith", &["judy", "jude"]),
    ("kenneth", &["ken", "kenny"]),
    ("lawrence", &["larry", "laurence", "laurie", "lol"]),
    ("leonard", &["len", "lenny", "leo"]),
    ("louise", &["lou", "louisa", "lulu"]),
    ("margaret", &["maggie", "meg", "peggy", "peg", "marge", "margie", "maisie", "madge"]),
    ("matthew", &["matt", "matty", "mat"]),
    ("michael", &["mike", "mick", "micky", "mickey", "mikey"]),
    ("nathan", &["nate", "nat", "nathaniel"]),
    ("nicholas", &["nick", "nicky", "nico", "nicola", "nikki", "nichola", "nicole"]),
    ("oliver", &["ollie", "olly", "noll"]),
    ("patrick", &["pat", "paddy", "patricia", "patsy", "trish", "tricia", "patty"]),
    ("peter", &["pete"]),
    ("philip", &["phil", "phillip", "pip"]),
    ("raymond", &["ray"]),
    ("rebecca", &["becky", "becca", "bex"]),
    ("richard", &["rich", "rick", "ricky", "dick", "richie", "dicky"]),
    ("robert", &["bob", "bobby", "rob", "robbie", "robby"]),
    ("ronald", &["ron", "ronnie", "ronny"]),
    ("samuel", &["sam", "sammy", "samantha", "sammie"]),
    ("sarah", &["sara", "sally", "sadie"]),
    ("stephen", &["steve", "steven", "stevie", "steph", "stephanie"]),
    ("stuart", &["stu", "stewart"]),
    ("susan", &["sue", "susie", "suzy", "susanne", "suzanne", "suzannah", "susannah"]),
    ("terence", &["terry", "terrence", "tel"]),
    ("theodore", &["theo"]),
    ("thomas", &["tom", "tommy", "thom"]),
    ("timothy", &["tim", "timmy"]),
    ("victoria", &["vicky", "vicki", "vikki", "tori", "vic"]),
    ("vincent", &["vince", "vinny", "vinnie"]),
    ("walter", &["walt", "wally"]),
    ("william", &["will", "bill", "billy", "willie", "willy", "liam", "wills"]),
    ("zachary", &["zach", "zack", "zak"]),
];

fn table() -> &'static HashMap<&'static str, &'static str> {
    static TABLE: OnceLock<HashMap<&'static str, &'static str>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut m = HashMap::new();
        for (canon, variants) in GROUPS {
            m.insert(*canon, *canon);
            for v in *variants {
                m.insert(*v, *canon);
            }
        }
        m
    })
}

/// The canonical forename for a folded forename, if it is in the table.
pub fn canonical(forename: &str) -> Option<&'static str> {
    table().get(forename).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn no_name_is_in_two_groups_and_all_are_folded() {
        let mut seen = HashSet::new();
        for (canon, variants) in GROUPS {
            for name in std::iter::once(canon).chain(variants.iter()) {
                assert!(seen.insert(*name), "{name} is in two groups");
                assert_eq!(crate::normalize::fold(name), *name, "{name} is not folded");
            }
        }
    }

    #[test]
    fn lookups() {
        assert_eq!(canonical("bob"), Some("robert"));
        assert_eq!(canonical("robert"), Some("robert"));
        assert_eq!(canonical("liam"), Some("william"));
        assert_eq!(canonical("jack"), None);
        assert_eq!(canonical("harry"), Some("henry"));
    }
}
