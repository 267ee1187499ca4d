//! PLACEHOLDER while the Graph client is being written; replaced in full.

/// Placeholder.
pub struct HttpGraphClient;
