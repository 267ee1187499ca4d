//! Building the HTTP side of the Graph client: the one reqwest client (timeouts, redirect
//! policy, no proxy, `User-Agent`), and [`connect`], which wires it to the token provider and
//! the gateway from one configuration.

use std::sync::Arc;

use anyhow::Context as _;
use cmp_application::{Clock, Pacer, Sleeper};
use reqwest::redirect;

use super::HttpGraphClient;
use crate::settings::ResolvedGraphClient;
use crate::token::{TokenProvider, TokenSource};

/// The `User-Agent` of every request: `cmp-onboarding/<version>`, so that Graph's logs and
/// Microsoft support can tell our traffic apart.
pub const USER_AGENT: &str = concat!("cmp-onboarding/", env!("CARGO_PKG_VERSION"));

/// Redirects followed at most, as the Microsoft SDKs' redirect handler does.
const MAX_REDIRECTS: usize = 5;

/// Builds the reqwest client for Graph calls: the configured connect and whole-request
/// timeouts, at most five redirects and never from https to http, no proxy, our User-Agent.
///
/// # Errors
/// When reqwest cannot build the client (its TLS backend fails to initialise).
pub fn build_http_client(config: &ResolvedGraphClient) -> anyhow::Result<reqwest::Client> {
    install_tls_provider();
    reqwest::Client::builder()
        .connect_timeout(config.connect_timeout)
        .timeout(config.request_timeout)
        .redirect(redirect_policy())
        // No proxy, deliberately: reqwest would otherwise pick one up from HTTP(S)_PROXY in
        // the environment, silently routing bearer tokens and secrets through whatever host
        // that names (and breaking loopback tests on machines that set it). A deployment that
        // needs a proxy must get it as explicit configuration, not by accident.
        .no_proxy()
        .user_agent(USER_AGENT)
        // Referer would tell a redirect target which Graph URL we came from; nothing needs it.
        .referer(false)
        // reqwest's default retry policy stays: it only resends on protocol-level refusals
        // (e.g. HTTP/2 REFUSED_STREAM) that guarantee the server did not process the request,
        // which is safe even for a POST. Every other resend is decided by the retry engine.
        .build()
        .context("building the HTTP client for Microsoft Graph")
}

/// At most five redirects, never from https to http. reqwest itself drops `Authorization`
/// when the scheme, host or port changes.
fn redirect_policy() -> redirect::Policy {
    redirect::Policy::custom(|attempt| {
        // `previous` starts with the original URL, so its length is the redirect number.
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        let downgrade = attempt
            .previous()
            .last()
            .is_some_and(|from| from.scheme() == "https" && attempt.url().scheme() != "https");
        if downgrade {
            attempt.error("refusing to follow a redirect from https to http")
        } else {
            attempt.follow()
        }
    })
}

/// The Graph client and its token provider, wired from one configuration by [`connect`].
pub struct GraphConnection {
    /// The token provider, shared with `client`: the binary's credential check asks it for a
    /// token on its own, to tell a credential problem from a Graph problem.
    pub tokens: Arc<TokenProvider>,
    /// The gateway the service uses.
    pub client: HttpGraphClient,
}

/// Builds the token provider and the Graph client of `config`, sharing one reqwest client
/// ([`build_http_client`]), the client paced by the tenant's `pacer`; each token request is limited to the token timeout by the provider.
///
/// # Errors
/// When the reqwest client cannot be built, or the configured credential is unusable
/// ([`crate::token::InvalidCredential`]).
pub fn connect(
    config: &ResolvedGraphClient,
    clock: Arc<dyn Clock>,
    sleeper: Arc<dyn Sleeper>,
    pacer: Arc<dyn Pacer>,
) -> anyhow::Result<GraphConnection> {
    let http = build_http_client(config)?;
    let tokens = Arc::new(
        TokenProvider::new(http.clone(), config, Arc::clone(&clock))
            .context("building the token provider")?,
    );
    let client = HttpGraphClient::with_http_client(
        config,
        http,
        Arc::clone(&tokens) as Arc<dyn TokenSource>,
        clock,
        sleeper,
        pacer,
    );
    Ok(GraphConnection { tokens, client })
}

/// Makes ring rustls' process-wide crypto provider. The workspace builds reqwest without a
/// provider of its own (aws-lc-rs, a long C build), and reqwest refuses to build a client until
/// a process has one.
pub(crate) fn install_tls_provider() {
    // An error means a provider is installed already, which is all that is needed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
