//! [`store_contract_tests!`](crate::store_contract_tests): one `#[test]` per contract test of
//! each module, for the backend an adapter names. The lists are checked against the modules'
//! sources by this crate's own test, so a new contract test cannot be left out.

/// Instantiates every contract test against a store: `store_contract_tests!(crate::path::backend)`,
/// where `backend` is a `fn() -> Backend` (an absolute path: the tests live in nested modules).
#[macro_export]
macro_rules! store_contract_tests {
    ($backend:path) => {
        mod partner_store {
            $crate::store_contract_module!($backend, partner_store, [
                insert_partner_writes_partner_assignments_outbox_first_attempt_and_audit,
                insert_partner_returns_duplicate_display_name_and_writes_nothing_for_the_same_name_in_another_case_and_spacing,
                the_same_display_name_in_another_tenant_is_accepted,
                insert_partner_writes_nothing_when_a_later_step_fails,
                a_partner_id_collision_is_unexpected_and_not_a_duplicate_display_name,
                get_partner_round_trips_every_property_exactly,
                get_partner_round_trips_extreme_and_sub_microsecond_heartbeats,
                get_partner_returns_none_for_an_unknown_id,
                get_partner_reports_a_stored_row_that_no_longer_parses_as_unexpected,
                finish_delivery_delivered_records_graph_ids_and_state,
                finish_delivery_retry_sets_state_and_next_attempt_at,
                finish_delivery_dead_stores_the_reason_and_clears_the_lease,
                finish_delivery_fails_and_changes_nothing_when_the_outbox_row_does_not_exist,
                finish_delivery_refuses_and_changes_nothing_when_the_attempt_is_not_the_latest,
                finish_delivery_refuses_and_changes_nothing_when_the_row_delivers_another_partner,
                undo_rejected_create_removes_partner_assignments_outbox_and_attempts_but_keeps_both_audit_entries,
                the_schema_refuses_rows_the_domain_cannot_hold,
                concurrent_creates_all_commit_through_the_single_writer,
            ]);
        }
        mod partner_changes {
            $crate::store_contract_module!($backend, partner_changes, [
                update_partner_folds_into_a_create_never_applied_and_gives_it_the_new_name,
                update_partner_queues_an_update_row_when_the_create_may_have_reached_graph,
                a_second_update_queues_another_row_rather_than_folding_into_the_first,
                update_partner_returns_duplicate_display_name_and_writes_nothing,
                update_partner_may_keep_its_own_name_in_another_case,
                update_partner_returns_not_found_and_writes_nothing_for_a_missing_deleted_or_foreign_partner,
                delete_partner_removes_a_partner_that_never_reached_graph_with_all_its_rows,
                delete_partner_also_cancels_the_rows_queued_behind_a_create_that_never_reached_graph,
                delete_partner_marks_the_partner_deleted_and_queues_a_delete_row_when_graph_may_hold_it,
                delete_partner_returns_not_found_and_writes_nothing_for_a_missing_deleted_or_foreign_partner,
                a_deleted_partner_keeps_its_name_reserved_until_graph_confirms_the_delete,
                confirming_the_delete_of_a_partner_graph_never_held_keeps_the_tombstones_graph_id,
                undo_rejected_create_also_removes_the_rows_queued_behind_the_refused_create,
                update_partner_applies_the_change_to_the_partner_as_stored_when_the_write_runs,
                update_partner_writes_nothing_when_the_change_refuses_the_stored_partner,
            ]);
        }
        mod partner_listing {
            $crate::store_contract_module!($backend, partner_listing, [
                every_comparison_on_every_field_selects_what_the_model_selects,
                comparisons_select_the_partners_named_by_hand,
                and_or_not_nest_as_the_expression_says_whatever_sql_precedence_would_do,
                startswith_on_display_name_is_case_insensitive_including_non_ascii,
                startswith_treats_percent_underscore_and_backslash_as_plain_characters,
                each_sort_key_orders_ascending_and_descending_with_ties_broken_by_id,
                several_sort_keys_order_by_each_in_turn,
                a_page_carries_each_partner_whole_with_its_assignments_in_order,
                next_is_set_exactly_when_more_partners_follow_the_page,
                the_cursor_holds_the_sort_key_values_of_the_last_item_in_key_order,
                skip_passes_over_partners_on_a_first_page_only,
                count_and_total_honour_the_filter_and_leave_out_deleted_partners_and_other_tenants,
                a_cursor_that_does_not_fit_the_sort_keys_is_unexpected,
                a_comparison_with_a_literal_of_another_type_is_unexpected,
                the_stored_state_order_agrees_with_the_enums_declared_order,
                keyset_paging_through_1000_partners_returns_each_once_in_order_while_partners_come_and_go,
            ]);
        }
        mod outbox {
            $crate::store_contract_module!($backend, outbox, [
                recover_expired_leases_turns_only_lapsed_in_flight_rows_unknown_and_due_at_once,
                claim_due_takes_due_pending_and_unknown_rows_oldest_due_first_up_to_the_limit,
                claim_due_returns_the_partner_as_stored_with_the_rows_bookkeeping,
                claim_due_breaks_a_tie_in_due_time_by_creation_time,
                claim_due_skips_rows_not_yet_due,
                claim_due_skips_rows_of_other_tenants,
                claim_due_never_takes_rows_in_flight_delivered_or_dead,
                claim_due_never_claims_a_natural_key_that_has_a_row_in_flight,
                a_row_in_flight_in_another_tenant_does_not_block_the_same_natural_key,
                claim_due_never_takes_two_rows_of_one_natural_key_in_one_claim,
                claim_due_leases_the_rows_to_the_owner_until_the_given_expiry,
                claim_due_fails_and_claims_nothing_when_a_claimed_partner_cannot_be_read,
                two_concurrent_claims_never_return_the_same_row,
                claims_from_two_replicas_on_one_database_never_return_the_same_row,
                claim_due_with_a_limit_of_zero_claims_nothing,
                release_hands_a_claimed_row_back_unleased_in_the_given_state_and_due_time,
                release_refuses_a_row_not_in_flight_and_a_state_other_than_pending_or_unknown,
                start_delivery_records_the_attempt_and_counts_it_on_the_row,
                start_delivery_sets_first_attempt_at_when_unset,
                start_delivery_returns_lease_lost_and_records_nothing_unless_the_row_is_in_flight_and_leased_to_the_caller,
                start_delivery_renews_the_lease_of_its_holder_to_the_given_expiry,
                start_delivery_refuses_an_attempt_number_already_used_and_records_nothing,
                sync_state_returns_the_row_with_its_attempts_in_order,
                sync_state_reads_the_partners_latest_row,
                sync_state_returns_none_for_a_partner_without_a_row,
                list_rows_returns_rows_oldest_first_filtered_by_state_and_limited_without_history,
                count_rows_counts_every_state_including_empty_ones,
                oldest_waiting_created_at_is_that_of_the_oldest_pending_or_unknown_row,
                requeue_dead_moves_a_dead_row_to_unknown_due_now_with_a_new_window_and_keeps_its_history,
                requeue_dead_reports_false_and_changes_nothing_for_a_row_that_is_not_dead,
                the_schema_keeps_a_dead_reason_exactly_on_dead_rows,
                an_update_row_waits_behind_its_partners_create_even_when_due_first,
                a_delete_row_waits_behind_an_in_flight_update_and_is_claimed_with_its_deleted_partner,
                a_younger_row_of_a_natural_key_waits_behind_an_older_row_of_another_partner,
                a_dead_row_holds_no_younger_row_back,
            ]);
        }
    };
}

/// One module's tests: a `#[test]` each, running the contract test of that name through
/// [`run`](crate::run). Used by [`store_contract_tests!`](crate::store_contract_tests).
#[doc(hidden)]
#[macro_export]
macro_rules! store_contract_module {
    ($backend:path, $module:ident, [$($test:ident),* $(,)?]) => {
        $(
            #[test]
            fn $test() {
                $crate::run($backend, $crate::$module::$test);
            }
        )*
    };
}

#[cfg(test)]
mod tests {
    /// The test functions of a module's source: `pub async fn name()` with no parameters.
    fn tests_in(source: &str) -> Vec<&str> {
        source
            .split("\npub async fn ")
            .skip(1)
            .filter_map(|rest| rest.split_once("()").map(|(name, _)| name))
            .filter(|name| !name.contains('('))
            .collect()
    }

    #[test]
    fn the_macro_lists_every_contract_test_of_every_module() {
        let macro_source = include_str!("suite.rs");
        for (module, source) in [
            ("partner_store", include_str!("partner_store.rs")),
            ("partner_changes", include_str!("partner_changes.rs")),
            ("partner_listing", include_str!("partner_listing.rs")),
            ("outbox", include_str!("outbox.rs")),
        ] {
            for test in tests_in(source) {
                assert!(
                    macro_source.contains(&format!("                {test},\n")),
                    "{module}::{test} is missing from store_contract_tests!"
                );
            }
        }
    }
}
