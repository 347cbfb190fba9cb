//! How Flask-Session writes the session ID in its cookie.

use cloakroom::IdFormat;

use crate::itsdangerous::Signer;

/// Flask-Session's salt for signed session IDs.
pub const SIGNER_SALT: &str = "flask-session";

/// How Flask-Session writes the ID in its cookie: as it is, or signed
/// (`SESSION_USE_SIGNER`). Give it to
/// [`SessionManager::with_id_format`](cloakroom::SessionManager::with_id_format).
#[derive(Clone, Debug)]
pub struct FlaskSessionIds {
    signer: Option<Signer>,
}

impl FlaskSessionIds {
    /// IDs as they are (`SESSION_USE_SIGNER = False`, the default).
    pub fn unsigned() -> Self {
        Self { signer: None }
    }

    /// IDs signed with the app's `SECRET_KEY` (`SESSION_USE_SIGNER = True`). Flask-Session
    /// accepts no fallback keys here.
    pub fn signed(secret_key: impl AsRef<[u8]>) -> Self {
        Self {
            signer: Some(Signer::new(SIGNER_SALT, secret_key.as_ref(), [])),
        }
    }
}

impl IdFormat for FlaskSessionIds {
    fn decode<'v>(&self, value: &'v str) -> Option<std::borrow::Cow<'v, str>> {
        match &self.signer {
            None => Some(value.into()),
            Some(signer) => signer.unsign(value).map(|(id, _)| id.into()),
        }
    }

    fn encode(&self, id: &str) -> String {
        match &self.signer {
            None => id.to_owned(),
            Some(signer) => signer.sign(id),
        }
    }

    fn reversible_store_keys(&self) -> bool {
        true
    }
}
