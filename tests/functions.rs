//! Where Redis functions cannot be used (Redis before 7.0, or an ACL that
//! forbids them) the scripts go as EVALSHA and behave alike. Its own test
//! binary: the switch is made once per process.

mod common;

use common::{config, Redis};
use ticketctl::model::{EventSettings, HoldOutcome, HoldRequest, PurchaseOutcome};
use ticketctl::store::{HoldRef, Store};

#[tokio::test]
async fn without_functions_the_scripts_go_as_evalsha() {
    let redis = Redis::start();
    redis.cli(&[
        "ACL",
        "SETUSER",
        "nofn",
        "on",
        ">secret-pw",
        "~*",
        "&*",
        "+@all",
        "-fcall",
        "-function",
    ]);
    let mut cfg = config(&redis).redis;
    cfg.url = cfg.url.replace("redis://", "redis://nofn:secret-pw@");
    let store = Store::connect(&cfg).await.unwrap().with_hold_batching();
    store
        .create_event(&EventSettings {
            id: "gig".into(),
            capacity: 10,
            hold_ttl_ms: 60_000,
            max_per_hold: 10,
            selling: Default::default(),
        })
        .await
        .unwrap();
    let hold = match store
        .hold("gig", "a", &HoldRequest::Quantity(2), None)
        .await
        .unwrap()
    {
        HoldOutcome::Held { hold, .. } => hold,
        o => panic!("{o:?}"),
    };
    let o = store
        .purchase(&HoldRef::Id(&hold.id), "a", None)
        .await
        .unwrap();
    assert!(
        matches!(o, PurchaseOutcome::Bought { created: true, .. }),
        "{o:?}"
    );
    let counts = store.event_counts("gig").await.unwrap().unwrap();
    assert_eq!((counts.available, counts.held, counts.sold), (8, 0, 2));
    assert_eq!(redis.cli(&["FUNCTION", "LIST"]), "");
    let evalsha = redis.command_calls("evalsha");
    assert!(evalsha >= 3, "{evalsha}");
}
