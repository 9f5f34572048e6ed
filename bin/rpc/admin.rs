//! Admin access to the JSON-RPC server: every `admin_*` method is guarded by one RPC middleware
//! ([`AdminGuard`]), so a new admin method cannot forget the check. A caller authenticates as the
//! Engine API does it: a 32-byte secret in a hex file shared with the caller (`rpc.jwt_secret_file`),
//! an HS256 token per request in `Authorization: Bearer <jwt>`, its `iat` within 60 s of our
//! clock. Tokens are alloy's Engine-API [`JwtSecret`] (`alloy-rpc-types-engine`, backed by
//! `jsonwebtoken`'s pure-Rust crypto).

use std::path::Path;

use alloy_rpc_types_engine::{Claims, JwtSecret};
use jsonrpsee::{
    Extensions, MethodResponse,
    core::middleware::{Batch, BatchEntry, BatchEntryErr, Notification, RpcServiceT},
    server::HttpRequest,
    types::{ErrorObjectOwned, Request},
};

/// Error code for an admin method called without a valid token (or with admin methods off).
pub const UNAUTHORIZED: i32 = -32004;

/// The prefix of every admin method.
pub const ADMIN_PREFIX: &str = "admin_";

/// Admin access: off (no `rpc.jwt_secret_file`), or the secret that tokens must be signed with.
/// `Debug` never shows the secret (alloy's [`JwtSecret`] redacts itself).
#[derive(Clone, Debug)]
pub struct Admin(Option<JwtSecret>);

impl Admin {
    /// Reads `rpc.jwt_secret_file` if it is set.
    pub fn from_config(rpc: &crate::config::RpcConfig) -> Result<Self, crate::config::ConfigError> {
        let secret = rpc
            .jwt_secret_file
            .as_deref()
            .map(read_secret)
            .transpose()
            .map_err(|e| crate::config::ConfigError(format!("invalid value for key `rpc.jwt_secret_file`: {e}")))?;
        Ok(Self(secret))
    }

    /// Whether admin methods are on.
    pub fn enabled(&self) -> bool {
        self.0.is_some()
    }

    /// Checks the bearer token that [`bearer`] copied into the call's extensions.
    fn authorize(&self, ext: &Extensions) -> Result<(), ErrorObjectOwned> {
        let unauthorized = |why: String| ErrorObjectOwned::owned(UNAUTHORIZED, why, None::<()>);
        let Some(secret) = &self.0 else {
            return Err(unauthorized(
                "admin methods are disabled: set `rpc.jwt_secret_file` to enable them".to_owned(),
            ));
        };
        let Some(token) = ext.get::<Bearer>().and_then(|b| b.0.as_deref()) else {
            return Err(unauthorized("unauthorized: missing `Authorization: Bearer <jwt>` header".to_owned()));
        };
        secret.validate(token).map_err(|e| unauthorized(format!("unauthorized: {e}")))
    }
}

/// Reads a secret file: 64 hex digits, optionally `0x`-prefixed, surrounding whitespace ignored.
/// The error names the file.
pub fn read_secret(path: &Path) -> Result<JwtSecret, String> {
    JwtSecret::from_file(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// A token issued now, for `rollup-supervisor jwt token`.
pub fn token(secret: &JwtSecret) -> Result<String, String> {
    secret.encode(&Claims::default()).map_err(|e| format!("cannot sign a token: {e}"))
}

/// The request's bearer token, copied from the HTTP `Authorization` header into the call's
/// extensions by the server's HTTP middleware.
#[derive(Clone, Debug)]
pub struct Bearer(Option<String>);

/// Reads the bearer token of an HTTP request.
pub fn bearer(req: &HttpRequest) -> Bearer {
    let value = req.headers().get(hyper::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    Bearer(value.and_then(|v| v.strip_prefix("Bearer ")).map(|t| t.trim().to_owned()))
}

/// The RPC middleware that refuses every `admin_*` call, alone or inside a batch, unless
/// [`Admin::authorize`] accepts it. Notifications never run a method in jsonrpsee, so they pass.
#[derive(Clone, Debug)]
pub struct AdminGuard<S> {
    inner: S,
    admin: Admin,
}

impl<S> AdminGuard<S> {
    /// Guards `inner`.
    pub fn new(inner: S, admin: Admin) -> Self {
        Self { inner, admin }
    }

    fn check(&self, method: &str, ext: &Extensions) -> Result<(), ErrorObjectOwned> {
        if method.starts_with(ADMIN_PREFIX) { self.admin.authorize(ext) } else { Ok(()) }
    }
}

impl<S> RpcServiceT for AdminGuard<S>
where
    S: RpcServiceT<MethodResponse = MethodResponse> + Send + Sync + Clone + 'static,
{
    type MethodResponse = S::MethodResponse;
    type NotificationResponse = S::NotificationResponse;
    type BatchResponse = S::BatchResponse;

    fn call<'a>(&self, request: Request<'a>) -> impl Future<Output = Self::MethodResponse> + Send + 'a {
        let refused = self.check(request.method_name(), request.extensions()).err();
        let inner = self.inner.clone();
        async move {
            match refused {
                Some(e) => MethodResponse::error(request.id, e),
                None => inner.call(request).await,
            }
        }
    }

    fn batch<'a>(&self, mut requests: Batch<'a>) -> impl Future<Output = Self::BatchResponse> + Send + 'a {
        for entry in requests.iter_mut() {
            let refused = match entry {
                Ok(BatchEntry::Call(req)) => {
                    self.check(req.method_name(), req.extensions()).err().map(|e| (req.id(), e))
                }
                _ => None,
            };
            if let Some((id, e)) = refused {
                *entry = Err(BatchEntryErr::new(id.into_owned(), e));
            }
        }
        self.inner.batch(requests)
    }

    fn notification<'a>(&self, n: Notification<'a>) -> impl Future<Output = Self::NotificationResponse> + Send + 'a {
        self.inner.notification(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(byte: u8) -> JwtSecret {
        JwtSecret::from_hex(hex(byte)).expect("secret")
    }

    fn hex(byte: u8) -> String {
        format!("{byte:02x}").repeat(32)
    }

    fn ext(token: Option<String>) -> Extensions {
        let mut ext = Extensions::new();
        ext.insert(Bearer(token));
        ext
    }

    fn message(r: Result<(), ErrorObjectOwned>) -> String {
        r.map_or_else(|e| e.message().to_owned(), |()| "ok".to_owned())
    }

    #[test]
    fn accepts_its_own_fresh_tokens_and_nothing_else() {
        let admin = Admin(Some(secret(7)));
        // This also proves a crypto backend is compiled in: jsonwebtoken panics without one.
        assert_eq!(message(admin.authorize(&ext(Some(token(&secret(7)).expect("token"))))), "ok");
        let forged = token(&secret(8)).expect("token");
        assert!(message(admin.authorize(&ext(Some(forged)))).contains("signature is invalid"));
        let stale = secret(7).encode(&Claims { iat: Claims::default().iat - 61, exp: None }).expect("token");
        assert!(message(admin.authorize(&ext(Some(stale)))).contains("IAT"));
        let early = secret(7).encode(&Claims { iat: Claims::default().iat + 61, exp: None }).expect("token");
        assert!(message(admin.authorize(&ext(Some(early)))).contains("IAT"));
        assert!(message(admin.authorize(&ext(None))).contains("unauthorized: missing"));
        assert!(message(admin.authorize(&Extensions::new())).contains("unauthorized: missing"));
        assert!(message(admin.authorize(&ext(Some("a.b".into())))).starts_with("unauthorized:"));
        // A token whose header says "none" is refused even with an empty signature.
        let none = "eyJhbGciOiJub25lIn0.eyJpYXQiOjEwMDB9.";
        assert!(message(admin.authorize(&ext(Some(none.into())))).starts_with("unauthorized:"));
        assert!(message(Admin(None).authorize(&ext(None))).contains("admin methods are disabled"));
    }

    #[test]
    fn secret_files_are_64_hex_digits_and_errors_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            path
        };
        assert!(read_secret(&write("plain", &hex(0xab))).is_ok());
        assert!(read_secret(&write("prefixed", &format!("0x{}\n", hex(0xab)))).is_ok());
        let short = read_secret(&write("short", &"ab".repeat(31))).expect_err("31 bytes");
        assert!(short.contains("short") && short.contains("62 digits"), "{short}");
        assert!(read_secret(&write("bad", "zz")).is_err());
        assert!(read_secret(&dir.path().join("absent")).expect_err("absent").contains("absent"));
        assert_eq!(
            format!("{:?}", Admin(Some(secret(1)))),
            r#"Admin(Some(JwtSecret("{{}}")))"#,
            "Debug shows the secret"
        );
    }

    /// The service behind the guard: answers every call it gets and records what reached it.
    #[derive(Clone, Default)]
    struct Inner(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

    impl Inner {
        fn seen(&self) -> Vec<String> {
            self.0.lock().map(|v| v.clone()).unwrap_or_default()
        }
        fn record(&self, what: String) {
            if let Ok(mut v) = self.0.lock() {
                v.push(what);
            }
        }
    }

    impl RpcServiceT for Inner {
        type MethodResponse = MethodResponse;
        type NotificationResponse = MethodResponse;
        type BatchResponse = MethodResponse;

        fn call<'a>(&self, request: Request<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
            self.record(format!("ran {}", request.method_name()));
            let id = request.id;
            async move { MethodResponse::response(id, jsonrpsee::ResponsePayload::success("ran"), usize::MAX) }
        }

        fn batch<'a>(&self, batch: Batch<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
            for entry in batch {
                match entry {
                    Ok(BatchEntry::Call(req)) => self.record(format!("ran {}", req.method_name())),
                    Ok(BatchEntry::Notification(n)) => self.record(format!("notified {}", n.method_name())),
                    Err(e) => self.record(format!("refused: {}", e.into_parts().0.message())),
                }
            }
            async { MethodResponse::notification() }
        }

        fn notification<'a>(&self, n: Notification<'a>) -> impl Future<Output = MethodResponse> + Send + 'a {
            self.record(format!("notified {}", n.method_name()));
            async { MethodResponse::notification() }
        }
    }

    fn request(method: &str, token: Option<String>) -> Request<'static> {
        let mut req = Request::owned(method.to_owned(), None, jsonrpsee::types::Id::Number(1));
        req.extensions_mut().insert(Bearer(token));
        req
    }

    #[tokio::test]
    async fn the_guard_refuses_unauthorized_admin_calls_alone_and_in_batches_and_passes_the_rest() {
        let inner = Inner::default();
        let guard = AdminGuard::new(inner.clone(), Admin(Some(secret(7))));
        let valid = || Some(token(&secret(7)).expect("token"));

        assert!(guard.call(request("admin_forceUptimeUpdate", None)).await.is_error());
        assert!(
            guard.call(request("admin_forceUptimeUpdate", Some(token(&secret(8)).expect("token")))).await.is_error()
        );
        assert!(guard.call(request("admin_forceUptimeUpdate", valid())).await.is_success());
        assert!(guard.call(request("supervisor_syncStatus", None)).await.is_success());
        // Method names are exact: `Admin_x` is not an admin method, and no such method exists.
        assert!(guard.call(request("Admin_forceUptimeUpdate", None)).await.is_success());
        assert_eq!(
            inner.seen(),
            ["ran admin_forceUptimeUpdate", "ran supervisor_syncStatus", "ran Admin_forceUptimeUpdate"]
        );

        let inner = Inner::default();
        let guard = AdminGuard::new(inner.clone(), Admin(Some(secret(7))));
        let mut batch = Batch::new();
        batch.push(request("admin_forceUptimeUpdate", None));
        batch.push(request("supervisor_syncStatus", None));
        batch.push(request("admin_forceUptimeUpdate", valid()));
        guard.batch(batch).await;
        assert_eq!(
            inner.seen(),
            [
                "refused: unauthorized: missing `Authorization: Bearer <jwt>` header",
                "ran supervisor_syncStatus",
                "ran admin_forceUptimeUpdate",
            ]
        );

        let inner = Inner::default();
        let off = AdminGuard::new(inner.clone(), Admin(None));
        assert!(off.call(request("admin_forceUptimeUpdate", valid())).await.is_error());
        assert!(inner.seen().is_empty(), "admin methods are off without a secret");
    }
}
