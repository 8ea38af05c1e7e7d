//! TLS for the agent: the HTTPS API, server RPC between agents, and the CLI's HTTPS client, on
//! rustls with the ring provider only (no OpenSSL, no aws-lc: nothing but ring's own build).
//!
//! What this module owns:
//! - reading certificates, keys and CAs from the files Consul's `tls {}` keys name, and refusing
//!   a certificate that is expired or not yet valid with a line that says which file and when;
//! - building rustls configurations from one protocol's settings
//!   ([`crate::config::TlsProtocol`]): the minimum version (TLS 1.2 unless configured, TLS 1.3
//!   preferred), Consul's cipher-suite names, client certificates required with
//!   `verify_incoming`;
//! - Consul's server-name rule for RPC (`verify_server_hostname`): a server's certificate must
//!   name `server.<dc>.<domain>` ([`ServerName`]);
//! - [`generate`]: the certificates of `cairn tls ca create` and `cairn tls cert create`.
//!
//! The listeners take a fresh [`rustls::ServerConfig`] from a [`Current`] at every accept, so
//! a reload (SIGHUP, `PUT /v1/agent/reload`) applies to new connections while established ones
//! keep the configuration they were accepted with.

pub mod generate;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName as PkiName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig,
    SignatureScheme, SupportedProtocolVersion,
};

use crate::config::{TlsMinVersion, TlsProtocol};

/// The ring provider with every suite it has: the one provider of the process.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())))
}

/// Makes ring the process's default provider, for clients that build their own rustls
/// configuration (reqwest builds one even for plain-HTTP clients). Idempotent; called by
/// `main` and by every place that builds an HTTP client, since library users and tests have no
/// `main` of ours.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A `reqwest` client builder, with ring installed first (see [`install_default_provider`]).
pub fn http_client_builder() -> reqwest::ClientBuilder {
    install_default_provider();
    reqwest::Client::builder()
}

/// Reads every certificate of a PEM file.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("failed to read {}: {e}", path.display()))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", path.display()));
    }
    Ok(certs)
}

/// Reads the private key of a PEM file (PKCS#8, SEC1 or PKCS#1). The error never shows the
/// key's content.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("failed to read {}: {e}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|_| format!("{}: no PEM private key found", path.display()))
}

/// The trusted CAs: `ca_file` and every `.pem`/`.crt` file of `ca_path`.
pub fn read_roots(ca_file: Option<&Path>, ca_path: Option<&Path>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let mut files: Vec<PathBuf> = ca_file.map(Path::to_path_buf).into_iter().collect();
    if let Some(dir) = ca_path {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| format!("failed to read CA directory {}: {e}", dir.display()))?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        files.extend(found);
    }
    for file in files {
        for cert in read_certs(&file)? {
            roots
                .add(cert)
                .map_err(|e| format!("{}: not a usable CA certificate: {e}", file.display()))?;
        }
    }
    Ok(roots)
}

/// A certificate's validity period, seconds since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    /// Not valid before.
    pub not_before: i64,
    /// Not valid after.
    pub not_after: i64,
}

impl Validity {
    /// Seconds until the certificate expires (negative once it has).
    pub fn seconds_left(&self) -> i64 {
        self.not_after - now_secs()
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A certificate's validity period, read from its DER.
pub fn validity(cert: &CertificateDer<'_>) -> Result<Validity, String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let v = parsed.validity();
    Ok(Validity {
        not_before: v.not_before.timestamp(),
        not_after: v.not_after.timestamp(),
    })
}

/// The DNS names a certificate carries in its subject alternative names.
pub fn dns_names(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(san)) = parsed.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect()
}

/// Formats seconds since the epoch as RFC 3339, for log lines.
fn show_time(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|| secs.to_string())
}

/// An agent's own certificate: the chain and key from `cert_file` and `key_file`.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The certificate first, then any intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key.
    pub key: Arc<PrivateKeyDer<'static>>,
    /// The leaf's validity, for the expiry gauge and `/v1/agent/self`.
    pub validity: Validity,
}

/// Reads `cert_file` and `key_file` and checks the leaf is valid now.
///
/// Refused with a line that names the file and the date, rather than accepted and failing
/// every handshake with a peer's terse alert.
pub fn load_identity(cert_file: &Path, key_file: &Path) -> Result<Identity, String> {
    let chain = read_certs(cert_file)?;
    let key = read_key(key_file)?;
    let validity = validity(&chain[0]).map_err(|e| format!("{}: {e}", cert_file.display()))?;
    let now = now_secs();
    if validity.not_after < now {
        return Err(format!(
            "certificate {} expired at {}",
            cert_file.display(),
            show_time(validity.not_after)
        ));
    }
    if validity.not_before > now {
        return Err(format!(
            "certificate {} is not valid until {}",
            cert_file.display(),
            show_time(validity.not_before)
        ));
    }
    // The key must match the certificate: checked now, not at the first handshake.
    let signing = provider()
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| format!("{}: unusable private key: {e}", key_file.display()))?;
    let certified = rustls::sign::CertifiedKey::new(chain.clone(), signing);
    if let Err(e) = certified.keys_match() {
        return Err(format!(
            "{} and {} do not belong together: {e}",
            cert_file.display(),
            key_file.display()
        ));
    }
    Ok(Identity {
        chain,
        key: Arc::new(key),
        validity,
    })
}

/// The protocol versions from a minimum: rustls speaks TLS 1.2 and 1.3 only, so `TLSv1_0` and
/// `TLSv1_1` (accepted by the configuration, with a warning) mean TLS 1.2.
fn versions(min: TlsMinVersion) -> &'static [&'static SupportedProtocolVersion] {
    static TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
    static BOTH: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];
    match min {
        TlsMinVersion::Tls13 => TLS13_ONLY,
        _ => BOTH,
    }
}

/// The TLS 1.2 suites Consul's `tls_cipher_suites` names that rustls (ring) has.
const SUITES: &[(&str, rustls::SupportedCipherSuite)] = &[
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        rustls::crypto::ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        rustls::crypto::ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        rustls::crypto::ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        rustls::crypto::ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        rustls::crypto::ring::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        rustls::crypto::ring::cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
        rustls::crypto::ring::cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        rustls::crypto::ring::cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// Checks a `tls_cipher_suites` value: a comma-separated list of the names in [`SUITES`].
pub fn check_cipher_suites(list: &str) -> Result<(), String> {
    suite_names(list).try_for_each(|name| {
        if SUITES.iter().any(|(n, _)| *n == name) {
            Ok(())
        } else {
            Err(format!(
                "unsupported cipher suite {name:?}: Cairn (rustls) offers only the ECDHE \
                 AES-GCM and ChaCha20-Poly1305 suites"
            ))
        }
    })
}

fn suite_names(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// The provider for one protocol: every TLS 1.3 suite (Consul cannot restrict those either)
/// and, when `tls_cipher_suites` is set, only the TLS 1.2 suites it names.
fn provider_for(p: &TlsProtocol) -> Result<Arc<CryptoProvider>, String> {
    if p.cipher_suites.trim().is_empty() {
        return Ok(provider());
    }
    check_cipher_suites(&p.cipher_suites)?;
    let mut custom = (*provider()).clone();
    let chosen: Vec<_> = suite_names(&p.cipher_suites)
        .filter_map(|n| SUITES.iter().find(|(name, _)| *name == n).map(|(_, s)| *s))
        .collect();
    custom
        .cipher_suites
        .retain(|s| s.version() == &rustls::version::TLS13);
    custom.cipher_suites.extend(chosen);
    Ok(Arc::new(custom))
}

/// The CAs of a protocol, or an error naming the setting when none is configured.
fn roots_of(p: &TlsProtocol, why: &str) -> Result<Arc<RootCertStore>, String> {
    if p.ca_file.is_none() && p.ca_path.is_none() {
        return Err(format!("{why} requires ca_file or ca_path"));
    }
    Ok(Arc::new(read_roots(
        p.ca_file.as_deref(),
        p.ca_path.as_deref(),
    )?))
}

/// A server configuration for one protocol, or `None` when it has no certificate (then the
/// listener cannot serve TLS). `alpn` lists the application protocols offered.
pub fn server_config(
    p: &TlsProtocol,
    alpn: &[&[u8]],
) -> Result<Option<(Arc<ServerConfig>, Validity)>, String> {
    let (Some(cert), Some(key)) = (&p.cert_file, &p.key_file) else {
        if p.verify_incoming {
            return Err("verify_incoming requires cert_file and key_file".into());
        }
        return Ok(None);
    };
    let identity = load_identity(cert, key)?;
    let provider = provider_for(p)?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions(p.min_version))
        .map_err(|e| format!("TLS versions: {e}"))?;
    let builder = if p.verify_incoming {
        let roots = roots_of(p, "verify_incoming")?;
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, Arc::clone(&provider))
            .build()
            .map_err(|e| format!("client certificate verifier: {e}"))?;
        builder.with_client_cert_verifier(verifier)
    } else if p.ca_file.is_some() || p.ca_path.is_some() {
        // A client certificate is asked for and checked when sent, so server RPC can tell a
        // server from a client agent even while `verify_incoming` is off during a rollout.
        let roots = roots_of(p, "ca")?;
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, Arc::clone(&provider))
            .allow_unauthenticated()
            .build()
            .map_err(|e| format!("client certificate verifier: {e}"))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(|e| format!("certificate: {e}"))?;
    config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Ok(Some((Arc::new(config), identity.validity)))
}

/// How a client checks the name in a server's certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerName {
    /// The name the client dialled (HTTPS, the CLI): standard hostname verification.
    Dialled,
    /// Only the chain to the CA: RPC with `verify_outgoing` alone, where servers are dialled by
    /// IP address and their certificates name `server.<dc>.<domain>`.
    ChainOnly,
    /// A server of the cluster: the certificate must name `server.<dc>.<domain>` for some
    /// datacenter `dc` (`verify_server_hostname`); the domain has no trailing dot.
    AnyServerIn(String),
    /// This name rather than the dialled one (`-tls-server-name`).
    Exactly(String),
    /// Nothing checked (`CONSUL_HTTP_SSL_VERIFY=false`): encryption without authentication,
    /// as the operator asked.
    Unchecked,
}

/// A client configuration for one protocol: trusts its CAs, presents its certificate if it has
/// one, checks the server's name as `name` says.
pub fn client_config(p: &TlsProtocol, name: ServerName) -> Result<ClientConfig, String> {
    let provider = provider_for(p)?;
    let roots = roots_of(p, "verify_outgoing")?;
    let identity = match (&p.cert_file, &p.key_file) {
        (Some(cert), Some(key)) => Some(load_identity(cert, key)?),
        _ => None,
    };
    build_client(provider, versions(p.min_version), roots, identity, name)
}

/// A client configuration from its parts.
fn build_client(
    provider: Arc<CryptoProvider>,
    versions: &[&'static SupportedProtocolVersion],
    roots: Arc<RootCertStore>,
    identity: Option<Identity>,
    name: ServerName,
) -> Result<ClientConfig, String> {
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .map_err(|e| format!("TLS versions: {e}"))?;
    let builder = if name == ServerName::Unchecked {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(crate::checks::tls::SkipVerify(provider)))
    } else {
        let inner = WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
            .build()
            .map_err(|e| format!("server certificate verifier: {e}"))?;
        match name {
            ServerName::Dialled => builder.with_webpki_verifier(inner),
            other => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NamedServer { inner, name: other })),
        }
    };
    match identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain, id.key.clone_key())
            .map_err(|e| format!("client certificate: {e}")),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// The TLS settings of an HTTP API client (the CLI, `cairn sidecar`): Consul's `-ca-file`,
/// `-ca-path`, `-client-cert`, `-client-key`, `-tls-server-name` and
/// `CONSUL_HTTP_SSL_VERIFY`.
#[derive(Clone, Debug, Default)]
pub struct ApiClientTls {
    /// CA file; with neither this nor `ca_path` the system's trust roots are used.
    pub ca_file: Option<PathBuf>,
    /// Directory of CA files.
    pub ca_path: Option<PathBuf>,
    /// Client certificate, for agents with `verify_incoming`.
    pub client_cert: Option<PathBuf>,
    /// Its key.
    pub client_key: Option<PathBuf>,
    /// The name the agent's certificate must carry instead of the dialled host.
    pub server_name: Option<String>,
    /// `false`: no verification at all (`CONSUL_HTTP_SSL_VERIFY=false`).
    pub verify: bool,
}

/// The rustls configuration of an HTTP API client.
pub fn api_client_config(t: &ApiClientTls) -> Result<ClientConfig, String> {
    let roots = if t.ca_file.is_some() || t.ca_path.is_some() {
        read_roots(t.ca_file.as_deref(), t.ca_path.as_deref())?
    } else {
        let mut roots = RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        roots
    };
    let identity = match (&t.client_cert, &t.client_key) {
        (Some(cert), Some(key)) => Some(load_identity(cert, key)?),
        (None, None) => None,
        _ => return Err("-client-cert and -client-key must be given together".into()),
    };
    let name = match (&t.server_name, t.verify) {
        (_, false) => ServerName::Unchecked,
        (Some(n), true) => ServerName::Exactly(n.clone()),
        (None, true) => ServerName::Dialled,
    };
    build_client(
        provider(),
        versions(TlsMinVersion::Tls12),
        Arc::new(roots),
        identity,
        name,
    )
}

/// Whether a DNS name is `server.<dc>.<domain>` for some single-label `dc`.
pub fn is_server_name(name: &str, domain: &str) -> bool {
    let domain = domain.trim_end_matches('.');
    name.strip_suffix(domain)
        .and_then(|rest| rest.strip_suffix('.'))
        .and_then(|rest| rest.strip_prefix("server."))
        .is_some_and(|dc| !dc.is_empty() && !dc.contains('.'))
}

/// Whether a peer's certificate (already verified against the CA) is a server's.
pub fn is_server_cert(cert: &CertificateDer<'_>, domain: &str) -> bool {
    dns_names(cert).iter().any(|n| is_server_name(n, domain))
}

/// The verifier of [`ServerName::ChainOnly`] and [`ServerName::AnyServerIn`]: the chain is
/// checked by webpki; the name against the rule instead of the dialled address.
#[derive(Debug)]
struct NamedServer {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName,
}

impl ServerCertVerifier for NamedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &PkiName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.name {
            ServerName::Exactly(name) => {
                let name = PkiName::try_from(name.clone()).map_err(|_| {
                    rustls::Error::InvalidCertificate(CertificateError::BadEncoding)
                })?;
                self.inner
                    .verify_server_cert(end_entity, intermediates, &name, ocsp_response, now)
            }
            ServerName::AnyServerIn(domain) => {
                let Some(name) = dns_names(end_entity)
                    .into_iter()
                    .find(|n| is_server_name(n, domain))
                else {
                    return Err(rustls::Error::InvalidCertificate(
                        CertificateError::NotValidForName,
                    ));
                };
                let name = PkiName::try_from(name).map_err(|_| {
                    rustls::Error::InvalidCertificate(CertificateError::BadEncoding)
                })?;
                self.inner
                    .verify_server_cert(end_entity, intermediates, &name, ocsp_response, now)
            }
            _ => match self.inner.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ) {
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                )) => Ok(ServerCertVerified::assertion()),
                other => other,
            },
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Checks that `cert_pem` chains to `ca_pem` and is valid for `name` (`tls cert create` checks
/// what it wrote, as Consul's `tlsutil.Verify`).
pub fn verify_for_name(ca_pem: &str, cert_pem: &str, name: &str) -> Result<(), String> {
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let ca = ca.map_err(|_| "failed to parse root certificate".to_string())?;
        roots
            .add(ca)
            .map_err(|_| "failed to parse root certificate".to_string())?;
    }
    let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|_| "failed to parse certificate".to_string())?;
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| e.to_string())?;
    let name = PkiName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    verifier
        .verify_server_cert(&cert, &[], &name, &[], UnixTime::now())
        .map(|_| ())
        .map_err(|e| format!("x509: {e}"))
}

/// A listener's current TLS configuration, replaced on reload.
#[derive(Default)]
pub struct Current {
    inner: RwLock<Option<(Arc<ServerConfig>, Validity)>>,
}

impl Current {
    /// A holder with this configuration.
    pub fn new(config: Option<(Arc<ServerConfig>, Validity)>) -> Current {
        Current {
            inner: RwLock::new(config),
        }
    }

    /// The configuration new connections use.
    pub fn get(&self) -> Option<Arc<ServerConfig>> {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(c, _)| Arc::clone(c))
    }

    /// The certificate's validity, if there is one.
    pub fn validity(&self) -> Option<Validity> {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(_, v)| *v)
    }

    /// Replaces the configuration for connections accepted from now on.
    pub fn set(&self, config: Option<(Arc<ServerConfig>, Validity)>) {
        *self.inner.write().unwrap_or_else(|p| p.into_inner()) = config;
    }
}

/// What server RPC accepts, from `tls.internal_rpc`, replaced on reload.
#[derive(Clone, Default)]
pub struct RpcPolicy {
    /// The server configuration; `None` without a certificate (then only plain text).
    pub config: Option<Arc<ServerConfig>>,
    /// `verify_incoming`: plain-text connections are closed.
    pub verify_incoming: bool,
    /// With `verify_incoming` and `verify_server_hostname`: server-only calls (Raft, writes
    /// forwarded to the leader) need a peer certificate naming `server.<dc>.<domain>`; the
    /// domain.
    pub servers_only: Option<String>,
}

/// An agent's TLS state: what its listeners and its RPC client use now. Built at start-up and
/// rebuilt on reload; a reload that fails keeps the previous state (and says why).
#[derive(Default)]
pub struct State {
    /// The HTTPS API's configuration.
    pub https: Arc<Current>,
    /// Server RPC's.
    rpc: RwLock<RpcPolicy>,
    /// The RPC transport this agent dials servers with (`None` in memory).
    rpc_out: RwLock<Option<Arc<crate::rpc::transport::Http>>>,
    /// The RPC certificate's validity.
    rpc_validity: RwLock<Option<Validity>>,
}

impl State {
    /// What server RPC accepts now.
    pub fn rpc_policy(&self) -> RpcPolicy {
        self.rpc.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Sets the transport whose TLS [`State::apply`] configures.
    pub fn set_rpc_transport(&self, t: Arc<crate::rpc::transport::Http>) {
        *self.rpc_out.write().unwrap_or_else(|p| p.into_inner()) = Some(t);
    }

    /// Builds every configuration from `config`; nothing changes unless all of them build.
    pub fn apply(&self, config: &crate::config::Config) -> Result<(), String> {
        let domain = config.domain.trim_end_matches('.').to_string();
        let https = if config.ports.https.is_some() {
            server_config(&config.tls.https, &[b"http/1.1"]).map_err(|e| format!("HTTPS: {e}"))?
        } else {
            None
        };
        let rpc_tls = &config.tls.internal_rpc;
        let rpc_server = server_config(rpc_tls, &[]).map_err(|e| format!("server RPC: {e}"))?;
        let rpc_client = if rpc_tls.verify_outgoing {
            let name = if rpc_tls.verify_server_hostname {
                ServerName::AnyServerIn(domain.clone())
            } else {
                ServerName::ChainOnly
            };
            Some(client_config(rpc_tls, name).map_err(|e| format!("server RPC client: {e}"))?)
        } else {
            None
        };
        if let Some(t) = self
            .rpc_out
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            t.configure(rpc_client)?;
        }
        self.https.set(https);
        *self.rpc_validity.write().unwrap_or_else(|p| p.into_inner()) =
            rpc_server.as_ref().map(|(_, v)| *v);
        *self.rpc.write().unwrap_or_else(|p| p.into_inner()) = RpcPolicy {
            config: rpc_server.map(|(c, _)| c),
            verify_incoming: rpc_tls.verify_incoming,
            servers_only: (rpc_tls.verify_incoming && rpc_tls.verify_server_hostname)
                .then_some(domain),
        };
        Ok(())
    }

    /// The soonest expiry of the agent's certificates, for Consul's
    /// `consul.agent.tls.cert.expiry` gauge and `/v1/agent/self`.
    pub fn expiry(&self) -> Option<Validity> {
        let rpc = *self.rpc_validity.read().unwrap_or_else(|p| p.into_inner());
        [self.https.validity(), rpc]
            .into_iter()
            .flatten()
            .min_by_key(|v| v.not_after)
    }
}

/// How long a TLS handshake may take before the connection is closed (Consul's
/// `limits.https_handshake_timeout` default): a client that opens a connection and sends
/// nothing, or sends a handshake byte by byte, holds a slot no longer than this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The first byte of a TLS handshake record: how a listener that accepts both tells TLS from
/// plain text.
pub const HANDSHAKE_RECORD: u8 = 0x16;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_follow_consuls_rule() {
        assert!(is_server_name("server.dc1.consul", "consul"));
        assert!(is_server_name("server.dc2.consul", "consul."));
        assert!(!is_server_name("client.dc1.consul", "consul"));
        assert!(!is_server_name("server.consul", "consul"));
        assert!(!is_server_name("server.a.b.consul", "consul"));
        assert!(!is_server_name("n1.server.dc1.consul", "consul"));
        assert!(!is_server_name("server.dc1.example", "consul"));
    }

    #[test]
    fn cipher_suites_are_consuls_names() {
        check_cipher_suites(
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        )
        .expect("known");
        assert!(check_cipher_suites("TLS_RSA_WITH_AES_128_CBC_SHA").is_err());
    }
}
