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

/// `POST path` of an admin action with a form `body`, then the page it redirects to: the
/// notice the page shows for the action (HTML-escaped).
pub async fn action_notice(bind: SocketAddr, path: &str, headers: &str, body: &str) -> String {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {bind}\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         {headers}\r\n{body}",
        body.len()
    );
    let (status, head, _) = exchange(bind, &request).await;
    assert_eq!(status, 303, "an action answers with a redirect to the page");
    let location = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("location")
                .then(|| value.trim().to_owned())
        })
        .expect("a Location header");
    let page = get(bind, &location, headers).await.1;
    page.split_once("id=\"notice\">")
        .and_then(|(_, rest)| rest.split_once("</p>"))
        .map(|(notice, _)| notice.to_owned())
        .unwrap_or_default()
}

async fn send(bind: SocketAddr, request: &str) -> (u16, String) {
    let (status, _, body) = exchange(bind, request).await;
    (status, body)
}

/// Sends `request`; returns the status, the head and the body of the answer.
async fn exchange(bind: SocketAddr, request: &str) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(bind)
        .await
        .expect("connect to the admin server");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok());
    (
        status.expect("an HTTP status line"),
        head.to_owned(),
        body.to_owned(),
    )
}
