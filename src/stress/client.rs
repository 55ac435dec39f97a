//! The load generator's HTTP/1.1 client: one keep-alive connection per
//! client task on hyper's low-level `conn` API, re-established after any
//! failure, every request bounded by a timeout. No pooling, no redirects,
//! no retries: a load generator must report what happened, not hide it.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Where requests go: a resolved address plus what the URL said.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL as given, for messages.
    pub url: String,
    /// The resolved socket address.
    pub addr: SocketAddr,
    /// The `Host` header.
    pub host: HeaderValue,
    /// Path prefix of the URL, without a trailing slash (usually empty).
    pub base: String,
}

impl Target {
    /// Parses an `http://host:port[/prefix]` URL and resolves its host.
    pub async fn resolve(url: &str) -> Result<Target, String> {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| format!("--url {url:?} is not a URL: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("--url {url:?} must start with http://"));
        }
        let auth = uri
            .authority()
            .ok_or_else(|| format!("--url {url:?} has no host"))?;
        let port = auth.port_u16().unwrap_or(80);
        let host_port = format!("{}:{port}", auth.host().trim_matches(['[', ']']));
        let addr =
            tokio::time::timeout(Duration::from_secs(3), tokio::net::lookup_host(&host_port))
                .await
                .map_err(|_| format!("cannot resolve {}: timed out", auth.host()))?
                .map_err(|e| format!("cannot resolve {}: {e}", auth.host()))?
                .next()
                .ok_or_else(|| format!("cannot resolve {}: no address", auth.host()))?;
        Ok(Target {
            url: url.to_string(),
            addr,
            host: HeaderValue::from_str(auth.as_str())
                .map_err(|_| format!("--url {url:?} has a bad host"))?,
            base: uri.path().trim_end_matches('/').to_string(),
        })
    }
}

/// How one request ended.
#[derive(Debug)]
pub enum Reply {
    /// A complete response.
    Response {
        /// HTTP status.
        status: u16,
        /// The whole body.
        body: Bytes,
    },
    /// No complete response within the timeout.
    Timeout,
    /// Connecting failed or the connection broke; the text says how.
    Connection(String),
}

/// One keep-alive connection to the target.
pub struct Client {
    target: Target,
    timeout: Duration,
    sender: Option<SendRequest<Full<Bytes>>>,
    path: String,
    /// `X-Ticketctl-Signature` of the next request only (a payment result).
    pub next_signature: Option<String>,
    /// `Authorization` of every request while set (`--jwt-secret`: the
    /// current virtual user's `Bearer <token>`).
    pub bearer: Option<HeaderValue>,
    /// `Queue-Id` of every request while set (`onsale`: the admitted place).
    pub queue_id: Option<HeaderValue>,
}

impl Client {
    /// A client that connects on its first request.
    pub fn new(target: Target, timeout: Duration) -> Client {
        Client {
            target,
            timeout,
            sender: None,
            path: String::with_capacity(128),
            next_signature: None,
            bearer: None,
            queue_id: None,
        }
    }

    /// Sends one request to `base + path`; `body` is sent as JSON.
    pub async fn send(&mut self, method: Method, path: &str, body: Option<Bytes>) -> Reply {
        match tokio::time::timeout(self.timeout, self.exchange(method, path, body)).await {
            Ok(Ok((status, body))) => Reply::Response { status, body },
            Ok(Err(e)) => {
                self.sender = None;
                Reply::Connection(e)
            }
            Err(_) => {
                // The connection may still carry the late answer: start afresh.
                self.sender = None;
                Reply::Timeout
            }
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let stream = TcpStream::connect(self.target.addr)
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", self.target.addr))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake with {} failed: {e}", self.target.addr))?;
        tokio::spawn(async move {
            // Ends when the sender is dropped or the peer closes; the
            // request side reports any error that matters.
            let _ = conn.await;
        });
        Ok(sender)
    }

    async fn exchange(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<(u16, Bytes), String> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            self.sender = Some(self.connect().await?);
        }
        let sender = self.sender.as_mut().expect("connected above");
        sender
            .ready()
            .await
            .map_err(|e| format!("connection closed: {e}"))?;
        self.path.clear();
        self.path.push_str(&self.target.base);
        self.path.push_str(path);
        let mut req = Request::builder()
            .method(method)
            .uri(self.path.as_str())
            .header(HOST, self.target.host.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(sig) = self.next_signature.take() {
            req = req.header("x-ticketctl-signature", sig);
        }
        if let Some(b) = &self.bearer {
            req = req.header(hyper::header::AUTHORIZATION, b.clone());
        }
        if let Some(q) = &self.queue_id {
            req = req.header("queue-id", q.clone());
        }
        let req = req
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| format!("bad request: {e}"))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("response body failed: {e}"))?
            .to_bytes();
        Ok((status, body))
    }
}
