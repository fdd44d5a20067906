//! The command line: `chamade user create` and `key create` make working credentials.

use std::process::Command;

use crate::support::TempDir;

fn chamade(dir: &TempDir, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_chamade"))
        .args(args)
        .arg("--data-dir")
        .arg(&dir.0)
        .env_remove("DATABASE_URL")
        .output()
        .expect("run chamade");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn key_in(text: &str) -> String {
    text.split_whitespace()
        .find(|w| w.starts_with("chmd_"))
        .expect("a key is printed")
        .to_string()
}

#[test]
fn user_and_key_creation_print_keys_that_are_stored_hashed() {
    let dir = TempDir::new();
    let (ok, out) = chamade(&dir, &["user", "create", "--email", "cli@example.org"]);
    assert!(ok, "{out}");
    assert!(out.contains("password: "), "{out}");
    let first = key_in(&out);
    let (ok, out) = chamade(
        &dir,
        &[
            "key",
            "create",
            "--email",
            "cli@example.org",
            "--name",
            "ci",
        ],
    );
    assert!(ok, "{out}");
    let second = key_in(&out);
    assert_ne!(first, second);
    let db = std::fs::read(dir.0.join("chamade.db")).expect("database file");
    let db_text = String::from_utf8_lossy(&db);
    assert!(!db_text.contains(&first[5..]) && !db_text.contains(&second[5..]));
    let (ok, out) = chamade(&dir, &["user", "create", "--email", "cli@example.org"]);
    assert!(!ok && out.contains("already exists"), "{out}");
    let (ok, out) = chamade(&dir, &["key", "create", "--email", "nobody@example.org"]);
    assert!(!ok && out.contains("no account"), "{out}");
}

#[test]
fn config_check_prints_the_effective_configuration() {
    let dir = TempDir::new();
    let (ok, out) = chamade(&dir, &["serve", "--check", "--listen", "127.0.0.1:9999"]);
    assert!(ok, "{out}");
    assert!(out.contains("http://127.0.0.1:9999"), "{out}");
    assert!(out.contains("sqlite:"), "{out}");
}

/// Starts `chamade serve` on a free port and reads its output up to the "listening" line.
fn start_serve(dir: &TempDir) -> (std::process::Child, u16, String) {
    use std::io::{BufRead, BufReader};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_chamade"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(&dir.0)
        .env_remove("DATABASE_URL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start chamade serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut printed = String::new();
    for line in lines.by_ref() {
        let line = line.expect("line");
        printed.push_str(&line);
        printed.push('\n');
        if line.starts_with("chamade listening on") {
            break;
        }
    }
    // Keep reading so that the server's stdout stays open, as under a supervisor.
    std::thread::spawn(move || lines.for_each(drop));
    (child, port, printed)
}

fn stop(mut child: std::process::Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = child.wait().expect("wait");
    assert!(exit.success(), "exit status {exit:?}");
}

/// The README's run command on a fresh data folder: prints an owner key that works, serves,
/// and stops cleanly on SIGTERM; the next start keeps the account and prints no key.
#[test]
fn first_start_prints_a_working_key_and_stops_on_sigterm() {
    let dir = TempDir::new();
    let (child, port, printed) = start_serve(&dir);
    let key = printed
        .lines()
        .filter(|l| l.trim_start().starts_with("API key"))
        .find_map(|l| l.split_whitespace().find(|w| w.starts_with("chmd_")))
        .unwrap_or_else(|| panic!("no key printed:\n{printed}"))
        .to_string();
    assert!(
        printed.contains(&format!("http://127.0.0.1:{port}/api/account")),
        "{printed}"
    );
    let r = reqwest::blocking::Client::new()
        .get(format!("http://127.0.0.1:{port}/api/account"))
        .header("X-API-Key", &key)
        .send()
        .expect("request");
    assert_eq!(r.status(), 200);
    stop(child);
    let key_file = dir.0.join("secret.key");
    let sealing_key = std::fs::read_to_string(&key_file).expect("secret.key made on first start");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "only the owner reads the sealing key");
    }

    let (child, port, printed) = start_serve(&dir);
    assert_eq!(
        std::fs::read_to_string(&key_file).unwrap(),
        sealing_key,
        "a restart reuses the sealing key"
    );
    assert!(
        !printed.contains("chmd_"),
        "a second start prints no new key:\n{printed}"
    );
    let (ok, out) = chamade(&dir, &["serve", "--listen", "127.0.0.1:0"]);
    assert!(!ok && out.contains("another chamade server"), "{out}");
    let r = reqwest::blocking::Client::new()
        .get(format!("http://127.0.0.1:{port}/api/account"))
        .header("X-API-Key", &key)
        .send()
        .expect("request");
    assert_eq!(r.status(), 200, "the owner key survives a restart");
    stop(child);
}
