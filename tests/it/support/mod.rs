//! The harness: a server per test, on its own port, data folder and database.

pub mod browser;
pub mod pg;
pub mod sip_peers;
pub mod whip;
pub mod ws;

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::mpsc;

use chamade::Config;
use chamade::auth::crypto::SecretBox;
use chamade::db::{AnyConnection, DbPool};
use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::Value;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in the test's own folder.
    Sqlite,
    /// A fresh database on the PostgreSQL server of the machine.
    Postgres,
}

/// Generates one `#[test]` per backend from a function taking a [`Backend`].
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name($crate::support::Backend::Sqlite) } )*
        }
        mod postgres {
            $( #[test] fn $name() { super::$name($crate::support::Backend::Postgres) } )*
        }
    };
}

/// A running server and what it runs on.
pub struct TestServer {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The pool the server uses (for checks behind the API's back).
    pub pool: DbPool,
    /// The server's sealing key (a fresh random one per server), to check sealed columns.
    pub secrets: SecretBox,
    handle: Option<actix_web::dev::ServerHandle>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: TempDir,
    _pg: Option<pg::TestDatabase>,
}

/// A folder removed at the end of the test.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new empty folder under the system's temp folder.
    pub fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("chamade-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl TestServer {
    /// Starts a server with the default configuration on `backend`.
    pub fn start(backend: Backend) -> TestServer {
        TestServer::start_with(backend, |_| {})
    }

    /// Starts a server after letting the test adjust the configuration.
    pub fn start_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestServer {
        let dir = TempDir::new();
        let pg = (backend == Backend::Postgres).then(pg::TestDatabase::create);
        let mut config = Config {
            data_dir: dir.0.clone(),
            database_url: pg.as_ref().map(|d| d.url.clone()),
            db_pool_size: 4,
            mixer_shards: 1,
            // Tests run side by side: never the shared port 5060.
            sip_listen: Some("127.0.0.1:0".parse().expect("address")),
            ..Config::default()
        };
        adjust(&mut config);
        let pool = chamade::server::open_database(&config).expect("open database");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let secrets = SecretBox::generate();
        let state = chamade::server::state(config, pool.clone(), secrets.clone());
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = chamade::server::build(listener, state, 1).expect("build server");
                tx.send(server.handle()).expect("send handle");
                let _ = server.await;
            })
        });
        let handle = rx.recv().expect("server started");
        TestServer {
            url,
            pool,
            secrets,
            handle: Some(handle),
            thread: Some(thread),
            _dir: dir,
            _pg: pg,
        }
    }

    /// A client without cookies.
    pub fn client(&self) -> Client {
        Client::builder().build().expect("client")
    }

    /// A request to `path` (relative to the server) with `key`.
    pub fn req(&self, method: reqwest::Method, path: &str, key: &str) -> RequestBuilder {
        self.client()
            .request(method, format!("{}{path}", self.url))
            .header("X-API-Key", key)
    }

    /// `GET path` with `key`.
    pub fn get(&self, path: &str, key: &str) -> Response {
        self.req(reqwest::Method::GET, path, key)
            .send()
            .expect("GET")
    }

    /// `DELETE path` with `key`.
    pub fn delete(&self, path: &str, key: &str) -> Response {
        self.req(reqwest::Method::DELETE, path, key)
            .send()
            .expect("DELETE")
    }

    /// `POST path` with a JSON body and `key`.
    pub fn post(&self, path: &str, key: &str, body: &Value) -> Response {
        self.req(reqwest::Method::POST, path, key)
            .json(body)
            .send()
            .expect("POST")
    }

    /// Signs up `email` and returns `(user_id, api_key)`.
    pub fn signup(&self, email: &str) -> (String, String) {
        let r = self
            .client()
            .post(format!("{}/api/signup", self.url))
            .json(&serde_json::json!({"email": email, "password": "password123"}))
            .send()
            .expect("signup");
        assert_eq!(r.status(), 201, "signup failed");
        let v: Value = r.json().expect("json");
        (
            v["user_id"].as_str().expect("user_id").to_string(),
            v["api_key"].as_str().expect("api_key").to_string(),
        )
    }

    /// A pooled connection for checks behind the API.
    pub fn conn(&self) -> r2d2::PooledConnection<diesel::r2d2::ConnectionManager<AnyConnection>> {
        self.pool.get().expect("connection")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            actix_web::rt::System::new().block_on(handle.stop(false));
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads a response as JSON, asserting its status first.
pub fn json(r: Response, status: u16) -> Value {
    let got = r.status().as_u16();
    let body = r.text().unwrap_or_default();
    assert_eq!(got, status, "unexpected status, body: {body}");
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

/// A random E.164 number, so that numbers never collide between accounts of one test.
pub fn random_number() -> String {
    let n = uuid::Uuid::new_v4().as_u128() % 10_000_000_000;
    format!("+3361{n:010}")
}

impl TestServer {
    /// Gives the account at least one row in every table of `repo::USER_TABLES`, through
    /// the API where a route exists (connections have none yet: inserted directly).
    pub fn fill_every_table(&self, user_id: &str, key: &str, email: &str) {
        let login = self
            .client()
            .post(format!("{}/api/login", self.url))
            .json(&serde_json::json!({"email": email, "password": "password123"}))
            .send()
            .expect("login");
        assert_eq!(login.status(), 200);
        json(
            self.post("/api/api-keys", key, &serde_json::json!({"name": "second"})),
            201,
        );
        let token = format!("{}:{}", 123456, uuid::Uuid::new_v4().simple());
        json(
            self.post(
                "/api/bot-tokens",
                key,
                &serde_json::json!({"platform": "telegram", "bot_token": token}),
            ),
            201,
        );
        chamade::db::repo::insert_connection(
            &mut self.conn(),
            &chamade::db::models::Connection {
                id: uuid::Uuid::new_v4().to_string(),
                user_id: user_id.to_string(),
                provider: "discord".into(),
                external_id: "80351110224678912".into(),
                display_name: "Nelly".into(),
                created_at: chamade::db::now_ms(),
            },
        )
        .expect("insert connection");
        json(
            self.post(
                "/api/sip/trunk",
                key,
                &serde_json::json!({"sip_host": "sip.example.com", "sip_username": "u",
                                    "sip_password": "trunk-pass-1"}),
            ),
            201,
        );
        json(
            self.post(
                "/api/sip/trunk/dids",
                key,
                &serde_json::json!({"number": random_number()}),
            ),
            201,
        );
        json(
            self.post(
                "/api/voice-providers",
                key,
                &serde_json::json!({"kind": "tts", "provider": "elevenlabs",
                                    "api_key": "sk_voice_key_0123456789"}),
            ),
            201,
        );
        json(
            self.post("/api/invite-link", key, &serde_json::json!({})),
            201,
        );
        let call = json(
            self.post("/api/call", key, &serde_json::json!({"platform": "web"})),
            200,
        );
        let call_id = call["call_id"].as_str().expect("call_id").to_string();
        chamade::db::calls::insert_line(
            &mut self.conn(),
            &chamade::db::calls::TranscriptRow {
                call_id,
                idx: 0,
                user_id: user_id.to_string(),
                speaker: "Alice".into(),
                text: "Hello".into(),
                created_at: chamade::db::now_ms(),
            },
        )
        .expect("insert transcript line");
        for (table, n) in chamade::db::repo::row_counts(&mut self.conn(), user_id).expect("counts")
        {
            assert!(n >= 1, "{table} has no row of the filled account");
        }
    }
}
