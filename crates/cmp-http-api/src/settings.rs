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
    /// How long a client may take to send the request headers, in milliseconds.
    pub header_read_timeout_ms: u64,
    /// How long a client may take to send the request body, in milliseconds.
    pub body_read_timeout_ms: u64,
    /// Requests served at once; more are shed with 503.
    pub max_concurrent_requests: usize,
    /// Writes per second allowed to one caller, on average.
    pub writes_per_caller_per_second: f64,
    /// Writes one caller may send in a burst.
    pub write_burst: u32,
    /// How long requests in flight may take to finish at shutdown, in milliseconds.
    pub shutdown_grace_ms: u64,
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
        for (key, value) in [
            ("http.request_timeout_ms", self.request_timeout_ms),
            ("http.header_read_timeout_ms", self.header_read_timeout_ms),
            ("http.body_read_timeout_ms", self.body_read_timeout_ms),
            (
                "http.max_concurrent_requests",
                self.max_concurrent_requests as u64,
            ),
            ("http.write_burst", u64::from(self.write_burst)),
        ] {
            if value == 0 {
                return Err(format!("{key} must be greater than 0"));
            }
        }
        if !(self.writes_per_caller_per_second.is_finite()
            && self.writes_per_caller_per_second > 0.0)
        {
            return Err("http.writes_per_caller_per_second must be a positive number".into());
        }
        Ok(())
    }
}
