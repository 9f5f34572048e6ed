//! The actor's routing: queries beside writes, the published sync status, the size sampler.

use std::{sync::mpsc, time::Instant};

use alloy::primitives::B256;
use rollup_supervisor_storage::BlockRef;

use super::*;

const WAIT: Duration = Duration::from_secs(10);

fn l1(numbers: std::ops::RangeInclusive<u64>) -> Vec<BlockRef> {
    let h = |n: u64| B256::left_padding_from(&n.to_be_bytes());
    numbers.map(|n| BlockRef { number: n, hash: h(n + 1), parent_hash: h(n), timestamp: n }).collect()
}

async fn latest(db: &Addr<ChainsDbActor>) -> Option<u64> {
    db.send(GetTip(Track::L1)).await.expect("mailbox").expect("query").map(|b| b.number)
}

#[actix::test]
async fn a_query_waits_for_the_write_in_progress_not_for_the_writes_queued_behind_it() {
    let shared = Arc::new(SharedDb::new(DurableDb::new(ChainsDb::temporary().expect("temporary db"))));
    let (db, queries) = ChainsDbActor::start_shared(shared.clone(), Metrics::default(), SIZE_EVERY);
    db.send(NewL1Blocks(l1(0..=9))).await.expect("mailbox").expect("write");

    // A write in progress for as long as the test wants (a slow flush).
    let (held, on_held) = mpsc::channel();
    let (release, on_release) = mpsc::channel::<()>();
    let holder = {
        let shared = shared.clone();
        std::thread::spawn(move || {
            shared.write(|_| {
                held.send(()).expect("test");
                on_release.recv().expect("test");
            })
        })
    };
    on_held.recv_timeout(WAIT).expect("the write in progress");
    // Five writes queue behind it, then a query.
    let writes: Vec<_> = (1..=5).map(|i| db.send(NewL1Blocks(l1(i * 10..=i * 10 + 9)))).collect();
    let tip = db.send(GetTip(Track::L1));
    // The same query on the read side that bypasses this actor.
    let direct = actix::spawn({
        let queries = queries.clone();
        async move { queries.send(GetTip(Track::L1)).await }
    });
    // The sync status does not wait even for the write in progress: the last durable one,
    // from the actor and from the read side alike.
    let status = db.send(GetSyncStatus).await.expect("mailbox").expect("query");
    assert_eq!(status.l1.latest.map(|b| b.number), Some(9));
    let status = queries.sync_status().await.expect("mailbox").expect("query");
    assert_eq!(status.l1.latest.map(|b| b.number), Some(9));
    let deadline = Instant::now() + WAIT;
    while shared.waiting_readers() < 2 {
        assert!(Instant::now() < deadline, "the queries never reached the readers");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    release.send(()).expect("test");
    // Before the writes, or after the first one if the writer was already waiting for the
    // lock: never after the writes queued behind it.
    for seen in [tip.await, direct.await.expect("task")] {
        let seen = seen.expect("mailbox").expect("query").map(|b| b.number);
        assert!(matches!(seen, Some(9 | 19)), "the query saw {seen:?}");
    }
    for write in writes {
        write.await.expect("mailbox").expect("write");
    }
    holder.join().expect("holder");
    assert_eq!(latest(&db).await, Some(59));
    let status = db.send(GetSyncStatus).await.expect("mailbox").expect("query");
    assert_eq!(status.l1.latest.map(|b| b.number), Some(59), "published by the last write");
    let status = queries.sync_status().await.expect("mailbox").expect("query");
    assert_eq!(status.l1.latest.map(|b| b.number), Some(59));
}

#[actix::test]
async fn sync_status_answered_in_place_still_yields_the_thread_at_every_call() {
    let (db, queries) =
        ChainsDbActor::start_with_queries(ChainsDb::temporary().expect("temporary db"), Metrics::default());
    db.send(NewL1Blocks(l1(0..=3))).await.expect("mailbox").expect("write");
    // Another task on this (single) thread, as another connection on the servers' arbiter.
    let other_ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
    actix::spawn({
        let other_ran = other_ran.clone();
        async move { other_ran.store(true, std::sync::atomic::Ordering::SeqCst) }
    });
    // A batch of 2 000 calls, each answered at once from the published status.
    let mut calls_before_the_other_task = None;
    for call in 0..2_000 {
        let status = queries.sync_status().await.expect("mailbox").expect("query");
        assert_eq!(status.l1.latest.map(|b| b.number), Some(3));
        if calls_before_the_other_task.is_none() && other_ran.load(std::sync::atomic::Ordering::SeqCst) {
            calls_before_the_other_task = Some(call);
        }
    }
    let calls = calls_before_the_other_task.expect("the other task never ran during the 2 000 calls");
    assert_eq!(calls, 0, "the other task ran during the first call, not after {calls} calls");
}

#[actix::test]
async fn the_size_on_disk_is_sampled_on_a_timer_and_the_heads_after_every_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics = Metrics::default();
    let shared = Arc::new(SharedDb::new(DurableDb::new(ChainsDb::open(dir.path()).expect("open"))));
    let every = Duration::from_millis(300);
    let (db, _) = ChainsDbActor::start_shared(shared, metrics.clone(), every);
    let size = || metrics.get(&metrics::DB_SIZE, &[]);
    let at_start = size();
    assert!(at_start > 0.0, "sampled at start");
    assert_eq!(metrics.get(&metrics::DB_OPEN, &[]), 1.0);
    let sent = Instant::now();
    db.send(NewL1Blocks(l1(0..=5000))).await.expect("mailbox").expect("write");
    assert_eq!(metrics.get(&metrics::L1_HEAD, &[("head", "latest")]), 5000.0, "heads after every write");
    if sent.elapsed() < every {
        assert_eq!(size(), at_start, "not sampled after the write");
    }
    // The next sample sees the rows.
    let deadline = Instant::now() + WAIT;
    while size() == at_start {
        assert!(Instant::now() < deadline, "the size was never sampled again");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(size() > at_start);
}
