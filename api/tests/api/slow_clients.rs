//! Clients that send their request headers too slowly are cut off.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use testkit::spawn_app_with;

#[tokio::test]
async fn a_connection_sending_its_headers_a_byte_at_a_time_is_closed_within_the_header_timeout() {
    let app = spawn_app_with(|config| config.header_timeout_ms = 1_000).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let (mut reader, mut writer) = TcpStream::connect(&addr).await.unwrap().into_split();
    let head = b"POST /api/events HTTP/1.1\r\nHost: flagmeter\r\nContent-Type: application/json\r\nX-Slow: yes\r\n\r\n";
    // One byte every 250 ms: the head would take about 25 s.
    let dripping = tokio::spawn(async move {
        for byte in head {
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });

    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(Duration::from_secs(10), reader.read(&mut buf)).await;

    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the connection stayed open: {read:?}"
    );
    dripping.abort();
    // Clients that send in time are served as before.
    let health = reqwest::get(format!("{}/api/health", app.base))
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
}
