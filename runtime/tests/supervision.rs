//! A ractor supervisor that restarts a panicking child per RestartPolicy and
//! gives up after max restarts without dying itself (paused tokio time).

use std::time::Duration;

use ractor::{
    call, Actor, ActorProcessingErr, ActorRef, ActorStatus, RpcReplyPort, SupervisionEvent,
};
use runtime::backoff::Backoff;
use runtime::supervise::{
    actor_label, classify, counters, on_child_failure, ChildEvent, Decision, RestartPolicy,
    RestartTracker,
};
use runtime::timer::Timer;
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};

// ---- child: panics on Boom ----

struct Child;
enum ChildMsg {
    Boom,
}

impl Actor for Child {
    type Msg = ChildMsg;
    type State = counters::AliveGuard;
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ActorRef<ChildMsg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(counters::AliveGuard::new())
    }

    async fn handle(
        &self,
        _myself: ActorRef<ChildMsg>,
        msg: ChildMsg,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ChildMsg::Boom => panic!("child blew up"),
        }
    }
}

// ---- parent: supervises with a RestartTracker ----

#[derive(Debug, PartialEq)]
enum Event {
    ChildStarted,
    Restarting(Duration, u32),
    GaveUp(u32),
}

struct Parent;
enum ParentMsg {
    StartChild,
    GetChild(RpcReplyPort<Option<ActorRef<ChildMsg>>>),
}

struct ParentState {
    tracker: RestartTracker,
    child: Option<ActorRef<ChildMsg>>,
    restart_timer: Timer,
    events: mpsc::UnboundedSender<Event>,
    _alive: counters::AliveGuard,
}

const CHILD_NAME: &str = "supervision-test-child";

impl Parent {
    async fn start_child(
        myself: &ActorRef<ParentMsg>,
        state: &mut ParentState,
    ) -> Result<(), ActorProcessingErr> {
        // A failed pre_start comes back here (Err), not as a supervision event.
        let (child, _join) =
            Actor::spawn_linked(Some(CHILD_NAME.to_string()), Child, (), myself.get_cell()).await?;
        state.child = Some(child);
        let _ = state.events.send(Event::ChildStarted);
        Ok(())
    }
}

impl Actor for Parent {
    type Msg = ParentMsg;
    type State = ParentState;
    type Arguments = (RestartPolicy, mpsc::UnboundedSender<Event>);

    async fn pre_start(
        &self,
        myself: ActorRef<ParentMsg>,
        (policy, events): Self::Arguments,
    ) -> Result<ParentState, ActorProcessingErr> {
        myself.send_message(ParentMsg::StartChild)?;
        Ok(ParentState {
            tracker: RestartTracker::new(policy),
            child: None,
            restart_timer: Timer::none(),
            events,
            _alive: counters::AliveGuard::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<ParentMsg>,
        msg: ParentMsg,
        state: &mut ParentState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ParentMsg::StartChild => {
                if state.child.is_none() {
                    Parent::start_child(&myself, state).await?;
                }
            }
            ParentMsg::GetChild(reply) => {
                let _ = reply.send(state.child.clone());
            }
        }
        Ok(())
    }

    // Overridden: the default stops the parent when any child exits.
    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<ParentMsg>,
        evt: SupervisionEvent,
        state: &mut ParentState,
    ) -> Result<(), ActorProcessingErr> {
        match classify(&evt) {
            ChildEvent::Failed { child, reason } => {
                let ours = state.child.as_ref().map(|c| c.get_id()) == Some(child.get_id());
                if !ours {
                    return Ok(());
                }
                state.child = None;
                match on_child_failure(&mut state.tracker, &actor_label(child), &reason) {
                    Decision::Restart {
                        after,
                        restart_number,
                    } => {
                        state.restart_timer =
                            Timer::after(&myself, after, || ParentMsg::StartChild);
                        let _ = state.events.send(Event::Restarting(after, restart_number));
                    }
                    Decision::GiveUp { restarts_in_window } => {
                        let _ = state.events.send(Event::GaveUp(restarts_in_window));
                    }
                }
            }
            ChildEvent::Terminated { child, .. } => {
                if state.child.as_ref().map(|c| c.get_id()) == Some(child.get_id()) {
                    state.child = None;
                }
            }
            ChildEvent::Started(_) | ChildEvent::Other => {}
        }
        Ok(())
    }
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Event>) -> Event {
    timeout(Duration::from_secs(120), rx.recv())
        .await
        .expect("no event")
        .expect("channel closed")
}

async fn child_of(parent: &ActorRef<ParentMsg>) -> Option<ActorRef<ChildMsg>> {
    call!(parent, ParentMsg::GetChild).expect("parent answers")
}

#[tokio::test(start_paused = true)]
async fn parent_restarts_panicking_child_then_gives_up_and_survives() {
    let policy = RestartPolicy {
        max_restarts: 3,
        window: Duration::from_secs(60),
        backoff: Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(10),
            jitter_pct: 20,
        },
    };
    let restarts_before = counters::restarts_total();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (parent, parent_join) = Actor::spawn(None, Parent, (policy, tx)).await.unwrap();
    assert_eq!(next(&mut rx).await, Event::ChildStarted);
    assert!(counters::actors_alive() >= 2);

    for n in 1..=3u32 {
        let child = child_of(&parent).await.expect("child running");
        let t = Instant::now();
        child.send_message(ChildMsg::Boom).unwrap();
        let Event::Restarting(after, number) = next(&mut rx).await else {
            panic!("expected a restart");
        };
        assert_eq!(number, n);
        let nominal = Duration::from_millis(100) * 2u32.pow(n - 1);
        assert!(after >= nominal.mul_f64(0.8) && after <= nominal.mul_f64(1.2));
        assert_eq!(next(&mut rx).await, Event::ChildStarted);
        assert!(Instant::now() - t >= after, "restarted before the backoff");
        let new_child = child_of(&parent).await.expect("child restarted");
        assert_ne!(new_child.get_id(), child.get_id());
    }

    // Fourth failure within the window: give up, parent stays alive.
    child_of(&parent)
        .await
        .unwrap()
        .send_message(ChildMsg::Boom)
        .unwrap();
    assert_eq!(next(&mut rx).await, Event::GaveUp(3));
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(rx.try_recv().is_err(), "no restart after giving up");
    assert_eq!(parent.get_status(), ActorStatus::Running);
    assert!(child_of(&parent).await.is_none());
    assert!(parent.get_children().is_empty());
    assert!(counters::restarts_total() >= restarts_before + 3);

    // After the window has passed, restarts are allowed again
    // (an operator's `up` starts the child; the next failure restarts it).
    tokio::time::sleep(Duration::from_secs(60)).await;
    parent.send_message(ParentMsg::StartChild).unwrap();
    assert_eq!(next(&mut rx).await, Event::ChildStarted);
    child_of(&parent)
        .await
        .unwrap()
        .send_message(ChildMsg::Boom)
        .unwrap();
    let Event::Restarting(_, number) = next(&mut rx).await else {
        panic!("expected a restart");
    };
    assert_eq!(number, 1);
    assert_eq!(next(&mut rx).await, Event::ChildStarted);

    parent.stop(None);
    parent_join.await.unwrap();
}
