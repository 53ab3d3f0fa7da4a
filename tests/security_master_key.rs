//! `master.key` is checked against the database at start: with stored credentials, a
//! missing or different key stops the gateway with a clear message instead of being
//! silently replaced; an empty store gets a new key.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

/// Starts the binary on the server's data directory and expects it to exit non-zero.
fn start_expecting_refusal(server: &Server) -> String {
    let mut cmd = opsgate_command();
    cmd.arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--data-dir")
        .arg(server.data_dir())
        .env("OPSGATE_ADMIN_PASSWORD", ADMIN_PASSWORD);
    let (status, out) = run_to_exit(cmd, Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| !s.success()),
        "the gateway started (or hung) without its master key: {status:?}\n{out}"
    );
    out
}

#[tokio::test]
async fn a_missing_or_different_master_key_is_refused_while_credentials_exist() {
    let mut server = Server::start_default().await;
    let admin = server.admin().await;
    admin
        .post(
            "/api/credentials",
            &json!({"name":"core","kind":"password","secret":"s3cret-pw"}),
        )
        .await
        .assert_status(201);
    server.stop();
    let key_path = server.data_dir().join("master.key");
    let key = std::fs::read(&key_path).expect("master.key");

    // Missing.
    std::fs::remove_file(&key_path).expect("remove");
    let out = start_expecting_refusal(&server);
    assert!(out.contains("master.key is missing"), "{out}");
    assert!(out.contains("1 sealed credential"), "{out}");
    assert!(!key_path.exists(), "a new key was generated");

    // Different.
    std::fs::write(&key_path, [0x42u8; 32]).expect("write");
    let out = start_expecting_refusal(&server);
    assert!(out.contains("is not the key"), "{out}");

    // Restored: starts, and the credential still opens (it can be updated).
    std::fs::write(&key_path, &key).expect("restore");
    server.start_again().await;
    let admin = server.admin().await;
    let list = admin.get("/api/credentials").await.json();
    let id = list[0]["id"].as_str().expect("id").to_string();
    admin
        .put(
            &format!("/api/credentials/{id}"),
            &json!({"name":"core-renamed","kind":"password"}),
        )
        .await
        .assert_status(200);
}

#[tokio::test]
async fn an_empty_store_gets_a_new_master_key() {
    let mut server = Server::start_default().await;
    server.stop();
    let key_path = server.data_dir().join("master.key");
    let old = std::fs::read(&key_path).expect("master.key");
    std::fs::remove_file(&key_path).expect("remove");
    server.start_again().await;
    let new = std::fs::read(&key_path).expect("a new master.key");
    assert_eq!(new.len(), 32);
    assert_ne!(new, old);
    // And it is the key from now on: a credential made with it survives a restart.
    let admin = server.admin().await;
    admin
        .post(
            "/api/credentials",
            &json!({"name":"c","kind":"password","secret":"pw"}),
        )
        .await
        .assert_status(201);
    server.restart().await;
    server
        .admin()
        .await
        .get("/api/credentials")
        .await
        .assert_status(200);
}
