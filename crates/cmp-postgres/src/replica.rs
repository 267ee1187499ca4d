//! [`Replica`]: which replica of the service holds a lease, written into every lease owner.

use std::sync::Arc;

/// The replica id, shared by the ports of one store.
#[derive(Debug, Clone)]
pub(crate) struct Replica(pub(crate) Arc<str>);

impl Replica {
    /// The stored form of a lease owner: `<replica>/<owner>`, so that a row names the replica
    /// holding it. Every statement that writes or compares an owner goes through here, so the
    /// prefix is invisible to the port's callers.
    pub(crate) fn owner(&self, owner: &cmp_application::LeaseOwner) -> String {
        format!("{}/{}", self.0, owner.as_str())
    }
}
