//! [`BoundedHttp`]: alloy's HTTP transport, except that an answer is read only up to a limit.
//!
//! alloy's `Http<reqwest::Client>` reads the whole body into memory before it looks at it, so a
//! node (or anything between us and it) decides how much memory we use. This transport posts the
//! same way but reads the body chunk by chunk ([`read_bounded`]) and refuses it as soon as it
//! passes the limit: nothing beyond the limit is ever buffered. [`EthRpc`](super::EthRpc) uses it
//! for every call and [`read_bounded`] itself for the requests it makes by hand.

use std::task;

use alloy::{
    rpc::json_rpc::{RequestPacket, ResponsePacket},
    transports::{TransportError, TransportErrorKind, TransportFut, http::reqwest},
};

/// An answer we did not read to its end.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The answer (its `content-length`, or what arrived of it) is larger than the limit.
    #[error("answer larger than {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// Reading the body failed (the connection dropped, the request timed out).
    #[error(transparent)]
    Http(#[from] reqwest::Error),
}

/// `response`'s body, read chunk by chunk and refused with [`BodyError::TooLarge`] once it passes
/// `limit` bytes (or at once when its `content-length` says it will): at most `limit` bytes, plus
/// one chunk in flight, are ever held.
pub async fn read_bounded(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    let declared = response.content_length().map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    if declared.is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut out = Vec::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = response.chunk().await? {
        if out.len().saturating_add(chunk.len()) > limit {
            return Err(BodyError::TooLarge { limit });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// A `tower::Service<RequestPacket>` over HTTP that bounds the size of every answer, a drop-in for
/// alloy's `Http<reqwest::Client>` (same request, same errors) in an `RpcClient`.
#[derive(Clone, Debug)]
pub struct BoundedHttp {
    client: reqwest::Client,
    url: reqwest::Url,
    limit: usize,
}

impl BoundedHttp {
    /// Posts to `url` with `client`; answers larger than `limit` bytes are refused.
    pub fn new(client: reqwest::Client, url: reqwest::Url, limit: usize) -> Self {
        Self { client, url, limit }
    }

    async fn send(self, req: RequestPacket) -> Result<ResponsePacket, TransportError> {
        let response = self
            .client
            .post(self.url)
            .json(&req)
            .headers(req.headers())
            .send()
            .await
            .map_err(TransportErrorKind::custom)?;
        let status = response.status();
        // Read whatever the status: an error page says why (within the same limit).
        let body = read_bounded(response, self.limit).await.map_err(|e| match e {
            BodyError::Http(e) => TransportErrorKind::custom(e),
            too_large => TransportErrorKind::custom(too_large),
        })?;
        if !status.is_success() {
            return Err(TransportErrorKind::http_error(status.as_u16(), String::from_utf8_lossy(&body).into_owned()));
        }
        serde_json::from_slice(&body).map_err(|err| TransportError::deser_err(err, String::from_utf8_lossy(&body)))
    }
}

impl tower::Service<RequestPacket> for BoundedHttp {
    type Response = ResponsePacket;
    type Error = TransportError;
    type Future = TransportFut<'static>;

    fn poll_ready(&mut self, _cx: &mut task::Context<'_>) -> task::Poll<Result<(), Self::Error>> {
        // reqwest is always ready.
        task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: RequestPacket) -> Self::Future {
        Box::pin(self.clone().send(req))
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read as _, Write as _},
        time::Duration,
    };

    use alloy::rpc::client::RpcClient;

    use super::*;

    /// A server that answers every connection with 200 and a `size`-byte body of JSON whitespace
    /// (sent in 64 KiB writes, never held whole; `chunked` hides the size from the headers), and
    /// reports how many bytes it managed to send.
    fn huge_server(size: usize, chunked: bool) -> (reqwest::Url, std::sync::mpsc::Receiver<usize>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr")).parse().expect("url");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let head = if chunked {
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".to_owned()
                } else {
                    format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {size}\r\n\r\n")
                };
                let piece = vec![b' '; 64 << 10];
                let mut sent = 0;
                let mut ok = stream.write_all(head.as_bytes()).is_ok();
                while ok && sent < size {
                    let n = piece.len().min(size - sent);
                    ok = if chunked {
                        stream.write_all(format!("{n:x}\r\n").as_bytes()).is_ok()
                            && stream.write_all(&piece[..n]).is_ok()
                            && stream.write_all(b"\r\n").is_ok()
                    } else {
                        stream.write_all(&piece[..n]).is_ok()
                    };
                    if ok {
                        sent += n;
                    }
                }
                let _ = tx.send(sent);
            }
        });
        (url, rx)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
    }

    #[test]
    fn a_huge_answer_is_refused_saying_why_without_reading_it() {
        const LIMIT: usize = 1 << 20;
        for chunked in [true, false] {
            // 1 GiB: reading it whole would take a second or more and a GiB of memory.
            let (url, sent) = huge_server(1 << 30, chunked);
            let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
            let rpc = RpcClient::new(BoundedHttp::new(client, url, LIMIT), false);
            let result: Result<serde_json::Value, _> = runtime().block_on(rpc.request_noparams("eth_chainId"));
            let e = result.expect_err("refused");
            assert!(e.to_string().contains(&format!("answer larger than {LIMIT} bytes")), "says why: {e}");
            drop(rpc);
            // The server saw the connection close long before the end of the body.
            let sent = sent.recv_timeout(Duration::from_secs(10)).expect("server done");
            assert!(sent < 1 << 29, "read {sent} bytes of a 1 GiB answer (chunked: {chunked})");
        }
    }

    #[test]
    fn an_answer_within_the_limit_is_read() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr")).parse().expect("url");
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let body = r#"{"jsonrpc":"2.0","id":0,"result":"0x7"}"#;
                let reply = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len());
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        let rpc = RpcClient::new(BoundedHttp::new(reqwest::Client::new(), url, 1024), false);
        let id: Result<String, _> = runtime().block_on(rpc.request_noparams("eth_chainId"));
        assert_eq!(id.expect("answer"), "0x7");
    }
}
