//! Group commit of holds: many concurrent holds of one event share script
//! calls, and each still succeeds or fails on its own exactly as if it had
//! been alone: no ticket in two holds, per-user limits counted hold by hold,
//! quantity holds drawing disjoint tickets.

mod common;

use std::collections::HashSet;

use common::{config, keys, Redis, Rng};
use ticketctl::model::{EventSettings, HoldOutcome, HoldRequest};
use ticketctl::store::keys::RELEASE_WAKE_CHANNEL;
use ticketctl::store::Store;

async fn batching_store(redis: &Redis, max_holds_per_user: u64) -> Store {
    Store::connect(&config(redis).redis)
        .await
        .unwrap()
        .with_max_holds_per_user(max_holds_per_user)
        .with_hold_batching()
}

async fn event(store: &Store, id: &str, capacity: u64) {
    store
        .create_event(&EventSettings {
            id: id.into(),
            capacity,
            hold_ttl_ms: 60_000,
            max_per_hold: 10,
            selling: Default::default(),
        })
        .await
        .unwrap();
}

/// The hold a request got (panics on any other outcome).
async fn held(store: &Store, user: &str, tickets: Vec<u64>) -> ticketctl::model::Hold {
    match store
        .hold("gig", user, &HoldRequest::Tickets(tickets), None)
        .await
        .unwrap()
    {
        HoldOutcome::Held { hold, .. } => hold,
        other => panic!("{other:?}"),
    }
}

/// Buys `hold` for its user; the new order (panics on any other outcome).
async fn bought(store: &Store, hold: &ticketctl::model::Hold) -> ticketctl::model::Order {
    match store
        .purchase(&ticketctl::store::HoldRef::Id(&hold.id), &hold.user, None)
        .await
        .unwrap()
    {
        ticketctl::model::PurchaseOutcome::Bought {
            order,
            created: true,
        } => order,
        other => panic!("{other:?}"),
    }
}

/// Moves the deadline of hold `seq` of event `gig` far into the past (to 1:
/// its holdId then names that deadline).
fn backdate(redis: &Redis, seq: u64) {
    let seq = seq.to_string();
    let rec = redis.cli(&["HGET", &keys("gig").holds(), &seq]);
    let mut parts: Vec<&str> = rec.split('|').collect();
    parts[1] = "1";
    redis.cli(&["HSET", &keys("gig").holds(), &seq, &parts.join("|")]);
    // The release schedule follows the deadline, as an extension moves it.
    redis.cli(&["ZADD", &keys("gig").due(), "1", &seq]);
}

/// Runs every (user, request) at once and returns the outcomes in order.
async fn hold_all(
    store: &Store,
    event: &str,
    asks: Vec<(String, HoldRequest)>,
) -> Vec<HoldOutcome> {
    let tasks: Vec<_> = asks
        .into_iter()
        .map(|(user, req)| {
            let (store, event) = (store.clone(), event.to_string());
            tokio::spawn(async move { store.hold(&event, &user, &req, None).await.unwrap() })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_holds_share_calls_and_never_share_a_ticket() {
    let redis = Redis::start();
    let store = batching_store(&redis, 0).await;
    event(&store, "gig", 40).await;
    let before = redis.script_calls();
    let mut rng = Rng(7);
    let asks: Vec<_> = (0..400)
        .map(|i| {
            let a = 1 + rng.next() % 40;
            let b = 1 + (a + rng.next() % 39) % 40; // a different ticket
            (format!("u{i}"), HoldRequest::Tickets(vec![a, b]))
        })
        .collect();
    let outcomes = hold_all(&store, "gig", asks.clone()).await;
    let calls = redis.script_calls() - before;
    assert!(
        calls > 0 && calls < 400,
        "400 holds took {calls} script calls: not grouped"
    );

    let mut held = HashSet::new();
    let mut secrets = HashSet::new();
    let mut holds = Vec::new();
    for ((user, req), o) in asks.iter().zip(&outcomes) {
        match o {
            HoldOutcome::Held { hold, .. } => {
                assert_eq!(&hold.user, user);
                assert_eq!(&HoldRequest::Tickets(hold.tickets.clone()), req);
                for t in &hold.tickets {
                    assert!(held.insert(*t), "ticket {t} is in two holds");
                }
                assert!(secrets.insert(hold.id.secret.clone()));
                holds.push(hold.clone());
            }
            HoldOutcome::Unavailable { tickets, .. } => assert!(!tickets.is_empty()),
            other => panic!("{other:?}"),
        }
    }
    // Every refusal names a ticket that some hold got (all or nothing).
    for o in &outcomes {
        if let HoldOutcome::Unavailable { tickets, .. } = o {
            assert!(tickets.iter().all(|t| held.contains(t)), "{tickets:?}");
        }
    }
    let counts = store.event_counts("gig").await.unwrap().unwrap();
    assert_eq!(counts.held, held.len() as u64);
    assert_eq!(counts.available, 40 - held.len() as u64);
    // Each hold reads back as made, and hold numbers are distinct.
    let mut seqs = HashSet::new();
    for h in &holds {
        assert!(seqs.insert(h.id.seq));
        let back = store.get_hold(&h.id).await.unwrap().expect("live hold");
        assert_eq!(back.tickets, h.tickets);
        assert_eq!(back.user, h.user);
    }
}

/// User "greedy" asks for tickets 1..=n of "gig", one hold each, all at once.
async fn greedy_asks(store: &Store, n: u64) -> Vec<HoldOutcome> {
    let asks = (1..=n)
        .map(|t| ("greedy".to_string(), HoldRequest::Tickets(vec![t])))
        .collect();
    hold_all(store, "gig", asks).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_users_holds_in_one_call_are_counted_one_by_one() {
    let redis = Redis::start();
    let store = batching_store(&redis, 3).await;
    event(&store, "gig", 100).await;
    let outcomes = greedy_asks(&store, 30).await;
    let made = outcomes
        .iter()
        .filter(|o| matches!(o, HoldOutcome::Held { .. }))
        .count();
    let limited = outcomes
        .iter()
        .filter(|o| matches!(o, HoldOutcome::HoldLimit(3)))
        .count();
    assert_eq!((made, limited), (3, 27), "{outcomes:?}");
    assert_eq!(
        redis.cli(&["HGET", &keys("gig").uholds(), "greedy"]).trim(),
        "3"
    );
    let counts = store.event_counts("gig").await.unwrap().unwrap();
    assert_eq!(counts.held, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_limit_holds_are_not_counted_and_a_limit_counts_from_then_on() {
    use ticketctl::store::HoldRef;
    let redis = Redis::start();
    let store = batching_store(&redis, 0).await;
    event(&store, "gig", 200).await;
    let outcomes = greedy_asks(&store, 150).await;
    let holds: Vec<_> = outcomes
        .into_iter()
        .map(|o| match o {
            HoldOutcome::Held { hold, .. } => hold,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(redis.cli(&["HLEN", &keys("gig").uholds()]), "0");
    // Buying and cancelling uncounted holds leaves no count behind.
    for h in &holds[..5] {
        store
            .purchase(&HoldRef::Id(&h.id), "greedy", None)
            .await
            .unwrap();
    }
    for h in &holds[5..10] {
        store.cancel(&HoldRef::Id(&h.id), None).await.unwrap();
    }
    assert_eq!(redis.cli(&["HLEN", &keys("gig").uholds()]), "0");
    let counts = store.event_counts("gig").await.unwrap().unwrap();
    assert_eq!((counts.held, counts.sold), (140, 5));

    // A limit set later counts the holds made from then on.
    let limited = batching_store(&redis, 2).await;
    for t in [151, 152] {
        let o = limited
            .hold("gig", "greedy", &HoldRequest::Tickets(vec![t]), None)
            .await
            .unwrap();
        assert!(matches!(o, HoldOutcome::Held { .. }), "{o:?}");
    }
    let o = limited
        .hold("gig", "greedy", &HoldRequest::Tickets(vec![153]), None)
        .await
        .unwrap();
    assert!(matches!(o, HoldOutcome::HoldLimit(2)), "{o:?}");
    assert_eq!(redis.cli(&["HGET", &keys("gig").uholds(), "greedy"]), "2");
    // A counted hold ending through a process without the limit still
    // lowers its user's count.
    let counted = held(&limited, "other", vec![160]).await;
    assert_eq!(redis.cli(&["HGET", &keys("gig").uholds(), "other"]), "1");
    store
        .purchase(&HoldRef::Id(&counted.id), "other", None)
        .await
        .unwrap();
    assert_eq!(redis.cli(&["HGET", &keys("gig").uholds(), "other"]), "");
    assert_eq!(redis.cli(&["HGET", &keys("gig").uholds(), "greedy"]), "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_quantity_holds_take_disjoint_tickets_until_none_are_left() {
    let redis = Redis::start();
    let store = batching_store(&redis, 0).await;
    event(&store, "gig", 50).await;
    let asks: Vec<_> = (0..40)
        .map(|i| (format!("u{i}"), HoldRequest::Quantity(2)))
        .collect();
    let outcomes = hold_all(&store, "gig", asks).await;
    let mut held = HashSet::new();
    let mut refused = 0;
    for o in &outcomes {
        match o {
            HoldOutcome::Held { hold, .. } => {
                assert_eq!(hold.tickets.len(), 2);
                for t in &hold.tickets {
                    assert!(held.insert(*t), "ticket {t} is in two holds");
                }
            }
            HoldOutcome::Unavailable { available, .. } => {
                assert_eq!(*available, Some(0));
                refused += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((held.len(), refused), (50, 15));
    assert_eq!(held, (1..=50).collect::<HashSet<u64>>());
    let counts = store.event_counts("gig").await.unwrap().unwrap();
    assert_eq!((counts.held, counts.available), (50, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grouped_holds_on_an_unknown_event_are_refused() {
    let redis = Redis::start();
    let store = batching_store(&redis, 0).await;
    let asks: Vec<_> = (1..=20)
        .map(|t| (format!("u{t}"), HoldRequest::Tickets(vec![t])))
        .collect();
    for o in hold_all(&store, "nope", asks).await {
        assert_eq!(o, HoldOutcome::NoEvent);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_purchases_share_calls_and_buy_each_hold_once() {
    use ticketctl::model::PurchaseOutcome;
    use ticketctl::store::HoldRef;
    let redis = Redis::start();
    let store = batching_store(&redis, 0).await;
    event(&store, "gig", 200).await;
    let asks: Vec<_> = (1..=100)
        .map(|t| (format!("u{t}"), HoldRequest::Tickets(vec![t])))
        .collect();
    let holds: Vec<_> = hold_all(&store, "gig", asks)
        .await
        .into_iter()
        .map(|o| match o {
            HoldOutcome::Held { hold, .. } => hold,
            other => panic!("{other:?}"),
        })
        .collect();
    let before = redis.script_calls();
    // Each hold bought twice by its user, once by someone else, and once by
    // ticket (as the compatibility route does), all at once.
    let mut tasks = Vec::new();
    for h in &holds {
        for who in [h.user.clone(), h.user.clone(), "thief".to_string()] {
            let (store, id) = (store.clone(), h.id.clone());
            tasks.push(tokio::spawn(async move {
                store.purchase(&HoldRef::Id(&id), &who, None).await.unwrap()
            }));
        }
        let (store, user, ticket) = (store.clone(), h.user.clone(), h.tickets[0]);
        tasks.push(tokio::spawn(async move {
            let by = HoldRef::Ticket {
                event: "gig",
                ticket,
            };
            store.purchase(&by, &user, None).await.unwrap()
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    let calls = redis.script_calls() - before;
    assert!(
        calls > 0 && calls < 400,
        "400 purchases took {calls} script calls: not grouped"
    );
    for (h, four) in holds.iter().zip(outcomes.chunks(4)) {
        let mut order_ids = HashSet::new();
        let mut created = 0;
        for o in [&four[0], &four[1]] {
            match o {
                PurchaseOutcome::Bought { order, created: c } => {
                    assert_eq!(order.tickets, h.tickets);
                    order_ids.insert(order.id.to_string());
                    created += usize::from(*c);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(four[2], PurchaseOutcome::Forbidden);
        // By ticket: bought first by this call, or already sold (not held).
        match &four[3] {
            PurchaseOutcome::Bought { order, created: c } => {
                order_ids.insert(order.id.to_string());
                created += usize::from(*c);
            }
            PurchaseOutcome::NotHeld => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(order_ids.len(), 1, "one order per hold: {four:?}");
        assert_eq!(created, 1, "created once: {four:?}");
    }
    let counts = store.event_counts("gig").await.unwrap().unwrap();
    assert_eq!((counts.sold, counts.held, counts.available), (100, 0, 100));
    assert_eq!(redis.cli(&["XLEN", &keys("gig").jobs()]).trim(), "100");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_of_the_biggest_holds_at_once_are_all_made() {
    let redis = Redis::start();
    let store = batching_store(&redis, 0).await;
    store
        .create_event(&EventSettings {
            id: "big".into(),
            capacity: 200_000,
            hold_ttl_ms: 60_000,
            max_per_hold: 1000,
            selling: Default::default(),
        })
        .await
        .unwrap();
    // Half by quantity, half by explicit ticket ids, 1000 tickets each.
    let asks: Vec<_> = (0..100u64)
        .map(|i| {
            let req = if i % 2 == 0 {
                HoldRequest::Quantity(1000)
            } else {
                HoldRequest::Tickets((100_001 + i * 1000..100_001 + (i + 1) * 1000).collect())
            };
            (format!("u{i}"), req)
        })
        .collect();
    let mut held = HashSet::new();
    for o in hold_all(&store, "big", asks).await {
        let HoldOutcome::Held { hold, .. } = o else {
            panic!("{o:?}")
        };
        assert_eq!(hold.tickets.len(), 1000);
        for t in hold.tickets {
            assert!(held.insert(t), "ticket {t} is in two holds");
        }
    }
    let counts = store.event_counts("big").await.unwrap().unwrap();
    assert_eq!(counts.held, 100_000);
    assert_eq!(redis.cli(&["HLEN", &keys("big").owner()]).trim(), "100000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hold_abandoned_while_it_waits_is_not_made() {
    use std::time::Duration;
    let redis = Redis::start_with(&["--enable-debug-command", "yes"]);
    let store = batching_store(&redis, 0).await;
    event(&store, "gig", 10).await;
    // Block Redis so that two calls are in flight and a third hold waits.
    let url = redis.url();
    let sleeper = std::thread::spawn(move || {
        let c = redis::Client::open(url).unwrap();
        let mut conn = c.get_connection().unwrap();
        let _: () = redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg("0.35")
            .query(&mut conn)
            .unwrap();
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let hold = |t: u64| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .hold(
                    "gig",
                    &format!("u{t}"),
                    &HoldRequest::Tickets(vec![t]),
                    None,
                )
                .await
        })
    };
    let a = hold(1);
    tokio::time::sleep(Duration::from_millis(40)).await;
    let b = hold(2);
    tokio::time::sleep(Duration::from_millis(40)).await;
    let c = hold(3);
    tokio::time::sleep(Duration::from_millis(40)).await;
    c.abort();
    sleeper.join().unwrap();
    for h in [a, b] {
        assert!(matches!(
            h.await.unwrap().unwrap(),
            HoldOutcome::Held { .. }
        ));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let counts = store.event_counts("gig").await.unwrap().unwrap();
    assert_eq!(counts.held, 2, "the abandoned hold was made");
    assert_eq!(
        redis.cli(&["GETBIT", &keys("gig").taken(), "3"]).trim(),
        "0"
    );
}

#[tokio::test]
async fn a_taken_ticket_that_no_hold_owns_is_taken_back_without_skewing_counts() {
    // What a call that failed halfway, or a hand edit, can leave: ticket 5
    // marked taken with no owner entry, and ticket 3 owned by a hold record
    // that is gone.
    let redis = Redis::start();
    let store = batching_store(&redis, 0).await;
    event(&store, "gig", 10).await;
    redis.cli(&["SETBIT", &keys("gig").taken(), "5", "1"]);
    let HoldOutcome::Held { hold: other, .. } = store
        .hold("gig", "other", &HoldRequest::Tickets(vec![6]), None)
        .await
        .unwrap()
    else {
        panic!()
    };
    // Quantity holds take 1-4, then 7 (5 and 6 are taken): the hint passes 5.
    let quantity = |user: &'static str, n: u64| {
        let store = store.clone();
        async move {
            match store
                .hold("gig", user, &HoldRequest::Quantity(n), None)
                .await
                .unwrap()
            {
                HoldOutcome::Held { hold, .. } => hold.tickets,
                other => panic!("{other:?}"),
            }
        }
    };
    assert_eq!(quantity("q", 4).await, vec![1, 2, 3, 4]);
    assert_eq!(quantity("r", 1).await, vec![7]);
    // A hold that takes 5 back but fails on 6 undoes its claim on 5: ticket
    // 5 must come back within reach of quantity holds, lowest first.
    let o = store
        .hold("gig", "a", &HoldRequest::Tickets(vec![5, 6]), None)
        .await
        .unwrap();
    assert!(
        matches!(&o, HoldOutcome::Unavailable { tickets, .. } if tickets == &vec![6]),
        "{o:?}"
    );
    assert_eq!(quantity("b", 1).await, vec![5]);
    // An owner entry whose record is gone was counted as held: taking the
    // ticket back moves that count to the new hold.
    store
        .cancel(&ticketctl::store::HoldRef::Id(&other.id), None)
        .await
        .unwrap();
    redis.cli(&["SETBIT", &keys("gig").taken(), "9", "1"]);
    redis.cli(&["HSET", &keys("gig").owner(), "9", "999"]);
    redis.cli(&["HINCRBY", &keys("gig").meta(), "held", "1"]);
    let o = store
        .hold("gig", "c", &HoldRequest::Tickets(vec![9]), None)
        .await
        .unwrap();
    assert!(matches!(o, HoldOutcome::Held { .. }), "{o:?}");
    let counts = store.event_counts("gig").await.unwrap().unwrap();
    // Held: 1-4 (q), 7 (r), 5 (b) and 9 (c); 6, 8 and 10 are free.
    assert_eq!((counts.held, counts.available, counts.sold), (7, 3, 0));
}

#[tokio::test]
async fn a_purchase_never_sells_a_ticket_the_owner_index_gives_to_another_hold() {
    // A damaged owner index: ticket 3 of hold `a` is indexed as hold `b`'s.
    let redis = Redis::start();
    let store = batching_store(&redis, 0).await;
    event(&store, "gig", 10).await;
    let a = held(&store, "a", vec![2, 3]).await;
    let b = held(&store, "b", vec![4]).await;
    redis.cli(&["HSET", &keys("gig").owner(), "3", &b.id.seq.to_string()]);
    let refused = store
        .purchase(&ticketctl::store::HoldRef::Id(&a.id), "a", None)
        .await;
    assert!(refused.is_err(), "{refused:?}");
    let counts = store.event_counts("gig").await.unwrap().unwrap();
    assert_eq!((counts.held, counts.sold), (3, 0), "nothing was sold");
    assert!(store.get_hold(&a.id).await.unwrap().is_some());
    // The untouched hold still sells.
    bought(&store, &b).await;
}

#[tokio::test]
async fn a_damaged_live_hold_count_blocks_no_purchase_release_or_hold() {
    // Users' live-hold counts are derived data; one that is not a number
    // (written by hand) is started again instead of failing the call
    // halfway, which used to leave a sale without its order and a release
    // that failed on every pass.
    let redis = Redis::start();
    let store = batching_store(&redis, 3).await;
    event(&store, "gig", 10).await;
    let uholds = &keys("gig").uholds();

    let a = held(&store, "a", vec![1]).await;
    redis.cli(&["HSET", uholds, "a", "x"]);
    assert_eq!(bought(&store, &a).await.tickets, vec![1]);
    assert_eq!(redis.cli(&["XLEN", &keys("gig").jobs()]), "1");

    let b = held(&store, "b", vec![2]).await;
    redis.cli(&["HSET", uholds, "b", "x"]);
    backdate(&redis, b.id.seq);
    let sweep = store
        .release_expired("gig", 100, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sweep.released, 1);

    redis.cli(&["HSET", uholds, "c", "x"]);
    held(&store, "c", vec![3]).await;
    assert_eq!(redis.cli(&["HGET", uholds, "c"]), "1");
    // A count below zero starts again too: the new hold counts.
    redis.cli(&["HSET", uholds, "d", "-5"]);
    held(&store, "d", vec![4]).await;
    assert_eq!(redis.cli(&["HGET", uholds, "d"]), "1");

    let counts = store.event_counts("gig").await.unwrap().unwrap();
    assert_eq!((counts.held, counts.sold, counts.available), (2, 1, 7));
    assert_eq!(redis.cli(&["HGET", uholds, "a"]), "");
    assert_eq!(redis.cli(&["HGET", uholds, "b"]), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hold_call_that_fails_partway_leaves_nothing_half_written() {
    // With the owner index of the wrong type, a call of grouped holds fails
    // at its last writes, after claiming tickets and charging users. Each
    // hold is refused with an error and all of that is taken back.
    let redis = Redis::start();
    let store = batching_store(&redis, 3).await;
    event(&store, "gig", 10).await;
    held(&store, "z", vec![10]).await;
    let owner = &keys("gig").owner();
    let saved = redis.cli(&["HGET", owner, "10"]);
    redis.cli(&["DEL", owner]);
    redis.cli(&["SET", owner, "not a hash"]);
    let tasks: Vec<_> = (1..=6u64)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let req = if t == 6 {
                    HoldRequest::Quantity(2)
                } else {
                    HoldRequest::Tickets(vec![t])
                };
                store.hold("gig", &format!("u{t}"), &req, None).await
            })
        })
        .collect();
    for t in tasks {
        let r = t.await.unwrap();
        let e = r.expect_err("a hold went through with a damaged owner index");
        assert!(e.to_string().contains("WRONGTYPE"), "{e}");
    }
    redis.cli(&["DEL", owner]);
    redis.cli(&["HSET", owner, "10", &saved]);
    // A hold failing on its own, after charging its user, is taken back too.
    let taken = &keys("gig").taken();
    redis.cli(&["RENAME", taken, "saved"]);
    redis.cli(&["RPUSH", taken, "not a bitmap"]);
    let e = store
        .hold("gig", "u1", &HoldRequest::Tickets(vec![1]), None)
        .await
        .expect_err("a hold went through with a damaged bitmap");
    assert!(e.to_string().contains("WRONGTYPE"), "{e}");
    redis.cli(&["DEL", taken]);
    redis.cli(&["RENAME", "saved", taken]);
    // Nothing of the failed calls is left: no ticket taken, no user charged.
    assert_eq!(redis.cli(&["BITCOUNT", &keys("gig").taken()]), "2"); // bit 0 and ticket 10
    assert_eq!(redis.cli(&["HKEYS", &keys("gig").uholds()]), "z");
    let counts = store.event_counts("gig").await.unwrap().unwrap();
    assert_eq!((counts.held, counts.available), (1, 9));
    let o = store
        .hold("gig", "q", &HoldRequest::Quantity(9), None)
        .await
        .unwrap();
    let HoldOutcome::Held { hold, .. } = o else {
        panic!("{o:?}")
    };
    assert_eq!(hold.tickets, (1..=9).collect::<Vec<u64>>());
}

#[tokio::test]
async fn a_purchase_that_fails_partway_sells_nothing() {
    // The sold bits, the order and its job are written first and taken back
    // when a later one fails on a damaged key: the hold stays live and
    // can be bought once the key is repaired.
    let redis = Redis::start();
    let store = batching_store(&redis, 3).await;
    event(&store, "gig", 10).await;
    let a = held(&store, "a", vec![1, 2]).await;
    let hold = ticketctl::store::HoldRef::Id(&a.id);
    let buy = || store.purchase(&hold, "a", None);
    let gig = keys("gig");
    for key in [gig.sold(), gig.orders(), gig.jobs()] {
        redis.cli(&["RENAME", &key, "saved"]);
        redis.cli(&["RPUSH", &key, "damaged"]);
        let e = buy().await.expect_err("sold with a damaged key");
        assert!(e.to_string().contains("WRONGTYPE"), "{key}: {e}");
        redis.cli(&["DEL", &key]);
        redis.cli(&["RENAME", "saved", &key]);
        assert_eq!(redis.cli(&["BITCOUNT", &keys("gig").sold()]), "0", "{key}");
        assert_eq!(redis.cli(&["HLEN", &keys("gig").orders()]), "0", "{key}");
        assert_eq!(redis.cli(&["XLEN", &keys("gig").jobs()]), "0", "{key}");
        assert!(store.get_hold(&a.id).await.unwrap().is_some(), "{key}");
        let counts = store.event_counts("gig").await.unwrap().unwrap();
        assert_eq!((counts.held, counts.sold), (2, 0), "{key}");
    }
    bought(&store, &a).await;
    let counts = store.event_counts("gig").await.unwrap().unwrap();
    assert_eq!((counts.held, counts.sold), (0, 2));
    assert_eq!(redis.cli(&["XLEN", &keys("gig").jobs()]), "1");
}

#[tokio::test]
async fn a_refused_hold_reports_the_releases_its_limit_check_made() {
    // User `a` is at the limit of one live hold, but that hold has expired:
    // the limit check releases it, and the hold is then refused as invalid.
    // The release is still counted.
    let redis = Redis::start();
    let released = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let store = batching_store(&redis, 1)
        .await
        .with_sweep_counter(released.clone());
    event(&store, "gig", 10).await;
    let a = held(&store, "a", vec![1]).await;
    backdate(&redis, a.id.seq);
    let o = store
        .hold("gig", "a", &HoldRequest::Tickets(vec![11]), None)
        .await
        .unwrap();
    assert!(matches!(o, HoldOutcome::Invalid(_)), "{o:?}");
    assert_eq!(released.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(redis.cli(&["GETBIT", &keys("gig").taken(), "1"]), "0");
}

#[tokio::test]
async fn a_damaged_counter_is_refused_before_anything_is_written() {
    // A counter of the event that is not an integer would fail a script
    // halfway; every script refuses it up front instead, and creating the
    // event again does not wipe it.
    let redis = Redis::start();
    let store = batching_store(&redis, 3).await;
    event(&store, "gig", 10).await;
    let a = held(&store, "a", vec![1]).await;
    let meta = &keys("gig").meta();
    for field in ["held", "hint", "orders"] {
        let saved = redis.cli(&["HGET", meta, field]);
        redis.cli(&["HSET", meta, field, "x"]);
        let e = store
            .hold("gig", "b", &HoldRequest::Tickets(vec![2]), None)
            .await
            .expect_err("held with a damaged counter");
        assert!(e.to_string().contains(&format!("field {field}")), "{e}");
        let e = store
            .purchase(&ticketctl::store::HoldRef::Id(&a.id), "a", None)
            .await
            .expect_err("sold with a damaged counter");
        assert!(e.to_string().contains("not an integer"), "{e}");
        assert!(store.event_counts("gig").await.is_err());
        let settings = EventSettings {
            id: "gig".into(),
            capacity: 10,
            hold_ttl_ms: 60_000,
            max_per_hold: 10,
            selling: Default::default(),
        };
        assert!(store.create_event(&settings).await.is_err());
        assert_eq!(redis.cli(&["BITCOUNT", &keys("gig").taken()]), "2");
        assert_eq!(redis.cli(&["HKEYS", &keys("gig").uholds()]), "a");
        assert_eq!(redis.cli(&["BITCOUNT", &keys("gig").sold()]), "0");
        if saved.is_empty() {
            redis.cli(&["HDEL", meta, field]);
        } else {
            redis.cli(&["HSET", meta, field, &saved]);
        }
    }
    bought(&store, &a).await;
}

#[tokio::test]
async fn one_failing_purchase_of_a_call_leaves_the_others_and_their_counts() {
    // One script call buys hold `a`, then meets hold `b` expired with the
    // bitmap damaged, and fails on it. `a`'s sale and the counters stand.
    let redis = Redis::start();
    let store = batching_store(&redis, 3).await;
    event(&store, "gig", 10).await;
    let a = held(&store, "a", vec![1, 2]).await;
    let mut b = held(&store, "b", vec![3]).await;
    backdate(&redis, b.id.seq);
    b.id.deadline_ms = 1;
    let taken = &keys("gig").taken();
    redis.cli(&["RENAME", taken, "saved"]);
    redis.cli(&["RPUSH", taken, "not a bitmap"]);
    let buy = |h: &ticketctl::model::Hold| {
        vec![
            "h".to_string(),
            h.id.seq.to_string(),
            h.id.secret.clone(),
            h.id.deadline_ms.to_string(),
            h.user.clone(),
            format!("order-secret-{}", h.user),
        ]
    };
    // No Idempotency-Key, no payment deadline.
    let mut args = vec![
        String::new(),
        "0".into(),
        "tc:release:wake".into(),
        "gig".into(),
    ];
    args.extend(buy(&a));
    args.extend(buy(&b));
    let out = eval_on_gig(&redis, include_str!("../src/store/lua/purchase.lua"), &args);
    assert!(out.starts_with("ok|1|"), "a is sold: {out}");
    assert!(out.contains("error") && out.contains("WRONGTYPE"), "{out}");
    redis.cli(&["DEL", taken]);
    redis.cli(&["RENAME", "saved", taken]);
    let meta = |f: &str| redis.cli(&["HGET", &keys("gig").meta(), f]);
    assert_eq!((meta("sold"), meta("orders")), ("2".into(), "1".into()));
    let counts = store.event_counts("gig").await.unwrap().unwrap();
    // b's expired hold is released by the count's sweep.
    assert_eq!((counts.held, counts.sold, counts.available), (0, 2, 8));
    assert_eq!(redis.cli(&["XLEN", &keys("gig").jobs()]), "1");
}

/// Runs a script of src/store/lua (with its prelude) on event `gig` through
/// redis-cli, as one call: its output.
fn eval_on_gig(redis: &Redis, script: &str, args: &[String]) -> String {
    // lib.lua and orders.lua, as the store builds the scripts that use both.
    let script = [
        include_str!("../src/store/lua/lib.lua"),
        include_str!("../src/store/lua/orders.lua"),
        "begin(KEYS)\n",
        script,
    ]
    .concat();
    let n_keys = keys("gig").script_keys().len().to_string();
    let mut all: Vec<String> = vec!["EVAL".into(), script, n_keys];
    all.extend(keys("gig").script_keys());
    all.extend_from_slice(args);
    redis.cli(&all.iter().map(String::as_str).collect::<Vec<_>>())
}

#[tokio::test]
async fn when_a_hold_call_fails_at_its_end_every_hold_of_it_is_refused() {
    // `b` asks for the ticket `a` claimed earlier in the same call; the
    // call then fails writing the owner index and undoes `a`. `b` gets the
    // error too, not a 409 for a ticket that is free again.
    let redis = Redis::start();
    let store = batching_store(&redis, 3).await;
    event(&store, "gig", 10).await;
    redis.cli(&["SET", &keys("gig").owner(), "not a hash"]);
    let args: Vec<String> = [
        RELEASE_WAKE_CHANNEL,
        "gig",
        "3",
        "",
        "s1",
        "a",
        "t",
        "5",
        "s2",
        "b",
        "t",
        "5",
    ]
    .map(String::from)
    .to_vec();
    let out = eval_on_gig(&redis, include_str!("../src/store/lua/hold.lua"), &args);
    assert_eq!(out.matches("WRONGTYPE").count(), 2, "{out}");
    assert!(!out.contains("unavailable"), "{out}");
    redis.cli(&["DEL", &keys("gig").owner()]);
    assert_eq!(redis.cli(&["BITCOUNT", &keys("gig").taken()]), "1");
    held(&store, "b", vec![5]).await;
}

#[tokio::test]
async fn too_few_replicas_for_wait_replicas_are_reported() {
    // `serve` warns at start with this: every purchase would wait in vain.
    let redis = Redis::start();
    let mut cfg = config(&redis).redis;
    assert_eq!(
        Store::connect(&cfg)
            .await
            .unwrap()
            .replicas_short()
            .await
            .unwrap(),
        vec![],
        "none asked for"
    );
    cfg.wait_replicas = 1;
    let store = Store::connect(&cfg).await.unwrap();
    assert_eq!(
        store.replicas_short().await.unwrap(),
        vec![(String::new(), 0)]
    );
    let replica = Redis::start_with(&["--replicaof", "127.0.0.1", &redis.port.to_string()]);
    let mut connected = false;
    for _ in 0..100 {
        if store.replicas_short().await.unwrap().is_empty() {
            connected = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(connected, "the replica never showed as connected");
    drop(replica);
}

#[tokio::test]
async fn a_hold_of_no_tickets_is_refused_and_writes_nothing() {
    // The HTTP layer refuses an empty ticketIds list; the store refuses it
    // too, grouped or not, before any write.
    let redis = Redis::start();
    let store = batching_store(&redis, 3).await;
    event(&store, "gig", 10).await;
    for _ in 0..2 {
        let o = store
            .hold("gig", "a", &HoldRequest::Tickets(vec![]), None)
            .await
            .unwrap();
        assert!(matches!(o, HoldOutcome::Invalid(_)), "{o:?}");
    }
    assert_eq!(redis.cli(&["HLEN", &keys("gig").holds()]), "0");
    assert_eq!(redis.cli(&["LLEN", &keys("gig").sched()]), "0");
    let h = held(&store, "a", vec![1]).await;
    assert_eq!(h.id.seq, 1, "no hold number was used up");
}

#[tokio::test]
async fn a_change_of_settings_is_seen_by_the_next_hold_and_one_made_by_hand_soon_after() {
    // The hold script keeps an event's settings between calls. A change
    // made through ticketctl stamps them, so the next hold sees it; one made
    // by hand does not, and is seen once the kept settings are a second old.
    let redis = Redis::start();
    let store = batching_store(&redis, 0).await;
    event(&store, "gig", 100).await;
    let hold = |user: &'static str, n: u64| {
        let store = store.clone();
        async move {
            store
                .hold("gig", user, &HoldRequest::Quantity(n), None)
                .await
                .unwrap()
        }
    };
    assert!(matches!(hold("a", 4).await, HoldOutcome::Held { .. }));
    let patch = ticketctl::model::EventPatch {
        max_per_hold: Some(3),
        ..Default::default()
    };
    store
        .patch_event("gig", &patch)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let o = hold("b", 4).await;
    assert!(
        matches!(&o, HoldOutcome::Invalid(m) if m.contains("at most 3")),
        "{o:?}"
    );
    redis.cli(&["HSET", &keys("gig").meta(), "max_per_hold", "10"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match hold("c", 4).await {
            HoldOutcome::Held { .. } => break,
            HoldOutcome::Invalid(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await
            }
            o => panic!("the change made by hand was not seen: {o:?}"),
        }
    }
    // The event removed by hand and made again with other settings: its
    // first hold sees them.
    let k = keys("gig");
    redis.cli(&["DEL", &k.meta()]);
    store
        .create_event(&EventSettings {
            id: "gig".into(),
            capacity: 100,
            hold_ttl_ms: 60_000,
            max_per_hold: 2,
            selling: Default::default(),
        })
        .await
        .unwrap();
    let o = hold("d", 3).await;
    assert!(
        matches!(&o, HoldOutcome::Invalid(m) if m.contains("at most 2")),
        "{o:?}"
    );
}

#[tokio::test]
async fn a_redis_without_the_library_is_given_it_again() {
    // A restart without persistence, or a flush, loses the functions: the
    // next call loads the library again and goes through.
    let redis = Redis::start();
    let store = batching_store(&redis, 0).await;
    event(&store, "gig", 10).await;
    assert!(redis.cli(&["FUNCTION", "LIST"]).contains("ticketctl_"));
    redis.cli(&["FUNCTION", "FLUSH"]);
    let a = held(&store, "a", vec![1]).await;
    bought(&store, &a).await;
    assert!(redis.cli(&["FUNCTION", "LIST"]).contains("ticketctl_"));
    assert!(redis.script_calls() >= 3);
}

#[tokio::test]
async fn an_event_written_before_the_settings_stamp_is_stamped_by_its_first_call() {
    // An event made by an earlier version has neither `cv` nor `layout`:
    // its first call reads every field as before and stamps it.
    let redis = Redis::start();
    let store = batching_store(&redis, 0).await;
    event(&store, "gig", 10).await;
    let meta = keys("gig").meta();
    redis.cli(&["HDEL", &meta, "cv", "layout"]);
    let a = held(&store, "a", vec![1]).await;
    assert!(!redis.cli(&["HGET", &meta, "cv"]).is_empty());
    assert!(!redis.cli(&["HGET", &meta, "layout"]).is_empty());
    bought(&store, &a).await;
    let counts = store.event_counts("gig").await.unwrap().unwrap();
    assert_eq!((counts.held, counts.sold, counts.available), (0, 1, 9));
}
