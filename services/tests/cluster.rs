//! Faults of a three-node NATS cluster under load, against real servers:
//! the streams at three replicas, the API written to and websites checked
//! while one node is killed (`kill -9`) or frozen (SIGSTOP: cut off with
//! its connections open). Each of these prints its figures as "load held /
//! faults / lost / duplicated"; the last test checks the client's part of
//! a frozen node alone: connecting passes over it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use async_nats::jetstream::stream::Info;
use chrono::Utc;
use common::smtp::Smtp;
use common::stack::{eventually, Stack};
use common::target::Target;
use common::{free_port, Nats};
use poem::http::{Method, StatusCode};
use serde_json::json;
use services::bus::{answered_by_leader, Bus};
use std::time::{Duration, Instant};

/// Three nodes routed to each other; the first is handed to the stack.
async fn cluster() -> Vec<Nats> {
    let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut nodes = Vec::new();
    for (i, port) in routes.iter().enumerate() {
        let others: Vec<String> = routes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, p)| format!("nats-route://127.0.0.1:{p}"))
            .collect();
        let config = format!(
            "server_name: node-{i}\ncluster {{\n  name: faults\n  listen: 127.0.0.1:{port}\n  routes: [{}]\n}}\n",
            others.join(", ")
        );
        nodes.push(Nats::start_with_config(&config).await);
    }
    nodes
}

/// The stack on the cluster, streams at three replicas.
async fn stack_on(mut nodes: Vec<Nats>) -> (Stack, Vec<Nats>) {
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let urls = urls.join(",");
    let first = nodes.remove(0);
    let stack = Stack::start_on(first, Smtp::stopped(), &[("NATS_URL", &urls), ("NATS_REPLICAS", "3")]).await;
    (stack, nodes)
}

/// The server name of the node leading MONITOR.
async fn monitor_leader(stack: &Stack) -> String {
    stream_leader(stack, "MONITOR").await
}

/// The server name of the node leading `stream`.
async fn stream_leader(stack: &Stack, stream: &str) -> String {
    leader_info(stack, stream).await.cluster.and_then(|c| c.leader).expect("a leader")
}

/// `stream`'s info as its leader gives it: a replica without a leader
/// answers too, naming none, and is asked again.
async fn leader_info(stack: &Stack, stream: &str) -> Info {
    eventually(Duration::from_secs(30), "an answer from the stream's leader", || async {
        let info = stack.bus.js.get_stream(stream).await.expect("stream").cached_info().clone();
        answered_by_leader(info.cluster.as_ref()).then_some(info)
    })
    .await
}

/// Which of the nodes the test holds (`node-1`, `node-2`; the stack holds
/// `node-0`) to take down: the CHECKS leader if the test holds it, else the
/// MONITOR leader, else either (a follower all the same).
async fn victim(stack: &Stack) -> usize {
    for stream in ["CHECKS", "MONITOR"] {
        match stream_leader(stack, stream).await.as_str() {
            "node-1" => return 0,
            "node-2" => return 1,
            _ => {}
        }
    }
    0
}

/// The streams `node` leads, for the printed figures ("none": a follower).
async fn led_by(stack: &Stack, node: usize) -> String {
    let mut led = Vec::new();
    for stream in ["CHECKS", "MONITOR"] {
        if stream_leader(stack, stream).await == format!("node-{node}") {
            led.push(stream);
        }
    }
    if led.is_empty() {
        "none".to_owned()
    } else {
        led.join(" and ")
    }
}

/// How long until the leader of `stream` reports `node`'s replica current
/// (caught up with the leader), asking every 100 ms up to `limit`.
async fn replica_current(stack: &Stack, stream: &str, node: usize, limit: Duration) -> Duration {
    let name = format!("node-{node}");
    let started = Instant::now();
    eventually(limit, &format!("{name} current in {stream} after it came back"), || async {
        let cluster = leader_info(stack, stream).await.cluster?;
        let current = cluster.leader.as_deref() != Some(name.as_str())
            && cluster.replicas.iter().any(|replica| replica.name == name && replica.current);
        current.then_some(())
    })
    .await;
    started.elapsed()
}

/// What a run of writes through a fault got.
struct Writes {
    /// Ids answered 201.
    created: Vec<String>,
    /// Requests answered otherwise (503 while the stream elects a leader).
    refused: usize,
    /// From the fault to the last refused request.
    unavailable: Duration,
}

/// Adds websites through the API for `duration`, calling `fault` once
/// after a third of it.
async fn write_through<F, Fut>(stack: &Stack, url: &str, duration: Duration, fault: F) -> Writes
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let started = Instant::now();
    let mut fault = Some(fault);
    let (mut created, mut refused) = (Vec::new(), 0);
    let (mut faulted, mut last_refused) = (None, None);
    let mut n = 0;
    while started.elapsed() < duration {
        if started.elapsed() > duration / 3 {
            if let Some(fault) = fault.take() {
                fault().await;
                faulted = Some(Instant::now());
            }
        }
        n += 1;
        let body = json!({ "url": url, "name": format!("w{n}"), "interval_seconds": 10 });
        let (status, website) = stack.call(Method::POST, "/websites", Some(body)).await;
        if status == StatusCode::CREATED {
            created.push(website["id"].as_str().expect("id").to_owned());
        } else {
            refused += 1;
            last_refused = Some(Instant::now());
        }
    }
    let unavailable = match (faulted, last_refused) {
        (Some(fault), Some(last)) if last > fault => last - fault,
        _ => Duration::ZERO,
    };
    Writes { created, refused, unavailable }
}

/// When the fault happened, once it has.
type FaultTime = std::sync::Mutex<Option<(chrono::DateTime<Utc>, Instant)>>;

/// The newest check time of any website in /monitor, if the API answers.
async fn newest_check(stack: &Stack) -> Option<chrono::DateTime<Utc>> {
    let (status, all) = stack.call(Method::GET, "/monitor", None).await;
    (status == StatusCode::OK).then_some(())?;
    all.as_array()?
        .iter()
        .flat_map(|w| w["regions"].as_array().cloned().unwrap_or_default())
        .filter_map(|r| r["checked_at"].as_str().and_then(|t| t.parse::<chrono::DateTime<Utc>>().ok()))
        .max()
}

/// From the fault on (once `fault` holds its time), how long until /monitor
/// shows a check started after it: checked, stored and projected again.
async fn checks_resumed(stack: &Stack, fault: &FaultTime, limit: Duration) -> Duration {
    loop {
        let at = *fault.lock().expect("fault time");
        if let Some((at, instant)) = at {
            if newest_check(stack).await.is_some_and(|newest| newest > at) {
                return instant.elapsed();
            }
            assert!(instant.elapsed() < limit, "no check visible {limit:?} after the fault");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The stack on a cluster with the scheduler and a worker running and a
/// website checked once.
async fn checked_cluster() -> (Stack, Vec<Nats>, Target) {
    services::runtime::init_tracing();
    let (stack, nodes) = stack_on(cluster().await).await;
    stack.start_cron();
    stack.start_worker("local");
    let target = Target::start().await;
    let first =
        stack.add_website(json!({ "url": target.url("/status"), "name": "watched", "interval_seconds": 10 })).await;
    eventually(Duration::from_secs(20), "the first check", || async {
        (stack.monitor(&first).await["status"] == "up").then_some(())
    })
    .await;
    (stack, nodes, target)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_under_load_loses_no_acknowledged_event_and_checks_resume() {
    let (stack, mut nodes, target) = checked_cluster().await;

    let index = victim(&stack).await;
    let led = led_by(&stack, index + 1).await;
    let killed_at = FaultTime::default();
    let (killed, victims) = (&killed_at, &mut nodes);
    let url = target.url("/status");
    let (writes, resumed) = tokio::join!(
        write_through(&stack, &url, Duration::from_secs(15), move || async move {
            *killed.lock().expect("fault time") = Some((Utc::now(), Instant::now()));
            tracing::warn!(node = index + 1, "killing the node");
            victims[index].stop();
        }),
        checks_resumed(&stack, &killed_at, Duration::from_secs(60)),
    );
    let Writes { created, refused, unavailable } = writes;

    let (lost, duplicated) = stack.writes_lost_and_doubled(&created).await;
    println!(
        "kill -9 of one of three nodes (leading {led}): load held ({} websites added, {refused} refused in the {:.1} s after the \
         kill) / faults 1 / lost {lost} / duplicated {duplicated}; checks visible again {:.1} s after the kill",
        created.len(),
        unavailable.as_secs_f64(),
        resumed.as_secs_f64()
    );
    assert_eq!((lost, duplicated), (0, 0));
    assert!(created.len() > 20, "the API kept accepting writes: {}", created.len());
    assert!(unavailable <= Duration::from_secs(10), "writes refused for {unavailable:?}");
    assert!(resumed <= Duration::from_secs(10), "checks visible again only {resumed:?} after the kill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_the_other_two_leaves_them_serving() {
    let (stack, nodes, target) = checked_cluster().await;

    // Freeze a leader: its connections stay open and silent, as behind a
    // network cut.
    let index = victim(&stack).await;
    let led = led_by(&stack, index + 1).await;
    let cut_at = FaultTime::default();
    let (cut, isolated) = (&cut_at, &nodes);
    let url = target.url("/status");
    let (writes, resumed) = tokio::join!(
        write_through(&stack, &url, Duration::from_secs(30), move || async move {
            *cut.lock().expect("fault time") = Some((Utc::now(), Instant::now()));
            tracing::warn!(node = index + 1, "cutting the node off");
            isolated[index].pause();
        }),
        checks_resumed(&stack, &cut_at, Duration::from_secs(60)),
    );
    let Writes { created, refused, unavailable } = writes;
    // The majority answers on its own: a new leader for MONITOR, holding
    // every write it acknowledged while the node was away.
    let leader = monitor_leader(&stack).await;
    let (lost, duplicated) = stack.writes_lost_and_doubled(&created).await;
    // Back, the node catches up with what it missed. Meanwhile it may
    // answer stream info itself, from what it held before the cut: the
    // last sequence the services read (replays, the feed, the audit log)
    // is the leader's all the same.
    let acknowledged = stack.bus.last_sequence("MONITOR").await.expect("last sequence");
    nodes[index].resume();
    let back = Instant::now();
    while back.elapsed() < Duration::from_secs(2) {
        let last = stack.bus.last_sequence("MONITOR").await.expect("last sequence");
        assert!(last >= acknowledged, "MONITOR's last sequence read as {last} after {acknowledged} was acknowledged");
    }
    let caught_up = replica_current(&stack, "MONITOR", index + 1, Duration::from_secs(30)).await;

    println!(
        "one of three nodes cut off (leading {led}): load held ({} websites added, {refused} refused in the {:.1} s after the cut) \
         / faults 1 / lost {lost} / duplicated {duplicated}; checks visible again {:.1} s after the cut, \
         MONITOR led by {leader}; the node current again {:.1} s after it came back",
        created.len(),
        unavailable.as_secs_f64(),
        resumed.as_secs_f64(),
        caught_up.as_secs_f64()
    );
    assert_eq!((lost, duplicated), (0, 0));
    assert_ne!(leader, format!("node-{}", index + 1), "the cut-off node does not lead MONITOR");
    // A frozen leader is noticed only by its silence (NATS' election
    // timeouts, a few seconds each), unlike a dead one: the majority serves
    // again within seconds, long before the node comes back.
    assert!(unavailable <= Duration::from_secs(30), "writes refused for {unavailable:?}");
    assert!(resumed <= Duration::from_secs(30), "checks visible again only {resumed:?} after the cut");
}

/// A client (re)connecting tries the listed servers in random order. A
/// frozen one accepts the TCP connection (the kernel does) and then says
/// nothing: trying it must cost at most the connection timeout before the
/// next server is tried, never a wait for its greeting until it wakes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_passes_over_a_frozen_server_to_the_next_one_listed() {
    let (frozen, live) = (Nats::start().await, Nats::start().await);
    frozen.pause();
    let urls = format!("{},{}", frozen.url, live.url);
    // Each connection tries the frozen server first half the time.
    for _ in 0..8 {
        let started = Instant::now();
        let bus = tokio::time::timeout(Duration::from_secs(10), Bus::connect(&urls))
            .await
            .expect("connected within 10 s")
            .expect("connected");
        assert_eq!(bus.client.server_info().port, live.port);
        println!("connected past the frozen server in {:.1} s", started.elapsed().as_secs_f64());
    }
    frozen.resume();
}

/// A test's server whose port another server took meanwhile is not taken
/// for that one, even when the other answers as a NATS server would.
#[tokio::test]
async fn a_server_started_on_a_port_another_holds_is_not_mistaken_for_it() {
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = squatter.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in squatter.incoming() {
            use std::io::Write;
            let _ = stream.and_then(|mut s| s.write_all(b"INFO {\"server_name\":\"someone-else\"}\r\n"));
        }
    });
    assert!(Nats::start_on(port, None).await.is_none(), "the other server was taken for the test's");
    let started = Nats::start().await;
    assert_ne!(started.port, port);
}
