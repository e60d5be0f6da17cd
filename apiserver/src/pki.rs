//! The cluster's PKI, generated on first start and reused after: a CA, the API server's
//! serving certificate (127.0.0.1, localhost and the bind address), an admin client
//! certificate (CN=skiff-admin, O=system:masters) and an admin bearer token; plus the
//! kubeconfig that uses them.
//!
//! Certificates come from `rcgen` (the rustls project's well-kept generator) and are ECDSA
//! P-256, signed by the CA, with rcgen's default validity (1975 to 4096: no expiry to
//! manage for a development cluster; rotation comes with real cluster bootstrap). Files live in `<data-dir>/pki/`; the kubeconfig is
//! `<data-dir>/kubeconfig`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;
use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType};

pub struct Pki {
    pub dir: PathBuf,
    pub ca_pem: String,
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
    pub admin_token: String,
}

const FILES: [&str; 6] = ["ca.crt", "apiserver.crt", "apiserver.key", "admin.crt", "admin.key", "admin.token"];

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

impl Pki {
    /// Loads the PKI from `<data_dir>/pki`, generating all of it when any file is missing.
    pub fn load_or_generate(data_dir: &Path, bind: IpAddr) -> anyhow::Result<Pki> {
        let dir = data_dir.join("pki");
        if FILES.iter().all(|f| dir.join(f).is_file()) {
            let read = |f: &str| std::fs::read_to_string(dir.join(f)).with_context(|| format!("reading {}", dir.join(f).display()));
            return Ok(Pki {
                ca_pem: read("ca.crt")?,
                serving_cert_pem: read("apiserver.crt")?,
                serving_key_pem: read("apiserver.key")?,
                admin_cert_pem: read("admin.crt")?,
                admin_key_pem: read("admin.key")?,
                admin_token: read("admin.token")?.trim().to_string(),
                dir,
            });
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let pki = Self::generate(&dir, bind)?;
        std::fs::write(dir.join("ca.crt"), &pki.ca_pem)?;
        std::fs::write(dir.join("apiserver.crt"), &pki.serving_cert_pem)?;
        write_private(&dir.join("apiserver.key"), &pki.serving_key_pem)?;
        std::fs::write(dir.join("admin.crt"), &pki.admin_cert_pem)?;
        write_private(&dir.join("admin.key"), &pki.admin_key_pem)?;
        write_private(&dir.join("admin.token"), &pki.admin_token)?;
        Ok(pki)
    }

    fn generate(dir: &Path, bind: IpAddr) -> anyhow::Result<Pki> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "skiff-ca");
        ca_params.distinguished_name = dn;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca_params.self_signed(&ca_key)?;

        let serving_key = KeyPair::generate()?;
        let mut sp = CertificateParams::new(vec!["localhost".to_string(), "kubernetes".to_string(), "kubernetes.default".to_string(), "kubernetes.default.svc".to_string()])?;
        let mut ips: Vec<IpAddr> = vec!["127.0.0.1".parse().expect("literal"), "::1".parse().expect("literal")];
        if !ips.contains(&bind) && !bind.is_unspecified() {
            ips.push(bind);
        }
        sp.subject_alt_names.extend(ips.into_iter().map(SanType::IpAddress));
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "kube-apiserver");
        sp.distinguished_name = dn;
        sp.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving = sp.signed_by(&serving_key, &ca_cert, &ca_key)?;

        let admin_key = KeyPair::generate()?;
        let mut ap = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "skiff-admin");
        dn.push(DnType::OrganizationName, "system:masters");
        ap.distinguished_name = dn;
        ap.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        ap.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let admin = ap.signed_by(&admin_key, &ca_cert, &ca_key)?;

        // 32 random bytes, hex: the admin's bearer token.
        let token: String = (0..32).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
        Ok(Pki {
            dir: dir.to_path_buf(),
            ca_pem: ca_cert.pem(),
            serving_cert_pem: serving.pem(),
            serving_key_pem: serving_key.serialize_pem(),
            admin_cert_pem: admin.pem(),
            admin_key_pem: admin_key.serialize_pem(),
            admin_token: token,
        })
    }

    /// The admin kubeconfig for a server at `server_url`.
    pub fn kubeconfig(&self, server_url: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    server: {server_url}\n    certificate-authority-data: {}\nusers:\n- name: skiff-admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: skiff\n  context:\n    cluster: skiff\n    user: skiff-admin\n    namespace: default\ncurrent-context: skiff\npreferences: {{}}\n",
            b64(&self.ca_pem),
            b64(&self.admin_cert_pem),
            b64(&self.admin_key_pem),
        )
    }

    /// Writes `<data_dir>/kubeconfig` (mode 0600: it holds the admin key).
    pub fn write_kubeconfig(&self, data_dir: &Path, server_url: &str) -> anyhow::Result<PathBuf> {
        let path = data_dir.join("kubeconfig");
        write_private(&path, &self.kubeconfig(server_url))?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = Pki::load_or_generate(dir.path(), "127.0.0.1".parse().unwrap()).unwrap();
        let b = Pki::load_or_generate(dir.path(), "127.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(a.ca_pem, b.ca_pem);
        assert_eq!(a.admin_token, b.admin_token);
        assert!(a.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let kc = a.kubeconfig("https://127.0.0.1:6443");
        assert!(kc.contains("client-key-data: "));
    }
}
