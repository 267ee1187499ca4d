//! `cmp-server check-graph`: can the configured credentials reach the configured tenant?
//!
//! It reads the configuration, asks for a token with the configured credential, lists the
//! tenant's partners through the same client the service uses, and prints a verdict an
//! operator can act on: which credential it used, and the AADSTS code (or the identity
//! endpoint's error) when the token is refused. `docs/graph-credentials.md` shows the output.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use cmp_application::GraphGateway;
use cmp_graph_client::{Credential, TokenError, TokenSource};

use crate::config::{GraphMode, Settings};
use crate::system::{SystemClock, TokioSleeper};

/// Runs the check, writing its report to `out`; `Ok(true)` when Graph answered.
///
/// # Errors
/// Only when `out` cannot be written or the client cannot be built.
pub async fn check_graph(settings: &Settings, out: &mut impl Write) -> anyhow::Result<bool> {
    if settings.graph.mode != GraphMode::Graph {
        writeln!(
            out,
            "FAIL: graph.mode is not \"graph\"; set CMP__GRAPH__MODE=graph to check Microsoft Graph"
        )?;
        return Ok(false);
    }
    let resolved = settings
        .graph
        .client
        .resolve(settings.graph.tenant_id)
        .map_err(|e| anyhow::anyhow!(e))?;
    let credential = &resolved.credential;
    let client_id = if resolved.client_id.is_empty() {
        "(system-assigned identity)"
    } else {
        &resolved.client_id
    };
    writeln!(out, "tenant:     {}", resolved.tenant_id)?;
    writeln!(out, "client id:  {client_id}")?;
    writeln!(out, "credential: {credential}")?;
    writeln!(out, "token URL:  {}", resolved.token_endpoint())?;
    writeln!(out, "Graph:      {}", resolved.graph_root)?;
    // The check sends no Graph request of its own pacing; a pacer of the configured budgets
    // keeps the client's contract.
    let pacer = Arc::new(cmp_application::InProcessPacer::new(resolved.pacer_rates()));
    let connection = cmp_graph_client::connect(
        &resolved,
        Arc::new(SystemClock),
        Arc::new(TokioSleeper),
        pacer,
    )
    .context("building the Graph client")?;

    match connection.tokens.token(None).await {
        Ok(_) => writeln!(out, "token:      acquired")?,
        Err(error) => {
            writeln!(out, "token:      REFUSED")?;
            describe_token_error(&error, out)?;
            writeln!(
                out,
                "FAIL (credential: {credential}): no token; {}",
                token_advice(credential)
            )?;
            return Ok(false);
        }
    }

    match connection.client.list_partners().await {
        Ok(partners) => {
            writeln!(out, "partners:   {}", partners.len())?;
            for partner in &partners {
                writeln!(
                    out,
                    "  {}  {}",
                    partner.graph_id,
                    partner
                        .display_name
                        .as_deref()
                        .unwrap_or("(no display name)")
                )?;
            }
            writeln!(
                out,
                "OK (credential: {credential}): Microsoft Graph answered for this tenant"
            )?;
            Ok(true)
        }
        Err(error) => {
            writeln!(out, "list:       FAILED: {error}")?;
            writeln!(
                out,
                "FAIL (credential: {credential}): Graph refused or failed the list; a 403 usually means the app lacks DeviceManagementServiceConfig.ReadWrite.All (admin consent) or the tenant has no Intune licence"
            )?;
            Ok(false)
        }
    }
}

/// What to look at when `credential` got no token.
fn token_advice(credential: &Credential) -> &'static str {
    match credential {
        Credential::Secret(_) | Credential::Certificate { .. } => {
            "fix the app registration or the credential and run the check again"
        }
        Credential::WorkloadIdentity { .. } => {
            "check the app's federated identity credential (issuer, subject, audience) against the service account and the token file, then run the check again"
        }
        Credential::ManagedIdentity(_) => {
            "check that the managed identity is assigned to this resource (for a user-assigned one, its client id) and reachable, then run the check again"
        }
    }
}

fn describe_token_error(error: &TokenError, out: &mut impl Write) -> std::io::Result<()> {
    match error {
        TokenError::Configuration {
            error,
            error_codes,
            description,
            trace_id,
            correlation_id,
        } => {
            let codes: Vec<String> = error_codes
                .iter()
                .map(|code| format!("AADSTS{code}"))
                .collect();
            let codes = if codes.is_empty() {
                "-".to_owned()
            } else {
                codes.join(", ")
            };
            writeln!(out, "  error:          {error}")?;
            writeln!(out, "  codes:          {codes}")?;
            writeln!(out, "  description:    {description}")?;
            writeln!(
                out,
                "  trace id:       {}",
                trace_id.as_deref().unwrap_or("-")
            )?;
            writeln!(
                out,
                "  correlation id: {}",
                correlation_id.as_deref().unwrap_or("-")
            )
        }
        other => writeln!(out, "  {other}"),
    }
}
