//! A TCP proxy in front of a broker, which a test can cut off and restore: clients see
//! connections refused and dropped, like a broker that went down, while the broker process
//! (with its in-memory data) lives on.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

pub struct Proxy {
    pub listen: SocketAddr,
    upstream: SocketAddr,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Starts forwarding `listen` → `upstream`.
    pub async fn start(listen: SocketAddr, upstream: SocketAddr) -> Proxy {
        let mut proxy = Proxy {
            listen,
            upstream,
            tasks: Arc::default(),
            acceptor: None,
        };
        proxy.restore().await;
        proxy
    }

    /// Closes the listening socket and every open connection.
    pub async fn cut(&mut self) {
        if let Some(acceptor) = self.acceptor.take() {
            acceptor.abort();
            let _ = acceptor.await;
        }
        for task in self.tasks.lock().await.drain(..) {
            task.abort();
        }
    }

    /// Listens and forwards again.
    pub async fn restore(&mut self) {
        let listener = bind_retrying(self.listen).await;
        let upstream = self.upstream;
        let tasks = self.tasks.clone();
        self.acceptor = Some(tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                tasks.lock().await.push(task);
            }
        }));
    }
}

async fn bind_retrying(addr: SocketAddr) -> TcpListener {
    for _ in 0..100 {
        if let Ok(listener) = TcpListener::bind(addr).await {
            return listener;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("could not bind the proxy on {addr}");
}

/// A port free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A broker process of the calling test's own, reachable only through a [`Proxy`] the test can
/// cut: clients (which learn the proxy's address from the broker's metadata) see the broker
/// go down and come back, while its in-memory data lives on.
pub struct PrivateBroker {
    /// The bootstrap address clients use (the proxy's).
    pub brokers: String,
    pub proxy: Proxy,
    process: std::process::Child,
}

impl PrivateBroker {
    pub async fn start() -> PrivateBroker {
        let broker_port = free_port();
        let proxy_port = free_port();
        let process = std::process::Command::new(super::broker::tansu_bin())
            .args(["broker", "--listener-url"])
            .arg(format!("tcp://127.0.0.1:{broker_port}"))
            .arg("--advertised-listener-url")
            .arg(format!("tcp://127.0.0.1:{proxy_port}"))
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn tansu");
        let upstream: SocketAddr = format!("127.0.0.1:{broker_port}").parse().unwrap();
        super::wait_for(
            "the private broker to listen",
            std::time::Duration::from_secs(60),
            || std::net::TcpStream::connect(upstream).ok(),
        );
        let listen: SocketAddr = format!("127.0.0.1:{proxy_port}").parse().unwrap();
        PrivateBroker {
            brokers: listen.to_string(),
            proxy: Proxy::start(listen, upstream).await,
            process,
        }
    }

    /// Cuts the proxy and ends the broker process.
    pub async fn stop(mut self) {
        self.proxy.cut().await;
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}
