//! A private CA, as a company runs for its identity provider or mail relay: its certificate
//! and a server certificate for 127.0.0.1 it issued, as PEM files (in a directory removed on
//! drop) and as DER, for the tests of the fleet's TLS clients (the JWKS fetch, SMTP).

use std::path::PathBuf;

use uuid::Uuid;

pub struct PrivateCa {
    dir: PathBuf,
    /// The server certificate, DER.
    pub server_cert_der: Vec<u8>,
    /// Its private key, PKCS #8 DER.
    pub server_key_der: Vec<u8>,
}

impl PrivateCa {
    pub fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "saga test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca_certificate = params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(params, ca_key);
        let server_key = rcgen::KeyPair::generate().unwrap();
        let server_certificate = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&server_key, &issuer)
            .unwrap();

        let dir = std::env::temp_dir().join(format!("saga-ca-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.pem"), ca_certificate.pem()).unwrap();
        std::fs::write(dir.join("server.pem"), server_certificate.pem()).unwrap();
        std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
        Self {
            dir,
            server_cert_der: server_certificate.der().to_vec(),
            server_key_der: server_key.serialize_der(),
        }
    }

    /// The CA's certificate (PEM): what a client is told to trust.
    pub fn ca_file(&self) -> String {
        self.path("ca.pem")
    }

    /// The server's certificate (PEM).
    pub fn server_cert_file(&self) -> String {
        self.path("server.pem")
    }

    /// The server's private key (PEM).
    pub fn server_key_file(&self) -> String {
        self.path("server.key")
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }
}

impl Default for PrivateCa {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PrivateCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
