//! The HTTP step under async-openai (its `middleware` feature): sends the request and reads every
//! failed response itself.
//!
//! async-openai 0.43 reads a non-2xx body as OpenAI's error JSON; when it is anything else (a
//! proxy's HTML 502, a plain-text 429) it returns a deserialisation error without the status,
//! which would not be retried, and it logs the raw body (`async_openai::error`, level error),
//! where a provider that echoes the key would put it in our logs. Here a failed response becomes
//! an [`HttpFailure`] with its status, `Retry-After` and a bounded body, before async-openai
//! sees it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use serde_json::Value;

/// The most of a failed response's body that is read (error bodies are small; a proxy's page is not).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// A non-2xx response. `Display` and `Debug` show the status only: the body may hold anything.
pub(crate) struct HttpFailure {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: Vec<u8>,
}

impl HttpFailure {
    /// The provider's message: `error.message` of OpenAI's JSON (also inside an array, as some
    /// compatible front ends send it), `error` when it is a string (Ollama), else the body text.
    pub fn message(&self) -> String {
        let parsed: Option<Value> = serde_json::from_slice(&self.body).ok();
        let error = parsed.as_ref().map(|v| match v {
            Value::Array(items) => items.first().unwrap_or(&Value::Null),
            other => other,
        });
        let error = error.and_then(|v| v.get("error"));
        let message = match error {
            Some(Value::String(s)) => Some(s.clone()),
            Some(e) => e.get("message").and_then(Value::as_str).map(str::to_string),
            None => None,
        };
        message.unwrap_or_else(|| String::from_utf8_lossy(&self.body).into_owned())
    }
}

impl std::fmt::Display for HttpFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}", self.status)
    }
}

impl std::fmt::Debug for HttpFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HttpFailure({})", self.status)
    }
}

impl std::error::Error for HttpFailure {}

/// The service given to `Client::with_http_service`. It retries nothing: the loop owns retries.
#[derive(Clone)]
pub(crate) struct StatusAware {
    http: reqwest::Client,
}

impl StatusAware {
    pub fn new(http: reqwest::Client) -> Self {
        StatusAware { http }
    }
}

type Pending = Pin<Box<dyn Future<Output = Result<reqwest::Response, OpenAIError>> + Send>>;

impl tower::Service<HttpRequestFactory> for StatusAware {
    type Response = reqwest::Response;
    type Error = OpenAIError;
    type Future = Pending;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, factory: HttpRequestFactory) -> Self::Future {
        let http = self.http.clone();
        Box::pin(async move {
            let mut request = factory.build().await?;
            // So that no Debug output of the request (ours, reqwest's, hyper's) shows the key.
            if let Some(auth) = request
                .headers_mut()
                .get_mut(reqwest::header::AUTHORIZATION)
            {
                auth.set_sensitive(true);
            }
            let mut response = http.execute(request).await?;
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(crate::retry_after::parse);
            let mut body = Vec::new();
            // A body that breaks off is still a failed response: what arrived is enough.
            while let Ok(Some(chunk)) = response.chunk().await {
                let room = MAX_ERROR_BODY - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() >= MAX_ERROR_BODY {
                    break;
                }
            }
            Err(OpenAIError::Boxed(Box::new(HttpFailure {
                status: status.as_u16(),
                retry_after,
                body,
            })))
        })
    }
}
