//! CSV bulk import of saved sessions (issue 15, CSV part): the template, Excel's quirks,
//! duplicates within the file and against the inventory in each mode, one bad row
//! refusing the whole file, credentials by name, and a 10,000-row file.

mod common;

use common::{Client, Resp, Server, ServerOptions, ADMIN, ADMIN_PASSWORD};
use reqwest::Method;
use serde_json::{json, Value};

async fn import(c: &Client, query: &str, body: impl Into<Vec<u8>>) -> Resp {
    c.send_raw(
        Method::POST,
        &format!("/api/sessions/import?format=csv{query}"),
        "text/csv",
        body.into(),
    )
    .await
}

async fn all_sessions(c: &Client) -> Vec<Value> {
    let v = c.list_sessions().await;
    v["folders"]
        .as_array()
        .expect("folders")
        .iter()
        .flat_map(|f| f["sessions"].as_array().cloned().unwrap_or_default())
        .collect()
}

async fn setup() -> (Server, Client) {
    let s = Server::start(ServerOptions::default()).await;
    let c = s.login(ADMIN, ADMIN_PASSWORD).await;
    (s, c)
}

#[tokio::test]
async fn the_template_imports_as_is_with_its_credential_by_name() {
    let (_s, c) = setup().await;
    let t = c.get("/api/sessions/import/template.csv").await;
    t.assert_status(200);
    assert!(t
        .header("content-type")
        .is_some_and(|v| v.starts_with("text/csv")));
    let template = t.text();
    assert!(
        template.starts_with("folder,display_name,host,port,username,device_type,credential,tags")
    );
    // The example names a credential: without it the row is refused, by name.
    let r = import(&c, "", template.clone()).await;
    let msg = r.assert_error(400, Some("import_invalid"));
    assert!(msg.contains("lab-password"), "{msg}");
    let cred = c
        .post(
            "/api/credentials",
            &json!({"name":"lab-password","kind":"password","secret":"pw-123456"}),
        )
        .await;
    cred.assert_status(201);
    let cred_id = cred.json()["id"].as_str().expect("id").to_string();
    let r = import(&c, "", template).await;
    r.assert_status(200);
    assert_eq!(r.json()["created"].as_array().map(Vec::len), Some(1));
    let sessions = all_sessions(&c).await;
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["credential_id"], cred_id.as_str());
    assert_eq!(sessions[0]["tags"], json!(["site=lab", "role=core"]));
}

#[tokio::test]
async fn excel_quirks_bom_semicolons_crlf_and_quoted_commas() {
    let (_s, c) = setup().await;
    let body = "\u{feff}folder;display_name;host;port;device_type;tags\r\n\
                \"Core, east\";sw1;10.0.0.1;2222;cisco_ios;\"site=east,rack=4\"\r\n\
                Edge;fw1;fw1.example.net;;fortinet;\r\n\r\n";
    let r = import(&c, "", body).await;
    r.assert_status(200);
    let sessions = all_sessions(&c).await;
    let sw1 = sessions
        .iter()
        .find(|s| s["display_name"] == "sw1")
        .expect("sw1");
    assert_eq!(sw1["folder"], "Core, east");
    assert_eq!(sw1["port"], 2222);
    assert_eq!(sw1["tags"], json!(["site=east", "rack=4"]));
    let fw1 = sessions
        .iter()
        .find(|s| s["display_name"] == "fw1")
        .expect("fw1");
    assert_eq!(fw1["port"], 22);
}

#[tokio::test]
async fn one_bad_row_refuses_the_whole_file() {
    let (_s, c) = setup().await;
    let body = "display_name,host,port,device_type\n\
                ok1,10.0.0.1,22,linux\n\
                bad,10.0.0.2,70000,linux\n\
                ok2,10.0.0.3,22,no_such_type\n\
                ok3,-oProxyCommand=x,22,linux\n";
    let msg = import(&c, "", body)
        .await
        .assert_error(400, Some("import_invalid"));
    assert!(
        msg.contains("row 2") && msg.contains("row 3") && msg.contains("row 4"),
        "{msg}"
    );
    assert!(
        all_sessions(&c).await.is_empty(),
        "a refused file changed the inventory"
    );
    // Broken headers are refused as a whole.
    import(&c, "", "name,address\nx,y\n")
        .await
        .assert_error(400, Some("invalid_csv"));
    import(&c, "", vec![0xff, 0xfe, 0x00])
        .await
        .assert_error(400, Some("invalid_csv"));
}

#[tokio::test]
async fn duplicates_in_the_file_and_against_the_inventory_in_each_mode() {
    let (_s, c) = setup().await;
    // Within the file: same host and port, or same name in a folder.
    let dup = "folder,display_name,host,port,device_type\n\
               A,sw1,10.0.0.1,22,linux\n\
               A,sw2,10.0.0.1,22,linux\n\
               A,SW1,10.0.0.9,22,linux\n";
    let msg = import(&c, "", dup)
        .await
        .assert_error(400, Some("import_invalid"));
    assert!(msg.contains("duplicate of row 1"), "{msg}");

    import(
        &c,
        "",
        "folder,display_name,host,device_type\nA,sw1,10.0.0.1,linux\n",
    )
    .await
    .assert_status(200);
    // One row matches by name (same folder and name, new host), one by address.
    let again = "folder,display_name,host,device_type,tags\n\
                 A,sw1,10.0.0.5,linux,v=2\n\
                 B,other-name,10.0.0.1,linux,\n\
                 A,sw3,10.0.0.3,linux,\n";
    // fail (the default): refused, nothing applied.
    let msg = import(&c, "", again)
        .await
        .assert_error(400, Some("import_invalid"));
    assert!(msg.contains("already in the inventory"), "{msg}");
    assert_eq!(all_sessions(&c).await.len(), 1);
    // skip: the two matches are left alone, the new row is created.
    let r = import(&c, "&on_duplicate=skip", again).await;
    r.assert_status(200);
    let v = r.json();
    assert_eq!(v["skipped"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["created"].as_array().map(Vec::len), Some(1));
    // update: matches are overwritten.
    let r = import(
        &c,
        "&on_duplicate=update",
        "folder,display_name,host,device_type,tags\nA,sw1,10.0.0.1,linux,v=3\n",
    )
    .await;
    r.assert_status(200);
    assert_eq!(r.json()["updated"].as_array().map(Vec::len), Some(1));
    let sessions = all_sessions(&c).await;
    assert_eq!(sessions.len(), 2);
    let sw1 = sessions
        .iter()
        .find(|s| s["display_name"] == "sw1")
        .expect("sw1");
    assert_eq!(sw1["tags"], json!(["v=3"]));
    // replace: everything else goes.
    let r = import(
        &c,
        "&mode=replace",
        "display_name,host,device_type\nonly,10.1.1.1,linux\n",
    )
    .await;
    r.assert_status(200);
    assert_eq!(r.json()["removed"], 2);
    assert_eq!(all_sessions(&c).await.len(), 1);
}

#[tokio::test]
async fn ten_thousand_rows_import_in_one_go() {
    let (_s, c) = setup().await;
    let mut body = String::from("folder,display_name,host,port,device_type,tags\r\n");
    for i in 0..10_000u32 {
        body.push_str(&format!(
            "site-{},dev-{i:05},10.{}.{}.{},22,cisco_ios,\"n={i}\"\r\n",
            i % 20,
            (i >> 16) & 255,
            (i >> 8) & 255,
            i & 255
        ));
    }
    let started = std::time::Instant::now();
    let r = import(&c, "", body).await;
    r.assert_status(200);
    println!("10,000-row CSV import took {:?}", started.elapsed());
    assert_eq!(r.json()["created"].as_array().map(Vec::len), Some(10_000));
    let v = c.list_sessions().await;
    assert_eq!(v["folders"].as_array().map(Vec::len), Some(20));
}

#[tokio::test]
async fn a_dry_run_lists_created_updated_skipped_and_refused_rows_and_changes_nothing() {
    let (_s, c) = setup().await;
    import(
        &c,
        "",
        "folder,display_name,host,device_type\nA,sw1,10.0.0.1,linux\nA,sw2,10.0.0.2,linux\n",
    )
    .await
    .assert_status(200);
    // A good file: one update (by name), one new row.
    let good =
        "folder,display_name,host,device_type\nA,sw1,10.0.0.11,linux\nA,sw9,10.0.0.9,linux\n";
    let r = import(&c, "&dry_run=true&on_duplicate=update", good).await;
    r.assert_status(200);
    let v = r.json();
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["updated"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["created"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["refused"], json!([]));
    // A bad file: the refused rows come back as data, with row numbers and reasons.
    let bad = "folder,display_name,host,port,device_type\nA,ok,10.0.0.5,22,linux\nA,bad,10.0.0.6,0,linux\nA,worse,10.0.0.7,22,toaster\n";
    let r = import(&c, "&dry_run=true", bad).await;
    r.assert_status(200);
    let v = r.json();
    assert_eq!(v["valid"], false);
    let rows: Vec<u64> = v["refused"]
        .as_array()
        .expect("refused")
        .iter()
        .map(|e| e["row"].as_u64().expect("row"))
        .collect();
    assert_eq!(rows, vec![2, 3], "{v}");
    // Against the inventory: duplicates refused in the default mode, listed too.
    let r = import(&c, "&dry_run=true", good).await;
    let v = r.json();
    assert_eq!(v["valid"], false);
    assert_eq!(v["refused"][0]["row"], 1, "{v}");
    // Two rows of one file matching the same saved session (one by name, one by
    // address) are refused, not applied one over the other.
    let twice = "folder,display_name,host,device_type\nA,sw1,10.9.9.9,linux\nB,x,10.0.0.1,linux\n";
    let msg = import(&c, "&on_duplicate=update", twice)
        .await
        .assert_error(400, Some("import_invalid"));
    assert!(msg.contains("same saved session"), "{msg}");
    // Nothing of all that changed the inventory.
    let sessions = all_sessions(&c).await;
    assert_eq!(sessions.len(), 2);
    assert!(sessions.iter().all(|s| s["host"] != "10.0.0.11"));
}
