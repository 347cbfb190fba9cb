//! What the middleware records of the client: IP and user agent, per the configuration.

use actix_web::dev::ServiceRequest;
use actix_web::http::header::{HeaderValue, USER_AGENT};
use cloakroom::integration::{forwarded_ip, RequestClient};
use cloakroom::{ClientIpSource, SessionConfig};

/// The client of `request`. [`ClientIpSource::ConnectInfo`] is the connection's peer
/// address in actix-web.
pub(crate) fn request_client(request: &ServiceRequest, config: &SessionConfig) -> RequestClient {
    let ip = match &config.client_ip {
        ClientIpSource::ConnectInfo => request.peer_addr().map(|peer| peer.ip()),
        ClientIpSource::TrustedHeader(name) => forwarded_ip(
            request
                .headers()
                .get_all(name.as_str())
                .map(HeaderValue::as_bytes),
            config.trusted_proxy_hops,
        ),
        ClientIpSource::None => None,
    };
    RequestClient {
        ip,
        user_agent: request
            .headers()
            .get(USER_AGENT)
            .and_then(|agent| http::HeaderValue::from_bytes(agent.as_bytes()).ok()),
    }
}
