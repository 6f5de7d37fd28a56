//! Scripted replies: one step per model request, in order.

use std::time::Duration;

use serde_json::Value;

/// A function call the fake model makes.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub name: String,
    /// Arguments as the model would send them. For the OpenAI fake this text is sent verbatim
    /// (it may be malformed JSON); the Gemini fake requires valid JSON (`args` is an object there).
    pub arguments: String,
}

/// A call with JSON arguments.
pub fn call(name: &str, args: Value) -> Call {
    Call {
        name: name.to_string(),
        arguments: args.to_string(),
    }
}

/// A call whose `arguments` text is sent as is (OpenAI side), e.g. truncated JSON.
pub fn call_raw(name: &str, arguments: &str) -> Call {
    Call {
        name: name.to_string(),
        arguments: arguments.to_string(),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A final answer without calls.
    Text(String),
    /// One turn with these calls (several = parallel calls).
    Calls(Vec<Call>),
    /// 429, with a retry delay (Gemini: `RetryInfo.retryDelay`; OpenAI: `Retry-After` and message).
    RateLimited { retry_delay: Option<Duration> },
    /// Any other error status, with the provider's error body.
    Error { code: u16, message: String },
    /// Exactly this status, content type and body, whatever the protocol says: a proxy's HTML
    /// error page, a truncated body, a body that is not the provider's JSON.
    Raw {
        status: u16,
        content_type: String,
        body: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub reply: Reply,
    /// Extra latency before this reply (on top of the server's base latency).
    pub delay: Duration,
}

/// A list of replies; requests past the end get the last one again when `repeat_last` is set,
/// else a 500 saying the script is exhausted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Script {
    pub steps: Vec<Step>,
    pub repeat_last: bool,
}

impl Script {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn reply(mut self, reply: Reply) -> Self {
        self.steps.push(Step {
            reply,
            delay: Duration::ZERO,
        });
        self
    }

    pub fn text(self, text: &str) -> Self {
        self.reply(Reply::Text(text.to_string()))
    }

    /// One call in a turn.
    pub fn call(self, name: &str, args: Value) -> Self {
        self.reply(Reply::Calls(vec![call(name, args)]))
    }

    /// Several calls in one turn (parallel function calling).
    pub fn calls(self, calls: Vec<Call>) -> Self {
        self.reply(Reply::Calls(calls))
    }

    pub fn rate_limited(self, retry_delay: Option<Duration>) -> Self {
        self.reply(Reply::RateLimited { retry_delay })
    }

    /// 500, 503 or 504 with the provider's usual message.
    pub fn server_error(self, code: u16) -> Self {
        self.reply(Reply::Error {
            code,
            message: String::new(),
        })
    }

    pub fn error(self, code: u16, message: &str) -> Self {
        self.reply(Reply::Error {
            code,
            message: message.to_string(),
        })
    }

    /// A raw answer (see [`Reply::Raw`]).
    pub fn raw(self, status: u16, content_type: &str, body: &str) -> Self {
        self.reply(Reply::Raw {
            status,
            content_type: content_type.to_string(),
            body: body.to_string(),
        })
    }

    /// Delays the last step added.
    pub fn delayed(mut self, delay: Duration) -> Self {
        if let Some(last) = self.steps.last_mut() {
            last.delay = delay;
        }
        self
    }

    /// Keep answering with the last step once the script is exhausted.
    pub fn repeat_last(mut self) -> Self {
        self.repeat_last = true;
        self
    }

    /// The step for the `n`-th (0-based) scripted request.
    pub fn step(&self, n: usize) -> Option<&Step> {
        self.steps.get(n).or_else(|| {
            if self.repeat_last {
                self.steps.last()
            } else {
                None
            }
        })
    }
}
