//! `scorestream query --url https://...` speaks TLS (reqwest with rustls): a listener that
//! is not a TLS server receives a TLS ClientHello, and the command fails with an error
//! naming the URL instead of a "scheme is not http" refusal before connecting.

use std::io::Read;
use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

#[test]
fn query_over_https_sends_a_tls_client_hello() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Waits up to 20 s for the client; the first bytes it sends, or None.
    listener.set_nonblocking(true).unwrap();
    let server = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut stream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(_) => return None,
            }
        };
        stream.set_nonblocking(false).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut first = [0u8; 3];
        stream.read_exact(&mut first).ok()?;
        // Dropped: the connection closes mid-handshake.
        Some(first)
    });
    let out = Command::new(env!("CARGO_BIN_EXE_scorestream"))
        .args([
            "query",
            "--url",
            &format!("https://127.0.0.1:{port}"),
            "customer",
            "C-1",
        ])
        .env_remove("SCORESTREAM_URL")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        !stderr.contains("scheme is not http"),
        "no TLS support: {stderr}"
    );
    // A TLS record of type handshake (22), protocol major version 3.
    let first = server
        .join()
        .unwrap()
        .unwrap_or_else(|| panic!("the client never connected: {stderr}"));
    assert_eq!(first[..2], [0x16, 0x03], "{first:?}; client said: {stderr}");
}
