//! Service ClusterIP and NodePort allocation, as kube-apiserver does on its own.
//!
//! Each allocated address or port is a reservation key in etcd written in the *same txn* as
//! the Service (create only if the key is absent), and deleted in the same txn as the
//! Service's delete. So two API servers (or two racing requests) can never hand out one
//! address twice, and nothing leaks when a request fails half way: the txn either stores
//! the Service with its reservations or nothing. Reservations live outside kube's own
//! `/registry/ranges/...` keys (which hold kube's bitmap objects) so the layouts cannot clash.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use rand::Rng;
use serde_json::{json, Value};

use crate::config::Ipv4Cidr;
use crate::storage::{Storage, StorageError};

pub const SERVICE_IP_PREFIX: &str = "/registry/skiff.io/serviceips/";
pub const NODE_PORT_PREFIX: &str = "/registry/skiff.io/servicenodeports/";
/// Random probes before falling back to a scan of the range.
const RANDOM_PROBES_MAX: usize = 64;
/// Addresses scanned at most when random probes all hit taken ones (then: range full).
const SCAN_ADDRESSES_MAX: u32 = 1 << 20;

#[derive(Debug, Clone)]
pub struct Allocator {
    pub cidr: Ipv4Cidr,
    pub node_port_first: u16,
    pub node_port_last: u16,
}

/// What a Service needs reserved (keys to create) or released (keys to delete).
#[derive(Debug, Default)]
pub struct Reservations {
    pub create: Vec<(String, Vec<u8>)>,
    pub release: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AllocError {
    /// A field-level problem: (field path, message) for a 422 Invalid.
    #[error("{0}: {1}")]
    Invalid(String, String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

pub fn ip_key(ip: Ipv4Addr) -> String {
    format!("{SERVICE_IP_PREFIX}{ip}")
}

pub fn port_key(port: u16) -> String {
    format!("{NODE_PORT_PREFIX}{port}")
}

fn owner_value(namespace: &str, name: &str) -> Vec<u8> {
    format!("{namespace}/{name}").into_bytes()
}

fn needs_cluster_ip(spec: &Value) -> bool {
    spec.get("type").and_then(Value::as_str) != Some("ExternalName")
}

fn needs_node_ports(spec: &Value) -> bool {
    matches!(spec.get("type").and_then(Value::as_str), Some("NodePort") | Some("LoadBalancer"))
}

/// The IPv4 cluster IPs a stored Service holds (none for headless or ExternalName).
pub fn cluster_ips(svc: &Value) -> Vec<Ipv4Addr> {
    let ip = svc.pointer("/spec/clusterIP").and_then(Value::as_str).and_then(|s| s.parse().ok());
    ip.into_iter().collect()
}

pub fn node_ports(svc: &Value) -> Vec<u16> {
    svc.pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ports| ports.iter().filter_map(|p| p.get("nodePort").and_then(Value::as_u64)).map(|p| p as u16).collect())
        .unwrap_or_default()
}

/// Keys to delete with a Service.
pub fn release_keys(svc: &Value) -> Vec<String> {
    let mut keys: Vec<String> = cluster_ips(svc).into_iter().map(ip_key).collect();
    keys.extend(node_ports(svc).into_iter().map(port_key));
    keys
}

impl Allocator {
    async fn taken_ips(&self, storage: &Storage) -> Result<HashSet<Ipv4Addr>, StorageError> {
        let keys = storage.keys(SERVICE_IP_PREFIX).await?;
        Ok(keys.iter().filter_map(|k| k.strip_prefix(SERVICE_IP_PREFIX)).filter_map(|s| s.parse().ok()).collect())
    }

    async fn taken_ports(&self, storage: &Storage) -> Result<HashSet<u16>, StorageError> {
        let keys = storage.keys(NODE_PORT_PREFIX).await?;
        Ok(keys.iter().filter_map(|k| k.strip_prefix(NODE_PORT_PREFIX)).filter_map(|s| s.parse().ok()).collect())
    }

    /// The `kubernetes` Service's address: the first in the range.
    pub fn first_ip(&self) -> Ipv4Addr {
        self.cidr.nth(1)
    }

    fn pick_ip(&self, taken: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
        // Usable: network+1 ..= broadcast-1.
        let usable = self.cidr.size() - 2;
        let mut rng = rand::rng();
        for _ in 0..RANDOM_PROBES_MAX {
            let ip = self.cidr.nth(1 + rng.random_range(0..usable));
            if !taken.contains(&ip) {
                return Some(ip);
            }
        }
        (1..=usable.min(SCAN_ADDRESSES_MAX)).map(|o| self.cidr.nth(o)).find(|ip| !taken.contains(ip))
    }

    fn pick_port(&self, taken: &HashSet<u16>) -> Option<u16> {
        let mut rng = rand::rng();
        for _ in 0..RANDOM_PROBES_MAX {
            let p = rng.random_range(self.node_port_first..=self.node_port_last);
            if !taken.contains(&p) {
                return Some(p);
            }
        }
        (self.node_port_first..=self.node_port_last).find(|p| !taken.contains(p))
    }

    /// Fills in `spec.clusterIP(s)`, `ipFamilies` and node ports of `svc` (a Service being
    /// created, or updated from `old`), returning the reservations to write with it.
    pub async fn assign(
        &self,
        storage: &Storage,
        svc: &mut Value,
        old: Option<&Value>,
        namespace: &str,
    ) -> Result<Reservations, AllocError> {
        let name = crate::objects::name(svc).to_string();
        let owner = owner_value(namespace, &name);
        let mut res = Reservations::default();
        if svc.get("spec").map(|s| !s.is_object()).unwrap_or(true) {
            svc["spec"] = json!({});
        }
        // An update that leaves these empty keeps the old values (kube does the same, so
        // `kubectl replace` of a file without clusterIP works).
        if let Some(old) = old {
            let old_ip = old.pointer("/spec/clusterIP").cloned();
            let new_ip = svc.pointer("/spec/clusterIP").and_then(Value::as_str).unwrap_or("");
            if new_ip.is_empty() {
                if let Some(ip) = old_ip {
                    svc["spec"]["clusterIP"] = ip;
                    if let Some(ips) = old.pointer("/spec/clusterIPs") {
                        svc["spec"]["clusterIPs"] = ips.clone();
                    }
                }
            } else if Some(new_ip) != old_ip.as_ref().and_then(Value::as_str) && old_ip.is_some() {
                return Err(AllocError::Invalid("spec.clusterIPs[0]".into(), "Invalid value: field is immutable".into()));
            }
            copy_old_node_ports(svc, old);
        }
        let spec = svc["spec"].clone();
        let old_ips: Vec<Ipv4Addr> = old.map(cluster_ips).unwrap_or_default();
        if needs_cluster_ip(&spec) {
            let requested = spec.get("clusterIP").and_then(Value::as_str).unwrap_or("").to_string();
            if requested == "None" {
                svc["spec"]["clusterIPs"] = json!(["None"]);
            } else if requested.is_empty() {
                let taken = self.taken_ips(storage).await?;
                let ip = self.pick_ip(&taken).ok_or_else(|| {
                    AllocError::Invalid("spec.clusterIPs".into(), "Internal error: range is full".into())
                })?;
                res.create.push((ip_key(ip), owner.clone()));
                svc["spec"]["clusterIP"] = json!(ip.to_string());
                svc["spec"]["clusterIPs"] = json!([ip.to_string()]);
            } else {
                let ip: Ipv4Addr = requested.parse().map_err(|_| {
                    AllocError::Invalid(
                        "spec.clusterIPs[0]".into(),
                        format!("Invalid value: \"{requested}\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"),
                    )
                })?;
                if !old_ips.contains(&ip) {
                    if self.cidr.offset_of(ip).map(|o| o == 0 || o == self.cidr.size() - 1).unwrap_or(true) {
                        return Err(AllocError::Invalid(
                            "spec.clusterIPs".into(),
                            format!(
                                "Invalid value: []string{{\"{ip}\"}}: failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}/{}",
                                self.cidr.network, self.cidr.prefix_len
                            ),
                        ));
                    }
                    res.create.push((ip_key(ip), owner.clone()));
                }
                svc["spec"]["clusterIPs"] = json!([ip.to_string()]);
            }
            svc["spec"]["ipFamilies"] = json!(["IPv4"]);
            if spec.get("ipFamilyPolicy").map(Value::is_null).unwrap_or(true) {
                svc["spec"]["ipFamilyPolicy"] = json!("SingleStack");
            }
        }
        let kept_ips = cluster_ips(svc);
        res.release.extend(old_ips.into_iter().filter(|ip| !kept_ips.contains(ip)).map(ip_key));

        let old_ports: Vec<u16> = old.map(node_ports).unwrap_or_default();
        if needs_node_ports(&spec) {
            let mut taken: Option<HashSet<u16>> = None;
            let count = svc.pointer("/spec/ports").and_then(Value::as_array).map(Vec::len).unwrap_or(0);
            for i in 0..count {
                let current = svc["spec"]["ports"][i].get("nodePort").and_then(Value::as_u64);
                match current {
                    Some(p) => {
                        let p = p as u16;
                        if !(self.node_port_first..=self.node_port_last).contains(&p) {
                            return Err(AllocError::Invalid(
                                format!("spec.ports[{i}].nodePort"),
                                format!(
                                    "Invalid value: {p}: provided port is not in the valid range. The range of valid ports is {}-{}",
                                    self.node_port_first, self.node_port_last
                                ),
                            ));
                        }
                        if !old_ports.contains(&p) {
                            res.create.push((port_key(p), owner.clone()));
                        }
                    }
                    None => {
                        if taken.is_none() {
                            taken = Some(self.taken_ports(storage).await?);
                        }
                        let t = taken.as_mut().expect("filled above");
                        let p = self.pick_port(t).ok_or_else(|| {
                            AllocError::Invalid(format!("spec.ports[{i}].nodePort"), "Internal error: range is full".into())
                        })?;
                        t.insert(p);
                        res.create.push((port_key(p), owner.clone()));
                        svc["spec"]["ports"][i]["nodePort"] = json!(p);
                    }
                }
            }
            if svc.pointer("/spec/externalTrafficPolicy").is_none() {
                svc["spec"]["externalTrafficPolicy"] = json!("Cluster");
            }
        } else if let Some(ports) = svc.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
            for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                p.remove("nodePort");
            }
        }
        let kept_ports = node_ports(svc);
        res.release.extend(old_ports.into_iter().filter(|p| !kept_ports.contains(p)).map(port_key));
        Ok(res)
    }
}

/// Copies `nodePort` from `old`'s port of the same name (or port number) where `svc` has none.
fn copy_old_node_ports(svc: &mut Value, old: &Value) {
    let old_ports = old.pointer("/spec/ports").and_then(Value::as_array).cloned().unwrap_or_default();
    if let Some(ports) = svc.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            if p.get("nodePort").map(|v| !v.is_null()).unwrap_or(false) {
                continue;
            }
            let matching = old_ports.iter().find(|o| {
                o.get("name") == p.get("name") && o.get("port") == p.get("port")
            });
            if let Some(np) = matching.and_then(|o| o.get("nodePort")) {
                p.insert("nodePort".into(), np.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(cidr: &str) -> Allocator {
        Allocator { cidr: Ipv4Cidr::parse(cidr).unwrap(), node_port_first: 30000, node_port_last: 30002 }
    }

    #[test]
    fn picks_skip_taken_and_reserved_addresses() {
        let a = alloc("10.0.0.0/30"); // usable: .1 and .2
        let mut taken = HashSet::new();
        taken.insert(Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(a.pick_ip(&taken), Some(Ipv4Addr::new(10, 0, 0, 2)));
        taken.insert(Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(a.pick_ip(&taken), None);
        let ports: HashSet<u16> = [30000, 30001].into_iter().collect();
        assert_eq!(a.pick_port(&ports), Some(30002));
    }

    #[test]
    fn release_keys_cover_ip_and_ports() {
        let svc = json!({"spec": {"clusterIP": "10.96.0.9", "ports": [{"port": 80, "nodePort": 30080}]}});
        assert_eq!(release_keys(&svc), vec![ip_key(Ipv4Addr::new(10, 96, 0, 9)), port_key(30080)]);
    }
}
