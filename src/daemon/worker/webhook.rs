//! Webhook sink: POSTs a JSON batch of orders, signed with HMAC-SHA256,
//! retrying with exponential backoff and jitter. Delivery is at least once;
//! receivers deduplicate by `orderId`.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use tokio::net::TcpStream;

use crate::config::WebhookTarget;

/// Tries per delivery before the batch counts as failed (the job is then
/// retried later, up to `purchase.max_attempts` deliveries).
const TRIES: u32 = 3;
const BASE_BACKOFF: Duration = Duration::from_millis(100);

/// A webhook target.
#[derive(Debug, Clone)]
pub struct Webhook {
    target: WebhookTarget,
    /// For an `https://` URL (its client configuration; a connector is
    /// made from it per connection, which is cheap).
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    url: String,
    secret: String,
    timeout: Duration,
}

impl Webhook {
    /// A webhook at an `http[s]://host[:port][/path][?query]` URL (see
    /// [`crate::config::webhook_target`]); over https it trusts the CA
    /// certificates of `ca_file`, or the system's roots.
    pub fn new(
        url: &str,
        secret: &str,
        timeout: Duration,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Webhook, String> {
        let target = crate::config::webhook_target(url)?;
        let tls = match target.tls {
            true => Some(crate::tls::client_config(ca_file)?),
            false => None,
        };
        Ok(Webhook {
            target,
            tls,
            url: url.into(),
            secret: secret.into(),
            timeout,
        })
    }

    /// The longest one delivery can take: every try timing out, with the
    /// longest backoff between them.
    pub fn longest_delivery(&self) -> Duration {
        (1..TRIES).map(backoff_ceiling).sum::<Duration>() + self.timeout * TRIES
    }

    /// Its address.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Delivers one body, retrying; the error names the last failure.
    pub async fn deliver(&self, body: &[u8]) -> Result<(), String> {
        let signature = sign(&self.secret, body);
        let mut last = String::new();
        for attempt in 0..TRIES {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt)).await;
            }
            match tokio::time::timeout(self.timeout, self.post(body, &signature)).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => last = e,
                Err(_) => last = format!("no answer within {:?}", self.timeout),
            }
            tracing::debug!(url = %self.url, attempt, error = %last, "webhook delivery failed");
        }
        Err(format!("webhook {}: {last}", self.url))
    }

    async fn post(&self, body: &[u8], signature: &str) -> Result<(), String> {
        let stream = TcpStream::connect((self.target.host.as_str(), self.target.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        match &self.tls {
            None => self.send(stream, body, signature).await,
            Some(tls) => {
                let name = rustls_pki_types::ServerName::try_from(self.target.host.clone())
                    .map_err(|e| format!("TLS server name {:?}: {e}", self.target.host))?;
                let stream = tokio_rustls::TlsConnector::from(tls.clone())
                    .connect(name, stream)
                    .await
                    .map_err(|e| format!("TLS: {e}"))?;
                self.send(stream, body, signature).await
            }
        }
    }

    /// The request over a connected stream, plain or TLS.
    async fn send<S>(&self, stream: S, body: &[u8], signature: &str) -> Result<(), String>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(conn);
        let req = hyper::Request::post(&self.target.path)
            .header("host", &self.target.authority)
            .header("content-type", "application/json")
            .header(
                "user-agent",
                concat!("ticketctl/", env!("CARGO_PKG_VERSION")),
            )
            .header("x-ticketctl-signature", signature)
            .body(Full::new(Bytes::copy_from_slice(body)))
            .map_err(|e| format!("request: {e}"))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let status = resp.status();
        let _ = resp.into_body().collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("answered {}", status.as_u16()))
        }
    }
}

pub use crate::signature::sign;

/// The longest wait before try `attempt` (counted from 0).
fn backoff_ceiling(attempt: u32) -> Duration {
    BASE_BACKOFF * 2u32.pow(attempt.saturating_sub(1).min(10))
}

/// Exponential backoff with full jitter: a random wait in [base*2^(n-1)/2, base*2^(n-1)].
fn backoff(attempt: u32) -> Duration {
    let ceiling = backoff_ceiling(attempt);
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    let frac = u16::from_le_bytes(b) as u32;
    ceiling / 2 + (ceiling / 2) * frac / u16::MAX as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn the_longest_delivery_is_every_try_timing_out_plus_the_longest_waits() {
        let h = Webhook::new("http://127.0.0.1:9/x", "k", Duration::from_secs(5), None).unwrap();
        assert_eq!(h.longest_delivery(), Duration::from_millis(15_300));
    }

    #[test]
    fn backoff_grows_and_stays_jittered() {
        for n in 1..5 {
            let b = backoff(n);
            let ceiling = BASE_BACKOFF * 2u32.pow(n - 1);
            assert!(b >= ceiling / 2 && b <= ceiling, "{n}: {b:?}");
        }
    }
}
