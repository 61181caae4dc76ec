//! Test certificates, made with rcgen: a private CA and the servers'
//! certificates it signs, written as PEM files for `--tls-cert`,
//! `--tls-key` and `--ca-file`. Used by the TLS runs of the bench tools and
//! by the e2e tests; nothing shipped uses it.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

/// A certificate authority of the tests.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A server's certificate and key, as PEM files.
#[derive(Clone, Debug)]
pub struct ServerFiles {
    /// The certificate (PEM), for `--tls-cert`.
    pub cert: PathBuf,
    /// Its key (PEM), for `--tls-key`.
    pub key: PathBuf,
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Self { cert, key })
    }

    /// The CA's certificate, PEM.
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// Writes the CA's certificate to `path` (for `--ca-file`).
    pub fn write(&self, path: &Path) -> anyhow::Result<PathBuf> {
        std::fs::write(path, self.pem())?;
        Ok(path.to_owned())
    }

    /// A new certificate and key for `names` (host names or IP addresses),
    /// signed by this CA.
    pub fn issue(&self, names: &[&str]) -> anyhow::Result<Issued> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "plexus test server");
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
            der: cert.der().to_vec(),
        })
    }

    /// Issues a certificate for `names` and writes it and its key as
    /// `{stem}.crt` and `{stem}.key` in `dir`.
    pub fn issue_files(
        &self,
        dir: &Path,
        stem: &str,
        names: &[&str],
    ) -> anyhow::Result<(ServerFiles, Issued)> {
        let issued = self.issue(names)?;
        let files = ServerFiles {
            cert: dir.join(format!("{stem}.crt")),
            key: dir.join(format!("{stem}.key")),
        };
        files.write(&issued)?;
        Ok((files, issued))
    }
}

/// A certificate the CA issued.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The certificate, PEM.
    pub cert: String,
    /// Its private key, PEM.
    pub key: String,
    /// The certificate, DER (what a TLS client sees).
    pub der: Vec<u8>,
}

impl ServerFiles {
    /// Writes `issued` over the files (the certificate first, as a renewal
    /// that is not atomic would).
    pub fn write(&self, issued: &Issued) -> anyhow::Result<()> {
        std::fs::write(&self.cert, &issued.cert)?;
        std::fs::write(&self.key, &issued.key)?;
        Ok(())
    }

    /// `--tls-cert FILE --tls-key FILE`.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert.display().to_string(),
            "--tls-key".into(),
            self.key.display().to_string(),
        ]
    }
}
