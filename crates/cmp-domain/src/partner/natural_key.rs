//! [`NaturalKey`]: the form in which display names are compared.

use std::fmt;

use super::display_name::DisplayName;

/// The comparison form of a display name: what makes two names "the same" for uniqueness per
/// tenant, for matching a partner with Graph's objects (which carry Graph's ids, not ours), and
/// for `$filter` on `displayName`.
///
/// Every character is lower-cased on its own, and a final sigma `ς` becomes `σ`. Lower-casing a
/// whole string with `str::to_lowercase` is context-sensitive: a capital sigma at the end of a
/// word becomes `ς`, elsewhere `σ`. A prefix then folds differently from the name it begins:
/// `ΟΔΟΣ` would give `οδος` while `ΟΔΟΣΑ-1` gives `οδοσα-1`, and `startswith` would miss a name
/// that `eq` finds. Folding character by character makes the key of a prefix a prefix of the
/// key, so whole names and prefixes always agree.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NaturalKey(String);

impl NaturalKey {
    /// The key of a (valid, already trimmed) display name.
    pub fn of(name: &DisplayName) -> Self {
        Self::fold(name.as_str())
    }

    /// The key form of any text, as given (not trimmed): a `$filter` literal, a `startswith`
    /// prefix, or a name another system reports (trim it first where names are trimmed).
    pub fn fold(text: &str) -> Self {
        Self(
            text.chars()
                .flat_map(char::to_lowercase)
                .map(|c| if c == 'ς' { 'σ' } else { c })
                .collect(),
        )
    }

    /// A key read back from storage, where it was written by [`NaturalKey::as_str`].
    pub fn from_stored(key: String) -> Self {
        Self(key)
    }

    /// The key as text, for storage and indexes.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this key begins with `prefix` (the key of a `startswith` prefix).
    pub fn starts_with(&self, prefix: &NaturalKey) -> bool {
        self.0.starts_with(&prefix.0)
    }

    /// Whether `name`, as another system reports it (Graph's `displayName`, nullable and not
    /// necessarily trimmed), has this key. A name that is not a valid display name has none.
    pub fn matches_reported(&self, name: Option<&str>) -> bool {
        name.and_then(|name| DisplayName::parse(name).ok())
            .is_some_and(|name| NaturalKey::of(&name) == *self)
    }
}

impl fmt::Display for NaturalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> NaturalKey {
        NaturalKey::of(&DisplayName::parse(name).expect("valid"))
    }

    #[test]
    fn names_differing_only_in_case_or_surrounding_space_share_a_key() {
        let cases = [
            ("ascii", "  Contoso Partner ", "contoso PARTNER"),
            ("accented", "ÉCOLE", "école"),
            ("greek final sigma", "ΟΔΟΣ", "οδος"),
            ("greek sigma inside", "ΟΔΟΣΑ", "οδοσα"),
        ];
        for (case, a, b) in cases {
            assert_eq!(key(a), key(b), "case: {case}");
        }
        assert_ne!(key("Contoso Partner"), key("Contoso Partner 2"));
    }

    #[test]
    fn the_key_of_a_prefix_is_a_prefix_of_the_key() {
        let cases = [
            ("greek word end", "ΟΔΟΣ", "ΟΔΟΣΑ-1"),
            ("ascii", "Con", "Contoso"),
            ("whole name", "Contoso", "Contoso"),
            ("dotted capital I", "İ", "İstanbul"),
        ];
        for (case, prefix, name) in cases {
            assert!(
                key(name).starts_with(&NaturalKey::fold(prefix)),
                "case: {case}"
            );
        }
        assert!(!key("Contoso").starts_with(&NaturalKey::fold("Fabrikam")));
    }

    #[test]
    fn a_reported_name_matches_when_its_trimmed_key_is_equal() {
        let wanted = key("Contoso");
        assert!(wanted.matches_reported(Some("  CONTOSO ")));
        assert!(!wanted.matches_reported(Some("Contoso 2")));
        assert!(
            !wanted.matches_reported(Some("   ")),
            "no valid name, no key"
        );
        assert!(!wanted.matches_reported(None));
    }

    #[test]
    fn a_stored_key_reads_back_unchanged() {
        let stored = key("ΟΔΟΣ");
        assert_eq!(NaturalKey::from_stored(stored.as_str().to_owned()), stored);
        assert_eq!(stored.as_str(), "οδοσ");
    }
}
