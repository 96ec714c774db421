//! The op generator (a seeded splitmix64, no dependencies) and the small model it and the
//! ACL-related tolerances need: which paths sequential creates produced, the last ACL set on
//! every path, and which digest identities each session added.
//!
//! Paths live under a per-seed root `R = /diff<seed>`: a fixed pool (`R/a`, `R/a/x`, ...)
//! plus the paths sequential creates returned, plus raw bad paths ("", "a", "R/", "R//a",
//! "R/./a", "R/a\0b", ...) and a few system paths ("/", "/zookeeper", ...).
//!
//! Containers: only names ending in `/k` are ever created as containers, no ephemeral is
//! ever created under a `/k` node, and nothing under a `/k` node is ever deleted. So a
//! container never becomes empty after having had children, and ZooKeeper's timer-driven
//! container reaper (which would delete it at a nondeterministic moment) never fires.

use std::collections::{HashMap, HashSet};

use zkd_proto::records::*;
use zkd_proto::request::MultiOp;
use zkd_proto::{OpCode, Request};

pub const SESSIONS: usize = 3;

/// digest ids: base64(sha1("u1:p1")) and base64(sha1("u2:p2")).
pub const DIGEST_U1: &str = "u1:fpT/y03U+EjItKZOSLGvjnJlyng=";
pub const DIGEST_U2: &str = "u2:o9NxcCGDPOlcV7JVhmKHOf5ctVE=";
/// addauth credentials the generator uses; "u1:bad" authenticates as a different u1.
const CREDENTIALS: [&str; 3] = ["u1:p1", "u2:p2", "u1:bad"];

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_B00C)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn chance(&mut self, pct: usize) -> bool {
        self.below(100) < pct
    }
    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

const REL_PATHS: [&str; 15] = [
    "", "/a", "/b", "/c", "/k", "/a/x", "/a/y", "/b/x", "/c/x", "/k/x", "/k/y", "/a/x/z", "/b/x/z",
    "/a/k", "/a/k/x",
];

fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

fn is_container_name(path: &str) -> bool {
    path.ends_with("/k")
}

fn under_container(path: &str) -> bool {
    is_container_name(parent(path))
}

/// What the test knows about the tree and the sessions (updated from the reference's replies).
#[derive(Default)]
pub struct Model {
    /// Paths sequential creates returned.
    pub dynamic: Vec<String>,
    /// The last ACL a successful create/setACL gave each path (kept after deletes: a
    /// NodeDeleted event is checked against the ACL the node had).
    pub acls: HashMap<String, Vec<Acl>>,
    /// Digest ids each session slot authenticated as.
    pub auth: [Vec<String>; SESSIONS],
    /// Paths each session slot ever asked a standard (one-shot) watch on.
    pub standard_watches: [HashSet<String>; SESSIONS],
    /// Paths each session slot added a persistent or persistent-recursive watch on, and
    /// the addWatch mode.
    pub persistent_watches: [HashMap<String, i32>; SESSIONS],
}

impl Model {
    /// ZooKeeper's fixupACL as far as `can_read` needs it: scheme `auth` becomes the
    /// session's digest ids.
    pub fn resolve(&self, slot: usize, acl: &[Acl]) -> Vec<Acl> {
        let mut out = Vec::new();
        for a in acl {
            if a.id.scheme == "auth" {
                for id in &self.auth[slot] {
                    out.push(Acl::new(a.perms, "digest", id));
                }
            } else {
                out.push(a.clone());
            }
        }
        out
    }

    /// Whether session `slot` may READ `path` (unknown paths: yes; they carry OPEN_ACL).
    pub fn can_read(&self, slot: usize, path: &str) -> bool {
        self.can_read_as(&self.auth[slot], path)
    }

    /// Whether a session with digest identities `auth` may READ `path`.
    pub fn can_read_as(&self, auth: &[String], path: &str) -> bool {
        let Some(acl) = self.acls.get(path) else {
            return true;
        };
        acl.iter().any(|a| {
            a.perms & perms::READ != 0
                && match a.id.scheme.as_str() {
                    "world" => a.id.id == "anyone",
                    "digest" => auth.contains(&a.id.id),
                    "ip" => a.id.id == "127.0.0.1" || a.id.id == "127.0.0.0/8",
                    _ => false,
                }
        })
    }
}

pub struct Gen {
    pub rng: Rng,
    pub root: String,
}

impl Gen {
    pub fn new(seed: u64) -> Gen {
        Gen {
            rng: Rng::new(seed),
            root: format!("/diff{seed}"),
        }
    }

    fn bad_path(&mut self) -> String {
        let r = &self.root;
        let v = [
            String::new(),
            "a".into(),
            "/".into(),
            format!("{r}/"),
            format!("{r}//a"),
            format!("{r}/./a"),
            format!("{r}/../a"),
            format!("{r}/a/.."),
            format!("{r}/a\0b"),
            format!("{r}/nonexistent/child"),
            "/zookeeper".into(),
            "/zookeeper/quota".into(),
            "/zookeeper/config".into(),
        ];
        self.rng.pick(&v).clone()
    }

    pub fn path(&mut self, model: &Model) -> String {
        let roll = self.rng.below(100);
        if roll < 7 {
            self.bad_path()
        } else if roll < 22 && !model.dynamic.is_empty() {
            self.rng.pick(&model.dynamic).clone()
        } else {
            format!("{}{}", self.root, self.rng.pick(&REL_PATHS))
        }
    }

    /// A path that is safe to delete (never a child of a container).
    fn deletable_path(&mut self, model: &Model) -> Option<String> {
        for _ in 0..8 {
            let p = self.path(model);
            if !under_container(&p) {
                return Some(p);
            }
        }
        None
    }

    fn version(&mut self) -> i32 {
        if self.rng.chance(60) {
            -1
        } else {
            self.rng.below(3) as i32
        }
    }

    fn data(&mut self) -> Option<Vec<u8>> {
        match self.rng.below(10) {
            0 => None,
            1 => Some(Vec::new()),
            _ => Some(format!("d{}", self.rng.below(100)).into_bytes()),
        }
    }

    pub fn acl(&mut self) -> Vec<Acl> {
        use perms::*;
        match self.rng.below(22) {
            0..=11 => Acl::open_unsafe(),
            12 => Acl::read_unsafe(),
            13 => Acl::creator_all(),
            14 => vec![
                Acl::new(ALL, "digest", DIGEST_U1),
                Acl::new(READ, "world", "anyone"),
            ],
            15 => vec![Acl::new(READ | WRITE, "digest", DIGEST_U2)],
            16 => vec![Acl::new(ALL & !READ, "world", "anyone")],
            17 => vec![
                Acl::new(CREATE | DELETE | READ, "world", "anyone"),
                Acl::new(ALL, "auth", ""),
            ],
            18 => vec![Acl::new(ALL, "ip", "127.0.0.1")],
            19 => vec![
                Acl::new(READ, "ip", "10.0.0.0/8"),
                Acl::new(ALL & !READ, "world", "anyone"),
            ],
            20 => match self.rng.below(3) {
                0 => Vec::new(),
                1 => vec![Acl::new(ALL, "foo", "bar")],
                _ => vec![Acl::new(ALL, "digest", "nocolon")],
            },
            _ => vec![
                Acl::new(ALL, "world", "anyone"),
                Acl::new(ALL, "world", "anyone"),
            ],
        }
    }

    /// (op code, flags) for a create at `path`.
    fn create_mode(&mut self, path: &str) -> (OpCode, i32) {
        if is_container_name(path) {
            return match self.rng.below(20) {
                0 => (OpCode::Create2, 4),
                1 => (OpCode::Create, 4),
                2 => (OpCode::CreateContainer, 0),
                _ => (OpCode::CreateContainer, 4),
            };
        }
        let op = if self.rng.chance(40) {
            OpCode::Create
        } else {
            OpCode::Create2
        };
        let mut flags = match self.rng.below(100) {
            0..=39 => 0,
            40..=59 => 1,
            60..=79 => 2,
            80..=94 => 3,
            95..=96 => 5, // TTL flag without createTTL: BadArguments
            97 => 6,
            98 => 7, // no such mode
            _ => -1,
        };
        if under_container(path) && (flags == 1 || flags == 3) {
            flags -= 1;
        }
        (op, flags)
    }

    fn create_req(&mut self, model: &Model, multi: bool) -> CreateRequest {
        let path = self.path(model);
        let (_, flags) = self.create_mode(&path);
        CreateRequest {
            path,
            data: self.data(),
            acl: if multi && self.rng.chance(70) {
                Acl::open_unsafe()
            } else {
                self.acl()
            },
            flags,
        }
    }

    fn multi_op(&mut self, model: &Model) -> MultiOp {
        match self.rng.below(10) {
            0..=3 => {
                let req = self.create_req(model, true);
                let container = is_container_name(&req.path);
                let op = if container {
                    OpCode::CreateContainer
                } else if self.rng.chance(50) {
                    OpCode::Create
                } else {
                    OpCode::Create2
                };
                // Containers only ever at container names; no ephemerals under them.
                let mut flags = if container { 4 } else { req.flags.clamp(0, 3) };
                if under_container(&req.path) && (flags == 1 || flags == 3) {
                    flags -= 1;
                }
                MultiOp::Create {
                    op,
                    req: CreateRequest { flags, ..req },
                }
            }
            4..=5 => match self.deletable_path(model) {
                Some(path) => MultiOp::Delete(DeleteRequest {
                    path,
                    version: self.version(),
                }),
                None => MultiOp::Check(CheckVersionRequest {
                    path: self.path(model),
                    version: -1,
                }),
            },
            6..=7 => MultiOp::SetData(SetDataRequest {
                path: self.path(model),
                data: self.data(),
                version: self.version(),
            }),
            _ => MultiOp::Check(CheckVersionRequest {
                path: self.path(model),
                version: self.version(),
            }),
        }
    }

    /// The next op: (session slot, request). `Request::CloseSession` means: close the
    /// slot's session, then open a fresh one in that slot.
    pub fn op(&mut self, model: &Model) -> (usize, Request) {
        let slot = self.rng.below(SESSIONS);
        let watch = self.rng.chance(50);
        let req = match self.rng.below(100) {
            0..=23 => {
                let path = self.path(model);
                let (op, flags) = self.create_mode(&path);
                Request::Create {
                    op,
                    req: CreateRequest {
                        path,
                        data: self.data(),
                        acl: self.acl(),
                        flags,
                    },
                }
            }
            24..=33 => match self.deletable_path(model) {
                Some(path) => Request::Delete(DeleteRequest {
                    path,
                    version: self.version(),
                }),
                None => Request::Sync(SyncRequest {
                    path: self.root.clone(),
                }),
            },
            34..=43 => Request::SetData(SetDataRequest {
                path: self.path(model),
                data: self.data(),
                version: self.version(),
            }),
            44..=50 => Request::GetData(GetDataRequest {
                path: self.path(model),
                watch,
            }),
            51..=57 => Request::Exists(ExistsRequest {
                path: self.path(model),
                watch,
            }),
            58..=61 => Request::GetChildren(GetChildrenRequest {
                path: self.path(model),
                watch,
            }),
            62..=65 => Request::GetChildren2(GetChildren2Request {
                path: self.path(model),
                watch,
            }),
            66..=68 => Request::GetAcl(GetAclRequest {
                path: self.path(model),
            }),
            69..=72 => Request::SetAcl(SetAclRequest {
                path: self.path(model),
                acl: self.acl(),
                version: self.version(),
            }),
            73..=76 => Request::AddWatch(AddWatchRequest {
                path: self.path(model),
                mode: if self.rng.chance(50) {
                    add_watch_mode::PERSISTENT
                } else {
                    add_watch_mode::PERSISTENT_RECURSIVE
                },
            }),
            77..=78 => Request::Auth(AuthPacket {
                auth_type: 0,
                scheme: "digest".into(),
                auth: self.rng.pick(&CREDENTIALS).as_bytes().to_vec(),
            }),
            79..=80 => Request::Sync(SyncRequest {
                path: self.path(model),
            }),
            81..=83 => {
                let r = &self.root;
                let prefixes = [
                    r.clone(),
                    "/".into(),
                    String::new(),
                    format!("{r}/a"),
                    "/nonexistent".into(),
                ];
                Request::GetEphemerals(GetEphemeralsRequest {
                    prefix_path: self.rng.pick(&prefixes).clone(),
                })
            }
            84..=85 => Request::GetAllChildrenNumber(GetAllChildrenNumberRequest {
                path: self.path(model),
            }),
            86..=94 => {
                let n = 1 + self.rng.below(4);
                Request::Multi((0..n).map(|_| self.multi_op(model)).collect())
            }
            95..=96 => {
                let n = 1 + self.rng.below(3);
                Request::MultiRead(
                    (0..n)
                        .map(|_| {
                            let path = self.path(model);
                            if self.rng.chance(50) {
                                MultiOp::GetData(GetDataRequest { path, watch: false })
                            } else {
                                MultiOp::GetChildren(GetChildrenRequest { path, watch: false })
                            }
                        })
                        .collect(),
                )
            }
            97 => Request::WhoAmI,
            _ => Request::CloseSession,
        };
        (slot, req)
    }
}
