//! Whether this process reaches the Kafka cluster (issue 19), from what librdkafka tells
//! every client of the crate: its error callback (`ClientContext::error`) and the
//! consumer's statistics.
//!
//! In: each client context's errors ([`client_error`]); the consumer's statistics every
//! 5 s ([`statistics`]: a broker in state `UP`); a successful connection check
//! ([`connected`]). Out: one log event when the brokers become unreachable (librdkafka's
//! `AllBrokersDown`: every broker it knows is down), a reminder at most once per
//! [`UNREACHABLE_REMINDER_INTERVAL`] while they stay so, and one event when they are
//! reachable again with how long they were not; and the figures of [`snapshot`] for the
//! metrics endpoint (`markledger_kafka_brokers_reachable`,
//! `markledger_kafka_unreachable_total`, `markledger_kafka_client_errors_total`).
//!
//! One state per process, not per client: the consumers of every worker, the producer and
//! the admin client all talk to the same cluster, and the operator wants one answer and
//! one line, not one per client (librdkafka reports the outage once per client). Never per
//! record: only the error callback and the statistics reach here.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a continuing outage is logged again (librdkafka repeats `AllBrokersDown` on
/// every failed reconnect round).
pub const UNREACHABLE_REMINDER_INTERVAL: Duration = Duration::from_secs(60);

/// After an outage ends, how long another client's late `AllBrokersDown` (one still
/// waiting for its reconnect backoff while the first already sees a broker up) is not a
/// new outage. A real second outage is caught by the next one librdkafka repeats.
pub const RECOVERY_GRACE: Duration = Duration::from_secs(15);

#[derive(Debug, Default)]
struct Health {
    /// When the last outage ended.
    recovered_at: Option<Instant>,
    /// Since when every broker has been down (None: reachable, or not known otherwise).
    unreachable_since: Option<Instant>,
    /// When the outage was last logged.
    last_logged: Option<Instant>,
    /// Outages begun.
    outages: u64,
    /// Client-level errors librdkafka reported.
    errors: u64,
}

static HEALTH: Mutex<Health> = Mutex::new(Health {
    recovered_at: None,
    unreachable_since: None,
    last_logged: None,
    outages: 0,
    errors: 0,
});

fn health() -> std::sync::MutexGuard<'static, Health> {
    HEALTH.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a metrics scrape shows of the cluster's reachability.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BrokerFigures {
    /// False while every broker is down (since librdkafka's last `AllBrokersDown`, until a
    /// broker is seen up again).
    pub reachable: bool,
    /// Outages begun (transitions to unreachable).
    pub outages: u64,
    /// Client-level errors librdkafka reported (transport failures, timeouts, refused
    /// credentials, …), caught-up partitions excepted.
    pub errors: u64,
}

/// The figures now.
pub fn snapshot() -> BrokerFigures {
    let health = health();
    BrokerFigures {
        reachable: health.unreachable_since.is_none(),
        outages: health.outages,
        errors: health.errors,
    }
}

/// Told of a client-level error (every client context's `ClientContext::error`, a
/// caught-up partition excepted): counted; `AllBrokersDown` starts an outage.
pub(crate) fn client_error(error: &KafkaError, reason: &str) {
    let mut health = health();
    health.errors += 1;
    if error.rdkafka_error_code() != Some(RDKafkaErrorCode::AllBrokersDown) {
        return;
    }
    let now = Instant::now();
    match health.unreachable_since {
        None if health
            .recovered_at
            .is_some_and(|recovered| now.duration_since(recovered) < RECOVERY_GRACE) => {}
        None => {
            health.unreachable_since = Some(now);
            health.last_logged = Some(now);
            health.outages += 1;
            markledger_operators::note!(
                "markledger kafka: the brokers are unreachable ({reason}); waiting for them, \
                 librdkafka reconnects (outputs and offset commits wait meanwhile)"
            );
        }
        Some(since) => {
            let due = health
                .last_logged
                .is_none_or(|logged| now.duration_since(logged) >= UNREACHABLE_REMINDER_INTERVAL);
            if due {
                health.last_logged = Some(now);
                markledger_operators::note!(
                    "markledger kafka: the brokers are still unreachable after {:.0} s ({reason})",
                    now.duration_since(since).as_secs_f64()
                );
            }
        }
    }
}

/// Told a broker answered: ends an outage, saying how long it lasted.
pub(crate) fn connected() {
    let mut health = health();
    if let Some(since) = health.unreachable_since.take() {
        health.last_logged = None;
        health.recovered_at = Some(Instant::now());
        markledger_operators::note!(
            "markledger kafka: the brokers are reachable again after {:.1} s",
            since.elapsed().as_secs_f64()
        );
    }
}

/// Told the consumer's statistics: a broker of the cluster (not librdkafka's internal one)
/// in state `UP` ends an outage.
pub(crate) fn statistics(statistics: &rdkafka::Statistics) {
    let up = statistics
        .brokers
        .values()
        .any(|broker| broker.source != "internal" && broker.state == "UP");
    if up {
        connected();
    }
}
