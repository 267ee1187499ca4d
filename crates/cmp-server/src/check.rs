//! `cmp-server check-graph`: can the configured credentials reach the configured tenant?
//!
//! It reads the configuration, asks Entra ID for a token, lists the tenant's partners through
//! the same client the service uses, and prints a verdict an operator can act on (with the
//! AADSTS code when the token is refused).

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use cmp_application::GraphGateway;
use cmp_graph_client::{TokenError, TokenSource};

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
    writeln!(out, "tenant:    {}", resolved.tenant_id)?;
    writeln!(out, "client id: {}", resolved.client_id)?;
    writeln!(out, "token URL: {}", resolved.token_url)?;
    writeln!(out, "Graph:     {}", resolved.graph_root)?;
    let connection =
        cmp_graph_client::connect(&resolved, Arc::new(SystemClock), Arc::new(TokioSleeper))
            .context("building the Graph client")?;

    match connection.tokens.token(None).await {
        Ok(_) => writeln!(out, "token:     acquired")?,
        Err(error) => {
            writeln!(out, "token:     REFUSED")?;
            describe_token_error(&error, out)?;
            writeln!(
                out,
                "FAIL: no token; fix the app registration or the credential and run the check again"
            )?;
            return Ok(false);
        }
    }

    match connection.client.list_partners().await {
        Ok(partners) => {
            writeln!(out, "partners:  {}", partners.len())?;
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
            writeln!(out, "OK: Microsoft Graph answered for this tenant")?;
            Ok(true)
        }
        Err(error) => {
            writeln!(out, "list:      FAILED: {error}")?;
            writeln!(
                out,
                "FAIL: Graph refused or failed the list; a 403 usually means the app lacks DeviceManagementServiceConfig.ReadWrite.All (admin consent) or the tenant has no Intune licence"
            )?;
            Ok(false)
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
            writeln!(out, "  error:          {error}")?;
            writeln!(out, "  codes:          {}", codes.join(", "))?;
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
