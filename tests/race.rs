//! Two `serve` processes on one Redis, hundreds of concurrent clients
//! fighting over a few tickets with holds, cancels and purchases (some sent
//! twice at once). Afterwards: no ticket sold twice, every accepted purchase
//! has exactly one order and one job, and the counts add up.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use common::{keys, request, Redis, ServeProc};
use serde_json::{json, Value};

const CLIENTS: usize = 200;
const ROUNDS: usize = 12;
const CAPACITY: u64 = 20;

use common::Rng;

async fn post(addr: SocketAddr, path: &str, body: Value) -> (u16, Value) {
    let r = request(
        addr,
        "POST",
        path,
        Some(body.to_string()),
        &[("content-type", "application/json")],
    )
    .await;
    let v = if r.text.is_empty() {
        Value::Null
    } else {
        r.json()
    };
    (r.status, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_never_sell_a_ticket_twice() {
    let redis = Redis::start();
    let a = ServeProc::start(&redis, &[]);
    let b = ServeProc::start(&redis, &[]);
    let r = request(a.addr, "POST", "/v1/events", Some(json!({"id": "race", "capacity": CAPACITY, "holdTtlSeconds": 2, "maxTicketsPerHold": 3}).to_string()),
        &[("content-type", "application/json"), ("authorization", "Bearer test-token")]).await;
    assert_eq!(r.status, 201, "{}", r.text);

    let orders: Arc<Mutex<HashMap<String, Value>>> = Arc::default();
    let accepted = Arc::new(Mutex::new(0usize));
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (orders, accepted) = (orders.clone(), accepted.clone());
        let servers = [a.addr, b.addr];
        tasks.push(tokio::spawn(async move {
            let mut rng =
                Rng(0x9E37_79B9_7F4A_7C15 ^ (c as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
            let user = format!("user-{c}");
            for _ in 0..ROUNDS {
                let srv = servers[rng.below(2) as usize];
                let n = 1 + rng.below(2);
                let mut tickets: Vec<u64> = Vec::new();
                while (tickets.len() as u64) < n {
                    let t = 1 + rng.below(CAPACITY);
                    if !tickets.contains(&t) {
                        tickets.push(t);
                    }
                }
                let (st, hold) = post(
                    srv,
                    "/v1/events/race/holds",
                    json!({"userId": user, "ticketIds": tickets}),
                )
                .await;
                if st != 201 {
                    assert!(st == 409, "hold answered {st}: {hold}");
                    continue;
                }
                let id = hold["holdId"].as_str().unwrap().to_string();
                match rng.below(3) {
                    0 => {
                        let (st, _) = request(
                            servers[rng.below(2) as usize],
                            "DELETE",
                            &format!("/v1/holds/{id}"),
                            Some(json!({"userId": user}).to_string()),
                            &[("content-type", "application/json")],
                        )
                        .await
                        .pipe(|r| (r.status, ()));
                        assert!(st == 204 || st == 404, "cancel answered {st}");
                    }
                    _ => {
                        // Two buys of the same hold at once, on both servers.
                        let path = format!("/v1/holds/{id}/purchase");
                        let body = json!({"userId": user});
                        let (r1, r2) = tokio::join!(
                            post(servers[0], &path, body.clone()),
                            post(servers[1], &path, body)
                        );
                        for (st, order) in [r1, r2] {
                            assert!(st == 202 || st == 409, "purchase answered {st}: {order}");
                            if st == 202 {
                                *accepted.lock().unwrap() += 1;
                                let oid = order["orderId"].as_str().unwrap().to_string();
                                let mut map = orders.lock().unwrap();
                                if let Some(prev) = map.get(&oid) {
                                    assert_eq!(
                                        prev, &order,
                                        "the same hold bought twice gave different orders"
                                    );
                                }
                                map.insert(oid, order);
                            }
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }

    let orders = orders.lock().unwrap().clone();
    assert!(!orders.is_empty(), "the race produced no purchases at all");
    let mut sold = HashSet::new();
    for (oid, order) in &orders {
        for t in order["ticketIds"].as_array().unwrap() {
            assert!(sold.insert(t.as_u64().unwrap()), "ticket {t} sold twice");
        }
        let got = request(b.addr, "GET", &format!("/v1/orders/{oid}"), None, &[]).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.json()["ticketIds"], order["ticketIds"]);
    }
    let jobs: usize = redis.cli(&["XLEN", &keys("race").jobs()]).parse().unwrap();
    assert_eq!(jobs, orders.len(), "one job per order");
    let e = request(a.addr, "GET", "/v1/events/race", None, &[])
        .await
        .json();
    let (av, held, s) = (
        e["available"].as_u64().unwrap(),
        e["held"].as_u64().unwrap(),
        e["sold"].as_u64().unwrap(),
    );
    assert_eq!(av + held + s, CAPACITY);
    assert_eq!(s as usize, sold.len());
    let listed_sold = request(
        a.addr,
        "GET",
        "/v1/events/race/tickets?status=sold",
        None,
        &[],
    )
    .await
    .json();
    let mut expect: Vec<u64> = sold.into_iter().collect();
    expect.sort();
    assert_eq!(listed_sold["ticketIds"], json!(expect));
    eprintln!(
        "{} purchase answers accepted, {} distinct orders, {s} tickets sold",
        accepted.lock().unwrap(),
        orders.len()
    );
}

trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}
impl<T> Pipe for T {}
