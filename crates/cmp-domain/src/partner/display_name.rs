//! [`DisplayName`]: the partner's display name and natural key.

use std::fmt;

/// The longest display name accepted, in characters (Unicode scalar values).
pub const DISPLAY_NAME_MAX_CHARS: usize = 256;

/// A partner's display name: trimmed, 1 to 256 characters, no control characters.
///
/// It is also the partner's natural key: unique per tenant, compared trimmed and
/// case-insensitively, because reconciliation with Graph (which assigns its own ids) can
/// only match on the name. [`NaturalKey`](super::natural_key::NaturalKey) is that comparison
/// form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DisplayName(String);

/// Why a display name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DisplayNameError {
    /// Nothing but whitespace, or nothing at all.
    #[error("display name must not be empty")]
    Empty,
    /// More than [`DISPLAY_NAME_MAX_CHARS`] characters after trimming.
    #[error("display name must be at most {max} characters, got {actual}")]
    TooLong {
        /// The limit.
        max: usize,
        /// The length received, after trimming.
        actual: usize,
    },
    /// A control character (tab, newline, NUL, ...) inside the name.
    #[error("display name must not contain control characters (found U+{code_point:04X})")]
    ControlCharacter {
        /// The first control character found.
        code_point: u32,
    },
}

impl DisplayName {
    /// Trims `text` and checks it.
    ///
    /// # Errors
    /// [`DisplayNameError`] when the trimmed text is empty, too long or holds a control character.
    pub fn parse(text: &str) -> Result<Self, DisplayNameError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(DisplayNameError::Empty);
        }
        let actual = trimmed.chars().count();
        if actual > DISPLAY_NAME_MAX_CHARS {
            return Err(DisplayNameError::TooLong {
                max: DISPLAY_NAME_MAX_CHARS,
                actual,
            });
        }
        if let Some(c) = trimmed.chars().find(|c| c.is_control()) {
            return Err(DisplayNameError::ControlCharacter {
                code_point: u32::from(c),
            });
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The name as stored and shown.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DisplayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_trims_surrounding_whitespace() {
        assert_eq!(
            DisplayName::parse("  Contoso  ").map(|n| n.as_str().to_owned()),
            Ok("Contoso".into())
        );
    }

    #[test]
    fn parse_refuses_bad_names() {
        let cases: [(&str, String, DisplayNameError); 5] = [
            ("empty", String::new(), DisplayNameError::Empty),
            ("blank", " \t ".into(), DisplayNameError::Empty),
            (
                "too long",
                "x".repeat(257),
                DisplayNameError::TooLong {
                    max: 256,
                    actual: 257,
                },
            ),
            (
                "newline inside",
                "a\nb".into(),
                DisplayNameError::ControlCharacter { code_point: 0x0a },
            ),
            (
                "NUL inside",
                "a\u{0}b".into(),
                DisplayNameError::ControlCharacter { code_point: 0 },
            ),
        ];
        for (case, input, expected) in cases {
            assert_eq!(DisplayName::parse(&input), Err(expected), "case: {case}");
        }
    }

    #[test]
    fn length_limit_counts_characters_not_bytes() {
        assert!(DisplayName::parse(&"é".repeat(256)).is_ok());
        assert!(DisplayName::parse(&"x".repeat(256)).is_ok());
        assert!(DisplayName::parse(&"é".repeat(257)).is_err());
    }
}
