//! [`HttpSettings`]: where and how the API listens.

use serde::Deserialize;

/// Configuration of the HTTP adapter (`[http]` in the config files).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Address to bind, e.g. `127.0.0.1`.
    pub host: String,
    /// Port to bind; 0 lets the OS choose (tests).
    pub port: u16,
    /// Path the resource is served under, `/beta` like Graph's.
    pub root_path: String,
    /// The root URL callers reach us at (with the root path), for `@odata.context`, `Location`
    /// and paging links. Empty: derived from the bound address, fit only for local use.
    pub public_base_url: String,
    /// Largest accepted request body, in bytes.
    pub body_limit_bytes: usize,
    /// Whole-request time limit, in milliseconds.
    pub request_timeout_ms: u64,
}

impl HttpSettings {
    /// Checks values the type system cannot.
    ///
    /// # Errors
    /// A message naming the offending key.
    pub fn validate(&self) -> Result<(), String> {
        let root = &self.root_path;
        if !(root.is_empty() || root.starts_with('/'))
            || (root.len() > 1 && root.ends_with('/'))
            || root.contains("//")
        {
            return Err(format!(
                "http.root_path must be empty or start with '/' and not end with '/', got '{root}'"
            ));
        }
        let url = &self.public_base_url;
        let absolute = url.starts_with("http://") || url.starts_with("https://");
        if !url.is_empty() && !absolute {
            return Err(format!(
                "http.public_base_url must be an absolute http(s) URL, got '{}'",
                self.public_base_url
            ));
        }
        if self.public_base_url.ends_with('/') {
            return Err("http.public_base_url must not end with '/'".into());
        }
        if self.body_limit_bytes == 0 {
            return Err("http.body_limit_bytes must be greater than 0".into());
        }
        if self.request_timeout_ms == 0 {
            return Err("http.request_timeout_ms must be greater than 0".into());
        }
        Ok(())
    }
}
