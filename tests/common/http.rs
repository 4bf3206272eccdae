//! The admin server in tests: switching it on in a configuration, and a minimal HTTP/1.1
//! client (one request per connection, `Connection: close`, the answer read whole).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Switches the admin server on at a free local port, with `token` for its actions; returns
/// where it listens.
pub fn admin_on(config: &mut procon::Config, token: Option<&str>) -> SocketAddr {
    let bind: SocketAddr = format!("127.0.0.1:{}", super::proxy::free_port())
        .parse()
        .unwrap();
    config.admin.enabled = true;
    config.admin.bind = bind;
    config.admin.token = token.map(str::to_owned);
    bind
}

/// `GET path`, with extra header lines (`"Name: value\r\n"`...): (status, body).
pub async fn get(bind: SocketAddr, path: &str, headers: &str) -> (u16, String) {
    send(
        bind,
        &format!("GET {path} HTTP/1.1\r\nHost: {bind}\r\nConnection: close\r\n{headers}\r\n"),
    )
    .await
}

/// `POST path` with a form `body`, and extra header lines: (status, body).
pub async fn post_form(bind: SocketAddr, path: &str, headers: &str, body: &str) -> (u16, String) {
    send(
        bind,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: {bind}\r\nConnection: close\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
             {headers}\r\n{body}",
            body.len()
        ),
    )
    .await
}

async fn send(bind: SocketAddr, request: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(bind)
        .await
        .expect("connect to the admin server");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok());
    (status.expect("an HTTP status line"), body.to_owned())
}
