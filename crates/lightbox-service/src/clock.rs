//! The time source, injectable so tests can move time (storage tiers, skew windows).

use lightbox_domain::Millis;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Millis;
}

/// Wall-clock time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        Millis::from_system_time(std::time::SystemTime::now())
    }
}

/// Wall-clock time moved forward by a fixed offset (a testing aid: storage tiers after days).
#[derive(Debug, Default, Clone, Copy)]
pub struct OffsetClock(pub std::time::Duration);

impl Clock for OffsetClock {
    fn now(&self) -> Millis {
        Millis::from_system_time(std::time::SystemTime::now() + self.0)
    }
}
