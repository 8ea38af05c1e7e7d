//! TLS for HTTPS, gRPC and H2PING checks: rustls with the *ring* provider, the system's trust
//! roots, and Consul's two knobs — `TLSSkipVerify` (accept any certificate, as Go's
//! `InsecureSkipVerify`) and `TLSServerName` (the name sent as SNI and verified in the
//! certificate instead of the target's host).
//!
//! The provider is passed explicitly to every configuration; nothing is installed process-wide,
//! so other rustls users in the process are unaffected.
//!
//! No client certificate is presented (Consul can present the agent's own, with
//! `enable_agent_tls_for_checks`; Cairn's agent has no TLS identity yet), so a target that
//! requires mutual TLS fails the handshake.

use std::sync::{Arc, OnceLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// ALPN protocol ID of HTTP/2 over TLS.
/// Offered by gRPC and H2PING checks: over TLS a server speaks HTTP/2 only when the client
/// offers it.
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN protocol ID of HTTP/1.1.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The *ring* provider, built once and shared by every check configuration.
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())))
}

/// The system's trust roots (`/etc/ssl/certs` and friends, `SSL_CERT_FILE`/`SSL_CERT_DIR`),
/// loaded once. Unreadable or unparsable certificates are skipped.
///
/// Parsing the store costs far more than a probe, so it is read once per process: a CA
/// added to the system later is seen after an agent restart.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    Arc::clone(ROOTS.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        for e in &loaded.errors {
            tracing::debug!(error = %e, "checks: skipping a system trust root");
        }
        let mut store = RootCertStore::empty();
        let (added, ignored) = store.add_parsable_certificates(loaded.certs);
        tracing::debug!(added, ignored, "checks: loaded system trust roots");
        Arc::new(store)
    }))
}

/// Accepts any certificate chain but still checks the handshake signatures, like Go's
/// `InsecureSkipVerify`.
///
/// The signatures still prove that the server holds the key of the certificate it sent;
/// what is given up is knowing whose certificate that is.
///
/// Shared with the agent's own TLS clients (`crate::tls`, with `CONSUL_HTTP_SSL_VERIFY=false`).
#[derive(Debug)]
pub(crate) struct SkipVerify(pub(crate) Arc<CryptoProvider>);

impl ServerCertVerifier for SkipVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    // Advertised to the server so that it signs with a scheme the checks can verify.
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// How a check connects over TLS: a client configuration and the server name to use.
#[derive(Clone)]
pub struct TlsClient {
    /// Shared by every run of the check; rustls resumes sessions through it.
    config: Arc<ClientConfig>,
    /// `TLSServerName`, empty when not set.
    server_name: String,
}

// Only what tells two clients apart; the full rustls configuration would flood the
// probe's `Debug` output.
impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("server_name", &self.server_name)
            .field("alpn", &self.config.alpn_protocols)
            .finish()
    }
}

impl TlsClient {
    /// A client verifying against the system roots (or not at all with `skip_verify`),
    /// offering `alpn`. `server_name` overrides the target's host for SNI and verification
    /// (empty: use the host).
    pub fn new(skip_verify: bool, server_name: &str, alpn: &[&[u8]]) -> Result<TlsClient, String> {
        if skip_verify {
            TlsClient::build(Verify::Skip, server_name, alpn)
        } else {
            TlsClient::build(Verify::Roots(system_roots()), server_name, alpn)
        }
    }

    /// A client trusting only `roots` (tests use their own CA).
    #[cfg(test)]
    pub fn with_roots(
        roots: RootCertStore,
        server_name: &str,
        alpn: &[&[u8]],
    ) -> Result<TlsClient, String> {
        TlsClient::build(Verify::Roots(Arc::new(roots)), server_name, alpn)
    }

    /// The one construction path: TLS 1.2 and 1.3 (rustls' safe defaults), the chosen
    /// verifier, no client certificate.
    fn build(verify: Verify, server_name: &str, alpn: &[&[u8]]) -> Result<TlsClient, String> {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("tls: {e}"))?;
        let verifier: Arc<dyn ServerCertVerifier> = match verify {
            Verify::Skip => Arc::new(SkipVerify(Arc::clone(&provider))),
            Verify::Roots(roots) => WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| format!("tls: {e}"))?,
        };
        let mut config = builder
            // Both verifiers go through the custom-verifier door; for `Roots` it is the standard
            // WebPKI verifier, so nothing is relaxed there.
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(TlsClient {
            config: Arc::new(config),
            server_name: server_name.to_string(),
        })
    }

    /// The name presented and verified when connecting to `host`.
    pub fn name_for<'a>(&'a self, host: &'a str) -> &'a str {
        if self.server_name.is_empty() {
            host
        } else {
            &self.server_name
        }
    }

    /// Runs the TLS handshake over `stream` to a server reached as `host`.
    pub async fn connect<S>(&self, stream: S, host: &str) -> Result<TlsStream<S>, String>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let name = self.name_for(host);
        // IPv6 literals arrive bracketed from URLs and `host:port` strings.
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(bare.to_string())
            .map_err(|e| format!("tls: invalid server name {name:?}: {e}"))?;
        TlsConnector::from(Arc::clone(&self.config))
            .connect(server_name, stream)
            .await
            .map_err(|e| format!("tls: {e}"))
    }
}

enum Verify {
    Skip,
    Roots(Arc<RootCertStore>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::test_servers::{self_signed, tls_acceptor};

    use rustls::pki_types::PrivateKeyDer;

    /// One TLS handshake of `client` against a throwaway server presenting `cert`.
    async fn handshake(
        client: &TlsClient,
        host: &str,
        cert: &CertificateDer<'static>,
        key: &PrivateKeyDer<'static>,
    ) -> Result<(), String> {
        let acceptor = tls_acceptor(cert, key, &[]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            if let Ok((s, _)) = listener.accept().await {
                let _ = acceptor.accept(s).await;
            }
        });
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let r = client.connect(stream, host).await.map(|_| ());
        server.abort();
        r
    }

    #[tokio::test]
    async fn skip_verify_accepts_a_self_signed_certificate() {
        let (cert, key) = self_signed(&["cairn.test"]);
        let c = TlsClient::new(true, "", &[]).expect("config");
        handshake(&c, "127.0.0.1", &cert, &key)
            .await
            .expect("handshake");
    }

    /// Without skip-verify, a certificate no system CA signed is refused.
    #[tokio::test]
    async fn system_roots_refuse_a_self_signed_certificate() {
        let (cert, key) = self_signed(&["cairn.test"]);
        let c = TlsClient::new(false, "", &[]).expect("config");
        let e = handshake(&c, "127.0.0.1", &cert, &key)
            .await
            .expect_err("untrusted");
        assert!(e.contains("certificate"), "{e}");
    }

    #[tokio::test]
    async fn server_name_overrides_the_host_for_verification() {
        let (cert, key) = self_signed(&["cairn.test"]);
        let roots = || {
            let mut r = RootCertStore::empty();
            r.add(cert.clone()).expect("add root");
            r
        };
        // Connected by IP: the certificate only names cairn.test.
        let by_ip = TlsClient::with_roots(roots(), "", &[]).expect("config");
        let e = handshake(&by_ip, "127.0.0.1", &cert, &key)
            .await
            .expect_err("name");
        assert!(e.contains("certificate"), "{e}");
        let named = TlsClient::with_roots(roots(), "cairn.test", &[]).expect("config");
        assert_eq!(named.name_for("127.0.0.1"), "cairn.test");
        handshake(&named, "127.0.0.1", &cert, &key)
            .await
            .expect("verified as cairn.test");
    }
}
