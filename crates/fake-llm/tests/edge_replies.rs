//! Scripts and requests at the edges must get an answer, never a panic in the fake.

use fake_llm::{FakeGemini, FakeOpenAi, Script};
use serde_json::{json, Value};

fn gemini_request() -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": "heal"}]}]})
}

fn openai_request() -> Value {
    json!({"model": "m", "messages": [{"role": "user", "content": "heal"}]})
}

#[tokio::test]
async fn an_empty_call_turn_is_an_empty_model_turn() {
    let fake = FakeGemini::start(Script::new().calls(vec![])).await;
    let r = reqwest::Client::new()
        .post(format!(
            "{}/v1beta/models/gemini-3.5-flash:generateContent",
            fake.url()
        ))
        .header("x-goog-api-key", FakeGemini::API_KEY)
        .json(&gemini_request())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["candidates"][0]["content"], json!({"role": "model"}));

    let fake = FakeOpenAi::start(Script::new().calls(vec![])).await;
    let r = reqwest::Client::new()
        .post(format!("{}/chat/completions", fake.url()))
        .bearer_auth(FakeOpenAi::API_KEY)
        .json(&openai_request())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["tool_calls"], json!([]));
}

#[tokio::test]
async fn raw_replies_are_sent_as_scripted() {
    let script = || Script::new().raw(502, "text/html", "<html>Bad Gateway</html>");
    let gemini = FakeGemini::start(script()).await;
    let r = reqwest::Client::new()
        .post(format!("{}/v1beta/models/m:generateContent", gemini.url()))
        .header("x-goog-api-key", FakeGemini::API_KEY)
        .json(&gemini_request())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["content-type"], "text/html");
    assert_eq!(r.text().await.unwrap(), "<html>Bad Gateway</html>");
    assert_eq!(
        gemini.requests()[0].response,
        json!("<html>Bad Gateway</html>")
    );

    let openai = FakeOpenAi::start(script()).await;
    let r = reqwest::Client::new()
        .post(format!("{}/chat/completions", openai.url()))
        .bearer_auth(FakeOpenAi::API_KEY)
        .json(&openai_request())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.text().await.unwrap(), "<html>Bad Gateway</html>");
}

#[tokio::test]
async fn a_wrong_non_ascii_key_is_refused_not_a_panic() {
    let fake = FakeOpenAi::start(Script::new().text("hi")).await;
    let keys: [&[u8]; 4] = [b"a", b"abcd", "é日本語のキー".as_bytes(), b"\xff\xfe"];
    for key in keys {
        let mut value = b"Bearer ".to_vec();
        value.extend_from_slice(key);
        let header = reqwest::header::HeaderValue::from_bytes(&value).unwrap();
        let r = reqwest::Client::new()
            .post(format!("{}/chat/completions", fake.url()))
            .header("authorization", header)
            .json(&openai_request())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{key:?}");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Incorrect API key"));
    }
}
