//! Session expiry decided by the server, against a live server (zkd or Apache ZooKeeper,
//! from ZKD_TEST_ZK_ADDR): another connection takes over the session with its id and
//! password and closes it; the first client's reconnect is refused with the expired
//! handshake (sessionId 0), and it ends Expired, terminally.

mod common;

use std::time::Duration;

use common::*;
use zkd_client::{
    event_type, keeper_state, Client, ConnectOptions, CreateMode, CreateOptions, Error,
    SessionState,
};

#[tokio::test]
async fn closed_by_another_connection_surfaces_as_expired() {
    let Some(addr) = live_addr("closed_by_another_connection") else {
        return;
    };
    let admin = connect(&addr).await;
    let base = root(&admin, "expiry").await;
    let zk = connect(&format!("{addr}{base}")).await;
    let mut states = zk.state_events();
    zk.create("/e", b"", &CreateOptions::new(CreateMode::Ephemeral))
        .await
        .unwrap();
    let (_, _, w) = zk.get_data_w("/e").await.unwrap();
    let mut stream = zk.watch("/").await.unwrap();

    // Take the session over from a second connection and close it. The first client
    // resumes as soon as its connection is taken, which can take the session back from
    // the thief before its closeSession lands (Apache ZooKeeper does this), so repeat
    // until a close goes through or the session is already gone.
    let (sid, pw) = (zk.session_id(), zk.session_password());
    let mut closed = false;
    for _ in 0..50 {
        match Client::connect_with(ConnectOptions::new(&addr, TIMEOUT).session(sid, &pw)).await {
            Ok(thief) => {
                assert_eq!(thief.session_id(), sid);
                if thief.close().await.is_ok() {
                    closed = true;
                    break;
                }
            }
            Err(Error::SessionExpired) => {
                closed = true;
                break;
            }
            // Refused mid-handover (ZooKeeper hangs up while it moves the session): again.
            Err(Error::ConnectionLoss) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        closed,
        "could not close the session from a second connection"
    );

    // The first client loses its connection (the server moved the session away, then
    // closed it), tries to resume, and is told the session expired.
    let mut seen = vec![];
    while let Some(s) = within(30, "state changes", states.recv()).await {
        seen.push(s);
    }
    assert_eq!(seen.last(), Some(&SessionState::Expired), "{seen:?}");
    // (It may have resumed in between: the thief and our reconnect can pass the session
    // back and forth until the thief's close lands.)
    assert_eq!(zk.state(), SessionState::Expired);
    assert!(matches!(zk.exists("/").await, Err(Error::SessionExpired)));
    // Outstanding watches end: the one-shot resolves with Expired (the ephemeral's delete
    // went to the closed connection, if anywhere).
    let ev = within(5, "watch resolves", w).await;
    assert!(
        ev.event_type == event_type::NONE && ev.state == keeper_state::EXPIRED
            || ev.event_type == event_type::NODE_DELETED,
        "{ev:?}"
    );
    let mut last = None;
    while let Some(ev) = within(5, "stream ends", stream.next()).await {
        last = Some(ev);
    }
    assert_eq!(last.map(|e| e.state), Some(keeper_state::EXPIRED));
    assert!(admin.exists(&format!("{base}/e")).await.unwrap().is_none());
    // Nothing is retried after Expired.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(zk.state(), SessionState::Expired);
    delete_tree(&admin, &base).await;
    admin.close().await.unwrap();
}
