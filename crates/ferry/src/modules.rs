//! Module values: which module a value's type belongs to, and which of the
//! source's modules the target lacks.
//!
//! A module value in a dump names only its 9-character *type* (`ReJSON-RL`,
//! `MBbloom--`); `INFO modules` lists module *names* (`ReJSON`, `bf`). The
//! table maps the types of the modules Redis Stack ships; a value of a type
//! not listed is written as usual (a target without its module then refuses
//! it with a clear error naming the key).

use std::collections::{BTreeMap, BTreeSet};

/// Module value types and the module (lower-case `INFO modules` name) that defines them.
const TYPES: &[(&str, &str)] = &[
    ("ReJSON-RL", "rejson"),
    ("MBbloom--", "bf"),
    ("MBbloomCF", "bf"),
    ("CMSk-TYPE", "bf"),
    ("TopK-TYPE", "bf"),
    ("TDIS-TYPE", "bf"),
    ("TSDB-TYPE", "timeseries"),
    ("graphdata", "graph"),
];

/// The module (lower-case name) that defines values of `type_name`, if known.
pub fn module_of_type(type_name: &str) -> Option<&'static str> {
    TYPES.iter().find(|(t, _)| *t == type_name).map(|(_, m)| *m)
}

/// The value types of `modules` (lower-case names), each with its module:
/// what the translator skips when the target lacks those modules.
pub fn types_of(modules: &BTreeSet<String>) -> BTreeMap<String, String> {
    TYPES
        .iter()
        .filter(|(_, m)| modules.contains(*m))
        .map(|(t, m)| ((*t).to_owned(), (*m).to_owned()))
        .collect()
}

/// Lower-case module names from `INFO modules` text
/// (`module:name=ReJSON,ver=20809,…` lines).
pub fn loaded(info_modules: &str) -> BTreeSet<String> {
    ferry_ops::Info::parse(info_modules)
        .all("module")
        .filter_map(|m| ferry_ops::info::prop(m, "name"))
        .map(str::to_ascii_lowercase)
        .collect()
}

/// Modules the source has and at least one target master lacks; only
/// modules that define value types count (a command-only module such as
/// `search` leaves no key that needs it).
pub fn missing(source: &BTreeSet<String>, targets: &[BTreeSet<String>]) -> BTreeSet<String> {
    source
        .iter()
        .filter(|m| TYPES.iter().any(|(_, n)| n == m))
        .filter(|m| targets.iter().any(|t| !t.contains(*m)))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_and_missing_modules() {
        let bf: BTreeSet<String> = ["bf".to_owned()].into();
        let types = types_of(&bf);
        assert_eq!(types.get("MBbloom--").map(String::as_str), Some("bf"));
        assert!(!types.contains_key("ReJSON-RL"));
        let src = loaded(
            "# Modules\r\nmodule:name=ReJSON,ver=20809,api=1,filters=0\r\nmodule:name=bf,ver=20807\r\nmodule:name=search,ver=21015\r\n",
        );
        assert_eq!(src.len(), 3);
        let with_json = loaded("module:name=ReJSON,ver=1\r\n");
        assert_eq!(
            missing(&src, &[with_json.clone(), src.clone()]),
            BTreeSet::from(["bf".to_string()])
        );
        assert!(missing(&src, std::slice::from_ref(&src)).is_empty());
        assert!(missing(&BTreeSet::new(), &[with_json]).is_empty());
        assert_eq!(module_of_type("MBbloomCF"), Some("bf"));
        assert_eq!(module_of_type("ReJSON-RL"), Some("rejson"));
        assert_eq!(module_of_type("unknown--"), None);
    }
}
