//! OData type names and instance annotations.

/// The Graph namespace every type name here lives in.
pub const NAMESPACE: &str = "microsoft.graph.";

/// The entity's type name.
pub const PARTNER_TYPE: &str = "complianceManagementPartner";

/// The assignment complex type's name.
pub const ASSIGNMENT_TYPE: &str = "complianceManagementPartnerAssignment";

/// The `@odata.type` value Graph emits for `name`: always `#microsoft.graph.<name>`. SDKs
/// match target types against exactly that form (`docs/wire-contract.md`, "@odata.type"), so
/// no other is sent.
pub fn qualified(name: &str) -> String {
    format!("#{NAMESPACE}{name}")
}

/// The short type name in an `@odata.type` value as clients send it: with or without `#`,
/// namespace required, any letter case. Returns the part after the namespace, as given.
pub fn short_type_name(value: &str) -> Option<&str> {
    let value = value.strip_prefix('#').unwrap_or(value);
    let (namespace, name) = value.split_at_checked(NAMESPACE.len())?;
    (namespace.eq_ignore_ascii_case(NAMESPACE) && !name.is_empty()).then_some(name)
}

/// Whether a JSON member is an OData control annotation (`@odata.context`, `@odata.etag`,
/// `displayName@odata.type`, ...) that a request may carry and the service ignores.
pub fn is_ignored_annotation(key: &str) -> bool {
    key.split_once('@')
        .is_some_and(|(_, annotation)| annotation.starts_with("odata."))
        && key != "@odata.type"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_are_accepted_with_or_without_hash_in_any_case() {
        assert_eq!(
            short_type_name("#microsoft.graph.groupAssignmentTarget"),
            Some("groupAssignmentTarget")
        );
        assert_eq!(
            short_type_name("microsoft.graph.groupAssignmentTarget"),
            Some("groupAssignmentTarget")
        );
        assert_eq!(
            short_type_name("#Microsoft.Graph.GroupAssignmentTarget"),
            Some("GroupAssignmentTarget")
        );
        assert_eq!(short_type_name("groupAssignmentTarget"), None);
        assert_eq!(short_type_name("#microsoft.graph."), None);
        assert_eq!(short_type_name(""), None);
    }

    #[test]
    fn only_odata_annotations_other_than_the_type_are_ignored() {
        assert!(is_ignored_annotation("@odata.context"));
        assert!(is_ignored_annotation("@odata.etag"));
        assert!(is_ignored_annotation("displayName@odata.type"));
        assert!(!is_ignored_annotation("@odata.type"));
        assert!(!is_ignored_annotation("displayName"));
        assert!(!is_ignored_annotation("@microsoft.graph.conflictBehavior"));
    }
}
