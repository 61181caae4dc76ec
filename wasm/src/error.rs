//! The one error type of the client, and its JavaScript form.

use wasm_bindgen::JsValue;

/// Everything that can go wrong in a call of the client.
///
/// Local faults (bad input) are kept apart from remote ones (a server that
/// could not be reached, or answered wrongly). In JavaScript each becomes an
/// `Error` named `PlexusError` with a `kind` property ([`ClientError::kind`]),
/// and `status` for [`ClientError::Http`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// An argument from the caller is not valid (a URL, a schema, options).
    #[error("{0}")]
    InvalidInput(String),
    /// A peer name that genesis does not list.
    #[error("unknown peer {name:?} (genesis lists: {known})")]
    UnknownPeer {
        /// The name asked for.
        name: String,
        /// The names genesis lists, comma-separated.
        known: String,
    },
    /// The request could not be sent or got no answer (refused, DNS, CORS).
    #[error("{url}: no answer ({reason})")]
    Network {
        /// What was asked.
        url: String,
        /// What the browser said.
        reason: String,
    },
    /// Genesis refuses writes from the page's origin (CORS), so a tab peer of
    /// this page cannot register: kind `network`, without the "no answer" of
    /// [`ClientError::Network`] (genesis did answer, the browser hid it).
    #[error(
        "genesis {genesis} refuses writes from this page's origin {origin}, so it cannot \
         register this tab: start genesis with --cors-origin {origin}"
    )]
    RefusedOrigin {
        /// Genesis's URL.
        genesis: String,
        /// The page's origin, as genesis saw it.
        origin: String,
    },
    /// The server answered with a status other than 2xx.
    #[error("{url} answered {status}: {message}")]
    Http {
        /// What was asked.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The server's `error.message`, or the start of its body.
        message: String,
    },
    /// No answer within the timeout.
    #[error("{url} did not answer within {ms} ms")]
    Timeout {
        /// What was asked.
        url: String,
        /// The timeout.
        ms: u32,
    },
    /// The server answered 2xx with a body that is not what the protocol says.
    #[error("{url} answered with an unexpected body: {reason}")]
    Decode {
        /// What was asked.
        url: String,
        /// Why it did not parse.
        reason: String,
    },
    /// The JavaScript environment lacks what the call needs (e.g. `EventSource` in Node).
    #[error("{0}")]
    Unsupported(String),
}

impl ClientError {
    /// The `kind` property of the JavaScript error: a stable, kebab-case name.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientError::InvalidInput(_) => "invalid-input",
            ClientError::UnknownPeer { .. } => "unknown-peer",
            ClientError::Network { .. } | ClientError::RefusedOrigin { .. } => "network",
            ClientError::Http { .. } => "http",
            ClientError::Timeout { .. } => "timeout",
            ClientError::Decode { .. } => "decode",
            ClientError::Unsupported(_) => "unsupported",
        }
    }

    /// An [`ClientError::InvalidInput`] with `message`.
    pub fn invalid(message: impl Into<String>) -> Self {
        ClientError::InvalidInput(message.into())
    }
}

impl From<ClientError> for JsValue {
    fn from(error: ClientError) -> Self {
        let js = js_sys::Error::new(&error.to_string());
        js.set_name("PlexusError");
        // Reflect::set fails only on frozen or non-objects; a fresh Error is neither.
        let _ = js_sys::Reflect::set(&js, &"kind".into(), &error.kind().into());
        if let ClientError::Http { status, .. } = error {
            let _ = js_sys::Reflect::set(&js, &"status".into(), &status.into());
        }
        js.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_stable_kebab_case_names() {
        let cases = [
            (ClientError::invalid("x"), "invalid-input"),
            (
                ClientError::UnknownPeer {
                    name: "A".into(),
                    known: String::new(),
                },
                "unknown-peer",
            ),
            (
                ClientError::Network {
                    url: "u".into(),
                    reason: "r".into(),
                },
                "network",
            ),
            (
                ClientError::Http {
                    url: "u".into(),
                    status: 404,
                    message: "m".into(),
                },
                "http",
            ),
            (
                ClientError::Timeout {
                    url: "u".into(),
                    ms: 5,
                },
                "timeout",
            ),
            (
                ClientError::Decode {
                    url: "u".into(),
                    reason: "r".into(),
                },
                "decode",
            ),
            (ClientError::Unsupported("no".into()), "unsupported"),
            (
                ClientError::RefusedOrigin {
                    genesis: "g".into(),
                    origin: "o".into(),
                },
                "network",
            ),
        ];
        for (error, kind) in cases {
            assert_eq!(error.kind(), kind);
            assert!(!error.to_string().is_empty());
        }
    }

    #[test]
    fn messages_name_what_was_asked() {
        let e = ClientError::Http {
            url: "http://g/peers".into(),
            status: 403,
            message: "bad token".into(),
        };
        assert_eq!(e.to_string(), "http://g/peers answered 403: bad token");
        let e = ClientError::Timeout {
            url: "http://p/v1/graphql".into(),
            ms: 250,
        };
        assert_eq!(
            e.to_string(),
            "http://p/v1/graphql did not answer within 250 ms"
        );
    }

    #[test]
    fn a_refused_origin_names_it_and_the_flag_without_no_answer() {
        let e = ClientError::RefusedOrigin {
            genesis: "http://g:1".into(),
            origin: "http://app.example".into(),
        };
        assert_eq!(
            e.to_string(),
            "genesis http://g:1 refuses writes from this page's origin http://app.example, so it \
             cannot register this tab: start genesis with --cors-origin http://app.example"
        );
    }
}
