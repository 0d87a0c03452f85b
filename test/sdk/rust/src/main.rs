//! Drives Sailhouse's Rust SDK against the service (test/sdk-sailhouse.test.ts): reads SDK_BASE_URL,
//! SDK_API_KEY and SDK_ARGS ({"topic", "subscription", "done_topic", "hook_topic"}) and prints one JSON
//! line with what the SDK's own calls returned (its parsed structs, field by field).
use std::collections::HashMap;

use sailhouse::{admin::FilterOption, AdminClient, GetOption, SailhouseClient, WaitEvent, WaitOptions};
use serde_json::{json, Value};

fn arg(args: &Value, name: &str) -> String {
    args[name].as_str().unwrap_or_else(|| panic!("SDK_ARGS.{name} missing")).to_string()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let base = std::env::var("SDK_BASE_URL").expect("SDK_BASE_URL");
    let key = std::env::var("SDK_API_KEY").unwrap_or_default();
    let args: Value = serde_json::from_str(&std::env::var("SDK_ARGS").unwrap_or_else(|_| "{}".into())).expect("SDK_ARGS is JSON");
    let (topic, sub) = (arg(&args, "topic"), arg(&args, "subscription"));
    // The SDK's documented way to use another host: with_base_url.
    let client = SailhouseClient::with_base_url(reqwest::Client::new(), key, base);
    let mut out = serde_json::Map::new();

    let mut meta = HashMap::new();
    meta.insert("source".to_string(), "rust".to_string());
    let published = match client.publish(&topic, json!({"n": 1})).with_metadata(meta).send().await {
        Ok(first) => {
            let second = client.publish(&topic, json!({"n": 2})).send().await.expect("second publish");
            json!([first.id, second.id])
        }
        Err(e) => {
            // A refused key: report what the SDK made of it and stop.
            println!("{}", json!({"publish_error": e.to_string()}));
            return;
        }
    };
    out.insert("published".into(), published);

    let page = client.get_events(&topic, &sub, GetOption { limit: Some(10), offset: Some(0) }).await.expect("get_events");
    out.insert("page".into(), json!({
        "offset": page.offset,
        "limit": page.limit,
        "events": page.events.iter().map(|e| json!({"id": e.id, "data": e.data})).collect::<Vec<_>>(),
    }));
    for e in &page.events {
        e.ack().await.expect("Event::ack");
    }
    out.insert("typed".into(), json!(page.events.iter().map(|e| e.deserialize::<HashMap<String, i64>>().map(|m| m["n"]).ok()).collect::<Vec<_>>()));

    let done = arg(&args, "done_topic");
    let events = vec![
        WaitEvent { topic: topic.clone(), body: json!({"step": 1}), metadata: None, send_at: None },
        WaitEvent { topic: topic.clone(), body: json!({"step": 2}), metadata: None, send_at: None },
    ];
    client.wait(&done, events, Some(WaitOptions { ttl: Some("10m".into()) })).await.expect("wait");
    out.insert("waited".into(), json!(true));

    let admin = AdminClient::new(client.clone());
    let filter = FilterOption { path: "kind".into(), value: "keep".into() };
    let reg = admin.register_push_subscription(&arg(&args, "hook_topic"), "rs-hook", "http://127.0.0.1:9/hook", Some(filter)).await.expect("register_push_subscription");
    out.insert("registered".into(), json!(reg.outcome));
    println!("{}", Value::Object(out));
}
