//! [`HttpGraphClient`]: the real [`GraphGateway`], Microsoft Graph's beta
//! `complianceManagementPartners` collection over reqwest.
//!
//! Each gateway method renders its request, hands it to the retry engine as one logical call,
//! and maps how the call ended onto the application's outcome types.
//!
//! # Layout
//! - this file: [`HttpGraphClient`] and its [`GraphGateway`] methods (URLs, paging, bodies).
//! - `connection`: the reqwest client ([`build_http_client`]) and [`connect`].
//! - `retry_engine`: one logical call: slots of the tenant's pacer, tokens, sending, in-call
//!   retries.
//! - `classify`: outcome classes, Graph error bodies, `WWW-Authenticate` claims.
//! - `adoption`: adopting a pre-seeded record after Graph's routing refusal.

mod adoption;
mod classify;
pub(crate) mod connection;
mod retry_engine;

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use cmp_application::{
    Clock, CreateOutcome, GraphCallResult, GraphGateway, GraphReadError, GraphResponseMeta,
    GraphWriteResult, NamedPartners, Pacer, RemotePartner, Sleeper, WriteOutcome,
};
use cmp_domain::Partner;
use cmp_graph_model::partner::render_partner_for_graph;
use reqwest::{Method, Url};
use serde::Deserialize;
use uuid::Uuid;

use self::adoption::adopt_preseeded;
use self::classify::{Exchange, Read, WriteKind, create_outcome, read_result, write_outcome};
pub use self::connection::{GraphConnection, USER_AGENT, build_http_client, connect};
use self::retry_engine::{Call, CallKind, RetryBudget, RetryEngine};
use crate::graph_metrics::{self, GraphOperation};
use crate::settings::ResolvedGraphClient;
use crate::token::TokenSource;

/// The Microsoft Graph gateway of one tenant. Every request it sends beyond the first of a
/// call (which the caller has taken a slot of the tenant's pacer for) takes a slot of that
/// pacer first, and every 429 pauses the tenant in it.
pub struct HttpGraphClient {
    /// Sends every request, with the in-call retries.
    engine: RetryEngine,
    /// `{root}/deviceManagement/complianceManagementPartners`.
    collection: Url,
    /// The only origin (scheme, host, port) that ever receives our bearer token; a
    /// `@odata.nextLink` elsewhere is refused.
    graph_root: Url,
    /// Pages of a list followed at most: a guard against next-link loops.
    max_pages: u32,
    /// Adopt a pre-seeded record when Graph refuses a create with its routing error.
    adopt_preseeded: bool,
}

impl std::fmt::Debug for HttpGraphClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpGraphClient")
            .field("graph_root", &self.graph_root.as_str())
            .field("max_retries", &self.engine.max_retries())
            .field("retry_budget", &self.engine.retry_budget())
            .field("max_pages", &self.max_pages)
            .field("adopt_preseeded", &self.adopt_preseeded)
            .finish_non_exhaustive()
    }
}

/// One page of the collection.
#[derive(Deserialize)]
struct Page {
    value: Vec<Entity>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
}

/// The part of a partner reconciliation reads.
#[derive(Deserialize)]
struct Entity {
    id: String,
    #[serde(rename = "displayName", default)]
    display_name: Option<String>,
}

impl From<Entity> for RemotePartner {
    fn from(entity: Entity) -> Self {
        Self {
            graph_id: entity.id,
            display_name: entity.display_name,
        }
    }
}

impl HttpGraphClient {
    /// A client for the tenant and Graph root of `config`, with its own reqwest client
    /// ([`build_http_client`]).
    ///
    /// # Errors
    /// When the reqwest client cannot be built.
    pub fn new(
        config: &ResolvedGraphClient,
        tokens: Arc<dyn TokenSource>,
        clock: Arc<dyn Clock>,
        sleeper: Arc<dyn Sleeper>,
        pacer: Arc<dyn Pacer>,
    ) -> anyhow::Result<Self> {
        let http = build_http_client(config)?;
        Ok(Self::with_http_client(
            config, http, tokens, clock, sleeper, pacer,
        ))
    }

    /// A client that sends through `http`, e.g. the one [`connect`] shares with the token
    /// provider. `http` should come from [`build_http_client`]: its timeouts, redirect policy
    /// and proxy choice are part of this client's contract.
    pub fn with_http_client(
        config: &ResolvedGraphClient,
        http: reqwest::Client,
        tokens: Arc<dyn TokenSource>,
        clock: Arc<dyn Clock>,
        sleeper: Arc<dyn Sleeper>,
        pacer: Arc<dyn Pacer>,
    ) -> Self {
        let mut collection = config.graph_root.clone();
        // The settings only accept http and https roots, which always have path segments.
        if let Ok(mut segments) = collection.path_segments_mut() {
            segments
                .pop_if_empty()
                .extend(["deviceManagement", "complianceManagementPartners"]);
        }
        Self {
            engine: RetryEngine::new(config, http, tokens, clock, sleeper, pacer),
            collection,
            graph_root: config.graph_root.clone(),
            max_pages: config.max_pages,
            adopt_preseeded: config.adopt_preseeded,
        }
    }

    /// Sets the tenant-pause gauge to what is left of the current `Retry-After` pause. The
    /// binary calls it whenever metrics are scraped, so the gauge counts down between 429s
    /// instead of keeping the length the pause had when it began.
    pub async fn report_tenant_pause(&self) {
        metrics::gauge!(graph_metrics::TENANT_PAUSE_SECONDS)
            .set(self.engine.pause_left().await.as_secs_f64());
    }

    /// `{collection}/{id}`, the id percent-encoded as one path segment.
    fn item_url(&self, graph_id: &str) -> Url {
        let mut url = self.collection.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.push(graph_id);
        }
        url
    }

    /// GETs `url` as one logical call; `first_paced` when the caller took the slot of its
    /// first request.
    async fn read(
        &self,
        operation: GraphOperation,
        url: &Url,
        client_request_id: Uuid,
        budget: &mut RetryBudget,
        first_paced: bool,
    ) -> Result<Read, GraphReadError> {
        let call = Call {
            kind: CallKind::Read,
            operation,
            method: Method::GET,
            url,
            body: None,
            client_request_id,
            first_paced,
        };
        read_result(self.engine.execute(&call, budget).await)
    }

    /// Lists every object, following each `@odata.nextLink`; every page after the first
    /// takes a read slot of its own, the first too unless `first_paced`.
    async fn list_all(&self, first_paced: bool) -> Result<Vec<RemotePartner>, GraphReadError> {
        // One id for the whole listing, so Graph's logs tie its pages together. Each page
        // gets `max_retries`; the waiting budget is shared by all of them.
        let client_request_id = Uuid::new_v4();
        let mut budget = self.engine.budget();
        let mut url = self.collection.clone();
        let mut seen = HashSet::from([url.as_str().to_owned()]);
        let mut partners = Vec::new();
        for page_number in 1..=self.max_pages {
            let body = match self
                .read(
                    GraphOperation::List,
                    &url,
                    client_request_id,
                    &mut budget,
                    first_paced && page_number == 1,
                )
                .await?
            {
                Read::Found(body) => body,
                // A collection does not vanish: a 404 here is a refusal (wrong root, say).
                Read::NotFound(meta) => return Err(GraphReadError::Refused(meta)),
            };
            let page: Page = serde_json::from_slice(&body).map_err(|e| {
                GraphReadError::Malformed(format!("page {page_number} of the partner list: {e}"))
            })?;
            partners.extend(page.value.into_iter().map(RemotePartner::from));
            let Some(link) = page.next_link else {
                return Ok(partners);
            };
            // Followed verbatim, as Graph requires: no query option is added or changed.
            url = self.next_page_url(&link)?;
            if !seen.insert(url.as_str().to_owned()) {
                return Err(GraphReadError::Paging(format!(
                    "@odata.nextLink repeats an earlier page: {link}"
                )));
            }
        }
        Err(GraphReadError::Paging(format!(
            "the partner list has more than {} pages",
            self.max_pages
        )))
    }

    /// PATCHes Graph's object with every property of `partner`; `first_paced` when the caller
    /// took the slot.
    async fn update(
        &self,
        graph_id: &str,
        partner: &Partner,
        client_request_id: Uuid,
        first_paced: bool,
    ) -> GraphWriteResult {
        let body = match graph_body(partner) {
            Ok(body) => body,
            Err(meta) => {
                return GraphWriteResult {
                    outcome: WriteOutcome::Rejected,
                    meta,
                };
            }
        };
        let exchange = self
            .write(
                GraphOperation::Update,
                Method::PATCH,
                graph_id,
                Some(&body),
                client_request_id,
                first_paced,
            )
            .await;
        GraphWriteResult {
            outcome: write_outcome(&exchange, WriteKind::Update),
            meta: exchange.meta,
        }
    }

    /// Checks a `@odata.nextLink` before following it: an absolute URL on the configured
    /// Graph origin, since the bearer token goes with it.
    fn next_page_url(&self, link: &str) -> Result<Url, GraphReadError> {
        let url = Url::parse(link).map_err(|e| {
            GraphReadError::Paging(format!(
                "@odata.nextLink is not an absolute URL ({e}): {link}"
            ))
        })?;
        let same_origin = url.scheme() == self.graph_root.scheme()
            && url.host_str() == self.graph_root.host_str()
            && url.port_or_known_default() == self.graph_root.port_or_known_default();
        if !same_origin {
            return Err(GraphReadError::Paging(format!(
                "@odata.nextLink leaves the configured Graph host {}: {link}; not followed",
                self.graph_root.origin().ascii_serialization()
            )));
        }
        Ok(url)
    }

    /// PATCHes or DELETEs as one logical call; `first_paced` when the caller took the slot.
    async fn write(
        &self,
        operation: GraphOperation,
        method: Method,
        graph_id: &str,
        body: Option<&[u8]>,
        client_request_id: Uuid,
        first_paced: bool,
    ) -> Exchange {
        let url = self.item_url(graph_id);
        let call = Call {
            kind: CallKind::Write,
            operation,
            method,
            url: &url,
            body,
            client_request_id,
            first_paced,
        };
        self.engine.execute(&call, &mut self.engine.budget()).await
    }
}

#[async_trait]
impl GraphGateway for HttpGraphClient {
    #[tracing::instrument(
        name = "graph.create_partner",
        skip_all,
        fields(partner.id = %partner.id(), graph.client_request_id = %client_request_id)
    )]
    async fn create_partner(&self, partner: &Partner, client_request_id: Uuid) -> GraphCallResult {
        let body = match graph_body(partner) {
            Ok(body) => body,
            Err(meta) => {
                return GraphCallResult {
                    outcome: CreateOutcome::Rejected,
                    meta,
                };
            }
        };
        let call = Call {
            kind: CallKind::Create,
            operation: GraphOperation::Create,
            method: Method::POST,
            url: &self.collection,
            body: Some(&body),
            client_request_id,
            first_paced: true,
        };
        let exchange = self.engine.execute(&call, &mut self.engine.budget()).await;
        if self.adopt_preseeded && exchange.is_routing_refusal() {
            return adopt_preseeded(self, partner, client_request_id, exchange.meta).await;
        }
        GraphCallResult {
            outcome: create_outcome(&exchange),
            meta: exchange.meta,
        }
    }

    #[tracing::instrument(name = "graph.get_partner", skip_all, fields(graph.id = %graph_id))]
    async fn get_partner(&self, graph_id: &str) -> Result<Option<RemotePartner>, GraphReadError> {
        let url = self.item_url(graph_id);
        // A fresh id per logical read; its retries share it.
        match self
            .read(
                GraphOperation::Get,
                &url,
                Uuid::new_v4(),
                &mut self.engine.budget(),
                true,
            )
            .await?
        {
            Read::Found(body) => serde_json::from_slice::<Entity>(&body)
                .map(|entity| Some(entity.into()))
                .map_err(|e| GraphReadError::Malformed(format!("partner {graph_id}: {e}"))),
            Read::NotFound(_) => Ok(None),
        }
    }

    #[tracing::instrument(name = "graph.list_partners", skip_all)]
    async fn list_partners(&self) -> Result<Vec<RemotePartner>, GraphReadError> {
        self.list_all(true).await
    }
    #[tracing::instrument(name = "graph.find_partners_named", skip_all)]
    async fn find_partners_named(
        &self,
        display_name: &str,
    ) -> Result<NamedPartners, GraphReadError> {
        let mut url = self.collection.clone();
        // An OData string literal: a quote inside it is written twice.
        url.query_pairs_mut().append_pair(
            "$filter",
            &format!("displayName eq '{}'", display_name.replace('\'', "''")),
        );
        let body = match self
            .read(
                GraphOperation::List,
                &url,
                Uuid::new_v4(),
                &mut self.engine.budget(),
                true,
            )
            .await?
        {
            Read::Found(body) => body,
            Read::NotFound(meta) => return Err(GraphReadError::Refused(meta)),
        };
        let page: Page = serde_json::from_slice(&body).map_err(|e| {
            GraphReadError::Malformed(format!("the partners named like a display name: {e}"))
        })?;
        Ok(NamedPartners {
            partners: page.value.into_iter().map(RemotePartner::from).collect(),
            more: page.next_link.is_some(),
        })
    }

    #[tracing::instrument(
        name = "graph.update_partner",
        skip_all,
        fields(graph.id = %graph_id, graph.client_request_id = %client_request_id)
    )]
    async fn update_partner(
        &self,
        graph_id: &str,
        partner: &Partner,
        client_request_id: Uuid,
    ) -> GraphWriteResult {
        self.update(graph_id, partner, client_request_id, true)
            .await
    }

    #[tracing::instrument(
        name = "graph.delete_partner",
        skip_all,
        fields(graph.id = %graph_id, graph.client_request_id = %client_request_id)
    )]
    async fn delete_partner(&self, graph_id: &str, client_request_id: Uuid) -> GraphWriteResult {
        let exchange = self
            .write(
                GraphOperation::Delete,
                Method::DELETE,
                graph_id,
                None,
                client_request_id,
                true,
            )
            .await;
        GraphWriteResult {
            outcome: write_outcome(&exchange, WriteKind::Delete),
            meta: exchange.meta,
        }
    }
}

/// `partner` as the JSON body Graph takes. A partner that cannot be rendered (cannot happen
/// with derived `Serialize` on plain data, but a refusal is the honest answer if it ever does)
/// gives the meta of a refusal instead, and nothing is sent.
fn graph_body(partner: &Partner) -> Result<Vec<u8>, GraphResponseMeta> {
    serde_json::to_vec(&render_partner_for_graph(partner)).map_err(|error| {
        tracing::error!(error.message = %error, "the partner could not be rendered as Graph JSON");
        GraphResponseMeta {
            error_message: Some(format!(
                "the partner could not be rendered as JSON: {error}"
            )),
            ..GraphResponseMeta::default()
        }
    })
}
