//! Certificates for `cairn tls ca create` and `cairn tls cert create`: a private CA for the
//! agents of a cluster and the server, client and CLI certificates it signs, with the names,
//! validity and key usages Consul's `tlsutil/generate.go` gives them, so that certificates from
//! either tool work with both.
//!
//! Keys are ECDSA P-256 (what Consul generates), signed with ring. Keys are written as PKCS#8
//! (`PRIVATE KEY`); a CA key written by Consul (SEC1, `EC PRIVATE KEY`) is read as well.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose, NameConstraints,
    PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

/// A certificate and its private key, both PEM.
#[derive(Debug)]
pub struct Pem {
    /// The certificate (`CERTIFICATE`).
    pub cert: String,
    /// The private key (`PRIVATE KEY`). Never logged.
    pub key: String,
}

/// What `tls ca create` puts in the CA.
#[derive(Debug, Clone)]
pub struct CaOptions {
    /// Validity in days from now (Consul: 1825).
    pub days: u32,
    /// DNS names the CA may sign for (empty: no name constraints). Consul's `-name-constraint`
    /// adds the domain and `localhost` to the `-additional-name-constraint`s.
    pub permitted_dns: Vec<String>,
    /// The subject's common name; `None` for Consul's `Consul Agent CA <serial>`.
    pub common_name: Option<String>,
}

/// What `tls cert create` puts in a certificate.
#[derive(Debug, Clone)]
pub struct CertOptions {
    /// The common name (`server.dc1.consul`, ...).
    pub name: String,
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// IP subject alternative names.
    pub ip_addresses: Vec<IpAddr>,
    /// Validity in days from now.
    pub days: u32,
    /// Server and client authentication (server and client certificates), or neither (CLI
    /// certificates, as in Consul: no extended key usage at all).
    pub server_and_client_auth: bool,
}

/// 128 random bits as a certificate serial, as Consul's `GenerateSerialNumber`; the top bit
/// cleared so that the DER integer stays positive at 16 bytes.
fn serial() -> (SerialNumber, u128) {
    // `rand`'s thread RNG is a CSPRNG seeded from the operating system.
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    // A leading zero byte would be dropped by DER; keep the value non-zero at the top.
    bytes[0] |= 0x01;
    (SerialNumber::from_slice(&bytes), u128::from_be_bytes(bytes))
}

/// Validity from now to `days` days from now.
fn validity(params: &mut CertificateParams, days: u32) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now;
    params.not_after = now + Duration::days(i64::from(days));
}

/// Creates a CA: a self-signed certificate allowed to sign certificates, and its key.
pub fn create_ca(opts: &CaOptions) -> Result<Pem, String> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| format!("error generating private key: {e}"))?;
    let (serial, number) = serial();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    // Consul's subject, so that tools that show it see the same fields.
    dn.push(DnType::CountryName, "US");
    dn.push(DnType::StateOrProvinceName, "CA");
    dn.push(DnType::LocalityName, "San Francisco");
    dn.push(DnType::OrganizationName, "HashiCorp Inc.");
    let cn = opts
        .common_name
        .clone()
        .unwrap_or_else(|| format!("Consul Agent CA {number}"));
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.serial_number = Some(serial);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.use_authority_key_identifier_extension = true;
    if !opts.permitted_dns.is_empty() {
        params.name_constraints = Some(NameConstraints {
            permitted_subtrees: opts
                .permitted_dns
                .iter()
                .map(|d| GeneralSubtree::DnsName(d.clone()))
                .collect(),
            excluded_subtrees: Vec::new(),
        });
    }
    validity(&mut params, opts.days);
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("error generating CA certificate: {e}"))?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// Reads a PEM private key for signing: PKCS#8, or SEC1 (`EC PRIVATE KEY`, as Consul writes
/// its CA key) converted to PKCS#8 (ring reads only PKCS#8).
pub fn parse_signing_key(pem_text: &str) -> Result<KeyPair, String> {
    use rustls::pki_types::PrivateKeyDer;
    use rustls::pki_types::pem::PemObject;
    let key = PrivateKeyDer::from_pem_slice(pem_text.as_bytes())
        .map_err(|_| "no PEM-encoded data found".to_string())?;
    match key {
        PrivateKeyDer::Pkcs8(der) => {
            KeyPair::try_from(der.secret_pkcs8_der()).map_err(|e| format!("invalid CA key: {e}"))
        }
        PrivateKeyDer::Sec1(der) => {
            let pkcs8 = sec1_p256_to_pkcs8(der.secret_sec1_der());
            KeyPair::try_from(pkcs8.as_slice()).map_err(|e| format!("invalid CA key: {e}"))
        }
        _ => {
            Err("unknown PEM block type for signing key: only EC keys (PKCS#8 or SEC1) sign".into())
        }
    }
}

/// Wraps a SEC1 `ECPrivateKey` of curve P-256 in a PKCS#8 `PrivateKeyInfo` (RFC 5208):
/// version 0, the algorithm `id-ecPublicKey` with `prime256v1`, the SEC1 bytes as an octet
/// string. A key of another curve fails later, when ring reads it.
fn sec1_p256_to_pkcs8(sec1: &[u8]) -> Vec<u8> {
    // AlgorithmIdentifier { id-ecPublicKey 1.2.840.10045.2.1, prime256v1 1.2.840.10045.3.1.7 }
    const ALG: &[u8] = &[
        0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86,
        0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
    ];
    let mut body = vec![0x02, 0x01, 0x00];
    body.extend_from_slice(ALG);
    body.push(0x04);
    der_len(&mut body, sec1.len());
    body.extend_from_slice(sec1);
    let mut out = vec![0x30];
    der_len(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

/// Appends a DER length.
fn der_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// Creates a certificate signed by the CA in `ca_pem` with the key in `ca_key_pem`, and checks
/// that it verifies against that CA for its name (a CA whose name constraints exclude the name
/// fails here, not later at a handshake).
pub fn create_cert(ca_pem: &str, ca_key_pem: &str, opts: &CertOptions) -> Result<Pem, String> {
    let ca_key = parse_signing_key(ca_key_pem)?;
    let issuer =
        Issuer::from_ca_cert_pem(ca_pem, ca_key).map_err(|e| format!("Error reading CA: {e}"))?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| format!("error generating private key: {e}"))?;
    let (serial, _) = serial();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, opts.name.clone());
    params.distinguished_name = dn;
    params.serial_number = Some(serial);
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    if opts.server_and_client_auth {
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
    }
    let mut sans = Vec::new();
    for name in &opts.dns_names {
        let ia5 = name
            .clone()
            .try_into()
            .map_err(|_| format!("invalid DNS name {name:?}"))?;
        sans.push(SanType::DnsName(ia5));
    }
    sans.extend(opts.ip_addresses.iter().map(|ip| SanType::IpAddress(*ip)));
    params.subject_alt_names = sans;
    validity(&mut params, opts.days);
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| format!("error generating certificate: {e}"))?;
    let out = Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    };
    super::verify_for_name(ca_pem, &out.cert, &opts.name)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca(permitted: &[&str]) -> Pem {
        create_ca(&CaOptions {
            days: 30,
            permitted_dns: permitted.iter().map(|s| s.to_string()).collect(),
            common_name: None,
        })
        .expect("ca")
    }

    fn server_opts(name: &str) -> CertOptions {
        CertOptions {
            name: name.into(),
            dns_names: vec![name.into(), "localhost".into()],
            ip_addresses: vec![IpAddr::from([127, 0, 0, 1])],
            days: 1,
            server_and_client_auth: true,
        }
    }

    /// A certificate from the CA verifies for its name and not for another.
    #[test]
    fn signed_certificates_verify_against_their_ca_only() {
        let ca = ca(&[]);
        let cert = create_cert(&ca.cert, &ca.key, &server_opts("server.dc1.consul")).expect("cert");
        assert!(cert.cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(cert.key.contains("PRIVATE KEY"));
        super::super::verify_for_name(&ca.cert, &cert.cert, "server.dc1.consul").expect("verifies");
        assert!(super::super::verify_for_name(&ca.cert, &cert.cert, "server.dc2.consul").is_err());
        let other = self::ca(&[]);
        assert!(
            super::super::verify_for_name(&other.cert, &cert.cert, "server.dc1.consul").is_err()
        );
    }

    /// Name constraints: a name outside the permitted domains cannot be signed.
    #[test]
    fn name_constraints_refuse_other_domains() {
        let ca = ca(&["consul", "localhost"]);
        create_cert(&ca.cert, &ca.key, &server_opts("server.dc1.consul")).expect("inside");
        let err = create_cert(&ca.cert, &ca.key, &server_opts("server.dc1.example"))
            .expect_err("outside the name constraints");
        assert!(err.starts_with("x509"), "{err}");
    }

    /// A CA key in Consul's SEC1 form signs too.
    #[test]
    fn sec1_keys_are_read() {
        // A fixed SEC1 P-256 key (generated with openssl for this test; it signs nothing else).
        let sec1 = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIFpOF3ogOrsDDtDgfeES8xLUDDo0U8Tx9jSjILnbqEgOoAoGCCqGSM49
AwEHoUQDQgAEQPsyGkOxKqEq+qdeMNIMEPkLEyalTggQ57JTDrBOvI+I05QK1mmY
/jRv+Aa95RlQkiogWXUIT4bsu3ey0uzDmA==
-----END EC PRIVATE KEY-----
";
        let key = parse_signing_key(sec1).expect("sec1 key");
        // It signs: a CA made with it issues a certificate that verifies.
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = params.self_signed(&key).expect("self-signed").pem();
        create_cert(&ca_cert, sec1, &server_opts("server.dc1.consul")).expect("signed");
        assert!(parse_signing_key("garbage").is_err());
        assert!(
            parse_signing_key(
                "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"
            )
            .is_err()
        );
    }
}
