//! The parts of an Entra ID access token this crate reads: the JOSE header and the claims,
//! decoded from the compact serialisation WITHOUT verifying anything.
//!
//! Nothing read here is trusted until the signature is verified, with one deliberate
//! exception: `tid` is checked against the allow-list first, so a token naming a foreign or
//! made-up tenant causes no outbound traffic (see [`crate::authenticator`]).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

/// Longest token accepted, in bytes. Entra ID access tokens stay well below this (group
/// overage keeps them small); the cap bounds the work a forged token can cause.
pub(crate) const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The JOSE header fields the checks need. Everything else is ignored here; jsonwebtoken
/// parses the header again, strictly, when it verifies the signature.
#[derive(Debug, Deserialize)]
pub(crate) struct JoseHeader {
    /// The signing algorithm; only `RS256` is accepted.
    pub(crate) alg: Option<String>,
    /// Which of the tenant's keys signed the token.
    pub(crate) kid: Option<String>,
}

/// `aud` as JWT allows it: one string or several. Entra ID always sends one.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum Audience {
    /// A single audience, the only form Entra ID issues.
    One(String),
    /// Several audiences; refused (see [`crate::authenticator`]).
    Many(Vec<String>),
}

/// The claims of an Entra ID access token that decide acceptance and identity. `exp`, `nbf`
/// are checked by jsonwebtoken (`exp` is read here too, for how long a verified token is
/// remembered); name and e-mail claims (`name`, `preferred_username`, `upn`,
/// `email`, `unique_name`) are never read, so they cannot identify a caller.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct EntraClaims {
    /// The tenant the token was issued in.
    pub(crate) tid: Option<String>,
    /// Expiry, seconds since the Unix epoch. Read as any JSON value so that an odd one is
    /// refused by jsonwebtoken's check, with its reason, rather than here as malformed.
    pub(crate) exp: Option<serde_json::Value>,
    /// Who the token is for.
    pub(crate) aud: Option<Audience>,
    /// Who issued the token.
    pub(crate) iss: Option<String>,
    /// Token version, `1.0` or `2.0`.
    pub(crate) ver: Option<String>,
    /// The caller's object id in its tenant.
    pub(crate) oid: Option<String>,
    /// The subject, the fallback identity when `oid` is absent.
    pub(crate) sub: Option<String>,
    /// The client application (v2).
    pub(crate) azp: Option<String>,
    /// The client application (v1).
    pub(crate) appid: Option<String>,
    /// `app` for app-only tokens when the optional claim is configured.
    pub(crate) idtyp: Option<String>,
    /// Delegated scopes, space-separated.
    pub(crate) scp: Option<String>,
    /// App roles granted to the caller.
    pub(crate) roles: Option<Vec<String>>,
}

/// A compact JWS split into its three segments, with the header and claims decoded.
#[derive(Debug)]
pub(crate) struct UnverifiedToken {
    /// The decoded header.
    pub(crate) header: JoseHeader,
    /// The raw payload segment, decoded only when [`UnverifiedToken::claims`] is called.
    payload: String,
}

/// Why a token could not even be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// Not three dot-separated base64url segments holding JSON objects.
    Malformed,
    /// Longer than [`MAX_TOKEN_BYTES`].
    TooLarge,
}

impl UnverifiedToken {
    /// Splits `token` and decodes its header. The payload is decoded separately so that a bad
    /// header is reported before anything in the payload is looked at.
    pub(crate) fn parse(token: &str) -> Result<Self, ParseError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(ParseError::TooLarge);
        }
        let mut segments = token.split('.');
        let (Some(header), Some(payload), Some(_signature), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(ParseError::Malformed);
        };
        // The signature may be empty here: an `alg: none` token is `header.payload.` and is
        // refused for its algorithm, which is the more useful reason.
        Ok(Self {
            header: decode_segment(header)?,
            payload: payload.to_owned(),
        })
    }

    /// Decodes the claims. The result is unverified until jsonwebtoken has checked the
    /// signature over this very segment.
    pub(crate) fn claims(&self) -> Result<EntraClaims, ParseError> {
        decode_segment(&self.payload)
    }
}

fn decode_segment<T: for<'de> Deserialize<'de>>(segment: &str) -> Result<T, ParseError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| ParseError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| ParseError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(value: serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(value.to_string())
    }

    #[test]
    fn a_token_needs_exactly_three_segments() {
        let header = segment(serde_json::json!({"alg": "RS256", "kid": "k"}));
        let payload = segment(serde_json::json!({"tid": "t"}));

        for token in [
            String::new(),
            "garbage".to_owned(),
            format!("{header}.{payload}"),
            format!("{header}.{payload}.sig.extra.parts"),
        ] {
            assert_eq!(
                UnverifiedToken::parse(&token).map(|_| ()),
                Err(ParseError::Malformed),
                "{token}"
            );
        }
        assert!(UnverifiedToken::parse(&format!("{header}.{payload}.")).is_ok());
    }

    #[test]
    fn header_and_claims_are_read_from_base64url_json() {
        let header = segment(serde_json::json!({"alg": "RS256", "kid": "key-1", "typ": "JWT"}));
        let payload = segment(serde_json::json!({
            "tid": "tenant", "aud": "audience", "roles": ["A", "B"], "name": "ignored"
        }));

        let token = UnverifiedToken::parse(&format!("{header}.{payload}.c2ln")).expect("parses");
        let claims = token.claims().expect("claims parse");

        assert_eq!(token.header.alg.as_deref(), Some("RS256"));
        assert_eq!(token.header.kid.as_deref(), Some("key-1"));
        assert_eq!(claims.tid.as_deref(), Some("tenant"));
        assert!(matches!(claims.aud, Some(Audience::One(ref a)) if a == "audience"));
        assert_eq!(claims.roles, Some(vec!["A".to_owned(), "B".to_owned()]));
    }

    #[test]
    fn oversized_tokens_are_refused_before_decoding() {
        let token = "a".repeat(MAX_TOKEN_BYTES + 1);

        assert_eq!(
            UnverifiedToken::parse(&token).map(|_| ()),
            Err(ParseError::TooLarge)
        );
    }
}
