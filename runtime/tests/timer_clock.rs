//! Cancel-on-drop timers and the paused-time clock.

use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use runtime::timer::Timer;
use tokio::sync::mpsc;

struct Echo;

impl Actor for Echo {
    type Msg = &'static str;
    type State = mpsc::UnboundedSender<&'static str>;
    type Arguments = mpsc::UnboundedSender<&'static str>;

    async fn pre_start(
        &self,
        _: ActorRef<Self::Msg>,
        tx: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(tx)
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        msg: Self::Msg,
        tx: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let _ = tx.send(msg);
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn clock_follows_paused_time() {
    let t0 = runtime::clock::now();
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let dt = runtime::clock::now() - t0;
    assert!(dt >= Duration::from_secs(3600) && dt < Duration::from_secs(3601));
}

#[tokio::test(start_paused = true)]
async fn timers_fire_and_cancel_on_drop() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (actor, _join) = Actor::spawn(None, Echo, tx).await.unwrap();
    let t0 = runtime::clock::now();

    let fired = Timer::after(&actor, Duration::from_secs(2), || "fired");
    let dropped = Timer::after(&actor, Duration::from_secs(1), || "dropped");
    let mut cancelled = Timer::after(&actor, Duration::from_secs(1), || "cancelled");
    assert!(fired.is_armed() && cancelled.is_armed());
    drop(dropped);
    cancelled.cancel();
    assert!(!cancelled.is_armed());
    assert_eq!(rx.recv().await, Some("fired"));
    assert!(runtime::clock::now() - t0 >= Duration::from_secs(2));

    let every = Timer::every(&actor, Duration::from_secs(10), || "tick");
    for _ in 0..3 {
        assert_eq!(rx.recv().await, Some("tick"));
    }
    drop(every);
    tokio::time::sleep(Duration::from_secs(100)).await;
    assert!(rx.try_recv().is_err(), "timer kept running after drop");
    drop(fired);
    actor.stop(None);
}
