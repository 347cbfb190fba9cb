//! The JSON API, free of any web framework: each endpoint takes the request's cloakroom
//! [`Session`] and its parsed input and returns the JSON answer or an [`ApiError`], so the
//! axum and actix-web routers (`routes_axum`, `routes_actix`) answer identically.
//! Errors are `{"error": "..."}`; nothing a client sends yields a 5xx.

use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use cloakroom::record::DeviceBindingState;
use cloakroom::{Session, SessionError, SessionHandle};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::{DemoEpochs, USERS};

/// The largest item or preference value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1024;
/// The largest request body.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
const PREF_PREFIX: &str = "pref.";

/// An API error: a status and `{"error": "..."}`.
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// The session error behind a store failure's 503. The routers answer from it, with
    /// this error's body: its response carries `Retry-After`, and is the one the session
    /// layer (or middleware) recognises as its own, to put the configured delay on.
    store_failure: Option<SessionError>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            store_failure: None,
        }
    }

    /// The response body.
    pub fn body(&self) -> Value {
        json!({ "error": self.message })
    }

    /// The session error to answer from, if this is a store failure.
    pub fn take_store_failure(&mut self) -> Option<SessionError> {
        self.store_failure.take()
    }
}

/// An endpoint's answer: the JSON body of a 200, or an error.
pub type ApiResult = Result<Value, ApiError>;

impl From<SessionError> for ApiError {
    fn from(error: SessionError) -> Self {
        const UNAVAILABLE: &str = "sessions are unavailable right now; try again shortly";
        if error.is_unavailable() {
            return Self {
                store_failure: Some(error),
                ..Self::new(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE)
            };
        }
        let message = error.to_string();
        let status = error.into_response().status();
        if status.is_server_error() {
            Self::new(status, UNAVAILABLE)
        } else {
            Self::new(status, message)
        }
    }
}

/// Parses a request body that must be declared as `application/json` (`declared_type` is
/// the `Content-Type` header, if any): another or no type is 415, malformed JSON or
/// missing fields 400. The routers refuse an oversized body (413) before this.
pub fn parse_json<T: DeserializeOwned>(
    declared_type: Option<&str>,
    body: &[u8],
) -> Result<T, ApiError> {
    require_json(declared_type)?;
    serde_json::from_slice(body).map_err(|error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("invalid JSON body: {error}"),
        )
    })
}

/// 415 unless `declared_type` (the `Content-Type` header) says JSON: checked before a body
/// is read, so a form's body is refused unread.
pub fn require_json(declared_type: Option<&str>) -> Result<(), ApiError> {
    if declares_json(declared_type) {
        Ok(())
    } else {
        Err(unsupported_media_type())
    }
}

/// Whether a `Content-Type` says `application/json` (parameters such as `charset`
/// allowed).
fn declares_json(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|value| value.split(';').next())
        .is_some_and(|media_type| media_type.trim().eq_ignore_ascii_case("application/json"))
}

fn unsupported_media_type() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "send the body as Content-Type: application/json",
    )
}

/// The refusal of a write whose body is declared as anything but JSON, which both
/// routers check before any handler runs.
///
/// An HTML form on another site can post `text/plain`, `application/x-www-form-urlencoded`
/// or `multipart/form-data` here without asking first (a login CSRF, or a forced write);
/// a cross-site `application/json` request needs a CORS preflight, which this app never
/// grants. [`parse_json`] also requires the header; this covers the endpoints without a
/// body, since a form always sends one of those types. `content_type` is `Some("")` for a
/// header that is not text.
pub fn refuse_undeclared_body(method: &Method, content_type: Option<&str>) -> Option<ApiError> {
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    (!safe && content_type.is_some() && !declares_json(content_type)).then(unsupported_media_type)
}

/// The refusal of a write a browser sent for a page of another origin, which both routers
/// check before any handler runs: `Sec-Fetch-Site` other than `same-origin` or `none` (a
/// typed URL), or, from browsers without it, an `Origin` that is not this host.
///
/// [`refuse_undeclared_body`] stops forms, but a page can also send a write with no body
/// and no `Content-Type` (`fetch` in `no-cors` mode, `navigator.sendBeacon`) without
/// asking first. `SameSite=Lax` keeps the cookie off such requests from other sites, not
/// from other origins of the same site: a sibling subdomain, or any other port of
/// `127.0.0.1`, could log the visitor out or revoke their other devices. Clients that are
/// not browsers send neither header and are not affected. `host` is the `Host` header.
pub fn refuse_cross_origin(
    method: &Method,
    fetch_site: Option<&str>,
    origin: Option<&str>,
    host: Option<&str>,
) -> Option<ApiError> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    let foreign = match (fetch_site, origin) {
        (Some(site), _) => !matches!(site.trim(), "same-origin" | "none"),
        (None, Some(origin)) => {
            let authority = origin.split_once("://").map(|(_, authority)| authority);
            authority.is_none_or(|authority| {
                !host.is_some_and(|host| host.trim().eq_ignore_ascii_case(authority.trim()))
            })
        }
        (None, None) => false,
    };
    foreign.then(|| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "a write from a page of another origin is refused",
        )
    })
}

/// The answer to a body over [`MAX_BODY_BYTES`].
pub fn body_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is over the {MAX_BODY_BYTES}-byte limit"),
    )
}

/// The device a person would recognise, from the recorded user agent.
fn device(user_agent: Option<&str>) -> String {
    cloakroom::device::describe(user_agent.unwrap_or_default())
}

fn rfc3339(at: Option<OffsetDateTime>) -> Value {
    at.and_then(|at| at.format(&Rfc3339).ok())
        .map_or(Value::Null, Value::String)
}

fn unauthorized() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "not logged in")
}

/// A value's size as a user means it: a string's own bytes, anything else its JSON.
fn check_size(what: &str, value: &Value) -> Result<(), ApiError> {
    let size = match value {
        Value::String(text) => text.len(),
        other => other.to_string().len(),
    };
    if size > MAX_VALUE_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{what} is {size} bytes; the limit is {MAX_VALUE_BYTES}"),
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
pub struct Credentials {
    username: String,
    password: String,
}

pub async fn login(session: &Session, credentials: Credentials) -> ApiResult {
    let known = USERS
        .iter()
        .any(|(user, password)| *user == credentials.username && *password == credentials.password);
    if !known {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "wrong username or password",
        ));
    }
    session.login(&credentials.username).await?;
    Ok(json!({ "user": credentials.username }))
}

pub async fn logout(session: &Session) -> ApiResult {
    session.logout().await?;
    Ok(json!({ "ok": true }))
}

pub async fn me(session: &Session) -> ApiResult {
    // A session loaded as bound came with a valid bound cookie: this is the device.
    let device_bound = matches!(
        session.device_binding().await?,
        Some(DeviceBindingState::Bound { .. })
    );
    match session.metadata().await? {
        Some(meta) if meta.user.is_some() => Ok(json!({
            "user": meta.user,
            "handle": meta.handle,
            "created_at": rfc3339(Some(meta.created_at)),
            "last_active_at": rfc3339(Some(meta.last_active_at)),
            "idle_expires_at": rfc3339(meta.idle_deadline),
            "absolute_expires_at": rfc3339(meta.absolute_deadline),
            "device_bound": device_bound,
        })),
        _ => Err(unauthorized()),
    }
}

#[derive(Deserialize)]
pub struct Item {
    item: String,
}

pub async fn cart(session: &Session) -> ApiResult {
    let items: Vec<String> = session.get("cart").await?.unwrap_or_default();
    Ok(json!({ "items": items }))
}

pub async fn add_to_cart(session: &Session, Item { item }: Item) -> ApiResult {
    if item.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "item must not be empty",
        ));
    }
    check_size("the item", &Value::String(item.clone()))?;
    session
        .update("cart", move |cart: Option<Vec<String>>| {
            let mut cart = cart.unwrap_or_default();
            cart.push(item.clone());
            cart
        })
        .await?;
    // Save now, so the answer shows the cart as committed, concurrent appends included.
    session.save().await?;
    cart(session).await
}

pub async fn counter(session: &Session) -> ApiResult {
    session
        .update("counter", |n: Option<u64>| n.unwrap_or(0) + 1)
        .await?;
    session.save().await?;
    let value: u64 = session.get("counter").await?.unwrap_or(0);
    Ok(json!({ "value": value }))
}

#[derive(Deserialize)]
pub struct PrefValue {
    value: Value,
}

pub async fn set_pref(
    session: &Session,
    name: String,
    PrefValue { value }: PrefValue,
) -> ApiResult {
    check_size("the preference name", &Value::String(name.clone()))?;
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || "_-.".contains(c));
    if !valid {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "preference names are letters, digits, _ - and .",
        ));
    }
    check_size("the preference value", &value)?;
    session
        .insert(&format!("{PREF_PREFIX}{name}"), &value)
        .await?;
    Ok(json!({ name: value }))
}

pub async fn prefs(session: &Session) -> ApiResult {
    let mut prefs = Map::new();
    for key in session.keys().await? {
        if let Some(name) = key.strip_prefix(PREF_PREFIX) {
            if let Some(value) = session.get::<Value>(&key).await? {
                prefs.insert(name.to_owned(), value);
            }
        }
    }
    Ok(Value::Object(prefs))
}

pub async fn sessions(session: &Session) -> ApiResult {
    if session.user().await?.is_none() {
        return Err(unauthorized());
    }
    let sessions = match session.list_user_sessions().await {
        Ok(sessions) => sessions,
        // Client-side sessions: the server knows only this device.
        Err(SessionError::Unsupported(_)) => {
            let meta = session.metadata().await?.ok_or_else(unauthorized)?;
            return Ok(json!([{
                "handle": meta.handle,
                "created_at": rfc3339(Some(meta.created_at)),
                "last_active_at": rfc3339(Some(meta.last_active_at)),
                "ip": meta.client.ip,
                "device": device(meta.client.user_agent.as_deref()),
                "user_agent": meta.client.user_agent,
                "current": true,
            }]));
        }
        Err(error) => return Err(error.into()),
    };
    let list: Vec<Value> = sessions
        .into_iter()
        .map(|s| {
            json!({
                "handle": s.handle,
                "created_at": rfc3339(Some(s.created_at)),
                "last_active_at": rfc3339(Some(s.last_active_at)),
                "ip": s.ip,
                "device": device(s.user_agent.as_deref()),
                "user_agent": s.user_agent,
                "current": s.current,
            })
        })
        .collect();
    Ok(Value::Array(list))
}

pub async fn revoke(session: &Session, handle: String) -> ApiResult {
    if session.user().await?.is_none() {
        return Err(unauthorized());
    }
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "no session of yours has that handle");
    let handle = SessionHandle::parse(&handle).ok_or_else(not_found)?;
    let revoked = match session.revoke_user_session(&handle).await {
        Ok(revoked) => revoked,
        // Client-side sessions: only this device's own handle can be revoked here.
        Err(SessionError::Unsupported(_)) if session.handle().await? == Some(handle) => {
            session.logout().await?;
            true
        }
        Err(SessionError::Unsupported(_)) => false,
        Err(error) => return Err(error.into()),
    };
    if revoked {
        Ok(json!({ "revoked": 1 }))
    } else {
        Err(not_found())
    }
}

pub async fn revoke_others(session: &Session, epochs: &DemoEpochs) -> ApiResult {
    let Some(user) = session.user().await? else {
        return Err(unauthorized());
    };
    let revoked = match session.revoke_other_sessions().await {
        Ok(revoked) => revoked,
        // Client-side sessions: move the user to a new epoch, which logs every cookie out,
        // then log this device in again under it. How many cookies that ended is unknown.
        Err(SessionError::Unsupported(_)) => {
            epochs.bump(&user);
            session.login(&user).await?;
            0
        }
        Err(error) => return Err(error.into()),
    };
    Ok(json!({ "revoked": revoked }))
}

pub fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such page")
}

/// Writes one framework's handler for each named endpoint that takes nothing but the
/// session: `async fn NAME(session: SESSION) -> OUT { ANSWER(api::NAME(&session).await) }`,
/// `ANSWER` turning the endpoint's result into the framework's response.
macro_rules! session_endpoints {
    ($session:ty, $answer:ident -> $out:ty: $($name:ident),+ $(,)?) => {
        $(
            async fn $name(session: $session) -> $out {
                $answer($crate::api::$name(&session).await)
            }
        )+
    };
}
pub(crate) use session_endpoints;
