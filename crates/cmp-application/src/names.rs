//! Stored names: the closed sets of the application's vocabulary (outbox states, operations,
//! delivery outcomes, audit actions) are enums everywhere but at the SQL and JSON edges, where
//! they are written as these names and parsed back.

/// The text is not the stored name of a value of a closed set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{text}' is not {what}")]
pub struct UnknownName {
    /// The text given.
    pub text: String,
    /// What it should have named (`an outbox state`, ...).
    pub what: &'static str,
}

/// Gives a fieldless enum its stored names: `ALL`, `as_str`, `Display` and `FromStr` (which
/// fails with [`UnknownName`] naming `$what`). One name per variant, written once.
macro_rules! stored_names {
    ($type:ident, $what:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $type {
            /// Every value, in declaration order.
            pub const ALL: &'static [$type] = &[$($type::$variant),+];

            /// The name stored and shown to operators.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $($type::$variant => $name),+
                }
            }
        }

        impl std::fmt::Display for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $type {
            type Err = $crate::names::UnknownName;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|value| value.as_str() == text)
                    .ok_or_else(|| $crate::names::UnknownName {
                        text: text.to_owned(),
                        what: $what,
                    })
            }
        }
    };
}
pub(crate) use stored_names;
