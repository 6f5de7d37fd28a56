//! Both providers over HTTP against the fakes, on answers that are not the provider's protocol:
//! a proxy's HTML page, a plain-text 429, a content of the wrong shape, bodies echoing the key.
//! Each must map to the right, retryable or not, error, with the key removed.

mod support;

use fake_llm::{FakeGemini, FakeOpenAi, Script};
use support::providers::{gemini, gemini_config, openai};
use webhook_receiver::llm::gemini::{Gemini, GeminiConfig};
use webhook_receiver::llm::types::RetryAdvice;
use webhook_receiver::llm::{ChatModel, LlmError, Message, Secret};

async fn ask(model: &dyn ChatModel) -> Result<(), LlmError> {
    model
        .complete("sys", &[Message::User("heal".into())], &[])
        .await
        .map(|_| ())
}

/// The replies both fakes send, in order, and the error each must become.
fn script(key: &str) -> Script {
    Script::new()
        .raw(429, "text/plain", "Too Many Requests")
        .raw(
            502,
            "text/html",
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
        )
        .raw(503, "application/json", &format!("{{\"oops\": \"{key}\"}}"))
        .raw(
            200,
            "application/json",
            &format!("{{\"choices\": \"{key}\", \"candidates\": \"{key}\"}}"),
        )
        .raw(200, "text/html", "<html>captive portal</html>")
        .raw(400, "text/plain", &format!("bad request for key {key}"))
}

fn check(errors: &[LlmError], key: &str) {
    assert!(
        matches!(errors[0], LlmError::RateLimited { retry_after: None }),
        "{:?}",
        errors[0]
    );
    assert!(
        matches!(&errors[1], LlmError::Server { status: 502, message } if message.contains("502 Bad Gateway")),
        "{:?}",
        errors[1]
    );
    assert!(
        matches!(errors[2], LlmError::Server { status: 503, .. }),
        "{:?}",
        errors[2]
    );
    assert!(matches!(errors[3], LlmError::Decode(_)), "{:?}", errors[3]);
    assert!(matches!(errors[4], LlmError::Decode(_)), "{:?}", errors[4]);
    assert!(
        matches!(errors[5], LlmError::Client { status: 400, .. }),
        "{:?}",
        errors[5]
    );
    for (n, e) in errors.iter().enumerate() {
        let retry = matches!(e.retry_advice(), RetryAdvice::After(_));
        assert_eq!(retry, n < 3, "{e:?}");
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains(key), "the key leaked: {shown}");
    }
}

#[tokio::test]
async fn openai_errors_that_are_not_openai_json() {
    let fake = FakeOpenAi::start(script(FakeOpenAi::API_KEY)).await;
    let model = openai(fake.url());
    let mut errors = Vec::new();
    for _ in 0..6 {
        errors.push(ask(&model).await.unwrap_err());
    }
    check(&errors, FakeOpenAi::API_KEY);
    assert_eq!(
        fake.requests().len(),
        6,
        "one request per call: no hidden retries"
    );
}

#[tokio::test]
async fn gemini_errors_that_are_not_gemini_json() {
    let fake = FakeGemini::start(script(FakeGemini::API_KEY)).await;
    let model = gemini(fake.url());
    let mut errors = Vec::new();
    for _ in 0..6 {
        errors.push(ask(&model).await.unwrap_err());
    }
    check(&errors, FakeGemini::API_KEY);
}

#[tokio::test]
async fn gemini_content_of_the_wrong_shape_is_an_error_not_a_panic() {
    let fake = FakeGemini::start(
        Script::new()
            .raw(
                200,
                "application/json",
                r#"{"candidates":[{"content":["model",[{"text":"hi"}]]}]}"#,
            )
            .calls(vec![]),
    )
    .await;
    let model = gemini(fake.url());
    for _ in 0..2 {
        let e = ask(&model).await.unwrap_err();
        assert!(matches!(e, LlmError::Decode(_)), "{e:?}");
    }
}

#[test]
fn a_gemini_key_that_cannot_be_a_header_is_refused_at_start() {
    let e = Gemini::new(GeminiConfig {
        api_key: Secret::new("AIza\u{1}x").unwrap(),
        ..gemini_config("http://127.0.0.1:9")
    })
    .err()
    .expect("refused");
    assert!(e.to_string().contains("GEMINI_API_KEY"), "{e}");
}
