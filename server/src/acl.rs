//! ACL checks and the built-in auth providers (ZooKeeper's checkACL, fixupACL, and the
//! world, auth, digest, ip and super schemes).
//!
//! Owns deciding whether a connection's identities grant a permission on an ACL, expanding
//! `auth` ACLs to the creator's identities, and turning `addauth` credentials into
//! identities. Never stores passwords: digest identities are `user:base64(sha1(user:pw))`,
//! exactly as ZooKeeper stores them, so ACLs move between zkd and ZooKeeper unchanged.

use std::net::IpAddr;

use base64::Engine;
use sha1::{Digest, Sha1};
use zkd_proto::records::{Acl, ClientInfo, Id};
use zkd_proto::ErrorCode;

/// DigestAuthenticationProvider.generateDigest: "user:password" -> "user:base64(sha1)".
pub fn generate_digest(id_password: &str) -> String {
    let user = id_password.split(':').next().unwrap_or("");
    let hash = Sha1::digest(id_password.as_bytes());
    format!(
        "{}:{}",
        user,
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}

/// The result of `addauth scheme credentials`: identities to add, or AuthFailed.
pub fn authenticate(
    scheme: &str,
    auth: &[u8],
    client_ip: Option<IpAddr>,
    super_digest: Option<&str>,
) -> Result<Vec<Id>, ErrorCode> {
    match scheme {
        "digest" => {
            let id = String::from_utf8_lossy(auth);
            let digest = generate_digest(&id);
            let mut ids = Vec::new();
            if super_digest == Some(digest.as_str()) {
                ids.push(Id {
                    scheme: "super".into(),
                    id: String::new(),
                });
            }
            ids.push(Id {
                scheme: "digest".into(),
                id: digest,
            });
            Ok(ids)
        }
        "ip" => match client_ip {
            Some(ip) => Ok(vec![Id {
                scheme: "ip".into(),
                id: ip.to_string(),
            }]),
            None => Err(ErrorCode::AuthFailed),
        },
        _ => Err(ErrorCode::AuthFailed),
    }
}

fn provider_is_valid(scheme: &str, id: &str) -> Option<bool> {
    match scheme {
        "digest" => {
            // Java's split(":") drops trailing empty parts: "u:" is one part, invalid.
            let parts: Vec<&str> = id.split(':').collect();
            let mut n = parts.len();
            while n > 0 && parts[n - 1].is_empty() {
                n -= 1;
            }
            Some(n == 2)
        }
        "ip" => Some(parse_ip_acl(id).is_some()),
        _ => None,
    }
}

fn parse_ip_acl(id: &str) -> Option<(IpAddr, u32)> {
    let (addr, bits) = match id.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (id, None),
    };
    let ip: IpAddr = addr.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = match bits {
        Some(b) => {
            let b: u32 = b.parse().ok()?;
            if b > max {
                return None;
            }
            b
        }
        None => max,
    };
    Some((ip, bits))
}

fn ip_matches(client: &str, acl_id: &str) -> bool {
    let Some((net, bits)) = parse_ip_acl(acl_id) else {
        return false;
    };
    let Ok(ip) = client.parse::<IpAddr>() else {
        return false;
    };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(c)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(n) & mask == u32::from(c) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(c)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(n) & mask == u128::from(c) & mask
        }
        _ => false,
    }
}

/// ZooKeeperServer.checkACL: Ok if any ACL entry with `perm` matches an identity.
pub fn check_acl(acl: &[Acl], perm: i32, auth: &[Id], skip_acl: bool) -> Result<(), ErrorCode> {
    if skip_acl || acl.is_empty() {
        return Ok(());
    }
    if auth.iter().any(|a| a.scheme == "super") {
        return Ok(());
    }
    for a in acl {
        if a.perms & perm == 0 {
            continue;
        }
        if a.id.scheme == "world" && a.id.id == "anyone" {
            return Ok(());
        }
        for id in auth {
            if id.scheme != a.id.scheme {
                continue;
            }
            let matched = match id.scheme.as_str() {
                "digest" => id.id == a.id.id,
                "ip" => ip_matches(&id.id, &a.id.id),
                _ => false,
            };
            if matched {
                return Ok(());
            }
        }
    }
    Err(ErrorCode::NoAuth)
}

/// PrepRequestProcessor.fixupACL: deduplicates, validates schemes and ids, and expands
/// `auth` entries to the requester's authenticated identities.
pub fn fixup_acl(auth: &[Id], acls: &[Acl]) -> Result<Vec<Acl>, ErrorCode> {
    let mut uniq: Vec<Acl> = Vec::with_capacity(acls.len());
    for a in acls {
        if !uniq.contains(a) {
            uniq.push(a.clone());
        }
    }
    if uniq.is_empty() {
        return Err(ErrorCode::InvalidAcl);
    }
    let mut out = Vec::new();
    for a in uniq {
        if a.id.scheme == "world" && a.id.id == "anyone" {
            out.push(a);
        } else if a.id.scheme == "auth" {
            let mut valid = false;
            for id in auth {
                // Only providers that really authenticate count (isAuthenticated): digest
                // does, ip does not, so `auth` never expands to a client address.
                if id.scheme == "digest" {
                    valid = true;
                    out.push(Acl {
                        perms: a.perms,
                        id: id.clone(),
                    });
                }
            }
            if !valid {
                return Err(ErrorCode::InvalidAcl);
            }
        } else {
            match provider_is_valid(&a.id.scheme, &a.id.id) {
                Some(true) => out.push(a),
                _ => return Err(ErrorCode::InvalidAcl),
            }
        }
    }
    Ok(out)
}

/// AuthUtil.getClientInfos for whoAmI.
pub fn client_infos(auth: &[Id]) -> Vec<ClientInfo> {
    auth.iter()
        .map(|id| ClientInfo {
            auth_scheme: id.scheme.clone(),
            user: match id.scheme.as_str() {
                "digest" => id.id.split(':').next().unwrap_or("").to_string(),
                _ => id.id.clone(),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use zkd_proto::records::perms;

    #[test]
    fn digest_matches_zookeeper() {
        // The digest ZooKeeper documents for super:test.
        assert_eq!(
            generate_digest("super:test"),
            "super:D/InIHSb7yEEbrWz8b9l71RjZJU="
        );
    }

    #[test]
    fn ip_cidr() {
        assert!(ip_matches("10.1.2.3", "10.1.0.0/16"));
        assert!(!ip_matches("10.2.2.3", "10.1.0.0/16"));
        assert!(ip_matches("127.0.0.1", "127.0.0.1"));
        assert!(ip_matches("::1", "::1/128"));
        assert!(!ip_matches("127.0.0.1", "::1"));
    }

    #[test]
    fn check_and_fixup() {
        let ip = Id {
            scheme: "ip".into(),
            id: "127.0.0.1".into(),
        };
        let dig = Id {
            scheme: "digest".into(),
            id: generate_digest("u:p"),
        };
        let acl = vec![Acl::new(perms::READ, "digest", &dig.id)];
        assert_eq!(
            check_acl(&acl, perms::READ, std::slice::from_ref(&ip), false),
            Err(ErrorCode::NoAuth)
        );
        assert_eq!(
            check_acl(&acl, perms::READ, &[ip.clone(), dig.clone()], false),
            Ok(())
        );
        assert_eq!(
            check_acl(&acl, perms::WRITE, std::slice::from_ref(&dig), false),
            Err(ErrorCode::NoAuth)
        );
        assert_eq!(
            fixup_acl(std::slice::from_ref(&ip), &[Acl::new(31, "auth", "")]),
            Err(ErrorCode::InvalidAcl)
        );
        assert_eq!(
            fixup_acl(&[ip.clone(), dig.clone()], &[Acl::new(31, "auth", "")]).unwrap(),
            vec![Acl::new(31, "digest", &dig.id)]
        );
        assert_eq!(
            fixup_acl(&[], &[Acl::new(31, "auth", "")]),
            Err(ErrorCode::InvalidAcl)
        );
        assert_eq!(fixup_acl(&[], &[]), Err(ErrorCode::InvalidAcl));
        assert_eq!(
            fixup_acl(&[], &[Acl::new(31, "world", "x")]),
            Err(ErrorCode::InvalidAcl)
        );
        assert_eq!(
            fixup_acl(&[], &[Acl::new(31, "digest", "u:")]),
            Err(ErrorCode::InvalidAcl)
        );
        assert_eq!(
            fixup_acl(&[], &[Acl::new(31, "ip", "1.2.3.4/33")]),
            Err(ErrorCode::InvalidAcl)
        );
    }
}
