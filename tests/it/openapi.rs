//! The OpenAPI document lists every route the server answers.

use crate::support::{Backend, TestServer, json};

/// Every route the server implements, as (method, path). A route added to the code must be
/// added here and will then fail this test until it is documented.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/health"),
    ("post", "/api/signup"),
    ("post", "/api/login"),
    ("post", "/api/logout"),
    ("get", "/api/account"),
    ("delete", "/api/account"),
    ("get", "/api/usage"),
    ("patch", "/api/profile"),
    ("post", "/api/change-password"),
    ("post", "/api/change-email"),
    ("get", "/api/export"),
    ("get", "/api/api-keys"),
    ("post", "/api/api-keys"),
    ("delete", "/api/api-keys/{key_id}"),
    ("get", "/api/bot-tokens"),
    ("post", "/api/bot-tokens"),
    ("delete", "/api/bot-tokens/{bot_id}"),
    ("get", "/api/platforms"),
    ("post", "/api/oauth/start/{provider}"),
    ("delete", "/api/connections/{connection_id}"),
    ("post", "/api/telegram/connect"),
    ("post", "/api/slack/install"),
    ("post", "/api/invite-link"),
    ("get", "/api/sip/trunk"),
    ("post", "/api/sip/trunk"),
    ("delete", "/api/sip/trunk"),
    ("get", "/api/sip/trunk/dids"),
    ("post", "/api/sip/trunk/dids"),
    ("delete", "/api/sip/trunk/dids/{did_id}"),
    ("post", "/api/sip/trunk/dids/{did_id}/settings"),
    ("get", "/api/voice-providers"),
    ("post", "/api/voice-providers"),
    ("patch", "/api/voice-providers/{preset_id}"),
    ("delete", "/api/voice-providers/{preset_id}"),
    ("post", "/api/call"),
    ("get", "/api/call/{call_id}"),
    ("delete", "/api/call/{call_id}"),
    ("get", "/api/calls"),
    ("post", "/api/call/{call_id}/accept"),
    ("post", "/api/call/{call_id}/refuse"),
    ("post", "/api/call/{call_id}/chat"),
    ("post", "/api/call/{call_id}/say"),
    ("post", "/api/call/{call_id}/typing"),
    ("post", "/api/call/{call_id}/dtmf"),
    ("get", "/api/events"),
    ("post", "/api/call/{call_id}/rtp"),
    ("delete", "/api/call/{call_id}/rtp/{leg_id}"),
    ("post", "/api/call/{call_id}/whip"),
    ("delete", "/api/call/{call_id}/whip/{resource}"),
    ("post", "/api/call/{call_id}/whep"),
    ("delete", "/api/call/{call_id}/whep/{resource}"),
];

/// `path` with every `{param}` replaced by a plausible id.
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
        out.push_str("00000000-0000-0000-0000-000000000000");
        rest = &rest[close..];
    }
    out.push_str(rest);
    out
}

#[test]
fn every_route_is_documented_and_answered() {
    let s = TestServer::start(Backend::Sqlite);
    let doc = json(
        s.client()
            .get(format!("{}/api/openapi.json", s.url))
            .send()
            .unwrap(),
        200,
    );
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (method, path) in ROUTES {
        assert!(
            paths.get(*path).and_then(|p| p.get(*method)).is_some(),
            "{method} {path} missing from the OpenAPI document"
        );
        // And the server has the route: an unauthenticated call is never a route 404.
        let concrete = concrete(path);
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let r = s
            .client()
            .request(m, format!("{}{concrete}", s.url))
            .send()
            .unwrap();
        let body = r.text().unwrap();
        assert!(
            !body.contains("No route for"),
            "{method} {path} is not served"
        );
    }
    let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(
        documented,
        ROUTES.len(),
        "a documented route is missing from ROUTES"
    );
}
