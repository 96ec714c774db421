//! DataTree hot operations through zkd-server's public API: get, setData, and a
//! create+delete pair (so the tree stays the same size however many iterations run), on
//! a tree of 100,000 znodes of 100 B under 100 parents.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use zkd_proto::txn::{CreateTxn, DeleteTxn, SetDataTxn, TxnBody, TxnHeader};
use zkd_proto::{Acl, OpCode};
use zkd_server::tree::DataTree;

const PARENTS: usize = 100;
const PER_PARENT: usize = 1000;

struct Bench {
    tree: DataTree,
    zxid: i64,
    notes: Vec<zkd_server::tree::Notification>,
}

impl Bench {
    fn apply(&mut self, op: OpCode, body: TxnBody) -> i32 {
        self.zxid += 1;
        let h = TxnHeader {
            client_id: 1,
            cxid: 1,
            zxid: self.zxid,
            time: 1_700_000_000_000,
            txn_type: op as i32,
        };
        self.notes.clear();
        self.tree.process_txn(&h, &body, &mut self.notes).err
    }

    fn create(&mut self, path: String) -> i32 {
        self.apply(
            OpCode::Create,
            TxnBody::Create(CreateTxn {
                path,
                data: Some(vec![b'x'; 100]),
                acl: Acl::open_unsafe(),
                ephemeral: false,
                parent_cversion: -1,
            }),
        )
    }
}

fn build() -> Bench {
    let mut b = Bench {
        tree: DataTree::new(),
        zxid: 0,
        notes: Vec::new(),
    };
    assert_eq!(b.create("/bench".into()), 0);
    for p in 0..PARENTS {
        assert_eq!(b.create(format!("/bench/p{p:03}")), 0);
        for n in 0..PER_PARENT {
            assert_eq!(b.create(format!("/bench/p{p:03}/n{n:06}")), 0);
        }
    }
    b
}

fn tree(c: &mut Criterion) {
    let mut b = build();
    let paths: Vec<String> = (0..4096)
        .map(|i| {
            format!(
                "/bench/p{:03}/n{:06}",
                (i * 7) % PARENTS,
                (i * 131) % PER_PARENT
            )
        })
        .collect();
    let mut g = c.benchmark_group("tree");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("get", |bn| {
        bn.iter(|| {
            i = (i + 1) & 4095;
            black_box(b.tree.get(black_box(&paths[i])).map(|n| n.client_stat()))
        })
    });
    g.bench_function("setData", |bn| {
        bn.iter(|| {
            i = (i + 1) & 4095;
            let body = TxnBody::SetData(SetDataTxn {
                path: paths[i].clone(),
                data: Some(vec![b'y'; 100]),
                version: -1,
            });
            assert_eq!(b.apply(OpCode::SetData, body), 0);
        })
    });
    let mut k = 0u64;
    g.bench_function("create+delete", |bn| {
        bn.iter(|| {
            k += 1;
            let path = format!("/bench/p{:03}/x{k}", k % PARENTS as u64);
            assert_eq!(b.create(path.clone()), 0);
            let body = TxnBody::Delete(DeleteTxn { path });
            assert_eq!(b.apply(OpCode::Delete, body), 0);
        })
    });
    g.finish();
}

criterion_group!(benches, tree);
criterion_main!(benches);
