//! A throw-away PostgreSQL database per test on the machine's server.
//!
//! The server is found through `CHAMADE_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`, trust authentication, as `scripts/test`
//! sets up). A server that cannot be reached fails the test: PostgreSQL tests never skip.

use diesel::{Connection, PgConnection, RunQueryDsl, connection::SimpleConnection};

/// The admin URL tests create their databases through.
pub fn admin_url() -> String {
    std::env::var("CHAMADE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A database dropped when the test ends.
pub struct TestDatabase {
    /// Its URL.
    pub url: String,
    name: String,
}

impl TestDatabase {
    /// Creates an empty database with a unique name.
    pub fn create() -> TestDatabase {
        let admin = admin_url();
        let mut conn = PgConnection::establish(&admin).unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {admin} ({e}); run scripts/test, which starts it"
            )
        });
        let name = format!("chamade_test_{}", uuid::Uuid::new_v4().simple());
        conn.batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create database");
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        TestDatabase {
            url: format!("{base}/{name}"),
            name,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Ok(mut conn) = PgConnection::establish(&admin_url()) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut conn);
        }
    }
}
