//! A TCP proxy on loopback between a client and a shared server, to take the server away
//! and give it back without touching the server itself.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Forwards connections to `upstream` until [`cut`](Self::cut); stops when dropped.
pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    accept: JoinHandle<()>,
}

#[derive(Default)]
struct State {
    down: bool,
    connections: Vec<JoinHandle<()>>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut state = shared.lock().unwrap();
                if state.down {
                    // A server that is down: the connection is reset at once.
                    drop(client);
                    continue;
                }
                state.connections.push(tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }));
            }
        });
        Self {
            addr,
            state,
            accept,
        }
    }

    /// The server goes away: open connections are cut, new ones reset.
    pub fn cut(&self) {
        let mut state = self.state.lock().unwrap();
        state.down = true;
        for connection in state.connections.drain(..) {
            connection.abort();
        }
    }

    /// The server is back.
    pub fn restore(&self) {
        self.state.lock().unwrap().down = false;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}
